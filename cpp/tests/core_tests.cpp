// Tests of the C++ core on its own (no Python): the writer, the mapped file, the header checks and
// the search kernels against a scalar reference. `core_tests` runs them all; `core_tests replay
// [--reseal] PATH...` opens every file under the paths as an index, searches and verifies it, and
// fails on anything but success or a fastattr::Error (run under ASan/UBSan, this replays a fuzz
// corpus). --reseal first rewrites the header checksum, so mutated headers reach the bounds checks.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "search.hpp"
#include "writer.hpp"

using namespace fastattr;

namespace {

int g_failures = 0;

#define CHECK(condition)                                                                  \
    do {                                                                                  \
        if (!(condition)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
            ++g_failures;                                                                 \
        }                                                                                 \
    } while (0)

// Runs body and returns the kind of the fastattr::Error it threw; fails the test if it threw nothing.
ErrorKind error_kind_of(const std::function<void()>& body, const char* what) {
    try {
        body();
    } catch (const Error& e) {
        return e.kind();
    }
    std::fprintf(stderr, "expected a fastattr::Error from: %s\n", what);
    ++g_failures;
    return static_cast<ErrorKind>(-1);
}

// The message of the fastattr::Error that body throws; empty (and a failure) if it throws none.
std::string error_message_of(const std::function<void()>& body, const char* what) {
    try {
        body();
    } catch (const Error& e) {
        return e.what();
    }
    std::fprintf(stderr, "expected a fastattr::Error from: %s\n", what);
    ++g_failures;
    return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Deterministic test data (xorshift), so a failure reproduces.
struct Random {
    uint64_t state;
    uint64_t next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }
    float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f; }
};

// fuzz/loaders.py rewrites the header checksum at this offset.
static_assert(offsetof(Header, header_checksum) == 184, "update _CHECKSUM_OFFSET in fuzz/loaders.py");

std::string g_dir;

std::string temp_path(const std::string& name) { return g_dir + "/" + name; }

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Rewrites the header checksum of a file image in place, so that a deliberately altered header is
// judged by the bounds checks rather than refused at the checksum.
void reseal(std::vector<uint8_t>& bytes) {
    if (bytes.size() < kHeaderBytes) return;
    Header h;
    std::memcpy(&h, bytes.data(), sizeof(h));
    h.header_checksum = header_checksum_of(h, bytes.data() + sizeof(Header));
    std::memcpy(bytes.data(), &h, sizeof(h));
}

struct Data {
    uint64_t n, dim;
    std::vector<float> rows;
    std::vector<uint64_t> ids;
};

Data make_data(uint64_t n, uint64_t dim, uint64_t seed) {
    Random rng{seed};
    Data d{n, dim, std::vector<float>(n * dim), std::vector<uint64_t>(n)};
    for (float& v : d.rows) v = rng.uniform();
    for (uint64_t i = 0; i < n; ++i) d.ids[i] = 1000 + 7 * i;  // not the row numbers
    return d;
}

void write_index(const std::string& path, const Data& d, bool f16, uint64_t batch = 37) {
    Writer writer(path, d.dim, f16);
    for (uint64_t lo = 0; lo < d.n; lo += batch) {
        const uint64_t n = std::min(batch, d.n - lo);
        writer.append(d.rows.data() + lo * d.dim, n, d.dim, d.ids.data() + lo, n);
    }
    writer.finish();
}

// A search of n_queries rows of dim floats; exclude may be null when n_exclude is 0.
SearchRequest request(const float* queries, size_t n_queries, uint64_t dim, int64_t k, const uint64_t* exclude = nullptr,
                      size_t n_exclude = 0, int64_t rerank = 0, int64_t threads = 1) {
    SearchRequest r;
    r.queries = queries;
    r.n_queries = n_queries;
    r.query_dim = dim;
    r.k = k;
    r.exclude = exclude;
    r.n_exclude = n_exclude;
    r.rerank = rerank;
    r.threads = threads;
    return r;
}

// The reference the kernels must match: quantize both sides, integer dot product, scale.
std::vector<Hit> reference_top(const Data& d, const float* query, size_t k, const std::vector<uint64_t>& exclude) {
    const uint64_t row_bytes = round_up(d.dim, kAlign);
    std::vector<int8_t> q_codes(row_bytes), r_codes(row_bytes);
    int32_t sum;
    const float q_scale = quantize_row(query, d.dim, q_codes.data(), row_bytes, &sum);
    std::vector<Hit> hits;
    for (uint64_t row = 0; row < d.n; ++row) {
        if (std::find(exclude.begin(), exclude.end(), d.ids[row]) != exclude.end()) continue;
        const float r_scale = quantize_row(d.rows.data() + row * d.dim, d.dim, r_codes.data(), row_bytes, &sum);
        int32_t dot = 0;
        for (uint64_t i = 0; i < d.dim; ++i) dot += static_cast<int32_t>(q_codes[i]) * r_codes[i];
        hits.push_back(Hit{static_cast<float>(dot) * r_scale * q_scale, static_cast<uint32_t>(row)});
    }
    std::sort(hits.begin(), hits.end(), better);
    hits.resize(std::min(k, hits.size()));
    return hits;
}

void test_round_trip() {
    for (bool f16 : {false, true}) {
        const Data d = make_data(1000, 100, 1);
        const std::string path = temp_path(f16 ? "rt16.fai" : "rt.fai");
        write_index(path, d, f16);
        Index index(path);
        CHECK(index.count() == d.n);
        CHECK(index.dim() == d.dim);
        CHECK(index.has_rerank_vectors() == f16);
        index.verify();
        for (uint64_t row = 0; row < d.n; ++row) {
            CHECK(index.ids()[row] == d.ids[row]);
            CHECK(index.row_of(d.ids[row]) == static_cast<int64_t>(row));
        }
        CHECK(index.row_of(3) == -1);
    }
}

// Exact int8 scores and ids equal the scalar reference for single and batched queries, with and
// without exclusions, at one and two threads.
void test_search_matches_reference() {
    const Data d = make_data(3000, 72, 2);
    const std::string path = temp_path("search.fai");
    write_index(path, d, false);
    Index index(path);
    const Data queries = make_data(9, 72, 3);
    const size_t k = 10;
    const std::vector<uint64_t> exclude = {d.ids[5], d.ids[17], d.ids[2999], 5};  // 5 is not an id
    for (int threads : {1, 2})
        for (bool excluding : {false, true}) {
            const std::vector<uint64_t> ex = excluding ? exclude : std::vector<uint64_t>{};
            std::vector<uint64_t> ids(queries.n * k);
            std::vector<float> scores(queries.n * k);
            index.search(request(queries.rows.data(), queries.n, 72, k, ex.data(), ex.size(), 0, threads), ids.data(),
                         scores.data());
            for (uint64_t q = 0; q < queries.n; ++q) {
                const std::vector<Hit> want = reference_top(d, queries.rows.data() + q * d.dim, k, ex);
                for (size_t j = 0; j < k; ++j) {
                    CHECK(ids[q * k + j] == d.ids[want[j].row]);
                    CHECK(scores[q * k + j] == want[j].score);
                }
            }
        }
}

// Every kernel this CPU runs offers the same rows with the same scores as the scalar kernel.
void test_kernels_agree_with_scalar() {
    const uint64_t dim = 200, n = 513, row_bytes = round_up(dim, kAlign);
    const Data d = make_data(n, dim, 4);
    std::vector<int8_t> codes(n * row_bytes);
    std::vector<float> scales(n);
    std::vector<int32_t> sums(n);
    for (uint64_t r = 0; r < n; ++r)
        scales[r] = quantize_row(d.rows.data() + r * dim, dim, codes.data() + r * row_bytes, row_bytes, &sums[r]);
    const Data qd = make_data(4, dim, 5);
    std::vector<int8_t> qs8(4 * row_bytes);
    std::vector<uint8_t> qu8(4 * row_bytes);
    std::vector<QueryCodes> qc(4);
    for (int q = 0; q < 4; ++q) {
        int32_t unused;
        qc[q].scale = quantize_row(qd.rows.data() + q * dim, dim, qs8.data() + q * row_bytes, row_bytes, &unused);
        for (uint64_t i = 0; i < row_bytes; ++i) qu8[q * row_bytes + i] = static_cast<uint8_t>(qs8[q * row_bytes + i] + 128);
        qc[q].s8 = qs8.data() + q * row_bytes;
        qc[q].u8 = qu8.data() + q * row_bytes;
    }
    using Offers = std::vector<std::vector<float>>;  // [query][row] score, NaN where not offered
    auto run = [&](ScanFn scan, int n_queries) {
        Offers offers(n_queries, std::vector<float>(n, std::nanf("")));
        std::vector<float> thresholds(n_queries, -std::numeric_limits<float>::infinity());
        ScanArgs args{codes.data(), row_bytes, scales.data(), sums.data(), 0, static_cast<uint32_t>(n), n_queries,
                      qc.data(), thresholds.data(),
                      [](void* c, int q, uint32_t row, float score) { (*static_cast<Offers*>(c))[q][row] = score; },
                      &offers};
        scan(args);
        return offers;
    };
    std::vector<std::pair<const char*, ScanFn>> kernels;
#if FASTATTR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        kernels.push_back({"avx2", scan_avx2});
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        kernels.push_back({"avx512_vnni", scan_avx512_vnni});
#endif
    std::printf("  kernels compared with scalar: %zu\n", kernels.size());
    for (int n_queries : {1, 2, 4}) {
        const Offers want = run(scan_scalar, n_queries);
        for (const auto& [name, scan] : kernels) {
            const Offers got = run(scan, n_queries);
            for (int q = 0; q < n_queries; ++q)
                for (uint64_t r = 0; r < n; ++r)
                    if (!(got[q][r] == want[q][r])) {
                        std::fprintf(stderr, "kernel %s, %d queries: query %d row %llu scores %g, scalar %g\n", name,
                                     n_queries, q, static_cast<unsigned long long>(r), got[q][r], want[q][r]);
                        ++g_failures;
                        return;
                    }
        }
    }
    // The f16 dot products agree with the scalar one to float rounding.
    std::vector<uint16_t> half(dim);
    to_f16_scalar(d.rows.data(), half.data(), dim);
    const float want = dot_f16_scalar(half.data(), qd.rows.data(), dim);
    CHECK(std::fabs(active_kernel().dot_f16(half.data(), qd.rows.data(), dim) - want) <= 1e-4f * (1 + std::fabs(want)));
}

// With fp16 vectors, re-ranked scores are the fp16 dot products, in order.
void test_rerank_orders_by_f16_dot() {
    const Data d = make_data(800, 48, 6);
    const std::string path = temp_path("rerank.fai");
    write_index(path, d, true);
    Index index(path);
    const Data q = make_data(1, 48, 7);
    const size_t k = 8;
    std::vector<uint64_t> ids(k);
    std::vector<float> scores(k);
    index.search(request(q.rows.data(), 1, 48, k, nullptr, 0, 4), ids.data(), scores.data());
    std::vector<uint16_t> half(d.dim);
    for (size_t j = 0; j < k; ++j) {
        const int64_t row = index.row_of(ids[j]);
        CHECK(row >= 0);
        to_f16_scalar(d.rows.data() + row * d.dim, half.data(), d.dim);
        CHECK(std::fabs(scores[j] - dot_f16_scalar(half.data(), q.rows.data(), d.dim)) <= 1e-4f);
        if (j > 0) CHECK(scores[j] <= scores[j - 1]);
    }
}

// Every refusal of a search comes from Index::plan, with kind query and a message naming the problem.
void test_query_errors() {
    const Data d = make_data(20, 8, 8);
    const std::string path = temp_path("small.fai");
    write_index(path, d, false);
    Index index(path);
    std::vector<float> query(8, 0.5f);
    std::vector<uint64_t> ids(21);
    std::vector<float> scores(21);
    const std::vector<uint64_t> ex = {d.ids[0]};
    struct Case {
        const char* what;
        SearchRequest request;
        const char* message;
    };
    const Case cases[] = {
        {"k = 0", request(query.data(), 1, 8, 0), "k must be at least 1, got 0."},
        {"k < 0", request(query.data(), 1, 8, -3), "k must be at least 1, got -3."},
        {"k > n", request(query.data(), 1, 8, 21), "k = 21 but the index holds only 20 items; ask for fewer."},
        {"k > n - excluded", request(query.data(), 1, 8, 20, ex.data(), 1), "holds only 19 searchable items (20 minus 1"},
        {"dim", request(query.data(), 1, 7, 1), "the query has dim 7 but the index"},
        {"rerank < 0", request(query.data(), 1, 8, 1, nullptr, 0, -1), "rerank must be 0 (off)"},
        {"threads < 0", request(query.data(), 1, 8, 1, nullptr, 0, 0, -1), "threads must be between 1 and 1024"},
        {"threads > 1024", request(query.data(), 1, 8, 1, nullptr, 0, 0, 1025), "got 1025."},
    };
    for (const Case& c : cases) {
        CHECK(error_kind_of([&] { index.plan(c.request); }, c.what) == ErrorKind::query);
        const std::string message = error_message_of([&] { index.search(c.request, ids.data(), scores.data()); }, c.what);
        if (!contains(message, c.message)) {
            std::fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", c.what, message.c_str(), c.message);
            ++g_failures;
        }
    }
    index.search(request(query.data(), 1, 8, 20), ids.data(), scores.data());  // k = n is fine
    query[3] = std::nanf("");
    CHECK(contains(error_message_of([&] { index.plan(request(query.data(), 1, 8, 1)); }, "NaN"),
                   "query 0 has a NaN or infinite value at position 3"));
    // An empty batch is checked like any other: validity does not depend on the batch size.
    CHECK(error_kind_of([&] { index.plan(request(query.data(), 0, 8, 21)); }, "empty batch, k > n") == ErrorKind::query);
    query[3] = 0.5f;
    Index other(path);
    const SearchPlan plan = index.plan(request(query.data(), 1, 8, 1));
    CHECK(error_kind_of([&] { other.search(plan, ids.data(), scores.data()); }, "another index's plan") ==
          ErrorKind::query);
    CHECK(error_kind_of([&] { index.warmup(-1); }, "warmup threads") == ErrorKind::query);
}

// The sizes a plan derives: candidates per query (k, or rerank * k capped at what is searchable, and
// only with fp16 vectors), excluded rows sorted and unique with unknown ids ignored, threads.
void test_plan_sizes() {
    CHECK(candidate_count(10, 4, 1000, true) == 40);
    CHECK(candidate_count(10, 4, 1000, false) == 10);
    CHECK(candidate_count(10, 4, 25, true) == 25);
    CHECK(candidate_count(3, ~size_t{0}, 100, true) == 100);  // rerank * k would overflow
    CHECK(candidate_count(7, 0, 7, false) == 7);
    CHECK(scan_chunk_rows(100, 2) == 1024);            // small indexes: one minimum-size chunk
    CHECK(scan_chunk_rows(1000000, 2) == 16384);       // large ones: the cap
    CHECK(scan_chunk_rows(100000, 4) % 64 == 0);
    CHECK(thread_slots(0) == available_cpus());
    CHECK(thread_slots(3) == 3);

    const Data d = make_data(100, 16, 12);
    const std::string plain = temp_path("plan.fai"), full = temp_path("plan16.fai");
    write_index(plain, d, false);
    write_index(full, d, true);
    Index without_f16(plain), with_f16(full);
    const std::vector<float> query(16, 0.25f);
    const std::vector<uint64_t> ex = {d.ids[9], 5, d.ids[2], d.ids[9]};  // 5 is no id; d.ids[9] twice
    const SearchPlan p = with_f16.plan(request(query.data(), 1, 16, 5, ex.data(), ex.size(), 4, 2));
    CHECK(p.k == 5 && p.reranking && p.n_candidates == 20 && p.slots == 2);
    CHECK((p.excluded == std::vector<uint32_t>{2, 9}));
    const SearchPlan q = without_f16.plan(request(query.data(), 1, 16, 5, ex.data(), ex.size(), 4, 2));
    CHECK(q.k == 5 && !q.reranking && q.n_candidates == 5);
    const SearchPlan r = with_f16.plan(request(query.data(), 1, 16, 30, nullptr, 0, 4));
    CHECK(r.n_candidates == 100);
}

// Merging per-slot heaps keeps the same best hits however the rows were dealt out to the slots.
void test_merge_best_ignores_the_split() {
    Random rng{13};
    std::vector<Hit> all;
    for (uint32_t row = 0; row < 500; ++row)
        all.push_back(Hit{static_cast<float>(rng.next() % 40), row});  // many ties, broken by row
    std::vector<Hit> want = all;
    std::sort(want.begin(), want.end(), better);
    want.resize(25);
    for (size_t n_slots : {1, 2, 3, 7}) {
        std::vector<SlotHeaps> slots(n_slots);
        for (SlotHeaps& s : slots) {
            s.heaps.resize(1);
            s.thresholds.resize(1);
            s.heaps[0].reset(25, &s.thresholds[0]);
        }
        for (const Hit& hit : all) slots[(hit.row * 7 + n_slots) % n_slots].heaps[0].offer(hit);
        std::vector<Hit> got = merge_best(slots, 0, 25);
        std::sort(got.begin(), got.end(), better);
        CHECK(got.size() == want.size());
        for (size_t j = 0; j < got.size() && j < want.size(); ++j)
            CHECK(got[j].row == want[j].row && got[j].score == want[j].score);
    }
}

void test_writer_errors() {
    CHECK(error_kind_of([] { Writer w(temp_path("w.fai"), 0, false); }, "dim 0") == ErrorKind::format);
    CHECK(error_kind_of([] { Writer w(temp_path("w.fai"), kMaxDim + 1, false); }, "dim too large") == ErrorKind::format);
    CHECK(error_kind_of([] { Writer w(temp_path("no/such/dir/w.fai"), 8, false); }, "missing dir") == ErrorKind::io);
    CHECK(error_kind_of([] { Writer w(temp_path("w.fai"), 8, false); w.finish(); }, "empty") == ErrorKind::format);
    CHECK(contains(error_message_of([] { Writer w(temp_path("w.fai"), -1, false); }, "dim -1"),
                   "cannot build an index of dim -1: dim must be in [1, 16384]."));
    {
        Writer w(temp_path("w.fai"), 2, false);
        const float rows[6] = {1, 2, 3, 4, 5, 6};
        const uint64_t ids[3] = {1, 2, 3};
        CHECK(contains(error_message_of([&] { w.append(rows, 2, 3, ids, 2); }, "row width"),
                       "vectors must have shape (n, 2), got (2, 3)."));
        CHECK(contains(error_message_of([&] { w.append(rows, 3, 2, ids, 2); }, "ids per row"),
                       "got 3 vectors but 2 ids; pass one id per vector."));
        w.abort();
        CHECK(contains(error_message_of([&] { w.append(rows, 1, 2, ids, 1); }, "closed"), "is already closed"));
    }
    CHECK(error_kind_of(
              [] {
                  Writer w(temp_path("w.fai"), 2, false);
                  const float rows[4] = {1, 2, 3, 4};
                  const uint64_t ids[2] = {9, 9};
                  w.append(rows, 2, 2, ids, 2);
                  w.finish();
              },
              "duplicate id") == ErrorKind::format);
    struct stat st;
    CHECK(::stat(temp_path("w.fai").c_str(), &st) != 0);  // a failed writer leaves nothing at the path
}

// Each header field altered (checksum resealed), a truncation, bad magic and a data flip: an Error
// on open or verify, never a crash.
void test_corrupted_files_are_refused() {
    const Data d = make_data(50, 16, 9);
    const std::string path = temp_path("good.fai");
    write_index(path, d, true);
    const std::vector<uint8_t> good = read_file(path);
    const std::string bad = temp_path("bad.fai");
    int refused = 0;
    // Every 8-byte word of the header except the checksum itself, set to a few hostile values,
    // among them offsets that start inside the file and run past its end.
    const uint64_t file_bytes = good.size();
    const uint64_t values[] = {0, 1, 63, 4096, file_bytes - 64, file_bytes, 0xFFFFFFFFull, 0x100000000ull, ~0ull};
    for (size_t offset = 8; offset + 8 <= offsetof(Header, header_checksum); offset += 8)
        for (uint64_t value : values) {
            std::vector<uint8_t> bytes = good;
            std::memcpy(bytes.data() + offset, &value, 8);
            if (bytes == good) continue;
            reseal(bytes);
            write_file(bad, bytes);
            try {
                Index index(bad);
                index.verify();
                std::fprintf(stderr, "header word at %zu = %llu was accepted\n", offset, static_cast<unsigned long long>(value));
                ++g_failures;
            } catch (const Error& e) {
                CHECK(e.kind() == ErrorKind::format);
                ++refused;
            }
        }
    std::printf("  altered headers refused: %d\n", refused);
    std::vector<uint8_t> bytes = good;
    bytes.resize(bytes.size() - 64);
    write_file(bad, bytes);
    CHECK(error_kind_of([&] { Index index(bad); }, "truncated") == ErrorKind::format);
    bytes = good;
    bytes[1] ^= 1;
    write_file(bad, bytes);
    CHECK(error_kind_of([&] { Index index(bad); }, "bad magic") == ErrorKind::format);
    bytes = good;
    bytes[100] ^= 1;  // inside the header, not resealed
    write_file(bad, bytes);
    CHECK(error_kind_of([&] { Index index(bad); }, "header checksum") == ErrorKind::format);
    bytes = good;
    bytes[bytes.size() - 100] ^= 0x40;  // in the data: open succeeds, verify refuses, search still answers
    write_file(bad, bytes);
    Index index(bad);
    CHECK(error_kind_of([&] { index.verify(); }, "data checksum") == ErrorKind::format);
    std::vector<float> query(16, 0.25f);
    std::vector<uint64_t> ids(3);
    std::vector<float> scores(3);
    try {
        index.search(request(query.data(), 1, 16, 3, nullptr, 0, 4), ids.data(), scores.data());
    } catch (const Error&) {
    }
    CHECK(error_kind_of([] { Index index(temp_path("missing.fai")); }, "missing file") == ErrorKind::format);
    CHECK(error_kind_of([] { Index index(g_dir); }, "a directory") == ErrorKind::format);
}

void collect(const std::string& path, std::vector<std::string>& files) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        files.push_back(path);
        return;
    }
    DIR* dir = ::opendir(path.c_str());
    if (!dir) return;
    while (dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") collect(path + "/" + name, files);
    }
    ::closedir(dir);
}

// Opens, searches and verifies each file; counts accepted and refused; anything else propagates.
int replay(const std::vector<std::string>& paths, bool resealing) {
    std::vector<std::string> files;
    for (const std::string& p : paths) collect(p, files);
    long accepted = 0, refused = 0;
    const std::string work = temp_path("replay.fai");
    for (const std::string& file : files) {
        std::vector<uint8_t> bytes = read_file(file);
        if (resealing) reseal(bytes);
        write_file(work, bytes);
        try {
            Index index(work);
            std::vector<float> query(index.dim(), 1.0f);
            const size_t k = std::min<uint64_t>(3, index.count());
            std::vector<uint64_t> ids(k);
            std::vector<float> scores(k);
            const uint64_t exclude[2] = {0, 3};
            index.search(request(query.data(), 1, index.dim(), static_cast<int64_t>(k), exclude, 0, 4, 2), ids.data(),
                         scores.data());
            for (uint64_t id : ids) index.row_of(id);
            index.verify();
            ++accepted;
        } catch (const Error&) {
            ++refused;
        }
    }
    std::printf("replayed %zu files%s: %ld accepted, %ld refused with an Error, 0 crashes\n", files.size(),
                resealing ? " (header resealed)" : "", accepted, refused);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    char pattern[] = "/tmp/fastattr-core-tests-XXXXXX";
    if (!::mkdtemp(pattern)) {
        std::perror("mkdtemp");
        return 2;
    }
    g_dir = pattern;
    int rc;
    if (argc >= 2 && std::string(argv[1]) == "replay") {
        bool resealing = false;
        std::vector<std::string> paths;
        for (int i = 2; i < argc; ++i) {
            if (std::string(argv[i]) == "--reseal")
                resealing = true;
            else
                paths.push_back(argv[i]);
        }
        rc = replay(paths, resealing);
    } else {
        const std::pair<const char*, void (*)()> tests[] = {
            {"round_trip", test_round_trip},
            {"search_matches_reference", test_search_matches_reference},
            {"kernels_agree_with_scalar", test_kernels_agree_with_scalar},
            {"rerank_orders_by_f16_dot", test_rerank_orders_by_f16_dot},
            {"query_errors", test_query_errors},
            {"plan_sizes", test_plan_sizes},
            {"merge_best_ignores_the_split", test_merge_best_ignores_the_split},
            {"writer_errors", test_writer_errors},
            {"corrupted_files_are_refused", test_corrupted_files_are_refused},
        };
        for (const auto& [name, test] : tests) {
            const int before = g_failures;
            try {
                test();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "%s threw: %s\n", name, e.what());
                ++g_failures;
            }
            std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", name);
        }
        std::printf("%d check(s) failed\n", g_failures);
        rc = g_failures == 0 ? 0 : 1;
    }
    std::vector<std::string> left;
    collect(g_dir, left);
    for (const std::string& f : left) ::unlink(f.c_str());
    ::rmdir(g_dir.c_str());
    return rc;
}
