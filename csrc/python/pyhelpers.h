/* pyhelpers.h: argument checks for pymodule.c (part of the Python boundary; include nowhere else).
 * Each helper sets a Python exception that names the argument and returns NULL / -1 on failure. */
#ifndef MOEPY_PYHELPERS_H
#define MOEPY_PYHELPERS_H

#include <math.h>
#include <string.h>

#if defined(__clang__)
#define MOE_COMPILER_STRING "clang " __clang_version__
#elif defined(__GNUC__)
#define MOE_COMPILER_STRING "gcc " __VERSION__
#else
#define MOE_COMPILER_STRING "unknown"
#endif

static const char *dtype_name(int typenum) {
    switch (typenum) {
    case NPY_FLOAT32: return "float32";
    case NPY_FLOAT64: return "float64";
    case NPY_INT32: return "int32";
    case NPY_INT64: return "int64";
    case NPY_UINT16: return "uint16 (raw bfloat16)";
    case NPY_UINT8: return "uint8";
    case NPY_INT8: return "int8";
    case NPY_BOOL: return "bool";
    default: return "?";
    }
}

/* obj is an ndarray of exactly this dtype and rank, else a Python exception naming `name` */
static PyArrayObject *check_kind(PyObject *obj, const char *name, int typenum, int ndim) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of %s, got %s", name, dtype_name(typenum),
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != typenum) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got %R", name, dtype_name(typenum),
                     (PyObject *)PyArray_DESCR(a));
        return NULL;
    }
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got %d dimensions", name, ndim, PyArray_NDIM(a));
        return NULL;
    }
    return a;
}

/* A borrowed, checked view of an input array: exact dtype, rank, C-contiguous and aligned. */
static PyArrayObject *check_input(PyObject *obj, const char *name, int typenum, int ndim) {
    PyArrayObject *a = check_kind(obj, name, typenum, ndim);
    if (a && (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a))) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned (use numpy.ascontiguousarray)", name);
        return NULL;
    }
    return a;
}

/* A new reference to a C-contiguous, aligned version of an input array (a copy if needed); the
 * dtype and rank must match exactly. */
static PyArrayObject *input_contiguous(PyObject *obj, const char *name, int typenum, int ndim) {
    PyArrayObject *a = check_kind(obj, name, typenum, ndim);
    if (!a) return NULL;
    if (PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a)) {
        Py_INCREF(a);
        return a;
    }
    return (PyArrayObject *)PyArray_NewCopy(a, NPY_CORDER);
}

static int arrays_overlap(PyArrayObject *a, PyArrayObject *b) {
    if (!a || !b) return 0;
    const char *a0 = PyArray_BYTES(a), *b0 = PyArray_BYTES(b);
    const char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    return PyArray_NBYTES(a) > 0 && PyArray_NBYTES(b) > 0 && a0 < b1 && b0 < a1;
}

/* A new reference to an output array: allocated if obj is None, else checked (dtype, shape,
 * C-contiguous, writeable, no overlap with any input). */
static PyArrayObject *get_output(PyObject *obj, const char *name, int typenum, int ndim, const npy_intp *dims,
                                 PyArrayObject **inputs, int ninputs) {
    if (obj == Py_None) return (PyArrayObject *)PyArray_EMPTY(ndim, (npy_intp *)dims, typenum, 0);
    PyArrayObject *a = check_input(obj, name, typenum, ndim);
    if (!a) return NULL;
    for (int d = 0; d < ndim; d++)
        if (PyArray_DIM(a, d) != dims[d]) {
            PyErr_Format(PyExc_ValueError, "%s has the wrong shape: dimension %d is %lld, expected %lld", name, d,
                         (long long)PyArray_DIM(a, d), (long long)dims[d]);
            return NULL;
        }
    if (!PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only but is written to", name);
        return NULL;
    }
    for (int i = 0; i < ninputs; i++)
        if (arrays_overlap(a, inputs[i])) {
            PyErr_Format(PyExc_ValueError, "%s overlaps an input array; pass a separate buffer", name);
            return NULL;
        }
    Py_INCREF(a);
    return a;
}

static int outputs_overlap3(PyArrayObject *a, PyArrayObject *b, PyArrayObject *c) {
    if (arrays_overlap(a, b) || arrays_overlap(a, c) || arrays_overlap(b, c)) {
        PyErr_SetString(PyExc_ValueError, "output arrays must not overlap each other");
        return 1;
    }
    return 0;
}

/* ids (any shape) int32 must lie in [0, n) */
static int check_ids_in_range(PyArrayObject *ids, const char *name, long long n) {
    const int32_t *v = PyArray_DATA(ids);
    const npy_intp size = PyArray_SIZE(ids);
    for (npy_intp i = 0; i < size; i++)
        if (v[i] < 0 || v[i] >= n) {
            PyErr_Format(PyExc_ValueError, "%s[%lld] = %d is out of range [0, %lld)", name, (long long)i, v[i], n);
            return -1;
        }
    return 0;
}

static void set_status_error(moe_status st, const char *name, int64_t bad_row) {
    switch (st) {
    case MOE_ENAN:
        PyErr_Format(PyExc_ValueError, "%s holds NaN in row %lld", name, (long long)bad_row);
        break;
    case MOE_ENOMEM: PyErr_NoMemory(); break;
    case MOE_EOVERFLOW: PyErr_Format(PyExc_OverflowError, "%s: a size computation overflows int64", name); break;
    default: PyErr_Format(PyExc_ValueError, "%s: invalid argument (status %d)", name, (int)st); break;
    }
}

#endif
