/* One 8x8 block of bytes transposed, for imaging/_jpegenc.c's turn and imaging/_resample.c's
 * interleaved rows. */
#ifndef PROPHOTO_TRANSPOSE8_H
#define PROPHOTO_TRANSPOSE8_H

#if defined(__SSE2__)
#include <emmintrin.h>
/* An 8x8 block of bytes transposed: rows[k] are the block's source rows; column j is
 * written, as 8 bytes, to out[j]. SSE2 is in every x86-64. */
static inline void transpose8(const unsigned char *const rows[8], unsigned char *const out[8]) {
    __m128i a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm_loadl_epi64((const __m128i *)(const void *)rows[k]);
    __m128i t0 = _mm_unpacklo_epi8(a[0], a[1]), t1 = _mm_unpacklo_epi8(a[2], a[3]);
    __m128i t2 = _mm_unpacklo_epi8(a[4], a[5]), t3 = _mm_unpacklo_epi8(a[6], a[7]);
    __m128i u0 = _mm_unpacklo_epi16(t0, t1), u1 = _mm_unpackhi_epi16(t0, t1);
    __m128i u2 = _mm_unpacklo_epi16(t2, t3), u3 = _mm_unpackhi_epi16(t2, t3);
    __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2),
                    _mm_unpacklo_epi32(u1, u3), _mm_unpackhi_epi32(u1, u3)};
    for (int j = 0; j < 4; j++) {
        _mm_storel_epi64((__m128i *)(void *)out[2 * j], v[j]);
        _mm_storel_epi64((__m128i *)(void *)out[2 * j + 1], _mm_srli_si128(v[j], 8));
    }
}
#else
static inline void transpose8(const unsigned char *const rows[8], unsigned char *const out[8]) {
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 8; k++)
            out[j][k] = rows[k][j];
}
#endif

#endif
