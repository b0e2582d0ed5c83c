/* JPEG decoding straight through libjpeg-turbo, for imaging.render's fast path.
 *
 * Decodes into one packed buffer (RGB, or L for grayscale) at the scale asked (N/8, the IDCT
 * at a reduced size), with the settings Pillow uses (accurate integer IDCT, fancy
 * upsampling), so the pixels are Pillow's (tests/unit/test_jpegdec.py compares them). What
 * it buys, measured (bench/imaging.py): the scales Pillow cannot ask for, 5/8 to 7/8, which
 * make enhance to 4096 a short resample instead of a long one from full size, and no 24 MP
 * image in Pillow's 4-byte pixels on that path. For a preview at 3/8 it is as fast as
 * Pillow's decoder, no faster: the entropy decoding is the same libjpeg-turbo either way, and
 * Pillow still copies the pixels into its own image (Image.frombuffer) to resample them.
 *
 * Only what it decodes the way Pillow would is taken: 8-bit YCbCr, RGB and grayscale. CMYK
 * and YCCK (Adobe inversion, press profiles) return None and Pillow decodes them. Every
 * libjpeg error ends in a longjmp back here and an OSError; a truncated file (libjpeg would
 * pad it with grey and warn) is an error too, as in Pillow. Dimensions are checked against
 * the caller's pixel limit before any pixel buffer exists, libjpeg's own memory is capped,
 * a scan count over SCAN_LIMIT (a hostile progressive file) is refused, and the deadline is
 * checked between row groups. The planar decode at 3/8 (the preview's) runs libjpeg's 3x3
 * IDCT, which libjpeg-turbo has no SIMD for, as SSE4.1 where the CPU has it: the same pixels.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>

/* libjpeg-turbo's tjbench and TurboJPEG 3 default to this as their scan limit */
#define SCAN_LIMIT 500

static PyObject *TooLarge; /* over the pixel limit: not corrupt, a bomb */
static PyObject *Timeout;  /* past the deadline */

enum failure { FAIL_NONE, FAIL_CORRUPT, FAIL_TIMEOUT, FAIL_LARGE, FAIL_READ };

struct error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    enum failure kind;
    int read_errno; /* FAIL_READ's */
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    /* libjpeg's default exits the process */
    struct error_mgr *err = (struct error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    int code = cinfo->err->msg_code;
    /* libjpeg's working memory over max_memory_to_use: a size problem, not corrupt data */
    err->kind = code == JERR_OUT_OF_MEMORY || code == JERR_NO_BACKING_STORE ||
                code == JERR_IMAGE_TOO_BIG ? FAIL_LARGE : FAIL_CORRUPT;
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    /* Warnings (level -1) are recoverable corrupt data, which Pillow too decodes through,
     * except premature end of data: libjpeg pads the rest with grey, Pillow says truncated. */
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        struct error_mgr *err = (struct error_mgr *)cinfo->err;
        snprintf(err->message, sizeof err->message, "image file is truncated");
        err->kind = FAIL_CORRUPT;
        longjmp(err->jump, 1);
    }
}

struct progress {
    struct jpeg_progress_mgr pub;
    double deadline; /* CLOCK_MONOTONIC seconds, as Python's time.monotonic(); 0: none */
};

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_progress(j_common_ptr cinfo) {
    struct progress *p = (struct progress *)cinfo->progress;
    struct error_mgr *err = (struct error_mgr *)cinfo->err;
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > SCAN_LIMIT) {
            snprintf(err->message, sizeof err->message,
                     "over %d progressive scans (a hostile file?)", SCAN_LIMIT);
            err->kind = FAIL_CORRUPT;
            longjmp(err->jump, 1);
        }
    }
    if (p->deadline > 0 && monotonic() > p->deadline) {
        snprintf(err->message, sizeof err->message, "decode ran past the decode time-out");
        err->kind = FAIL_TIMEOUT;
        longjmp(err->jump, 1);
    }
}

/* Where the JPEG comes from: bytes in memory, or an open file read with pread a block at a
 * time, so that a 9 MB camera file is neither copied whole nor faulted into fresh pages
 * (render passes the file Pillow opened; its position is not moved). */
#define FD_BLOCK 65536
struct fd_source {
    struct jpeg_source_mgr pub;
    int fd;
    off_t pos;
    JOCTET block[FD_BLOCK];
};

static void fd_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void fd_term(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean fd_fill(j_decompress_ptr cinfo) {
    struct fd_source *src = (struct fd_source *)cinfo->src;
    ssize_t n;
    do {
        n = pread(src->fd, src->block, FD_BLOCK, src->pos);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        struct error_mgr *err = (struct error_mgr *)cinfo->err;
        err->read_errno = errno;
        snprintf(err->message, sizeof err->message, "cannot read: %s", strerror(errno));
        err->kind = FAIL_READ;
        longjmp(err->jump, 1);
    }
    if (n == 0) { /* the end of the file: as jpeg_mem_src, a warning and an EOI */
        WARNMS(cinfo, JWRN_JPEG_EOF);
        src->block[0] = (JOCTET)0xFF;
        src->block[1] = (JOCTET)JPEG_EOI;
        n = 2;
    } else {
        src->pos += n;
    }
    src->pub.next_input_byte = src->block;
    src->pub.bytes_in_buffer = (size_t)n;
    return TRUE;
}

static void fd_skip(j_decompress_ptr cinfo, long count) {
    struct fd_source *src = (struct fd_source *)cinfo->src;
    if (count <= 0)
        return;
    if ((size_t)count <= src->pub.bytes_in_buffer) {
        src->pub.next_input_byte += count;
        src->pub.bytes_in_buffer -= (size_t)count;
    } else { /* past what is read: the next fill reads from there */
        src->pos += (off_t)(count - (long)src->pub.bytes_in_buffer);
        src->pub.bytes_in_buffer = 0;
    }
}

struct input {
    Py_buffer buf;            /* .obj NULL for a file */
    int fd;                   /* -1 for bytes */
    struct fd_source *fd_src; /* the file's reader, allocated with the input */
};

/* ``obj``: a bytes-like object or a file descriptor (int). 0, or -1 with an exception set. */
static int input_from(PyObject *obj, struct input *in) {
    memset(in, 0, sizeof *in);
    in->fd = -1;
    if (PyLong_Check(obj)) {
        long fd = PyLong_AsLong(obj);
        if (fd == -1 && PyErr_Occurred())
            return -1;
        if (fd < 0 || fd > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "not a file descriptor");
            return -1;
        }
        in->fd_src = malloc(sizeof *in->fd_src);
        if (in->fd_src == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        in->fd = (int)fd;
        return 0;
    }
    if (PyObject_GetBuffer(obj, &in->buf, PyBUF_SIMPLE) < 0)
        return -1;
    if (in->buf.len < 2) {
        PyBuffer_Release(&in->buf);
        in->buf.obj = NULL;
        PyErr_SetString(PyExc_OSError, "JPEG decoder: not a JPEG (under 2 bytes)");
        return -1;
    }
    return 0;
}

static void input_release(struct input *in) {
    if (in->buf.obj)
        PyBuffer_Release(&in->buf);
    free(in->fd_src);
}

static void set_source(j_decompress_ptr cinfo, const struct input *in) {
    if (in->fd < 0) {
        jpeg_mem_src(cinfo, in->buf.buf, (unsigned long)in->buf.len);
        return;
    }
    struct fd_source *src = in->fd_src;
    src->fd = in->fd;
    src->pos = 0;
    src->pub.init_source = fd_init;
    src->pub.fill_input_buffer = fd_fill;
    src->pub.skip_input_data = fd_skip;
    src->pub.resync_to_restart = jpeg_resync_to_restart;
    src->pub.term_source = fd_term;
    src->pub.bytes_in_buffer = 0;
    src->pub.next_input_byte = NULL;
    cinfo->src = &src->pub;
}

/* The exception for a failed job. */
static void raise_failure(const struct error_mgr *err) {
    if (err->kind == FAIL_READ) {
        /* an OSError with the errno: imaging.render tells storage trouble from a bad file */
        PyObject *exc = Py_BuildValue("(is)", err->read_errno, err->message);
        if (exc) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        return;
    }
    PyObject *kind = err->kind == FAIL_TIMEOUT ? Timeout : err->kind == FAIL_LARGE ? TooLarge
                                                                                  : PyExc_OSError;
    PyErr_Format(kind, "JPEG decoder: %s", err->message);
}

struct job {
    const struct input *in;
    int scale;          /* N of N/8 */
    uint64_t max_pixels; /* of the stored image, as the file's header says */
    size_t max_memory;  /* libjpeg's own working memory (progressive coefficients, ...) */
    double deadline;
    /* out */
    int width, height, components;
    int applicable;     /* 0: a colour space left to Pillow (CMYK, YCCK) */
    PyObject *pixels;   /* the bytes object decoded into, width * height * components */
    unsigned char *icc;    /* malloc'ed by libjpeg, or NULL */
    unsigned int icc_len;
    struct error_mgr err;
};

/* The output buffer is the bytes object handed back, so no copy is made of the pixels: its
 * allocation takes the GIL for a moment (the only Python call made while decoding). */
static PyObject *new_bytes(size_t n) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *b = n > PY_SSIZE_T_MAX ? NULL : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (b == NULL)
        PyErr_Clear(); /* reported as out of memory below */
    PyGILState_Release(gil);
    return b;
}

static void init_errors(j_decompress_ptr cinfo, struct error_mgr *err) {
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.emit_message = on_message;
    err->kind = FAIL_NONE;
    err->message[0] = '\0';
}

/* After the caller's setjmp: the decompressor made, its limits set, the header read. -1 (the
 * error set) over the pixel limit, before any pixel buffer exists. */
static int open_header(j_decompress_ptr cinfo, struct progress *progress, const struct input *in,
                       size_t max_memory, double deadline, uint64_t max_pixels,
                       struct error_mgr *err) {
    jpeg_create_decompress(cinfo);
    cinfo->mem->max_memory_to_use = (long)(max_memory > LONG_MAX ? LONG_MAX : max_memory);
    progress->pub.progress_monitor = on_progress;
    progress->deadline = deadline;
    cinfo->progress = &progress->pub;
    set_source(cinfo, in);
    jpeg_save_markers(cinfo, JPEG_APP0 + 2, 0xFFFF); /* ICC */
    jpeg_read_header(cinfo, TRUE);
    if ((uint64_t)cinfo->image_width * cinfo->image_height > max_pixels) {
        snprintf(err->message, sizeof err->message,
                 "%ux%u = %llu pixels, over the limit of %llu (decompression bomb?)",
                 cinfo->image_width, cinfo->image_height,
                 (unsigned long long)cinfo->image_width * cinfo->image_height,
                 (unsigned long long)max_pixels);
        err->kind = FAIL_LARGE;
        return -1;
    }
    return 0;
}

/* Runs without the GIL; returns 0 (job->pixels set, or job->applicable 0), -1 on failure. On
 * failure job->pixels may still hold the buffer: the caller releases it with the GIL. */
static int decompress(struct job *job) {
    struct jpeg_decompress_struct cinfo;
    struct progress progress;
    /* volatile: read after a longjmp */
    unsigned char *volatile pixels = NULL; /* in job->pixels */
    JOCTET *volatile icc = NULL;
    init_errors(&cinfo, &job->err);
    if (setjmp(job->err.jump)) {
        free(icc);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (open_header(&cinfo, &progress, job->in, job->max_memory, job->deadline, job->max_pixels,
                    &job->err) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (cinfo.data_precision != 8 ||
        (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_RGB &&
         cinfo.jpeg_color_space != JCS_GRAYSCALE)) {
        job->applicable = 0;
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    job->applicable = 1;
    cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.scale_num = (unsigned int)job->scale;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(&cinfo);
    size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    job->pixels = new_bytes(stride * cinfo.output_height);
    if (job->pixels != NULL)
        pixels = (unsigned char *)PyBytes_AS_STRING(job->pixels);
    if (pixels == NULL) {
        snprintf(job->err.message, sizeof job->err.message, "out of memory for %ux%u pixels",
                 cinfo.output_width, cinfo.output_height);
        job->err.kind = FAIL_LARGE;
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    JSAMPROW rows[16];
    while (cinfo.output_scanline < cinfo.output_height) {
        JDIMENSION n = cinfo.output_height - cinfo.output_scanline;
        if (n > 16)
            n = 16;
        for (JDIMENSION k = 0; k < n; k++)
            rows[k] = pixels + (size_t)(cinfo.output_scanline + k) * stride;
        jpeg_read_scanlines(&cinfo, rows, n);
    }
    JOCTET *profile = NULL;
    unsigned int icc_len = 0;
    if (jpeg_read_icc_profile(&cinfo, &profile, &icc_len))
        icc = profile; /* absent or malformed: none, and the pixels are taken as sRGB */
    else
        icc_len = 0;
    jpeg_finish_decompress(&cinfo);
    job->width = (int)cinfo.output_width;
    job->height = (int)cinfo.output_height;
    job->components = cinfo.output_components;
    job->icc = icc;
    job->icc_len = icc_len;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* The planar decode: the Y, Cb and Cr planes as stored in the file (no colour conversion,
 * no chroma upsampling), each at scale/8 of its own stored size. What the preview needs is
 * a resample of each plane and an encode of the planes (imaging/_jpegenc.c encode_planes),
 * so converting to RGB and back, and resampling 3-byte pixels, is work thrown away: at 3/8
 * libjpeg-turbo would even decode chroma at 6/8 to save its upsampler a step (see below).
 *
 * libjpeg scales chroma up through the IDCT where sampling allows (4:2:0 at 3/8: chroma
 * IDCT at 6/8, full resolution), which the raw-data interface has no switch for. TurboJPEG's
 * decompress-to-YUV undoes it after jpeg_start_decompress by setting each such component's
 * scaled size and MCU width back and giving it luma's IDCT routine (turbojpeg.c); this does
 * the same. The IDCT controller is libjpeg's internal struct, whose first two members have
 * been these since libjpeg 6b (jpegint.h); the planar path is compiled only for the
 * libjpeg-turbo versions known to have them, and without it render falls back to RGB. */
#if defined(LIBJPEG_TURBO_VERSION_NUMBER) && LIBJPEG_TURBO_VERSION_NUMBER >= 2000000 && \
    LIBJPEG_TURBO_VERSION_NUMBER < 4000000 && JPEG_LIB_VERSION < 70
#define HAVE_PLANES 1
typedef void (*idct_method)(j_decompress_ptr, jpeg_component_info *, JCOEFPTR, JSAMPARRAY,
                            JDIMENSION);
struct idct_controller { /* jpegint.h's struct jpeg_inverse_dct, its leading members */
    void (*start_pass)(j_decompress_ptr cinfo);
    idct_method inverse_DCT[MAX_COMPONENTS];
};
#else
#define HAVE_PLANES 0
#endif

#if HAVE_PLANES && defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target)
#include <immintrin.h>
#define HAVE_IDCT3_SSE41 1
static int idct3_sse41_on; /* the CPU has SSE4.1 (PyInit), and the tests have not turned it off */
#define IDCT3_LIMIT 2047    /* dequantized coefficients within this: idct3_sse41 is exact */

/* What the 3/8 decode's IDCT needs besides the block, per component (cinfo->client_data;
 * this module sets nothing else there): libjpeg's own routine, the 3x3 corner's quantizers
 * laid out as the coefficients are loaded, and the coefficients' limits, lane for lane,
 * within which the arithmetic below is exact. */
struct idct3_state {
    idct_method fallback;
    int16_t q02[3][8], q1[3][8];     /* rows 0 and 2 interleaved; row 1 between zeros */
    int16_t lim02[3][8], lim1[3][8]; /* |coefficient| <= lim, or the block is libjpeg's */
    int stride[3];                   /* bytes in an output row: room for a 4-byte store */
};

/* Ready for decompress_planes' components once jpeg_start_decompress has latched their
 * quantization tables (libjpeg never changes a latched one). 0: the component is left to
 * libjpeg's routine, for a missing table or a quantizer over 32767 (libjpeg's multiplier may
 * be a short: its sign is the build's). */
static int idct3_prepare(struct idct3_state *st, j_decompress_ptr cinfo, int ci, int stride) {
    const JQUANT_TBL *qt = cinfo->comp_info[ci].quant_table;
    if (qt == NULL)
        return 0;
    st->stride[ci] = stride;
    for (int k = 0; k < 4; k++) { /* lane pair k: column k (the 4th is loaded, never used) */
        for (int r = 0; r < 3; r++) {
            const unsigned v = k < 3 ? qt->quantval[r * DCTSIZE + k] : 0;
            if (v > 32767)
                return 0;
            int16_t *q = r == 1 ? &st->q1[ci][2 * k] : &st->q02[ci][2 * k + r / 2];
            int16_t *lim = r == 1 ? &st->lim1[ci][2 * k] : &st->lim02[ci][2 * k + r / 2];
            *q = (int16_t)v;
            *lim = (int16_t)(v ? IDCT3_LIMIT / v : 32767);
        }
        st->q1[ci][2 * k + 1] = 0, st->lim1[ci][2 * k + 1] = 32767; /* the zeros */
    }
    return 1;
}

/* libjpeg's 3x3 IDCT (jidctint.c jpeg_idct_3x3: the accurate integer IDCT at the 3/8 scale,
 * which libjpeg-turbo has no SIMD for, about a tenth of the preview's decode), to the bit:
 * the three columns side by side, then the three rows, in 16-bit multiplies with 32-bit
 * sums. libjpeg computes in 64 bits. While every dequantized coefficient is within
 * +-IDCT3_LIMIT (a real 8-bit file's stay within about 1150), the work array fits 16 bits
 * (|w| <= 2047 * 24018 / 2048 + 1 < 24009) and every sum 32, so the two agree; a block past
 * that goes to libjpeg's routine. The output's clamp is libjpeg's range-limit table written
 * out: the 10 bits it masks, sign-extended, plus the centre, clamped to 0..255. */
__attribute__((target("sse4.1"))) static void idct3_sse41(j_decompress_ptr cinfo,
                                                          jpeg_component_info *comp,
                                                          JCOEFPTR coef, JSAMPARRAY out,
                                                          JDIMENSION col) {
    const struct idct3_state *st = (const struct idct3_state *)cinfo->client_data;
    const int ci = comp->component_index; /* < 3: decompress_planes takes three */
    const __m128i zero = _mm_setzero_si128();
    /* the corner's columns: (row 0, row 2) pairs, and (row 1, 0) pairs */
    const __m128i r0 = _mm_loadl_epi64((const __m128i *)(const void *)coef);
    const __m128i r1 = _mm_loadl_epi64((const __m128i *)(const void *)(coef + DCTSIZE));
    const __m128i r2 = _mm_loadl_epi64((const __m128i *)(const void *)(coef + 2 * DCTSIZE));
    const __m128i c02 = _mm_unpacklo_epi16(r0, r2), c1 = _mm_unpacklo_epi16(r1, zero);
    const __m128i lim02 = _mm_loadu_si128((const __m128i *)(const void *)st->lim02[ci]);
    const __m128i lim1 = _mm_loadu_si128((const __m128i *)(const void *)st->lim1[ci]);
    /* |c| <= lim, unsigned (|-32768| is 32768 so): max(|c|, lim) is lim */
    const __m128i ok = _mm_and_si128(
        _mm_cmpeq_epi16(_mm_max_epu16(_mm_abs_epi16(c02), lim02), lim02),
        _mm_cmpeq_epi16(_mm_max_epu16(_mm_abs_epi16(c1), lim1), lim1));
    if ((_mm_movemask_epi8(ok) & 0x0FFF) != 0x0FFF) { /* column pairs 0-2: the corner's nine */
        st->fallback(cinfo, comp, coef, out, col);
        return;
    }
    const __m128i d02 = _mm_mullo_epi16(
        c02, _mm_loadu_si128((const __m128i *)(const void *)st->q02[ci]));
    const __m128i d1 = _mm_mullo_epi16(
        c1, _mm_loadu_si128((const __m128i *)(const void *)st->q1[ci]));
    /* Both passes' products, a pair at a time: (x0, x2) by (1 << 13, c2) and (1 << 13, -2 c2),
     * (x1, 0) by (c1, 0); c1 = FIX(1.224744871), c2 = FIX(0.707106781) as in jidctint.c */
    const __m128i k_even = _mm_setr_epi16(8192, 5793, 8192, 5793, 8192, 5793, 8192, 5793);
    const __m128i k_mid = _mm_setr_epi16(8192, -11586, 8192, -11586, 8192, -11586, 8192, -11586);
    const __m128i k_odd = _mm_setr_epi16(10033, 0, 10033, 0, 10033, 0, 10033, 0);
    /* Pass 1, columns: lane j of w0, w1, w2 is the work array's row 0, 1, 2 at column j
     * (libjpeg's rounding fudge: 1 << (CONST_BITS - PASS1_BITS - 1)) */
    const __m128i fudge1 = _mm_set1_epi32(1 << 10);
    const __m128i even0 = _mm_add_epi32(_mm_madd_epi16(d02, k_even), fudge1);
    const __m128i even1 = _mm_add_epi32(_mm_madd_epi16(d02, k_mid), fudge1);
    const __m128i odd = _mm_madd_epi16(d1, k_odd);
    const __m128i w01 = _mm_packs_epi32(_mm_srai_epi32(_mm_add_epi32(even0, odd), 11),
                                        _mm_srai_epi32(even1, 11));
    const __m128i w2 = _mm_packs_epi32(_mm_srai_epi32(_mm_sub_epi32(even0, odd), 11), zero);
    /* Pass 2, rows: lane pair i of a is row i's (w[i][0], w[i][2]), of b (w[i][1], 0) */
    const __m128i a = _mm_or_si128(
        _mm_shuffle_epi8(w01, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1)),
        _mm_shuffle_epi8(w2, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, -1, -1, -1, -1)));
    const __m128i b = _mm_or_si128(
        _mm_shuffle_epi8(w01, _mm_setr_epi8(2, 3, -1, -1, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)),
        _mm_shuffle_epi8(w2, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 2, 3, -1, -1, -1, -1, -1, -1)));
    /* lane i of x0, x1, x2 is output row i at column 0, 1, 2 (libjpeg's rounding fudge,
     * 1 << (PASS1_BITS + 2), is added before its << CONST_BITS) */
    const __m128i fudge2 = _mm_set1_epi32(1 << (2 + 2 + 13));
    const __m128i even = _mm_add_epi32(_mm_madd_epi16(a, k_even), fudge2);
    const __m128i odd2 = _mm_madd_epi16(b, k_odd);
    const __m128i x1 = _mm_add_epi32(_mm_madd_epi16(a, k_mid), fudge2);
    const __m128i x0 = _mm_add_epi32(even, odd2), x2 = _mm_sub_epi32(even, odd2);
    /* >> 18, the low 10 bits sign-extended, plus the centre; the packs clamp */
    const __m128i centre = _mm_set1_epi32(CENTERJSAMPLE);
    const __m128i s0 = _mm_add_epi32(_mm_srai_epi32(_mm_slli_epi32(x0, 4), 22), centre);
    const __m128i s1 = _mm_add_epi32(_mm_srai_epi32(_mm_slli_epi32(x1, 4), 22), centre);
    const __m128i s2 = _mm_add_epi32(_mm_srai_epi32(_mm_slli_epi32(x2, 4), 22), centre);
    const __m128i px = _mm_packus_epi16(_mm_packs_epi32(s0, s1), _mm_packs_epi32(s2, s2));
    /* bytes: column-major (row i of column k at 4k + i), to row-major, a row per 4 bytes */
    const __m128i rows = _mm_shuffle_epi8(
        px, _mm_setr_epi8(0, 4, 8, 3, 1, 5, 9, 7, 2, 6, 10, 11, 12, 13, 14, 15));
    const uint32_t o0 = (uint32_t)_mm_cvtsi128_si32(rows);
    const uint32_t o1 = (uint32_t)_mm_extract_epi32(rows, 1);
    const uint32_t o2 = (uint32_t)_mm_extract_epi32(rows, 2);
    if ((int)col + 4 <= st->stride[ci]) { /* the 4th byte is the next block's, written after */
        memcpy(out[0] + col, &o0, 4);
        memcpy(out[1] + col, &o1, 4);
        memcpy(out[2] + col, &o2, 4);
    } else { /* the row's last block: its 4th byte would be the next row's */
        memcpy(out[0] + col, &o0, 3);
        memcpy(out[1] + col, &o1, 3);
        memcpy(out[2] + col, &o2, 3);
    }
}
#endif
#endif

struct planes_job {
    const struct input *in;
    int scale;
    uint64_t max_pixels;
    size_t max_memory;
    double deadline;
    /* out */
    int applicable;
    int width, height;              /* luma's size at the scale (as decode() would give) */
    int pw[3], ph[3], stride[3];    /* each plane: its size, and its row length in memory */
    int hs[3], vs[3];               /* sampling factors */
    PyObject *plane[3];             /* bytes: stride * padded rows */
    unsigned char *icc;
    unsigned int icc_len;
    struct error_mgr err;
};

#if HAVE_PLANES
static int decompress_planes(struct planes_job *job) {
    struct jpeg_decompress_struct cinfo;
    struct progress progress;
    JOCTET *volatile icc = NULL;
    init_errors(&cinfo, &job->err);
    if (setjmp(job->err.jump)) {
        free(icc);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (open_header(&cinfo, &progress, job->in, job->max_memory, job->deadline, job->max_pixels,
                    &job->err) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    /* YCbCr with luma at 1 or 2 both ways and chroma at 1: what cameras and editors write */
    jpeg_component_info *c = cinfo.comp_info;
    if (cinfo.data_precision != 8 || cinfo.jpeg_color_space != JCS_YCbCr ||
        cinfo.num_components != 3 || c[0].h_samp_factor > 2 || c[0].v_samp_factor > 2 ||
        c[1].h_samp_factor != 1 || c[1].v_samp_factor != 1 || c[2].h_samp_factor != 1 ||
        c[2].v_samp_factor != 1) {
        job->applicable = 0;
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    job->applicable = 1;
    cinfo.raw_data_out = TRUE;
    cinfo.scale_num = (unsigned int)job->scale;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_calc_output_dimensions(&cinfo);
    const int dct = cinfo.min_DCT_scaled_size; /* the scale's IDCT size, 1..8 */
    const int hmax = cinfo.max_h_samp_factor, vmax = cinfo.max_v_samp_factor;
    /* iMCUs across and down: what the coefficient controller writes, padding included */
    const size_t mcus_x = (cinfo.image_width + (size_t)hmax * 8 - 1) / ((size_t)hmax * 8);
    const size_t mcus_y = (cinfo.image_height + (size_t)vmax * 8 - 1) / ((size_t)vmax * 8);
    job->width = (int)cinfo.output_width;
    job->height = (int)cinfo.output_height;
    size_t alloc_rows[3];
    for (int i = 0; i < 3; i++) {
        /* luma pixels per sample of this plane, across and down (every plane's IDCT is at
         * the scale's size: see the override below) */
        const int size = dct;
        job->hs[i] = hmax / c[i].h_samp_factor;
        job->vs[i] = vmax / c[i].v_samp_factor;
        job->pw[i] = (int)(((size_t)cinfo.output_width + job->hs[i] - 1) / job->hs[i]);
        job->ph[i] = (int)(((size_t)cinfo.output_height + job->vs[i] - 1) / job->vs[i]);
        /* Whole iMCUs, as the coefficient controller writes them, and at least a column
         * and a row past the plane, which a resample of 4:2:0 to an odd size reads
         * (imaging.render.Planes.resize). */
        size_t cols = mcus_x * (size_t)c[i].h_samp_factor * (size_t)size;
        size_t rows = mcus_y * (size_t)c[i].v_samp_factor * (size_t)size;
        job->stride[i] = (int)(cols > (size_t)job->pw[i] ? cols : cols + 1);
        alloc_rows[i] = rows > (size_t)job->ph[i] ? rows : rows + 1;
        job->plane[i] = new_bytes((size_t)job->stride[i] * alloc_rows[i]);
        if (job->plane[i] == NULL) {
            snprintf(job->err.message, sizeof job->err.message, "out of memory for %ux%u planes",
                     cinfo.output_width, cinfo.output_height);
            job->err.kind = FAIL_LARGE;
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
    }
    jpeg_start_decompress(&cinfo);
    struct idct_controller *idct = (struct idct_controller *)(void *)cinfo.idct;
    for (int i = 1; i < 3; i++) {
        if (c[i].DCT_scaled_size != dct) { /* scaled up to spare an upsampler: undo it */
            c[i].DCT_scaled_size = dct;
            c[i].MCU_sample_width = c[i].MCU_width * dct;
            idct->inverse_DCT[i] = idct->inverse_DCT[0];
        }
    }
#ifdef HAVE_IDCT3_SSE41
    struct idct3_state idct3 = {.fallback = idct->inverse_DCT[0]};
    if (dct == 3 && idct3_sse41_on) { /* every plane's IDCT is libjpeg's 3x3 (JDCT_ISLOW) */
        cinfo.client_data = &idct3;
        for (int i = 0; i < 3; i++)
            if (idct3_prepare(&idct3, &cinfo, i, job->stride[i]))
                idct->inverse_DCT[i] = idct3_sse41;
    }
#endif
    JSAMPROW rows[3][2 * 8];
    JSAMPARRAY arrays[3] = {rows[0], rows[1], rows[2]};
    const int lines = vmax * dct; /* luma rows per iMCU row */
    for (size_t m = 0; m < mcus_y; m++) {
        for (int i = 0; i < 3; i++) {
            unsigned char *base = (unsigned char *)PyBytes_AS_STRING(job->plane[i]);
            int n = c[i].v_samp_factor * dct;
            for (int k = 0; k < n; k++)
                rows[i][k] = base + (m * (size_t)n + (size_t)k) * (size_t)job->stride[i];
        }
        if (jpeg_read_raw_data(&cinfo, arrays, (JDIMENSION)lines) == 0) {
            /* suspension: with all the data in memory, only a file that ends early */
            snprintf(job->err.message, sizeof job->err.message, "image file is truncated");
            job->err.kind = FAIL_CORRUPT;
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
    }
    /* The padding repeats the edge: libjpeg leaves what lies past the last whole block
     * unwritten (dummy blocks), and a resample's taps at the edge reach into it. */
    for (int i = 0; i < 3; i++) {
        unsigned char *base = (unsigned char *)PyBytes_AS_STRING(job->plane[i]);
        size_t st = (size_t)job->stride[i], pw = (size_t)job->pw[i];
        for (int r = 0; r < job->ph[i]; r++) {
            unsigned char *row = base + (size_t)r * st;
            memset(row + pw, row[pw - 1], st - pw);
        }
        for (size_t r = (size_t)job->ph[i]; r < alloc_rows[i]; r++)
            memcpy(base + r * st, base + (size_t)(job->ph[i] - 1) * st, st);
    }
    JOCTET *profile = NULL;
    unsigned int icc_len = 0;
    if (jpeg_read_icc_profile(&cinfo, &profile, &icc_len))
        icc = profile;
    else
        icc_len = 0;
    jpeg_finish_decompress(&cinfo);
    job->icc = icc;
    job->icc_len = icc_len;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
#endif

/* What both decodes are asked: the input, its scale and limits (0: none). */
struct request {
    int scale;
    uint64_t max_pixels;
    size_t max_memory;
    double deadline;
};

static int parse_request(PyObject *args, PyObject *kwargs, struct input *in, struct request *rq) {
    static char *names[] = {"data", "scale", "max_pixels", "max_memory", "deadline", NULL};
    PyObject *obj;
    int scale = 8;
    unsigned long long max_pixels = 0;
    Py_ssize_t max_memory = 0;
    double deadline = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iKnd", names, &obj, &scale, &max_pixels,
                                     &max_memory, &deadline))
        return -1;
    if (scale < 1 || scale > 8) {
        PyErr_Format(PyExc_ValueError, "scale %d/8 is not in 1/8..8/8", scale);
        return -1;
    }
    rq->scale = scale;
    rq->max_pixels = max_pixels ? max_pixels : UINT64_MAX;
    rq->max_memory = max_memory > 0 ? (size_t)max_memory : 0;
    rq->deadline = deadline;
    return input_from(obj, in);
}

static PyObject *decode_planes(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    struct input in;
    struct request rq;
    if (parse_request(args, kwargs, &in, &rq) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!HAVE_PLANES) {
        result = Py_NewRef(Py_None);
    } else {
#if HAVE_PLANES
        struct planes_job job = {
            .in = &in, .scale = rq.scale, .max_pixels = rq.max_pixels,
            .max_memory = rq.max_memory, .deadline = rq.deadline,
        };
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = decompress_planes(&job);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            raise_failure(&job.err);
        } else if (!job.applicable) {
            result = Py_NewRef(Py_None);
        } else {
            PyObject *icc = job.icc ? PyBytes_FromStringAndSize((const char *)job.icc, job.icc_len)
                                    : Py_NewRef(Py_None);
            if (icc)
                result = Py_BuildValue(
                    "((Oiii)(Oiii)(Oiii)iiiiO)",
                    job.plane[0], job.pw[0], job.ph[0], job.stride[0],
                    job.plane[1], job.pw[1], job.ph[1], job.stride[1],
                    job.plane[2], job.pw[2], job.ph[2], job.stride[2],
                    job.width, job.height, job.hs[1], job.vs[1], icc);
            Py_XDECREF(icc);
        }
        for (int i = 0; i < 3; i++)
            Py_XDECREF(job.plane[i]);
        free(job.icc);
#endif
    }
    input_release(&in);
    return result;
}

static PyObject *decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    struct input in;
    struct request rq;
    if (parse_request(args, kwargs, &in, &rq) < 0)
        return NULL;
    PyObject *result = NULL;
    struct job job = {
        .in = &in, .scale = rq.scale, .max_pixels = rq.max_pixels,
        .max_memory = rq.max_memory, .deadline = rq.deadline,
    };
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = decompress(&job);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        raise_failure(&job.err);
    } else if (!job.applicable) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *icc = job.icc ? PyBytes_FromStringAndSize((const char *)job.icc, job.icc_len)
                                : Py_NewRef(Py_None);
        if (icc)
            result = Py_BuildValue("(OiiiO)", job.pixels, job.width, job.height, job.components,
                                   icc);
        Py_XDECREF(icc);
    }
    Py_XDECREF(job.pixels);
    free(job.icc);
    input_release(&in);
    return result;
}

static PyObject *idct3_in_sse41(PyObject *self, PyObject *args) {
    int on = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "|p", &on))
        return NULL;
#ifdef HAVE_IDCT3_SSE41
    if (on >= 0)
        idct3_sse41_on = on && __builtin_cpu_supports("sse4.1");
    return PyBool_FromLong(idct3_sse41_on);
#else
    return PyBool_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"sse41_idct3", idct3_in_sse41, METH_VARARGS,
     "sse41_idct3([on]) -> bool\n\n"
     "Whether decode_planes at 3/8 runs its IDCT in SSE4.1 (where the CPU has it) rather than\n"
     "libjpeg's own; ``on`` False takes libjpeg's, for the tests to compare both."},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_VARARGS | METH_KEYWORDS,
     "decode(data, scale=8, max_pixels=0, max_memory=0, deadline=0.0)\n"
     "    -> (pixels, width, height, components, icc) | None\n\n"
     "Decode the JPEG in ``data`` (bytes-like, or an open file's descriptor, read with\n"
     "pread from its start) at ``scale``/8 into packed RGB (3) or L (1) pixels, as\n"
     "stored (no orientation), with its ICC profile or None. None: a colour space (CMYK,\n"
     "YCCK) or precision this leaves to Pillow. OSError for corrupt or truncated data,\n"
     "OSError with the errno when the file cannot be read,\n"
     "TooLarge over ``max_pixels`` (of the stored size) or libjpeg's ``max_memory`` bytes,\n"
     "Timeout past ``deadline`` (time.monotonic()); 0 means no limit."},
    {"decode_planes", (PyCFunction)(void (*)(void))decode_planes, METH_VARARGS | METH_KEYWORDS,
     "decode_planes(data, scale=8, max_pixels=0, max_memory=0, deadline=0.0)\n"
     "    -> ((y, w, h, stride), (cb, ...), (cr, ...), width, height, h_samp, v_samp, icc)\n"
     "       | None\n\n"
     "Decode a YCbCr JPEG (``data`` as decode()'s) at ``scale``/8 into its three planes as\n"
     "stored: each at its own\n"
     "sampling (chroma not upsampled), rows ``stride`` bytes apart (padded to whole MCUs).\n"
     "``width`` x ``height`` is the image's size at the scale; ``h_samp`` and ``v_samp``\n"
     "luma's sampling factors (chroma's are 1: 2, 2 is 4:2:0). None: not 8-bit YCbCr with\n"
     "chroma at 1x1 and luma at 1 or 2 both ways (RGB, grey, CMYK, odd sampling), or no\n"
     "planar path in this build. Errors as decode()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegdec", "JPEG decoding through libjpeg-turbo, scaled.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegdec(void) {
#ifdef HAVE_IDCT3_SSE41
    idct3_sse41_on = __builtin_cpu_supports("sse4.1");
#endif
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    TooLarge = PyErr_NewExceptionWithDoc("imaging._jpegdec.TooLarge",
                                         "Over the pixel or memory limit.", PyExc_Exception, NULL);
    Timeout = PyErr_NewExceptionWithDoc("imaging._jpegdec.Timeout",
                                        "Past the deadline.", PyExc_Exception, NULL);
    if (TooLarge == NULL || Timeout == NULL || PyModule_AddObjectRef(m, "TooLarge", TooLarge) < 0 ||
        PyModule_AddObjectRef(m, "Timeout", Timeout) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
