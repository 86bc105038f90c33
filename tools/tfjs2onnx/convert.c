/*
 * tools/tfjs2onnx/convert.c — maps a TF.js graph onto ONNX opset 13 and
 * serialises the ModelProto.
 *
 * Layout: the ONNX graph stays NHWC like the TF graph, so the input tensor is
 * the same for both and every layout-sensitive op (Reshape before a MatMul,
 * Squeeze, Pad, Softmax's axis) keeps its TF meaning unchanged. Only the ops
 * ONNX defines in NCHW (Conv, AveragePool, MaxPool) are wrapped in
 * Transpose(0,3,1,2) ... Transpose(0,2,3,1); ONNX Runtime's transpose
 * optimiser cancels the back-to-back pairs. Rewriting the whole graph to
 * NCHW would save nothing at run time and would need every axis and constant
 * re-derived, which is where converters usually go wrong.
 *
 * Names: the TF output `node` (output 0) is the ONNX tensor "node:0", which is
 * exactly how the TF.js signature names its inputs and outputs. Helper tensors
 * are "node/<what>". Nodes are emitted in depth-first post-order from the
 * outputs, which is topological and drops nodes the outputs do not need.
 *
 * Memory: every protobuf-c struct, string and converted weight is allocated
 * through the graph builder (tools/onnxb) and freed together after packing.
 * Weights the graph uses unchanged are referenced in place from the t2o_model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "onnxb.h"
#include "t2o.h"
#include "util/xalloc.h"

#define T2O_PRODUCER "inferd-tfjs2onnx"
#define T2O_PRODUCER_VERSION "0.1.0"
#define T2O_OPSET 13
#define T2O_IR_VERSION 8

typedef struct {
    const t2o_model *m;
    err_t *e;
    size_t nn;
    json_t **tf;      /* TF nodes, in model order */
    const char **tfname;
    int *state;       /* DFS: 0 new, 1 on stack, 2 emitted */
    unsigned char *wused; /* per weight: initializer "<name>:0" emitted */
    int have_clip_consts;
    onnxb g; /* the ONNX graph being built; owns every proto struct and string */
} conv;

/* ---- TF attribute access ---------------------------------------------- */

static json_t *tf_attr(json_t *node, const char *key)
{
    json_t *a = json_object_get(node, "attr");
    return a ? json_object_get(a, key) : NULL;
}

/* Decodes attr[key].s (base64) into `buf`; returns 0 when absent. */
static int tf_attr_s(json_t *node, const char *key, char *buf, size_t cap)
{
    json_t *a = tf_attr(node, key);
    const char *s = a ? json_string_value(json_object_get(a, "s")) : NULL;
    if (!s)
        return 0;
    uint8_t *raw = NULL;
    size_t n = 0;
    if (t2o_base64_decode(s, strlen(s), &raw, &n, NULL))
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, raw, n);
    buf[n] = '\0';
    free(raw);
    return 1;
}

static int64_t json_int_any(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return 0;
}

/* Reads attr[key].list.i into `out`; returns the count (-1 when absent). */
static int tf_attr_ilist(json_t *node, const char *key, int64_t *out, int max)
{
    json_t *a = tf_attr(node, key);
    json_t *l = a ? json_object_get(a, "list") : NULL;
    if (!l)
        return -1;
    json_t *arr = json_object_get(l, "i"), *v;
    size_t i;
    int n = 0;
    json_array_foreach(arr, i, v)
    {
        if (n < max)
            out[n] = json_int_any(v);
        n++;
    }
    return n;
}

static double tf_attr_f(json_t *node, const char *key, double dflt)
{
    json_t *a = tf_attr(node, key);
    json_t *v = a ? json_object_get(a, "f") : NULL;
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int tf_attr_b(json_t *node, const char *key)
{
    json_t *a = tf_attr(node, key);
    json_t *v = a ? json_object_get(a, "b") : NULL;
    return json_is_true(v);
}

static const char *tf_op(json_t *node)
{
    const char *s = json_string_value(json_object_get(node, "op"));
    return s ? s : "";
}

/* ---- graph walking ----------------------------------------------------- */

static long find_node(const conv *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nn; i++)
        if (strlen(c->tfname[i]) == len && !memcmp(c->tfname[i], name, len))
            return (long)i;
    return -1;
}

/*
 * Resolves a TF input reference ("name", "name:0"; "^name" is a control edge
 * and yields -2) to a node index. Other output indices are unsupported since
 * every op converted here has one output.
 */
static long resolve_input(conv *c, const char *ref, const char *user)
{
    if (ref[0] == '^')
        return -2;
    size_t len = strlen(ref);
    const char *colon = strrchr(ref, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        if (strcmp(colon + 1, "0") != 0) {
            err_set(c->e, ERR_UNSUPPORTED, "node '%s': input '%s' uses output %s", user, ref,
                    colon + 1);
            return -1;
        }
        len = (size_t)(colon - ref);
    }
    long idx = find_node(c, ref, len);
    if (idx < 0)
        err_set(c->e, ERR_FORMAT, "node '%s': input '%s' names no node", user, ref);
    return idx;
}

/* Data inputs of node `i` (control edges skipped), as node indices. */
static int data_inputs(conv *c, size_t i, long *out, int max)
{
    json_t *ins = json_object_get(c->tf[i], "input"), *v;
    size_t k;
    int n = 0;
    json_array_foreach(ins, k, v)
    {
        const char *ref = json_string_value(v);
        if (!ref)
            return err_set(c->e, ERR_FORMAT, "node '%s': input %zu is not a string", c->tfname[i],
                           k);
        long idx = resolve_input(c, ref, c->tfname[i]);
        if (idx == -2)
            continue;
        if (idx < 0)
            return c->e->code;
        if (n >= max)
            return err_set(c->e, ERR_UNSUPPORTED, "node '%s' (%s): more than %d inputs",
                           c->tfname[i], tf_op(c->tf[i]), max);
        out[n++] = idx;
    }
    return n;
}

/* The decoded weight behind a Const node, or NULL with an error set. */
static const t2o_weight *const_of(conv *c, long idx, const char *user, const char *what)
{
    if (strcmp(tf_op(c->tf[idx]), "Const") != 0) {
        err_set(c->e, ERR_UNSUPPORTED, "node '%s': %s '%s' must be a constant", user, what,
                c->tfname[idx]);
        return NULL;
    }
    const t2o_weight *w = t2o_model_weight(c->m, c->tfname[idx]);
    if (!w)
        err_set(c->e, ERR_FORMAT, "constant '%s' has no entry in weightsManifest",
                c->tfname[idx]);
    return w;
}

/* Tensor name of node `idx`; a Const gets its initializer on first use. */
static const char *tensor_of(conv *c, long idx)
{
    const char *name = onnxb_fmt(&c->g, "%s:0", c->tfname[idx]);
    if (!strcmp(tf_op(c->tf[idx]), "Const")) {
        const t2o_weight *w = t2o_model_weight(c->m, c->tfname[idx]);
        if (!w) {
            err_set(c->e, ERR_FORMAT, "constant '%s' has no entry in weightsManifest",
                    c->tfname[idx]);
            return NULL;
        }
        size_t wi = (size_t)(w - c->m->weights);
        if (!c->wused[wi]) {
            c->wused[wi] = 1;
            onnxb_init_tensor(&c->g, name, (int)w->dtype, w->dims, w->rank, w->data, w->count * 4);
        }
    }
    return name;
}

/* ---- op converters ----------------------------------------------------- */

static void ensure_clip_consts(conv *c)
{
    if (c->have_clip_consts)
        return;
    c->have_clip_consts = 1;
    float *v = onnxb_alloc(&c->g, 2 * sizeof(float));
    v[0] = 0.0f;
    v[1] = 6.0f;
    onnxb_init_tensor(&c->g, "t2o/zero", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, NULL, 0, &v[0], 4);
    onnxb_init_tensor(&c->g, "t2o/six", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, NULL, 0, &v[1], 4);
}

/* Emits activation `act` from `in` to `out`; ERR_UNSUPPORTED for others. */
static int emit_act(conv *c, size_t i, const char *act, const char *in, const char *out)
{
    const char *node = c->tfname[i];
    if (!strcmp(act, "Relu6")) {
        ensure_clip_consts(c);
        const char *ins[3] = {in, "t2o/zero", "t2o/six"};
        onnxb_node(&c->g, "Clip", onnxb_fmt(&c->g, "%s/relu6", node), 3, ins, out);
    } else if (!strcmp(act, "Relu") || !strcmp(act, "Elu") || !strcmp(act, "Sigmoid") ||
               !strcmp(act, "Tanh")) {
        onnxb_node(&c->g, act, onnxb_fmt(&c->g, "%s/%s", node, act), 1, &in, out);
    } else if (!strcmp(act, "LeakyRelu")) {
        Onnx__NodeProto *n = onnxb_node(&c->g, "LeakyRelu", onnxb_fmt(&c->g, "%s/leakyrelu", node), 1, &in, out);
        onnxb_attr_float(&c->g, n, "alpha", (float)tf_attr_f(c->tf[i], "leakyrelu_alpha", 0.2));
    } else {
        return err_set(c->e, ERR_UNSUPPORTED, "unsupported fused activation '%s' in node '%s'",
                       act, node);
    }
    return ERR_OK;
}

/* Reads fused_ops into `ops` (up to 4); returns the count. */
static int fused_ops(conv *c, size_t i, char ops[4][32])
{
    json_t *a = tf_attr(c->tf[i], "fused_ops");
    json_t *l = a ? json_object_get(a, "list") : NULL;
    json_t *arr = l ? json_object_get(l, "s") : NULL, *v;
    size_t k;
    int n = 0;
    json_array_foreach(arr, k, v)
    {
        const char *s = json_string_value(v);
        uint8_t *raw = NULL;
        size_t len = 0;
        if (!s || n >= 4 || t2o_base64_decode(s, strlen(s), &raw, &len, NULL))
            return err_set(c->e, ERR_FORMAT, "node '%s': bad fused_ops", c->tfname[i]);
        if (len >= 32)
            len = 31;
        memcpy(ops[n], raw, len);
        ops[n][len] = '\0';
        free(raw);
        n++;
    }
    return n;
}

static int check_nhwc(conv *c, size_t i)
{
    char fmt[16];
    if (tf_attr_s(c->tf[i], "data_format", fmt, sizeof fmt) && strcmp(fmt, "NHWC") != 0)
        return err_set(c->e, ERR_UNSUPPORTED, "node '%s' (%s): data_format %s (only NHWC)",
                       c->tfname[i], tf_op(c->tf[i]), fmt);
    return ERR_OK;
}

/* Sets strides/dilations/padding attributes of a Conv or pool node. */
static int spatial_attrs(conv *c, size_t i, Onnx__NodeProto *n, int dilations)
{
    int64_t v[8];
    int64_t s2[2] = {1, 1}, d2[2] = {1, 1};
    if (tf_attr_ilist(c->tf[i], "strides", v, 8) == 4) {
        s2[0] = v[1];
        s2[1] = v[2];
    }
    if (dilations && tf_attr_ilist(c->tf[i], "dilations", v, 8) == 4) {
        d2[0] = v[1];
        d2[1] = v[2];
    }
    onnxb_attr_ints(&c->g, n, "strides", s2, 2);
    if (dilations)
        onnxb_attr_ints(&c->g, n, "dilations", d2, 2);
    char pad[16] = "VALID";
    tf_attr_s(c->tf[i], "padding", pad, sizeof pad);
    if (!strcmp(pad, "SAME")) {
        /* TF puts the odd pixel at the end, which is ONNX's SAME_UPPER. */
        onnxb_attr_str(&c->g, n, "auto_pad", "SAME_UPPER");
    } else if (!strcmp(pad, "VALID")) {
        int64_t p[4] = {0, 0, 0, 0};
        onnxb_attr_ints(&c->g, n, "pads", p, 4);
    } else if (!strcmp(pad, "EXPLICIT")) {
        if (tf_attr_ilist(c->tf[i], "explicit_paddings", v, 8) != 8)
            return err_set(c->e, ERR_FORMAT, "node '%s': EXPLICIT padding needs 8 values",
                           c->tfname[i]);
        int64_t p[4] = {v[2], v[4], v[3], v[5]}; /* top, left, bottom, right */
        onnxb_attr_ints(&c->g, n, "pads", p, 4);
    } else {
        return err_set(c->e, ERR_UNSUPPORTED, "node '%s': padding '%s'", c->tfname[i], pad);
    }
    return ERR_OK;
}

static const char *to_nchw(conv *c, size_t i, const char *x)
{
    static const int64_t perm[4] = {0, 3, 1, 2};
    const char *out = onnxb_fmt(&c->g, "%s/nchw", c->tfname[i]);
    Onnx__NodeProto *n = onnxb_node(&c->g, "Transpose", out, 1, &x, out);
    onnxb_attr_ints(&c->g, n, "perm", perm, 4);
    return out;
}

static void to_nhwc(conv *c, size_t i, const char *x, const char *out)
{
    static const int64_t perm[4] = {0, 2, 3, 1};
    Onnx__NodeProto *n = onnxb_node(&c->g, "Transpose", onnxb_fmt(&c->g, "%s/nhwc", c->tfname[i]), 1, &x, out);
    onnxb_attr_ints(&c->g, n, "perm", perm, 4);
}

/* Conv2D, DepthwiseConv2dNative and their fused forms. */
static int conv_conv(conv *c, size_t i, int depthwise, int fused)
{
    const char *name = c->tfname[i];
    long in[8];
    int nin = data_inputs(c, i, in, 8), rc;
    if (nin < 0)
        return nin;
    if (nin < 2)
        return err_set(c->e, ERR_FORMAT, "node '%s': needs input and filter", name);
    if ((rc = check_nhwc(c, i)))
        return rc;
    const t2o_weight *k = const_of(c, in[1], name, "filter");
    if (!k)
        return c->e->code;
    if (k->rank != 4 || k->dtype != T2O_F32)
        return err_set(c->e, ERR_FORMAT, "node '%s': filter must be float [H,W,I,O]", name);
    int64_t kh = k->dims[0], kw = k->dims[1], ci = k->dims[2], co = k->dims[3];
    int64_t oc = depthwise ? ci * co : co, ic_per_group = depthwise ? 1 : ci;
    const float *src = k->data;
    float *W = onnxb_alloc(&c->g, sizeof(float) * k->count);
    for (int64_t h = 0; h < kh; h++)
        for (int64_t w = 0; w < kw; w++)
            for (int64_t a = 0; a < ci; a++)
                for (int64_t b = 0; b < co; b++) {
                    float v = src[((h * kw + w) * ci + a) * co + b];
                    int64_t o = depthwise ? a * co + b : b, ii = depthwise ? 0 : a;
                    W[((o * ic_per_group + ii) * kh + h) * kw + w] = v;
                }
    float *B = NULL;
    char ops[4][32];
    int nops = 0;
    const char *act = NULL;
    if (fused) {
        nops = fused_ops(c, i, ops);
        if (nops < 0)
            return nops;
        int nargs = nin - 2;
        if (nops >= 1 && !strcmp(ops[0], "BiasAdd")) {
            const t2o_weight *b = nargs >= 1 ? const_of(c, in[2], name, "bias") : NULL;
            if (!b)
                return nargs >= 1 ? c->e->code
                                  : err_set(c->e, ERR_FORMAT, "node '%s': no bias", name);
            if (b->count != (size_t)oc || b->dtype != T2O_F32)
                return err_set(c->e, ERR_FORMAT, "node '%s': bias has %zu values, want %lld",
                               name, b->count, (long long)oc);
            B = onnxb_alloc(&c->g, sizeof(float) * (size_t)oc);
            memcpy(B, b->data, sizeof(float) * (size_t)oc);
        } else if (nops >= 1 && !strcmp(ops[0], "FusedBatchNorm")) {
            /* Folded: y = (conv - mean) * scale / sqrt(var + eps) + offset. */
            const t2o_weight *bn[4];
            if (nargs < 4)
                return err_set(c->e, ERR_FORMAT, "node '%s': FusedBatchNorm needs 4 args", name);
            for (int j = 0; j < 4; j++) {
                bn[j] = const_of(c, in[2 + j], name, "batch norm argument");
                if (!bn[j])
                    return c->e->code;
                if (bn[j]->count != (size_t)oc)
                    return err_set(c->e, ERR_FORMAT, "node '%s': batch norm size mismatch", name);
            }
            double eps = tf_attr_f(c->tf[i], "epsilon", 1e-3);
            const float *sc = bn[0]->data, *off = bn[1]->data, *mean = bn[2]->data,
                        *var = bn[3]->data;
            B = onnxb_alloc(&c->g, sizeof(float) * (size_t)oc);
            size_t per = (size_t)(ic_per_group * kh * kw);
            for (int64_t o = 0; o < oc; o++) {
                double f = sc[o] / sqrt((double)var[o] + eps);
                for (size_t j = 0; j < per; j++)
                    W[(size_t)o * per + j] = (float)(W[(size_t)o * per + j] * f);
                B[o] = (float)(off[o] - mean[o] * f);
            }
        } else if (nops >= 1) {
            return err_set(c->e, ERR_UNSUPPORTED, "node '%s': unsupported fused op '%s'", name,
                           ops[0]);
        }
        if (nops >= 2)
            act = ops[1];
        if (nops > 2)
            return err_set(c->e, ERR_UNSUPPORTED, "node '%s': %d fused ops", name, nops);
    }

    const char *x = tensor_of(c, in[0]);
    if (!x)
        return c->e->code;
    const char *xt = to_nchw(c, i, x);
    const char *wname = onnxb_fmt(&c->g, "%s/W", name), *bname = onnxb_fmt(&c->g, "%s/B", name);
    int64_t wd[4] = {oc, ic_per_group, kh, kw};
    onnxb_init_tensor(&c->g, wname, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, wd, 4, W, sizeof(float) * k->count);
    if (B)
        onnxb_init_tensor(&c->g, bname, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, &oc, 1, B,
                 sizeof(float) * (size_t)oc);
    const char *cins[3] = {xt, wname, bname};
    const char *cout = onnxb_fmt(&c->g, "%s/conv", name);
    Onnx__NodeProto *n = onnxb_node(&c->g, "Conv", cout, B ? 3 : 2, cins, cout);
    int64_t ks[2] = {kh, kw};
    onnxb_attr_ints(&c->g, n, "kernel_shape", ks, 2);
    onnxb_attr_int(&c->g, n, "group", depthwise ? ci : 1);
    if ((rc = spatial_attrs(c, i, n, 1)))
        return rc;
    const char *y = cout;
    if (act) {
        const char *aout = onnxb_fmt(&c->g, "%s/act", name);
        if ((rc = emit_act(c, i, act, cout, aout)))
            return rc;
        y = aout;
    }
    to_nhwc(c, i, y, onnxb_fmt(&c->g, "%s:0", name));
    return ERR_OK;
}

static int conv_pool(conv *c, size_t i, const char *onnx_op)
{
    const char *name = c->tfname[i];
    long in[2];
    int nin = data_inputs(c, i, in, 2), rc;
    if (nin < 0)
        return nin;
    if (nin != 1)
        return err_set(c->e, ERR_FORMAT, "node '%s': pool takes one input", name);
    if ((rc = check_nhwc(c, i)))
        return rc;
    int64_t k[8];
    if (tf_attr_ilist(c->tf[i], "ksize", k, 8) != 4)
        return err_set(c->e, ERR_FORMAT, "node '%s': ksize needs 4 values", name);
    const char *x = tensor_of(c, in[0]);
    if (!x)
        return c->e->code;
    const char *xt = to_nchw(c, i, x);
    const char *pout = onnxb_fmt(&c->g, "%s/pool", name);
    Onnx__NodeProto *n = onnxb_node(&c->g, onnx_op, pout, 1, &xt, pout);
    int64_t ks[2] = {k[1], k[2]};
    onnxb_attr_ints(&c->g, n, "kernel_shape", ks, 2);
    if ((rc = spatial_attrs(c, i, n, 0)))
        return rc;
    to_nhwc(c, i, pout, onnxb_fmt(&c->g, "%s:0", name));
    return ERR_OK;
}

static int conv_matmul(conv *c, size_t i, int fused)
{
    const char *name = c->tfname[i];
    long in[4];
    int nin = data_inputs(c, i, in, 4), rc;
    if (nin < 0)
        return nin;
    if (nin < 2)
        return err_set(c->e, ERR_FORMAT, "node '%s': MatMul needs two inputs", name);
    if (tf_attr_b(c->tf[i], "transpose_a") || tf_attr_b(c->tf[i], "transpose_b"))
        return err_set(c->e, ERR_UNSUPPORTED, "node '%s': transposed MatMul", name);
    const char *a = tensor_of(c, in[0]), *b = tensor_of(c, in[1]);
    if (!a || !b)
        return c->e->code;
    const char *out = onnxb_fmt(&c->g, "%s:0", name);
    const char *mins[2] = {a, b};
    if (!fused) {
        onnxb_node(&c->g, "MatMul", name, 2, mins, out);
        return ERR_OK;
    }
    char ops[4][32];
    int nops = fused_ops(c, i, ops);
    if (nops < 0)
        return nops;
    if (nops < 1 || strcmp(ops[0], "BiasAdd") != 0 || nin < 3 || nops > 2)
        return err_set(c->e, ERR_UNSUPPORTED, "node '%s': _FusedMatMul other than BiasAdd[+act]",
                       name);
    const char *mm = onnxb_fmt(&c->g, "%s/matmul", name);
    onnxb_node(&c->g, "MatMul", mm, 2, mins, mm);
    const char *bias = tensor_of(c, in[2]);
    if (!bias)
        return c->e->code;
    const char *ains[2] = {mm, bias};
    const char *aout = nops == 2 ? onnxb_fmt(&c->g, "%s/bias", name) : out;
    onnxb_node(&c->g, "Add", onnxb_fmt(&c->g, "%s/bias", name), 2, ains, aout);
    if (nops == 2 && (rc = emit_act(c, i, ops[1], aout, out)))
        return rc;
    return ERR_OK;
}

/* Pad, Reshape, Squeeze: a data input plus an int64 initializer. */
static int conv_shape_op(conv *c, size_t i, const char *op)
{
    const char *name = c->tfname[i];
    long in[3];
    int nin = data_inputs(c, i, in, 3);
    if (nin < 0)
        return nin;
    const char *x = nin >= 1 ? tensor_of(c, in[0]) : NULL;
    if (!x)
        return nin >= 1 ? c->e->code : err_set(c->e, ERR_FORMAT, "node '%s': no input", name);
    int64_t *vals = NULL;
    int64_t n = 0;
    const char *suffix = "";
    const char *onnx_op = op;
    if (!strcmp(op, "Squeeze")) {
        int64_t d[T2O_MAX_RANK];
        int cnt = tf_attr_ilist(c->tf[i], "squeeze_dims", d, T2O_MAX_RANK);
        if (cnt < 0)
            cnt = tf_attr_ilist(c->tf[i], "axis", d, T2O_MAX_RANK);
        if (cnt > T2O_MAX_RANK)
            return err_set(c->e, ERR_FORMAT, "node '%s': too many squeeze dims", name);
        n = cnt > 0 ? cnt : 0;
        vals = onnxb_alloc(&c->g, sizeof(int64_t) * (size_t)(n ? n : 1));
        memcpy(vals, d, sizeof(int64_t) * (size_t)n);
        suffix = "axes";
    } else {
        if (nin != 2)
            return err_set(c->e, ERR_FORMAT, "node '%s' (%s): needs two inputs", name, op);
        const t2o_weight *w = const_of(c, in[1], name, !strcmp(op, "Pad") ? "paddings" : "shape");
        if (!w)
            return c->e->code;
        if (w->dtype != T2O_I32)
            return err_set(c->e, ERR_FORMAT, "node '%s': int32 constant expected", name);
        const int32_t *d = w->data;
        n = (int64_t)w->count;
        vals = onnxb_alloc(&c->g, sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!strcmp(op, "Pad")) {
            if (w->rank != 2 || w->dims[1] != 2)
                return err_set(c->e, ERR_FORMAT, "node '%s': paddings must be [rank,2]", name);
            int64_t r = w->dims[0];
            for (int64_t j = 0; j < r; j++) {
                vals[j] = d[2 * j];
                vals[r + j] = d[2 * j + 1];
            }
            suffix = "pads";
        } else {
            for (int64_t j = 0; j < n; j++)
                vals[j] = d[j];
            suffix = "shape";
        }
    }
    const char *out = onnxb_fmt(&c->g, "%s:0", name);
    if (!strcmp(op, "Squeeze") && n == 0) {
        onnxb_node(&c->g, onnx_op, name, 1, &x, out);
        return ERR_OK;
    }
    const char *cname = onnxb_fmt(&c->g, "%s/%s", name, suffix);
    onnxb_init_tensor(&c->g, cname, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, &n, 1, vals,
             sizeof(int64_t) * (size_t)n);
    const char *ins[2] = {x, cname};
    Onnx__NodeProto *node = onnxb_node(&c->g, onnx_op, name, 2, ins, out);
    if (!strcmp(op, "Pad"))
        onnxb_attr_str(&c->g, node, "mode", "constant");
    return ERR_OK;
}

static int conv_placeholder(conv *c, size_t i)
{
    json_t *a = tf_attr(c->tf[i], "dtype");
    const char *dt = a ? json_string_value(json_object_get(a, "type")) : NULL;
    if (dt && strcmp(dt, "DT_FLOAT") != 0)
        return err_set(c->e, ERR_UNSUPPORTED, "input '%s': dtype %s (only DT_FLOAT)", c->tfname[i],
                       dt);
    json_t *sh = tf_attr(c->tf[i], "shape");
    json_t *dims = sh ? json_object_get(json_object_get(sh, "shape"), "dim") : NULL, *d;
    int64_t dv[T2O_MAX_RANK];
    int rank = -1;
    if (json_is_array(dims) && json_array_size(dims) <= T2O_MAX_RANK) {
        size_t k;
        rank = (int)json_array_size(dims);
        json_array_foreach(dims, k, d) dv[k] = json_int_any(json_object_get(d, "size"));
    }
    Onnx__ValueInfoProto *v = onnxb_value(&c->g, onnxb_fmt(&c->g, "%s:0", c->tfname[i]), ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dv);
    onnxb_input(&c->g, v);
    return ERR_OK;
}

static const struct {
    const char *tf, *onnx;
} simple_ops[] = {
    {"Add", "Add"},         {"AddV2", "Add"},   {"BiasAdd", "Add"}, {"Sub", "Sub"},
    {"Mul", "Mul"},         {"RealDiv", "Div"}, {"Div", "Div"},     {"Maximum", "Max"},
    {"Minimum", "Min"},     {"Relu", "Relu"},   {"Elu", "Elu"},     {"Sigmoid", "Sigmoid"},
    {"Tanh", "Tanh"},       {"Exp", "Exp"},     {"Sqrt", "Sqrt"},   {"Neg", "Neg"},
    {"Abs", "Abs"},         {"Identity", "Identity"},
};

static int conv_simple(conv *c, size_t i, const char *onnx_op)
{
    long in[4];
    int nin = data_inputs(c, i, in, 4);
    if (nin < 0)
        return nin;
    const char *ins[4];
    for (int k = 0; k < nin; k++)
        if (!(ins[k] = tensor_of(c, in[k])))
            return c->e->code;
    Onnx__NodeProto *n = onnxb_node(&c->g, onnx_op, c->tfname[i], nin, ins,
                                  onnxb_fmt(&c->g, "%s:0", c->tfname[i]));
    if (!strcmp(onnx_op, "Softmax"))
        onnxb_attr_int(&c->g, n, "axis", -1);
    return ERR_OK;
}

static int convert_node(conv *c, size_t i)
{
    const char *op = tf_op(c->tf[i]);
    if (!strcmp(op, "Const") || !strcmp(op, "NoOp"))
        return ERR_OK;
    if (!strcmp(op, "Placeholder"))
        return conv_placeholder(c, i);
    for (size_t k = 0; k < sizeof simple_ops / sizeof *simple_ops; k++)
        if (!strcmp(op, simple_ops[k].tf))
            return conv_simple(c, i, simple_ops[k].onnx);
    if (!strcmp(op, "Softmax"))
        return conv_simple(c, i, "Softmax");
    if (!strcmp(op, "Relu6")) {
        long in[1];
        int nin = data_inputs(c, i, in, 1);
        if (nin < 0)
            return nin;
        const char *x = nin == 1 ? tensor_of(c, in[0]) : NULL;
        if (!x)
            return c->e->code ? c->e->code : err_set(c->e, ERR_FORMAT, "Relu6 without input");
        return emit_act(c, i, "Relu6", x, onnxb_fmt(&c->g, "%s:0", c->tfname[i]));
    }
    if (!strcmp(op, "Conv2D"))
        return conv_conv(c, i, 0, 0);
    if (!strcmp(op, "_FusedConv2D"))
        return conv_conv(c, i, 0, 1);
    if (!strcmp(op, "DepthwiseConv2dNative"))
        return conv_conv(c, i, 1, 0);
    if (!strcmp(op, "FusedDepthwiseConv2dNative"))
        return conv_conv(c, i, 1, 1);
    if (!strcmp(op, "AvgPool"))
        return conv_pool(c, i, "AveragePool");
    if (!strcmp(op, "MaxPool"))
        return conv_pool(c, i, "MaxPool");
    if (!strcmp(op, "MatMul"))
        return conv_matmul(c, i, 0);
    if (!strcmp(op, "_FusedMatMul"))
        return conv_matmul(c, i, 1);
    if (!strcmp(op, "Pad") || !strcmp(op, "Reshape") || !strcmp(op, "Squeeze"))
        return conv_shape_op(c, i, op);
    return err_set(c->e, ERR_UNSUPPORTED, "unsupported op '%s' at node '%s'", op, c->tfname[i]);
}

/* Post-order DFS from node `i`: converts inputs first, then the node. */
static int visit(conv *c, size_t i, int depth)
{
    if (c->state[i] == 2)
        return ERR_OK;
    if (c->state[i] == 1)
        return err_set(c->e, ERR_FORMAT, "graph has a cycle through '%s'", c->tfname[i]);
    if (depth > 100000)
        return err_set(c->e, ERR_TOOBIG, "graph too deep");
    c->state[i] = 1;
    long in[64];
    json_t *ins = json_object_get(c->tf[i], "input"), *v;
    size_t k;
    int n = 0;
    json_array_foreach(ins, k, v)
    {
        const char *ref = json_string_value(v);
        if (!ref || ref[0] == '^')
            continue; /* control edges carry no data */
        long idx = resolve_input(c, ref, c->tfname[i]);
        if (idx < 0)
            return c->e->code;
        if (n < 64)
            in[n++] = idx;
    }
    for (int j = 0; j < n; j++) {
        int rc = visit(c, (size_t)in[j], depth + 1);
        if (rc)
            return rc;
    }
    c->state[i] = 2;
    return convert_node(c, i);
}

/* Finds the node named `ref` exactly, or the unique node ending in `ref`. */
static long find_output_node(conv *c, const char *ref)
{
    size_t len = strlen(ref);
    if (len > 2 && !strcmp(ref + len - 2, ":0"))
        len -= 2;
    long idx = find_node(c, ref, len);
    if (idx >= 0)
        return idx;
    long hit = -1;
    for (size_t i = 0; i < c->nn; i++) {
        size_t nl = strlen(c->tfname[i]);
        if (nl > len && !memcmp(c->tfname[i] + nl - len, ref, len) &&
            (ref[0] == '/' || c->tfname[i][nl - len - 1] == '/')) {
            if (hit >= 0) {
                err_set(c->e, ERR_INVAL, "output '%s' matches both '%s' and '%s'", ref,
                        c->tfname[hit], c->tfname[i]);
                return -1;
            }
            hit = (long)i;
        }
    }
    if (hit < 0)
        err_set(c->e, ERR_NOENT, "output '%s' names no node", ref);
    return hit;
}

static int add_output(conv *c, const char *node_ref, const char *name, json_t *shape_dims)
{
    long idx = find_output_node(c, node_ref);
    if (idx < 0)
        return c->e->code;
    int rc = visit(c, (size_t)idx, 0);
    if (rc)
        return rc;
    const char *tensor = tensor_of(c, idx);
    if (!tensor)
        return c->e->code;
    if (!name)
        name = tensor;
    if (strcmp(name, tensor) != 0) {
        const char *in = tensor;
        onnxb_node(&c->g, "Identity", onnxb_fmt(&c->g, "%s/output", name), 1, &in, name);
    }
    int64_t dv[T2O_MAX_RANK];
    int rank = -1;
    if (json_is_array(shape_dims) && json_array_size(shape_dims) <= T2O_MAX_RANK) {
        json_t *d;
        size_t k;
        rank = (int)json_array_size(shape_dims);
        json_array_foreach(shape_dims, k, d) dv[k] = json_int_any(json_object_get(d, "size"));
    }
    Onnx__ValueInfoProto *v = onnxb_value(&c->g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dv);
    onnxb_output(&c->g, v);
    return ERR_OK;
}

static int build(conv *c, const t2o_options *o)
{
    int rc;
    json_t *outs = c->m->signature ? json_object_get(c->m->signature, "outputs") : NULL;
    const char *key;
    json_t *val;
    json_object_foreach(outs, key, val)
    {
        const char *name = json_string_value(json_object_get(val, "name"));
        if (!name)
            name = key;
        json_t *ts = json_object_get(val, "tensorShape");
        if ((rc = add_output(c, name, name, ts ? json_object_get(ts, "dim") : NULL)))
            return rc;
    }
    for (int k = 0; o && k < o->nextra; k++)
        if ((rc = add_output(c, o->extra[k].node, o->extra[k].name, NULL)))
            return rc;
    if (c->g.noutputs == 0)
        return err_set(c->e, ERR_INVAL, "model has no signature outputs; name them with --output");
    if (c->g.ninputs == 0)
        return err_set(c->e, ERR_FORMAT, "no Placeholder feeds the outputs");
    return ERR_OK;
}

int t2o_convert(const t2o_model *m, const t2o_options *o, uint8_t **out, size_t *outlen,
                err_t *e)
{
    err_t local;
    if (!e)
        e = &local;
    err_clear(e);
    if (m->nodes == NULL)
        return err_set(e, ERR_INVAL, "the model holds weights only: there is no graph to convert");
    conv c = {.m = m, .e = e};
    onnxb_init(&c.g, "N");
    c.nn = json_array_size(m->nodes);
    c.tf = xcalloc(c.nn + 1, sizeof *c.tf);
    c.tfname = xcalloc(c.nn + 1, sizeof *c.tfname);
    c.state = xcalloc(c.nn + 1, sizeof *c.state);
    c.wused = xcalloc(m->nweights + 1, 1);
    int rc = ERR_OK;
    for (size_t i = 0; i < c.nn; i++) {
        c.tf[i] = json_array_get(m->nodes, i);
        c.tfname[i] = json_string_value(json_object_get(c.tf[i], "name"));
        if (!c.tfname[i]) {
            rc = err_set(e, ERR_FORMAT, "node %zu has no name", i);
            goto out;
        }
    }
    if ((rc = build(&c, o)))
        goto out;

    onnxb_model_info info = {.graph_name = "tfjs",
                             .producer = T2O_PRODUCER,
                             .producer_version = T2O_PRODUCER_VERSION,
                             .ir_version = T2O_IR_VERSION,
                             .opset = T2O_OPSET};
    rc = onnxb_pack(&c.g, &info, out, outlen, e);
out:
    onnxb_free(&c.g);
    free(c.tf);
    free(c.tfname);
    free(c.state);
    free(c.wused);
    return rc;
}

typedef struct {
    const char *op;
    int n;
} op_count;

static int cmp_count(const void *a, const void *b)
{
    const op_count *x = a, *y = b;
    if (x->n != y->n)
        return y->n - x->n;
    return strcmp(x->op, y->op);
}

void t2o_print_histogram(const t2o_model *m, FILE *f)
{
    size_t nn = json_array_size(m->nodes), nops = 0;
    op_count *h = xcalloc(nn + 1, sizeof *h);
    for (size_t i = 0; i < nn; i++) {
        const char *op = tf_op(json_array_get(m->nodes, i));
        size_t k;
        for (k = 0; k < nops && strcmp(h[k].op, op); k++)
            ;
        if (k == nops)
            h[nops++].op = op;
        h[k].n++;
    }
    qsort(h, nops, sizeof *h, cmp_count);
    for (size_t k = 0; k < nops; k++)
        fprintf(f, "%6d %s\n", h[k].n, h[k].op);
    free(h);
}
