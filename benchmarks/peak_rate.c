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

static double now(void) { return omp_get_wtime(); }

static double run_fp32(int threads) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            __m512 a[CHAINS];
            const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
            for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c);
            for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
                for (int c = 0; c < CHAINS; c++) a[c] = _mm512_fmadd_ps(a[c], x, y);
            float s = 0;
            for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_ps(a[c]);
            if (s == 1.2345f) printf("%f\n", s); /* keep the result alive */
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return (double)threads * ITERS * CHAINS * 32 / best / 1e9;
}

static double run_bf16(int threads) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            __m512 a[CHAINS];
            const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3F803F80), y = (__m512bh)_mm512_set1_epi32(0x3F7F3F7F);
            for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c);
            for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
                for (int c = 0; c < CHAINS; c++) a[c] = _mm512_dpbf16_ps(a[c], x, y);
            float s = 0;
            for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_ps(a[c]);
            if (s == 1.2345f) printf("%f\n", s);
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return (double)threads * ITERS * CHAINS * 64 / best / 1e9;
}

static double run_int8(int threads) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            __m512i a[CHAINS];
            const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
            for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_epi32(c);
            for (long i = 0; i < ITERS; i++)
#pragma GCC unroll 16
                for (int c = 0; c < CHAINS; c++) a[c] = _mm512_dpbusd_epi32(a[c], x, y);
            long s = 0;
            for (int c = 0; c < CHAINS; c++) s += _mm512_reduce_add_epi32(a[c]);
            if (s == 12345) printf("%ld\n", s);
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return (double)threads * ITERS * CHAINS * 128 / best / 1e9;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    printf("fp32 %d %.1f\n", threads, run_fp32(threads));
    printf("bf16 %d %.1f\n", threads, run_bf16(threads));
    printf("int8 %d %.1f\n", threads, run_int8(threads));
    return 0;
}
