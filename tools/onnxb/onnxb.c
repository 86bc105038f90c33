/*
 * tools/onnxb/onnxb.c — the ONNX graph builder behind onnxb.h. Everything is
 * allocated through one list and released together; arrays of the graph grow
 * by doubling.
 */
#include "onnxb.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

void onnxb_init(onnxb *b, const char *batch_param)
{
    memset(b, 0, sizeof *b);
    b->batch_param = batch_param;
}

void onnxb_free(onnxb *b)
{
    for (size_t i = 0; i < b->nallocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    free(b->nodes);
    free(b->inits);
    free(b->inputs);
    free(b->outputs);
    const char *bp = b->batch_param;
    memset(b, 0, sizeof *b);
    b->batch_param = bp;
}

void *onnxb_alloc(onnxb *b, size_t n)
{
    if (b->nallocs == b->capallocs) {
        b->capallocs = b->capallocs ? b->capallocs * 2 : 256;
        b->allocs = xrealloc(b->allocs, b->capallocs * sizeof *b->allocs);
    }
    void *p = xcalloc(1, n ? n : 1);
    b->allocs[b->nallocs++] = p;
    return p;
}

char *onnxb_fmt(onnxb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = onnxb_alloc(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Appends `item` to a growing pointer array. */
static void push(void ***arr, size_t *n, size_t *cap, void *item)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *arr = xrealloc(*arr, *cap * sizeof **arr);
    }
    (*arr)[(*n)++] = item;
}

Onnx__NodeProto *onnxb_node(onnxb *b, const char *op, const char *name, int nin,
                            const char *const *in, const char *out)
{
    Onnx__NodeProto *n = onnxb_alloc(b, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = onnxb_fmt(b, "%s", op);
    n->name = onnxb_fmt(b, "%s", name);
    n->n_input = (size_t)nin;
    n->input = onnxb_alloc(b, sizeof(char *) * (size_t)(nin ? nin : 1));
    for (int i = 0; i < nin; i++)
        n->input[i] = onnxb_fmt(b, "%s", in[i]);
    n->n_output = 1;
    n->output = onnxb_alloc(b, sizeof(char *));
    n->output[0] = onnxb_fmt(b, "%s", out);
    push((void ***)&b->nodes, &b->nnodes, &b->capnodes, n);
    return n;
}

static Onnx__AttributeProto *add_attr(onnxb *b, Onnx__NodeProto *n, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = onnxb_alloc(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = onnxb_fmt(b, "%s", name);
    a->has_type = 1;
    a->type = type;
    Onnx__AttributeProto **arr = onnxb_alloc(b, sizeof *arr * (n->n_attribute + 1));
    if (n->n_attribute)
        memcpy(arr, n->attribute, sizeof *arr * n->n_attribute);
    arr[n->n_attribute++] = a;
    n->attribute = arr;
    return a;
}

void onnxb_attr_int(onnxb *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

void onnxb_attr_float(onnxb *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = add_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

void onnxb_attr_ints(onnxb *b, Onnx__NodeProto *n, const char *name, const int64_t *v, int cnt)
{
    Onnx__AttributeProto *a = add_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)cnt;
    a->ints = onnxb_alloc(b, sizeof(int64_t) * (size_t)(cnt ? cnt : 1));
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)cnt);
}

void onnxb_attr_str(onnxb *b, Onnx__NodeProto *n, const char *name, const char *s)
{
    Onnx__AttributeProto *a = add_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)onnxb_fmt(b, "%s", s);
    a->s.len = strlen(s);
}

void onnxb_init_tensor(onnxb *b, const char *name, int dtype, const int64_t *dims, int rank,
                       const void *data, size_t nbytes)
{
    Onnx__TensorProto *t = onnxb_alloc(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = onnxb_fmt(b, "%s", name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)rank;
    t->dims = onnxb_alloc(b, sizeof(int64_t) * (size_t)(rank ? rank : 1));
    if (rank)
        memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
    t->has_raw_data = 1;
    t->raw_data.data = (uint8_t *)data;
    t->raw_data.len = nbytes;
    push((void ***)&b->inits, &b->ninits, &b->capinits, t);
}

Onnx__ValueInfoProto *onnxb_value(onnxb *b, const char *name, int elem, int rank,
                                  const int64_t *dims)
{
    Onnx__ValueInfoProto *v = onnxb_alloc(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = onnxb_fmt(b, "%s", name);
    Onnx__TypeProto *tp = onnxb_alloc(b, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = onnxb_alloc(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    if (rank >= 0) {
        Onnx__TensorShapeProto *sp = onnxb_alloc(b, sizeof *sp);
        onnx__tensor_shape_proto__init(sp);
        sp->n_dim = (size_t)rank;
        sp->dim = onnxb_alloc(b, sizeof *sp->dim * (size_t)(rank ? rank : 1));
        for (int i = 0; i < rank; i++) {
            Onnx__TensorShapeProto__Dimension *d = onnxb_alloc(b, sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[i];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = onnxb_fmt(b, "%s", b->batch_param ? b->batch_param : "N");
            }
            sp->dim[i] = d;
        }
        tt->shape = sp;
    }
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

void onnxb_input(onnxb *b, Onnx__ValueInfoProto *v)
{
    push((void ***)&b->inputs, &b->ninputs, &b->capinputs, v);
}

void onnxb_output(onnxb *b, Onnx__ValueInfoProto *v)
{
    push((void ***)&b->outputs, &b->noutputs, &b->capoutputs, v);
}

int onnxb_pack(const onnxb *b, const onnxb_model_info *info, uint8_t **out, size_t *outlen,
               err_t *e)
{
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    g.name = (char *)info->graph_name;
    g.n_node = b->nnodes;
    g.node = b->nodes;
    g.n_initializer = b->ninits;
    g.initializer = b->inits;
    g.n_input = b->ninputs;
    g.input = b->inputs;
    g.n_output = b->noutputs;
    g.output = b->outputs;
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    ops.domain = "";
    ops.has_version = 1;
    ops.version = info->opset;
    Onnx__OperatorSetIdProto *opsp = &ops;
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    mp.has_ir_version = 1;
    mp.ir_version = info->ir_version;
    mp.n_opset_import = 1;
    mp.opset_import = &opsp;
    mp.producer_name = (char *)info->producer;
    mp.producer_version = (char *)info->producer_version;
    mp.graph = &g;
    size_t n = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return err_set(e, ERR_NOMEM, "cannot allocate %zu bytes for the ONNX model", n);
    if (onnx__model_proto__pack(&mp, buf) != n) {
        free(buf);
        return err_set(e, ERR_INTERNAL, "protobuf-c packed an unexpected size");
    }
    *out = buf;
    *outlen = n;
    return ERR_OK;
}

int onnxb_write_file(onnxb *b, const char *graph_name, const char *tool, const char *path)
{
    char producer[64];
    snprintf(producer, sizeof producer, "inferd-%s", tool);
    onnxb_model_info info = {.graph_name = graph_name,
                             .producer = producer,
                             .producer_version = "1",
                             .ir_version = 8,
                             .opset = 13};
    uint8_t *buf = NULL;
    size_t n = 0;
    err_t e = {0};
    int ok = onnxb_pack(b, &info, &buf, &n, &e) == ERR_OK;
    onnxb_free(b);
    if (!ok) {
        fprintf(stderr, "%s: %s\n", tool, e.msg);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    ok = f != NULL && fwrite(buf, 1, n, f) == n;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    free(buf);
    if (!ok)
        fprintf(stderr, "%s: cannot write %s: %s\n", tool, path, strerror(errno));
    return ok ? 0 : -1;
}

float onnxb_rand(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    uint64_t v = *state * 2685821657736338717ull;
    return (float)((double)(v >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}
