/* dispatch.h: internal to the kernels (dispatch.c, ffn.c): the combine with row strides, shared by
 * moe_forward (padded rows of Hp floats) and moe_combine (rows of H floats). */
#ifndef MOEPY_DISPATCH_H
#define MOEPY_DISPATCH_H

#include <stdint.h>

/* out (T, H) <- per token, kept rows of y (stride ldy) in ascending expert order weighted by weights
 * (1 when scale_input), then + shared_gate[t] * ys[t] (stride ldys; ys may be NULL). -1 (after finishing)
 * if a row holds a duplicate expert id or a position outside [-1, N). */
int moe_combine_rows(float *out, const float *y, int64_t ldy, int64_t N, const int64_t *position,
                     const int32_t *experts, const float *weights, int64_t T, int64_t K, int64_t H,
                     int32_t scale_input, const float *ys, int64_t ldys, const float *shared_gate, int nthreads);

#endif
