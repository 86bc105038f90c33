/*
 * tools/tfjs2onnx/dlibnet.c — dlib's face recognition ResNet, built as ONNX
 * from its weights alone.
 *
 * face-api ships dlib_face_recognition_resnet_model_v1 (ported to TF.js by
 * face-api.js) as a weights manifest and one shard, without a graph: the
 * network is written out in JavaScript (faceRecognitionNet/). This builder
 * reads the structure back from the weight names, which follow the network
 * layer by layer:
 *
 *   B/conv/{filters,bias} + B/scale/{weights,biases}    one conv layer
 *   B/conv1/... + B/conv2/...                            a residual block
 *   fc [C, D]                                            the final projection
 *
 * and a block whose name contains "_down" halves the resolution: its (first)
 * convolution has stride 2 and no padding (TF's VALID). The rest is dlib's
 * design as face-api runs it, which the weights cannot say:
 *
 *   - every conv layer is conv + bias, then dlib's affine "scale" layer
 *     (x * weights + biases, the frozen batch norm), then ReLU, except the
 *     second conv of a residual block, whose ReLU comes after the sum;
 *   - stride-1 convolutions pad SAME (odd pixel at the end, as TF);
 *   - the first layer is followed by a 3x3 max pool of stride 2 (VALID);
 *   - a residual block adds its input; a "_down" block adds its input
 *     average-pooled 2x2 (stride 2), zero-padded to the block's channel count,
 *     and when the strided branch came out smaller than the pooled input it
 *     gets zero rows and columns at the bottom and right (face-api concatenates
 *     zeros there), then ReLU;
 *   - the output is the mean over H and W followed by fc, no bias: the
 *     128-D descriptor, not normalised.
 *
 * Input normalisation (subtract the mean RGB, divide by 255) stays outside
 * the graph, in the model manifest, as for every other inferd model. The
 * graph is NCHW throughout, since nothing here needs TF's layout: input
 * "input" [N, 3, S, S], output "embedding" [N, D]. Each affine scale is
 * folded into its convolution (W * s, b * s + t), which is exact up to
 * float rounding. Spatial sizes are fixed by S, so the padding of a "_down"
 * block is decided while building.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxb.h"
#include "t2o.h"
#include "util/xalloc.h"

#define F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define I64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

typedef struct {
    const t2o_model *m;
    onnxb *b;
    err_t *e;
    int c, h, w; /* channels and size of the current tensor */
} dn;

static const t2o_weight *weight(dn *d, const char *block, const char *what, int rank)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", block, what);
    const t2o_weight *w = t2o_model_weight(d->m, name);
    if (w == NULL) {
        err_set(d->e, ERR_FORMAT, "weight '%s' is missing", name);
        return NULL;
    }
    if (w->rank != rank || w->dtype != T2O_F32) {
        err_set(d->e, ERR_FORMAT, "weight '%s': expected a float tensor of rank %d", name, rank);
        return NULL;
    }
    return w;
}

/* Does block `block` have a weight `what`? */
static int has(const dn *d, const char *block, const char *what)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", block, what);
    return t2o_model_weight(d->m, name) != NULL;
}

/*
 * One conv layer `layer` ("B/conv", "B/conv1/conv"... minus the "/conv"
 * suffix) on tensor `x`: Conv with the scale folded in, stride 2 VALID when
 * `down`, else stride 1 SAME, then ReLU when `relu`. Returns the output
 * tensor's name and updates d->c/h/w, or NULL with d->e set.
 */
static const char *conv_layer(dn *d, const char *layer, const char *x, int down, int relu)
{
    char conv[256], scale[256];
    snprintf(conv, sizeof conv, "%s/conv", layer);
    snprintf(scale, sizeof scale, "%s/scale", layer);
    const t2o_weight *f = weight(d, conv, "filters", 4), *bias = weight(d, conv, "bias", 1);
    const t2o_weight *sw = f ? weight(d, scale, "weights", 1) : NULL;
    const t2o_weight *sb = sw ? weight(d, scale, "biases", 1) : NULL;
    if (!f || !bias || !sw || !sb)
        return NULL;
    int64_t kh = f->dims[0], kw = f->dims[1], ci = f->dims[2], co = f->dims[3];
    if (ci != d->c || kh != kw || kh < 1 || (int64_t)bias->count != co ||
        (int64_t)sw->count != co || (int64_t)sb->count != co) {
        err_set(d->e, ERR_FORMAT,
                "%s: filters [%lld,%lld,%lld,%lld] do not fit %d input channels "
                "or the bias/scale sizes",
                layer, (long long)kh, (long long)kw, (long long)ci, (long long)co, d->c);
        return NULL;
    }
    const float *src = f->data, *bv = bias->data, *sv = sw->data, *tv = sb->data;
    float *W = onnxb_alloc(d->b, sizeof(float) * f->count);
    float *B = onnxb_alloc(d->b, sizeof(float) * (size_t)co);
    /* TF's [H, W, I, O] to ONNX's [O, I, H, W], times the scale of output o. */
    for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++)
            for (int64_t i = 0; i < ci; i++)
                for (int64_t o = 0; o < co; o++)
                    W[((o * ci + i) * kh + y) * kw + xx] =
                        src[((y * kw + xx) * ci + i) * co + o] * sv[o];
    for (int64_t o = 0; o < co; o++)
        B[o] = bv[o] * sv[o] + tv[o];
    const char *wn = onnxb_fmt(d->b, "%s/W", layer), *bn = onnxb_fmt(d->b, "%s/B", layer);
    int64_t wd[4] = {co, ci, kh, kw};
    onnxb_init_tensor(d->b, wn, F32, wd, 4, W, sizeof(float) * f->count);
    onnxb_init_tensor(d->b, bn, F32, &co, 1, B, sizeof(float) * (size_t)co);
    const char *ins[3] = {x, wn, bn};
    const char *out = onnxb_fmt(d->b, "%s/conv", layer);
    Onnx__NodeProto *n = onnxb_node(d->b, "Conv", out, 3, ins, out);
    int64_t ks[2] = {kh, kw}, st[2] = {down ? 2 : 1, down ? 2 : 1};
    onnxb_attr_ints(d->b, n, "kernel_shape", ks, 2);
    onnxb_attr_ints(d->b, n, "strides", st, 2);
    int64_t lo = down ? 0 : (kh - 1) / 2, hi = down ? 0 : kh - 1 - lo;
    int64_t pads[4] = {lo, lo, hi, hi};
    onnxb_attr_ints(d->b, n, "pads", pads, 4);
    if (down) {
        if (d->h < kh || d->w < kw) {
            err_set(d->e, ERR_INVAL, "%s: input %dx%d is smaller than the kernel", layer, d->h,
                    d->w);
            return NULL;
        }
        d->h = (int)((d->h - kh) / 2 + 1);
        d->w = (int)((d->w - kw) / 2 + 1);
    }
    d->c = (int)co;
    if (!relu)
        return out;
    const char *r = onnxb_fmt(d->b, "%s/relu", layer);
    onnxb_node(d->b, "Relu", r, 1, &out, r);
    return r;
}

/* Zero padding at the end of each axis of an NCHW tensor: `end` = {c, h, w}. */
static const char *pad_end(dn *d, const char *name, const char *x, const int64_t end[3])
{
    int64_t *p = onnxb_alloc(d->b, 8 * sizeof(int64_t));
    p[5] = end[0];
    p[6] = end[1];
    p[7] = end[2];
    int64_t eight = 8;
    const char *pn = onnxb_fmt(d->b, "%s/pads", name);
    onnxb_init_tensor(d->b, pn, I64, &eight, 1, p, 8 * sizeof(int64_t));
    const char *ins[2] = {x, pn};
    Onnx__NodeProto *n = onnxb_node(d->b, "Pad", name, 2, ins, name);
    onnxb_attr_str(d->b, n, "mode", "constant");
    return name;
}

/* A residual block `block` on `x`; `down`: the resolution-halving kind. */
static const char *residual(dn *d, const char *block, const char *x, int down)
{
    int c0 = d->c, h0 = d->h, w0 = d->w;
    char l1[256], l2[256];
    snprintf(l1, sizeof l1, "%s/conv1", block);
    snprintf(l2, sizeof l2, "%s/conv2", block);
    const char *y = conv_layer(d, l1, x, down, 1);
    y = y ? conv_layer(d, l2, y, 0, 0) : NULL;
    if (!y)
        return NULL;
    const char *sc = x;
    if (down) {
        sc = onnxb_fmt(d->b, "%s/pool", block);
        Onnx__NodeProto *n = onnxb_node(d->b, "AveragePool", sc, 1, &x, sc);
        int64_t k[2] = {2, 2};
        onnxb_attr_ints(d->b, n, "kernel_shape", k, 2);
        onnxb_attr_ints(d->b, n, "strides", k, 2);
        h0 /= 2;
        w0 /= 2;
    }
    if (d->c < c0 || d->h > h0 || d->w > w0 || (!down && (d->c != c0 || d->h != h0))) {
        err_set(d->e, ERR_FORMAT,
                "%s: the block maps %dx%dx%d to %dx%dx%d, which its shortcut "
                "cannot match",
                block, c0, h0, w0, d->c, d->h, d->w);
        return NULL;
    }
    if (d->h < h0 || d->w < w0) {
        int64_t end[3] = {0, h0 - d->h, w0 - d->w};
        y = pad_end(d, onnxb_fmt(d->b, "%s/fit", block), y, end);
        d->h = h0;
        d->w = w0;
    }
    if (d->c > c0) {
        int64_t end[3] = {d->c - c0, 0, 0};
        sc = pad_end(d, onnxb_fmt(d->b, "%s/widen", block), sc, end);
    }
    const char *ins[2] = {y, sc};
    const char *sum = onnxb_fmt(d->b, "%s/add", block);
    onnxb_node(d->b, "Add", sum, 2, ins, sum);
    const char *r = onnxb_fmt(d->b, "%s/relu", block);
    onnxb_node(d->b, "Relu", r, 1, &sum, r);
    return r;
}

/* The block names in manifest order: the text before the first '/' of each weight. */
static void block_list(const t2o_model *m, const char ***out, int *n)
{
    const char **names = xcalloc(m->nweights + 1, sizeof *names);
    int k = 0;
    for (size_t i = 0; i < m->nweights; i++) {
        const char *w = m->weights[i].name;
        size_t len = strcspn(w, "/");
        if (k > 0 && strlen(names[k - 1]) == len && !strncmp(names[k - 1], w, len))
            continue;
        char *s = xcalloc(1, len + 1);
        memcpy(s, w, len);
        names[k++] = s;
    }
    *out = names;
    *n = k;
}

int t2o_build_dlib_resnet(const t2o_model *m, int input_size, uint8_t **out, size_t *outlen,
                          err_t *e)
{
    err_t local;
    if (!e)
        e = &local;
    err_clear(e);
    if (input_size < 32 || input_size > 1024)
        return err_set(e, ERR_INVAL, "input size %d outside 32..1024", input_size);
    onnxb b;
    onnxb_init(&b, "N");
    dn d = {.m = m, .b = &b, .e = e, .c = 3, .h = input_size, .w = input_size};
    const char **blocks = NULL;
    int nblocks = 0, rc = ERR_OK;
    block_list(m, &blocks, &nblocks);
    const char *x = "input", *fc = NULL;
    for (int i = 0; i < nblocks && x != NULL; i++) {
        const char *blk = blocks[i];
        int down = strstr(blk, "_down") != NULL;
        if (!strcmp(blk, "fc") && i == nblocks - 1) {
            fc = blk;
        } else if (has(&d, blk, "conv/filters") && i == 0) {
            /* The input stage: conv, then 3x3/2 max pooling. */
            x = conv_layer(&d, blk, x, down, 1);
            if (x == NULL)
                break;
            if (d.h < 3 || d.w < 3) {
                rc = err_set(e, ERR_INVAL, "%s: output %dx%d too small to pool", blk, d.h, d.w);
                break;
            }
            const char *p = onnxb_fmt(&b, "%s/maxpool", blk);
            Onnx__NodeProto *n = onnxb_node(&b, "MaxPool", p, 1, &x, p);
            int64_t k[2] = {3, 3}, s[2] = {2, 2};
            onnxb_attr_ints(&b, n, "kernel_shape", k, 2);
            onnxb_attr_ints(&b, n, "strides", s, 2);
            d.h = (d.h - 3) / 2 + 1;
            d.w = (d.w - 3) / 2 + 1;
            x = p;
        } else if (has(&d, blk, "conv1/conv/filters") && has(&d, blk, "conv2/conv/filters") &&
                   i > 0) {
            x = residual(&d, blk, x, down);
        } else {
            rc = err_set(e, ERR_FORMAT,
                         "block '%s' (#%d) is neither the input layer, a residual block nor the "
                         "final fc: not dlib's face recognition ResNet",
                         blk, i);
            break;
        }
    }
    if (rc == ERR_OK && x == NULL)
        rc = e->code;
    if (rc == ERR_OK && fc == NULL)
        rc = err_set(e, ERR_FORMAT, "no final 'fc' weight");
    const t2o_weight *fw = rc == ERR_OK ? t2o_model_weight(m, "fc") : NULL;
    if (rc == ERR_OK && (fw->rank != 2 || fw->dtype != T2O_F32 || fw->dims[0] != d.c))
        rc = err_set(e, ERR_FORMAT, "fc must be a float [%d, D] matrix", d.c);
    if (rc == ERR_OK) {
        const char *gap = "pool/global", *flat = "pool/flat";
        onnxb_node(&b, "GlobalAveragePool", gap, 1, &x, gap);
        onnxb_attr_int(&b, onnxb_node(&b, "Flatten", flat, 1, &gap, flat), "axis", 1);
        onnxb_init_tensor(&b, "fc", F32, fw->dims, 2, fw->data, sizeof(float) * fw->count);
        const char *mm[2] = {flat, "fc"};
        onnxb_node(&b, "MatMul", "fc/matmul", 2, mm, "embedding");
        int64_t in_dims[4] = {-1, 3, input_size, input_size}, out_dims[2] = {-1, fw->dims[1]};
        onnxb_input(&b, onnxb_value(&b, "input", F32, 4, in_dims));
        onnxb_output(&b, onnxb_value(&b, "embedding", F32, 2, out_dims));
        onnxb_model_info info = {.graph_name = "dlib_face_recognition_resnet",
                                 .producer = "inferd-tfjs2onnx",
                                 .producer_version = "0.1.0",
                                 .ir_version = 8,
                                 .opset = 13};
        rc = onnxb_pack(&b, &info, out, outlen, e);
    }
    for (int i = 0; i < nblocks; i++)
        free((char *)blocks[i]);
    free(blocks);
    onnxb_free(&b);
    return rc;
}
