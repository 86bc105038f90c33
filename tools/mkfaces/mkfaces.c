/*
 * tools/mkfaces/mkfaces.c — writes a small model directory in the layout of
 * Immich's facial-recognition packs (buffalo_l: an SCRFD detector and an
 * ArcFace recognizer, see src/infer/insightface.h), for tests of the
 * insightface loader, SCRFD decoding and five-point alignment (no real
 * insightface weights can be fetched on the build machines).
 *
 *   OUT/detection/model.onnx    input "input.1" float [1,3,640,640] ([1,3,height,width]
 *                               with --dynamic); 9 outputs, in this order, named like
 *                               insightface's exports ("448", "471", "494", "451", ...):
 *                               scores of strides 8, 16, 32 [A,1], box distances [A,4],
 *                               keypoint offsets [A,10], A = (640/s)^2 * 2 (12800, 3200,
 *                               800); [1,A,k] with --batch-dim.
 *   OUT/recognition/model.onnx  input "input.1" float [N,3,112,112] -> "683" [N,512]
 *
 * The detector's outputs are constants (plus 0 * mean(input), so that the
 * input is used and the graph is not folded away), chosen so that a test can
 * compute the expected faces by hand. Anchor a of stride s is cell
 * c = a / 2 of the (640/s)-wide grid, centre (cx, cy) = ((c % g) s, (c / g) s);
 * distances and offsets are in strides:
 *
 *   every anchor: score 0.01, distances (1, 1, 1, 1), offsets 0
 *   F1  stride 8,  anchor 4880 (cell x 40, y 30, centre (320, 240)), score 0.95,
 *       distances (4, 5, 4, 6)             -> box (288, 200, 352, 288),
 *       offsets (-1.5,-1.5) (1.5,-1.5) (0,0.5) (-1.2,2.5) (1.2,2.5)
 *   F1' stride 8,  anchor 4881 (same cell), score 0.90, distances (4.2, 5, 3.8, 6),
 *       offsets as F1: overlaps F1 (IoU ~0.94), so NMS drops it
 *   F2  stride 32, anchor 171 (cell x 5, y 4, centre (160, 128)), score 0.85,
 *       distances (2, 2.5, 2, 3)           -> box (96, 48, 224, 224),
 *       offsets (-0.8,-0.8) (0.8,-0.8) (0,0.3) (-0.6,1.6) (0.6,1.6)
 *   F3  stride 16, anchor 820 (cell x 10, y 10, centre (160, 160)), score 0.60,
 *       distances (3, 3, 3, 3): below Immich's 0.7, found only at a lower threshold
 *       (it overlaps F2 by IoU ~0.41 > 0.4, so NMS drops it even then)
 *
 * Boxes above are in input pixels; in the image divide by det_scale
 * (vision_scrfd_letterbox). The recognizer is a toy of the right shape:
 * AveragePool 8x8/8 -> Flatten (588) -> Gemm with weights from an
 * xorshift64* stream seeded by --seed -> [N,512], so the embedding follows
 * the crop's content.
 *
 * Usage: mkfaces [--seed S] [--dynamic] [--batch-dim] OUTDIR
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx.pb-c.h"
#include "onnxb.h"

#define DET 640
#define REC 112
#define DIM 512
#define POOL 8

typedef struct {
    onnxb b;
    uint64_t rng;
} graph;

static Onnx__NodeProto *node(graph *g, const char *op, int nin, const char *const *in,
                             const char *out)
{
    return onnxb_node(&g->b, op, out, nin, in, out);
}

/* A float initializer; its data lives until the builder is freed. */
static float *init_f(graph *g, const char *name, int rank, const int64_t *dims)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= (size_t)dims[i];
    float *buf = onnxb_alloc(&g->b, count * sizeof(float));
    onnxb_init_tensor(&g->b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank, buf,
                      count * sizeof(float));
    return buf;
}

/* One planted anchor (see the file comment). */
typedef struct {
    int level, anchor;
    float score, d[4], kps[10];
} planted;

static const planted faces[] = {
    {0, 4880, 0.95f, {4, 5, 4, 6}, {-1.5f, -1.5f, 1.5f, -1.5f, 0, 0.5f, -1.2f, 2.5f, 1.2f, 2.5f}},
    {0,
     4881,
     0.90f,
     {4.2f, 5, 3.8f, 6},
     {-1.5f, -1.5f, 1.5f, -1.5f, 0, 0.5f, -1.2f, 2.5f, 1.2f, 2.5f}},
    {2, 171, 0.85f, {2, 2.5f, 2, 3}, {-0.8f, -0.8f, 0.8f, -0.8f, 0, 0.3f, -0.6f, 1.6f, 0.6f, 1.6f}},
    {1, 820, 0.60f, {3, 3, 3, 3}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
};

static int write_detector(int dynamic, int batch_dim, const char *path)
{
    static const char *const names[9] = {"448", "471", "494", "451", "474",
                                         "497", "454", "477", "500"};
    static const int k[3] = {1, 4, 10};
    graph g = {.rng = 1};
    onnxb_init(&g.b, "dyn");

    /* zero = 0 * mean(input): a scalar every output adds. */
    int64_t sdims[1] = {1};
    float *zero = init_f(&g, "zero_weight", 0, sdims);
    zero[0] = 0.0f;
    const char *rm_in[1] = {"input.1"};
    onnxb_attr_int(&g.b, node(&g, "ReduceMean", 1, rm_in, "in_mean"), "keepdims", 0);
    const char *mul_in[2] = {"in_mean", "zero_weight"};
    node(&g, "Mul", 2, mul_in, "in_zero");

    for (int kind = 0; kind < 3; kind++)
        for (int l = 0; l < 3; l++) {
            int gsz = DET / (8 << l);
            int64_t A = (int64_t)gsz * gsz * 2;
            int64_t dims[3] = {1, A, k[kind]};
            int rank = batch_dim ? 3 : 2;
            const int64_t *d = batch_dim ? dims : dims + 1;
            char cname[32];
            snprintf(cname, sizeof cname, "const_%d_%d", kind, l);
            float *c = init_f(&g, cname, rank, d);
            for (int64_t a = 0; a < A; a++)
                for (int j = 0; j < k[kind]; j++)
                    c[a * k[kind] + j] = kind == 0 ? 0.01f : kind == 1 ? 1.0f : 0.0f;
            for (size_t f = 0; f < sizeof faces / sizeof faces[0]; f++) {
                if (faces[f].level != l)
                    continue;
                float *p = c + (size_t)faces[f].anchor * (size_t)k[kind];
                if (kind == 0)
                    p[0] = faces[f].score;
                else if (kind == 1)
                    memcpy(p, faces[f].d, sizeof faces[f].d);
                else
                    memcpy(p, faces[f].kps, sizeof faces[f].kps);
            }
            const char *add_in[2] = {cname, "in_zero"};
            node(&g, "Add", 2, add_in, names[kind * 3 + l]);
        }

    int64_t in_dims[4] = {1, 3, DET, DET};
    Onnx__ValueInfoProto *in =
        onnxb_value(&g.b, "input.1", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, in_dims);
    if (dynamic) {
        Onnx__TensorShapeProto *sp = in->type->tensor_type->shape;
        for (int i = 2; i < 4; i++) {
            sp->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            sp->dim[i]->dim_param = onnxb_fmt(&g.b, "%s", i == 2 ? "height" : "width");
        }
    }
    onnxb_input(&g.b, in);
    for (int kind = 0; kind < 3; kind++)
        for (int l = 0; l < 3; l++) {
            int gsz = DET / (8 << l);
            int64_t dims[3] = {1, (int64_t)gsz * gsz * 2, k[kind]};
            onnxb_output(&g.b, onnxb_value(&g.b, names[kind * 3 + l],
                                           ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, batch_dim ? 3 : 2,
                                           batch_dim ? dims : dims + 1));
        }
    return onnxb_write_file(&g.b, "scrfd_toy", "mkfaces", path);
}

static int write_recognizer(uint64_t seed, const char *path)
{
    graph g = {.rng = seed * 2 + 1};
    onnxb_init(&g.b, "None");
    int feat = 3 * (REC / POOL) * (REC / POOL);
    int64_t wd[2] = {feat, DIM}, bd[1] = {DIM};
    float *w = init_f(&g, "fc.weight", 2, wd);
    for (int i = 0; i < feat * DIM; i++)
        w[i] = onnxb_rand(&g.rng);
    float *b = init_f(&g, "fc.bias", 1, bd);
    for (int i = 0; i < DIM; i++)
        b[i] = onnxb_rand(&g.rng) * 0.1f;
    const char *p_in[1] = {"input.1"};
    Onnx__NodeProto *p = node(&g, "AveragePool", 1, p_in, "pooled");
    int64_t ks[2] = {POOL, POOL};
    onnxb_attr_ints(&g.b, p, "kernel_shape", ks, 2);
    onnxb_attr_ints(&g.b, p, "strides", ks, 2);
    const char *f_in[1] = {"pooled"};
    onnxb_attr_int(&g.b, node(&g, "Flatten", 1, f_in, "flat"), "axis", 1);
    const char *gm_in[3] = {"flat", "fc.weight", "fc.bias"};
    node(&g, "Gemm", 3, gm_in, "683");
    int64_t in_dims[4] = {-1, 3, REC, REC}, out_dims[2] = {-1, DIM};
    onnxb_input(&g.b,
                onnxb_value(&g.b, "input.1", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, in_dims));
    onnxb_output(&g.b, onnxb_value(&g.b, "683", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, out_dims));
    return onnxb_write_file(&g.b, "arcface_toy", "mkfaces", path);
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkfaces: mkdir %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int dynamic = 0, batch_dim = 0;
    uint64_t seed = 1;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--dynamic") == 0)
            dynamic = 1;
        else if (strcmp(argv[i], "--batch-dim") == 0)
            batch_dim = 1;
        else if (argv[i][0] != '-' && out == NULL)
            out = argv[i];
        else
            out = NULL, i = argc;
    }
    if (out == NULL) {
        fprintf(stderr, "usage: mkfaces [--seed S] [--dynamic] [--batch-dim] OUTDIR\n");
        return 2;
    }
    char p[4096];
    int rc = mkdir_p(out);
    snprintf(p, sizeof p, "%s/detection", out);
    rc = rc ? rc : mkdir_p(p);
    snprintf(p, sizeof p, "%s/detection/model.onnx", out);
    rc = rc ? rc : write_detector(dynamic, batch_dim, p);
    snprintf(p, sizeof p, "%s/recognition", out);
    rc = rc ? rc : mkdir_p(p);
    snprintf(p, sizeof p, "%s/recognition/model.onnx", out);
    rc = rc ? rc : write_recognizer(seed, p);
    return rc ? 1 : 0;
}
