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

    // Exact top-k by inner product for n_queries rows of dim floats; writes n_queries * k ids and
    // scores. With re-rank vectors and rerank > 0, the int8 scan keeps rerank * k candidates per
    // query and the fp16 vectors order them exactly; otherwise scores are the int8 estimates.
    void search(const float* queries, size_t n_queries, size_t k, const uint64_t* exclude, size_t n_exclude,
                size_t rerank, int threads, uint64_t* out_ids, float* out_scores) const {
        if (n_queries == 0) return;
        for (size_t i = 0; i < n_queries * header_.dim; ++i)
            if (!std::isfinite(queries[i]))
                fail(ErrorKind::query, "query " + std::to_string(i / header_.dim) + " has a NaN or infinite value at " +
                                           "position " + std::to_string(i % header_.dim) + "; pass finite floats.");
        if (threads < 0 || threads > 1024)
            fail(ErrorKind::query, "threads must be between 1 and 1024 (or None for all CPUs), got " +
                                       std::to_string(threads) + ".");
        const int slots = threads == 0 ? available_cpus() : threads;
        std::vector<uint32_t> excluded = exclusion_rows(exclude, n_exclude);
        const uint64_t available = header_.count - excluded.size();
        if (k == 0) fail(ErrorKind::query, "k must be at least 1, got 0.");
        if (k > available)
            fail(ErrorKind::query, "k = " + std::to_string(k) + " but the index holds only " + std::to_string(available) +
                                       " searchable items (" + std::to_string(header_.count) + " minus " +
                                       std::to_string(excluded.size()) + " excluded); ask for fewer.");
        const bool reranking = rerank > 0 && vectors_f16_ != nullptr;
        const uint64_t wanted = reranking ? (rerank > available / k ? available : k * rerank) : k;
        const size_t n_candidates = static_cast<size_t>(std::min<uint64_t>(wanted, available));

        PreparedQueries prepared = prepare(queries, n_queries);
        const uint32_t n_rows = static_cast<uint32_t>(header_.count);
        // Row chunks handed out dynamically keep both threads busy even when another process
        // steals a core; each chunk is big enough that handing it out costs nothing.
        const uint32_t chunk_rows = static_cast<uint32_t>(
            std::clamp<uint64_t>(round_up(header_.count / (static_cast<uint64_t>(slots) * 8) + 1, 64), 1024, 16384));
        const int n_tasks = static_cast<int>((header_.count + chunk_rows - 1) / chunk_rows);
        const int n_slots = std::max(1, std::min(slots, n_tasks));

        struct SlotState {
            std::vector<TopK> heaps;
            std::vector<float> thresholds;
            const std::vector<uint32_t>* excluded;
        };
        std::vector<SlotState> state(n_slots);
        for (SlotState& s : state) {
            s.heaps.resize(n_queries);
            s.thresholds.resize(n_queries);
            s.excluded = &excluded;
            for (size_t q = 0; q < n_queries; ++q) s.heaps[q].reset(n_candidates, &s.thresholds[q]);
        }
        const Kernel& kernel = active_kernel();
        // Batched queries reuse each block of rows from cache: a block small enough for L2 meets
        // every query (four at a time) before the scan moves on.
        const uint32_t block_rows = n_queries <= 4 ? chunk_rows : 128;
        ThreadPool::instance().run(n_tasks, n_slots, [&](int task, int slot) {
            SlotState& s = state[slot];
            const uint32_t begin = static_cast<uint32_t>(task) * chunk_rows;
            const uint32_t end = std::min(n_rows, begin + chunk_rows);
            for (uint32_t block = begin; block < end; block += block_rows) {
                const uint32_t block_end = std::min(end, block + block_rows);
                for (size_t q0 = 0; q0 < n_queries;) {
                    const size_t left = n_queries - q0;
                    const int group = left >= 4 ? 4 : (left >= 2 ? 2 : 1);
                    struct Context {
                        SlotState* state;
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

        // Merge the per-thread heaps, re-rank, keep k; queries are independent, so spread them out.
        const int merge_slots = std::min<int>(slots, static_cast<int>(n_queries));
        ThreadPool::instance().run(static_cast<int>(n_queries), merge_slots, [&](int qi, int) {
            const size_t q = static_cast<size_t>(qi);
            std::vector<Hit> hits;
            for (const SlotState& s : state) hits.insert(hits.end(), s.heaps[q].hits().begin(), s.heaps[q].hits().end());
            const size_t keep = std::min(hits.size(), n_candidates);
            std::nth_element(hits.begin(), hits.begin() + keep, hits.end(), better);
            hits.resize(keep);
            if (reranking) {
                const float* query = queries + q * header_.dim;
                for (Hit& hit : hits)
                    hit.score = sanitize(kernel.dot_f16(vectors_f16_ + static_cast<uint64_t>(hit.row) * header_.dim,
                                                        query, header_.dim));
            }
            std::sort(hits.begin(), hits.end(), better);
            for (size_t j = 0; j < k; ++j) {
                // hits holds at least k entries: every non-excluded row reaches some heap.
                out_ids[q * k + j] = ids_[hits[j].row];
                out_scores[q * k + j] = hits[j].score;
            }
        });
    }

    // Touches every page the scan reads, so the first search does not pay the page faults.
    void warmup(int threads) const {
        const int slots = threads <= 0 ? available_cpus() : threads;
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
