/* bf16_widen.c: does the widening of bf16 weights bind a one-row bf16 GEMV (decode with fp32 activations)?
 * Streams NP panels of 16 columns x 2048 inputs (bf16) through one core, four panels at a time, two ways: as moepy's
 * tile widens them (a 32-byte load, zero-extension, shift per 16 weights) and from a pair-interleaved layout (one
 * 64-byte load and two unpacks give two inputs' 16 columns). Prints GB/s of weights read for each.
 *
 *   gcc -O3 -std=c11 -mavx512f -mavx512bw -mfma benchmarks/bf16_widen.c -o bf16_widen
 *   ./bf16_widen             # 256 MB of weights: from DRAM
 *   NP=32 ./bf16_widen       # 2 MB: from L2, where arithmetic would show
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define K 2048
int main(void) {
    const long NP = getenv("NP") ? atol(getenv("NP")) : 4096; /* panels of 16 columns: 4096 * 2048 * 16 * 2 B = 256 MB */
    if (NP < 4 || NP % 4) { fprintf(stderr, "NP must be a positive multiple of 4, got %ld\n", NP); return 2; }
    uint16_t *w = aligned_alloc(64, (size_t)NP * K * 16 * 2);
    if (!w) { fprintf(stderr, "out of memory\n"); return 1; }
    for (long i = 0; i < NP * K * 16; i++) w[i] = 0x3f80 + (i & 7);
    float x[K]; for (int k = 0; k < K; k++) x[k] = 1.0f / (k + 1);
    float *y = aligned_alloc(64, NP * 16 * 4);
    for (int rep = 0; rep < (NP < 1024 ? 60 : 6); rep++) {
        double t0 = now();
        for (long p = 0; p < NP; p += 4) { /* A: 4 panels at a time, per k one 32-B load per panel */
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const uint16_t *w0 = w + p * K * 16;
            for (int k = 0; k < K; k++) {
                const __m512 xv = _mm512_set1_ps(x[k]);
#define LD(q) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)(w0 + (q) * K * 16 + k * 16))), 16))
                a0 = _mm512_fmadd_ps(xv, LD(0), a0); a1 = _mm512_fmadd_ps(xv, LD(1), a1);
                a2 = _mm512_fmadd_ps(xv, LD(2), a2); a3 = _mm512_fmadd_ps(xv, LD(3), a3);
            }
            _mm512_store_ps(y + p * 16, a0); _mm512_store_ps(y + p * 16 + 16, a1);
            _mm512_store_ps(y + p * 16 + 32, a2); _mm512_store_ps(y + p * 16 + 48, a3);
        }
        double t1 = now();
        const __m512i z = _mm512_setzero_si512();
        for (long p = 0; p < NP; p += 4) { /* B: pair layout, per k pair one 64-B load per panel, unpacklo / hi */
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const uint16_t *w0 = w + p * K * 16;
            for (int k = 0; k < K; k += 2) {
                const __m512 xe = _mm512_set1_ps(x[k]), xo = _mm512_set1_ps(x[k + 1]);
#define PR(q, acc) { const __m512i v = _mm512_load_si512((const void *)(w0 + (q) * K * 16 + k * 16)); \
                acc = _mm512_fmadd_ps(xe, _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v)), acc); \
                acc = _mm512_fmadd_ps(xo, _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v)), acc); }
                PR(0, a0) PR(1, a1) PR(2, a2) PR(3, a3)
            }
            _mm512_store_ps(y + p * 16, a0); _mm512_store_ps(y + p * 16 + 16, a1);
            _mm512_store_ps(y + p * 16 + 32, a2); _mm512_store_ps(y + p * 16 + 48, a3);
        }
        double t2 = now();
        double gb = NP * K * 16 * 2 / 1e9;
        printf("A widen %.1f GB/s   B pair-unpack %.1f GB/s   (y %g)\n", gb / (t1 - t0), gb / (t2 - t1), y[5]);
    }
    return 0;
}
