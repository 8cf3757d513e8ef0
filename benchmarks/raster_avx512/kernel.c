/* A prototype, not used by densereg: the z-buffer of densereg_data.raster_cpu (`zbuffer_fixed` and
   `finish`) in C with AVX-512 intrinsics, kept to measure what the same algorithm gains outside numba.
   Bit-identical to the numba kernel (same fixed-point edge functions, top-left rule, depth keys and
   float64 rounding; build with -ffp-contract=off). benchmarks/bench_raster_avx512.py builds, checks and
   times it; BENCHMARKS.md ("Rasterizer") has the results. Not thread-safe (static fragment buffer). */

#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#include "common.h"



static inline void win1(uint64_t *key, float *bary, int64_t k, int64_t t, double z,
                        int64_t w0, int64_t w1, int64_t w2, int64_t area) {
    uint64_t nk = depth_key(z, t);
    if (nk < key[k]) {
        key[k] = nk;
        double inv = 1.0 / (double)area;
        bary[3 * k] = (float)((double)w0 * inv);
        bary[3 * k + 1] = (float)((double)w1 * inv);
        bary[3 * k + 2] = (float)((double)w2 * inv);
    }
}

/* Fragments (covered samples) are collected here and depth-tested in batches by `flush`. */
#define CAP 4096
static uint64_t fkey[CAP + 8]; static int64_t fpix[CAP + 8]; static float fb0[CAP + 8], fb1[CAP + 8], fb2[CAP + 8];
static float scratch[4];
/* Branch-free depth test of n fragments: the key buffer keeps the minimum; barycentrics are written
   where the fragment wins, to a scratch slot where it loses. */
static inline void flush(uint64_t *key, float *bary, const uint64_t *fk, const int64_t *fp,
                         const float *b0, const float *b1, const float *b2, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t k = fp[i];
        uint64_t nk = fk[i], old = key[k];
        int win = nk < old;
        key[k] = win ? nk : old;
        float *dst = win ? bary + 3 * k : scratch;
        dst[0] = b0[i];
        dst[1] = b1[i];
        dst[2] = b2[i];
    }
}

/* The z-buffer: per triangle, scalar set-up (as the numba kernel's `_packed_triangle`), then its box
   in vectors of 8 samples (one row of 8 columns), covered samples compressed into the fragment
   buffer. Returns -1, or the index of a face with an out-of-range vertex index. */
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,bmi,bmi2")))
int64_t zbuffer_avx512(const int32_t *fx, const int32_t *fy, const float *fz, int64_t nv,
                       const int64_t *faces, int64_t nf, int64_t height, int64_t width, int cull,
                       uint64_t *key, float *bary) {
    int64_t n = height * width;
    memset(key, 0xFF, (size_t)n * 8);
    const int64_t wmax = width - 1, hmax = height - 1;
    const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i sign32 = _mm512_set1_epi64(0x80000000LL);
    int64_t nfr = 0;
    for (int64_t t = 0; t < nf; t++) {
        uint64_t i0 = (uint64_t)faces[3 * t], i1 = (uint64_t)faces[3 * t + 1], i2 = (uint64_t)faces[3 * t + 2];
        if ((i0 >= (uint64_t)nv) | (i1 >= (uint64_t)nv) | (i2 >= (uint64_t)nv)) return t;
        int64_t x0 = fx[i0], x1 = fx[i1], x2 = fx[i2], y0 = fy[i0], y1 = fy[i1], y2 = fy[i2];
        int64_t c0, c1, r0, r1;
        if (!box(x0, x1, x2, y0, y1, y2, wmax, hmax, &c0, &c1, &r0, &r1)) continue;
        edges_t e = edges_at(x0, y0, x1, y1, x2, y2, c0 << SUB, r0 << SUB);
        if (e.area == 0 || (cull && e.area > 0)) continue;
        int64_t w0 = e.w0, w1 = e.w1, w2 = e.w2, sa = e.sa, b0 = e.b0, b1 = e.b1, b2 = e.b2;
        int64_t dx0 = e.dx0, dx1 = e.dx1, dx2 = e.dx2, dy0 = e.dy0, dy1 = e.dy1, dy2 = e.dy2;
        double fz0 = fz[i0], fz1 = fz[i1], fz2 = fz[i2];
        if (c0 == c1 && r0 == r1) {
            if (inside(&e)) {
                double z = ((double)w0 * fz0 + (double)w1 * fz1 + (double)w2 * fz2) / (double)sa;
                win1(key, bary, r0 * width + c0, t, z, w0, w1, w2, sa);
            }
            continue;
        }
        double inv = 1.0 / (double)sa;
        double z0 = fz0 * inv, z1 = fz1 * inv, z2 = fz2 * inv;
        int64_t sx0 = -dy0 << SUB, sx1 = -dy1 << SUB, sx2 = -dy2 << SUB;
        int64_t sy0 = dx0 << SUB, sy1 = dx1 << SUB, sy2 = dx2 << SUB;
        __m512d vz0 = _mm512_set1_pd(z0), vz1 = _mm512_set1_pd(z1), vz2 = _mm512_set1_pd(z2);
        __m512d vinv = _mm512_set1_pd(inv);
        __m512i vt = _mm512_set1_epi64(t);
        __m512i ls0 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx0));
        __m512i ls1 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx1));
        __m512i ls2 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx2));
        __m512i vb0 = _mm512_set1_epi64(b0), vb1 = _mm512_set1_epi64(b1), vb2 = _mm512_set1_epi64(b2);
        for (int64_t cs = c0; cs <= c1; cs += 8) {
            int64_t ncols = c1 - cs + 1;
            __mmask8 valid = ncols >= 8 ? 0xFF : (__mmask8)((1u << ncols) - 1);
            int64_t off = cs - c0;
            __m512i E0 = _mm512_add_epi64(_mm512_set1_epi64(w0 + off * sx0), ls0);
            __m512i E1 = _mm512_add_epi64(_mm512_set1_epi64(w1 + off * sx1), ls1);
            __m512i E2 = _mm512_add_epi64(_mm512_set1_epi64(w2 + off * sx2), ls2);
            __m512i S0 = _mm512_set1_epi64(sy0), S1 = _mm512_set1_epi64(sy1), S2 = _mm512_set1_epi64(sy2);
            for (int64_t r = r0; r <= r1; r++) {
                __m512i orv = _mm512_or_si512(_mm512_or_si512(_mm512_sub_epi64(E0, vb0), _mm512_sub_epi64(E1, vb1)),
                                              _mm512_sub_epi64(E2, vb2));
                __mmask8 in = _mm512_mask_cmpge_epi64_mask(valid, orv, zero);
                {  /* every row, covered or not: a branch here mispredicts more than it saves */
                    __m512d d0 = _mm512_cvtepi64_pd(E0), d1 = _mm512_cvtepi64_pd(E1), d2 = _mm512_cvtepi64_pd(E2);
                    __m512d z = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(d0, vz0), _mm512_mul_pd(d1, vz1)),
                                              _mm512_mul_pd(d2, vz2));
                    __m256 zf = _mm512_cvtpd_ps(z);
                    __m512i bits = _mm512_cvtepu32_epi64(_mm256_castps_si256(zf));
                    __m512i neg = _mm512_srai_epi64(_mm512_slli_epi64(bits, 32), 63);  /* all ones if sign set */
                    bits = _mm512_xor_si512(bits, _mm512_or_si512(_mm512_and_si512(neg, _mm512_set1_epi64(0xFFFFFFFFLL)), sign32));
                    __m512i nk = _mm512_or_si512(_mm512_slli_epi64(bits, 32), vt);
                    int64_t base = r * width + cs;
                    __m512i pix = _mm512_add_epi64(_mm512_set1_epi64(base), lanes);
                    _mm512_storeu_si512(fkey + nfr, _mm512_maskz_compress_epi64(in, nk));
                    _mm512_storeu_si512(fpix + nfr, _mm512_maskz_compress_epi64(in, pix));
                    _mm256_storeu_ps(fb0 + nfr, _mm256_maskz_compress_ps(in, _mm512_cvtpd_ps(_mm512_mul_pd(d0, vinv))));
                    _mm256_storeu_ps(fb1 + nfr, _mm256_maskz_compress_ps(in, _mm512_cvtpd_ps(_mm512_mul_pd(d1, vinv))));
                    _mm256_storeu_ps(fb2 + nfr, _mm256_maskz_compress_ps(in, _mm512_cvtpd_ps(_mm512_mul_pd(d2, vinv))));
                    nfr += __builtin_popcount((unsigned)in);
                    if (__builtin_expect(nfr > CAP - 8, 0)) { flush(key, bary, fkey, fpix, fb0, fb1, fb2, nfr); nfr = 0; }
                }
                E0 = _mm512_add_epi64(E0, S0);
                E1 = _mm512_add_epi64(E1, S1);
                E2 = _mm512_add_epi64(E2, S2);
            }
        }
    }
    flush(key, bary, fkey, fpix, fb0, fb1, fb2, nfr);
    return -1;
}

/* Keys -> triangle index; U-V and parts from the barycentrics; zeros on background. uv_img may be
   the key buffer's memory (each pixel's key is read before its U-V is written). */
void finish(uint64_t *key, int32_t *tri, float *bary, const int64_t *faces, const double *uv,
            const uint8_t *face_parts, float *uv_img, uint8_t *parts_img, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t k;
        memcpy(&k, key + i, 8);
        if (k == NO_KEY) {
            tri[i] = -1;
            bary[3 * i] = 0; bary[3 * i + 1] = 0; bary[3 * i + 2] = 0;
            float zz[2] = {0, 0};
            memcpy(uv_img + 2 * i, zz, 8);
            parts_img[i] = 0;
            continue;
        }
        int32_t t = (int32_t)(k & 0xFFFFFFFFu);
        tri[i] = t;
        int64_t i0 = faces[3 * t], i1 = faces[3 * t + 1], i2 = faces[3 * t + 2];
        double b0 = bary[3 * i], b1 = bary[3 * i + 1], b2 = bary[3 * i + 2];
        float o[2];
        o[0] = (float)(b0 * uv[2 * i0] + b1 * uv[2 * i1] + b2 * uv[2 * i2]);
        o[1] = (float)(b0 * uv[2 * i0 + 1] + b1 * uv[2 * i1 + 1] + b2 * uv[2 * i2 + 1]);
        memcpy(uv_img + 2 * i, o, 8);
        parts_img[i] = face_parts[t];
    }
}

