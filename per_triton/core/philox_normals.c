/* The CPU direction stream of per-triton (docs/design.md, "The CPU stream").
 *
 * v[k, j] = normal number (j mod 4) of Philox4x32-10 (Salmon et al., SC 2011) at
 * counter (j / 4, k, 0, 0) under the 64-bit key (k0, k1), through Box-Muller:
 *   words (w0, w1) -> (z0, z1), (w2, w3) -> (z2, z3), with
 *   r = sqrt(max(-2 ln u, 2^-24)),  u = ((w0 >> 8) + 1) * 2^-24 in (0, 1],
 *   (the floor changes only u = 1, whose radius would be 0: r >= 2^-12, so no
 *   direction row is all zeros at d <= 2),
 *   angle = quadrant (w1 >> 30) * pi/2 + ((w1 >> 7) mod 2^23 + 1/2) * (pi/2) * 2^-23,
 *   z0 = r cos(angle), z1 = r sin(angle).
 * A pure function of (key, k, j): any block of rows and columns is computed on its own.
 *
 * Every float operation is a single IEEE float32 operation in a fixed order (build
 * with -ffp-contract=off and without -ffast-math): the logarithm, sine and cosine
 * are the polynomials below, not libm, so the values are the same on every x86-64
 * and ARM machine, for every vector width, and equal bit for bit to the torch
 * implementation in per_triton/core/normals.py (the fallback when no C compiler is found).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define M0 0xD2511F53u
#define M1 0xCD9E8D57u
#define W0 0x9E3779B9u
#define W1 0xBB67AE85u
#define LANES 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(PER_NO_CLONES)
#define PER_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PER_CLONES
#endif

static inline float as_float(uint32_t x) { float f; memcpy(&f, &x, 4); return f; }
static inline uint32_t as_bits(float f) { uint32_t x; memcpy(&x, &f, 4); return x; }

/* sqrt(-2 ln u) for u = ((w >> 8) + 1) * 2^-24: ln by u = m 2^e, m in [sqrt(1/2), sqrt(2)),
 * ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172, series to t^9 (error < 4e-10). */
static inline float radius(uint32_t w) {
    float u = (float)(int32_t)((w >> 8) + 1u) * 5.9604644775390625e-08f;
    uint32_t ix = as_bits(u);
    /* branch-free (vectorises without masks): halve m and bump e when m > sqrt(2) */
    uint32_t mb = (ix & 0x7fffffu) | 0x3f800000u;
    uint32_t big = mb > 0x3fb504f3u; /* the bits of 1.41421354f */
    int32_t e = (int32_t)((ix >> 23) & 0xffu) - 127 + (int32_t)big;
    float m = as_float(mb - (big << 23));
    float t = (m - 1.0f) / (m + 1.0f);
    float t2 = t * t;
    float p = t2 * 0.111111112f;
    p = (p + 0.142857149f) * t2;
    p = (p + 0.200000003f) * t2;
    p = (p + 0.333333343f) * t2;
    p = p + 1.0f;
    float ln_m = (t + t) * p;
    float fe = (float)e;
    float ln_u = fe * 0.693145752f + (ln_m + fe * 1.42860677e-06f); /* ln 2, hi + lo */
    float r2 = ln_u * -2.0f;
    return sqrtf(r2 < 5.9604644775390625e-08f ? 5.9604644775390625e-08f : r2); /* floor 2^-24 */
}

/* One Box-Muller pair; the angle's sine and cosine by Taylor series on [-pi/4, pi/4]
 * about pi/4 within the quadrant (errors < 2e-9 and 3e-8). */
static inline void box_muller(uint32_t w0, uint32_t w1, float *z0, float *z1) {
    float r = radius(w0);
    uint32_t q = w1 >> 30;
    float x = ((float)(int32_t)((w1 >> 7) & 0x7fffffu) + 0.5f) * 1.87253681e-07f - 0.785398185f;
    float x2 = x * x;
    float s = x2 * 2.75573188e-06f;
    s = (s - 1.98412701e-04f) * x2;
    s = (s + 8.33333377e-03f) * x2;
    s = (s - 0.166666672f) * x2;
    s = (s + 1.0f) * x;
    float c = x2 * -2.75573188e-07f;
    c = (c + 2.48015876e-05f) * x2;
    c = (c - 1.38888892e-03f) * x2;
    c = (c + 4.16666679e-02f) * x2;
    c = (c - 0.5f) * x2;
    c = c + 1.0f;
    float sin_a = (s + c) * 0.707106769f; /* angle within the quadrant: pi/4 + x */
    float cos_a = (c - s) * 0.707106769f;
    /* quadrant q: (cos, sin) = (cos_a, sin_a) turned by q quarter turns, branch-free:
     * swap the pair for odd q, then flip the signs (cos: q = 1, 2; sin: q = 2, 3) */
    uint32_t swap = 0u - (q & 1u);
    uint32_t cb = as_bits(cos_a), sb = as_bits(sin_a);
    float cq = as_float(((cb & ~swap) | (sb & swap)) ^ (((q ^ (q >> 1)) & 1u) << 31));
    float sq = as_float(((sb & ~swap) | (cb & swap)) ^ ((q >> 1) << 31));
    *z0 = r * cq;
    *z1 = r * sq;
}

static inline void philox(uint32_t k0, uint32_t k1, uint32_t c[4]) {
    uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    for (int i = 0; i < 10; i++) {
        uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += W0;
        k1 += W1;
    }
    c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
}

static void one_group(uint32_t k0, uint32_t k1, uint32_t row, uint32_t group, float z[4]) {
    uint32_t c[4] = {group, row, 0u, 0u};
    philox(k0, k1, c);
    box_muller(c[0], c[1], &z[0], &z[1]);
    box_muller(c[2], c[3], &z[2], &z[3]);
}

/* Groups g0 .. g0 + n - 1 of one row into o[0 .. 4n): batches of LANES, so the
 * compiler vectorises the Philox rounds and the Box-Muller arithmetic across groups. */
PER_CLONES
static void row_groups(uint32_t k0, uint32_t k1, uint32_t row, int64_t g0, int64_t n, float *o) {
    uint32_t w[4][LANES];
    float z[4][LANES];
    for (int64_t g = 0; g < n; g += LANES) {
        int m = n - g < LANES ? (int)(n - g) : LANES;
        for (int l = 0; l < LANES; l++) {
            uint32_t c[4] = {(uint32_t)(g0 + g + l), row, 0u, 0u};
            philox(k0, k1, c);
            w[0][l] = c[0]; w[1][l] = c[1]; w[2][l] = c[2]; w[3][l] = c[3];
        }
        for (int l = 0; l < LANES; l++) box_muller(w[0][l], w[1][l], &z[0][l], &z[1][l]);
        for (int l = 0; l < LANES; l++) box_muller(w[2][l], w[3][l], &z[2][l], &z[3][l]);
        for (int l = 0; l < m; l++) {
            float *p = o + 4 * (g + l);
            p[0] = z[0][l]; p[1] = z[1][l]; p[2] = z[2][l]; p[3] = z[3][l];
        }
    }
}

/* v[row0 + r, col0 + i] -> out[r * ld + i] for r < rows, i < cols (any col0, cols). */
void per_triton_normals(uint32_t k0, uint32_t k1, int64_t row0, int64_t rows, int64_t col0,
                        int64_t cols, float *out, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) {
        uint32_t row = (uint32_t)(row0 + r);
        float *o = out + r * ld - col0; /* o[j] is v[row, j] */
        int64_t j = col0, end = col0 + cols;
        float z[4];
        if (j < end && (j & 3)) { /* partial first group */
            one_group(k0, k1, row, (uint32_t)(j >> 2), z);
            int64_t stop = (j | 3) + 1 < end ? (j | 3) + 1 : end;
            for (; j < stop; j++) o[j] = z[j & 3];
        }
        int64_t full = (end - j) >> 2;
        if (full > 0) {
            row_groups(k0, k1, row, j >> 2, full, o + j);
            j += 4 * full;
        }
        if (j < end) { /* partial last group */
            one_group(k0, k1, row, (uint32_t)(j >> 2), z);
            for (; j < end; j++) o[j] = z[j & 3];
        }
    }
}
