/* py_common.c: argument converters, array checks and the packed-experts parser of the boundary. */
#include "pyhelpers.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- scalars */

int conv_int(PyObject *obj, void *p) {
    int_arg *a = p;
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", a->name, Py_TYPE(obj)->tp_name);
        return 0;
    }
    PyObject *idx = PyNumber_Index(obj);
    if (!idx) return 0;
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred()) return 0;
    if (overflow || v < a->lo || v > a->hi) {
        if (a->hi == INT64_MAX && overflow > 0)
            PyErr_Format(PyExc_ValueError, "%s must fit in int64 (at most %lld), got %R", a->name, (long long)INT64_MAX, obj);
        else if (a->hi == INT64_MAX)
            PyErr_Format(PyExc_ValueError, "%s must be >= %lld, got %R", a->name, a->lo, obj);
        else
            PyErr_Format(PyExc_ValueError, "%s must be in [%lld, %lld], got %R", a->name, a->lo, a->hi, obj);
        return 0;
    }
    a->value = v;
    return 1;
}

int conv_float(PyObject *obj, void *p) {
    float_arg *a = p;
    if (PyBool_Check(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %.100s", a->name, Py_TYPE(obj)->tp_name);
        return 0;
    }
    const double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %.100s", a->name, Py_TYPE(obj)->tp_name);
        return 0;
    }
    if (!a->allow_nan && isnan(v)) {
        PyErr_Format(PyExc_ValueError, "%s must not be NaN", a->name);
        return 0;
    }
    a->value = (float)v;
    return 1;
}

/* ---------------------------------------------------------------- arrays */

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

/* obj is an ndarray of this type number (any byte order) and rank */
static PyArrayObject *check_kind(PyObject *obj, const char *name, int typenum, int ndim) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of %s, got %.100s", name, dtype_name(typenum),
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

static PyArrayObject *convert(PyArrayObject *a, int typenum, int force_copy) {
    PyArray_Descr *native = PyArray_DescrFromType(typenum); /* native byte order; stolen below */
    if (!native) return NULL;
    return (PyArrayObject *)PyArray_FromArray(a, native, NPY_ARRAY_IN_ARRAY | (force_copy ? NPY_ARRAY_ENSURECOPY : 0));
}

PyArrayObject *get_input(PyObject *obj, const char *name, int typenum, int ndim) {
    PyArrayObject *a = check_kind(obj, name, typenum, ndim);
    if (!a) return NULL;
    if (PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a) && PyArray_ISNOTSWAPPED(a)) {
        Py_INCREF(a);
        return a;
    }
    return convert(a, typenum, 0);
}

PyArrayObject *get_private(PyObject *obj, const char *name, int typenum, int ndim) {
    PyArrayObject *a = check_kind(obj, name, typenum, ndim);
    return a ? convert(a, typenum, 1) : NULL;
}

PyArrayObject *check_packed(PyObject *obj, const char *name, int typenum) {
    PyArrayObject *a = check_kind(obj, name, typenum, 1);
    if (!a) return NULL;
    if (!PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_ValueError, "%s holds non-native byte order; pack the weights on this machine", name);
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be contiguous and aligned (numpy.require(a, requirements='CA'))",
                     name);
        return NULL;
    }
    return a;
}

int arrays_overlap(PyArrayObject *a, PyArrayObject *b) {
    if (!a || !b || PyArray_NBYTES(a) == 0 || PyArray_NBYTES(b) == 0) return 0;
    const char *a0 = PyArray_BYTES(a), *b0 = PyArray_BYTES(b);
    const char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    return a0 < b1 && b0 < a1;
}

PyArrayObject *get_output(PyObject *obj, const char *name, int typenum, int ndim, const npy_intp *dims,
                          PyArrayObject *const *avoid, int navoid) {
    if (obj == Py_None) return (PyArrayObject *)PyArray_EMPTY(ndim, (npy_intp *)dims, typenum, 0);
    PyArrayObject *a = check_kind(obj, name, typenum, ndim);
    if (!a) return NULL;
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous, aligned and in native byte order (it is written "
                                       "in place)", name);
        return NULL;
    }
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
    for (int i = 0; i < navoid; i++)
        if (arrays_overlap(a, avoid[i])) {
            PyErr_Format(PyExc_ValueError, "%s overlaps an input array or the packed weights; pass a separate buffer",
                         name);
            return NULL;
        }
    Py_INCREF(a);
    return a;
}

static int id_error(const char *name, int64_t t, int64_t k, int32_t e, int64_t E) {
    PyErr_Format(PyExc_ValueError, "%s[%lld, %lld] = %d is out of range [0, %lld)", name, (long long)t, (long long)k,
                 e, (long long)E);
    return -1;
}

static int dup_error(const char *name, int64_t t, int32_t e, int64_t j, int64_t k) {
    PyErr_Format(PyExc_ValueError, "%s row %lld holds expert %d twice (slots %lld and %lld)", name, (long long)t, e,
                 (long long)j, (long long)k);
    return -1;
}

int check_expert_ids(PyArrayObject *ids, const char *name, int64_t E, int unique) {
    const int32_t *v = PyArray_DATA(ids);
    const int64_t T = PyArray_DIM(ids, 0), K = PyArray_NDIM(ids) > 1 ? PyArray_DIM(ids, 1) : 1;
    /* wide rows (expert-choice slots) use a last-seen row per expert: O(T K) instead of O(T K^2) */
    int64_t *seen = unique && K > 16 && E <= (1 << 24) ? PyMem_Malloc((size_t)E * sizeof(int64_t)) : NULL;
    if (seen)
        for (int64_t e = 0; e < E; e++) seen[e] = -1;
    int rc = 0;
    for (int64_t t = 0; t < T && rc == 0; t++)
        for (int64_t k = 0; k < K; k++) {
            const int32_t e = v[t * K + k];
            if (e < 0 || e >= E) { rc = id_error(name, t, k, e, E); break; }
            if (!unique) continue;
            if (seen) {
                if (seen[e] == t) {
                    int64_t j = 0;
                    while (v[t * K + j] != e) j++;
                    rc = dup_error(name, t, e, j, k);
                    break;
                }
                seen[e] = t;
            } else {
                for (int64_t j = 0; j < k && rc == 0; j++)
                    if (v[t * K + j] == e) rc = dup_error(name, t, e, j, k);
                if (rc) break;
            }
        }
    PyMem_Free(seen);
    return rc;
}

void set_status_error(moe_status st, const char *name, int64_t bad_row) {
    switch (st) {
    case MOE_ENAN: PyErr_Format(PyExc_ValueError, "%s holds NaN in row %lld", name, (long long)bad_row); break;
    case MOE_ENOMEM: PyErr_NoMemory(); break;
    case MOE_EOVERFLOW: PyErr_Format(PyExc_OverflowError, "%s: a size computation overflows int64", name); break;
    case MOE_ERANGE: PyErr_Format(PyExc_ValueError, "%s: a value at index %lld is out of range", name,
                                  (long long)bad_row); break;
    default: PyErr_Format(PyExc_ValueError, "%s: invalid argument (status %d)", name, (int)st); break;
    }
}

/* ---------------------------------------------------------------- packed experts */

void release_experts(py_experts *ex) {
    for (int i = 0; i < 4; i++) Py_CLEAR(ex->fields[i]);
}

static int get_int_field(PyObject *obj, const char *owner, const char *field, long long lo, long long hi,
                         long long *out) {
    char name[96];
    PyOS_snprintf(name, sizeof(name), "%s.%s", owner, field);
    PyObject *v = PyObject_GetAttrString(obj, field);
    if (!v) return -1;
    int_arg a = INT_ARG(name, lo, hi);
    const int ok = conv_int(v, &a);
    Py_DECREF(v);
    if (!ok) return -1;
    *out = a.value;
    return 0;
}

static int get_float_field(PyObject *obj, const char *owner, const char *field, float *out) {
    char name[96];
    PyOS_snprintf(name, sizeof(name), "%s.%s", owner, field);
    PyObject *v = PyObject_GetAttrString(obj, field);
    if (!v) return -1;
    float_arg a = {name, 0, 0.0f};
    const int ok = conv_float(v, &a);
    Py_DECREF(v);
    if (!ok) return -1;
    *out = a.value;
    return 0;
}

int parse_experts(PyObject *obj, const char *name, py_experts *ex, int need_out) {
    memset(ex, 0, sizeof(*ex));
    if (!PyObject_HasAttrString(obj, "w_in") || !PyObject_HasAttrString(obj, "dtype")) {
        PyErr_Format(PyExc_TypeError, "%s must be a moepy._ops.PackedExperts, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    long long E, H, In, gated, act, dt, group;
    float alpha, limit;
    if (get_int_field(obj, name, "E", 1, INT64_MAX, &E) < 0 || get_int_field(obj, name, "H", 1, INT64_MAX, &H) < 0 ||
        get_int_field(obj, name, "I", 1, INT64_MAX, &In) < 0 || get_int_field(obj, name, "gated", 0, 1, &gated) < 0 ||
        get_int_field(obj, name, "activation", 0, INT32_MAX, &act) < 0 ||
        get_int_field(obj, name, "dtype", MOE_DT_F32, MOE_DT_INT4_NL, &dt) < 0 ||
        get_int_field(obj, name, "group", 0, 128, &group) < 0 || get_float_field(obj, name, "alpha", &alpha) < 0 ||
        get_float_field(obj, name, "limit", &limit) < 0)
        return -1;
    if (!moe_activation_valid((int32_t)act, (int32_t)gated)) {
        PyErr_Format(PyExc_ValueError, "%s.activation = %lld is not a kernel activation%s (moepy._ops.ACTIVATIONS)",
                     name, act, gated ? " for gated experts" : "");
        return -1;
    }
    static const char *fields[4] = {"w_in", "w_out", "b_in", "b_out"};
    for (int i = 0; i < 4; i++)
        if (!(ex->fields[i] = PyObject_GetAttrString(obj, fields[i]))) goto fail;
    const int quant = MOE_DT_IS_QUANT(dt);
    const int wtype = quant ? NPY_UINT8 : (dt == MOE_DT_BF16 ? NPY_UINT16 : NPY_FLOAT32);
    if (quant) {
        if (group != 32 && group != 64 && group != 128) {
            PyErr_Format(PyExc_ValueError, "%s.group must be 32, 64 or 128, got %lld", name, group);
            goto fail;
        }
        if (H % group || In % group) {
            PyErr_Format(PyExc_ValueError, "%s: group %lld must divide H=%lld and I=%lld", name, group, H, In);
            goto fail;
        }
    } else {
        group = 0;
    }
    char nm[96];
    PyOS_snprintf(nm, sizeof(nm), "%s.w_in", name);
    if (!(ex->arrays[0] = check_packed(ex->fields[0], nm, wtype))) goto fail;
    if (ex->fields[1] != Py_None || need_out) {
        PyOS_snprintf(nm, sizeof(nm), "%s.w_out", name);
        if (!(ex->arrays[1] = check_packed(ex->fields[1], nm, wtype))) goto fail;
    }
    int64_t want_in, want_out;
    if (quant) {
        const int64_t one = moe_qpacked_bytes(E, In, H, MOE_DT_QFORMAT(dt), group);
        want_in = one < 0 ? -1 : one * (gated ? 2 : 1);
        want_out = moe_qpacked_bytes(E, H, In, MOE_DT_QFORMAT(dt), group);
    } else {
        want_in = moe_packed_in_elems(E, H, In, (int32_t)gated);
        want_out = moe_packed_out_elems(E, H, In);
    }
    if (want_in < 0 || want_out < 0) {
        PyErr_Format(PyExc_OverflowError, "%s: E=%lld, H=%lld, I=%lld overflow int64 sizes", name, E, H, In);
        goto fail;
    }
    if (PyArray_DIM(ex->arrays[0], 0) != want_in || (ex->arrays[1] && PyArray_DIM(ex->arrays[1], 0) != want_out)) {
        PyErr_Format(PyExc_ValueError, "%s: packed weights do not match E=%lld, H=%lld, I=%lld", name, E, H, In);
        goto fail;
    }
    const int64_t Ip = moe_round_up(In, MOE_PANEL), Hp = moe_round_up(H, MOE_PANEL);
    const int64_t want_b[2] = {E * (gated ? 2 : 1) * Ip, E * Hp};
    for (int i = 2; i < 4; i++) {
        if (ex->fields[i] == Py_None) continue;
        PyOS_snprintf(nm, sizeof(nm), "%s.%s", name, fields[i]);
        if (!(ex->arrays[i] = check_packed(ex->fields[i], nm, NPY_FLOAT32))) goto fail;
        if (PyArray_DIM(ex->arrays[i], 0) != want_b[i - 2]) {
            PyErr_Format(PyExc_ValueError, "%s must hold %lld floats", nm, (long long)want_b[i - 2]);
            goto fail;
        }
    }
    ex->c = (moe_experts){E, H, In, group, (int32_t)dt, (int32_t)gated, (int32_t)act, alpha, limit,
                          PyArray_DATA(ex->arrays[0]), ex->arrays[1] ? PyArray_DATA(ex->arrays[1]) : NULL,
                          ex->arrays[2] ? PyArray_DATA(ex->arrays[2]) : NULL,
                          ex->arrays[3] ? PyArray_DATA(ex->arrays[3]) : NULL};
    return 0;
fail:
    release_experts(ex);
    return -1;
}
