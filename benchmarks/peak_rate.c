/* peak_rate.c: the core's arithmetic limit, no library in between: independent chains of 512-bit fp32 FMAs
 * (vfmadd231ps: 32 flops), bf16 pair dot products (vdpbf16ps: 64 flops) and int8 quad dot products (vpdpbusd:
 * 128 int ops), enough chains in flight to cover the instructions' latency, on N OpenMP threads.
 *
 *   gcc -O3 -fopenmp -mavx512f -mavx512bf16 -mavx512vnni benchmarks/peak_rate.c -o peak_rate && ./peak_rate 2
 *
 * Prints one line per kind: "<kind> <threads> <G op/s>" (the benchmarks read it: common.measure_peak_rate). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 12
#define ITERS 20000000L

static volatile float sink; /* keeps each thread's result alive */

static void chains_fp32(void) {
    __m512 a[CHAINS];
    const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_fmadd_ps(a[c], x, y);
    float s = 0;
    for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_ps(a[c]);
    sink = s;
}

static void chains_bf16(void) {
    __m512 a[CHAINS];
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3F803F80), y = (__m512bh)_mm512_set1_epi32(0x3F7F3F7F);
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_dpbf16_ps(a[c], x, y);
    float s = 0;
    for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_ps(a[c]);
    sink = s;
}

static void chains_int8(void) {
    __m512i a[CHAINS];
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_epi32(c);
    for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_dpbusd_epi32(a[c], x, y);
    long s = 0;
    for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_epi32(a[c]);
    sink = (float)s;
}

/* G op/s of `chains` run on every thread at once, best of 3; ops: per instruction */
static double rate(void (*chains)(void), int threads, double ops) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
        chains();
        const double t = omp_get_wtime() - t0;
        if (t < best) best = t;
    }
    return (double)threads * ITERS * CHAINS * ops / best / 1e9;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    printf("fp32 %d %.1f\n", threads, rate(chains_fp32, threads, 32));
    printf("bf16 %d %.1f\n", threads, rate(chains_bf16, threads, 64));
    printf("int8 %d %.1f\n", threads, rate(chains_int8, threads, 128));
    return 0;
}
