// A read-only memory map of one whole file; RAII and move-only.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "errors.hpp"

namespace fastattr {

class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            const int err = errno;
            if (err == ENOENT)
                fail(ErrorKind::format, "no index file at " + path + ": build one with fastattr.index.build.");
            fail(ErrorKind::io, "cannot open " + path + ": " + std::strerror(err));
        }
        struct stat st;
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            fail(ErrorKind::io, "cannot stat " + path + ": " + std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            fail(ErrorKind::format, path + " is not a regular file, so it cannot be an index.");
        }
        size_ = static_cast<uint64_t>(st.st_size);
        if (size_ > 0) {
            // MAP_SHARED read-only: the page cache is shared by every process that opens the index.
            void* p = map_huge_aligned(fd, size_);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                fail(ErrorKind::io, "cannot memory-map " + path + ": " + std::strerror(err));
            }
            data_ = static_cast<const uint8_t*>(p);
        }
        ::close(fd);  // the mapping keeps the file alive
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& other) noexcept { swap(other); }
    MappedFile& operator=(MappedFile&& other) noexcept {
        if (this != &other) {
            release();
            swap(other);
        }
        return *this;
    }
    ~MappedFile() { release(); }

    const uint8_t* data() const noexcept { return data_; }
    uint64_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

    // Asks the kernel to start reading the range in; a hint only, errors are harmless.
    void will_need(uint64_t offset, uint64_t bytes) const noexcept {
        if (data_ == nullptr || bytes == 0) return;
        const uint64_t page = 4096;
        const uint64_t start = offset / page * page;
        ::madvise(const_cast<uint8_t*>(data_) + start, offset + bytes - start, MADV_WILLNEED);
    }

private:
    static constexpr uint64_t kHugePage = uint64_t{2} << 20;

    // Maps the file at a 2 MB-aligned address and asks for huge pages, so that where the page
    // cache holds the file in 2 MB folios the kernel can map each with one TLB entry, and pages
    // read in on a fault are allocated as 2 MB folios. Linux 6.18 already aligns large file
    // mappings itself (a quiet full scan streamed 35 GB/s either way); this does not rely on it.
    static void* map_huge_aligned(int fd, uint64_t size) noexcept {
        if (size < kHugePage) return ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
        // Reserve size + 2 MB of address space, place the file at its first 2 MB boundary, and
        // give back the slack on both sides.
        void* reserved = ::mmap(nullptr, size + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (reserved == MAP_FAILED) return ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
        const uintptr_t base = reinterpret_cast<uintptr_t>(reserved);
        const uintptr_t aligned = (base + kHugePage - 1) & ~(kHugePage - 1);
        void* p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::munmap(reserved, size + kHugePage);
            errno = err;
            return MAP_FAILED;
        }
        const uint64_t page = 4096;
        const uintptr_t mapped_end = aligned + (size + page - 1) / page * page;
        if (aligned > base) ::munmap(reserved, aligned - base);
        if (base + size + kHugePage > mapped_end) ::munmap(reinterpret_cast<void*>(mapped_end), base + size + kHugePage - mapped_end);
#ifdef MADV_HUGEPAGE
        ::madvise(p, size, MADV_HUGEPAGE);  // a hint: refused where THP is off, and that is fine
#endif
        return p;
    }

    void release() noexcept {
        if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }
    void swap(MappedFile& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        std::swap(path_, other.path_);
    }

    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    std::string path_;
};

}  // namespace fastattr
