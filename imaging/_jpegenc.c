/* Progressive JPEG encoding with a short scan script, for imaging.render.encode.
 *
 * Pillow's progressive=True uses libjpeg's standard script: 10 scans with successive
 * approximation, each gathered and emitted twice (progressive mode forces optimized Huffman
 * tables). For a 2048 px preview that is ~47 ms against ~20 ms for an optimized sequential
 * file. This script keeps what a viewer needs from a progressive file (the whole image at
 * 1/8 from the first scan, then coarse luma, color, detail) in 5 scans (3 for gray)
 * without successive approximation: ~32 ms, files ~2% larger. The coefficients, so the decoded pixels, are
 * the same as Pillow's at the same quality (tests/unit/test_jpegenc.py checks it). libjpeg
 * still spends most of that on its gather and output passes per scan; imaging/_progressive.c
 * writes the same scans from libjpeg's sequential pass in a third of the time (~16 ms).
 *
 * Built by setuptools as an optional extension against the system libjpeg (libjpeg-turbo);
 * without it, render.encode falls back to Pillow's encoder.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>

#include <jpeglib.h>

#include "_progressive.h"

/* DC of all components; luma's first 5 AC; each chroma; the rest of luma. */
static const jpeg_scan_info SCANS_YCC[] = {
    {3, {0, 1, 2, 0}, 0, 0, 0, 0},
    {1, {0, 0, 0, 0}, 1, 5, 0, 0},
    {1, {1, 0, 0, 0}, 1, 63, 0, 0},
    {1, {2, 0, 0, 0}, 1, 63, 0, 0},
    {1, {0, 0, 0, 0}, 6, 63, 0, 0},
};
static const jpeg_scan_info SCANS_GRAY[] = {
    {1, {0, 0, 0, 0}, 0, 0, 0, 0},
    {1, {0, 0, 0, 0}, 1, 5, 0, 0},
    {1, {0, 0, 0, 0}, 6, 63, 0, 0},
};

#define MAX_MARKER 65533 /* a JPEG segment's payload */
#define MAX_ICC ((size_t)255 * 65519) /* 255 APP2 chunks of 65519 bytes of profile */

static void on_message(j_common_ptr cinfo) { (void)cinfo; /* warnings: not to stderr */ }

struct error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    /* libjpeg's default exits the process; jump back to encode() instead */
    struct error_mgr *err = (struct error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Output into one growing buffer the job owns, so an error path can always free it (with
 * jpeg_mem_dest the caller's pointer goes stale once the library has grown its buffer). */
struct buffer_dest {
    struct jpeg_destination_mgr pub;
    unsigned char *data;
    size_t size;
};

static void dest_init(j_compress_ptr cinfo) {
    struct buffer_dest *d = (struct buffer_dest *)cinfo->dest;
    d->pub.next_output_byte = d->data;
    d->pub.free_in_buffer = d->size;
}

static boolean dest_grow(j_compress_ptr cinfo) {
    /* called when the buffer is full: all of it is output so far */
    struct buffer_dest *d = (struct buffer_dest *)cinfo->dest;
    size_t used = d->size;
    unsigned char *bigger = used > SIZE_MAX / 2 ? NULL : realloc(d->data, used * 2);
    if (bigger == NULL) {
        struct error_mgr *err = (struct error_mgr *)cinfo->err;
        snprintf(err->message, sizeof err->message, "out of memory for %zu bytes", used * 2);
        longjmp(err->jump, 1);
    }
    d->data = bigger;
    d->size = used * 2;
    d->pub.next_output_byte = bigger + used;
    d->pub.free_in_buffer = d->size - used;
    return TRUE;
}

static void dest_term(j_compress_ptr cinfo) { (void)cinfo; }

struct job {
    const unsigned char *pixels; /* as stored: width x height */
    int width, height, components, quality;
    int orientation;             /* EXIF 1..8: the transform to upright, done while packing rows */
    unsigned char *rows;         /* ROWS upright rows, for orientations other than 1 */
    size_t rows_stride;          /* padded: see encode() */
    const unsigned char *icc;
    size_t icc_len;
    const unsigned char *exif;
    size_t exif_len;
    struct buffer_dest dest;
    struct error_mgr err;
};

/* Upright rows handed to libjpeg at once. 64: each input row then gives a 192-byte run when
 * 5-8 gather columns (16 gave 48 bytes, and +9 ms on a 2048 px preview instead of +3). */
#define ROWS 64

static inline void put(unsigned char *dst, const unsigned char *src, int c) {
    dst[0] = src[0];
    if (c == 3) {
        dst[1] = src[1];
        dst[2] = src[2];
    }
}

/* Upright rows y0..y0+n-1 into job->rows. out(x, y) = in(sx, sy), per EXIF orientation:
 * 2 mirrors, 3 turns 180, 4 flips; 5-8 swap the axes, so an output row is an input column,
 * gathered for n rows at once so that each input row is read as a short contiguous run. */
static void fill_rows(const struct job *job, int y0, int n) {
    const int c = job->components, w = job->width, h = job->height, o = job->orientation;
    const size_t in_stride = (size_t)w * c;
    const size_t out_stride = job->rows_stride;
    if (o <= 4) {
        for (int k = 0; k < n; k++) {
            int y = y0 + k;
            int sy = (o == 1 || o == 2) ? y : h - 1 - y;
            const unsigned char *src = job->pixels + (size_t)sy * in_stride;
            unsigned char *dst = job->rows + (size_t)k * out_stride;
            if (o == 1 || o == 4) {
                memcpy(dst, src, (size_t)w * c);
            } else {
                for (int x = 0; x < w; x++)
                    put(dst + (size_t)x * c, src + (size_t)(w - 1 - x) * c, c);
            }
        }
        return;
    }
    const ptrdiff_t dx = (o == 5 || o == 6) ? c : -c;
    const int sx0 = (o == 5 || o == 6) ? y0 : w - 1 - y0;
    for (int x = 0; x < h; x++) {
        int sy = (o == 5 || o == 8) ? x : h - 1 - x;
        const unsigned char *src = job->pixels + (size_t)sy * in_stride + (size_t)sx0 * c;
        unsigned char *dst = job->rows + (size_t)x * c;
        if (c == 3) {
            for (int k = 0; k < n; k++, src += dx, dst += out_stride) {
                dst[0] = src[0]; dst[1] = src[1]; dst[2] = src[2];
            }
        } else {
            for (int k = 0; k < n; k++, src += dx, dst += out_stride)
                dst[0] = src[0];
        }
    }
}

static void init_errors(j_compress_ptr cinfo, struct job *job) {
    cinfo->err = jpeg_std_error(&job->err.pub);
    job->err.pub.error_exit = on_error;
    job->err.pub.output_message = on_message;
    job->err.message[0] = '\0';
}

/* After the caller's setjmp: the compressor made, writing into the job's buffer. */
static void open_compressor(j_compress_ptr cinfo, struct job *job) {
    jpeg_create_compress(cinfo);
    job->dest.pub.init_destination = dest_init;
    job->dest.pub.empty_output_buffer = dest_grow;
    job->dest.pub.term_destination = dest_term;
    cinfo->dest = &job->dest.pub;
}

/* jpeg_start_compress, the EXIF and the ICC profile if any, and the scan script: written by
 * imaging/_progressive.c from libjpeg's sequential pass where it is built for this libjpeg
 * (a third of libjpeg's time for the scans), else handed to libjpeg's progressive mode. */
static void start(j_compress_ptr cinfo, const struct job *job, const jpeg_scan_info *scans,
                  int num_scans) {
#if !HAVE_OWN_SCANS
    cinfo->scan_info = scans;
    cinfo->num_scans = num_scans;
#endif
    jpeg_start_compress(cinfo, TRUE);
    if (job->exif_len)
        jpeg_write_marker(cinfo, JPEG_APP0 + 1, job->exif, (unsigned int)job->exif_len);
    if (job->icc_len)
        jpeg_write_icc_profile(cinfo, job->icc, (unsigned int)job->icc_len);
#if HAVE_OWN_SCANS
    progressive_install(cinfo, scans, num_scans);
#endif
}

/* Runs without the GIL; returns 0, or -1 with job->err.message set. */
static int compress(struct job *job) {
    struct jpeg_compress_struct cinfo;
    init_errors(&cinfo, job);
    if (setjmp(job->err.jump)) {
        jpeg_destroy_compress(&cinfo);
        return -1;
    }
    open_compressor(&cinfo, job);
    int swap = job->orientation >= 5;
    cinfo.image_width = (JDIMENSION)(swap ? job->height : job->width);
    cinfo.image_height = (JDIMENSION)(swap ? job->width : job->height);
    cinfo.input_components = job->components;
    cinfo.in_color_space = job->components == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo); /* 4:2:0 for color, as Pillow's default */
    jpeg_set_quality(&cinfo, job->quality, TRUE);
    if (job->components == 3)
        start(&cinfo, job, SCANS_YCC, (int)(sizeof SCANS_YCC / sizeof SCANS_YCC[0]));
    else
        start(&cinfo, job, SCANS_GRAY, (int)(sizeof SCANS_GRAY / sizeof SCANS_GRAY[0]));
    size_t stride = (size_t)cinfo.image_width * (size_t)job->components;
    if (job->orientation == 1) {
        while (cinfo.next_scanline < cinfo.image_height) {
            JSAMPROW row = (JSAMPROW)(job->pixels + (size_t)cinfo.next_scanline * stride);
            jpeg_write_scanlines(&cinfo, &row, 1);
        }
    } else {
        JSAMPROW rows[ROWS];
        for (int k = 0; k < ROWS; k++)
            rows[k] = job->rows + (size_t)k * job->rows_stride;
        while (cinfo.next_scanline < cinfo.image_height) {
            int y0 = (int)cinfo.next_scanline;
            int n = (int)cinfo.image_height - y0 < ROWS ? (int)cinfo.image_height - y0 : ROWS;
            fill_rows(job, y0, n);
            jpeg_write_scanlines(&cinfo, rows, (JDIMENSION)n);
        }
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

/* The planar encode: Y, Cb and Cr planes at 4:2:0 (chroma planes (w+1)/2 x (h+1)/2 of
 * luma's w x h) straight into the DCT (libjpeg's raw-data input), so no colour conversion
 * and no downsampling is done here: imaging.render resamples each plane of a planar decode
 * (imaging/_jpegdec.c decode_planes) to its own size. The same scan script and orientation
 * as encode(); each plane is turned upright into a buffer of its own first (turn_plane),
 * padded to whole MCUs by repeating its last column and row, as libjpeg pads RGB input. */
struct plane {
    const unsigned char *src; /* as stored: w x h, rows src_stride apart */
    size_t src_stride;
    int w, h;
    int up_w, up_h;           /* upright */
    unsigned char *buf;       /* upright, padded: rows x stride */
    size_t stride;
    int rows;
};

#include "_transpose8.h"

/* The plane turned upright into its padded buffer, the padding a copy of the last column
 * and row (as libjpeg pads RGB input). A turn that swaps the axes goes by 8x8 blocks, 64
 * source columns at a time, so that the rows written to stay in the cache. */
#define TILE 64
#define PREFETCH_ROWS 16
static void turn_plane(struct plane *pl, int o) {
    const int w = pl->w, h = pl->h;
    const size_t st = pl->stride;
    if (o <= 4) {
        for (int y = 0; y < pl->up_h; y++) {
            int sy = (o == 1 || o == 2) ? y : h - 1 - y;
            const unsigned char *src = pl->src + (size_t)sy * pl->src_stride;
            unsigned char *dst = pl->buf + (size_t)y * st;
            if (o == 1 || o == 4) {
                memcpy(dst, src, (size_t)w);
            } else {
                for (int x = 0; x < w; x++)
                    dst[x] = src[w - 1 - x];
            }
        }
    } else {
        /* upright column ux of source row sy, upright row uy of source column sx */
        const int rev_x = o == 6 || o == 7, rev_y = o == 7 || o == 8;
        const int bw = w / 8 * 8, bh = h / 8 * 8;
        for (int sx0 = 0; sx0 < bw; sx0 += TILE) {
            int sx1 = sx0 + TILE < bw ? sx0 + TILE : bw;
            for (int sy = 0; sy < bh; sy += 8) {
                const unsigned char *rows[8];
                for (int k = 0; k < 8; k++) /* reversed, so the 8 bytes come out reversed */
                    rows[k] = pl->src + (size_t)(rev_x ? sy + 7 - k : sy + k) * pl->src_stride;
                /* Rows a plane's width apart defeat the hardware prefetcher, and each 8 of
                 * them waited on memory (half this loop's time on a 2048 px preview): ask
                 * for the tile's lines two blocks down now. */
                for (int k = sy + PREFETCH_ROWS; k < sy + PREFETCH_ROWS + 8 && k < h; k++) {
                    const unsigned char *ahead = pl->src + (size_t)k * pl->src_stride + sx0;
                    __builtin_prefetch(ahead);
                    __builtin_prefetch(ahead + (sx1 - sx0) - 1);
                }
                size_t ux = (size_t)(rev_x ? h - 1 - (sy + 7) : sy);
                for (int sx = sx0; sx < sx1; sx += 8) {
                    const unsigned char *r[8];
                    unsigned char *out[8];
                    for (int k = 0; k < 8; k++) {
                        r[k] = rows[k] + sx;
                        out[k] = pl->buf + (size_t)(rev_y ? w - 1 - (sx + k) : sx + k) * st + ux;
                    }
                    transpose8(r, out);
                }
            }
        }
        /* what the blocks leave: the last h % 8 rows and w % 8 columns */
        for (int sy = 0; sy < h; sy++) {
            const unsigned char *src = pl->src + (size_t)sy * pl->src_stride;
            size_t ux = (size_t)(rev_x ? h - 1 - sy : sy);
            for (int sx = sy < bh ? bw : 0; sx < w; sx++)
                pl->buf[(size_t)(rev_y ? w - 1 - sx : sx) * st + ux] = src[sx];
        }
    }
    for (int y = 0; y < pl->up_h; y++) {
        unsigned char *row = pl->buf + (size_t)y * st;
        memset(row + pl->up_w, row[pl->up_w - 1], st - (size_t)pl->up_w);
    }
    for (int y = pl->up_h; y < pl->rows; y++)
        memcpy(pl->buf + (size_t)y * st, pl->buf + (size_t)(pl->up_h - 1) * st, st);
}

static int compress_planes(struct job *job, struct plane *planes) {
    struct jpeg_compress_struct cinfo;
    init_errors(&cinfo, job);
    if (setjmp(job->err.jump)) {
        jpeg_destroy_compress(&cinfo);
        return -1;
    }
    open_compressor(&cinfo, job);
    cinfo.image_width = (JDIMENSION)planes[0].up_w;
    cinfo.image_height = (JDIMENSION)planes[0].up_h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_YCbCr;
    jpeg_set_defaults(&cinfo); /* YCbCr in and out, luma 2x2: 4:2:0 */
    jpeg_set_quality(&cinfo, job->quality, TRUE);
    cinfo.raw_data_in = TRUE;
    start(&cinfo, job, SCANS_YCC, (int)(sizeof SCANS_YCC / sizeof SCANS_YCC[0]));
    for (int i = 0; i < 3; i++)
        turn_plane(&planes[i], job->orientation);
    /* an iMCU row at a time: 16 luma rows and 8 of each chroma plane */
    for (int g = 0; cinfo.next_scanline < cinfo.image_height; g++) {
        JSAMPROW y[16], cb[8], cr[8];
        for (int k = 0; k < 16; k++)
            y[k] = planes[0].buf + (size_t)(g * 16 + k) * planes[0].stride;
        for (int k = 0; k < 8; k++) {
            cb[k] = planes[1].buf + (size_t)(g * 8 + k) * planes[1].stride;
            cr[k] = planes[2].buf + (size_t)(g * 8 + k) * planes[2].stride;
        }
        JSAMPARRAY data[3] = {y, cb, cr};
        jpeg_write_raw_data(&cinfo, data, 16);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

/* The options both encoders take: 1, with a ValueError set, when one is out of range. */
static int bad_options(int quality, int orientation, const Py_buffer *exif, const Py_buffer *icc) {
    if (quality < 1 || quality > 100) {
        PyErr_Format(PyExc_ValueError, "quality %d is not in 1..100", quality);
    } else if (orientation < 1 || orientation > 8) {
        PyErr_Format(PyExc_ValueError, "orientation %d is not in 1..8", orientation);
    } else if (exif->len > MAX_MARKER) {
        PyErr_Format(PyExc_ValueError, "EXIF of %zd bytes is over a JPEG segment's %d",
                     exif->len, MAX_MARKER);
    } else if (icc->len > (Py_ssize_t)MAX_ICC) {
        /* jpeg_write_icc_profile numbers its chunks with one byte */
        PyErr_Format(PyExc_ValueError, "ICC profile of %zd bytes is over JPEG's %zd",
                     icc->len, (Py_ssize_t)MAX_ICC);
    } else {
        return 0;
    }
    return 1;
}

static PyObject *encode_planes(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"y", "cb", "cr", "width", "height", "stride", "chroma_stride",
                            "quality", "icc", "exif", "orientation", NULL};
    Py_buffer bufs[3], icc = {0}, exif = {0};
    int width, height, stride, cstride, quality, orientation = 1;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*y*iiiii|y*y*i", names, &bufs[0], &bufs[1],
                                     &bufs[2], &width, &height, &stride, &cstride, &quality, &icc,
                                     &exif, &orientation))
        return NULL;
    PyObject *result = NULL;
    const int cw = (width + 1) / 2, ch = (height + 1) / 2;
    if (width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
        PyErr_Format(PyExc_ValueError, "%dx%d is no JPEG size", width, height);
    } else if (stride < width || cstride < cw ||
               (uint64_t)bufs[0].len < (uint64_t)stride * (uint64_t)(height - 1) + (uint64_t)width ||
               (uint64_t)bufs[1].len < (uint64_t)cstride * (uint64_t)(ch - 1) + (uint64_t)cw ||
               (uint64_t)bufs[2].len < (uint64_t)cstride * (uint64_t)(ch - 1) + (uint64_t)cw) {
        PyErr_Format(PyExc_ValueError, "planes too small for %dx%d at strides %d and %d", width,
                     height, stride, cstride);
    } else if (bad_options(quality, orientation, &exif, &icc)) {
        /* the error is set */
    } else {
        struct job job = {
            .quality = quality, .orientation = orientation,
            .icc = icc.buf, .icc_len = icc.buf ? (size_t)icc.len : 0,
            .exif = exif.buf, .exif_len = exif.buf ? (size_t)exif.len : 0,
        };
        struct plane planes[3];
        int ok = 1;
        const int swap = orientation >= 5;
        /* iMCU rows: 16 luma rows each, 8 chroma */
        const int imcu_rows = ((swap ? width : height) + 15) / 16;
        for (int i = 0; i < 3; i++) {
            struct plane *pl = &planes[i];
            memset(pl, 0, sizeof *pl);
            pl->src = bufs[i].buf;
            pl->src_stride = (size_t)(i ? cstride : stride);
            pl->w = i ? cw : width;
            pl->h = i ? ch : height;
            pl->up_w = swap ? pl->h : pl->w;
            pl->up_h = swap ? pl->w : pl->h;
            /* whole MCUs across: 16 luma samples, 8 chroma */
            int unit = i ? 8 : 16;
            pl->stride = (size_t)((pl->up_w + unit - 1) / unit * unit);
            pl->rows = imcu_rows * (i ? 8 : 16);
            pl->buf = malloc(pl->stride * (size_t)pl->rows);
            if (pl->buf == NULL)
                ok = 0;
        }
        /* the luma plane's upright size is the image's; chroma's follows it (4:2:0) */
        job.dest.size = (size_t)width * (size_t)height / 4 + 65536 + job.icc_len + job.exif_len;
        job.dest.data = malloc(job.dest.size);
        if (!ok || job.dest.data == NULL) {
            PyErr_NoMemory();
        } else {
            int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = compress_planes(&job, planes);
            Py_END_ALLOW_THREADS
            if (rc == 0)
                result = PyBytes_FromStringAndSize(
                    (const char *)job.dest.data,
                    (Py_ssize_t)(job.dest.size - job.dest.pub.free_in_buffer));
            else
                PyErr_Format(PyExc_OSError, "JPEG encoder: %s", job.err.message);
        }
        free(job.dest.data);
        for (int i = 0; i < 3; i++)
            free(planes[i].buf);
    }
    for (int i = 0; i < 3; i++)
        PyBuffer_Release(&bufs[i]);
    if (icc.obj)
        PyBuffer_Release(&icc);
    if (exif.obj)
        PyBuffer_Release(&exif);
    return result;
}

static PyObject *encode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"pixels", "width", "height", "components", "quality", "icc", "exif",
                            "orientation", NULL};
    Py_buffer pixels, icc = {0}, exif = {0};
    int width, height, components, quality, orientation = 1;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iiii|y*y*i", names, &pixels, &width,
                                     &height, &components, &quality, &icc, &exif, &orientation))
        return NULL;
    PyObject *result = NULL;
    if (components != 1 && components != 3) {
        PyErr_SetString(PyExc_ValueError, "components must be 1 (L) or 3 (RGB)");
    } else if (width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION ||
               height > JPEG_MAX_DIMENSION) {
        PyErr_Format(PyExc_ValueError, "%dx%d is no JPEG size", width, height);
    } else if (pixels.len < 0 ||
               (uint64_t)pixels.len != (uint64_t)width * (uint64_t)height * (uint64_t)components) {
        PyErr_Format(PyExc_ValueError, "%zd bytes of pixels for %dx%dx%d", pixels.len, width,
                     height, components);
    } else if (bad_options(quality, orientation, &exif, &icc)) {
        /* the error is set */
    } else {
        struct job job = {
            .pixels = pixels.buf, .width = width, .height = height,
            .components = components, .quality = quality, .orientation = orientation,
            .rows = NULL,
            .icc = icc.buf, .icc_len = icc.buf ? (size_t)icc.len : 0,
            .exif = exif.buf, .exif_len = exif.buf ? (size_t)exif.len : 0,
        };
        /* a preview at q85 is ~1/12 of its raw size: one buffer, rarely grown */
        job.dest.size = (size_t)pixels.len / 4 + 65536 + job.icc_len + job.exif_len;
        job.dest.data = malloc(job.dest.size);
        if (orientation != 1) {
            /* Rows a multiple of 4 KiB apart (a 1365 px RGB row is 4095 bytes) share L1 sets,
             * and the column gather writes to all of them at once: keep them off it. */
            size_t row = (size_t)(orientation >= 5 ? height : width) * (size_t)components;
            size_t st = (row + 63) & ~(size_t)63;
            while ((st & 4095) < 256 || (st & 4095) > 4096 - 256)
                st += 64;
            job.rows_stride = st;
            job.rows = malloc((size_t)ROWS * st);
        }
        if (job.dest.data == NULL || (orientation != 1 && job.rows == NULL)) {
            PyErr_NoMemory();
        } else {
            int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = compress(&job);
            Py_END_ALLOW_THREADS
            if (rc == 0)
                result = PyBytes_FromStringAndSize(
                    (const char *)job.dest.data,
                    (Py_ssize_t)(job.dest.size - job.dest.pub.free_in_buffer));
            else
                PyErr_Format(PyExc_OSError, "JPEG encoder: %s", job.err.message);
        }
        free(job.dest.data);
        free(job.rows);
    }
    PyBuffer_Release(&pixels);
    /* an optional buffer left out has no object; one given is released even when empty */
    if (icc.obj)
        PyBuffer_Release(&icc);
    if (exif.obj)
        PyBuffer_Release(&exif);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_VARARGS | METH_KEYWORDS,
     "encode(pixels, width, height, components, quality, icc=b'', exif=b'', orientation=1)"
     " -> bytes\n\n"
     "A progressive JPEG of packed RGB (3) or L (1) pixels, 4:2:0, with a 5-scan script\n"
     "(3 for L), turned upright per the EXIF ``orientation``\n"
     "of the pixels as given.\n"
     "``exif`` is an APP1 payload (b'Exif\\0\\0' + TIFF), ``icc`` an ICC profile."},
    {"encode_planes", (PyCFunction)(void (*)(void))encode_planes, METH_VARARGS | METH_KEYWORDS,
     "encode_planes(y, cb, cr, width, height, stride, chroma_stride, quality, icc=b'', exif=b'',\n"
     "              orientation=1) -> bytes\n\n"
     "As encode(), from the planes of a 4:2:0 YCbCr image as stored: ``y`` width x height,\n"
     "``cb`` and ``cr`` (width+1)//2 x (height+1)//2, rows ``stride`` and ``chroma_stride``\n"
     "bytes apart; the output is turned upright per ``orientation``."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegenc", "Progressive JPEG with a short scan script.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegenc(void) {
    PyObject *m = PyModule_Create(&module);
    /* which writes the scans: 1 imaging/_progressive.c, 0 libjpeg's progressive mode */
    if (m != NULL && PyModule_AddIntConstant(m, "OWN_SCANS", HAVE_OWN_SCANS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
