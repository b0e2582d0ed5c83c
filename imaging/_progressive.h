/* The progressive entropy coder of imaging/_jpegenc.c (imaging/_progressive.c). */
#ifndef PROPHOTO_PROGRESSIVE_H
#define PROPHOTO_PROGRESSIVE_H

#include <stdio.h>

#include <jpeglib.h>

/* 1 where this libjpeg's entropy coder and marker writer can be stood in for (-D to 0 to
 * build libjpeg's own progressive mode instead). */
#ifndef HAVE_OWN_SCANS
#if defined(LIBJPEG_TURBO_VERSION_NUMBER) && LIBJPEG_TURBO_VERSION_NUMBER >= 2000000 && \
    LIBJPEG_TURBO_VERSION_NUMBER < 4000000 && JPEG_LIB_VERSION < 70 && BITS_IN_JSAMPLE == 8
#define HAVE_OWN_SCANS 1
#else
#define HAVE_OWN_SCANS 0
#endif
#endif

#if HAVE_OWN_SCANS
/* Call after jpeg_start_compress of a sequential, unoptimized compressor (no scan_info,
 * optimize_coding FALSE) and after any markers of the caller's own, before the first row.
 * libjpeg then does what it is fast at (colour conversion, downsampling, the DCT and
 * quantization) and hands each MCU's blocks here; at the end of the pass they are written
 * as the progressive scans of ``scans`` (first scans only, Ah = Al = 0), each with Huffman
 * tables made for it. Errors go through cinfo->err as libjpeg's own do. */
void progressive_install(j_compress_ptr cinfo, const jpeg_scan_info *scans, int num_scans);
#endif

#endif
