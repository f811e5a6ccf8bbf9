// Chunked, atomic index writing: rows stream to a temporary file that is fsynced and renamed into place.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "format.hpp"
#include "kernels.hpp"

namespace fastattr {

// An append-only file descriptor with a large buffer; optionally checksums what it writes.
class Sink {
public:
    Sink() = default;
    // start_offset: where in the file this sink's first byte lands (after bytes written directly).
    Sink(int fd, std::string name, bool checksummed, uint64_t start_offset)
        : fd_(fd), name_(std::move(name)), checksummed_(checksummed), position_(start_offset) {
        buffer_.reserve(kBufferBytes);
    }
    void write(const void* data, size_t n) {
        const auto* p = static_cast<const uint8_t*>(data);
        while (n > 0) {
            const size_t take = std::min(n, kBufferBytes - buffer_.size());
            buffer_.insert(buffer_.end(), p, p + take);
            p += take;
            n -= take;
            if (buffer_.size() == kBufferBytes) flush();
        }
    }
    void pad_to(uint64_t multiple) {
        static const uint8_t zeros[kAlign] = {0};
        const uint64_t here = offset();
        write(zeros, round_up(here, multiple) - here);
    }
    uint64_t offset() const { return position_ + buffer_.size(); }
    void flush() {
        if (buffer_.empty()) return;
        if (checksummed_) checksum_.update(buffer_.data(), buffer_.size());
        write_all(fd_, buffer_.data(), buffer_.size(), name_);
        position_ += buffer_.size();
        buffer_.clear();
    }
    uint64_t digest() const { return checksum_.digest(); }

    static void write_all(int fd, const uint8_t* p, size_t n, const std::string& name) {
        while (n > 0) {
            const ssize_t written = ::write(fd, p, n);
            if (written < 0) {
                if (errno == EINTR) continue;
                fail(ErrorKind::io, "cannot write " + name + ": " + std::strerror(errno));
            }
            p += written;
            n -= static_cast<size_t>(written);
        }
    }

private:
    static constexpr size_t kBufferBytes = 4u << 20;  // a multiple of 64, so checksum blocks never split
    int fd_ = -1;
    std::string name_;
    bool checksummed_ = false;
    std::vector<uint8_t> buffer_;
    uint64_t position_ = 0;
    Checksum checksum_;
};

class Writer {
public:
    // dim is signed so that the writer, not each caller, refuses a negative one with its message.
    Writer(const std::string& path, int64_t dim, bool with_vectors_f16)
        : path_(path), dim_(checked_dim(dim)), row_bytes_(round_up(dim_, kAlign)), with_f16_(with_vectors_f16) {
        const size_t slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
        const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
        dir_ = dir.empty() ? "/" : dir;
        // The temporary file lives beside the target so that rename() is atomic (same filesystem).
        // Named with the writer's pid so that a later writer can tell a dead writer's leftovers.
        tmp_path_ = dir_ + "/." + name + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-XXXXXX";
        main_fd_ = make_temp(tmp_path_, false);
        try {
            // The header is written last (pwrite at 0), once every section's place is known.
            std::vector<uint8_t> placeholder(kHeaderBytes, 0);
            Sink::write_all(main_fd_, placeholder.data(), placeholder.size(), tmp_path_);
            main_ = Sink(main_fd_, tmp_path_, true, kHeaderBytes);
            if (with_f16_) {
                // fp16 rows go straight into the final file; codes (half their size) wait in an
                // unlinked scratch file and are copied after them: the count is unknown until finish().
                std::string scratch = dir_ + "/." + name + ".codes-XXXXXX";
                codes_fd_ = make_temp(scratch, true);
                codes_ = Sink(codes_fd_, scratch, false, 0);
            }
        } catch (...) {
            abort();
            throw;
        }
        row_codes_.assign(row_bytes_, 0);
        row_f16_.assign(dim_, 0);
    }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer() { abort(); }

    uint64_t count() const { return ids_.size(); }
    uint64_t dim() const { return dim_; }

    // Quantizes and writes n_rows rows of row_dim float32 with their n_ids external ids; the sizes
    // come separately so that the writer checks they fit the index and each other.
    void append(const float* rows, uint64_t n_rows, uint64_t row_dim, const uint64_t* ids, uint64_t n_ids) {
        std::lock_guard<std::mutex> lock(mutex_);  // Python may call from several threads (GIL released)
        if (finished_) fail(ErrorKind::format, "the writer for " + path_ + " is already closed; open a new one.");
        if (row_dim != dim_)
            fail(ErrorKind::format, "vectors must have shape (n, " + std::to_string(dim_) + "), got (" +
                                        std::to_string(n_rows) + ", " + std::to_string(row_dim) + ").");
        if (n_ids != n_rows)
            fail(ErrorKind::format, "got " + std::to_string(n_rows) + " vectors but " + std::to_string(n_ids) +
                                        " ids; pass one id per vector.");
        const uint64_t n = n_rows;
        if (ids_.size() + n > kMaxCount) fail(ErrorKind::format, "an index holds at most 2^32 - 1 vectors.");
        for (uint64_t i = 0; i < n; ++i) {
            const float* x = rows + i * dim_;
            for (uint64_t j = 0; j < dim_; ++j)
                if (!std::isfinite(x[j]))
                    fail(ErrorKind::format, "cannot build index: vector " + std::to_string(ids_.size()) +
                                                " (id " + std::to_string(ids[i]) + ") has a NaN or infinite value at position " +
                                                std::to_string(j) + "; pass finite floats.");
            int32_t sum = 0;
            const float scale = quantize_row(x, dim_, reinterpret_cast<int8_t*>(row_codes_.data()), row_bytes_, &sum);
            if (with_f16_) {
                active_kernel().to_f16(x, row_f16_.data(), dim_);
                main_.write(row_f16_.data(), dim_ * 2);
                codes_.write(row_codes_.data(), row_bytes_);
            } else {
                main_.write(row_codes_.data(), row_bytes_);
            }
            scales_.push_back(scale);
            sums_.push_back(sum);
            ids_.push_back(ids[i]);
        }
    }

    // Writes the remaining sections and the header, fsyncs, and renames over the target path.
    void finish() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (finished_) fail(ErrorKind::format, "the writer for " + path_ + " is already closed.");
        const uint64_t count = ids_.size();
        if (count == 0) fail(ErrorKind::format, "cannot build an empty index: give it at least one vector.");
        std::vector<std::pair<uint64_t, uint32_t>> order(count);
        for (uint64_t row = 0; row < count; ++row) order[row] = {ids_[row], static_cast<uint32_t>(row)};
        std::sort(order.begin(), order.end());
        for (uint64_t i = 1; i < count; ++i)
            if (order[i].first == order[i - 1].first)
                fail(ErrorKind::format, "cannot build index: id " + std::to_string(order[i].first) +
                                            " appears twice (rows " + std::to_string(order[i - 1].second) + " and " +
                                            std::to_string(order[i].second) + "); ids must be unique.");
        Header h{};
        std::memcpy(h.magic, kMagic, sizeof(kMagic));
        h.version_major = kVersionMajor;
        h.version_minor = kVersionMinor;
        h.header_bytes = kHeaderBytes;
        h.dim = dim_;
        h.count = count;
        h.quantization = kQuantInt8MaxAbs;
        h.flags = with_f16_ ? kFlagVectorsF16 : 0;
        h.row_bytes = row_bytes_;
        if (with_f16_) {
            h.vectors_f16 = {kHeaderBytes, count * dim_ * 2};
            main_.pad_to(kAlign);
            codes_.flush();
            h.codes = {main_.offset(), count * row_bytes_};
            copy_scratch_codes(h.codes.bytes);
        } else {
            h.codes = {kHeaderBytes, count * row_bytes_};
        }
        auto section = [&](const void* data, uint64_t bytes) {
            main_.pad_to(kAlign);
            const Section s{main_.offset(), bytes};
            main_.write(data, bytes);
            return s;
        };
        h.scales = section(scales_.data(), count * 4);
        h.code_sums = section(sums_.data(), count * 4);
        h.ids = section(ids_.data(), count * 8);
        std::vector<uint64_t> sorted_ids(count);
        std::vector<uint32_t> sorted_rows(count);
        for (uint64_t i = 0; i < count; ++i) {
            sorted_ids[i] = order[i].first;
            sorted_rows[i] = order[i].second;
        }
        h.sorted_ids = section(sorted_ids.data(), count * 8);
        h.sorted_rows = section(sorted_rows.data(), count * 4);
        main_.pad_to(kAlign);
        main_.flush();
        h.file_bytes = main_.offset();
        h.data_checksum = main_.digest();
        const std::vector<uint8_t> padding(kHeaderBytes - sizeof(Header), 0);
        h.header_checksum = header_checksum_of(h, padding.data());
        if (::pwrite(main_fd_, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)))
            fail(ErrorKind::io, "cannot write the header of " + tmp_path_ + ": " + std::strerror(errno));
        if (::fsync(main_fd_) != 0) fail(ErrorKind::io, "cannot fsync " + tmp_path_ + ": " + std::strerror(errno));
        ::close(main_fd_);
        main_fd_ = -1;
        if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
            fail(ErrorKind::io, "cannot rename " + tmp_path_ + " to " + path_ + ": " + std::strerror(errno));
        // The rename is durable only once the directory entry reaches the disk.
        const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_CLOEXEC);
        if (dir_fd >= 0) {
            ::fsync(dir_fd);
            ::close(dir_fd);
        }
        close_scratch();
        finished_ = true;
    }

    // Drops everything written so far; the target path is untouched. Safe to call twice.
    void abort() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        if (main_fd_ >= 0) {
            ::close(main_fd_);
            ::unlink(tmp_path_.c_str());
            main_fd_ = -1;
        }
        close_scratch();
        finished_ = true;
    }

private:
    static uint64_t checked_dim(int64_t dim) {
        if (dim < 1 || static_cast<uint64_t>(dim) > kMaxDim)
            fail(ErrorKind::format, "cannot build an index of dim " + std::to_string(dim) + ": dim must be in [1, 16384].");
        return static_cast<uint64_t>(dim);
    }
    // Like mkstemp, but created 0666 so that the kernel applies the caller's umask: mkstemp's 0600
    // would leave the published index unreadable to whoever serves it, and a fixed 0644 ignores a
    // stricter umask. The trailing XXXXXX of the pattern is replaced until the name is new.
    static int make_temp(std::string& pattern, bool unlink_now) {
        static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        const std::string stem = pattern.substr(0, pattern.size() - 6);
        std::random_device entropy;
        for (int attempt = 0; attempt < 100; ++attempt) {
            std::string name = stem;
            for (int i = 0; i < 6; ++i) name += digits[entropy() % (sizeof(digits) - 1)];
            const int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd < 0 && errno == EEXIST) continue;
            if (fd < 0) fail(ErrorKind::io, "cannot create a temporary file " + name + ": " + std::strerror(errno));
            pattern = name;
            if (unlink_now) ::unlink(name.c_str());  // scratch space vanishes with the descriptor, even on a crash
            return fd;
        }
        fail(ErrorKind::io, "cannot create a temporary file " + pattern + ": 100 names were taken");
    }
    void copy_scratch_codes(uint64_t bytes) {
        std::vector<uint8_t> buffer(4u << 20);
        uint64_t done = 0;
        while (done < bytes) {
            const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), bytes - done));
            const ssize_t got = ::pread(codes_fd_, buffer.data(), want, static_cast<off_t>(done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) fail(ErrorKind::io, "cannot read back the scratch codes: " + std::string(std::strerror(errno)));
            main_.write(buffer.data(), static_cast<size_t>(got));
            done += static_cast<uint64_t>(got);
        }
    }
    void close_scratch() noexcept {
        if (codes_fd_ >= 0) ::close(codes_fd_);
        codes_fd_ = -1;
    }

    std::string path_, dir_, tmp_path_;
    uint64_t dim_, row_bytes_;
    bool with_f16_;
    int main_fd_ = -1, codes_fd_ = -1;
    Sink main_, codes_;
    std::vector<uint8_t> row_codes_;
    std::vector<uint16_t> row_f16_;
    std::vector<float> scales_;
    std::vector<int32_t> sums_;
    std::vector<uint64_t> ids_;
    bool finished_ = false;
    std::mutex mutex_;
};

}  // namespace fastattr
