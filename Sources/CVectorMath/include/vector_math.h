/* vector_math.h — what the Swift kernels cannot spell for AVX-512: a lane permute (the table
 * lookup of the exponential below), unsigned lane maxima, a fused multiply-add, unaligned
 * loads and stores that surely inline, and byte lanes widened to 16-lane vectors. Static
 * inline functions that Swift imports on SIMD16<Float> / SIMD16<UInt32> and inlines into the
 * kernel that calls them (Sources/SegLossKernels/GeneralKernel.swift). Declared only where
 * the importing module is compiled for AVX-512 (the AVX-512 kernel level), empty elsewhere. */
#ifndef SEGLOSS_VECTOR_MATH_H
#define SEGLOSS_VECTOR_MATH_H

#if defined(__AVX512F__)
typedef float segloss_float16 __attribute__((ext_vector_type(16)));
typedef int segloss_int16 __attribute__((ext_vector_type(16)));
typedef unsigned int segloss_uint16 __attribute__((ext_vector_type(16)));
typedef float segloss_m512 __attribute__((vector_size(64)));
typedef int segloss_m512i __attribute__((vector_size(64)));

/* e^-|x|, lane by lane: 0 where -|x| < -87.34 (where e^-|x| is below the smallest normal
 * float, and for infinities); NaN lanes give meaningless values (the kernels reject NaN
 * logits by their bits, not by this).
 *
 * -|x| = (n + j/16) ln 2 + r, n and j integers (0 <= j < 16), |r| <= ln(2)/32 (in two
 * parts, Cody and Waite's reduction); e^-|x| = 2^n · T[j] · e^r, with T[j] = 2^(j/16)
 * rounded to float, looked up by one permute of a 16-float register, and e^r = 1 + q,
 * q = r + r^2/2 + r^3/6 (relative error below 1e-8 on that range), so the result is
 * fma(T[j], q, T[j]) with n added to its exponent: three multiply-adds and a multiply where
 * a polynomial over the whole of [-ln(2)/2, ln(2)/2] (VectorMath.swift's expApprox) takes
 * six multiply-adds.
 * At most 1.07 ulp from e^-|x| where that is normal (exhaustive: 1.0685 at x = -0x1.155374p-1;
 * Tests/SegLossCoreTests/VectorMathTests.swift). */
static inline __attribute__((always_inline)) segloss_float16 segloss_exp_negative_magnitude16(segloss_float16 x)
{
    const segloss_float16 table = {
        0x1p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f,
        0x1.306fe0p+0f, 0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f,
        0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
        0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f};
    const segloss_int16 sign = (segloss_int16)(int)0x80000000;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    segloss_float16 y = (segloss_float16)((segloss_int16)x | sign);
    /* 16 / ln 2: the integer 16n + j in the low bits of `shifted` */
    segloss_float16 shifted = __builtin_elementwise_fma(y, (segloss_float16)23.0831203f, (segloss_float16)magic);
    segloss_float16 m = shifted - magic;
    segloss_float16 r = __builtin_elementwise_fma(m, (segloss_float16)(-0.693359375f / 16), y);
    r = __builtin_elementwise_fma(m, (segloss_float16)(2.12194440e-4f / 16), r);
    segloss_float16 u = __builtin_elementwise_fma((segloss_float16)(1.0f / 6), r, (segloss_float16)0.5f);
    u = __builtin_elementwise_fma(u, r, (segloss_float16)1.0f);
    segloss_float16 q = u * r;
    segloss_int16 index = (segloss_int16)shifted; /* the permute reads the low 4 bits: j */
    segloss_float16 t = (segloss_float16)__builtin_ia32_permvarsf512((segloss_m512)table, (segloss_m512i)index);
    segloss_float16 result = __builtin_elementwise_fma(t, q, t);
    /* n = (16n + j) >> 4 (arithmetic), into the exponent field */
    segloss_int16 scale = ((index - (segloss_int16)0x4B400000) >> 4) << 23;
    segloss_int16 keep = ~(y < -0x1.5d589ep6f); /* all ones where kept, NaN included */
    return (segloss_float16)(((segloss_int16)result + scale) & keep);
}

/* The lane maxima of `largest` and the bits of -|x| as unsigned integers (below those of
 * -infinity exactly where x is finite: the kernels' test for NaN and infinite logits). */
static inline __attribute__((always_inline)) segloss_uint16 segloss_max_negative_magnitude_bits16(segloss_uint16 largest, segloss_float16 x)
{
    return __builtin_elementwise_max(largest, (segloss_uint16)x | (segloss_uint16)0x80000000u);
}

/* The lane maxima of `largest` and the bits of t + 0 (at most those of 1 exactly where t is
 * in [0, 1]: the kernels' range check of targets). */
static inline __attribute__((always_inline)) segloss_uint16 segloss_max_unit_bits16(segloss_uint16 largest, segloss_float16 t)
{
    return __builtin_elementwise_max(largest, (segloss_uint16)(t + 0.0f));
}

typedef float segloss_unaligned_float16 __attribute__((ext_vector_type(16), aligned(4), may_alias));

/* The 16 floats at p, which need only a float's alignment. The kernels' explicit loops load
 * and store through these: in one such loop Swift's loadUnaligned of a SIMD16<Float> stayed
 * a function call, and the fused logits call took 71 µs where it takes 57 with these (65,536
 * elements in cache, one thread). */
static inline __attribute__((always_inline)) segloss_float16 segloss_load16(const float *p)
{
    return *(const segloss_unaligned_float16 *)p;
}

/* Stores v as the 16 floats at p, which need only a float's alignment. */
static inline __attribute__((always_inline)) void segloss_store16(float *p, segloss_float16 v)
{
    *(segloss_unaligned_float16 *)p = v;
}

/* a * b + c with one rounding, lane by lane: the kernels' multiplyAdd on 16 lanes. */
static inline __attribute__((always_inline)) segloss_float16 segloss_fma16(segloss_float16 a, segloss_float16 b, segloss_float16 c)
{
    return __builtin_elementwise_fma(a, b, c);
}

typedef unsigned char segloss_bytes16 __attribute__((ext_vector_type(16), aligned(1), may_alias));

/* All ones in the lanes whose byte of the 16 at p is not 0, else 0 (a mask's valid lanes). */
static inline __attribute__((always_inline)) segloss_int16 segloss_nonzero_bytes16(const unsigned char *p)
{
    return __builtin_convertvector(*(const segloss_bytes16 *)p != (unsigned char)0, segloss_int16);
}

/* The 16 bytes at p as floats (uint8 targets). */
static inline __attribute__((always_inline)) segloss_float16 segloss_bytes_as_floats16(const unsigned char *p)
{
    return __builtin_convertvector(*(const segloss_bytes16 *)p, segloss_float16);
}

/* a where keep is all ones, b where it is 0, lane by lane. */
static inline __attribute__((always_inline)) segloss_float16 segloss_select16(segloss_int16 keep, segloss_float16 a, segloss_float16 b)
{
    return keep ? a : b;
}

/* The largest lane. */
static inline __attribute__((always_inline)) unsigned int segloss_reduce_max16(segloss_uint16 v)
{
    return __builtin_reduce_max(v);
}
#endif

#endif
