/* A second prototype, not used by densereg: the z-buffer of densereg_data.raster_cpu (`zbuffer_fixed` +
   `finish`) as a tiled (binned) rasterizer in C with AVX-512, to measure whether keeping the depth keys
   in a cache-resident tile reaches the 1024 x 1024 target. Bit-identical to `render_uv_parts`.
   (1) triage: per triangle, the snapped box, the exact area, culling and the one-pixel inside test;
       the survivors become records, counted into TW x TH tiles; (2) binning: each tile's list of
       records, in triangle order; (3) per tile: depth tests into a TW x TH key tile (depth bits, record
       index; records are in triangle order, so ties still go to the lower triangle), 8 columns at a time,
       aligned, as masked unsigned minima; then the tile's final pass writes the triangle index, the
       barycentrics (the exact edge functions at the pixel over twice the area, recomputed from the
       winning record), U-V and parts straight to the outputs.
   benchmarks/bench_raster_avx512.py builds, checks and times it (with -DSTAGES it also reports the time
   of each stage); BENCHMARKS.md ("Why 1024 misses") has the results. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#include "common.h"

#ifdef STAGES
#include <time.h>
/* nanoseconds spent in triage, binning, depth tests and final passes, summed over calls */
double stage_ns[4];
static inline double now_ns(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec * 1e9 + ts.tv_nsec; }
#define MARK(v) double v = now_ns()
#define ADD(i, x) stage_ns[i] += (x)
#else
#define MARK(v)
#define ADD(i, x)
#endif

/* tiles of 256 x 16 pixels (a 32 KiB key tile); 64 x 32 and 1024 x 4 or x 8 measured no faster */
#define TWS 8
#define THS 4
#define TW (1 << TWS)
#define TH (1 << THS)

/* a triangle that survives the triage: snapped vertices, pixel-centre box, index, one-pixel flag,
   vertex indices */
typedef struct {
    int32_t x0, y0, x1, y1, x2, y2;
    int32_t c0, c1, r0, r1;
    int32_t t, one;
    int32_t i0, i1, i2, pad;
} rec_t;


#define TGT __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,bmi,bmi2")))

/* Triangle index, barycentrics and (with with_uv) U-V and parts images of the snapped mesh, as
   `render_uv_parts`. Returns -1, -2 (out of memory) or the first face with an out-of-range index. */
TGT int64_t zbuffer_tiled(const int32_t *fx, const int32_t *fy, const float *fz, int64_t nv,
                          const int64_t *faces, int64_t nf, int64_t height, int64_t width, int cull,
                          const double *uv, const uint8_t *face_parts, int with_uv,
                          int32_t *tri, float *bary, float *uv_img, uint8_t *parts_img) {
    MARK(t0);
    const int64_t wmax = width - 1, hmax = height - 1;
    const int64_t ntx = (width + TW - 1) >> TWS, nty = (height + TH - 1) >> THS;
    const int64_t ntiles = ntx * nty;
    rec_t *recs = (rec_t *)malloc((size_t)(nf > 0 ? nf : 1) * sizeof(rec_t));
    int32_t *count = (int32_t *)calloc((size_t)ntiles + 1, sizeof(int32_t));
    if (!recs || !count) { free(recs); free(count); return -2; }
    int64_t nr = 0, nbin = 0;
    for (int64_t t = 0; t < nf; t++) {
        uint64_t i0 = (uint64_t)faces[3 * t], i1 = (uint64_t)faces[3 * t + 1], i2 = (uint64_t)faces[3 * t + 2];
        if ((i0 >= (uint64_t)nv) | (i1 >= (uint64_t)nv) | (i2 >= (uint64_t)nv)) { free(recs); free(count); return t; }
        int64_t x0 = fx[i0], x1 = fx[i1], x2 = fx[i2], y0 = fy[i0], y1 = fy[i1], y2 = fy[i2];
        int64_t c0, c1, r0, r1;
        if (!box(x0, x1, x2, y0, y1, y2, wmax, hmax, &c0, &c1, &r0, &r1)) continue;
        edges_t e = edges_at(x0, y0, x1, y1, x2, y2, c0 << SUB, r0 << SUB);
        if (e.area == 0 || (cull && e.area > 0)) continue;
        int one = (c0 == c1) & (r0 == r1);
        if (one && !inside(&e)) continue;
        rec_t *q = recs + nr++;
        q->x0 = (int32_t)x0; q->y0 = (int32_t)y0; q->x1 = (int32_t)x1; q->y1 = (int32_t)y1;
        q->x2 = (int32_t)x2; q->y2 = (int32_t)y2;
        q->c0 = (int32_t)c0; q->c1 = (int32_t)c1; q->r0 = (int32_t)r0; q->r1 = (int32_t)r1;
        q->t = (int32_t)t; q->one = one; q->i0 = (int32_t)i0; q->i1 = (int32_t)i1; q->i2 = (int32_t)i2;
        int64_t tx0 = c0 >> TWS, tx1 = c1 >> TWS, ty0 = r0 >> THS, ty1 = r1 >> THS;
        for (int64_t ty = ty0; ty <= ty1; ty++)
            for (int64_t tx = tx0; tx <= tx1; tx++) count[ty * ntx + tx]++;
        nbin += (tx1 - tx0 + 1) * (ty1 - ty0 + 1);
    }
    MARK(t1);
    /* each tile's records: offsets, then the records in triangle order */
    int32_t *start = (int32_t *)malloc((size_t)(ntiles + 1) * sizeof(int32_t));
    int32_t *bins = (int32_t *)malloc((size_t)(nbin > 0 ? nbin : 1) * sizeof(int32_t));
    if (!start || !bins) { free(recs); free(count); free(start); free(bins); return -2; }
    int64_t acc = 0;
    for (int64_t i = 0; i < ntiles; i++) { start[i] = (int32_t)acc; acc += count[i]; count[i] = start[i]; }
    start[ntiles] = (int32_t)acc;
    for (int64_t j = 0; j < nr; j++) {
        const rec_t *q = recs + j;
        int64_t tx0 = q->c0 >> TWS, tx1 = q->c1 >> TWS, ty0 = q->r0 >> THS, ty1 = q->r1 >> THS;
        for (int64_t ty = ty0; ty <= ty1; ty++)
            for (int64_t tx = tx0; tx <= tx1; tx++) bins[count[ty * ntx + tx]++] = (int32_t)j;
    }

    MARK(t2);
    uint64_t keys[TH * TW] __attribute__((aligned(64)));
    const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i sign32 = _mm512_set1_epi64(0x80000000LL);
    const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFFLL);
    const __m512i allones = _mm512_set1_epi64(-1);
    for (int64_t ty = 0; ty < nty; ty++) {
        for (int64_t tx = 0; tx < ntx; tx++) {
            const int64_t X0 = tx << TWS, Y0 = ty << THS;
            const int64_t tw = width - X0 < TW ? width - X0 : TW, th = height - Y0 < TH ? height - Y0 : TH;
            for (int64_t i = 0; i < th * TW; i += 8) _mm512_store_si512(keys + i, allones);
            const int32_t *b = bins + start[ty * ntx + tx], *be = bins + start[ty * ntx + tx + 1];
            for (; b < be; b++) {
                const rec_t *q = recs + *b;
                int64_t x0 = q->x0, y0 = q->y0, x1 = q->x1, y1 = q->y1, x2 = q->x2, y2 = q->y2;
                const int64_t jrec = *b;
                double fz0 = fz[q->i0], fz1 = fz[q->i1], fz2 = fz[q->i2];
                if (q->one) {
                    edges_t e = edges_at(x0, y0, x1, y1, x2, y2, (int64_t)q->c0 << SUB, (int64_t)q->r0 << SUB);
                    double z = ((double)e.w0 * fz0 + (double)e.w1 * fz1 + (double)e.w2 * fz2) / (double)e.sa;
                    uint64_t nk = depth_key(z, jrec);
                    uint64_t *k = keys + (q->r0 - Y0) * TW + (q->c0 - X0);
                    if (nk < *k) *k = nk;
                    continue;
                }
                int64_t cs = q->c0 > X0 ? q->c0 : X0, ce = q->c1 < X0 + tw - 1 ? q->c1 : X0 + tw - 1;
                int64_t rs = q->r0 > Y0 ? q->r0 : Y0, re = q->r1 < Y0 + th - 1 ? q->r1 : Y0 + th - 1;
                edges_t e = edges_at(x0, y0, x1, y1, x2, y2, cs << SUB, rs << SUB);
                int64_t w0 = e.w0, w1 = e.w1, w2 = e.w2, sa = e.sa, b0 = e.b0, b1 = e.b1, b2 = e.b2;
                int64_t dx0 = e.dx0, dx1 = e.dx1, dx2 = e.dx2, dy0 = e.dy0, dy1 = e.dy1, dy2 = e.dy2;
                double inv = 1.0 / (double)sa;
                __m512d vz0 = _mm512_set1_pd(fz0 * inv), vz1 = _mm512_set1_pd(fz1 * inv), vz2 = _mm512_set1_pd(fz2 * inv);
                int64_t sx0 = -dy0 << SUB, sx1 = -dy1 << SUB, sx2 = -dy2 << SUB;
                int64_t sy0 = dx0 << SUB, sy1 = dx1 << SUB, sy2 = dx2 << SUB;
                __m512i vt = _mm512_set1_epi64(jrec);
                __m512i ls0 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx0));
                __m512i ls1 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx1));
                __m512i ls2 = _mm512_mullo_epi64(lanes, _mm512_set1_epi64(sx2));
                __m512i S0 = _mm512_set1_epi64(sy0), S1 = _mm512_set1_epi64(sy1), S2 = _mm512_set1_epi64(sy2);
                for (int64_t cc = X0 + ((cs - X0) & ~7); cc <= ce; cc += 8) {
                    uint32_t lo = cs > cc ? (uint32_t)(cs - cc) : 0u;
                    uint32_t hi = ce - cc >= 7 ? 8u : (uint32_t)(ce - cc + 1);
                    __mmask8 valid = (__mmask8)(((1u << hi) - 1) & ~((1u << lo) - 1));
                    int64_t off = cc - cs;
                    __m512i E0 = _mm512_add_epi64(_mm512_set1_epi64(w0 - b0 + off * sx0), ls0);
                    __m512i E1 = _mm512_add_epi64(_mm512_set1_epi64(w1 - b1 + off * sx1), ls1);
                    __m512i E2 = _mm512_add_epi64(_mm512_set1_epi64(w2 - b2 + off * sx2), ls2);
                    __m512i vb0 = _mm512_set1_epi64(b0), vb1 = _mm512_set1_epi64(b1), vb2 = _mm512_set1_epi64(b2);
                    uint64_t *krow = keys + (rs - Y0) * TW + (cc - X0);
                    for (int64_t r = rs; r <= re; r++, krow += TW) {
                        __m512i orv = _mm512_or_si512(_mm512_or_si512(E0, E1), E2);
                        __mmask8 in = _mm512_mask_cmpge_epi64_mask(valid, orv, zero);
                        {
                            __m512d d0 = _mm512_cvtepi64_pd(_mm512_add_epi64(E0, vb0));
                            __m512d d1 = _mm512_cvtepi64_pd(_mm512_add_epi64(E1, vb1));
                            __m512d d2 = _mm512_cvtepi64_pd(_mm512_add_epi64(E2, vb2));
                            __m512d z = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(d0, vz0), _mm512_mul_pd(d1, vz1)),
                                                      _mm512_mul_pd(d2, vz2));
                            __m256 zf = _mm512_cvtpd_ps(z);
                            __m512i bits = _mm512_cvtepu32_epi64(_mm256_castps_si256(zf));
                            __m512i neg = _mm512_srai_epi64(_mm512_slli_epi64(bits, 32), 63);
                            bits = _mm512_xor_si512(bits, _mm512_or_si512(_mm512_and_si512(neg, low32), sign32));
                            __m512i nk = _mm512_or_si512(_mm512_slli_epi64(bits, 32), vt);
                            __m512i old = _mm512_load_si512(krow);
                            _mm512_store_si512(krow, _mm512_mask_min_epu64(old, in, old, nk));
                        }
                        E0 = _mm512_add_epi64(E0, S0);
                        E1 = _mm512_add_epi64(E1, S1);
                        E2 = _mm512_add_epi64(E2, S2);
                    }
                }
            }
            MARK(ta);
            /* final pass of the tile */
            for (int64_t r = 0; r < th; r++) {
                const int64_t R = Y0 + r;
                const uint64_t *krow = keys + r * TW;
                int32_t *trow = tri + R * width + X0;
                float *brow = bary + 3 * (R * width + X0);
                float *urow = uv_img + 2 * (R * width + X0);
                uint8_t *prow = parts_img + R * width + X0;
                for (int64_t c = 0; c < tw; c += 8) {
                    int64_t n = tw - c < 8 ? tw - c : 8;
                    __mmask8 valid = (__mmask8)((1u << n) - 1);
                    __m512i k = _mm512_maskz_loadu_epi64(valid, krow + c);
                    __mmask8 bg = _mm512_mask_cmpeq_epu64_mask(valid, k, allones);
                    if (bg == valid) {
                        _mm256_mask_storeu_epi32(trow + c, valid, _mm256_set1_epi32(-1));
                        __mmask16 m16 = (__mmask16)((1u << (n < 6 ? 3 * n : 16)) - 1);
                        __mmask8 m8 = (__mmask8)(n > 5 ? (1u << (3 * n - 16)) - 1 : 0);
                        _mm512_mask_storeu_ps(brow + 3 * c, m16, _mm512_setzero_ps());
                        _mm256_mask_storeu_ps(brow + 3 * c + 16, m8, _mm256_setzero_ps());
                        if (with_uv) {
                            _mm512_mask_storeu_ps(urow + 2 * c, (__mmask16)((1u << (2 * n)) - 1), _mm512_setzero_ps());
                            _mm_mask_storeu_epi8(prow + c, (__mmask16)valid, _mm_setzero_si128());
                        }
                        continue;
                    }
                    for (int64_t j = 0; j < n; j++) {
                        const int64_t i = c + j;
                        const uint64_t kk = krow[i];
                        if (kk == NO_KEY) {
                            trow[i] = -1;
                            brow[3 * i] = 0; brow[3 * i + 1] = 0; brow[3 * i + 2] = 0;
                            if (with_uv) { urow[2 * i] = 0; urow[2 * i + 1] = 0; prow[i] = 0; }
                            continue;
                        }
                        const rec_t *q = recs + (kk & 0xFFFFFFFFu);
                        int64_t t = q->t;
                        trow[i] = (int32_t)t;
                        int64_t x0 = q->x0, y0 = q->y0, x1 = q->x1, y1 = q->y1, x2 = q->x2, y2 = q->y2;
                        edges_t e = edges_at(x0, y0, x1, y1, x2, y2, (X0 + i) << SUB, R << SUB);
                        double inv = 1.0 / (double)e.sa;
                        float fb0 = (float)((double)e.w0 * inv);
                        float fb1 = (float)((double)e.w1 * inv);
                        float fb2 = (float)((double)e.w2 * inv);
                        brow[3 * i] = fb0; brow[3 * i + 1] = fb1; brow[3 * i + 2] = fb2;
                        if (with_uv) {
                            int64_t i0 = q->i0, i1 = q->i1, i2 = q->i2;
                            double d0 = fb0, d1 = fb1, d2 = fb2;
                            urow[2 * i] = (float)(d0 * uv[2 * i0] + d1 * uv[2 * i1] + d2 * uv[2 * i2]);
                            urow[2 * i + 1] = (float)(d0 * uv[2 * i0 + 1] + d1 * uv[2 * i1 + 1] + d2 * uv[2 * i2 + 1]);
                            prow[i] = face_parts[t];
                        }
                    }
                }
            }
            MARK(tb);
            ADD(3, tb - ta);
        }
    }
    MARK(t3);
    ADD(0, t1 - t0); ADD(1, t2 - t1); ADD(2, t3 - t2);
    free(recs); free(count); free(start); free(bins);
    return -1;
}
