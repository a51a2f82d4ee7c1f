/* amx_bf16_order.c: does AMX's bf16 tile dot (tdpbf16ps) round like any order the other ISAs can compute?
 *
 * moepy's results are bitwise the same on every ISA, so a bf16-activation kernel on AMX tiles is usable only if
 * the scalar, AVX2 and AVX-512 builds can reproduce tdpbf16ps's rounding. This probe runs one 16 x 16 x 32 tile dot
 * on random bf16 inputs (moderate exponents: every product of two bf16 is exact in float, nothing overflows, no
 * subnormals) and counts the outputs that differ from each candidate computed in float:
 *   - the pairs in order, each product added with one rounding to nearest even, even element first;
 *   - the same, odd element first (vdpbf16ps's documented order, the one moepy's bf16 kernels compute);
 *   - each pair's sum rounded once, then added;
 *   - the whole sum (accumulator + 32 products) exact, rounded once.
 * On the Intel Xeon of 2026-12-03 (AMX granted) the first version of this probe (exponents drawn wider, the exact
 * candidate summed in double) found every candidate missing 47-94% of the outputs, and 1.3% even with a single pair
 * per output (acc + a0 b0 + a1 b1), so moepy does not use tdpbf16ps (see the README, bf16 activations). This version
 * sums the exact candidate in long double (exact for these exponents) and has not yet run on an AMX host; on one
 * without AMX it stops with "AMX tile state: Operation not supported".
 *
 *   gcc -O2 -ffp-contract=off -mamx-tile -mamx-bf16 benchmarks/amx_bf16_order.c -o /tmp/amx_bf16_order && /tmp/amx_bf16_order [pairs]
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define TRIALS 2000

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static uint64_t state = 88172645463325252ull;
static uint64_t next_random(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }

/* a bf16 of random sign and mantissa, exponent within 2^-10 .. 2^10 */
static uint16_t random_bf16(void) {
    const uint16_t sign = (uint16_t)((next_random() & 1) << 15), exponent = (uint16_t)(117 + next_random() % 21);
    return (uint16_t)(sign | exponent << 7 | (next_random() & 0x7F));
}

static float bf16_value(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int main(int argc, char **argv) {
    const int pairs = argc > 1 ? atoi(argv[1]) : 16; /* pairs per output that hold data (the rest are zero) */
    if (pairs < 1 || pairs > 16) return fprintf(stderr, "pairs: 1 to 16\n"), 2;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) return perror("AMX tile state"), 1;
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 3; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    static uint16_t a[16][32], b[16][32]; /* a: 16 rows x 16 pairs; b: 16 pairs x 16 columns x 2 */
    static float c0[16][16], c[16][16];
    const char *names[4] = {"even element first", "odd element first (vdpbf16ps)", "pair sum, then add",
                            "exact sum, one rounding"};
    long differ[4] = {0}, outputs = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        for (int m = 0; m < 16; m++)
            for (int k = 0; k < 32; k++) a[m][k] = k < 2 * pairs ? random_bf16() : 0;
        for (int k = 0; k < 16; k++)
            for (int j = 0; j < 32; j++) b[k][j] = random_bf16();
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) c0[m][n] = trial % 3 ? bf16_value(random_bf16()) : 0.0f;
        memcpy(c, c0, sizeof c);
        _tile_loadd(0, c, 64);
        _tile_loadd(1, a, 64);
        _tile_loadd(2, b, 64);
        _tile_dpbf16ps(0, 1, 2);
        _tile_stored(0, c, 64);
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                float even_first = c0[m][n], odd_first = c0[m][n], pair_sums = c0[m][n];
                long double exact = c0[m][n];
                for (int k = 0; k < 16; k++) {
                    const float p0 = bf16_value(a[m][2 * k]) * bf16_value(b[k][2 * n]);  /* exact */
                    const float p1 = bf16_value(a[m][2 * k + 1]) * bf16_value(b[k][2 * n + 1]);
                    even_first = (even_first + p0) + p1;
                    odd_first = (odd_first + p1) + p0;
                    pair_sums += p0 + p1;
                    exact += (long double)p0 + (long double)p1;
                }
                const float candidate[4] = {even_first, odd_first, pair_sums, (float)exact};
                for (int q = 0; q < 4; q++) differ[q] += memcmp(&c[m][n], &candidate[q], 4) != 0;
                outputs++;
            }
    }
    _tile_release();
    printf("tdpbf16ps, %d pair(s) per output, %ld outputs: share that differs from\n", pairs, outputs);
    for (int q = 0; q < 4; q++) printf("  %-32s %6.2f%%\n", names[q], 100.0 * (double)differ[q] / (double)outputs);
    return 0;
}
