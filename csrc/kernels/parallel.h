/* parallel.h: OpenMP helpers shared by the kernels, and checked int64 size arithmetic. */
#ifndef MOEPY_PARALLEL_H
#define MOEPY_PARALLEL_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#define MOE_THREAD_ID() omp_get_thread_num()
#else
#define MOE_THREAD_ID() 0
#endif

/* a * b, or -1 if it would overflow (a, b >= 0) */
static inline int64_t moe_mul_checked(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* below this many elements of work a kernel runs on the calling thread only */
#define MOE_PARALLEL_MIN_WORK 32768

#endif
