/* A progressive JPEG's scans written from libjpeg's quantized blocks, for imaging/_jpegenc.c.
 *
 * libjpeg forces optimized Huffman tables in progressive mode, and its way to them is a
 * gather pass and an output pass per scan, through its general coefficient controller: for
 * a 2048x1365 preview 20 ms of a 24 ms encode, where the DCT and a sequential file with the
 * standard tables take 6. Here libjpeg runs as that cheap sequential encoder, but its
 * entropy coder is replaced: each MCU's quantized blocks are kept (in zigzag order, with a
 * mask of the nonzero ones, so runs are found a word at a time), and at the end of the pass
 * each scan of the script is counted, given its optimal tables (JPEG Annex K.2, as
 * jpeg_gen_optimal_table) and written. The coefficients are libjpeg's own, so the decoded
 * pixels are those of libjpeg's progressive file (tests/unit/test_jpegenc.py checks it).
 *
 * What is reached into: the entropy encoder and the marker writer are libjpeg's internal
 * structs (jpegint.h), whose members have been these since libjpeg 6b; this is compiled
 * only for the libjpeg-turbo versions known to have them (_progressive.h), and without it
 * _jpegenc.c hands libjpeg the scan script itself. */
#include "_progressive.h"

#if HAVE_OWN_SCANS

#include <stdint.h>
#include <string.h>

#include <jerror.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

struct entropy_encoder { /* jpegint.h's struct jpeg_entropy_encoder */
    void (*start_pass)(j_compress_ptr cinfo, boolean gather_statistics);
    boolean (*encode_mcu)(j_compress_ptr cinfo, JBLOCKROW *MCU_data);
    void (*finish_pass)(j_compress_ptr cinfo);
};

#define MAX_BANDS 8 /* AC scans of one component */

struct marker_writer { /* jpegint.h's struct jpeg_marker_writer, its leading members */
    void (*write_file_header)(j_compress_ptr cinfo);
    void (*write_frame_header)(j_compress_ptr cinfo);
    void (*write_scan_header)(j_compress_ptr cinfo);
};

/* The natural-order index of each zigzag position (jutils.c's jpeg_natural_order). */
static const uint8_t ZIGZAG[64] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
};

/* One component's blocks, as its MCUs cover it (a dummy block past the edge included), kept
 * compact: most AC coefficients of a preview are 0, so only the others are stored. */
struct blocks {
    uint64_t *nz;   /* per block: bit k set where zigzag coefficient k (1..63) is not 0 */
    uint32_t *at;   /* per block: where its nonzero AC coefficients start in coder.vals */
    int16_t *dc;
    JDIMENSION across;
    int last_dc;    /* counting the DC scan as the blocks come */
    int bands;      /* the AC scans of this component: */
    int band_scan[MAX_BANDS];
    uint64_t band_range[MAX_BANDS];
    int band_ss[MAX_BANDS];
};

struct table {
    long freq[257];
    uint16_t code[256];
    uint8_t size[256];
    UINT8 bits[17];
    UINT8 vals[256];
};

struct coder {
    struct entropy_encoder pub;
    const jpeg_scan_info *scans;
    int num_scans, dc_scan;
    struct blocks comp[MAX_COMPONENTS];
    int16_t *vals;  /* nonzero AC coefficients, block after block, zigzag order */
    size_t nvals;
    JDIMENSION mcu_col, mcu_row;
    struct table (*tables)[NUM_HUFF_TBLS]; /* per scan, by table number */
    /* the bit writer, straight into the destination */
    uint64_t acc;
    int nbits;
    JOCTET *out;
    size_t room;
};

static void no_header(j_compress_ptr cinfo) { (void)cinfo; }
static void no_pass(j_compress_ptr cinfo, boolean gather) { (void)cinfo; (void)gather; }

static inline int bit_length(unsigned a) { return a ? 32 - __builtin_clz(a) : 0; }

/* One block as libjpeg quantized it (natural order): kept, and counted into the tables of
 * the scans it is in, while it is in the cache. The DC scan's order is the order the blocks
 * come in (progressive_install checks); an AC scan's symbols within a block do not depend
 * on the order, only its end-of-band runs do (counted in write_scans, from the masks). */
/* ZIG_MASK[r][byte]: the zigzag-order bits of the coefficients of natural row r a byte marks */
static uint64_t ZIG_MASK[8][256];

static void make_zig_masks(void) {
    int pos[64];
    for (int k = 0; k < 64; k++)
        pos[ZIGZAG[k]] = k;
    for (int r = 0; r < 8; r++)
        for (int byte = 0; byte < 256; byte++) {
            uint64_t m = 0;
            for (int x = 0; x < 8; x++)
                if (byte >> x & 1)
                    m |= 1ull << pos[r * 8 + x];
            ZIG_MASK[r][byte] = m;
        }
}

static inline int popcount64(uint64_t x) {
    /* x86-64's baseline has no POPCNT instruction: gcc would call libgcc's table */
    x -= (x >> 1) & 0x5555555555555555ull;
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

static void keep_block(j_compress_ptr cinfo, struct coder *c, struct blocks *b, size_t at,
                       const JCOEF *blk, int dc_table) {
    /* the nonzero coefficients a row at a time in natural order, then the mask in zigzag
     * order by table: no coefficient is moved but the nonzero ones */
    uint64_t natural = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (int q = 0; q < 4; q++) {
        __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * q));
        __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * q + 8));
        __m128i z = _mm_packs_epi16(_mm_cmpeq_epi16(r0, zero), _mm_cmpeq_epi16(r1, zero));
        natural |= (uint64_t)(uint16_t)~_mm_movemask_epi8(z) << (16 * q);
    }
#else
    for (int k = 0; k < 64; k++)
        natural |= (uint64_t)(blk[k] != 0) << k;
#endif
    uint64_t m = 0;
    for (int r = 0; r < 8; r++)
        m |= ZIG_MASK[r][(natural >> (8 * r)) & 0xFF];
    m &= ~1ull;
    b->nz[at] = m;
    b->at[at] = (uint32_t)c->nvals;
    b->dc[at] = (int16_t)blk[0];
    int diff = blk[0] - b->last_dc;
    b->last_dc = blk[0];
    int nb = bit_length((unsigned)(diff < 0 ? -diff : diff));
    if (nb > 11)
        ERREXIT(cinfo, JERR_BAD_DCT_COEF);
    c->tables[c->dc_scan][dc_table].freq[nb]++;
    /* one pass over the nonzero AC coefficients: each kept, and counted into its band's
     * table (the bands are in order and cover 1..63: progressive_install checks) */
    int16_t *out = c->vals + c->nvals;
    for (int i = 0; i < b->bands; i++) {
        uint64_t mm = m & b->band_range[i];
        if (!mm)
            continue;
        long *freq = c->tables[b->band_scan[i]][0].freq;
        int prev = b->band_ss[i] - 1;
        do {
            int k = __builtin_ctzll(mm);
            mm &= mm - 1;
            int v = blk[ZIGZAG[k]];
            *out++ = (int16_t)v;
            unsigned a = (unsigned)(v < 0 ? -v : v);
            if (a > 1023)
                ERREXIT(cinfo, JERR_BAD_DCT_COEF);
            int zeros = k - prev - 1;
            if (zeros > 15) /* rare: not a store to the same counter every time */
                freq[0xF0] += zeros >> 4;
            freq[(zeros & 15) << 4 | bit_length(a)]++;
            prev = k;
        } while (mm);
    }
    c->nvals = (size_t)(out - c->vals);
}

/* libjpeg's encode_mcu: the blocks of one MCU of the sequential scan over every component */
static boolean keep_mcu(j_compress_ptr cinfo, JBLOCKROW *data) {
    struct coder *c = (struct coder *)(void *)cinfo->entropy;
    int blkn = 0;
    for (int ci = 0; ci < cinfo->comps_in_scan; ci++) {
        const jpeg_component_info *comp = cinfo->cur_comp_info[ci];
        struct blocks *b = &c->comp[comp->component_index];
        for (int v = 0; v < comp->MCU_height; v++) {
            size_t row = (size_t)(c->mcu_row * (JDIMENSION)comp->MCU_height + (JDIMENSION)v);
            size_t at = row * b->across + c->mcu_col * (JDIMENSION)comp->MCU_width;
            for (int h = 0; h < comp->MCU_width; h++, blkn++)
                keep_block(cinfo, c, b, at + (size_t)h, data[blkn][0], comp->dc_tbl_no);
        }
    }
    if (++c->mcu_col == cinfo->MCUs_per_row) {
        c->mcu_col = 0;
        c->mcu_row++;
    }
    return TRUE;
}

/* ---- output ---- */

static void flush_out(j_compress_ptr cinfo, struct coder *c) {
    /* libjpeg's contract: the buffer is emptied only when full */
    struct jpeg_destination_mgr *d = cinfo->dest;
    d->next_output_byte = c->out;
    d->free_in_buffer = c->room;
    if (!(*d->empty_output_buffer)(cinfo))
        ERREXIT(cinfo, JERR_CANT_SUSPEND);
    c->out = d->next_output_byte;
    c->room = d->free_in_buffer;
}

static inline void put_byte(j_compress_ptr cinfo, struct coder *c, int v) {
    if (c->room == 0)
        flush_out(cinfo, c);
    *c->out++ = (JOCTET)v;
    c->room--;
}

static void put_2(j_compress_ptr cinfo, struct coder *c, unsigned v) {
    put_byte(cinfo, c, (int)(v >> 8) & 0xFF);
    put_byte(cinfo, c, (int)v & 0xFF);
}

/* the top 32 of the bits held, byte-stuffed (0xFF is followed by 0x00 in entropy data) */
static void put_word(j_compress_ptr cinfo, struct coder *c) {
    c->nbits -= 32;
    uint32_t w = (uint32_t)(c->acc >> c->nbits);
    uint32_t n = ~w;
    int has_ff = ((n - 0x01010101u) & ~n & 0x80808080u) != 0;
    if (!has_ff && c->room >= 4) {
        c->out[0] = (JOCTET)(w >> 24);
        c->out[1] = (JOCTET)(w >> 16);
        c->out[2] = (JOCTET)(w >> 8);
        c->out[3] = (JOCTET)w;
        c->out += 4;
        c->room -= 4;
        return;
    }
    for (int s = 24; s >= 0; s -= 8) {
        int v = (int)(w >> s) & 0xFF;
        put_byte(cinfo, c, v);
        if (v == 0xFF)
            put_byte(cinfo, c, 0);
    }
}

static inline void put_bits(j_compress_ptr cinfo, struct coder *c, uint32_t code, int size) {
    /* size <= 31 and nbits < 32 before: the 64-bit buffer holds both */
    c->acc = (c->acc << size) | code;
    c->nbits += size;
    if (c->nbits >= 32)
        put_word(cinfo, c);
}

static void end_bits(j_compress_ptr cinfo, struct coder *c) {
    put_bits(cinfo, c, 0x7F, 7); /* pad the last byte with ones */
    while (c->nbits >= 8) {
        c->nbits -= 8;
        int v = (int)(c->acc >> c->nbits) & 0xFF;
        put_byte(cinfo, c, v);
        if (v == 0xFF)
            put_byte(cinfo, c, 0);
    }
    c->acc = 0;
    c->nbits = 0;
}

/* ---- Huffman tables ---- */

/* Optimal code lengths of at most 16 bits for freq (JPEG Annex K.2, libjpeg's
 * jpeg_gen_optimal_table, ties broken the same way), into bits and vals, then the codes. */
static void make_table(struct table *t) {
    enum { MAX_CLEN = 32 };
    long freq[257];
    int codesize[257], others[257];
    memcpy(freq, t->freq, sizeof freq);
    freq[256] = 1; /* reserves one code point, so no real code is all ones */
    for (int i = 0; i < 257; i++) {
        codesize[i] = 0;
        others[i] = -1;
    }
    for (;;) {
        int c1 = -1, c2 = -1;
        long v = 1000000000L;
        for (int i = 0; i <= 256; i++)
            if (freq[i] && freq[i] <= v) {
                v = freq[i];
                c1 = i;
            }
        v = 1000000000L;
        for (int i = 0; i <= 256; i++)
            if (freq[i] && freq[i] <= v && i != c1) {
                v = freq[i];
                c2 = i;
            }
        if (c2 < 0)
            break;
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1]++;
        while (others[c1] >= 0) {
            c1 = others[c1];
            codesize[c1]++;
        }
        others[c1] = c2;
        codesize[c2]++;
        while (others[c2] >= 0) {
            c2 = others[c2];
            codesize[c2]++;
        }
    }
    int bits[MAX_CLEN + 1] = {0};
    for (int i = 0; i <= 256; i++)
        if (codesize[i])
            bits[codesize[i] > MAX_CLEN ? MAX_CLEN : codesize[i]]++;
    for (int i = MAX_CLEN; i > 16; i--) {
        while (bits[i] > 0) {
            int j = i - 2;
            while (bits[j] == 0)
                j--;
            bits[i] -= 2;
            bits[i - 1]++;
            bits[j + 1] += 2;
            bits[j]--;
        }
    }
    int top = 16;
    while (bits[top] == 0)
        top--;
    bits[top]--; /* the reserved code point */
    t->bits[0] = 0;
    for (int i = 1; i <= 16; i++)
        t->bits[i] = (UINT8)bits[i];
    int p = 0;
    for (int len = 1; len <= MAX_CLEN; len++)
        for (int s = 0; s <= 255; s++)
            if (codesize[s] == len)
                t->vals[p++] = (UINT8)s;
    /* canonical codes, in the order of vals */
    memset(t->size, 0, sizeof t->size);
    unsigned code = 0;
    p = 0;
    for (int len = 1; len <= 16; len++) {
        for (int k = 0; k < t->bits[len]; k++, p++) {
            t->code[t->vals[p]] = (uint16_t)code++;
            t->size[t->vals[p]] = (uint8_t)len;
        }
        code <<= 1;
    }
}

static int table_count(const struct table *t) {
    int n = 0;
    for (int i = 1; i <= 16; i++)
        n += t->bits[i];
    return n;
}

/* DHT of the tables a scan uses: class 0 DC, 1 AC */
static void put_dht(j_compress_ptr cinfo, struct coder *c, struct table *const *tables,
                    const int *ids, const int *classes, int n) {
    unsigned len = 2;
    for (int i = 0; i < n; i++)
        len += 17 + (unsigned)table_count(tables[i]);
    put_byte(cinfo, c, 0xFF);
    put_byte(cinfo, c, 0xC4);
    put_2(cinfo, c, len);
    for (int i = 0; i < n; i++) {
        put_byte(cinfo, c, classes[i] << 4 | ids[i]);
        for (int b = 1; b <= 16; b++)
            put_byte(cinfo, c, tables[i]->bits[b]);
        for (int v = 0, m = table_count(tables[i]); v < m; v++)
            put_byte(cinfo, c, tables[i]->vals[v]);
    }
}

/* ---- scans ---- */

static inline uint32_t magnitude(int v, int nb) {
    /* a negative value is sent as its ones' complement in nb bits */
    return (uint32_t)(v < 0 ? v - 1 : v) & ((1u << nb) - 1u);
}

/* The DC first scan (Al = 0) of every component: interleaved when there are several, MCU by
 * MCU, dummy blocks included; else the component's own blocks (the same order). */
static void dc_scan(j_compress_ptr cinfo, struct coder *c, int s) {
    const jpeg_scan_info *sc = &c->scans[s];
    int last[MAX_COMPS_IN_SCAN] = {0};
    const struct table *tabs[MAX_COMPS_IN_SCAN];
    int hs[MAX_COMPS_IN_SCAN], vs[MAX_COMPS_IN_SCAN];
    const int interleaved = sc->comps_in_scan > 1;
    for (int i = 0; i < sc->comps_in_scan; i++) {
        const jpeg_component_info *comp = &cinfo->comp_info[sc->component_index[i]];
        tabs[i] = &c->tables[s][comp->dc_tbl_no];
        hs[i] = interleaved ? comp->h_samp_factor : 1;
        vs[i] = interleaved ? comp->v_samp_factor : 1;
    }
    const jpeg_component_info *first = &cinfo->comp_info[sc->component_index[0]];
    const JDIMENSION rows = interleaved ? cinfo->MCU_rows_in_scan : first->height_in_blocks;
    const JDIMENSION cols = interleaved ? cinfo->MCUs_per_row : first->width_in_blocks;
    for (JDIMENSION r = 0; r < rows; r++) {
        for (JDIMENSION col = 0; col < cols; col++) {
            for (int i = 0; i < sc->comps_in_scan; i++) {
                const struct blocks *b = &c->comp[sc->component_index[i]];
                for (int v = 0; v < vs[i]; v++) {
                    const int16_t *dc = b->dc + (size_t)(r * (JDIMENSION)vs[i] + (JDIMENSION)v) *
                                                    b->across + (size_t)col * (size_t)hs[i];
                    for (int h = 0; h < hs[i]; h++) {
                        int diff = dc[h] - last[i];
                        last[i] = dc[h];
                        int nb = bit_length((unsigned)(diff < 0 ? -diff : diff));
                        put_bits(cinfo, c, (uint32_t)tabs[i]->code[nb] << nb | magnitude(diff, nb),
                                 tabs[i]->size[nb] + nb);
                    }
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void eob_run(j_compress_ptr cinfo, struct coder *c,
                                                           struct table *t, unsigned run,
                                                           int gather) {
    int nb = 31 - __builtin_clz(run); /* run < 2^15: nb <= 14 */
    if (gather)
        t->freq[nb << 4]++;
    else
        put_bits(cinfo, c, (uint32_t)t->code[nb << 4] << nb | (run & ((1u << nb) - 1u)),
                 t->size[nb << 4] + nb);
}

/* An AC first scan (Al = 0) of one component, Ss..Se, its blocks row by row: its
 * end-of-band runs counted (gather; keep_block counted the rest), or the scan written. */
static inline __attribute__((always_inline)) void ac_scan(j_compress_ptr cinfo, struct coder *c,
                                                           int s, int gather) {
    const jpeg_scan_info *sc = &c->scans[s];
    const jpeg_component_info *comp = &cinfo->comp_info[sc->component_index[0]];
    const struct blocks *b = &c->comp[sc->component_index[0]];
    struct table *t = &c->tables[s][0];
    const int ss = sc->Ss, se = sc->Se;
    const uint64_t range = (se == 63 ? ~0ull : (1ull << (se + 1)) - 1) & ~((1ull << ss) - 1);
    const uint64_t below = (1ull << ss) - 1;
    const uint64_t last = 1ull << se;
    unsigned run = 0; /* blocks whose band ended in zeros, not yet sent (EOBRUN) */
    for (JDIMENSION r = 0; r < comp->height_in_blocks; r++) {
        const uint64_t *nz = b->nz + (size_t)r * b->across;
        const uint32_t *at = b->at + (size_t)r * b->across;
        for (JDIMENSION col = 0; col < comp->width_in_blocks; col++) {
            uint64_t m = nz[col] & range;
            if (m) {
                if (run) {
                    eob_run(cinfo, c, t, run, gather);
                    run = 0;
                }
                if (!gather) {
                    const int16_t *v = c->vals + at[col] + popcount64(nz[col] & below);
                    int prev = ss - 1;
                    do {
                        int k = __builtin_ctzll(m);
                        m &= m - 1;
                        int zeros = k - prev - 1;
                        for (; zeros > 15; zeros -= 16)
                            put_bits(cinfo, c, t->code[0xF0], t->size[0xF0]);
                        int x = *v++;
                        int nb = bit_length((unsigned)(x < 0 ? -x : x));
                        int sym = zeros << 4 | nb;
                        put_bits(cinfo, c, (uint32_t)t->code[sym] << nb | magnitude(x, nb),
                                 t->size[sym] + nb);
                        prev = k;
                    } while (m);
                }
            }
            if (!(nz[col] & last) && ++run == 0x7FFF) {
                eob_run(cinfo, c, t, run, gather);
                run = 0;
            }
        }
    }
    if (run)
        eob_run(cinfo, c, t, run, gather);
}

static void put_frame(j_compress_ptr cinfo, struct coder *c) {
    int sent[NUM_QUANT_TBLS] = {0};
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        int q = cinfo->comp_info[ci].quant_tbl_no;
        const JQUANT_TBL *qt = cinfo->quant_tbl_ptrs[q];
        if (sent[q])
            continue;
        if (qt == NULL)
            ERREXIT1(cinfo, JERR_NO_QUANT_TABLE, q);
        sent[q] = 1;
        int wide = 0;
        for (int k = 0; k < DCTSIZE2; k++)
            wide |= qt->quantval[k] > 255;
        put_byte(cinfo, c, 0xFF);
        put_byte(cinfo, c, 0xDB);
        put_2(cinfo, c, wide ? 131u : 67u);
        put_byte(cinfo, c, wide << 4 | q);
        for (int k = 0; k < DCTSIZE2; k++) {
            unsigned v = qt->quantval[ZIGZAG[k]];
            if (wide)
                put_byte(cinfo, c, (int)(v >> 8));
            put_byte(cinfo, c, (int)(v & 0xFF));
        }
    }
    put_byte(cinfo, c, 0xFF);
    put_byte(cinfo, c, 0xC2); /* SOF2: progressive, Huffman */
    put_2(cinfo, c, 8u + 3u * (unsigned)cinfo->num_components);
    put_byte(cinfo, c, 8);
    put_2(cinfo, c, cinfo->image_height);
    put_2(cinfo, c, cinfo->image_width);
    put_byte(cinfo, c, cinfo->num_components);
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        const jpeg_component_info *comp = &cinfo->comp_info[ci];
        put_byte(cinfo, c, comp->component_id);
        put_byte(cinfo, c, comp->h_samp_factor << 4 | comp->v_samp_factor);
        put_byte(cinfo, c, comp->quant_tbl_no);
    }
}

static void put_sos(j_compress_ptr cinfo, struct coder *c, const jpeg_scan_info *sc) {
    put_byte(cinfo, c, 0xFF);
    put_byte(cinfo, c, 0xDA);
    put_2(cinfo, c, 6u + 2u * (unsigned)sc->comps_in_scan);
    put_byte(cinfo, c, sc->comps_in_scan);
    for (int i = 0; i < sc->comps_in_scan; i++) {
        const jpeg_component_info *comp = &cinfo->comp_info[sc->component_index[i]];
        put_byte(cinfo, c, comp->component_id);
        /* as libjpeg: a DC scan names its DC table, an AC scan its AC table */
        put_byte(cinfo, c, sc->Ss == 0 ? comp->dc_tbl_no << 4 : comp->ac_tbl_no);
    }
    put_byte(cinfo, c, sc->Ss);
    put_byte(cinfo, c, sc->Se);
    put_byte(cinfo, c, 0); /* Ah, Al */
}

/* libjpeg's finish_pass, at the end of the sequential pass: the whole file after its
 * markers, but for the EOI libjpeg writes next. */
static void write_scans(j_compress_ptr cinfo) {
    struct coder *c = (struct coder *)(void *)cinfo->entropy;
    c->out = cinfo->dest->next_output_byte;
    c->room = cinfo->dest->free_in_buffer;
    c->acc = 0;
    c->nbits = 0;
    put_frame(cinfo, c);
    for (int s = 0; s < c->num_scans; s++) {
        const jpeg_scan_info *sc = &c->scans[s];
        struct table *tabs[MAX_COMPS_IN_SCAN];
        int ids[MAX_COMPS_IN_SCAN], classes[MAX_COMPS_IN_SCAN], n = 0;
        if (sc->Ss > 0)
            ac_scan(cinfo, c, s, 1);
        for (int i = 0; i < sc->comps_in_scan; i++) {
            const jpeg_component_info *comp = &cinfo->comp_info[sc->component_index[i]];
            int id = sc->Ss == 0 ? comp->dc_tbl_no : comp->ac_tbl_no;
            struct table *t = &c->tables[s][sc->Ss == 0 ? id : 0];
            int seen = 0;
            for (int j = 0; j < n; j++)
                seen |= tabs[j] == t;
            if (seen)
                continue;
            make_table(t);
            tabs[n] = t;
            ids[n] = id;
            classes[n++] = sc->Ss == 0 ? 0 : 1;
        }
        put_dht(cinfo, c, tabs, ids, classes, n);
        put_sos(cinfo, c, sc);
        if (sc->Ss == 0)
            dc_scan(cinfo, c, s);
        else
            ac_scan(cinfo, c, s, 0);
        end_bits(cinfo, c);
    }
    cinfo->dest->next_output_byte = c->out;
    cinfo->dest->free_in_buffer = c->room;
}

static void *pooled(j_compress_ptr cinfo, size_t n) {
    return (*cinfo->mem->alloc_large)((j_common_ptr)cinfo, JPOOL_IMAGE, n);
}

void progressive_install(j_compress_ptr cinfo, const jpeg_scan_info *scans, int num_scans) {
    if (cinfo->progressive_mode || cinfo->optimize_coding || cinfo->num_scans != 1 ||
        cinfo->data_precision != 8 || cinfo->comps_in_scan != cinfo->num_components ||
        cinfo->restart_interval || cinfo->restart_in_rows)
        ERREXIT(cinfo, JERR_NOT_COMPILED);
    struct coder *c = (struct coder *)(*cinfo->mem->alloc_small)((j_common_ptr)cinfo, JPOOL_IMAGE,
                                                                 sizeof(struct coder));
    memset(c, 0, sizeof *c);
    c->dc_scan = -1;
    if (ZIG_MASK[0][1] == 0)
        make_zig_masks(); /* the same values from any thread that races here */
    /* first scans only; one DC scan, of every component in order (its order is the order
     * libjpeg hands the blocks over in); each AC scan of one component */
    for (int s = 0; s < num_scans; s++) {
        const jpeg_scan_info *sc = &scans[s];
        int bad = sc->Ah || sc->Al || sc->Ss > sc->Se || sc->Se > 63 ||
                  (sc->Ss == 0 ? sc->Se != 0 || sc->comps_in_scan != cinfo->num_components ||
                                     c->dc_scan >= 0
                               : sc->comps_in_scan != 1);
        for (int i = 0; i < sc->comps_in_scan && !bad; i++)
            bad = sc->Ss == 0 ? sc->component_index[i] != i
                              : sc->component_index[i] < 0 ||
                                    sc->component_index[i] >= cinfo->num_components ||
                                    c->comp[sc->component_index[i]].bands == MAX_BANDS;
        if (bad)
            ERREXIT1(cinfo, JERR_BAD_SCAN_SCRIPT, s);
        if (sc->Ss == 0) {
            c->dc_scan = s;
        } else {
            struct blocks *b = &c->comp[sc->component_index[0]];
            b->band_scan[b->bands] = s;
            b->band_ss[b->bands] = sc->Ss;
            b->band_range[b->bands++] =
                (sc->Se == 63 ? ~0ull : (1ull << (sc->Se + 1)) - 1) & ~((1ull << sc->Ss) - 1);
        }
    }
    if (c->dc_scan < 0)
        ERREXIT1(cinfo, JERR_BAD_SCAN_SCRIPT, num_scans);
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        /* each component's AC scans, in the script's order, cover 1..63 once and in order */
        const struct blocks *b = &c->comp[ci];
        int next = 1;
        for (int i = 0; i < b->bands; i++) {
            const jpeg_scan_info *sc = &scans[b->band_scan[i]];
            if (sc->Ss != next)
                ERREXIT1(cinfo, JERR_BAD_SCAN_SCRIPT, b->band_scan[i]);
            next = sc->Se + 1;
        }
        if (next != 64)
            ERREXIT1(cinfo, JERR_BAD_SCAN_SCRIPT, num_scans);
    }
    c->pub.start_pass = no_pass;
    c->pub.encode_mcu = keep_mcu;
    c->pub.finish_pass = write_scans;
    c->scans = scans;
    c->num_scans = num_scans;
    c->tables = (struct table(*)[NUM_HUFF_TBLS])pooled(
        cinfo, (size_t)num_scans * sizeof(struct table[NUM_HUFF_TBLS]));
    memset(c->tables, 0, (size_t)num_scans * sizeof(struct table[NUM_HUFF_TBLS]));
    size_t all = 0;
    for (int ci = 0; ci < cinfo->comps_in_scan; ci++) {
        const jpeg_component_info *comp = cinfo->cur_comp_info[ci];
        struct blocks *b = &c->comp[comp->component_index];
        b->across = cinfo->MCUs_per_row * (JDIMENSION)comp->MCU_width;
        size_t n = (size_t)b->across * cinfo->MCU_rows_in_scan * (size_t)comp->MCU_height;
        all += n;
        b->nz = (uint64_t *)pooled(cinfo, n * sizeof(uint64_t));
        b->at = (uint32_t *)pooled(cinfo, n * sizeof(uint32_t));
        b->dc = (int16_t *)pooled(cinfo, n * sizeof(int16_t));
    }
    if (all * 63 > UINT32_MAX)
        ERREXIT1(cinfo, JERR_IMAGE_TOO_BIG, (unsigned)(all / 63));
    /* room for every AC coefficient; only the pages the nonzero ones reach are touched */
    c->vals = (int16_t *)pooled(cinfo, all * 63 * sizeof(int16_t));
    cinfo->entropy = (struct jpeg_entropy_encoder *)(void *)c;
    /* the file's frame and scans are written here, not by libjpeg's sequential headers */
    struct marker_writer *m = (struct marker_writer *)(void *)cinfo->marker;
    m->write_frame_header = no_header;
    m->write_scan_header = no_header;
}

#endif
