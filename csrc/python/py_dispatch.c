/* py_dispatch.c: the pieces of moe_forward, one entry point each: plan -> gather -> grouped FFN -> combine. */
#include "pyhelpers.h"

#include <string.h>

/* dispatch_plan(experts (T, K) i32, dropped | None, num_experts) -> (counts, offsets, order, position) i64 */
MOE_PY_FN(py_dispatch_plan) {
    (void)self;
    static char *kwlist[] = {"experts", "dropped", "num_experts", NULL};
    PyObject *e_o, *d_o;
    int_arg E = INT_ARG("num_experts", 1, INT32_MAX);
    PyArrayObject *ex = NULL, *dropped = NULL, *counts = NULL, *offsets = NULL, *order = NULL, *pos = NULL;
    PyObject *order_n = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO&:dispatch_plan", kwlist, &e_o, &d_o, conv_int, &E))
        return NULL;
    if (!(ex = get_private(e_o, "experts", NPY_INT32, 2))) goto fail;
    const int64_t T = PyArray_DIM(ex, 0), K = PyArray_DIM(ex, 1);
    if (K < 1) { PyErr_SetString(PyExc_ValueError, "experts must have at least one column"); goto fail; }
    if (check_expert_ids(ex, "experts", E.value, 0) < 0) goto fail;
    if (d_o != Py_None) {
        if (!(dropped = get_private(d_o, "dropped", NPY_BOOL, 2))) goto fail;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K) {
            PyErr_SetString(PyExc_ValueError, "dropped must have the shape of experts");
            goto fail;
        }
    }
    const npy_intp de[1] = {E.value}, de1[1] = {E.value + 1}, dn[1] = {T * K};
    if (!(counts = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)de, NPY_INT64, 0))) goto fail;
    if (!(offsets = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)de1, NPY_INT64, 0))) goto fail;
    if (!(order = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)dn, NPY_INT64, 0))) goto fail;
    if (!(pos = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)dn, NPY_INT64, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_dispatch_plan(PyArray_DATA(counts), PyArray_DATA(offsets), PyArray_DATA(order), PyArray_DATA(pos),
                           PyArray_DATA(ex), dropped ? PyArray_DATA(dropped) : NULL, T, K, E.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "experts", -1); goto fail; }
    const int64_t n = ((int64_t *)PyArray_DATA(offsets))[E.value];
    if (!(order_n = PySequence_GetSlice((PyObject *)order, 0, n))) goto fail;
    Py_DECREF(order); Py_DECREF(ex); Py_XDECREF(dropped);
    return Py_BuildValue("NNNN", counts, offsets, order_n, pos);
fail:
    Py_XDECREF(ex); Py_XDECREF(dropped);
    Py_XDECREF(counts); Py_XDECREF(offsets); Py_XDECREF(order); Py_XDECREF(pos);
    return NULL;
}

/* gather(x (T, H) f32, order (N,) i64, top_k, weights (T, K) f32 | None) -> xs (N, H) f32 */
MOE_PY_FN(py_gather) {
    (void)self;
    static char *kwlist[] = {"x", "order", "top_k", "weights", NULL};
    PyObject *x_o, *o_o, *w_o = Py_None;
    int_arg K = INT_ARG("top_k", 1, INT32_MAX);
    PyArrayObject *x = NULL, *order = NULL, *w = NULL, *xs = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO&|O:gather", kwlist, &x_o, &o_o, conv_int, &K, &w_o))
        return NULL;
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    if (!(order = get_input(o_o, "order", NPY_INT64, 1))) goto fail; /* each entry checked as it is used */
    const int64_t T = PyArray_DIM(x, 0), H = PyArray_DIM(x, 1), N = PyArray_DIM(order, 0);
    if (H < 1) { PyErr_SetString(PyExc_ValueError, "x must have at least one column"); goto fail; }
    if (w_o != Py_None) {
        if (!(w = get_input(w_o, "weights", NPY_FLOAT32, 2))) goto fail;
        if (PyArray_DIM(w, 0) != T || PyArray_DIM(w, 1) != K.value) {
            PyErr_SetString(PyExc_ValueError, "weights must be (T, top_k)");
            goto fail;
        }
    }
    const npy_intp dims[2] = {N, H};
    if (!(xs = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dims, NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_gather(PyArray_DATA(xs), PyArray_DATA(x), T, H, PyArray_DATA(order), N, K.value,
                    w ? PyArray_DATA(w) : NULL);
    Py_END_ALLOW_THREADS
    if (st == MOE_EINVAL) {
        PyErr_Format(PyExc_ValueError, "order holds a slot outside [0, T * top_k = %lld)", (long long)(T * K.value));
        goto fail;
    }
    if (st != MOE_OK) { set_status_error(st, "gather", -1); goto fail; }
    Py_DECREF(x); Py_DECREF(order); Py_XDECREF(w);
    return (PyObject *)xs;
fail:
    Py_XDECREF(x); Py_XDECREF(order); Py_XDECREF(w); Py_XDECREF(xs);
    return NULL;
}

/* grouped_ffn(xs (N, H) f32, offsets (E + 1,) i64, experts: PackedExperts) -> ys (N, H) f32 */
MOE_PY_FN(py_grouped_ffn) {
    (void)self;
    static char *kwlist[] = {"xs", "offsets", "experts", NULL};
    PyObject *x_o, *o_o, *e_o;
    py_experts ex;
    PyArrayObject *xs = NULL, *offsets = NULL, *ys = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:grouped_ffn", kwlist, &x_o, &o_o, &e_o)) return NULL;
    if (parse_experts(e_o, "experts", &ex, 1) < 0) return NULL;
    if (!(xs = get_input(x_o, "xs", NPY_FLOAT32, 2))) goto fail;
    if (!(offsets = get_private(o_o, "offsets", NPY_INT64, 1))) goto fail;
    const int64_t N = PyArray_DIM(xs, 0), H = PyArray_DIM(xs, 1), E = ex.c.E;
    if (H != ex.c.H) {
        PyErr_Format(PyExc_ValueError, "xs has %lld columns, the experts' hidden size is %lld", (long long)H,
                     (long long)ex.c.H);
        goto fail;
    }
    if (PyArray_DIM(offsets, 0) != E + 1) {
        PyErr_Format(PyExc_ValueError, "offsets must be (E + 1,) = (%lld,)", (long long)(E + 1));
        goto fail;
    }
    const int64_t *off = PyArray_DATA(offsets);
    for (int64_t e = 0; e < E; e++)
        if (off[e + 1] < off[e]) {
            PyErr_Format(PyExc_ValueError, "offsets must be non-decreasing (offsets[%lld] > offsets[%lld])",
                         (long long)e, (long long)(e + 1));
            goto fail;
        }
    if (off[0] != 0 || off[E] != N) {
        PyErr_Format(PyExc_ValueError, "offsets must run from 0 to the rows of xs (%lld)", (long long)N);
        goto fail;
    }
    const npy_intp dims[2] = {N, H};
    if (!(ys = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dims, NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_grouped_ffn(PyArray_DATA(ys), PyArray_DATA(xs), off, &ex.c);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "grouped_ffn", -1); goto fail; }
    release_experts(&ex);
    Py_DECREF(xs); Py_DECREF(offsets);
    return (PyObject *)ys;
fail:
    release_experts(&ex);
    Py_XDECREF(xs); Py_XDECREF(offsets); Py_XDECREF(ys);
    return NULL;
}

/* combine(ys (N, H) f32, position (T K,) i64, experts (T, K) i32, weights (T, K) f32, scale_input=False,
 *         shared_y (T, H) | None, shared_gate (T,) | None) -> out (T, H) f32 */
MOE_PY_FN(py_combine) {
    (void)self;
    static char *kwlist[] = {"ys", "position", "experts", "weights", "scale_input", "shared_y", "shared_gate", NULL};
    PyObject *y_o, *p_o, *e_o, *w_o, *sy_o = Py_None, *g_o = Py_None;
    int scale_input = 0;
    PyArrayObject *ys = NULL, *pos = NULL, *ex = NULL, *w = NULL, *sy = NULL, *g = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO|pOO:combine", kwlist, &y_o, &p_o, &e_o, &w_o, &scale_input,
                                     &sy_o, &g_o))
        return NULL;
    if (!(ys = get_input(y_o, "ys", NPY_FLOAT32, 2))) goto fail;
    if (!(ex = get_private(e_o, "experts", NPY_INT32, 2))) goto fail;
    if (!(pos = get_input(p_o, "position", NPY_INT64, 1))) goto fail; /* checked as it is used */
    if (!(w = get_input(w_o, "weights", NPY_FLOAT32, 2))) goto fail;
    const int64_t N = PyArray_DIM(ys, 0), H = PyArray_DIM(ys, 1), T = PyArray_DIM(ex, 0), K = PyArray_DIM(ex, 1);
    if (K < 1 || H < 1 || PyArray_DIM(w, 0) != T || PyArray_DIM(w, 1) != K || PyArray_DIM(pos, 0) != T * K) {
        PyErr_SetString(PyExc_ValueError, "experts and weights must be (T, K), position (T * K,), ys (N, H)");
        goto fail;
    }
    if (check_expert_ids(ex, "experts", INT32_MAX, 1) < 0) goto fail;
    if (sy_o != Py_None) {
        if (!(sy = get_input(sy_o, "shared_y", NPY_FLOAT32, 2))) goto fail;
        if (PyArray_DIM(sy, 0) != T || PyArray_DIM(sy, 1) != H) {
            PyErr_SetString(PyExc_ValueError, "shared_y must be (T, H)");
            goto fail;
        }
    }
    if (g_o != Py_None) {
        if (!(g = get_input(g_o, "shared_gate", NPY_FLOAT32, 1))) goto fail;
        if (PyArray_DIM(g, 0) != T) { PyErr_SetString(PyExc_ValueError, "shared_gate must be (T,)"); goto fail; }
    }
    const npy_intp dims[2] = {T, H};
    if (!(out = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dims, NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_combine(PyArray_DATA(out), PyArray_DATA(ys), N, PyArray_DATA(pos), PyArray_DATA(ex), PyArray_DATA(w),
                     T, K, H, scale_input, sy ? PyArray_DATA(sy) : NULL, g ? PyArray_DATA(g) : NULL);
    Py_END_ALLOW_THREADS
    if (st == MOE_EINVAL) {
        PyErr_Format(PyExc_ValueError, "position holds a row outside [-1, N = %lld)", (long long)N);
        goto fail;
    }
    if (st != MOE_OK) { set_status_error(st, "combine", -1); goto fail; }
    Py_DECREF(ys); Py_DECREF(pos); Py_DECREF(ex); Py_DECREF(w); Py_XDECREF(sy); Py_XDECREF(g);
    return (PyObject *)out;
fail:
    Py_XDECREF(ys); Py_XDECREF(pos); Py_XDECREF(ex); Py_XDECREF(w); Py_XDECREF(sy); Py_XDECREF(g);
    Py_XDECREF(out);
    return NULL;
}
