/* pyhelpers.h: the shared part of the Python boundary (csrc/python only; include nowhere else).
 *
 * Every entry point follows one shape:
 *   parse (typed converters: ints reject bool / float / str, ValueError naming the argument)
 *   -> convert/check inputs (get_input: exact kind, any byte order or alignment, copied to a native,
 *      C-contiguous array when needed; expert ids always copied privately and validated there)
 *   -> allocate or check outputs (get_output: native, contiguous, writeable, no overlap with any input
 *      or packed weight)
 *   -> release the GIL around the pure-C call only -> map the status -> return; one error label. */
#ifndef MOEPY_PYHELPERS_H
#define MOEPY_PYHELPERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL moepy_ARRAY_API
#ifndef MOEPY_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdint.h>

#include "moe.h"

/* ---- typed arguments for PyArg_Parse "O&": set .name (and the bounds) before parsing */
typedef struct {
    const char *name;
    long long lo, hi; /* inclusive bounds */
    long long value;
} int_arg;
#define INT_ARG(nm, lo_, hi_) {(nm), (lo_), (hi_), 0}
#define INT_ARG_DEFAULT(nm, lo_, hi_, def_) {(nm), (lo_), (hi_), (def_)}
int conv_int(PyObject *obj, void *arg); /* int or numpy integer (not bool) within [lo, hi] */

typedef struct {
    const char *name;
    int allow_nan;
    float value;
} float_arg;
int conv_float(PyObject *obj, void *arg); /* a real number (not bool, not str) */

/* ---- arrays */
/* A new reference to a native-byte-order, C-contiguous, aligned array of exactly `typenum` and rank
 * `ndim` holding obj's values (a copy when obj is not already one). TypeError / ValueError naming `name`. */
PyArrayObject *get_input(PyObject *obj, const char *name, int typenum, int ndim);
/* get_input that always copies (a private array no other thread can change while the GIL is released) */
PyArrayObject *get_private(PyObject *obj, const char *name, int typenum, int ndim);
/* A borrowed, checked packed array (1-D, exact dtype, native, contiguous, aligned): packed weights are
 * never copied per call. */
PyArrayObject *check_packed(PyObject *obj, const char *name, int typenum);
/* A new reference to an output: allocated when obj is None, else checked (dtype, shape, native,
 * contiguous, aligned, writeable, no overlap with any of avoid[0..n), NULL entries skipped). */
PyArrayObject *get_output(PyObject *obj, const char *name, int typenum, int ndim, const npy_intp *dims,
                          PyArrayObject *const *avoid, int navoid);
int arrays_overlap(PyArrayObject *a, PyArrayObject *b);

/* expert ids (T, K) int32 of a private copy: each in [0, E); with unique, no id twice in a row */
int check_expert_ids(PyArrayObject *ids, const char *name, int64_t E, int unique);

void set_status_error(moe_status st, const char *name, int64_t bad_row);

/* ---- packed experts (moepy._ops.PackedExperts, read by attribute name) */
typedef struct {
    moe_experts c;
    PyArrayObject *arrays[4]; /* w_in, w_out, b_in, b_out (borrowed from the held fields) */
    PyObject *fields[4];      /* new references held until release_experts */
} py_experts;
/* need_out = 0 allows w_out None (the router linear) */
int parse_experts(PyObject *obj, const char *name, py_experts *ex, int need_out);
void release_experts(py_experts *ex);

#if defined(__clang__)
#define MOE_COMPILER_STRING "clang " __clang_version__
#elif defined(__GNUC__)
#define MOE_COMPILER_STRING "gcc " __VERSION__
#else
#define MOE_COMPILER_STRING "unknown"
#endif

/* ---- entry points (one file per area) */
#define MOE_PY_FN(name) PyObject *name(PyObject *self, PyObject *args, PyObject *kwargs)
MOE_PY_FN(py_route_params);
MOE_PY_FN(py_route);
MOE_PY_FN(py_topk);
MOE_PY_FN(py_apply_capacity);
MOE_PY_FN(py_expert_choice);
MOE_PY_FN(py_expert_load);
MOE_PY_FN(py_pack);
MOE_PY_FN(py_moe_forward);
MOE_PY_FN(py_forward_workspace);
MOE_PY_FN(py_linear);
MOE_PY_FN(py_rms_norm);
MOE_PY_FN(py_rope);
MOE_PY_FN(py_dispatch_plan);
MOE_PY_FN(py_gather);
MOE_PY_FN(py_grouped_ffn);
MOE_PY_FN(py_combine);
MOE_PY_FN(py_quantize);
MOE_PY_FN(py_dequantize);
MOE_PY_FN(py_quantize_rows);
MOE_PY_FN(py_packed_elems);
MOE_PY_FN(py_attention);

#endif
