/* Resampling one 8-bit plane, for imaging.render.Planes: Pillow's resample, the same
 * numbers in a faster order.
 *
 * The filters, their support, the coefficients (computed in double, normalised, then fixed
 * point with 22 fraction bits), the rounding and the clip to 8 bits after each pass are
 * Pillow's (src/libImaging/Resample.c, HPND licence), and so are the passes and their order
 * (Pillow 13's), so the output is Pillow's to the bit (tests/unit/test_resample.py
 * compares). What differs is the loop order of the vertical
 * pass: Pillow sums each output pixel's taps down a column; here each tap's source row is
 * added to a row of sums, a loop over contiguous memory that the compiler vectorises. The
 * horizontal pass takes its taps in groups of a fixed count, eight rows at once with the
 * rows in the lanes (the rows interleaved first, so a tap of all eight is one load; AVX2
 * where the CPU has it). For a preview (a 2250x1500 luma plane to 2048x1365, bilinear, and
 * its chroma) 3.5 ms against 7.9 without AVX2 and about 24 in Pillow.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_transpose8.h" /* and emmintrin.h where there is SSE2 */

#define PRECISION_BITS (32 - 8 - 2)

/* Pillow's Image.Resampling values */
enum { F_LANCZOS = 1, F_BILINEAR = 2, F_BICUBIC = 3, F_BOX = 4, F_HAMMING = 5 };

static double box_filter(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double bilinear_filter(double x) {
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0)
        x = -x;
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0)
        return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    return -3.0 <= x && x < 3.0 ? sinc_filter(x) * sinc_filter(x / 3) : 0.0;
}

struct filter {
    double (*fn)(double);
    double support;
};

static int filter_for(int kind, struct filter *f) {
    switch (kind) {
    case F_BOX: *f = (struct filter){box_filter, 0.5}; return 1;
    case F_BILINEAR: *f = (struct filter){bilinear_filter, 1.0}; return 1;
    case F_HAMMING: *f = (struct filter){hamming_filter, 1.0}; return 1;
    case F_BICUBIC: *f = (struct filter){bicubic_filter, 2.0}; return 1;
    case F_LANCZOS: *f = (struct filter){lanczos_filter, 3.0}; return 1;
    default: return 0;
    }
}

/* Pillow's precompute_coeffs and normalize_coeffs_8bpc in one: for each output position,
 * the first source sample and the count of taps, and ksize fixed-point weights (zero past
 * the count). Returns ksize, 0 when out of memory. */
static int coeffs(int in_size, float in0, float in1, int out_size, const struct filter *f,
                  int **bounds_out, int32_t **kk_out) {
    double scale = (double)(in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size > INT_MAX / (ksize * (int)sizeof(double)))
        return 0;
    double *k = malloc(sizeof(double) * (size_t)ksize);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)ksize);
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    if (k == NULL || kk == NULL || bounds == NULL) {
        free(k);
        free(kk);
        free(bounds);
        return 0;
    }
    double inv = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        int x = 0;
        for (; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * inv);
            k[x] = w;
            ww += w;
        }
        if (ww != 0.0) {
            for (x = 0; x < xmax; x++)
                k[x] /= ww;
        }
        int32_t *out = kk + (size_t)xx * (size_t)ksize;
        for (x = 0; x < ksize; x++) {
            double v = x < xmax ? k[x] : 0.0;
            out[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                           : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

struct job {
    const uint8_t *src;
    size_t stride;
    int in_w, in_h, out_w, out_h, filter;
    float box[4];
    uint8_t *dst;
};

/* Every position's taps made ``taps`` long, in place: a window that would run past the
 * row's end starts earlier, its weights moved along and zeros put before them. The sums
 * are the same (a zero weight adds nothing). 0 when a window cannot hold its taps. */
static int fixed_taps(int *bounds, int32_t *kk, int ksize, int out_size, int in_size, int taps) {
    if (taps > ksize)
        return 0;
    for (int xx = 0; xx < out_size; xx++) {
        int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
        int32_t *k = kk + (size_t)xx * (size_t)ksize;
        if (n > taps)
            return 0;
        int shift = xmin + taps > in_size ? xmin + taps - in_size : 0;
        if (shift) {
            memmove(k + shift, k, sizeof(int32_t) * (size_t)n);
            memset(k, 0, sizeof(int32_t) * (size_t)shift);
            bounds[2 * xx] = xmin - shift;
        }
        /* past n the weights are zero already (coeffs) */
    }
    return 1;
}

static inline __attribute__((always_inline)) void horizontal(
        const uint8_t *src, size_t stride, size_t rows, uint8_t *dst, size_t w, const int *bx,
        const int32_t *kx, int ksx, const int taps) {
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const uint8_t *in0 = src + r * stride;
        const uint8_t *in1 = in0 + stride, *in2 = in1 + stride, *in3 = in2 + stride;
        uint8_t *out = dst + r * w;
        for (size_t xx = 0; xx < w; xx++) {
            const int xmin = bx[2 * xx];
            const int32_t *k = kx + xx * (size_t)ksx;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0, s3 = s0;
            for (int x = 0; x < taps; x++) {
                const int32_t kv = k[x];
                s0 += in0[xmin + x] * kv;
                s1 += in1[xmin + x] * kv;
                s2 += in2[xmin + x] * kv;
                s3 += in3[xmin + x] * kv;
            }
            out[xx] = clip8(s0);
            out[w + xx] = clip8(s1);
            out[2 * w + xx] = clip8(s2);
            out[3 * w + xx] = clip8(s3);
        }
    }
    for (; r < rows; r++) {
        const uint8_t *in = src + r * stride;
        uint8_t *out = dst + r * w;
        for (size_t xx = 0; xx < w; xx++) {
            const int xmin = bx[2 * xx];
            const int32_t *k = kx + xx * (size_t)ksx;
            int32_t s0 = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < taps; x++)
                s0 += in[xmin + x] * k[x];
            out[xx] = clip8(s0);
        }
    }
}

/* Eight rows of ``src`` interleaved, column after column: band[x * 8 + i] is row i's x. */
static void interleave8(const uint8_t *src, size_t stride, size_t in_w, uint8_t *band) {
    size_t x = 0;
#if defined(__SSE2__)
    for (; x + 16 <= in_w; x += 16) {
        __m128i a[8];
        for (int i = 0; i < 8; i++)
            a[i] = _mm_loadu_si128((const __m128i *)(const void *)(src + (size_t)i * stride + x));
        __m128i t[8], u[8];
        for (int i = 0; i < 4; i++) {
            t[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
            t[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
        }
        /* rows 0-3 then 4-7 of columns 0-3, 4-7, 8-11, 12-15 */
        for (int h = 0; h < 2; h++) {
            u[4 * h + 0] = _mm_unpacklo_epi16(t[4 * h + 0], t[4 * h + 2]);
            u[4 * h + 1] = _mm_unpackhi_epi16(t[4 * h + 0], t[4 * h + 2]);
            u[4 * h + 2] = _mm_unpacklo_epi16(t[4 * h + 1], t[4 * h + 3]);
            u[4 * h + 3] = _mm_unpackhi_epi16(t[4 * h + 1], t[4 * h + 3]);
        }
        __m128i *out = (__m128i *)(void *)(band + x * 8);
        for (int q = 0; q < 4; q++) {
            _mm_storeu_si128(out + 2 * q, _mm_unpacklo_epi32(u[q], u[4 + q]));
            _mm_storeu_si128(out + 2 * q + 1, _mm_unpackhi_epi32(u[q], u[4 + q]));
        }
    }
#endif
    for (; x < in_w; x++)
        for (int i = 0; i < 8; i++)
            band[x * 8 + i] = src[(size_t)i * stride + x];
}

/* interleave8 undone: band[x * 8 + i] back to row i (rows ``stride`` apart) of ``w``. */
static void deinterleave8(const uint8_t *band, size_t w, uint8_t *dst, size_t stride) {
    size_t x = 0;
    for (; x + 8 <= w; x += 8) {
        const unsigned char *cols[8];
        unsigned char *rows[8];
        for (int k = 0; k < 8; k++) {
            cols[k] = band + (x + (size_t)k) * 8; /* column x + k: its eight rows */
            rows[k] = dst + (size_t)k * stride + x;
        }
        transpose8(cols, rows);
    }
    for (; x < w; x++)
        for (int i = 0; i < 8; i++)
            dst[(size_t)i * stride + x] = band[x * 8 + i];
}

/* The horizontal pass eight rows at a time, the rows in the lanes: each output sample of the
 * eight rows is one vector of sums, its taps read as eight bytes from the interleaved band
 * (a row's taps are not contiguous vectors, and Pillow's loop is scalar). */
static inline __attribute__((always_inline)) void horizontal8(
        const uint8_t *src, size_t stride, size_t rows, uint8_t *dst, size_t w, const int *bx,
        const int32_t *kx, int ksx, const int taps, size_t in_w, uint8_t *band) {
    size_t r = 0;
    for (; r + 8 <= rows; r += 8) {
        interleave8(src + r * stride, stride, in_w, band);
        uint8_t *out = dst + r * w;
        for (size_t xx = 0; xx < w; xx++) {
            const uint8_t *p = band + (size_t)bx[2 * xx] * 8;
            const int32_t *k = kx + xx * (size_t)ksx;
            int32_t acc[8];
            for (int i = 0; i < 8; i++)
                acc[i] = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < taps; x++) {
                const int32_t kv = k[x];
                for (int i = 0; i < 8; i++)
                    acc[i] += p[x * 8 + i] * kv;
            }
            for (int i = 0; i < 8; i++)
                out[(size_t)i * w + xx] = clip8(acc[i]);
        }
    }
    if (r < rows)
        horizontal(src + r * stride, stride, rows - r, dst + r * w, w, bx, kx, ksx, taps);
}

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target)
#include <immintrin.h>
#define HAVE_AVX2_ROWS 1
static int avx2_rows; /* the CPU has AVX2 (PyInit), and the tests have not turned it off */
/* horizontal8 with the lanes written out: the compiler leaves its lane loops scalar. The
 * same sums (integer), the same clip. */
__attribute__((target("avx2"))) static void horizontal8_avx2(
        const uint8_t *src, size_t stride, size_t rows, uint8_t *dst, size_t w, const int *bx,
        const int32_t *kx, int ksx, int taps, size_t in_w, uint8_t *band) {
    size_t r = 0;
    uint8_t *obuf = band + in_w * 8; /* the eight output rows, interleaved as band is */
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
    for (; r + 8 <= rows; r += 8) {
        interleave8(src + r * stride, stride, in_w, band);
        uint8_t *out = dst + r * w;
        for (size_t xx = 0; xx < w; xx++) {
            const uint8_t *p = band + (size_t)bx[2 * xx] * 8;
            const int32_t *k = kx + xx * (size_t)ksx;
            __m256i acc = half;
            for (int x = 0; x < taps; x++) {
                __m256i v = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(const void *)(p + x * 8)));
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, _mm256_set1_epi32(k[x])));
            }
            acc = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(acc, PRECISION_BITS), zero),
                                   top);
            __m128i b = _mm_packus_epi16(
                _mm_packs_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1)),
                _mm_setzero_si128());
            _mm_storel_epi64((__m128i *)(void *)(obuf + xx * 8), b);
        }
        deinterleave8(obuf, w, out, w);
    }
    if (r < rows)
        horizontal(src + r * stride, stride, rows - r, dst + r * w, w, bx, kx, ksx, taps);
}
#endif
#endif

/* Where the compiler can make them, AVX2 versions of the two passes, picked at load time
 * (the plain x86-64 build has SSE2 only, which has no 32-bit multiply to vectorise with). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif

/* ``rows`` rows of ``src`` into ``w`` samples each at ``dst``, every position's taps made
 * ``taps`` long (fixed_taps), so the count is a constant the loop is unrolled for. */
CLONES static void horizontal_pass(const uint8_t *src, size_t stride, size_t rows, uint8_t *dst,
                                   size_t w, const int *bx, const int32_t *kx, int ksx,
                                   int taps, size_t in_w, uint8_t *band) {
#ifdef HAVE_AVX2_ROWS
    if (avx2_rows) {
        horizontal8_avx2(src, stride, rows, dst, w, bx, kx, ksx, taps, in_w, band);
        return;
    }
#endif
    switch (taps) {
    case 1: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 1, in_w, band); break;
    case 2: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 2, in_w, band); break;
    case 3: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 3, in_w, band); break;
    case 4: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 4, in_w, band); break;
    case 5: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 5, in_w, band); break;
    case 6: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 6, in_w, band); break;
    case 7: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 7, in_w, band); break;
    case 8: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, 8, in_w, band); break;
    default: horizontal8(src, stride, rows, dst, w, bx, kx, ksx, taps, in_w, band); break;
    }
}

/* ``out_h`` rows of ``w`` samples at ``dst``, each a sum of ``src``'s rows: a row of sums,
 * each tap's row added along it (the same integer sums as Pillow's column order takes:
 * addition of integers does not care). ``by``'s first rows count from ``src``. */
CLONES static void vertical_pass(const uint8_t *src, size_t stride, uint8_t *dst, size_t w,
                                 int out_h, const int *by, const int32_t *ky, int ksy,
                                 int32_t *acc) {
    for (int yy = 0; yy < out_h; yy++) {
        const int ymin = by[2 * yy], n = by[2 * yy + 1];
        const int32_t *k = ky + (size_t)yy * (size_t)ksy;
        for (size_t xx = 0; xx < w; xx++)
            acc[xx] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *restrict row = src + (size_t)(ymin + y) * stride;
            const int32_t kv = k[y];
            int32_t *restrict a = acc;
            for (size_t xx = 0; xx < w; xx++)
                a[xx] += row[xx] * kv;
        }
        uint8_t *restrict out = dst + (size_t)yy * w;
        for (size_t xx = 0; xx < w; xx++)
            out[xx] = clip8(acc[xx]);
    }
}

/* Runs without the GIL: 0, or -1 when out of memory. Which passes run, and in which order,
 * is Pillow 13's choice (ImagingResampleInner): a pass whose axis keeps its size and box
 * is skipped, and the vertical one goes first when it shrinks more than twice as many
 * rows as the horizontal one shrinks columns. The order decides the 8-bit clip between. */
static int resample(struct job *j) {
    struct filter f;
    filter_for(j->filter, &f);
    int *bx = NULL, *by = NULL;
    int32_t *kx = NULL, *ky = NULL;
    uint8_t *tmp = NULL, *band = NULL;
    int32_t *acc = NULL;
    int rc = -1;
    const int need_h = j->out_w != j->in_w || j->box[0] != 0 || j->box[2] != j->out_w;
    const int need_v = j->out_h != j->in_h || j->box[1] != 0 || j->box[3] != j->out_h;
    const int h_first = !((j->in_h - j->out_h) > 0 && (j->in_h - j->out_h) > (j->in_w - j->out_w) * 2);
    int ksx = 0, ksy = 0, taps = 1;
    if (need_h) {
        if (!(ksx = coeffs(j->in_w, j->box[0], j->box[2], j->out_w, &f, &bx, &kx)))
            goto done;
        for (int xx = 0; xx < j->out_w; xx++)
            taps = bx[2 * xx + 1] > taps ? bx[2 * xx + 1] : taps;
        if (taps > j->in_w)
            taps = j->in_w;
        if (!fixed_taps(bx, kx, ksx, j->out_w, j->in_w, taps))
            goto done;
    }
    if (need_v && !(ksy = coeffs(j->in_h, j->box[1], j->box[3], j->out_h, &f, &by, &ky)))
        goto done;
    const size_t out_w = (size_t)j->out_w, in_w = (size_t)j->in_w;
    if (need_h && (band = malloc((in_w + out_w) * 8)) == NULL)
        goto done;
    if (need_h && need_v && h_first) {
        /* only the source rows the vertical pass reads */
        int first = by[0], last = by[2 * (j->out_h - 1)] + by[2 * (j->out_h - 1) + 1];
        for (int yy = 0; yy < j->out_h; yy++)
            by[2 * yy] -= first;
        size_t rows = (size_t)(last - first);
        tmp = malloc(rows * out_w + 1);
        acc = malloc(sizeof(int32_t) * out_w);
        if (tmp == NULL || acc == NULL)
            goto done;
        horizontal_pass(j->src + (size_t)first * j->stride, j->stride, rows, tmp, out_w, bx, kx,
                        ksx, taps, in_w, band);
        vertical_pass(tmp, out_w, j->dst, out_w, j->out_h, by, ky, ksy, acc);
    } else if (need_h && need_v) {
        tmp = malloc((size_t)j->out_h * in_w + 1);
        acc = malloc(sizeof(int32_t) * in_w);
        if (tmp == NULL || acc == NULL)
            goto done;
        vertical_pass(j->src, j->stride, tmp, in_w, j->out_h, by, ky, ksy, acc);
        horizontal_pass(tmp, in_w, (size_t)j->out_h, j->dst, out_w, bx, kx, ksx, taps, in_w, band);
    } else if (need_h) {
        horizontal_pass(j->src, j->stride, (size_t)j->out_h, j->dst, out_w, bx, kx, ksx, taps, in_w,
                        band);
    } else if (need_v) {
        if ((acc = malloc(sizeof(int32_t) * in_w)) == NULL)
            goto done;
        vertical_pass(j->src, j->stride, j->dst, out_w, j->out_h, by, ky, ksy, acc);
    } else {
        for (int r = 0; r < j->out_h; r++)
            memcpy(j->dst + (size_t)r * out_w, j->src + (size_t)r * j->stride, out_w);
    }
    rc = 0;
done:
    free(bx);
    free(by);
    free(kx);
    free(ky);
    free(tmp);
    free(band);
    free(acc);
    return rc;
}

static PyObject *resample_plane(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"src", "width", "height", "stride", "box", "size", "filter", NULL};
    Py_buffer src;
    int in_w, in_h, out_w, out_h, filter;
    Py_ssize_t stride;
    float box[4];
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iin(ffff)(ii)i", names, &src, &in_w, &in_h,
                                     &stride, &box[0], &box[1], &box[2], &box[3], &out_w, &out_h,
                                     &filter))
        return NULL;
    PyObject *result = NULL;
    struct filter f;
    if (!filter_for(filter, &f)) {
        PyErr_Format(PyExc_ValueError, "filter %d is not one of Pillow's resampling filters", filter);
    } else if (in_w <= 0 || in_h <= 0 || stride < in_w ||
               (uint64_t)src.len < (uint64_t)stride * (uint64_t)(in_h - 1) + (uint64_t)in_w) {
        PyErr_Format(PyExc_ValueError, "%zd bytes are no %dx%d plane at stride %zd", src.len, in_w,
                     in_h, stride);
    } else if (out_w <= 0 || out_h <= 0 || out_w > 65535 || out_h > 65535) {
        PyErr_Format(PyExc_ValueError, "%dx%d is no output size", out_w, out_h);
    } else if (!(box[0] >= -1 && box[1] >= -1 && box[2] <= in_w + 1 && box[3] <= in_h + 1 &&
                 box[2] > box[0] && box[3] > box[1])) {
        /* up to a sample past the plane: a 4:2:0 chroma box of an odd side reaches that far
         * (imaging.planes.chroma_box); taps are clamped there, as at any edge */
        PyErr_SetString(PyExc_ValueError, "the box is not inside the plane (give or take a sample)");
    } else if ((result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)out_w * out_h)) != NULL) {
        struct job j = {
            .src = src.buf, .stride = (size_t)stride, .in_w = in_w, .in_h = in_h,
            .out_w = out_w, .out_h = out_h, .filter = filter,
            .box = {box[0], box[1], box[2], box[3]},
            .dst = (uint8_t *)PyBytes_AS_STRING(result),
        };
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = resample(&j);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            Py_CLEAR(result);
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&src);
    return result;
}

static PyObject *rows_in_avx2(PyObject *self, PyObject *args) {
    int on = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "|p", &on))
        return NULL;
#ifdef HAVE_AVX2_ROWS
    if (on >= 0)
        avx2_rows = on && __builtin_cpu_supports("avx2");
    return PyBool_FromLong(avx2_rows);
#else
    return PyBool_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"avx2", rows_in_avx2, METH_VARARGS,
     "avx2([on]) -> bool\n\n"
     "Whether the horizontal pass runs in AVX2 (where the CPU has it); ``on`` False takes the\n"
     "portable one, for the tests to compare both with Pillow."},
    {"resample", (PyCFunction)(void (*)(void))resample_plane, METH_VARARGS | METH_KEYWORDS,
     "resample(src, width, height, stride, box, size, filter) -> bytes\n\n"
     "The ``box`` (x0, y0, x1, y1) of a ``width`` x ``height`` 8-bit plane whose rows are\n"
     "``stride`` bytes apart, resampled to ``size`` with ``filter`` (a PIL.Image.Resampling\n"
     "value other than NEAREST): Pillow's Image.resize of an L image, to the bit, without\n"
     "its reducing_gap step. Taps are clamped to the plane, as Pillow's are to the image;\n"
     "unlike Pillow's, the box may reach up to one sample past the plane."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample", "Pillow's resample of one 8-bit plane, faster.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__resample(void) {
#ifdef HAVE_AVX2_ROWS
    avx2_rows = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
