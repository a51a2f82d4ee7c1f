/* pymodule.c: the only file that includes Python.h and NumPy.
 * Every entry point: parse -> check inputs/outputs (dtype, rank, shape, contiguity, writability,
 * no overlap) -> allocate missing outputs -> release the GIL around the C core -> map the status. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "moe.h"
#include "pyhelpers.h"
#include "kernels.h"
#include "parallel.h"
#include "quant.h"

/* ---------------------------------------------------------------- info and threads */

static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    static const char *features[] = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                     "avx512vnni", "avx512bf16", "avxvnni"};
    PyObject *cpu = PyDict_New();
    if (!cpu) return NULL;
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
        if (PyDict_SetItemString(cpu, features[i], moe_cpu_has(features[i]) ? Py_True : Py_False) < 0) {
            Py_DECREF(cpu);
            return NULL;
        }
    }
    return Py_BuildValue("{s:O,s:i,s:s,s:s,s:N,s:s}", "openmp", moe_openmp_enabled() ? Py_True : Py_False,
                         "num_threads", moe_get_num_threads(), "isa", moe_isa_name(moe_active_isa()),
                         "best_isa", moe_isa_name(moe_detected_isa()), "cpu_features", cpu,
                         "compiler", MOE_COMPILER_STRING);
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *args) {
    (void)self;
    int n;
    if (!PyArg_ParseTuple(args, "i:set_num_threads", &n)) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "n must be >= 0 (0 restores the default), got %d", n);
    moe_set_num_threads(n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return PyLong_FromLong(moe_get_num_threads());
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s:set_isa", &name)) return NULL;
    moe_isa isa;
    if (!strcmp(name, "scalar")) isa = MOE_ISA_SCALAR;
    else if (!strcmp(name, "avx2")) isa = MOE_ISA_AVX2;
    else if (!strcmp(name, "avx512")) isa = MOE_ISA_AVX512;
    else if (!strcmp(name, "best")) isa = moe_detected_isa();
    else return PyErr_Format(PyExc_ValueError, "isa must be 'scalar', 'avx2', 'avx512' or 'best', got %R",
                             PyTuple_GET_ITEM(args, 0));
    if (moe_force_isa(isa) != 0)
        return PyErr_Format(PyExc_ValueError, "isa %s is not supported by this CPU/build (best: %s)", name,
                            moe_isa_name(moe_detected_isa()));
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- routing */

/* params: the bytes of a moe_route_params, packed by moepy.RouterConfig (struct format "@qiiifffqqif") */
static int parse_route_params(PyObject *obj, moe_route_params *p) {
    if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != (Py_ssize_t)sizeof(moe_route_params)) {
        PyErr_Format(PyExc_TypeError, "params must be %zu bytes packing moe_route_params (RouterConfig.c_params)",
                     sizeof(moe_route_params));
        return -1;
    }
    memcpy(p, PyBytes_AS_STRING(obj), sizeof(*p));
    return 0;
}

static int route_params_error(const moe_route_params *p, int64_t E) {
    if (p->top_k < 1 || p->top_k > E)
        PyErr_Format(PyExc_ValueError, "top_k must be in [1, E=%lld], got %lld", (long long)E, (long long)p->top_k);
    else if (p->scoring != MOE_SCORE_SOFTMAX && p->scoring != MOE_SCORE_SIGMOID)
        PyErr_Format(PyExc_ValueError, "scoring code must be 0 (softmax) or 1 (sigmoid), got %d", p->scoring);
    else if (p->group_score != MOE_GROUP_MAX && p->group_score != MOE_GROUP_TOP2_SUM)
        PyErr_Format(PyExc_ValueError, "group_score code must be 0 (max) or 1 (top2_sum), got %d", p->group_score);
    else if (p->n_group < 1 || E % p->n_group != 0)
        PyErr_Format(PyExc_ValueError, "n_group=%lld must be >= 1 and divide the number of experts E=%lld",
                     (long long)p->n_group, (long long)E);
    else if (p->topk_group < 1 || p->topk_group > p->n_group)
        PyErr_Format(PyExc_ValueError, "topk_group must be in [1, n_group=%lld], got %lld",
                     (long long)p->n_group, (long long)p->topk_group);
    else if (p->n_group > 1 && p->topk_group * (E / p->n_group) < p->top_k)
        PyErr_Format(PyExc_ValueError,
                     "top_k=%lld exceeds the experts in the kept groups (topk_group=%lld x %lld per group)",
                     (long long)p->top_k, (long long)p->topk_group, (long long)(E / p->n_group));
    else
        PyErr_SetString(PyExc_ValueError, "norm_p must be finite and > 0, norm_eps >= 0, scale and "
                                          "group_mask_value not NaN");
    return -1;
}

/* route(logits, bias, params, weights=None, experts=None, scores=None) -> (weights, experts, scores) */
static PyObject *py_route(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"logits", "bias", "params", "weights", "experts", "scores", NULL};
    PyObject *logits_o, *bias_o, *params_o, *w_o = Py_None, *e_o = Py_None, *s_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OOO:route", kwlist, &logits_o, &bias_o, &params_o, &w_o,
                                     &e_o, &s_o))
        return NULL;
    moe_route_params p;
    if (parse_route_params(params_o, &p) < 0) return NULL;
    PyArrayObject *logits = input_contiguous(logits_o, "logits", NPY_FLOAT32, 2), *bias = NULL;
    PyArrayObject *w = NULL, *ex = NULL, *sc = NULL;
    if (!logits) return NULL;
    const int64_t T = PyArray_DIM(logits, 0), E = PyArray_DIM(logits, 1);
    if (E < 1) {
        PyErr_Format(PyExc_ValueError, "logits must have at least one expert column, got shape (%lld, %lld)",
                     (long long)T, (long long)E);
        goto fail;
    }
    if (moe_route_check(&p, E) != MOE_OK) { route_params_error(&p, E); goto fail; }
    if (bias_o != Py_None) {
        bias = input_contiguous(bias_o, "bias", NPY_FLOAT32, 1);
        if (!bias) goto fail;
        if (PyArray_DIM(bias, 0) != E) {
            PyErr_Format(PyExc_ValueError, "bias must have shape (E,) = (%lld,), got (%lld,)", (long long)E,
                         (long long)PyArray_DIM(bias, 0));
            goto fail;
        }
        const float *b = PyArray_DATA(bias);
        for (int64_t e = 0; e < E; e++)
            if (isnan(b[e])) {
                PyErr_Format(PyExc_ValueError, "bias holds NaN at expert %lld", (long long)e);
                goto fail;
            }
    }
    const npy_intp wk[2] = {T, p.top_k}, se[2] = {T, E};
    PyArrayObject *inputs[2] = {logits, bias};
    w = get_output(w_o, "weights", NPY_FLOAT32, 2, wk, inputs, 2);
    ex = w ? get_output(e_o, "experts", NPY_INT32, 2, wk, inputs, 2) : NULL;
    sc = ex ? get_output(s_o, "scores", NPY_FLOAT32, 2, se, inputs, 2) : NULL;
    if (!sc || outputs_overlap3(w, ex, sc)) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_route(PyArray_DATA(w), PyArray_DATA(ex), PyArray_DATA(sc), &bad, PyArray_DATA(logits),
                   bias ? PyArray_DATA(bias) : NULL, T, E, &p);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "logits", bad); goto fail; }
    Py_DECREF(logits);
    Py_XDECREF(bias);
    return Py_BuildValue("NNN", w, ex, sc);
fail:
    Py_XDECREF(logits); Py_XDECREF(bias);
    Py_XDECREF(w); Py_XDECREF(ex); Py_XDECREF(sc);
    return NULL;
}

/* topk(x, k) -> (values (R, k) f32, indices (R, k) i64) */
static PyObject *py_topk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o;
    long long k;
    if (!PyArg_ParseTuple(args, "OL:topk", &x_o, &k)) return NULL;
    PyArrayObject *x = check_input(x_o, "x", NPY_FLOAT32, 2);
    if (!x) return NULL;
    const int64_t R = PyArray_DIM(x, 0), M = PyArray_DIM(x, 1);
    if (k < 1 || k > M)
        return PyErr_Format(PyExc_ValueError, "k must be in [1, %lld] (the row length of x), got %lld", (long long)M, k);
    const npy_intp dims[2] = {R, k};
    PyArrayObject *vals = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0);
    PyArrayObject *idx = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_INT64, 0);
    if (!vals || !idx) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_topk(PyArray_DATA(vals), PyArray_DATA(idx), &bad, PyArray_DATA(x), R, M, k);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "x", bad); goto fail; }
    return Py_BuildValue("NN", vals, idx);
fail:
    Py_XDECREF(vals); Py_XDECREF(idx);
    return NULL;
}

/* apply_capacity(weights, experts, num_experts, capacity, priority) -> (dropped (T, K) bool, counts (E,) i64)
 * weights (T, K) f32 is updated in place (dropped slots set to 0). */
static PyObject *py_apply_capacity(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *w_o, *e_o;
    long long E, capacity;
    int priority;
    if (!PyArg_ParseTuple(args, "OOLLi:apply_capacity", &w_o, &e_o, &E, &capacity, &priority)) return NULL;
    PyArrayObject *ex = check_input(e_o, "experts", NPY_INT32, 2);
    if (!ex) return NULL;
    const npy_intp dims[2] = {PyArray_DIM(ex, 0), PyArray_DIM(ex, 1)};
    PyArrayObject *inputs[1] = {ex};
    if (E < 1) return PyErr_Format(PyExc_ValueError, "num_experts must be >= 1, got %lld", E);
    if (capacity < 0) return PyErr_Format(PyExc_ValueError, "capacity must be >= 0, got %lld", capacity);
    if (priority != MOE_PRIORITY_RANK && priority != MOE_PRIORITY_TOKEN)
        return PyErr_Format(PyExc_ValueError, "priority code must be 0 (rank) or 1 (token), got %d", priority);
    if (dims[1] < 1) return PyErr_SetString(PyExc_ValueError, "experts must have at least one column"), NULL;
    if (w_o == Py_None) return PyErr_SetString(PyExc_TypeError, "weights must be a float32 array"), NULL;
    PyArrayObject *w = get_output(w_o, "weights", NPY_FLOAT32, 2, dims, inputs, 1);
    if (!w) return NULL;
    if (check_ids_in_range(ex, "experts", E) < 0) { Py_DECREF(w); return NULL; }
    const npy_intp edim[1] = {E};
    PyArrayObject *dropped = (PyArrayObject *)PyArray_ZEROS(2, dims, NPY_BOOL, 0);
    PyArrayObject *counts = (PyArrayObject *)PyArray_ZEROS(1, edim, NPY_INT64, 0);
    if (!dropped || !counts) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_apply_capacity(PyArray_DATA(w), PyArray_DATA(dropped), PyArray_DATA(counts), PyArray_DATA(ex),
                            dims[0], dims[1], E, capacity, priority);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "experts", -1); goto fail; }
    Py_DECREF(w);
    return Py_BuildValue("NN", dropped, counts);
fail:
    Py_DECREF(w); Py_XDECREF(dropped); Py_XDECREF(counts);
    return NULL;
}

/* expert_choice(scores, capacity) -> (gates (E, C) f32, tokens (E, C) i64) */
static PyObject *py_expert_choice(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *s_o;
    long long C;
    if (!PyArg_ParseTuple(args, "OL:expert_choice", &s_o, &C)) return NULL;
    PyArrayObject *s = check_input(s_o, "scores", NPY_FLOAT32, 2);
    if (!s) return NULL;
    const int64_t T = PyArray_DIM(s, 0), E = PyArray_DIM(s, 1);
    if (T < 1 || E < 1)
        return PyErr_Format(PyExc_ValueError, "scores must be (T, E) with T, E >= 1, got (%lld, %lld)", (long long)T,
                            (long long)E);
    if (C < 1 || C > T)
        return PyErr_Format(PyExc_ValueError, "capacity must be in [1, T=%lld], got %lld", (long long)T, C);
    const npy_intp dims[2] = {E, C};
    PyArrayObject *g = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0);
    PyArrayObject *tok = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_INT64, 0);
    if (!g || !tok) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_expert_choice(PyArray_DATA(g), PyArray_DATA(tok), &bad, PyArray_DATA(s), T, E, C);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "scores", bad); goto fail; }
    return Py_BuildValue("NN", g, tok);
fail:
    Py_XDECREF(g); Py_XDECREF(tok);
    return NULL;
}

/* expert_load(experts, dropped, scores, num_experts) -> (counts (E,) i64, prob_sum (E,) f64 or None) */
static PyObject *py_expert_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *e_o, *d_o, *s_o;
    long long E;
    if (!PyArg_ParseTuple(args, "OOOL:expert_load", &e_o, &d_o, &s_o, &E)) return NULL;
    PyArrayObject *ex = check_input(e_o, "experts", NPY_INT32, 2);
    if (!ex) return NULL;
    const int64_t T = PyArray_DIM(ex, 0), K = PyArray_DIM(ex, 1);
    if (E < 1) return PyErr_Format(PyExc_ValueError, "num_experts must be >= 1, got %lld", E);
    if (K < 1) return PyErr_SetString(PyExc_ValueError, "experts must have at least one column"), NULL;
    PyArrayObject *dropped = NULL, *scores = NULL;
    if (d_o != Py_None) {
        dropped = check_input(d_o, "dropped", NPY_BOOL, 2);
        if (!dropped) return NULL;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K)
            return PyErr_Format(PyExc_ValueError, "dropped must have the shape of experts (%lld, %lld)", (long long)T,
                                (long long)K);
    }
    if (s_o != Py_None) {
        scores = check_input(s_o, "scores", NPY_FLOAT32, 2);
        if (!scores) return NULL;
        if (PyArray_DIM(scores, 0) != T || PyArray_DIM(scores, 1) != E)
            return PyErr_Format(PyExc_ValueError, "scores must have shape (T, E) = (%lld, %lld)", (long long)T, E);
    }
    if (check_ids_in_range(ex, "experts", E) < 0) return NULL;
    const npy_intp edim[1] = {E};
    PyArrayObject *counts = (PyArrayObject *)PyArray_ZEROS(1, edim, NPY_INT64, 0);
    PyArrayObject *psum = scores ? (PyArrayObject *)PyArray_ZEROS(1, edim, NPY_FLOAT64, 0) : NULL;
    if (!counts || (scores && !psum)) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_expert_load(PyArray_DATA(counts), psum ? PyArray_DATA(psum) : NULL, PyArray_DATA(ex),
                         dropped ? PyArray_DATA(dropped) : NULL, scores ? PyArray_DATA(scores) : NULL, T, K, E);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "experts", -1); goto fail; }
    if (!psum) { Py_INCREF(Py_None); return Py_BuildValue("NN", counts, Py_None); }
    return Py_BuildValue("NN", counts, psum);
fail:
    Py_XDECREF(counts); Py_XDECREF(psum);
    return NULL;
}

/* ---------------------------------------------------------------- expert FFN */

static int dtype_code_of(PyArrayObject *a, int32_t *code) {
    if (PyArray_TYPE(a) == NPY_FLOAT32) { *code = MOE_DT_F32; return 0; }
    if (PyArray_TYPE(a) == NPY_UINT16) { *code = MOE_DT_BF16; return 0; }
    return -1;
}

/* pack(which, w (E, C, R0) f32|uint16 [, w2 same]) -> packed 1-D array. which: 0 = in (gate[, up]), 1 = out (down) */
static PyObject *py_pack(PyObject *self, PyObject *args) {
    (void)self;
    int which;
    PyObject *a_o, *b_o = Py_None;
    if (!PyArg_ParseTuple(args, "iO|O:pack", &which, &a_o, &b_o)) return NULL;
    const char *name = which == 0 ? "gate" : "down";
    if (!PyArray_Check(a_o)) return PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray", name);
    int32_t dt;
    if (dtype_code_of((PyArrayObject *)a_o, &dt) < 0)
        return PyErr_Format(PyExc_TypeError, "%s must have dtype float32 or uint16 (raw bfloat16), got %R", name,
                            (PyObject *)PyArray_DESCR((PyArrayObject *)a_o));
    const int typenum = dt == MOE_DT_F32 ? NPY_FLOAT32 : NPY_UINT16;
    PyArrayObject *a = check_input(a_o, name, typenum, 3), *b = NULL;
    if (!a) return NULL;
    const int64_t E = PyArray_DIM(a, 0), D1 = PyArray_DIM(a, 1), D2 = PyArray_DIM(a, 2);
    if (E < 1 || D1 < 1 || D2 < 1) return PyErr_Format(PyExc_ValueError, "%s must have no empty dimension", name);
    if (b_o != Py_None) {
        if (which != 0) return PyErr_SetString(PyExc_ValueError, "only the input projection takes two matrices"), NULL;
        b = check_input(b_o, "up", typenum, 3);
        if (!b) return NULL;
        if (PyArray_DIM(b, 0) != E || PyArray_DIM(b, 1) != D1 || PyArray_DIM(b, 2) != D2)
            return PyErr_SetString(PyExc_ValueError, "up must have the shape of gate"), NULL;
    }
    /* in: gate (E, In, H);  out: down (E, H, I) */
    const int64_t H = which == 0 ? D2 : D1, In = which == 0 ? D1 : D2;
    const int64_t n = which == 0 ? moe_packed_in_elems(E, H, In, b != NULL) : moe_packed_out_elems(E, H, In);
    if (n < 0) return PyErr_SetString(PyExc_OverflowError, "packed size overflows int64"), NULL;
    const npy_intp dims[1] = {n};
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(1, dims, typenum, 0);
    if (!out) return NULL;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = which == 0 ? moe_pack_in(PyArray_DATA(out), PyArray_DATA(a), b ? PyArray_DATA(b) : NULL, E, H, In, dt)
                    : moe_pack_out(PyArray_DATA(out), PyArray_DATA(a), E, H, In, dt);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { Py_DECREF(out); set_status_error(st, name, -1); return NULL; }
    return (PyObject *)out;
}

/* experts tuple: (E, H, I, gated, activation, alpha, limit, w_in, w_out, b_in|None, b_out|None
 *                 [, dtype code, group]) — float32 / uint16 (bf16) panels, or uint8 INT blocks with the
 * dtype code (2 INT8, 3 INT4, 4 INT4 asym) and group size */
static int parse_experts(PyObject *t, const char *name, moe_experts *ex) {
    PyObject *w_in_o, *w_out_o, *b_in_o, *b_out_o;
    long long E, H, In, group = 0;
    int gated, act, dt = -1;
    float alpha, limit;
    if (!PyTuple_Check(t)) return PyErr_Format(PyExc_TypeError, "%s must be a tuple", name), -1;
    if (!PyArg_ParseTuple(t, "LLLiiffOOOO|iL;experts must be (E, H, I, gated, activation, alpha, limit, w_in, "
                             "w_out, b_in, b_out[, dtype, group])", &E, &H, &In, &gated, &act, &alpha, &limit,
                          &w_in_o, &w_out_o, &b_in_o, &b_out_o, &dt, &group))
        return -1;
    if (E < 1 || H < 1 || In < 1) return PyErr_Format(PyExc_ValueError, "%s: E, H, I must be >= 1", name), -1;
    if (act < MOE_ACT_SILU || act > MOE_ACT_RELU2 || (act == MOE_ACT_NONE && gated))
        return PyErr_Format(PyExc_ValueError, "%s: unknown activation code %d", name, act), -1;
    if (!PyArray_Check(w_in_o) || !PyArray_Check(w_out_o))
        return PyErr_Format(PyExc_TypeError, "%s: packed weights must be numpy arrays", name), -1;
    const int in_type = PyArray_TYPE((PyArrayObject *)w_in_o);
    if (in_type == NPY_UINT8) {
        if (dt < MOE_DT_INT8 || dt > MOE_DT_INT4_ASYM)
            return PyErr_Format(PyExc_ValueError, "%s: uint8 weights need a dtype code 2, 3 or 4, got %d", name, dt), -1;
        if (group != 32 && group != 64 && group != 128)
            return PyErr_Format(PyExc_ValueError, "%s: group must be 32, 64 or 128, got %lld", name, group), -1;
        if (H % group || In % group)
            return PyErr_Format(PyExc_ValueError, "%s: group %lld must divide H=%lld and I=%lld", name, group, H, In), -1;
    } else {
        if (in_type == NPY_FLOAT32) dt = MOE_DT_F32;
        else if (in_type == NPY_UINT16) dt = MOE_DT_BF16;
        else return PyErr_Format(PyExc_TypeError, "%s: packed weights must be float32, uint16 or uint8", name), -1;
        group = 0;
    }
    PyArrayObject *w_in = check_input(w_in_o, "w_in", in_type, 1);
    PyArrayObject *w_out = w_in ? check_input(w_out_o, "w_out", in_type, 1) : NULL;
    if (!w_out) return -1;
    int64_t want_in, want_out;
    if (MOE_DT_IS_QUANT(dt)) {
        const int64_t one = moe_qpacked_bytes(E, In, H, MOE_DT_QFORMAT(dt), group);
        want_in = one < 0 ? -1 : one * (gated ? 2 : 1);
        want_out = moe_qpacked_bytes(E, H, In, MOE_DT_QFORMAT(dt), group);
    } else {
        want_in = moe_packed_in_elems(E, H, In, gated);
        want_out = moe_packed_out_elems(E, H, In);
    }
    if (PyArray_DIM(w_in, 0) != want_in || PyArray_DIM(w_out, 0) != want_out)
        return PyErr_Format(PyExc_ValueError, "%s: packed weights do not match E=%lld, H=%lld, I=%lld", name, E, H, In), -1;
    const int64_t Ip = moe_round_up(In, MOE_PANEL), Hp = moe_round_up(H, MOE_PANEL);
    ex->b_in = ex->b_out = NULL;
    if (b_in_o != Py_None) {
        PyArrayObject *b = check_input(b_in_o, "b_in", NPY_FLOAT32, 1);
        if (!b) return -1;
        if (PyArray_DIM(b, 0) != E * (gated ? 2 : 1) * Ip)
            return PyErr_Format(PyExc_ValueError, "%s: b_in must hold E * P * Ip = %lld floats", name,
                                (long long)(E * (gated ? 2 : 1) * Ip)), -1;
        ex->b_in = PyArray_DATA(b);
    }
    if (b_out_o != Py_None) {
        PyArrayObject *b = check_input(b_out_o, "b_out", NPY_FLOAT32, 1);
        if (!b) return -1;
        if (PyArray_DIM(b, 0) != E * Hp)
            return PyErr_Format(PyExc_ValueError, "%s: b_out must hold E * Hp = %lld floats", name, (long long)(E * Hp)), -1;
        ex->b_out = PyArray_DATA(b);
    }
    ex->E = E; ex->H = H; ex->inter = In; ex->group = group; ex->dtype = dt; ex->gated = gated != 0;
    ex->activation = act; ex->act_alpha = alpha; ex->act_limit = limit;
    ex->w_in = PyArray_DATA(w_in); ex->w_out = PyArray_DATA(w_out);
    return 0;
}

static int check_qformat(int fmt, long long G) {
    if (fmt < MOE_Q_INT8 || fmt > MOE_Q_INT4_ASYM)
        return PyErr_Format(PyExc_ValueError, "format code must be 0 (int8), 1 (int4) or 2 (int4_asym), got %d", fmt), -1;
    if (G != 32 && G != 64 && G != 128)
        return PyErr_Format(PyExc_ValueError, "group_size must be 32, 64 or 128, got %lld", G), -1;
    return 0;
}

/* quantize(w (E, N, K) f32, fmt, G, P=1, p=0, out=None) -> uint8 blocks (P * blocks bytes) */
static PyObject *py_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *w_o, *out_o = Py_None;
    int fmt, P = 1, p = 0;
    long long G;
    if (!PyArg_ParseTuple(args, "OiL|iiO:quantize", &w_o, &fmt, &G, &P, &p, &out_o)) return NULL;
    if (check_qformat(fmt, G) < 0) return NULL;
    PyArrayObject *w = check_input(w_o, "weights", NPY_FLOAT32, 3);
    if (!w) return NULL;
    const int64_t E = PyArray_DIM(w, 0), N = PyArray_DIM(w, 1), K = PyArray_DIM(w, 2);
    if (E < 1 || N < 1 || K < 1) return PyErr_SetString(PyExc_ValueError, "weights must have no empty dimension"), NULL;
    if (K % G)
        return PyErr_Format(PyExc_ValueError, "group_size %lld must divide the input dimension %lld", G, (long long)K);
    if (P < 1 || P > 2 || p < 0 || p >= P) return PyErr_SetString(PyExc_ValueError, "need 1 <= P <= 2, 0 <= p < P"), NULL;
    const int64_t bytes = moe_qpacked_bytes(E, N, K, fmt, G);
    if (bytes < 0 || moe_mul_checked(bytes, P) < 0) return PyErr_SetString(PyExc_OverflowError, "size overflows"), NULL;
    const npy_intp dims[1] = {bytes * P};
    PyArrayObject *inputs[1] = {w};
    PyArrayObject *out = out_o == Py_None ? (PyArrayObject *)PyArray_ZEROS(1, dims, NPY_UINT8, 0)
                                          : get_output(out_o, "out", NPY_UINT8, 1, dims, inputs, 1);
    if (!out) return NULL;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_quantize(PyArray_DATA(out), &bad, PyArray_DATA(w), E, N, K, fmt, G, P, p);
    Py_END_ALLOW_THREADS
    if (st == MOE_ENAN) {
        Py_DECREF(out);
        const int64_t k = bad % K, n = (bad / K) % N, e = bad / (K * N);
        return PyErr_Format(PyExc_ValueError, "weights hold NaN or inf at [%lld, %lld, %lld]", (long long)e,
                            (long long)n, (long long)k);
    }
    if (st != MOE_OK) { Py_DECREF(out); set_status_error(st, "weights", -1); return NULL; }
    return (PyObject *)out;
}

/* dequantize(blocks uint8, E, N, K, fmt, G, P=1, p=0) -> (E, N, K) f32 */
static PyObject *py_dequantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *b_o;
    long long E, N, K, G;
    int fmt, P = 1, p = 0;
    if (!PyArg_ParseTuple(args, "OLLLiL|ii:dequantize", &b_o, &E, &N, &K, &fmt, &G, &P, &p)) return NULL;
    if (check_qformat(fmt, G) < 0) return NULL;
    PyArrayObject *b = check_input(b_o, "blocks", NPY_UINT8, 1);
    if (!b) return NULL;
    if (E < 1 || N < 1 || K < 1 || K % G || P < 1 || P > 2 || p < 0 || p >= P)
        return PyErr_SetString(PyExc_ValueError, "invalid shape, group or interleave"), NULL;
    const int64_t bytes = moe_qpacked_bytes(E, N, K, fmt, G);
    if (bytes < 0 || PyArray_DIM(b, 0) != bytes * P)
        return PyErr_Format(PyExc_ValueError, "blocks must hold %lld bytes for this shape", (long long)(bytes * P));
    const npy_intp dims[3] = {E, N, K};
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(3, dims, NPY_FLOAT32, 0);
    if (!out) return NULL;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_dequantize(PyArray_DATA(out), PyArray_DATA(b), E, N, K, fmt, G, P, p);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { Py_DECREF(out); set_status_error(st, "blocks", -1); return NULL; }
    return (PyObject *)out;
}

/* quantize_rows(x (R, K) f32, G) -> (xq (R, K) i8, scales (R, K/G) f32, sums (R, K/G) i32): the activation
 * quantisation of the INT kernels, exposed for tests */
static PyObject *py_quantize_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o;
    long long G;
    if (!PyArg_ParseTuple(args, "OL:quantize_rows", &x_o, &G)) return NULL;
    if (check_qformat(0, G) < 0) return NULL;
    PyArrayObject *x = check_input(x_o, "x", NPY_FLOAT32, 2);
    if (!x) return NULL;
    const int64_t R = PyArray_DIM(x, 0), K = PyArray_DIM(x, 1);
    if (K % G) return PyErr_Format(PyExc_ValueError, "G=%lld must divide K=%lld", G, (long long)K);
    const npy_intp dq[2] = {R, K}, dg[2] = {R, K / G};
    PyArrayObject *q = (PyArrayObject *)PyArray_EMPTY(2, dq, NPY_INT8, 0);
    PyArrayObject *sc = (PyArrayObject *)PyArray_EMPTY(2, dg, NPY_FLOAT32, 0);
    PyArrayObject *sm = (PyArrayObject *)PyArray_EMPTY(2, dg, NPY_INT32, 0);
    if (!q || !sc || !sm) { Py_XDECREF(q); Py_XDECREF(sc); Py_XDECREF(sm); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    moe_kernels()->quantize_rows(PyArray_DATA(q), PyArray_DATA(sc), PyArray_DATA(sm), PyArray_DATA(x), K, R, K, G);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("NNN", q, sc, sm);
}

/* moe_forward(x (T,H), weights (T,K), experts (T,K) i32, dropped|None, routed, shared|None, shared_gate|None,
 *             scale_input, out=None) -> out (T, H) */
static PyObject *py_moe_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"x", "weights", "experts", "dropped", "routed", "shared", "shared_gate", "scale_input",
                             "out", "work", NULL};
    PyObject *x_o, *w_o, *e_o, *d_o, *r_o, *s_o, *g_o, *out_o = Py_None, *work_o = Py_None;
    int scale_input;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOp|OO:moe_forward", kwlist, &x_o, &w_o, &e_o, &d_o, &r_o,
                                     &s_o, &g_o, &scale_input, &out_o, &work_o))
        return NULL;
    moe_experts routed, shared;
    if (parse_experts(r_o, "routed", &routed) < 0) return NULL;
    if (s_o != Py_None && parse_experts(s_o, "shared", &shared) < 0) return NULL;
    if (s_o != Py_None && (shared.E != 1 || shared.H != routed.H))
        return PyErr_SetString(PyExc_ValueError, "shared must be one expert of the routed hidden size"), NULL;
    PyArrayObject *x = check_input(x_o, "x", NPY_FLOAT32, 2);
    PyArrayObject *w = x ? check_input(w_o, "weights", NPY_FLOAT32, 2) : NULL;
    PyArrayObject *ex = w ? check_input(e_o, "experts", NPY_INT32, 2) : NULL;
    if (!ex) return NULL;
    const int64_t T = PyArray_DIM(x, 0), H = PyArray_DIM(x, 1), K = PyArray_DIM(ex, 1);
    if (H != routed.H) return PyErr_Format(PyExc_ValueError, "x has hidden size %lld, the experts %lld", (long long)H,
                                           (long long)routed.H);
    if (PyArray_DIM(ex, 0) != T || PyArray_DIM(w, 0) != T || PyArray_DIM(w, 1) != K || K < 1)
        return PyErr_SetString(PyExc_ValueError, "weights and experts must both be (T, K) with x (T, H)"), NULL;
    if (check_ids_in_range(ex, "experts", routed.E) < 0) return NULL;
    PyArrayObject *dropped = NULL, *gate = NULL;
    if (d_o != Py_None) {
        dropped = check_input(d_o, "dropped", NPY_BOOL, 2);
        if (!dropped) return NULL;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K)
            return PyErr_SetString(PyExc_ValueError, "dropped must have the shape of experts"), NULL;
    }
    if (g_o != Py_None) {
        gate = check_input(g_o, "shared_gate", NPY_FLOAT32, 1);
        if (!gate) return NULL;
        if (PyArray_DIM(gate, 0) != T) return PyErr_SetString(PyExc_ValueError, "shared_gate must be (T,)"), NULL;
    }
    const npy_intp dims[2] = {T, H};
    PyArrayObject *inputs[5] = {x, w, ex, dropped, gate};
    PyArrayObject *work = NULL;
    if (work_o != Py_None) {
        const int64_t need = moe_forward_workspace(T, K, &routed, s_o != Py_None ? &shared : NULL, scale_input);
        const npy_intp wd[1] = {PyArray_Check(work_o) ? PyArray_SIZE((PyArrayObject *)work_o) : 0};
        if (need < 0) return PyErr_SetString(PyExc_OverflowError, "workspace size overflows"), NULL;
        if (wd[0] < need) return PyErr_Format(PyExc_ValueError, "work must hold at least %lld bytes", (long long)need);
        work = get_output(work_o, "work", NPY_UINT8, 1, wd, inputs, 5);
        if (!work) return NULL;
    }
    PyArrayObject *out = get_output(out_o, "out", NPY_FLOAT32, 2, dims, inputs, 5);
    if (!out) { Py_XDECREF(work); return NULL; }
    if (work && arrays_overlap(work, out)) {
        Py_DECREF(work); Py_DECREF(out);
        return PyErr_SetString(PyExc_ValueError, "work overlaps out"), NULL;
    }
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_forward(PyArray_DATA(out), PyArray_DATA(x), T, PyArray_DATA(w), PyArray_DATA(ex),
                     dropped ? PyArray_DATA(dropped) : NULL, K, &routed, s_o != Py_None ? &shared : NULL,
                     gate ? PyArray_DATA(gate) : NULL, scale_input, work ? PyArray_DATA(work) : NULL,
                     work ? (int64_t)PyArray_SIZE(work) : 0);
    Py_END_ALLOW_THREADS
    Py_XDECREF(work);
    if (st != MOE_OK) { Py_DECREF(out); set_status_error(st, "moe_forward", -1); return NULL; }
    return (PyObject *)out;
}

/* forward_workspace(T, K, routed, shared|None, scale_input) -> bytes moe_forward needs */
static PyObject *py_forward_workspace(PyObject *self, PyObject *args) {
    (void)self;
    long long T, K;
    PyObject *r_o, *s_o;
    int scale_input;
    if (!PyArg_ParseTuple(args, "LLOOp:forward_workspace", &T, &K, &r_o, &s_o, &scale_input)) return NULL;
    moe_experts routed, shared;
    if (parse_experts(r_o, "routed", &routed) < 0) return NULL;
    if (s_o != Py_None && parse_experts(s_o, "shared", &shared) < 0) return NULL;
    const int64_t n = moe_forward_workspace(T, K, &routed, s_o != Py_None ? &shared : NULL, scale_input);
    if (n < 0) return PyErr_SetString(PyExc_ValueError, "invalid shapes for a workspace"), NULL;
    return PyLong_FromLongLong(n);
}

/* linear(x (T, H) f32, w packed experts tuple with E = 1, ungated, activation none) -> (T, N) */
static PyObject *py_linear(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o, *w_o;
    if (!PyArg_ParseTuple(args, "OO:linear", &x_o, &w_o)) return NULL;
    moe_experts w;
    if (parse_experts(w_o, "weight", &w) < 0) return NULL;
    if (w.E != 1 || w.gated || w.activation != MOE_ACT_NONE)
        return PyErr_SetString(PyExc_ValueError, "weight must be one ungated expert with activation 'none'"), NULL;
    PyArrayObject *x = check_input(x_o, "x", NPY_FLOAT32, 2);
    if (!x) return NULL;
    if (PyArray_DIM(x, 1) != w.H)
        return PyErr_Format(PyExc_ValueError, "x has %lld columns, the weight expects %lld",
                            (long long)PyArray_DIM(x, 1), (long long)w.H);
    const npy_intp dims[2] = {PyArray_DIM(x, 0), w.inter};
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0);
    if (!out) return NULL;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_linear(PyArray_DATA(out), PyArray_DATA(x), dims[0], &w);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { Py_DECREF(out); set_status_error(st, "linear", -1); return NULL; }
    return (PyObject *)out;
}

/* dispatch_plan(experts (T,K) i32, dropped|None, E) -> (counts, offsets, order, position) */
static PyObject *py_dispatch_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *e_o, *d_o;
    long long E;
    if (!PyArg_ParseTuple(args, "OOL:dispatch_plan", &e_o, &d_o, &E)) return NULL;
    PyArrayObject *ex = check_input(e_o, "experts", NPY_INT32, 2), *dropped = NULL;
    if (!ex) return NULL;
    const int64_t T = PyArray_DIM(ex, 0), K = PyArray_DIM(ex, 1);
    if (E < 1 || K < 1) return PyErr_SetString(PyExc_ValueError, "num_experts and K must be >= 1"), NULL;
    if (check_ids_in_range(ex, "experts", E) < 0) return NULL;
    if (d_o != Py_None) {
        dropped = check_input(d_o, "dropped", NPY_BOOL, 2);
        if (!dropped) return NULL;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K)
            return PyErr_SetString(PyExc_ValueError, "dropped must have the shape of experts"), NULL;
    }
    const npy_intp de[1] = {E}, de1[1] = {E + 1}, dn[1] = {T * K};
    PyArrayObject *counts = (PyArrayObject *)PyArray_EMPTY(1, de, NPY_INT64, 0);
    PyArrayObject *offsets = (PyArrayObject *)PyArray_EMPTY(1, de1, NPY_INT64, 0);
    PyArrayObject *order = (PyArrayObject *)PyArray_EMPTY(1, dn, NPY_INT64, 0);
    PyArrayObject *pos = (PyArrayObject *)PyArray_EMPTY(1, dn, NPY_INT64, 0);
    if (!counts || !offsets || !order || !pos) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_dispatch_plan(PyArray_DATA(counts), PyArray_DATA(offsets), PyArray_DATA(order), PyArray_DATA(pos),
                           PyArray_DATA(ex), dropped ? PyArray_DATA(dropped) : NULL, T, K, E);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "experts", -1); goto fail; }
    {
        const int64_t n = ((int64_t *)PyArray_DATA(offsets))[E];
        PyObject *order_n = PySequence_GetSlice((PyObject *)order, 0, n);
        Py_DECREF(order);
        if (!order_n) { order = NULL; goto fail; }
        return Py_BuildValue("NNNN", counts, offsets, order_n, pos);
    }
fail:
    Py_XDECREF(counts); Py_XDECREF(offsets); Py_XDECREF(order); Py_XDECREF(pos);
    return NULL;
}

/* ---------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict: OpenMP, threads, ISA, CPU features."},
    {"set_num_threads", py_set_num_threads, METH_VARARGS, "set_num_threads(n): threads used by kernels (0 = default)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int."},
    {"set_isa", py_set_isa, METH_VARARGS, "set_isa(name): force 'scalar', 'avx2', 'avx512' or 'best'."},
    {"route", (PyCFunction)(void (*)(void))py_route, METH_VARARGS | METH_KEYWORDS,
     "route(logits (T,E) f32, bias (E,) f32|None, params) -> (weights (T,K) f32, experts (T,K) i32, scores (T,E) f32)"},
    {"topk", py_topk, METH_VARARGS, "topk(x (R,M) f32, k) -> (values (R,k) f32, indices (R,k) i64)"},
    {"apply_capacity", py_apply_capacity, METH_VARARGS,
     "apply_capacity(weights (T,K) f32 [in place], experts (T,K) i32, E, capacity, priority) -> (dropped, counts)"},
    {"expert_choice", py_expert_choice, METH_VARARGS,
     "expert_choice(scores (T,E) f32, capacity) -> (gates (E,C) f32, tokens (E,C) i64)"},
    {"expert_load", py_expert_load, METH_VARARGS,
     "expert_load(experts (T,K) i32, dropped (T,K) bool|None, scores (T,E) f32|None, E) -> (counts, prob_sum)"},
    {"pack", py_pack, METH_VARARGS, "pack(which, w (E,C,R) f32|u16 [, up]) -> packed panels (which: 0 in, 1 out)"},
    {"moe_forward", (PyCFunction)(void (*)(void))py_moe_forward, METH_VARARGS | METH_KEYWORDS,
     "moe_forward(x, weights, experts, dropped, routed, shared, shared_gate, scale_input, out=None) -> (T, H)"},
    {"quantize", py_quantize, METH_VARARGS,
     "quantize(w (E,N,K) f32, fmt, G, P=1, p=0, out=None) -> uint8 blocks (fmt 0 int8, 1 int4, 2 int4_asym)"},
    {"dequantize", py_dequantize, METH_VARARGS, "dequantize(blocks, E, N, K, fmt, G, P=1, p=0) -> (E,N,K) f32"},
    {"quantize_rows", py_quantize_rows, METH_VARARGS, "quantize_rows(x (R,K) f32, G) -> (xq i8, scales, sums)"},
    {"forward_workspace", py_forward_workspace, METH_VARARGS,
     "forward_workspace(T, K, routed, shared, scale_input) -> bytes of moe_forward's work buffer"},
    {"linear", py_linear, METH_VARARGS, "linear(x (T,H) f32, packed weight) -> (T, N): batch-invariant x W^T"},
    {"dispatch_plan", py_dispatch_plan, METH_VARARGS,
     "dispatch_plan(experts (T,K) i32, dropped|None, E) -> (counts, offsets, order, position)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_C", "moepy's C core (see csrc/moe.h).", -1, methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    return PyModule_Create(&moduledef);
}
