// The opened index: O(1) open of a mapped file, exact int8 top-k scan, fp16 re-rank, exclusions.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "errors.hpp"
#include "format.hpp"
#include "kernels.hpp"
#include "mapped_file.hpp"
#include "thread_pool.hpp"

namespace fastattr {

struct Hit {
    float score;
    uint32_t row;
};

// A strict total order (ties broken by row), so the result never depends on how rows were split
// between threads.
inline bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.row < b.row); }

// A bounded heap keeping the best `capacity` hits; its worst score is the scan's admission bar.
class TopK {
public:
    void reset(size_t capacity, float* threshold) {
        capacity_ = capacity;
        threshold_ = threshold;
        *threshold_ = -std::numeric_limits<float>::infinity();
        heap_.clear();
        heap_.reserve(capacity);
    }
    void offer(Hit hit) {
        if (heap_.size() < capacity_) {
            heap_.push_back(hit);
            std::push_heap(heap_.begin(), heap_.end(), better);  // front is the worst kept hit
            if (heap_.size() == capacity_) *threshold_ = heap_.front().score;
        } else if (better(hit, heap_.front())) {
            std::pop_heap(heap_.begin(), heap_.end(), better);
            heap_.back() = hit;
            std::push_heap(heap_.begin(), heap_.end(), better);
            *threshold_ = heap_.front().score;
        }
    }
    const std::vector<Hit>& hits() const { return heap_; }

private:
    size_t capacity_ = 0;
    float* threshold_ = nullptr;
    std::vector<Hit> heap_;
};

// A query buffer whose rows are 64-byte aligned like the codes they meet.
struct PreparedQueries {
    std::vector<int8_t> s8_storage;
    std::vector<QueryCodes> codes;
};

// One search as plain pointers and sizes. The counts are signed so that the core, not each caller,
// refuses a negative k, rerank or threads, with one message whichever way the request came in.
struct SearchRequest {
    const float* queries = nullptr;  // n_queries rows of query_dim floats
    size_t n_queries = 0;
    uint64_t query_dim = 0;
    int64_t k = 0;
    const uint64_t* exclude = nullptr;  // item ids never returned; ids not in the index exclude nothing
    size_t n_exclude = 0;
    int64_t rerank = 0;   // re-rank rerank * k int8 candidates with the fp16 vectors; 0 = int8 scores
    int64_t threads = 0;  // 0 = every CPU this process may run on
};

// A request that Index::plan accepted, with what follows from it. Planning comes apart from the
// scan so that a caller can size its output (k) only after the request was found valid.
struct SearchPlan {
    SearchRequest request;
    const void* index = nullptr;     // the Index that made the plan; another one refuses it
    size_t k = 0;
    std::vector<uint32_t> excluded;  // rows never returned, sorted for the scan's binary search
    size_t n_candidates = 0;         // hits each query keeps through the int8 scan
    bool reranking = false;
    int slots = 1;                   // threads the scan may use
};

constexpr int64_t kMaxThreads = 1024;

// Threads for a scan, checked: 0 means every CPU; the cap keeps a typo from starting thousands.
inline int thread_slots(int64_t threads) {
    if (threads < 0 || threads > kMaxThreads)
        fail(ErrorKind::query, "threads must be between 1 and 1024 (or None for all CPUs), got " +
                                   std::to_string(threads) + ".");
    return threads == 0 ? available_cpus() : static_cast<int>(threads);
}

// Int8 candidates each query keeps: k, or rerank * k when the fp16 vectors re-rank them, never more
// than the searchable rows (the division keeps rerank * k from overflowing). Needs k >= 1.
inline size_t candidate_count(size_t k, size_t rerank, uint64_t available, bool reranking) {
    const uint64_t wanted = reranking ? (rerank > available / k ? available : k * rerank) : k;
    return static_cast<size_t>(std::min<uint64_t>(wanted, available));
}

// Rows per scan task. Tasks are handed out dynamically, about eight per thread, so a thread that
// loses its core to another process is made up for by the others; at least 1024 rows, so handing a
// task out costs nothing next to scanning it.
inline uint32_t scan_chunk_rows(uint64_t n_rows, int slots) {
    return static_cast<uint32_t>(
        std::clamp<uint64_t>(round_up(n_rows / (static_cast<uint64_t>(slots) * 8) + 1, 64), 1024, 16384));
}

// One scan thread's state: a heap and its admission bar per query, so no two threads share a lock.
struct SlotHeaps {
    std::vector<TopK> heaps;        // one per query
    std::vector<float> thresholds;  // heaps[q]'s worst kept score, re-read by the kernel
    const std::vector<uint32_t>* excluded = nullptr;
};

// The best `keep` hits of one query over every slot's heap, in no particular order. Which hits
// survive does not depend on how rows were split between slots, because `better` is a total order.
inline std::vector<Hit> merge_best(const std::vector<SlotHeaps>& slots, size_t query, size_t keep) {
    std::vector<Hit> hits;
    for (const SlotHeaps& s : slots) hits.insert(hits.end(), s.heaps[query].hits().begin(), s.heaps[query].hits().end());
    keep = std::min(hits.size(), keep);
    std::nth_element(hits.begin(), hits.begin() + keep, hits.end(), better);
    hits.resize(keep);
    return hits;
}

class Index {
public:
    explicit Index(const std::string& path) : file_(path) {
        header_ = parse_header(file_.data(), file_.size(), path);
        const uint8_t* base = file_.data();
        codes_ = reinterpret_cast<const int8_t*>(base + header_.codes.offset);
        scales_ = reinterpret_cast<const float*>(base + header_.scales.offset);
        code_sums_ = reinterpret_cast<const int32_t*>(base + header_.code_sums.offset);
        ids_ = reinterpret_cast<const uint64_t*>(base + header_.ids.offset);
        sorted_ids_ = reinterpret_cast<const uint64_t*>(base + header_.sorted_ids.offset);
        sorted_rows_ = reinterpret_cast<const uint32_t*>(base + header_.sorted_rows.offset);
        if (header_.flags & kFlagVectorsF16)
            vectors_f16_ = reinterpret_cast<const uint16_t*>(base + header_.vectors_f16.offset);
    }

    uint64_t count() const { return header_.count; }
    uint64_t dim() const { return header_.dim; }
    bool has_rerank_vectors() const { return vectors_f16_ != nullptr; }
    const uint64_t* ids() const { return ids_; }
    const std::string& path() const { return file_.path(); }
    uint64_t file_bytes() const { return header_.file_bytes; }

    // Row of an external id, or -1. The id tables are read straight from the mapped file, so a
    // corrupted entry is caught here rather than trusted.
    int64_t row_of(uint64_t id) const {
        const uint64_t* end = sorted_ids_ + header_.count;
        const uint64_t* it = std::lower_bound(sorted_ids_, end, id);
        if (it == end || *it != id) return -1;
        const uint32_t row = sorted_rows_[it - sorted_ids_];
        if (row >= header_.count || ids_[row] != id)
            fail(ErrorKind::format, path() + " is corrupted: its id tables disagree about id " + std::to_string(id) +
                                        "." + rebuild_hint());
        return row;
    }

    // Checks a request against this index and works out its sizes; every refusal of a search
    // (dim, k, rerank, threads, NaN or infinite values, k beyond what exclusions leave) is made
    // here, so every caller gets the same message.
    SearchPlan plan(const SearchRequest& request) const {
        check_arguments(request);
        SearchPlan p;
        p.request = request;
        p.index = this;
        p.k = static_cast<size_t>(request.k);
        p.slots = thread_slots(request.threads);
        p.excluded = exclusion_rows(request.exclude, request.n_exclude);
        const uint64_t available = header_.count - p.excluded.size();
        if (p.k > available) {
            const std::string k = "k = " + std::to_string(p.k);
            if (p.excluded.empty())
                fail(ErrorKind::query, k + " but the index holds only " + std::to_string(available) +
                                           " items; ask for fewer.");
            fail(ErrorKind::query, k + " but the index holds only " + std::to_string(available) +
                                       " searchable items (" + std::to_string(header_.count) + " minus " +
                                       std::to_string(p.excluded.size()) + " excluded); ask for fewer.");
        }
        p.reranking = request.rerank > 0 && vectors_f16_ != nullptr;
        p.n_candidates = candidate_count(p.k, static_cast<size_t>(request.rerank), available, p.reranking);
        return p;
    }

    // Exact top-k by inner product for a plan of this index; writes n_queries * k ids and scores,
    // best first, ties by row. With re-rank vectors and rerank > 0 the int8 scan keeps rerank * k
    // candidates per query and the fp16 vectors order them exactly; otherwise scores are the int8
    // estimates.
    void search(const SearchPlan& plan, uint64_t* out_ids, float* out_scores) const {
        if (plan.index != this) fail(ErrorKind::query, "this search plan was made by another index.");
        if (plan.request.n_queries == 0) return;
        const PreparedQueries prepared = prepare(plan.request.queries, plan.request.n_queries);
        const std::vector<SlotHeaps> slots = scan(plan, prepared);
        write_best(plan, slots, out_ids, out_scores);
    }

    void search(const SearchRequest& request, uint64_t* out_ids, float* out_scores) const {
        search(plan(request), out_ids, out_scores);
    }

    // Touches every page of the sections a scan reads (codes, scales, code sums, ids), so the first
    // search does not pay their page faults.
    void warmup(int64_t threads) const {
        const int slots = thread_slots(threads);
        const uint64_t begin = header_.codes.offset;
        const Section last = std::max({header_.codes, header_.scales, header_.code_sums, header_.ids},
                                      [](const Section& a, const Section& b) { return a.offset < b.offset; });
        const uint64_t end = last.offset + last.bytes;
        file_.will_need(begin, end - begin);
        const uint64_t page = 4096, per_task = 64ull << 20;
        const int n_tasks = static_cast<int>((end - begin + per_task - 1) / per_task);
        std::vector<uint64_t> sink(static_cast<size_t>(std::max(1, slots)) * 8, 0);
        ThreadPool::instance().run(n_tasks, slots, [&](int task, int slot) {
            const uint64_t from = begin + static_cast<uint64_t>(task) * per_task;
            const uint64_t to = std::min(end, from + per_task);
            uint64_t touched = 0;
            for (uint64_t offset = from; offset < to; offset += page) touched += file_.data()[offset];
            sink[static_cast<size_t>(slot) * 8] += touched;
        });
        uint64_t total = 0;
        for (uint64_t v : sink) total += v;
        [[maybe_unused]] static volatile uint64_t keep;
        keep = total;  // keeps the page reads from being optimised away
    }

    // O(N) integrity check: data checksum and id tables. open() skips this to stay O(1).
    void verify() const {
        Checksum sum;
        sum.update(file_.data() + header_.header_bytes, header_.file_bytes - header_.header_bytes);
        if (sum.digest() != header_.data_checksum)
            fail(ErrorKind::format, path() + " is corrupted: the data checksum does not match." + rebuild_hint());
        for (uint64_t i = 0; i < header_.count; ++i) {
            if (i > 0 && sorted_ids_[i] <= sorted_ids_[i - 1])
                fail(ErrorKind::format, path() + " is corrupted: its sorted id table is out of order." + rebuild_hint());
            if (sorted_rows_[i] >= header_.count || ids_[sorted_rows_[i]] != sorted_ids_[i])
                fail(ErrorKind::format, path() + " is corrupted: its id tables disagree." + rebuild_hint());
        }
    }

private:
    // What can be checked without touching the rows: cheap structural checks before the
    // O(n_queries * dim) scan for NaN and infinity.
    void check_arguments(const SearchRequest& r) const {
        if (r.query_dim != header_.dim)
            fail(ErrorKind::query, "the query has dim " + std::to_string(r.query_dim) + " but the index " + path() +
                                       " has dim " + std::to_string(header_.dim) +
                                       "; embed queries with the model that built the index.");
        if (r.k < 1) fail(ErrorKind::query, "k must be at least 1, got " + std::to_string(r.k) + ".");
        if (r.rerank < 0)
            fail(ErrorKind::query, "rerank must be 0 (off) or a positive multiple of k, got " + std::to_string(r.rerank) + ".");
        for (size_t i = 0; i < r.n_queries * header_.dim; ++i)
            if (!std::isfinite(r.queries[i]))
                fail(ErrorKind::query, "query " + std::to_string(i / header_.dim) + " has a NaN or infinite value at " +
                                           "position " + std::to_string(i % header_.dim) + "; pass finite floats.");
    }

    // The parallel int8 scan: each slot keeps its own heaps (n_candidates per query) over the row
    // chunks it is handed; write_best merges them.
    std::vector<SlotHeaps> scan(const SearchPlan& plan, const PreparedQueries& prepared) const {
        const size_t n_queries = plan.request.n_queries;
        const uint32_t n_rows = static_cast<uint32_t>(header_.count);
        const uint32_t chunk_rows = scan_chunk_rows(header_.count, plan.slots);
        const int n_tasks = static_cast<int>((header_.count + chunk_rows - 1) / chunk_rows);
        const int n_slots = std::max(1, std::min(plan.slots, n_tasks));
        std::vector<SlotHeaps> state(n_slots);
        for (SlotHeaps& s : state) {
            s.heaps.resize(n_queries);
            s.thresholds.resize(n_queries);
            s.excluded = &plan.excluded;
            for (size_t q = 0; q < n_queries; ++q) s.heaps[q].reset(plan.n_candidates, &s.thresholds[q]);
        }
        const Kernel& kernel = active_kernel();
        // Batched queries reuse each block of rows from cache: a block small enough for L2 meets
        // every query (four at a time) before the scan moves on.
        const uint32_t block_rows = n_queries <= 4 ? chunk_rows : 128;
        ThreadPool::instance().run(n_tasks, n_slots, [&](int task, int slot) {
            SlotHeaps& s = state[slot];
            const uint32_t begin = static_cast<uint32_t>(task) * chunk_rows;
            const uint32_t end = std::min(n_rows, begin + chunk_rows);
            for (uint32_t block = begin; block < end; block += block_rows) {
                const uint32_t block_end = std::min(end, block + block_rows);
                for (size_t q0 = 0; q0 < n_queries;) {
                    const size_t left = n_queries - q0;
                    const int group = left >= 4 ? 4 : (left >= 2 ? 2 : 1);
                    struct Context {
                        SlotHeaps* state;
                        size_t q0;
                    } context{&s, q0};
                    ScanArgs args{codes_,     header_.row_bytes,
                                  scales_,    code_sums_,
                                  block,      block_end,
                                  group,      prepared.codes.data() + q0,
                                  s.thresholds.data() + q0,
                                  [](void* c, int q, uint32_t row, float score) {
                                      auto* ctx = static_cast<Context*>(c);
                                      const std::vector<uint32_t>& ex = *ctx->state->excluded;
                                      if (!ex.empty() && std::binary_search(ex.begin(), ex.end(), row)) return;
                                      ctx->state->heaps[ctx->q0 + q].offer(Hit{score, row});
                                  },
                                  &context};
                    kernel.scan(args);
                    q0 += group;
                }
            }
        });
        return state;
    }

    // Merges the slots' heaps, re-scores the candidates with the fp16 vectors when re-ranking, and
    // writes the best k ids and scores; queries are independent, so they are spread over threads.
    void write_best(const SearchPlan& plan, const std::vector<SlotHeaps>& slots, uint64_t* out_ids,
                    float* out_scores) const {
        const size_t n_queries = plan.request.n_queries, k = plan.k;
        const Kernel& kernel = active_kernel();
        const int merge_slots = std::min<int>(plan.slots, static_cast<int>(n_queries));
        ThreadPool::instance().run(static_cast<int>(n_queries), merge_slots, [&](int qi, int) {
            const size_t q = static_cast<size_t>(qi);
            std::vector<Hit> hits = merge_best(slots, q, plan.n_candidates);
            if (plan.reranking) {
                const float* query = plan.request.queries + q * header_.dim;
                for (Hit& hit : hits)
                    hit.score = sanitize(kernel.dot_f16(vectors_f16_ + static_cast<uint64_t>(hit.row) * header_.dim,
                                                        query, header_.dim));
            }
            std::sort(hits.begin(), hits.end(), better);
            for (size_t j = 0; j < k; ++j) {
                // hits holds at least k entries: a heap admits every row until it is full, so the
                // heaps together keep min(n_candidates, searchable rows) >= k hits.
                out_ids[q * k + j] = ids_[hits[j].row];
                out_scores[q * k + j] = hits[j].score;
            }
        });
    }

    std::vector<uint32_t> exclusion_rows(const uint64_t* exclude, size_t n_exclude) const {
        std::vector<uint32_t> rows;
        rows.reserve(n_exclude);
        for (size_t i = 0; i < n_exclude; ++i) {
            const int64_t row = row_of(exclude[i]);
            if (row >= 0) rows.push_back(static_cast<uint32_t>(row));  // ids not in the index exclude nothing
        }
        std::sort(rows.begin(), rows.end());
        rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
        return rows;
    }

    PreparedQueries prepare(const float* queries, size_t n_queries) const {
        const uint64_t row_bytes = header_.row_bytes;
        PreparedQueries p;
        // s8 and u8 copies side by side, over-allocated by 64 bytes to align the first row.
        p.s8_storage.assign(n_queries * row_bytes * 2 + kAlign, 0);
        auto address = reinterpret_cast<uintptr_t>(p.s8_storage.data());
        int8_t* base = p.s8_storage.data() + (round_up(address, kAlign) - address);
        p.codes.resize(n_queries);
        for (size_t q = 0; q < n_queries; ++q) {
            int8_t* s8 = base + q * row_bytes * 2;
            auto* u8 = reinterpret_cast<uint8_t*>(s8 + row_bytes);
            int32_t unused_sum;
            const float scale = quantize_row(queries + q * header_.dim, header_.dim, s8, row_bytes, &unused_sum);
            for (uint64_t i = 0; i < row_bytes; ++i) u8[i] = static_cast<uint8_t>(static_cast<int>(s8[i]) + 128);
            p.codes[q] = QueryCodes{s8, u8, scale};
        }
        return p;
    }

    MappedFile file_;
    Header header_{};
    const int8_t* codes_ = nullptr;
    const float* scales_ = nullptr;
    const int32_t* code_sums_ = nullptr;
    const uint64_t* ids_ = nullptr;
    const uint64_t* sorted_ids_ = nullptr;
    const uint32_t* sorted_rows_ = nullptr;
    const uint16_t* vectors_f16_ = nullptr;
};

// Streams a buffer with every slot reading its share; returns bytes per second. The benchmark's
// bandwidth floor: no exact scan can read its bytes faster than this.
inline double read_bandwidth(const uint8_t* data, uint64_t n_bytes, int threads, int repeats) {
    const int slots = threads <= 0 ? available_cpus() : threads;
    const uint64_t share = round_up(n_bytes / static_cast<uint64_t>(slots) + 1, 4096);
    std::vector<uint64_t> sink(static_cast<size_t>(slots) * 8, 0);
    double best = 0.0;
    for (int rep = 0; rep < repeats; ++rep) {
        const auto start = std::chrono::steady_clock::now();
        ThreadPool::instance().run(slots, slots, [&](int task, int slot) {
            const uint64_t from = static_cast<uint64_t>(task) * share, to = std::min(n_bytes, from + share);
            uint64_t acc[8] = {0};
            uint64_t i = from;
            for (; i + 64 <= to; i += 64)
                for (int w = 0; w < 8; ++w) {
                    uint64_t word;
                    std::memcpy(&word, data + i + 8 * w, 8);
                    acc[w] ^= word;
                }
            for (int w = 0; w < 8; ++w) sink[static_cast<size_t>(slot) * 8] ^= acc[w];
        });
        uint64_t total = 0;
        for (uint64_t v : sink) total ^= v;
        [[maybe_unused]] static volatile uint64_t keep;
        keep = total;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::max(best, static_cast<double>(n_bytes) / seconds);
    }
    return best;
}

}  // namespace fastattr
