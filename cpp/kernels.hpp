// int8 dot-product scan kernels per instruction set, and the one chosen for this process.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTATTR_X86 1
// Per-function targets instead of -march=native, so one binary runs on any x86-64 and still uses
// the widest instructions the CPU it lands on offers (DESIGN.md §7).
#define FA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")))
#define FA_AVX2 __attribute__((target("avx2,fma,f16c")))
#elif defined(__aarch64__)
#include <arm_neon.h>
#define FASTATTR_NEON 1
#endif

namespace fastattr {

// One query prepared for the scan: signed codes, the same shifted by +128 for u8 x s8 VNNI, scale.
struct QueryCodes {
    const int8_t* s8;   // row_bytes, zero padded
    const uint8_t* u8;  // row_bytes, s8 + 128 (padding meets zero codes, so it adds nothing)
    float scale;
};

// Everything a kernel needs to scan rows [row_begin, row_end) for up to four queries. It offers each
// row whose score reaches the query's threshold; offer() may raise the threshold, which the kernel
// re-reads, so most rows cost one vector compare and no call.
struct ScanArgs {
    const int8_t* codes;  // row 0; rows are 64-byte aligned, row_bytes a multiple of 64
    uint64_t row_bytes;
    const float* scales;
    const int32_t* code_sums;
    uint32_t row_begin;
    uint32_t row_end;
    int n_queries;  // 1 to 4; search passes 1, 2 or 4, the AVX-512 kernel's tile shapes
    const QueryCodes* queries;
    float* thresholds;  // per query; scores >= threshold are offered
    void (*offer)(void* context, int query, uint32_t row, float score);
    void* context;
};

using ScanFn = void (*)(const ScanArgs&);
using DotF16Fn = float (*)(const uint16_t* half_row, const float* query, size_t dim);
using ToF16Fn = void (*)(const float* values, uint16_t* half_out, size_t n);

struct Kernel {
    const char* name;
    ScanFn scan;
    DotF16Fn dot_f16;
    ToF16Fn to_f16;
};

// Quantizes one row symmetrically: scale = max|x| / 127, code = round-to-nearest(x / scale).
// Returns the scale and writes the code sum; the rest of the row_bytes is zeroed.
inline float quantize_row(const float* x, size_t dim, int8_t* codes, size_t row_bytes, int32_t* code_sum) {
    float max_abs = 0.0f;
    for (size_t i = 0; i < dim; ++i) max_abs = std::fmax(max_abs, std::fabs(x[i]));
    std::memset(codes, 0, row_bytes);
    int32_t sum = 0;
    if (max_abs > 0.0f) {
        const float inverse = 127.0f / max_abs;
        for (size_t i = 0; i < dim; ++i) {
            float v = std::nearbyint(x[i] * inverse);
            v = std::fmin(127.0f, std::fmax(-127.0f, v));
            codes[i] = static_cast<int8_t>(v);
            sum += codes[i];
        }
    }
    *code_sum = sum;
    return max_abs / 127.0f;
}

inline float sanitize(float score) { return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score; }

// ---- IEEE half precision, portable (round to nearest even) ----------------------------------------

inline uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7FFFFFFFu;
    if (x >= 0x7F800000u) return static_cast<uint16_t>(sign | (x > 0x7F800000u ? 0x7E00u : 0x7C00u));
    if (x >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504
    if (x < 0x38800000u) {                                                   // half subnormal or zero
        if (x < 0x33000000u) return static_cast<uint16_t>(sign);
        const uint32_t mantissa = (x & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - (x >> 23);
        uint32_t h = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rest > half || (rest == half && (h & 1u))) ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = (x - 0x38000000u) >> 13;
    const uint32_t rest = x & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

inline float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
    uint32_t bits;
    if (exponent == 0) {
        const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// ---- scalar: the reference every other kernel must agree with -------------------------------------

inline void scan_scalar(const ScanArgs& a) {
    for (uint32_t row = a.row_begin; row < a.row_end; ++row) {
        const int8_t* codes = a.codes + static_cast<uint64_t>(row) * a.row_bytes;
        for (int q = 0; q < a.n_queries; ++q) {
            const int8_t* query = a.queries[q].s8;
            int32_t dot = 0;
            for (uint64_t i = 0; i < a.row_bytes; ++i) dot += static_cast<int32_t>(query[i]) * codes[i];
            const float score = sanitize(static_cast<float>(dot) * a.scales[row] * a.queries[q].scale);
            if (score >= a.thresholds[q]) a.offer(a.context, q, row, score);
        }
    }
}

inline float dot_f16_scalar(const uint16_t* half_row, const float* query, size_t dim) {
    float sum = 0.0f;
    for (size_t i = 0; i < dim; ++i) sum += half_to_float(half_row[i]) * query[i];
    return sum;
}

inline void to_f16_scalar(const float* values, uint16_t* half_out, size_t n) {
    for (size_t i = 0; i < n; ++i) half_out[i] = float_to_half(values[i]);
}

}  // namespace fastattr

#if FASTATTR_X86
#include "kernels_x86.hpp"
#endif

namespace fastattr {

#if FASTATTR_NEON
// NEON: widening s8 x s8 multiplies, pairwise-accumulated into int32 lanes (no dot-product extension needed).
inline void scan_neon(const ScanArgs& a) {
    for (uint32_t row = a.row_begin; row < a.row_end; ++row) {
        const int8_t* codes = a.codes + static_cast<uint64_t>(row) * a.row_bytes;
        for (int q = 0; q < a.n_queries; ++q) {
            const int8_t* query = a.queries[q].s8;
            int32x4_t acc = vdupq_n_s32(0);
            for (uint64_t i = 0; i < a.row_bytes; i += 16) {
                const int8x16_t c = vld1q_s8(codes + i), x = vld1q_s8(query + i);
                acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(c), vget_low_s8(x)));
                acc = vpadalq_s16(acc, vmull_high_s8(c, x));
            }
            const float score = sanitize(static_cast<float>(vaddvq_s32(acc)) * a.scales[row] * a.queries[q].scale);
            if (score >= a.thresholds[q]) a.offer(a.context, q, row, score);
        }
    }
}
#endif

// Picks the widest kernel this CPU runs, once per process. FASTATTR_KERNEL=scalar forces the
// reference kernel (tests compare kernels against it); on x86, FASTATTR_KERNEL=avx2 stops at AVX2
// where the CPU has it. Any other value (avx512_vnni, native, a typo), or avx2 on a CPU without it,
// leaves the choice to detection.
inline const Kernel& detect_kernel() {
    static const Kernel scalar{"scalar", scan_scalar, dot_f16_scalar, to_f16_scalar};
#if FASTATTR_X86
    static const Kernel avx2{"avx2", scan_avx2, dot_f16_avx2, to_f16_avx2};
    static const Kernel avx512{"avx512_vnni", scan_avx512_vnni, dot_f16_avx512, to_f16_avx2};
    __builtin_cpu_init();
    const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
    const bool has_vnni = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vnni");
    const char* wanted = std::getenv("FASTATTR_KERNEL");
    const std::string want = wanted ? wanted : "";
    if (want == "scalar") return scalar;
    if (want == "avx2" && has_avx2) return avx2;
    if (has_vnni) return avx512;
    if (has_avx2) return avx2;
    return scalar;
#elif FASTATTR_NEON
    static const Kernel neon{"neon", scan_neon, dot_f16_scalar, to_f16_scalar};
    const char* wanted = std::getenv("FASTATTR_KERNEL");
    if (wanted && std::string(wanted) == "scalar") return scalar;
    return neon;
#else
    return scalar;
#endif
}

inline const Kernel& active_kernel() {
    static const Kernel& chosen = detect_kernel();
    return chosen;
}

}  // namespace fastattr
