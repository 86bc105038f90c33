/*
 * tests/unit/tfjs2onnx_test.c — unit tests of the TF.js -> ONNX converter
 * (tools/tfjs2onnx): JS-literal unwrapping, base64, weight dequantisation,
 * float16, the op mapping of a small hand-built graph checked by unpacking the
 * produced ModelProto, and the unknown-op error. Not named test_*.c because
 * it links the converter's sources, which inferd_core does not contain; see
 * tests/tfjs2onnx.cmake.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "onnx.pb-c.h"
#include "t2o.h"

static void test_js_literal(void **state)
{
    (void)state;
    const char *js = "{a:1,'b':.5,c:-.1,d:!0,e:!1,f:[1,2,],g:\"x\\\"y\",h:{i:'z\\'s'},"
                     "j:5.,k:1e-3,l:void 0,$m:007} trailing junk";
    char *json = NULL;
    size_t used = 0;
    err_t e = {0};
    assert_int_equal(t2o_js_to_json(js, strlen(js), &used, &json, &e), ERR_OK);
    assert_string_equal(js + used, " trailing junk");
    json_error_t je;
    json_t *v = json_loads(json, 0, &je);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    assert_true(json_real_value(json_object_get(v, "b")) == 0.5);
    assert_true(json_real_value(json_object_get(v, "c")) == -0.1);
    assert_true(json_is_true(json_object_get(v, "d")));
    assert_true(json_is_false(json_object_get(v, "e")));
    assert_int_equal(json_array_size(json_object_get(v, "f")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "g")), "x\"y");
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "h"), "i")), "z's");
    assert_true(json_number_value(json_object_get(v, "j")) == 5.0);
    assert_true(json_real_value(json_object_get(v, "k")) == 1e-3);
    assert_true(json_is_null(json_object_get(v, "l")));
    assert_int_equal(json_integer_value(json_object_get(v, "$m")), 7);
    json_decref(v);
    free(json);

    assert_int_equal(t2o_js_to_json("{a:foo()}", 9, NULL, &json, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "byte"));
}

static void test_js_find_export(void **state)
{
    (void)state;
    const char *w = "!function(t){if(\"object\"==typeof exports&&1)module.exports=t();}"
                    "({1:[function(i,m,h){m.exports=\"QUJD\"},{}]})";
    size_t off = 0;
    err_t e = {0};
    assert_int_equal(t2o_js_find_export(w, strlen(w), &off, &e), ERR_OK);
    assert_int_equal(w[off], '"');
    assert_int_equal(strncmp(w + off, "\"QUJD\"", 6), 0);
    assert_int_equal(t2o_js_find_export("var x = 1;", 10, &off, &e), ERR_FORMAT);
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t n = 0;
    err_t e = {0};
    assert_int_equal(t2o_base64_decode("TkhXQw==", 8, &out, &n, &e), ERR_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "NHWC", 4);
    free(out);
    assert_int_equal(t2o_base64_decode("U0FN\nRQ", 7, &out, &n, &e), ERR_OK); /* no padding */
    assert_int_equal(n, 4);
    assert_memory_equal(out, "SAME", 4);
    free(out);
    assert_int_equal(t2o_base64_decode("/_-+", 4, &out, &n, &e), ERR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(out[2], 0xbe);
    free(out);
    assert_int_equal(t2o_base64_decode("QU*D", 4, &out, &n, &e), ERR_FORMAT);
    assert_int_equal(t2o_base64_decode("QUJDQ", 5, &out, &n, &e), ERR_FORMAT);
}

static void test_f16(void **state)
{
    (void)state;
    assert_true(t2o_f16_to_f32(0x3c00) == 1.0f);
    assert_true(t2o_f16_to_f32(0xc000) == -2.0f);
    assert_true(t2o_f16_to_f32(0x3555) > 0.3332f && t2o_f16_to_f32(0x3555) < 0.3334f);
    assert_true(t2o_f16_to_f32(0x0001) == 0x1p-24f); /* smallest subnormal */
    assert_true(t2o_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(t2o_f16_to_f32(0x0000) == 0.0f);
    assert_true(isinf(t2o_f16_to_f32(0x7c00)));
    assert_true(isnan(t2o_f16_to_f32(0x7e00)));
}

static void test_dequantise(void **state)
{
    (void)state;
    const char *manifest =
        "[{\"name\":\"q8\",\"shape\":[3],\"dtype\":\"float32\","
        "\"quantization\":{\"dtype\":\"uint8\",\"min\":-1,\"scale\":0.5}},"
        "{\"name\":\"q16\",\"shape\":[2],\"dtype\":\"float32\","
        "\"quantization\":{\"dtype\":\"uint16\",\"min\":10,\"scale\":0.25}},"
        "{\"name\":\"h\",\"shape\":[1],\"dtype\":\"float32\",\"quantization\":{\"dtype\":\"float16\"}},"
        "{\"name\":\"i\",\"shape\":[1,1],\"dtype\":\"int32\"}]";
    uint8_t buf[] = {0, 2, 4, /* q8 */ 4, 0, 0, 1, /* q16: 4, 256 */ 0x00, 0xc0, /* -2.0 */
                     0xfe,    0xff, 0xff, 0xff /* -2 */};
    json_error_t je;
    json_t *ents = json_loads(manifest, 0, &je);
    assert_non_null(ents);
    t2o_model m = {0};
    err_t e = {0};
    assert_int_equal(t2o_weights_decode(&m, ents, buf, sizeof buf, &e), ERR_OK);
    const t2o_weight *w = t2o_model_weight(&m, "q8");
    assert_non_null(w);
    const float *f = w->data;
    assert_true(f[0] == -1.0f && f[1] == 0.0f && f[2] == 1.0f);
    f = t2o_model_weight(&m, "q16")->data;
    assert_true(f[0] == 11.0f && f[1] == 74.0f);
    f = t2o_model_weight(&m, "h")->data;
    assert_true(f[0] == -2.0f);
    w = t2o_model_weight(&m, "i");
    assert_int_equal(w->dtype, T2O_I32);
    assert_int_equal(w->rank, 2);
    assert_int_equal(((const int32_t *)w->data)[0], -2);
    t2o_model_free(&m);

    /* One byte short: a clear error, not a read past the buffer. */
    assert_int_equal(t2o_weights_decode(&m, ents, buf, sizeof buf - 1, &e), ERR_FORMAT);
    assert_non_null(strstr(e.msg, "'i'"));
    t2o_model_free(&m);
    json_decref(ents);
}

/* x[-1,4,4,2] -> Conv2D 3x3x2x3 stride 2 SAME -> Relu6 -> Reshape [-1,12]. */
static const char tiny_model[] =
    "{\"signature\":{\"inputs\":{\"x:0\":{\"name\":\"x:0\"}},"
    "  \"outputs\":{\"r:0\":{\"name\":\"r:0\",\"tensorShape\":{\"dim\":[{\"size\":\"-1\"},"
    "{\"size\":\"12\"}]}}}},"
    "\"modelTopology\":{\"node\":["
    "{\"name\":\"r\",\"op\":\"Reshape\",\"input\":[\"act\",\"shape\"]},"
    "{\"name\":\"x\",\"op\":\"Placeholder\",\"attr\":{\"dtype\":{\"type\":\"DT_FLOAT\"},"
    "  \"shape\":{\"shape\":{\"dim\":[{\"size\":\"-1\"},{\"size\":\"4\"},{\"size\":\"4\"},"
    "{\"size\":\"2\"}]}}}},"
    "{\"name\":\"w\",\"op\":\"Const\"},"
    "{\"name\":\"shape\",\"op\":\"Const\"},"
    "{\"name\":\"conv\",\"op\":\"%s\",\"input\":[\"x\",\"w\",\"^x\"],\"attr\":{"
    "  \"strides\":{\"list\":{\"i\":[\"1\",\"2\",\"2\",\"1\"]}},"
    "  \"padding\":{\"s\":\"U0FNRQ==\"},\"data_format\":{\"s\":\"TkhXQw==\"}}},"
    "{\"name\":\"act\",\"op\":\"Relu6\",\"input\":[\"conv:0\"]}"
    "]},"
    "\"weightsManifest\":[{\"paths\":[],\"weights\":["
    "{\"name\":\"w\",\"shape\":[3,3,2,3],\"dtype\":\"float32\"},"
    "{\"name\":\"shape\",\"shape\":[2],\"dtype\":\"int32\"}]}]}";

static int build_tiny(t2o_model *m, const char *conv_op, err_t *e)
{
    char text[sizeof tiny_model + 64];
    snprintf(text, sizeof text, tiny_model, conv_op);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    assert_non_null(root);
    int rc = t2o_model_init(m, root, e);
    json_decref(root);
    if (rc)
        return rc;
    uint8_t buf[54 * 4 + 8];
    float w[54];
    for (int i = 0; i < 54; i++)
        w[i] = (float)i; /* HWIO index as value */
    int32_t shape[2] = {-1, 12};
    memcpy(buf, w, sizeof w);
    memcpy(buf + sizeof w, shape, sizeof shape);
    json_t *ents = json_object_get(json_array_get(json_object_get(m->root, "weightsManifest"), 0),
                                   "weights");
    return t2o_weights_decode(m, ents, buf, sizeof buf, e);
}

static const Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name))
            return g->initializer[i];
    return NULL;
}

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (!strcmp(n->attribute[i]->name, name))
            return n->attribute[i];
    return NULL;
}

static void test_tiny_graph(void **state)
{
    (void)state;
    t2o_model m;
    err_t e = {0};
    assert_int_equal(build_tiny(&m, "Conv2D", &e), ERR_OK);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t n = 0, n2 = 0;
    assert_int_equal(t2o_convert(&m, NULL, &buf, &n, &e), ERR_OK);
    assert_int_equal(t2o_convert(&m, NULL, &buf2, &n2, &e), ERR_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n); /* deterministic */
    free(buf2);

    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(mp);
    assert_int_equal(mp->ir_version, 8);
    assert_int_equal(mp->n_opset_import, 1);
    assert_int_equal(mp->opset_import[0]->version, 13);
    assert_string_equal(mp->producer_name, "inferd-tfjs2onnx");
    const Onnx__GraphProto *g = mp->graph;
    assert_int_equal(g->n_input, 1);
    assert_string_equal(g->input[0]->name, "x:0");
    const Onnx__TensorShapeProto *sh = g->input[0]->type->tensor_type->shape;
    assert_int_equal(sh->n_dim, 4);
    assert_int_equal(sh->dim[0]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    assert_int_equal(sh->dim[3]->dim_value, 2); /* NHWC kept */
    assert_int_equal(g->n_output, 1);
    assert_string_equal(g->output[0]->name, "r:0");

    static const char *const ops[] = {"Transpose", "Conv", "Transpose", "Clip", "Reshape"};
    assert_int_equal(g->n_node, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(g->node[i]->op_type, ops[i]);
    assert_string_equal(g->node[0]->input[0], "x:0");
    assert_string_equal(g->node[4]->output[0], "r:0");
    const Onnx__AttributeProto *perm = find_attr(g->node[0], "perm");
    assert_non_null(perm);
    assert_int_equal(perm->ints[1], 3);
    const Onnx__NodeProto *c = g->node[1];
    const Onnx__AttributeProto *a = find_attr(c, "auto_pad");
    assert_non_null(a);
    assert_int_equal(a->s.len, 10);
    assert_memory_equal(a->s.data, "SAME_UPPER", 10);
    a = find_attr(c, "strides");
    assert_int_equal(a->n_ints, 2);
    assert_int_equal(a->ints[0], 2);
    assert_int_equal(find_attr(c, "group")->i, 1);

    /* OIHW: W[o][i][h][w] == HWIO value ((h*3+w)*2+i)*3+o. */
    const Onnx__TensorProto *w = find_init(g, c->input[1]);
    assert_non_null(w);
    assert_int_equal(w->n_dims, 4);
    assert_int_equal(w->dims[0], 3);
    assert_int_equal(w->dims[1], 2);
    const float *wd = (const float *)w->raw_data.data;
    int o = 2, i = 1, h = 1, x = 2;
    assert_true(wd[((o * 2 + i) * 3 + h) * 3 + x] == (float)(((h * 3 + x) * 2 + i) * 3 + o));

    const Onnx__TensorProto *s = find_init(g, g->node[4]->input[1]);
    assert_non_null(s);
    assert_int_equal(s->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    assert_int_equal(s->raw_data.len, 16);
    int64_t sv[2];
    memcpy(sv, s->raw_data.data, 16);
    assert_true(sv[0] == -1 && sv[1] == 12);
    assert_string_equal(g->node[3]->input[1], "t2o/zero");
    assert_non_null(find_init(g, "t2o/six"));

    onnx__model_proto__free_unpacked(mp, NULL);
    free(buf);
    t2o_model_free(&m);
}

static void test_depthwise(void **state)
{
    (void)state;
    t2o_model m;
    err_t e = {0};
    /* The same filter read as depthwise [3,3,C=2,M=3]: 6 output channels, group 2. */
    assert_int_equal(build_tiny(&m, "DepthwiseConv2dNative", &e), ERR_OK);
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(t2o_convert(&m, NULL, &buf, &n, &e), ERR_OK);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(mp);
    const Onnx__NodeProto *c = mp->graph->node[1];
    assert_int_equal(find_attr(c, "group")->i, 2);
    const Onnx__TensorProto *w = find_init(mp->graph, c->input[1]);
    assert_int_equal(w->dims[0], 6);
    assert_int_equal(w->dims[1], 1);
    const float *wd = (const float *)w->raw_data.data;
    int ch = 1, mm = 2, h = 2, x = 0; /* output channel ch*3+mm */
    assert_true(wd[((ch * 3 + mm) * 3 + h) * 3 + x] == (float)(((h * 3 + x) * 2 + ch) * 3 + mm));
    onnx__model_proto__free_unpacked(mp, NULL);
    free(buf);
    t2o_model_free(&m);
}

static void test_unknown_op(void **state)
{
    (void)state;
    t2o_model m;
    err_t e = {0};
    assert_int_equal(build_tiny(&m, "FancyConv3000", &e), ERR_OK);
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(t2o_convert(&m, NULL, &buf, &n, &e), ERR_UNSUPPORTED);
    assert_null(buf);
    assert_non_null(strstr(e.msg, "'FancyConv3000'"));
    assert_non_null(strstr(e.msg, "'conv'"));
    t2o_model_free(&m);
}

/*
 * A weights-only model shaped like dlib's face recognition ResNet, small:
 * stem "c4_down" (3x3, 3->4), residual "c4_1", "_down" residual "c8_down"
 * (4->8), fc [8, 5]. Weights listed in `skip` are left out; `fc_rows` sets
 * fc's first dimension. Every weight holds 0.01 * its index within its
 * tensor, the scale weights 1 + that.
 */
static int build_dlib(t2o_model *m, const char *skip, int fc_rows, err_t *e)
{
    static const struct {
        const char *name;
        int rank, dims[4];
    } ws[] = {
        {"c4_down/conv/filters", 4, {3, 3, 3, 4}}, {"c4_down/conv/bias", 1, {4}},
        {"c4_down/scale/weights", 1, {4}},         {"c4_down/scale/biases", 1, {4}},
        {"c4_1/conv1/conv/filters", 4, {3, 3, 4, 4}}, {"c4_1/conv1/conv/bias", 1, {4}},
        {"c4_1/conv1/scale/weights", 1, {4}},      {"c4_1/conv1/scale/biases", 1, {4}},
        {"c4_1/conv2/conv/filters", 4, {3, 3, 4, 4}}, {"c4_1/conv2/conv/bias", 1, {4}},
        {"c4_1/conv2/scale/weights", 1, {4}},      {"c4_1/conv2/scale/biases", 1, {4}},
        {"c8_down/conv1/conv/filters", 4, {3, 3, 4, 8}}, {"c8_down/conv1/conv/bias", 1, {8}},
        {"c8_down/conv1/scale/weights", 1, {8}},   {"c8_down/conv1/scale/biases", 1, {8}},
        {"c8_down/conv2/conv/filters", 4, {3, 3, 8, 8}}, {"c8_down/conv2/conv/bias", 1, {8}},
        {"c8_down/conv2/scale/weights", 1, {8}},   {"c8_down/conv2/scale/biases", 1, {8}},
        {"fc", 2, {8, 5}},
    };
    memset(m, 0, sizeof *m);
    json_t *ents = json_array();
    size_t total = 0;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        if (skip != NULL && strcmp(ws[i].name, skip) == 0)
            continue;
        json_t *shape = json_array();
        size_t count = 1;
        for (int d = 0; d < ws[i].rank; d++) {
            int v = !strcmp(ws[i].name, "fc") && d == 0 ? fc_rows : ws[i].dims[d];
            json_array_append_new(shape, json_integer(v));
            count *= (size_t)v;
        }
        json_array_append_new(ents, json_pack("{s:s, s:o, s:s}", "name", ws[i].name, "shape",
                                              shape, "dtype", "float32"));
        total += count;
    }
    float *buf = malloc(total * sizeof(float));
    size_t off = 0;
    for (size_t i = 0; i < json_array_size(ents); i++) {
        json_t *ent = json_array_get(ents, i);
        size_t count = 1;
        json_t *d;
        size_t k;
        json_array_foreach(json_object_get(ent, "shape"), k, d)
        {
            count *= (size_t)json_integer_value(d);
        }
        const char *name = json_string_value(json_object_get(ent, "name"));
        int scale = strstr(name, "scale/weights") != NULL;
        for (size_t j = 0; j < count; j++)
            buf[off + j] = (scale ? 1.0f : 0.0f) + 0.01f * (float)j;
        off += count;
    }
    m->root = json_array();
    int rc = t2o_weights_decode(m, ents, (const uint8_t *)buf, total * sizeof(float), e);
    json_decref(ents);
    free(buf);
    return rc;
}

static int count_op(const Onnx__GraphProto *g, const char *op)
{
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++)
        n += !strcmp(g->node[i]->op_type, op);
    return n;
}

static const Onnx__NodeProto *node_named(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_node; i++)
        if (!strcmp(g->node[i]->name, name))
            return g->node[i];
    return NULL;
}

/*
 * dlibnet: the structure read from the weight names (input 36: the stem's
 * valid 3x3/2 gives 17, max pool 8; "c8_down" gives 3 beside an average pool
 * of 4, so its branch is padded by one row and column, and its shortcut by
 * 4 channels), the scale folded into the convolution, NCHW in and out, and
 * the errors that name what does not fit.
 */
static void test_dlib_resnet(void **state)
{
    (void)state;
    t2o_model m;
    err_t e = {0};
    assert_int_equal(build_dlib(&m, NULL, 8, &e), ERR_OK);
    assert_null(m.nodes);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t n = 0, n2 = 0;
    assert_int_equal(t2o_build_dlib_resnet(&m, 36, &buf, &n, &e), ERR_OK);
    assert_int_equal(t2o_build_dlib_resnet(&m, 36, &buf2, &n2, &e), ERR_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n); /* deterministic */
    free(buf2);
    /* A graph converter refuses weights alone. */
    assert_int_equal(t2o_convert(&m, NULL, &buf2, &n2, &e), ERR_INVAL);

    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(mp);
    const Onnx__GraphProto *g = mp->graph;
    assert_string_equal(g->input[0]->name, "input");
    const Onnx__TensorShapeProto *sh = g->input[0]->type->tensor_type->shape;
    assert_int_equal(sh->dim[1]->dim_value, 3); /* NCHW */
    assert_int_equal(sh->dim[3]->dim_value, 36);
    assert_string_equal(g->output[0]->name, "embedding");
    assert_int_equal(g->output[0]->type->tensor_type->shape->dim[1]->dim_value, 5);
    assert_int_equal(count_op(g, "Conv"), 5);
    assert_int_equal(count_op(g, "MaxPool"), 1);
    assert_int_equal(count_op(g, "AveragePool"), 1);
    assert_int_equal(count_op(g, "Add"), 2);
    assert_int_equal(count_op(g, "Pad"), 2);
    assert_int_equal(count_op(g, "GlobalAveragePool"), 1);

    const Onnx__NodeProto *stem = node_named(g, "c4_down/conv");
    assert_non_null(stem);
    assert_int_equal(find_attr(stem, "strides")->ints[0], 2);
    assert_int_equal(find_attr(stem, "pads")->ints[0], 0);
    const Onnx__NodeProto *same = node_named(g, "c4_1/conv1/conv");
    assert_int_equal(find_attr(same, "strides")->ints[0], 1);
    assert_int_equal(find_attr(same, "pads")->ints[0], 1);
    /* Folded: W'[o][i][h][w] = W_hwio * s[o], B'[o] = b[o] s[o] + t[o]. */
    const Onnx__TensorProto *w = find_init(g, stem->input[1]), *b = find_init(g, stem->input[2]);
    const float *wd = (const float *)w->raw_data.data, *bd = (const float *)b->raw_data.data;
    int o = 3, i = 2, h = 1, x = 2;
    float so = 1.0f + 0.01f * (float)o;
    assert_true(fabsf(wd[((o * 3 + i) * 3 + h) * 3 + x] -
                      0.01f * (float)(((h * 3 + x) * 3 + i) * 4 + o) * so) < 1e-6f);
    assert_true(fabsf(bd[o] - (0.01f * (float)o * so + 0.01f * (float)o)) < 1e-6f);
    /* The "_down" block: branch padded at the end of H and W, shortcut by 4 channels. */
    const Onnx__NodeProto *fit = node_named(g, "c8_down/fit");
    const Onnx__NodeProto *widen = node_named(g, "c8_down/widen");
    assert_non_null(fit);
    assert_non_null(widen);
    int64_t pads[8];
    memcpy(pads, find_init(g, fit->input[1])->raw_data.data, sizeof pads);
    assert_true(pads[5] == 0 && pads[6] == 1 && pads[7] == 1 && pads[1] == 0);
    memcpy(pads, find_init(g, widen->input[1])->raw_data.data, sizeof pads);
    assert_true(pads[5] == 4 && pads[6] == 0 && pads[7] == 0);
    onnx__model_proto__free_unpacked(mp, NULL);
    free(buf);
    t2o_model_free(&m);

    /* Errors name the weight or block. */
    static const struct {
        const char *skip;
        int fc_rows, size, rc;
        const char *msg;
    } bad[] = {
        {"c4_1/conv2/scale/biases", 8, 36, ERR_FORMAT, "c4_1/conv2/scale/biases"},
        {"c4_down/conv/filters", 8, 36, ERR_FORMAT, "c4_down"},
        {NULL, 7, 36, ERR_FORMAT, "fc"},
        {NULL, 8, 16, ERR_INVAL, "input size"},
        {"fc", 8, 36, ERR_FORMAT, "fc"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(build_dlib(&m, bad[k].skip, bad[k].fc_rows, &e), ERR_OK);
        buf = NULL;
        assert_int_equal(t2o_build_dlib_resnet(&m, bad[k].size, &buf, &n, &e), bad[k].rc);
        assert_null(buf);
        if (strstr(e.msg, bad[k].msg) == NULL)
            fail_msg("case %zu: \"%s\" does not name %s", k, e.msg, bad[k].msg);
        t2o_model_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_js_literal), cmocka_unit_test(test_js_find_export),
        cmocka_unit_test(test_base64),     cmocka_unit_test(test_f16),
        cmocka_unit_test(test_dequantise), cmocka_unit_test(test_tiny_graph),
        cmocka_unit_test(test_depthwise),  cmocka_unit_test(test_unknown_op),
        cmocka_unit_test(test_dlib_resnet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
