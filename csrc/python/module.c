/* module.c: moepy._C: the method table, the constants of moe.h, and the info / thread / ISA entry points.
 * moepy/_ops.py is the only importer; it reads every enum value, the panel width and the quant block
 * geometry from here, so no table is copied by hand in Python. */
#define MOEPY_MODULE_MAIN
#include "pyhelpers.h"

#include <string.h>

/* ---------------------------------------------------------------- info and threads */

static const char *precision_names[] = {"fp32", "bf16", "auto"}; /* moe_precision order */

static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    static const char *features[] = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                     "avx512vnni", "avx512bf16", "avxvnni", "amx"};
    PyObject *cpu = PyDict_New();
    if (!cpu) return NULL;
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
        if (PyDict_SetItemString(cpu, features[i], moe_cpu_has(features[i]) ? Py_True : Py_False) < 0) {
            Py_DECREF(cpu);
            return NULL;
        }
    }
    int64_t min_rows;
    const int32_t mode = moe_get_activation_precision(&min_rows);
    return Py_BuildValue("{s:O,s:i,s:s,s:s,s:N,s:s,s:s,s:L,s:s}", "openmp", moe_openmp_enabled() ? Py_True : Py_False,
                         "num_threads", moe_get_num_threads(), "isa", moe_isa_name(moe_active_isa()),
                         "best_isa", moe_isa_name(moe_detected_isa()), "cpu_features", cpu,
                         "compiler", MOE_COMPILER_STRING, "activation_precision", precision_names[mode],
                         "activation_min_rows", (long long)min_rows,
                         "weight_prefetch", moe_weight_prefetch_nta() ? "nta" : "l2");
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *args) {
    (void)self;
    int_arg n = INT_ARG("n", 0, 4096);
    if (!PyArg_ParseTuple(args, "O&:set_num_threads", conv_int, &n)) return NULL;
    moe_set_num_threads((int)n.value);
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
    else if (!strcmp(name, "avx512bf16")) isa = MOE_ISA_AVX512BF16;
    else if (!strcmp(name, "amx")) isa = MOE_ISA_AMX;
    else if (!strcmp(name, "best")) isa = moe_detected_isa();
    else return PyErr_Format(PyExc_ValueError,
                             "isa must be 'scalar', 'avx2', 'avx512', 'avx512bf16', 'amx' or 'best', got %R",
                             PyTuple_GET_ITEM(args, 0));
    if (moe_force_isa(isa) != 0)
        return PyErr_Format(PyExc_ValueError, "isa %s is not supported by this CPU/build (best: %s)", name,
                            moe_isa_name(moe_detected_isa()));
    Py_RETURN_NONE;
}

static PyObject *py_set_activation_precision(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    int_arg min_rows = INT_ARG("min_rows", 1, INT64_MAX);
    if (!PyArg_ParseTuple(args, "sO&:set_activation_precision", &name, conv_int, &min_rows)) return NULL;
    int32_t mode = -1;
    for (int32_t i = 0; i < 3; i++)
        if (!strcmp(name, precision_names[i])) mode = i;
    if (mode < 0)
        return PyErr_Format(PyExc_ValueError, "mode must be 'fp32', 'bf16' or 'auto', got %R", PyTuple_GET_ITEM(args, 0));
    if (moe_set_activation_precision(mode, min_rows.value) != 0)
        return PyErr_Format(PyExc_ValueError, "min_rows must be >= 1");
    Py_RETURN_NONE;
}

static PyObject *py_get_activation_precision(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    int64_t min_rows;
    const int32_t mode = moe_get_activation_precision(&min_rows);
    return Py_BuildValue("(sL)", precision_names[mode], (long long)min_rows);
}

/* ---------------------------------------------------------------- constants */

typedef struct { const char *name; long value; } named_value;

static int add_table(PyObject *m, const char *attr, const named_value *t, size_t n) {
    PyObject *d = PyDict_New();
    if (!d) return -1;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLong(t[i].value);
        if (!v || PyDict_SetItemString(d, t[i].name, v) < 0) { Py_XDECREF(v); Py_DECREF(d); return -1; }
        Py_DECREF(v);
    }
    return PyModule_AddObject(m, attr, d) < 0 ? (Py_DECREF(d), -1) : 0;
}

#define TABLE(m, attr, ...)                                                                  \
    do {                                                                                     \
        static const named_value t_[] = {__VA_ARGS__};                                       \
        if (add_table((m), (attr), t_, sizeof(t_) / sizeof(t_[0])) < 0) return -1;           \
    } while (0)

static int add_constants(PyObject *m) {
    TABLE(m, "ACTIVATIONS", {"silu", MOE_ACT_SILU}, {"gelu", MOE_ACT_GELU}, {"gelu_tanh", MOE_ACT_GELU_TANH},
          {"relu", MOE_ACT_RELU}, {"gpt_oss", MOE_ACT_GPT_OSS}, {"none", MOE_ACT_NONE},
          {"relu2", MOE_ACT_RELU2});
    TABLE(m, "DTYPES", {"float32", MOE_DT_F32}, {"bfloat16", MOE_DT_BF16}, {"int8", MOE_DT_INT8},
          {"int4", MOE_DT_INT4}, {"int4_asym", MOE_DT_INT4_ASYM}, {"int4_nl", MOE_DT_INT4_NL});
    TABLE(m, "QFORMATS", {"int8", MOE_Q_INT8}, {"int4", MOE_Q_INT4}, {"int4_asym", MOE_Q_INT4_ASYM},
          {"int4_nl", MOE_Q_INT4_NL});
    TABLE(m, "SCORINGS", {"softmax", MOE_SCORE_SOFTMAX}, {"sigmoid", MOE_SCORE_SIGMOID});
    TABLE(m, "GROUP_SCORES", {"max", MOE_GROUP_MAX}, {"top2_sum", MOE_GROUP_TOP2_SUM});
    TABLE(m, "PRIORITIES", {"rank", MOE_PRIORITY_RANK}, {"token", MOE_PRIORITY_TOKEN});
    TABLE(m, "ISAS", {"scalar", MOE_ISA_SCALAR}, {"avx2", MOE_ISA_AVX2}, {"avx512", MOE_ISA_AVX512},
          {"avx512bf16", MOE_ISA_AVX512BF16}, {"amx", MOE_ISA_AMX});
    if (PyModule_AddIntConstant(m, "PANEL", MOE_PANEL) < 0) return -1;
    if (PyModule_AddIntConstant(m, "ROUTE_PARAMS_BYTES", (long)sizeof(moe_route_params)) < 0) return -1;
    /* quant block geometry: QBLOCK_HEADER_BYTES[fmt], QBLOCK_BYTES[(fmt, G)] (from the structs of quant.h) */
    static const char *fmts[MOE_Q_LAST + 1] = {"int8", "int4", "int4_asym", "int4_nl"};
    static const long groups[3] = {32, 64, 128};
    PyObject *hdr = PyDict_New(), *blk = PyDict_New();
    if (!hdr || !blk) goto fail;
    for (int f = 0; f <= MOE_Q_LAST; f++) {
        PyObject *h = PyLong_FromLongLong(moe_qformat_header_bytes(f));
        if (!h || PyDict_SetItemString(hdr, fmts[f], h) < 0) { Py_XDECREF(h); goto fail; }
        Py_DECREF(h);
        for (int g = 0; g < 3; g++) {
            PyObject *k = Py_BuildValue("(sl)", fmts[f], groups[g]);
            PyObject *v = PyLong_FromLongLong(moe_qformat_block_bytes(f, groups[g]));
            const int bad = !k || !v || PyDict_SetItem(blk, k, v) < 0;
            Py_XDECREF(k); Py_XDECREF(v);
            if (bad) goto fail;
        }
    }
    if (PyModule_AddObject(m, "QBLOCK_HEADER_BYTES", hdr) < 0) goto fail;
    hdr = NULL;
    if (PyModule_AddObject(m, "QBLOCK_BYTES", blk) < 0) goto fail;
    return 0;
fail:
    Py_XDECREF(hdr); Py_XDECREF(blk);
    return -1;
}

/* ---------------------------------------------------------------- module */

#define KW(fn) (PyCFunction)(void (*)(void))(fn), METH_VARARGS | METH_KEYWORDS

static PyMethodDef methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict: OpenMP, threads, ISA, CPU features."},
    {"set_num_threads", py_set_num_threads, METH_VARARGS, "set_num_threads(n): threads used by kernels (0 = default)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int."},
    {"set_isa", py_set_isa, METH_VARARGS, "set_isa(name): force 'scalar', 'avx2', 'avx512', 'avx512bf16', 'amx' or 'best'."},
    {"set_activation_precision", py_set_activation_precision, METH_VARARGS,
     "set_activation_precision(mode, min_rows): 'fp32', 'bf16' or 'auto' activations for bf16 weights."},
    {"get_activation_precision", py_get_activation_precision, METH_NOARGS,
     "get_activation_precision() -> (mode, min_rows)."},
    {"route_params", KW(py_route_params), "route_params(*, top_k, scoring, ...) -> bytes of moe_route_params"},
    {"route", KW(py_route),
     "route(logits (T,E) f32, bias (E,) f32|None, params) -> (weights (T,K) f32, experts (T,K) i32, scores (T,E) f32)"},
    {"topk", KW(py_topk), "topk(x (R,M) f32, k) -> (values (R,k) f32, indices (R,k) i64)"},
    {"apply_capacity", KW(py_apply_capacity),
     "apply_capacity(weights (T,K) f32 [in place], experts (T,K) i32, E, capacity, priority) -> (dropped, counts)"},
    {"expert_choice", KW(py_expert_choice),
     "expert_choice(scores (T,E) f32, capacity) -> (gates (E,C) f32, tokens (E,C) i64)"},
    {"expert_load", KW(py_expert_load),
     "expert_load(experts (T,K) i32, dropped (T,K) bool|None, scores (T,E) f32|None, E) -> (counts, prob_sum)"},
    {"pack", KW(py_pack), "pack(which, w (E,C,R) f32|u16 [, up], out=None) -> packed panels (which: 0 in, 1 out)"},
    {"packed_elems", KW(py_packed_elems), "packed_elems(E, H, I, gated) -> (w_in elements, w_out elements)"},
    {"moe_forward", KW(py_moe_forward),
     "moe_forward(x, weights, experts, dropped, routed, shared, shared_gate, scale_input, out=None, work=None)"},
    {"forward_workspace", KW(py_forward_workspace),
     "forward_workspace(T, K, routed, shared, scale_input) -> bytes of moe_forward's work buffer"},
    {"linear", KW(py_linear), "linear(x (T,H) f32, packed weight) -> (T, N): batch-invariant x W^T"},
    {"dispatch_plan", KW(py_dispatch_plan),
     "dispatch_plan(experts (T,K) i32, dropped|None, E) -> (counts, offsets, order, position)"},
    {"gather", KW(py_gather), "gather(x (T,H), order (N,), top_k, weights|None) -> xs (N, H)"},
    {"grouped_ffn", KW(py_grouped_ffn), "grouped_ffn(xs (N,H), offsets (E+1,), experts) -> ys (N, H)"},
    {"combine", KW(py_combine),
     "combine(ys, position, experts, weights, scale_input=False, shared_y=None, shared_gate=None) -> (T, H)"},
    {"quantize", KW(py_quantize),
     "quantize(w (E,N,K) f32, fmt, G, P=1, p=0, out=None, name='weights') -> uint8 blocks"},
    {"dequantize", KW(py_dequantize), "dequantize(blocks, E, N, K, fmt, G, P=1, p=0) -> (E,N,K) f32"},
    {"quantize_rows", KW(py_quantize_rows), "quantize_rows(x (R,K) f32, G) -> (xq i8, scales, sums)"},
    {"attention", KW(py_attention),
     "attention(q (B,Hq,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv) f32 views, allowed (B,T,S) bool, scale, sinks=None) "
     "-> (B,Hq,T,Dv)"},
    {"rms_norm", KW(py_rms_norm), "rms_norm(x (R,n) f32, weight (n,) f32|None, eps) -> (R, n): RMSNorm per row"},
    {"rope", KW(py_rope), "rope(x (R,H,dim) f32, cos (R,dim/2), sin (R,dim/2), layout) -> (R, H, dim) rotated"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_C", "moepy's C core (see csrc/kernels/moe.h).", -1,
                                       methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (add_constants(m) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
