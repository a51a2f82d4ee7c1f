/* py_attention.c: the Python boundary of moe_attention (csrc/kernels/attention.c).
 *
 * q, k, v are read in place as strided views (the KV cache passes slices of its storage; MLA passes one
 * buffer as k and its first columns as v): float32, 4-D, native byte order, aligned, unit stride in the
 * last axis and non-negative strides that are whole elements. Anything else is a ValueError / TypeError
 * naming the argument; nothing is copied silently except sinks (a small vector). */
#include "pyhelpers.h"

#include <math.h>

/* element strides of a strided float32 / byte view a; 0 on success, -1 with an exception set */
static int view_strides(PyObject *obj, const char *name, int ndim, int bool_or_u8, PyArrayObject **out,
                        int64_t *strides) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of %s, got %.100s", name,
                     bool_or_u8 ? "bool" : "float32", Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    const int t = PyArray_TYPE(a);
    if (bool_or_u8 ? (t != NPY_BOOL && t != NPY_UINT8) : t != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got %R", name, bool_or_u8 ? "bool or uint8" : "float32",
                     (PyObject *)PyArray_DESCR(a));
        return -1;
    }
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got %d dimensions", name, ndim, PyArray_NDIM(a));
        return -1;
    }
    if (!PyArray_ISNOTSWAPPED(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned and in native byte order", name);
        return -1;
    }
    const npy_intp item = PyArray_ITEMSIZE(a);
    const int empty = PyArray_SIZE(a) == 0;
    for (int i = 0; i < ndim; i++) {
        const npy_intp n = PyArray_DIM(a, i), st = PyArray_STRIDE(a, i);
        if (n <= 1 || empty) { strides[i] = 0; continue; } /* never used: a length-1 axis, or no elements */
        if (i == ndim - 1 ? st != item : (st < 0 || st % item != 0)) {
            PyErr_Format(PyExc_ValueError, "%s must have unit stride in its last axis and non-negative whole-element "
                                           "strides (axis %d has stride %lld bytes); pass numpy.ascontiguousarray(%s)",
                         name, i, (long long)st, name);
            return -1;
        }
        strides[i] = (int64_t)(st / item);
    }
    *out = a;
    return 0;
}

static int check_dim(PyArrayObject *a, const char *name, int axis, npy_intp want, const char *what) {
    if (PyArray_DIM(a, axis) == want) return 0;
    PyErr_Format(PyExc_ValueError, "%s has %lld in axis %d, expected %lld (%s)", name,
                 (long long)PyArray_DIM(a, axis), axis, (long long)want, what);
    return -1;
}

/* attention(q (B,Hq,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv), allowed (B,T,S) bool|u8, scale, sinks (Hq,)|None)
 *   -> out (B, Hq, T, Dv) f32 */
MOE_PY_FN(py_attention) {
    (void)self;
    static char *kwlist[] = {"q", "k", "v", "allowed", "scale", "sinks", NULL};
    PyObject *q_o, *k_o, *v_o, *m_o, *s_o = Py_None;
    float_arg scale = {"scale", 0, 0.0f};
    PyArrayObject *q, *k, *v, *m, *sinks = NULL, *out = NULL;
    int64_t qs[4], ks[4], vs[4], ms[3];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO&|O:attention", kwlist, &q_o, &k_o, &v_o, &m_o, conv_float,
                                     &scale, &s_o))
        return NULL;
    if (!isfinite(scale.value)) {
        PyErr_SetString(PyExc_ValueError, "scale must be finite");
        return NULL;
    }
    if (view_strides(q_o, "q", 4, 0, &q, qs) < 0 || view_strides(k_o, "k", 4, 0, &k, ks) < 0 ||
        view_strides(v_o, "v", 4, 0, &v, vs) < 0 || view_strides(m_o, "allowed", 3, 1, &m, ms) < 0)
        return NULL;
    const npy_intp B = PyArray_DIM(q, 0), Hq = PyArray_DIM(q, 1), T = PyArray_DIM(q, 2), D = PyArray_DIM(q, 3);
    const npy_intp Hkv = PyArray_DIM(k, 1), S = PyArray_DIM(k, 2), Dv = PyArray_DIM(v, 3);
    if (Hq < 1 || D < 1 || Dv < 1 || Hkv < 1) {
        PyErr_SetString(PyExc_ValueError, "q, k and v need at least one head and one column (Hq, Hkv, D, Dv >= 1)");
        return NULL;
    }
    if (Hq % Hkv != 0) {
        PyErr_Format(PyExc_ValueError, "k has %lld heads, which does not divide the %lld query heads of q",
                     (long long)Hkv, (long long)Hq);
        return NULL;
    }
    if (check_dim(k, "k", 0, B, "the batch of q") < 0 || check_dim(k, "k", 3, D, "the head dim of q") < 0 ||
        check_dim(v, "v", 0, B, "the batch of q") < 0 || check_dim(v, "v", 1, Hkv, "the heads of k") < 0 ||
        check_dim(v, "v", 2, S, "the keys of k") < 0 || check_dim(m, "allowed", 0, B, "the batch of q") < 0 ||
        check_dim(m, "allowed", 1, T, "the queries of q") < 0 || check_dim(m, "allowed", 2, S, "the keys of k") < 0)
        return NULL;
    if (s_o != Py_None) {
        if (!(sinks = get_private(s_o, "sinks", NPY_FLOAT32, 1))) return NULL;
        if (PyArray_DIM(sinks, 0) != Hq) {
            PyErr_Format(PyExc_ValueError, "sinks has %lld entries, expected one per query head (%lld)",
                         (long long)PyArray_DIM(sinks, 0), (long long)Hq);
            goto fail;
        }
    }
    const npy_intp dims[4] = {B, Hq, T, Dv};
    if (!(out = (PyArrayObject *)PyArray_EMPTY(4, dims, NPY_FLOAT32, 0))) goto fail;
    const moe_attention_dims d = {.B = B, .Hq = Hq, .Hkv = Hkv, .T = T, .S = S, .D = D, .Dv = Dv,
                                  .q_sb = qs[0], .q_sh = qs[1], .q_st = qs[2],
                                  .k_sb = ks[0], .k_sh = ks[1], .k_ss = ks[2],
                                  .v_sb = vs[0], .v_sh = vs[1], .v_ss = vs[2],
                                  .m_sb = ms[0], .m_st = ms[1], .scale = scale.value};
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_attention(PyArray_DATA(out), PyArray_DATA(q), PyArray_DATA(k), PyArray_DATA(v), PyArray_DATA(m),
                       sinks ? PyArray_DATA(sinks) : NULL, &d);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "attention", -1); goto fail; }
    Py_XDECREF(sinks);
    return (PyObject *)out;
fail:
    Py_XDECREF(sinks); Py_XDECREF(out);
    return NULL;
}
