/* Shared by the prototypes kernel.c and tiled.c: the fixed-point conventions of densereg_data.raster_cpu
   (`_box`, `_edges`, `top_left_bias`, `_depth_key`), written once. */
#include <stdint.h>
#include <string.h>

#define SUB 8
#define ONE (1 << SUB)
#define NO_KEY (~(uint64_t)0)

static inline int64_t imin3(int64_t a, int64_t b, int64_t c) { int64_t m = a < b ? a : b; return m < c ? m : c; }
static inline int64_t imax3(int64_t a, int64_t b, int64_t c) { int64_t m = a > b ? a : b; return m > c ? m : c; }

/* uint64 key ordered as (depth, index): float32 depth bits made monotonic, then the index */
static inline uint64_t depth_key(double z, int64_t t) {
    float f = (float)z;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return ((uint64_t)bits << 32) | (uint64_t)t;
}

/* The pixel centres c0..c1, r0..r1 of a snapped triangle's box, clipped to [0, wmax] x [0, hmax];
   0 when the box holds none. */
static inline int box(int64_t x0, int64_t x1, int64_t x2, int64_t y0, int64_t y1, int64_t y2,
                      int64_t wmax, int64_t hmax, int64_t *c0, int64_t *c1, int64_t *r0, int64_t *r1) {
    *c0 = (imin3(x0, x1, x2) + (ONE - 1)) >> SUB; if (*c0 < 0) *c0 = 0;
    *c1 = imax3(x0, x1, x2) >> SUB; if (*c1 > wmax) *c1 = wmax;
    *r0 = (imin3(y0, y1, y2) + (ONE - 1)) >> SUB; if (*r0 < 0) *r0 = 0;
    *r1 = imax3(y0, y1, y2) >> SUB; if (*r1 > hmax) *r1 = hmax;
    return (*c0 <= *c1) & (*r0 <= *r1);
}

/* Exact edge functions at the sample (px, py): area = twice the signed area, sa = |area|, w_k > 0
   strictly inside, (dx_k, dy_k) the edge directions with the same sign, b_k the top-left biases
   ("w_k - b_k >= 0" is the inside test). */
typedef struct { int64_t area, sa, w0, w1, w2, dx0, dx1, dx2, dy0, dy1, dy2, b0, b1, b2; } edges_t;

static inline edges_t edges_at(int64_t x0, int64_t y0, int64_t x1, int64_t y1, int64_t x2, int64_t y2,
                               int64_t px, int64_t py) {
    edges_t e;
    int64_t e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1);
    int64_t e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2);
    int64_t e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0);
    e.area = e0 + e1 + e2;
    e.sa = e.area < 0 ? -e.area : e.area;
    int64_t m = e.area > 0 ? 0 : -1;
    e.w0 = (e0 ^ m) - m; e.w1 = (e1 ^ m) - m; e.w2 = (e2 ^ m) - m;
    e.dx0 = ((x2 - x1) ^ m) - m; e.dx1 = ((x0 - x2) ^ m) - m; e.dx2 = ((x1 - x0) ^ m) - m;
    e.dy0 = ((y2 - y1) ^ m) - m; e.dy1 = ((y0 - y2) ^ m) - m; e.dy2 = ((y1 - y0) ^ m) - m;
    e.b0 = !((e.dy0 < 0) | ((e.dy0 == 0) & (e.dx0 > 0)));
    e.b1 = !((e.dy1 < 0) | ((e.dy1 == 0) & (e.dx1 > 0)));
    e.b2 = !((e.dy2 < 0) | ((e.dy2 == 0) & (e.dx2 > 0)));
    return e;
}

static inline int inside(const edges_t *e) { return ((e->w0 - e->b0) | (e->w1 - e->b1) | (e->w2 - e->b2)) >= 0; }
