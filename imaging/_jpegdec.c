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
 * checked between row groups.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#include <jerror.h>

/* libjpeg-turbo's tjbench and TurboJPEG 3 default to this as their scan limit */
#define SCAN_LIMIT 500

static PyObject *TooLarge; /* over the pixel limit: not corrupt, a bomb */
static PyObject *Timeout;  /* past the deadline */

enum failure { FAIL_NONE, FAIL_CORRUPT, FAIL_TIMEOUT, FAIL_LARGE };

struct error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    enum failure kind;
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

struct job {
    const unsigned char *data;
    size_t len;
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

/* Runs without the GIL; returns 0 (job->pixels set, or job->applicable 0), -1 on failure. On
 * failure job->pixels may still hold the buffer: the caller releases it with the GIL. */
static int decompress(struct job *job) {
    struct jpeg_decompress_struct cinfo;
    struct progress progress;
    /* volatile: read after a longjmp */
    unsigned char *volatile pixels = NULL; /* in job->pixels */
    JOCTET *volatile icc = NULL;
    cinfo.err = jpeg_std_error(&job->err.pub);
    job->err.pub.error_exit = on_error;
    job->err.pub.emit_message = on_message;
    job->err.kind = FAIL_NONE;
    job->err.message[0] = '\0';
    if (setjmp(job->err.jump)) {
        free(icc);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = (long)(job->max_memory > LONG_MAX ? LONG_MAX : job->max_memory);
    progress.pub.progress_monitor = on_progress;
    progress.deadline = job->deadline;
    cinfo.progress = &progress.pub;
    jpeg_mem_src(&cinfo, job->data, (unsigned long)job->len);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xFFFF); /* ICC */
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > job->max_pixels) {
        snprintf(job->err.message, sizeof job->err.message,
                 "%ux%u = %llu pixels, over the limit of %llu (decompression bomb?)",
                 cinfo.image_width, cinfo.image_height,
                 (unsigned long long)cinfo.image_width * cinfo.image_height,
                 (unsigned long long)job->max_pixels);
        job->err.kind = FAIL_LARGE;
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

static PyObject *decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"data", "scale", "max_pixels", "max_memory", "deadline", NULL};
    Py_buffer data;
    int scale = 8;
    unsigned long long max_pixels = 0;
    Py_ssize_t max_memory = 0;
    double deadline = 0.0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|iKnd", names, &data, &scale, &max_pixels,
                                     &max_memory, &deadline))
        return NULL;
    PyObject *result = NULL;
    if (scale < 1 || scale > 8) {
        PyErr_Format(PyExc_ValueError, "scale %d/8 is not in 1/8..8/8", scale);
    } else if (data.len < 2) {
        PyErr_SetString(PyExc_OSError, "JPEG decoder: not a JPEG (under 2 bytes)");
    } else {
        struct job job = {
            .data = data.buf, .len = (size_t)data.len, .scale = scale,
            .max_pixels = max_pixels ? max_pixels : UINT64_MAX,
            .max_memory = max_memory > 0 ? (size_t)max_memory : 0,
            .deadline = deadline,
        };
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = decompress(&job);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            PyObject *kind = job.err.kind == FAIL_TIMEOUT ? Timeout
                             : job.err.kind == FAIL_LARGE ? TooLarge : PyExc_OSError;
            PyErr_Format(kind, "JPEG decoder: %s", job.err.message);
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
    }
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_VARARGS | METH_KEYWORDS,
     "decode(data, scale=8, max_pixels=0, max_memory=0, deadline=0.0)\n"
     "    -> (pixels, width, height, components, icc) | None\n\n"
     "Decode the JPEG in ``data`` at ``scale``/8 into packed RGB (3) or L (1) pixels, as\n"
     "stored (no orientation), with its ICC profile or None. None: a colour space (CMYK,\n"
     "YCCK) or precision this leaves to Pillow. OSError for corrupt or truncated data,\n"
     "TooLarge over ``max_pixels`` (of the stored size) or libjpeg's ``max_memory`` bytes,\n"
     "Timeout past ``deadline`` (time.monotonic()); 0 means no limit."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegdec", "JPEG decoding through libjpeg-turbo, scaled.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegdec(void) {
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
