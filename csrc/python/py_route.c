/* py_route.c: routing entry points (route params, route, top-k, capacity, expert choice, load). */
#include "pyhelpers.h"

#include <math.h>
#include <string.h>

/* route_params(*, top_k, scoring, topk_before_score, normalize, norm_p, norm_eps, scale, n_group, topk_group,
 *              group_score, group_mask_value) -> bytes of a moe_route_params (packed here, the one place) */
MOE_PY_FN(py_route_params) {
    (void)self;
    static char *kwlist[] = {"top_k", "scoring", "topk_before_score", "normalize", "norm_p", "norm_eps", "scale",
                             "n_group", "topk_group", "group_score", "group_mask_value", NULL};
    int_arg top_k = INT_ARG("top_k", 1, INT64_MAX), scoring = INT_ARG("scoring", 0, 1);
    int_arg before = INT_ARG("topk_before_score", 0, 1), normalize = INT_ARG("normalize", 0, 1);
    int_arg n_group = INT_ARG("n_group", 1, INT64_MAX), topk_group = INT_ARG("topk_group", 1, INT64_MAX);
    int_arg group_score = INT_ARG("group_score", 0, 1);
    float_arg norm_p = {"norm_p", 0, 0}, norm_eps = {"norm_eps", 0, 0}, scale = {"scale", 0, 0};
    float_arg mask = {"group_mask_value", 0, 0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$O&O&O&O&O&O&O&O&O&O&O&:route_params", kwlist, conv_int, &top_k,
                                     conv_int, &scoring, conv_int, &before, conv_int, &normalize, conv_float, &norm_p,
                                     conv_float, &norm_eps, conv_float, &scale, conv_int, &n_group, conv_int,
                                     &topk_group, conv_int, &group_score, conv_float, &mask))
        return NULL;
    if (!(norm_p.value > 0.0f && isfinite(norm_p.value)))
        return PyErr_Format(PyExc_ValueError, "norm_p must be finite and > 0, got %g", (double)norm_p.value);
    if (!(norm_eps.value >= 0.0f)) return PyErr_Format(PyExc_ValueError, "norm_eps must be >= 0");
    if (topk_group.value > n_group.value)
        return PyErr_Format(PyExc_ValueError, "topk_group must be in [1, n_group=%lld], got %lld", n_group.value,
                            topk_group.value);
    moe_route_params p;
    memset(&p, 0, sizeof(p));
    p.top_k = top_k.value;
    p.scoring = (int32_t)scoring.value;
    p.topk_before_score = (int32_t)before.value;
    p.normalize = (int32_t)normalize.value;
    p.norm_p = norm_p.value;
    p.norm_eps = norm_eps.value;
    p.scale = scale.value;
    p.n_group = n_group.value;
    p.topk_group = topk_group.value;
    p.group_score = (int32_t)group_score.value;
    p.group_mask_value = mask.value;
    return PyBytes_FromStringAndSize((const char *)&p, sizeof(p));
}

static int parse_route_params(PyObject *obj, moe_route_params *p) {
    if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != (Py_ssize_t)sizeof(moe_route_params)) {
        PyErr_Format(PyExc_TypeError, "params must be the %zu bytes of moepy._ops.route_params(config)",
                     sizeof(moe_route_params));
        return -1;
    }
    memcpy(p, PyBytes_AS_STRING(obj), sizeof(*p));
    return 0;
}

static void route_params_error(const moe_route_params *p, int64_t E) {
    if (p->top_k < 1 || p->top_k > E)
        PyErr_Format(PyExc_ValueError, "top_k must be in [1, E=%lld], got %lld", (long long)E, (long long)p->top_k);
    else if (p->n_group < 1 || E % p->n_group != 0)
        PyErr_Format(PyExc_ValueError, "n_group=%lld must be >= 1 and divide the number of experts E=%lld",
                     (long long)p->n_group, (long long)E);
    else if (p->n_group > 1 && p->topk_group * (E / p->n_group) < p->top_k)
        PyErr_Format(PyExc_ValueError,
                     "top_k=%lld exceeds the experts in the kept groups (topk_group=%lld x %lld per group)",
                     (long long)p->top_k, (long long)p->topk_group, (long long)(E / p->n_group));
    else
        PyErr_SetString(PyExc_ValueError, "invalid route params (see moepy._ops.route_params)");
}

/* route(logits (T, E) f32, bias (E,) f32 | None, params, weights=None, experts=None, scores=None)
 * -> (weights (T, K) f32, experts (T, K) i32, scores (T, E) f32) */
MOE_PY_FN(py_route) {
    (void)self;
    static char *kwlist[] = {"logits", "bias", "params", "weights", "experts", "scores", NULL};
    PyObject *logits_o, *bias_o, *params_o, *w_o = Py_None, *e_o = Py_None, *s_o = Py_None;
    PyArrayObject *logits = NULL, *bias = NULL, *w = NULL, *ex = NULL, *sc = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OOO:route", kwlist, &logits_o, &bias_o, &params_o, &w_o,
                                     &e_o, &s_o))
        return NULL;
    moe_route_params p;
    if (parse_route_params(params_o, &p) < 0) return NULL;
    if (!(logits = get_input(logits_o, "logits", NPY_FLOAT32, 2))) goto fail;
    const int64_t T = PyArray_DIM(logits, 0), E = PyArray_DIM(logits, 1);
    if (E < 1) {
        PyErr_Format(PyExc_ValueError, "logits must have at least one expert column, got shape (%lld, %lld)",
                     (long long)T, (long long)E);
        goto fail;
    }
    if (moe_route_check(&p, E) != MOE_OK) { route_params_error(&p, E); goto fail; }
    if (bias_o != Py_None) {
        /* private: the NaN check below must hold for the memory the kernel reads */
        if (!(bias = get_private(bias_o, "bias", NPY_FLOAT32, 1))) goto fail;
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
    if (!(w = get_output(w_o, "weights", NPY_FLOAT32, 2, wk, inputs, 2))) goto fail;
    if (!(ex = get_output(e_o, "experts", NPY_INT32, 2, wk, inputs, 2))) goto fail;
    if (!(sc = get_output(s_o, "scores", NPY_FLOAT32, 2, se, inputs, 2))) goto fail;
    if (arrays_overlap(w, ex) || arrays_overlap(w, sc) || arrays_overlap(ex, sc)) {
        PyErr_SetString(PyExc_ValueError, "output arrays must not overlap each other");
        goto fail;
    }
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

/* topk(x (R, M) f32, k) -> (values (R, k) f32, indices (R, k) i64) */
MOE_PY_FN(py_topk) {
    (void)self;
    static char *kwlist[] = {"x", "k", NULL};
    PyObject *x_o;
    int_arg k = INT_ARG("k", 1, INT64_MAX);
    PyArrayObject *x = NULL, *vals = NULL, *idx = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&:topk", kwlist, &x_o, conv_int, &k)) return NULL;
    if (!(x = get_input(x_o, "x", NPY_FLOAT32, 2))) goto fail;
    const int64_t R = PyArray_DIM(x, 0), M = PyArray_DIM(x, 1);
    if (k.value > M) {
        PyErr_Format(PyExc_ValueError, "k must be in [1, %lld] (the row length of x), got %lld", (long long)M, k.value);
        goto fail;
    }
    const npy_intp dims[2] = {R, k.value};
    if (!(vals = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0))) goto fail;
    if (!(idx = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_INT64, 0))) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_topk(PyArray_DATA(vals), PyArray_DATA(idx), &bad, PyArray_DATA(x), R, M, k.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "x", bad); goto fail; }
    Py_DECREF(x);
    return Py_BuildValue("NN", vals, idx);
fail:
    Py_XDECREF(x); Py_XDECREF(vals); Py_XDECREF(idx);
    return NULL;
}

/* apply_capacity(weights (T, K) f32 [in place], experts (T, K) i32, num_experts, capacity, priority)
 * -> (dropped (T, K) bool, counts (E,) i64) */
MOE_PY_FN(py_apply_capacity) {
    (void)self;
    static char *kwlist[] = {"weights", "experts", "num_experts", "capacity", "priority", NULL};
    PyObject *w_o, *e_o;
    int_arg E = INT_ARG("num_experts", 1, INT32_MAX), cap = INT_ARG("capacity", 0, INT64_MAX);
    int_arg prio = INT_ARG("priority", MOE_PRIORITY_RANK, MOE_PRIORITY_TOKEN);
    PyArrayObject *ex = NULL, *w = NULL, *dropped = NULL, *counts = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO&O&O&:apply_capacity", kwlist, &w_o, &e_o, conv_int, &E,
                                     conv_int, &cap, conv_int, &prio))
        return NULL;
    if (!(ex = get_private(e_o, "experts", NPY_INT32, 2))) goto fail;
    if (check_expert_ids(ex, "experts", E.value, 0) < 0) goto fail;
    const npy_intp dims[2] = {PyArray_DIM(ex, 0), PyArray_DIM(ex, 1)}, de[1] = {E.value};
    PyArrayObject *inputs[1] = {ex};
    if (!(w = get_output(w_o, "weights", NPY_FLOAT32, 2, dims, inputs, 1))) goto fail; /* updated in place */
    if (!(dropped = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)dims, NPY_BOOL, 0))) goto fail;
    if (!(counts = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)de, NPY_INT64, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_apply_capacity(PyArray_DATA(w), PyArray_DATA(dropped), PyArray_DATA(counts), PyArray_DATA(ex), dims[0],
                            dims[1], E.value, cap.value, (int32_t)prio.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "apply_capacity", -1); goto fail; }
    Py_DECREF(ex);
    Py_DECREF(w);
    return Py_BuildValue("NN", dropped, counts);
fail:
    Py_XDECREF(ex); Py_XDECREF(w); Py_XDECREF(dropped); Py_XDECREF(counts);
    return NULL;
}

/* expert_choice(scores (T, E) f32, capacity) -> (gates (E, C) f32, tokens (E, C) i64) */
MOE_PY_FN(py_expert_choice) {
    (void)self;
    static char *kwlist[] = {"scores", "capacity", NULL};
    PyObject *s_o;
    int_arg C = INT_ARG("capacity", 1, INT64_MAX);
    PyArrayObject *s = NULL, *gates = NULL, *tokens = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&:expert_choice", kwlist, &s_o, conv_int, &C)) return NULL;
    if (!(s = get_input(s_o, "scores", NPY_FLOAT32, 2))) goto fail;
    const int64_t T = PyArray_DIM(s, 0), E = PyArray_DIM(s, 1);
    if (T < 1 || E < 1 || C.value > T) {
        PyErr_Format(PyExc_ValueError, "capacity must be in [1, T=%lld] and scores non-empty, got %lld",
                     (long long)T, C.value);
        goto fail;
    }
    const npy_intp dims[2] = {E, C.value};
    if (!(gates = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0))) goto fail;
    if (!(tokens = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_INT64, 0))) goto fail;
    int64_t bad = -1;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_expert_choice(PyArray_DATA(gates), PyArray_DATA(tokens), &bad, PyArray_DATA(s), T, E, C.value);
    Py_END_ALLOW_THREADS
    if (st != MOE_OK) { set_status_error(st, "scores", bad); goto fail; }
    Py_DECREF(s);
    return Py_BuildValue("NN", gates, tokens);
fail:
    Py_XDECREF(s); Py_XDECREF(gates); Py_XDECREF(tokens);
    return NULL;
}

/* expert_load(experts (T, K) i32, dropped (T, K) bool | None, scores (T, E) f32 | None, num_experts)
 * -> (counts (E,) i64, prob_sum (E,) f64 | None) */
MOE_PY_FN(py_expert_load) {
    (void)self;
    static char *kwlist[] = {"experts", "dropped", "scores", "num_experts", NULL};
    PyObject *e_o, *d_o, *s_o;
    int_arg E = INT_ARG("num_experts", 1, INT32_MAX);
    PyArrayObject *ex = NULL, *dropped = NULL, *scores = NULL, *counts = NULL, *psum = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO&:expert_load", kwlist, &e_o, &d_o, &s_o, conv_int, &E))
        return NULL;
    if (!(ex = get_input(e_o, "experts", NPY_INT32, 2))) goto fail; /* validated in the pass that counts */
    const int64_t T = PyArray_DIM(ex, 0), K = PyArray_DIM(ex, 1);
    if (K < 1) { PyErr_SetString(PyExc_ValueError, "experts must have at least one column"); goto fail; }
    if (d_o != Py_None) {
        if (!(dropped = get_private(d_o, "dropped", NPY_BOOL, 2))) goto fail;
        if (PyArray_DIM(dropped, 0) != T || PyArray_DIM(dropped, 1) != K) {
            PyErr_SetString(PyExc_ValueError, "dropped must have the shape of experts");
            goto fail;
        }
    }
    if (s_o != Py_None) {
        if (!(scores = get_input(s_o, "scores", NPY_FLOAT32, 2))) goto fail;
        if (PyArray_DIM(scores, 0) != T || PyArray_DIM(scores, 1) != E.value) {
            PyErr_Format(PyExc_ValueError, "scores must be (T, E) = (%lld, %lld)", (long long)T, E.value);
            goto fail;
        }
    }
    const npy_intp de[1] = {E.value};
    if (!(counts = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)de, NPY_INT64, 0))) goto fail;
    if (scores && !(psum = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)de, NPY_FLOAT64, 0))) goto fail;
    moe_status st;
    Py_BEGIN_ALLOW_THREADS
    st = moe_expert_load(PyArray_DATA(counts), psum ? PyArray_DATA(psum) : NULL, PyArray_DATA(ex),
                         dropped ? PyArray_DATA(dropped) : NULL, scores ? PyArray_DATA(scores) : NULL, T, K, E.value);
    Py_END_ALLOW_THREADS
    if (st == MOE_EINVAL) {
        PyErr_Format(PyExc_ValueError, "experts holds an id out of range [0, %lld)", E.value);
        goto fail;
    }
    if (st != MOE_OK) { set_status_error(st, "expert_load", -1); goto fail; }
    Py_DECREF(ex); Py_XDECREF(dropped); Py_XDECREF(scores);
    if (!psum) { Py_INCREF(Py_None); psum = (PyArrayObject *)Py_None; }
    return Py_BuildValue("NN", counts, psum);
fail:
    Py_XDECREF(ex); Py_XDECREF(dropped); Py_XDECREF(scores); Py_XDECREF(counts); Py_XDECREF(psum);
    return NULL;
}
