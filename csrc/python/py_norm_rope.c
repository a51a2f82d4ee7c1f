/* py_norm_rope.c: the Python boundary of moe_rms_norm and moe_rope (csrc/kernels/norm_rope.c). Inputs are
 * float32 of exact rank (copied to contiguous native arrays when they are not); outputs are new arrays. */
#include "pyhelpers.h"

#include <math.h>

/* rms_norm(x (R, n) f32, weight (n,) f32 | None, eps) -> y (R, n) */
MOE_PY_FN(py_rms_norm) {
    (void)self;
    static char *kwlist[] = {"x", "weight", "eps", NULL};
    PyObject *x_o, *w_o;
    float_arg eps = {"eps", 0, 0.0f};
    PyArrayObject *x = NULL, *w = NULL, *y = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO&:rms_norm", kwlist, &x_o, &w_o, conv_float, &eps))
        return NULL;
    if (!isfinite(eps.value) || eps.value < 0.0f) {
        PyErr_Format(PyExc_ValueError, "eps must be a finite number >= 0, got %g", (double)eps.value);
        return NULL;
    }
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    const int64_t R = PyArray_DIM(x, 0), n = PyArray_DIM(x, 1);
    if (n < 1) { PyErr_SetString(PyExc_ValueError, "x must have at least one column"); goto fail; }
    if (w_o != Py_None) {
        if (!(w = get_input(w_o, "weight", NPY_FLOAT32, 1))) goto fail;
        if (PyArray_DIM(w, 0) != n) {
            PyErr_Format(PyExc_ValueError, "weight must have shape (%lld,), got (%lld,)", (long long)n,
                         (long long)PyArray_DIM(w, 0));
            goto fail;
        }
    }
    if (!(y = (PyArrayObject *)PyArray_EMPTY(2, PyArray_DIMS(x), NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_rms_norm(PyArray_DATA(y), PyArray_DATA(x), R, n, w ? PyArray_DATA(w) : NULL, eps.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "x", -1); goto fail; }
    Py_DECREF(x); Py_XDECREF(w);
    return (PyObject *)y;
fail:
    Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(y);
    return NULL;
}

/* rope(x (R, H, dim) f32, cos (R, dim/2) f32, sin (R, dim/2) f32, layout 0 half | 1 pairs | 2 pairs_to_half)
 * -> out (R, H, dim) */
MOE_PY_FN(py_rope) {
    (void)self;
    static char *kwlist[] = {"x", "cos", "sin", "layout", NULL};
    PyObject *x_o, *c_o, *s_o;
    int_arg layout = INT_ARG("layout", MOE_ROPE_HALF, MOE_ROPE_PAIRS_TO_HALF);
    PyArrayObject *x = NULL, *c = NULL, *s = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO&:rope", kwlist, &x_o, &c_o, &s_o, conv_int, &layout))
        return NULL;
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 3))) goto fail;
    if (!(c = get_input(c_o, "cos", NPY_FLOAT32, 2))) goto fail;
    if (!(s = get_input(s_o, "sin", NPY_FLOAT32, 2))) goto fail;
    const int64_t R = PyArray_DIM(x, 0), H = PyArray_DIM(x, 1), dim = PyArray_DIM(x, 2);
    if (H < 1 || dim < 2 || dim % 2) {
        PyErr_Format(PyExc_ValueError, "x must be (R, heads >= 1, even dim >= 2), got (%lld, %lld, %lld)",
                     (long long)R, (long long)H, (long long)dim);
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        PyArrayObject *a = i ? s : c;
        if (PyArray_DIM(a, 0) != R || PyArray_DIM(a, 1) != dim / 2) {
            PyErr_Format(PyExc_ValueError, "%s must have shape (%lld, %lld), got (%lld, %lld)", i ? "sin" : "cos",
                         (long long)R, (long long)(dim / 2), (long long)PyArray_DIM(a, 0),
                         (long long)PyArray_DIM(a, 1));
            goto fail;
        }
    }
    if (!(out = (PyArrayObject *)PyArray_EMPTY(3, PyArray_DIMS(x), NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_rope(PyArray_DATA(out), PyArray_DATA(x), R, H, dim, PyArray_DATA(c), PyArray_DATA(s),
                  (int32_t)layout.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "x", -1); goto fail; }
    Py_DECREF(x); Py_DECREF(c); Py_DECREF(s);
    return (PyObject *)out;
fail:
    Py_XDECREF(x); Py_XDECREF(c); Py_XDECREF(s); Py_XDECREF(out);
    return NULL;
}
