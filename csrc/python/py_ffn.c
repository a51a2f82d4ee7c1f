/* py_ffn.c: packing, the fused MoE layer (moe_forward), its workspace size, and the router linear. */
#include "pyhelpers.h"

#include <string.h>

/* pack(which, w (E, C, R0) f32|uint16 [, w2 same], out=None) -> packed 1-D array. which: 0 = in (gate[, up]),
 * 1 = out (down). out: a caller's C-contiguous, writeable 1-D array of the same dtype and exactly the packed
 * size, not overlapping w / w2 (e.g. one expert's slice of a layer's packed buffer), written in place. */
MOE_PY_FN(py_pack) {
    (void)self;
    static char *kwlist[] = {"which", "w", "w2", "out", NULL};
    int_arg which = INT_ARG("which", 0, 1);
    PyObject *a_o, *b_o = Py_None, *out_o = Py_None;
    PyArrayObject *a = NULL, *b = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O|OO:pack", kwlist, conv_int, &which, &a_o, &b_o, &out_o))
        return NULL;
    const char *name = which.value == 0 ? "gate" : "down";
    if (!PyArray_Check(a_o)) return PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray", name);
    const int typenum = PyArray_TYPE((PyArrayObject *)a_o);
    if (typenum != NPY_FLOAT32 && typenum != NPY_UINT16)
        return PyErr_Format(PyExc_TypeError, "%s must have dtype float32 or uint16 (raw bfloat16), got %R", name,
                            (PyObject *)PyArray_DESCR((PyArrayObject *)a_o));
    const int32_t dt = typenum == NPY_FLOAT32 ? MOE_DT_F32 : MOE_DT_BF16;
    if (!(a = get_input(a_o, name, typenum, 3))) goto fail;
    const int64_t E = PyArray_DIM(a, 0), D1 = PyArray_DIM(a, 1), D2 = PyArray_DIM(a, 2);
    if (E < 1 || D1 < 1 || D2 < 1) { PyErr_Format(PyExc_ValueError, "%s must have no empty dimension", name); goto fail; }
    if (b_o != Py_None) {
        if (which.value != 0) { PyErr_SetString(PyExc_ValueError, "only the input projection takes two matrices"); goto fail; }
        if (!(b = get_input(b_o, "up", typenum, 3))) goto fail;
        if (PyArray_DIM(b, 0) != E || PyArray_DIM(b, 1) != D1 || PyArray_DIM(b, 2) != D2) {
            PyErr_SetString(PyExc_ValueError, "up must have the shape of gate");
            goto fail;
        }
    }
    /* in: gate (E, I, H);  out: down (E, H, I) */
    const int64_t H = which.value == 0 ? D2 : D1, In = which.value == 0 ? D1 : D2;
    const int64_t n = which.value == 0 ? moe_packed_in_elems(E, H, In, b != NULL) : moe_packed_out_elems(E, H, In);
    if (n < 0) { PyErr_SetString(PyExc_OverflowError, "packed size overflows int64"); goto fail; }
    const npy_intp dims[1] = {n};
    PyArrayObject *avoid[2] = {a, b};
    if (!(out = get_output(out_o, "out", typenum, 1, dims, avoid, b ? 2 : 1))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = which.value == 0 ? moe_pack_in(PyArray_DATA(out), PyArray_DATA(a), b ? PyArray_DATA(b) : NULL, E, H, In, dt)
                          : moe_pack_out(PyArray_DATA(out), PyArray_DATA(a), E, H, In, dt);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, name, -1); goto fail; }
    Py_DECREF(a);
    Py_XDECREF(b);
    return (PyObject *)out;
fail:
    Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(out);
    return NULL;
}

/* packed_elems(E, H, I, gated) -> (elements of packed w_in, of packed w_out) for float / bf16 panels */
MOE_PY_FN(py_packed_elems) {
    (void)self;
    static char *kwlist[] = {"E", "H", "I", "gated", NULL};
    int_arg E = INT_ARG("E", 1, INT64_MAX), H = INT_ARG("H", 1, INT64_MAX), In = INT_ARG("I", 1, INT64_MAX);
    int_arg gated = INT_ARG("gated", 0, 1);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&O&:packed_elems", kwlist, conv_int, &E, conv_int, &H,
                                     conv_int, &In, conv_int, &gated))
        return NULL;
    const int64_t a = moe_packed_in_elems(E.value, H.value, In.value, (int32_t)gated.value);
    const int64_t b = moe_packed_out_elems(E.value, H.value, In.value);
    if (a < 0 || b < 0) return PyErr_Format(PyExc_OverflowError, "packed sizes overflow int64");
    return Py_BuildValue("LL", (long long)a, (long long)b);
}

/* moe_forward(x (T, H), weights (T, K), experts (T, K) i32, dropped | None, routed, shared | None,
 *             shared_gate | None, scale_input, out=None, work=None) -> out (T, H) */
MOE_PY_FN(py_moe_forward) {
    (void)self;
    static char *kwlist[] = {"x", "weights", "experts", "dropped", "routed", "shared", "shared_gate", "scale_input",
                             "out", "work", NULL};
    PyObject *x_o, *w_o, *e_o, *d_o, *r_o, *s_o, *g_o, *out_o = Py_None, *work_o = Py_None;
    int scale_input;
    py_experts routed, shared;
    memset(&routed, 0, sizeof(routed));
    memset(&shared, 0, sizeof(shared));
    PyArrayObject *x = NULL, *w = NULL, *ex = NULL, *dropped = NULL, *gate = NULL, *work = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOp|OO:moe_forward", kwlist, &x_o, &w_o, &e_o, &d_o, &r_o,
                                     &s_o, &g_o, &scale_input, &out_o, &work_o))
        return NULL;
    const int has_shared = s_o != Py_None;
    if (parse_experts(r_o, "routed", &routed, 1) < 0) goto fail;
    if (has_shared && parse_experts(s_o, "shared", &shared, 1) < 0) goto fail;
    if (has_shared && (shared.c.E != 1 || shared.c.H != routed.c.H)) {
        PyErr_SetString(PyExc_ValueError, "shared must be one expert of the routed hidden size");
        goto fail;
    }
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    if (!(w = get_input(w_o, "weights", NPY_FLOAT32, 2))) goto fail;
    if (!(ex = get_private(e_o, "experts", NPY_INT32, 2))) goto fail; /* private: no other thread can change it */
    const int64_t T = PyArray_DIM(x, 0), H = PyArray_DIM(x, 1), K = PyArray_DIM(ex, 1);
    if (H != routed.c.H) {
        PyErr_Format(PyExc_ValueError, "x has hidden size %lld, the experts %lld", (long long)H, (long long)routed.c.H);
        goto fail;
    }
    if (PyArray_DIM(ex, 0) != T || PyArray_DIM(w, 0) != T || PyArray_DIM(w, 1) != K || K < 1) {
        PyErr_SetString(PyExc_ValueError, "weights and experts must both be (T, K) with x (T, H)");
        goto fail;
    }
    if (check_expert_ids(ex, "experts", routed.c.E, 1) < 0) goto fail;
    if (d_o != Py_None) {
        if (!(dropped = get_private(d_o, "dropped", NPY_BOOL, 2))) goto fail;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K) {
            PyErr_SetString(PyExc_ValueError, "dropped must have the shape of experts");
            goto fail;
        }
    }
    if (g_o != Py_None) {
        if (!(gate = get_input(g_o, "shared_gate", NPY_FLOAT32, 1))) goto fail;
        if (PyArray_DIM(gate, 0) != T) { PyErr_SetString(PyExc_ValueError, "shared_gate must be (T,)"); goto fail; }
    }
    const npy_intp dims[2] = {T, H};
    PyArrayObject *avoid[13] = {x, w, ex, dropped, gate, routed.arrays[0], routed.arrays[1], routed.arrays[2],
                                routed.arrays[3], shared.arrays[0], shared.arrays[1], shared.arrays[2],
                                shared.arrays[3]};
    const moe_experts *sh = has_shared ? &shared.c : NULL;
    if (work_o != Py_None) {
        const int64_t need = moe_forward_workspace(T, K, &routed.c, sh, scale_input);
        if (need < 0) { PyErr_SetString(PyExc_ValueError, "invalid shapes for a workspace"); goto fail; }
        const npy_intp wd[1] = {PyArray_Check(work_o) ? PyArray_SIZE((PyArrayObject *)work_o) : 0};
        if (wd[0] < need) {
            PyErr_Format(PyExc_ValueError, "work must be a uint8 array of at least %lld bytes", (long long)need);
            goto fail;
        }
        if (!(work = get_output(work_o, "work", NPY_UINT8, 1, wd, avoid, 13))) goto fail;
    }
    if (!(out = get_output(out_o, "out", NPY_FLOAT32, 2, dims, avoid, 13))) goto fail;
    if (work && arrays_overlap(work, out)) { PyErr_SetString(PyExc_ValueError, "work overlaps out"); goto fail; }
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_forward(PyArray_DATA(out), PyArray_DATA(x), T, PyArray_DATA(w), PyArray_DATA(ex),
                     dropped ? PyArray_DATA(dropped) : NULL, K, &routed.c, sh, gate ? PyArray_DATA(gate) : NULL,
                     scale_input, work ? PyArray_DATA(work) : NULL, work ? (int64_t)PyArray_SIZE(work) : 0);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "moe_forward", -1); goto fail; }
    release_experts(&routed); release_experts(&shared);
    Py_DECREF(x); Py_DECREF(w); Py_DECREF(ex); Py_XDECREF(dropped); Py_XDECREF(gate); Py_XDECREF(work);
    return (PyObject *)out;
fail:
    release_experts(&routed); release_experts(&shared);
    Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(ex); Py_XDECREF(dropped); Py_XDECREF(gate); Py_XDECREF(work);
    Py_XDECREF(out);
    return NULL;
}

/* forward_workspace(T, K, routed, shared | None, scale_input) -> bytes moe_forward needs */
MOE_PY_FN(py_forward_workspace) {
    (void)self;
    static char *kwlist[] = {"T", "K", "routed", "shared", "scale_input", NULL};
    int_arg T = INT_ARG("T", 0, INT64_MAX), K = INT_ARG("K", 1, INT64_MAX);
    PyObject *r_o, *s_o;
    int scale_input;
    py_experts routed, shared;
    memset(&shared, 0, sizeof(shared));
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&OOp:forward_workspace", kwlist, conv_int, &T, conv_int, &K,
                                     &r_o, &s_o, &scale_input))
        return NULL;
    if (parse_experts(r_o, "routed", &routed, 1) < 0) return NULL;
    if (s_o != Py_None && parse_experts(s_o, "shared", &shared, 1) < 0) { release_experts(&routed); return NULL; }
    const int64_t n = moe_forward_workspace(T.value, K.value, &routed.c, s_o != Py_None ? &shared.c : NULL,
                                            scale_input);
    release_experts(&routed);
    release_experts(&shared);
    if (n < 0) return PyErr_Format(PyExc_ValueError, "invalid shapes for a workspace");
    return PyLong_FromLongLong(n);
}

/* linear(x (T, H) f32, w: packed experts with E = 1, ungated, activation none; float, bf16 or INT) -> (T, N) */
MOE_PY_FN(py_linear) {
    (void)self;
    static char *kwlist[] = {"x", "weight", NULL};
    PyObject *x_o, *w_o;
    py_experts w;
    PyArrayObject *x = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:linear", kwlist, &x_o, &w_o)) return NULL;
    if (parse_experts(w_o, "weight", &w, 0) < 0) return NULL;
    if (w.c.E != 1 || w.c.gated || w.c.activation != MOE_ACT_NONE) {
        PyErr_SetString(PyExc_ValueError, "weight must be one ungated expert with activation 'none'");
        goto fail;
    }
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    if (PyArray_DIM(x, 1) != w.c.H) {
        PyErr_Format(PyExc_ValueError, "x has %lld columns, the weight expects %lld", (long long)PyArray_DIM(x, 1),
                     (long long)w.c.H);
        goto fail;
    }
    const npy_intp dims[2] = {PyArray_DIM(x, 0), w.c.inter};
    if (!(out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_linear(PyArray_DATA(out), PyArray_DATA(x), dims[0], &w.c);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "linear", -1); goto fail; }
    release_experts(&w);
    Py_DECREF(x);
    return (PyObject *)out;
fail:
    release_experts(&w);
    Py_XDECREF(x); Py_XDECREF(out);
    return NULL;
}
