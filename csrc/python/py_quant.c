/* py_quant.c: INT weight blocks (quantize, dequantize) and the activation quantisation. */
#include "pyhelpers.h"

#define FMT_ARG INT_ARG("format", MOE_Q_INT8, MOE_Q_LAST)

static int check_group(long long G) {
    if (G != 32 && G != 64 && G != 128) {
        PyErr_Format(PyExc_ValueError, "group_size must be 32, 64 or 128, got %lld", G);
        return -1;
    }
    return 0;
}

/* quantize(w (E, N, K) f32, fmt, G, P=1, p=0, out=None, name="weights") -> uint8 blocks (P * blocks bytes) */
MOE_PY_FN(py_quantize) {
    (void)self;
    static char *kwlist[] = {"w", "fmt", "group_size", "interleave", "slot", "out", "name", NULL};
    PyObject *w_o, *out_o = Py_None;
    const char *name = "weights";
    int_arg fmt = FMT_ARG, G = INT_ARG("group_size", 1, 128), P = INT_ARG_DEFAULT("interleave", 1, 2, 1);
    int_arg p = INT_ARG("slot", 0, 1);
    PyArrayObject *w = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&O&|O&O&Os:quantize", kwlist, &w_o, conv_int, &fmt, conv_int,
                                     &G, conv_int, &P, conv_int, &p, &out_o, &name))
        return NULL;
    if (check_group(G.value) < 0) return NULL;
    if (p.value >= P.value) return PyErr_Format(PyExc_ValueError, "slot must be < interleave"), NULL;
    if (!(w = get_input(w_o, name, NPY_FLOAT32, 3))) goto fail;
    const int64_t E = PyArray_DIM(w, 0), N = PyArray_DIM(w, 1), K = PyArray_DIM(w, 2);
    if (E < 1 || N < 1 || K < 1) { PyErr_Format(PyExc_ValueError, "%s must have no empty dimension", name); goto fail; }
    if (K % G.value) {
        PyErr_Format(PyExc_ValueError, "group_size %lld must divide the input dimension %lld of %s", G.value,
                     (long long)K, name);
        goto fail;
    }
    const int64_t bytes = moe_qpacked_bytes(E, N, K, (int32_t)fmt.value, G.value);
    if (bytes < 0 || bytes > INT64_MAX / P.value) { PyErr_SetString(PyExc_OverflowError, "size overflows"); goto fail; }
    const npy_intp dims[1] = {bytes * P.value};
    PyArrayObject *avoid[1] = {w};
    out = out_o == Py_None ? (PyArrayObject *)PyArray_ZEROS(1, (npy_intp *)dims, NPY_UINT8, 0)
                           : get_output(out_o, "out", NPY_UINT8, 1, dims, avoid, 1);
    if (!out) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_quantize(PyArray_DATA(out), &bad, PyArray_DATA(w), E, N, K, (int32_t)fmt.value, G.value,
                      (int32_t)P.value, (int32_t)p.value);
    Py_END_ALLOW_THREADS
    if (st == MOE_ENAN || st == MOE_ERANGE) {
        const int64_t k = bad % K, n = (bad / K) % N, e = bad / (K * N);
        if (st == MOE_ENAN)
            PyErr_Format(PyExc_ValueError, "%s holds NaN or inf at [%lld, %lld, %lld]", name, (long long)e,
                         (long long)n, (long long)k);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s: the group at [%lld, %lld, %lld:%lld] is too large for fp16 block scales "
                         "(|w| up to ~8.3e6 for int8, ~6.5e5 for int4, ~7.8e6 for int4_nl, a minimum within +-65504 for "
                         "int4_asym); "
                         "rescale the weights or keep them float",
                         name, (long long)e, (long long)n, (long long)k, (long long)(k + G.value));
        goto fail;
    }
    if (st != MOE_OK) { set_status_error(st, name, -1); goto fail; }
    Py_DECREF(w);
    return (PyObject *)out;
fail:
    Py_XDECREF(w); Py_XDECREF(out);
    return NULL;
}

/* dequantize(blocks uint8, E, N, K, fmt, G, P=1, p=0) -> (E, N, K) f32 */
MOE_PY_FN(py_dequantize) {
    (void)self;
    static char *kwlist[] = {"blocks", "E", "N", "K", "fmt", "group_size", "interleave", "slot", NULL};
    PyObject *b_o;
    int_arg E = INT_ARG("E", 1, INT64_MAX), N = INT_ARG("N", 1, INT64_MAX), K = INT_ARG("K", 1, INT64_MAX);
    int_arg fmt = FMT_ARG, G = INT_ARG("group_size", 1, 128), P = INT_ARG_DEFAULT("interleave", 1, 2, 1);
    int_arg p = INT_ARG("slot", 0, 1);
    PyArrayObject *b = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&O&O&O&O&|O&O&:dequantize", kwlist, &b_o, conv_int, &E,
                                     conv_int, &N, conv_int, &K, conv_int, &fmt, conv_int, &G, conv_int, &P, conv_int,
                                     &p))
        return NULL;
    if (check_group(G.value) < 0) return NULL;
    if (K.value % G.value || p.value >= P.value)
        return PyErr_SetString(PyExc_ValueError, "group_size must divide K and slot be < interleave"), NULL;
    if (!(b = get_input(b_o, "blocks", NPY_UINT8, 1))) goto fail;
    const int64_t bytes = moe_qpacked_bytes(E.value, N.value, K.value, (int32_t)fmt.value, G.value);
    if (bytes < 0 || bytes > INT64_MAX / P.value || PyArray_DIM(b, 0) != bytes * P.value) {
        PyErr_Format(PyExc_ValueError, "blocks must hold %lld bytes for this shape", (long long)(bytes * P.value));
        goto fail;
    }
    if (E.value > INT64_MAX / N.value || E.value * N.value > INT64_MAX / K.value) {
        PyErr_SetString(PyExc_OverflowError, "E * N * K overflows int64");
        goto fail;
    }
    const npy_intp dims[3] = {E.value, N.value, K.value};
    if (!(out = (PyArrayObject *)PyArray_EMPTY(3, (npy_intp *)dims, NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_dequantize(PyArray_DATA(out), PyArray_DATA(b), E.value, N.value, K.value, (int32_t)fmt.value, G.value,
                        (int32_t)P.value, (int32_t)p.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "blocks", -1); goto fail; }
    Py_DECREF(b);
    return (PyObject *)out;
fail:
    Py_XDECREF(b); Py_XDECREF(out);
    return NULL;
}

/* quantize_rows(x (R, K) f32, G) -> (xq (R, K) i8, scales (R, K/G) f32, sums (R, K/G) i32) */
MOE_PY_FN(py_quantize_rows) {
    (void)self;
    static char *kwlist[] = {"x", "group_size", NULL};
    PyObject *x_o;
    int_arg G = INT_ARG("group_size", 1, 128);
    PyArrayObject *x = NULL, *q = NULL, *sc = NULL, *sm = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&:quantize_rows", kwlist, &x_o, conv_int, &G)) return NULL;
    if (check_group(G.value) < 0) return NULL;
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    const int64_t R = PyArray_DIM(x, 0), K = PyArray_DIM(x, 1);
    if (K < 1 || K % G.value) {
        PyErr_Format(PyExc_ValueError, "group_size %lld must divide K=%lld", G.value, (long long)K);
        goto fail;
    }
    const npy_intp dq[2] = {R, K}, dg[2] = {R, K / G.value};
    if (!(q = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dq, NPY_INT8, 0))) goto fail;
    if (!(sc = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dg, NPY_FLOAT32, 0))) goto fail;
    if (!(sm = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dg, NPY_INT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_quantize_rows(PyArray_DATA(q), PyArray_DATA(sc), PyArray_DATA(sm), PyArray_DATA(x), R, K, G.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "x", -1); goto fail; }
    Py_DECREF(x);
    return Py_BuildValue("NNN", q, sc, sm);
fail:
    Py_XDECREF(x); Py_XDECREF(q); Py_XDECREF(sc); Py_XDECREF(sm);
    return NULL;
}
