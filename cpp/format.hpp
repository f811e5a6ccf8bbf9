// The index file layout: a fixed header with magic, version, sections and checksums, and its bounds checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "errors.hpp"

namespace fastattr {

// File layout, all little-endian (the only byte order fastattr builds for), in the order
// Writer::finish (writer.hpp) writes the sections:
//   [0, 4096)            Header (256 bytes, then zeros) so that data starts page-aligned
//   vectors_f16          only with kFlagVectorsF16: float16 rows (dim each) for exact re-ranking. When
//                        present it comes first: rows stream straight into the file while their codes
//                        wait in a scratch file, because the row count is unknown until finish
//   codes                count rows of row_bytes int8, row_bytes = dim rounded up to 64
//   scales               float32 per row: the row's max |x| / 127
//   code_sums            int32 per row: sum of the row's codes, for the VNNI +128 shift
//   ids                  uint64 external id per row
//   sorted_ids           the ids in ascending order ...
//   sorted_rows          ... and uint32 the row of each, so id lookups need no table built on open
// Every section starts on a 64-byte boundary (zeros fill the gaps) and the file ends on one. A reader
// takes each offset from the header and checks only alignment, bounds and overlap (parse_header), not
// this order. data_checksum covers [header_bytes, file_bytes) and is checked by verify() only, so
// that open stays O(1); header_checksum is checked on every open.

constexpr char kMagic[8] = {'\x89', 'F', 'A', 'I', 'D', 'X', '\r', '\n'};
constexpr uint32_t kVersionMajor = 1;
constexpr uint32_t kVersionMinor = 0;
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint64_t kAlign = 64;
constexpr uint32_t kQuantInt8MaxAbs = 1;  // symmetric int8, one max-abs scale per row, round to nearest
constexpr uint32_t kFlagVectorsF16 = 1;
// dim * 255 * 127 must fit an int32 accumulator, and rows are addressed with uint32.
constexpr uint64_t kMaxDim = 16384;
constexpr uint64_t kMaxCount = 0xFFFFFFFFull;

struct Section {
    uint64_t offset;
    uint64_t bytes;
};

struct Header {
    char magic[8];
    uint32_t version_major;
    uint32_t version_minor;
    uint64_t header_bytes;
    uint64_t file_bytes;
    uint64_t dim;
    uint64_t count;
    uint32_t quantization;
    uint32_t flags;
    uint64_t row_bytes;
    Section codes;
    Section scales;
    Section code_sums;
    Section ids;
    Section sorted_ids;
    Section sorted_rows;
    Section vectors_f16;
    uint64_t data_checksum;
    uint64_t header_checksum;
    uint8_t reserved[64];
};
static_assert(sizeof(Header) == 256, "the header layout is part of the file format");

inline uint64_t round_up(uint64_t n, uint64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// A streaming 64-bit checksum over 32-byte blocks in four independent lanes (fast enough to verify
// gigabytes in a fraction of a second). Inputs are padded to 64 bytes, so the tail is never partial.
class Checksum {
public:
    void update(const void* data, size_t n_bytes) {
        const auto* p = static_cast<const unsigned char*>(data);
        size_t i = 0;
        for (; i + 32 <= n_bytes; i += 32) {
            for (int lane = 0; lane < 4; ++lane) {
                uint64_t word;
                std::memcpy(&word, p + i + 8 * lane, 8);
                lane_[lane] = round(lane_[lane], word);
            }
        }
        for (; i < n_bytes; ++i) lane_[0] = round(lane_[0], p[i]);
        total_bytes_ += n_bytes;
    }
    uint64_t digest() const {
        uint64_t h = total_bytes_ * kP5;
        for (uint64_t lane : lane_) h = (h ^ round(0, lane)) * kP1 + kP4;
        h ^= h >> 33;
        h *= kP2;
        h ^= h >> 29;
        h *= kP3;
        return h ^ (h >> 32);
    }

private:
    static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full,
                              kP3 = 0x165667B19E3779F9ull, kP4 = 0x85EBCA77C2B2AE63ull,
                              kP5 = 0x27D4EB2F165667C5ull;
    static uint64_t round(uint64_t acc, uint64_t word) {
        acc += word * kP2;
        acc = (acc << 31) | (acc >> 33);
        return acc * kP1;
    }
    uint64_t lane_[4] = {kP1 + kP2, kP2, 0, 0 - kP1};
    uint64_t total_bytes_ = 0;
};

// Covers the whole header block (the struct and the zero padding after it) with the checksum
// field read as zero, so that no byte of the file escapes both checksums.
inline uint64_t header_checksum_of(const Header& header, const uint8_t* padding) {
    Header copy = header;
    copy.header_checksum = 0;
    Checksum sum;
    sum.update(&copy, sizeof(copy));
    sum.update(padding, kHeaderBytes - sizeof(Header));
    return sum.digest();
}

inline std::string rebuild_hint() { return " Rebuild it with fastattr.index.build (or `fastattr index build`)."; }

// Checks everything the header claims against itself and the real file size, before any section is
// touched, so that a foreign, truncated or corrupted file becomes an Error instead of a stray read.
inline Header parse_header(const void* data, uint64_t file_bytes, const std::string& where) {
    if (file_bytes < kHeaderBytes)
        fail(ErrorKind::format, where + " is not a fastattr index: it has " + std::to_string(file_bytes) +
                                    " bytes, fewer than the " + std::to_string(kHeaderBytes) + "-byte header.");
    Header h;
    std::memcpy(&h, data, sizeof(h));
    if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0)
        fail(ErrorKind::format, where + " is not a fastattr index (bad magic bytes)." + rebuild_hint());
    if (h.version_major != kVersionMajor)
        fail(ErrorKind::format, where + " has index format version " + std::to_string(h.version_major) +
                                    "; this fastattr reads version " + std::to_string(kVersionMajor) + "." +
                                    rebuild_hint());
    if (h.header_checksum != header_checksum_of(h, static_cast<const uint8_t*>(data) + sizeof(Header)))
        fail(ErrorKind::format, where + " is corrupted: the header checksum does not match." + rebuild_hint());
    auto bad = [&](const std::string& what) {
        fail(ErrorKind::format, where + " has an invalid header: " + what + "." + rebuild_hint());
    };
    if (h.header_bytes != kHeaderBytes) bad("header size " + std::to_string(h.header_bytes));
    if (h.file_bytes > file_bytes)
        fail(ErrorKind::format, where + " is truncated: the header declares " + std::to_string(h.file_bytes) +
                                    " bytes, the file has " + std::to_string(file_bytes) + "." + rebuild_hint());
    if (h.file_bytes != file_bytes)
        bad("it declares " + std::to_string(h.file_bytes) + " bytes but the file has " + std::to_string(file_bytes));
    if (h.dim == 0 || h.dim > kMaxDim) bad("dim " + std::to_string(h.dim) + " outside [1, 16384]");
    if (h.count == 0) bad("it holds no vectors");
    if (h.count > kMaxCount) bad("count " + std::to_string(h.count) + " above 2^32 - 1");
    if (h.quantization != kQuantInt8MaxAbs) bad("unknown quantization " + std::to_string(h.quantization));
    if ((h.flags & ~kFlagVectorsF16) != 0) bad("unknown flags " + std::to_string(h.flags));
    if (h.row_bytes != round_up(h.dim, kAlign)) bad("row size " + std::to_string(h.row_bytes));
    const bool has_f16 = (h.flags & kFlagVectorsF16) != 0;
    struct Expect {
        const char* name;
        const Section* section;
        uint64_t bytes;
    };
    // count <= 2^32 and row_bytes <= 16384, so none of these products can overflow.
    const Expect expected[] = {
        {"codes", &h.codes, h.count * h.row_bytes},     {"scales", &h.scales, h.count * 4},
        {"code_sums", &h.code_sums, h.count * 4},       {"ids", &h.ids, h.count * 8},
        {"sorted_ids", &h.sorted_ids, h.count * 8},     {"sorted_rows", &h.sorted_rows, h.count * 4},
        {"vectors_f16", &h.vectors_f16, has_f16 ? h.count * h.dim * 2 : 0},
    };
    for (const Expect& e : expected) {
        const Section& s = *e.section;
        if (s.bytes != e.bytes)
            bad(std::string("section ") + e.name + " has " + std::to_string(s.bytes) + " bytes, expected " +
                std::to_string(e.bytes));
        if (s.bytes == 0) continue;
        if (s.offset % kAlign != 0 || s.offset < kHeaderBytes || s.offset > h.file_bytes ||
            s.bytes > h.file_bytes - s.offset)
            bad(std::string("section ") + e.name + " lies outside the file");
    }
    // Sections must not overlap: compare every pair (seven sections, so this stays trivial).
    for (const Expect& a : expected)
        for (const Expect& b : expected) {
            if (a.section == b.section || a.section->bytes == 0 || b.section->bytes == 0) continue;
            if (a.section->offset < b.section->offset + b.section->bytes &&
                b.section->offset < a.section->offset + a.section->bytes)
                bad(std::string("sections ") + a.name + " and " + b.name + " overlap");
        }
    return h;
}

}  // namespace fastattr
