/*
 * tools/mkclip/mkclip.c — writes a small CLIP-shaped model directory with
 * seeded random weights, for tests of the CLIP loader (no real CLIP weights
 * can be fetched on the build machines; see docs in shared DESIGN).
 *
 * The directory follows Immich's layout of its OpenCLIP exports:
 *
 *   OUT/config.json                 open_clip model config: embed_dim, vision_cfg.image_size,
 *                                   text_cfg.context_length / vocab_size
 *   OUT/visual/model.onnx           input "image" float [N,3,224,224] -> "embedding" [N,D]
 *   OUT/visual/preprocess_cfg.json  size, mode, mean, std (0..1), interpolation, resize_mode
 *   OUT/textual/model.onnx          input "text" int32 [N,77] (int64 with --int64)
 *                                   -> "embedding" [N,D]
 *   OUT/textual/tokenizer.json      HF tokenizers JSON (model.vocab + model.merges)
 *   OUT/textual/tokenizer_config.json  {"pad_token": "<|endoftext|>"}
 *
 * The tensor names and the int32 ids are what Immich's machine-learning
 * service feeds (immich_ml/models/clip/textual.py: {"text": np.int32 ids};
 * visual: {"image": float32 NCHW}; both read output 0, "embedding").
 * OpenCLIP's own torch export takes int64 ids: --int64 writes that variant.
 *
 * The graphs are toys of the right shape, not CLIP:
 *   visual: Conv 16x16/16 (3->8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (8->D)
 *   textual: Gather(token table [V,D]) + positional [77,D]; h += mean over the
 *     sequence; Tanh; pool the row at ArgMax(ids) (the EOT position, as CLIP
 *     pools, since EOT has the largest id); MatMul [D,D].
 * Every weight comes from one xorshift64* stream seeded by --seed, and
 * protobuf-c packs fields in a fixed order, so the same arguments write the
 * same bytes.
 *
 * Usage: mkclip [--dim D] [--seed S] [--int64] [--no-textual] --merges FILE OUTDIR
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx.pb-c.h"
#include "onnxb.h"
#include "text/tokenizer.h"
#include "util/xalloc.h"

#define CTX TEXT_CONTEXT_LENGTH
#define IMG 224
#define STEM 8
#define PATCH 16

/* ---- graphs: the shared builder (tools/onnxb) plus the weight stream ----- */

typedef struct {
    onnxb b;
    uint64_t rng;
} graph;

/* A node named after its one output. */
static Onnx__NodeProto *node(graph *g, const char *op, int nin, const char *const *in,
                             const char *out)
{
    return onnxb_node(&g->b, op, out, nin, in, out);
}

/* Adds an initializer of `count` elements; random floats scaled by `scale`
 * when `data` is NULL. */
static void init(graph *g, const char *name, int dtype, int rank, const int64_t *dims,
                 const void *data, float scale)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= (size_t)dims[i];
    size_t elem = dtype == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4;
    void *buf = onnxb_alloc(&g->b, count * elem);
    if (data != NULL) {
        memcpy(buf, data, count * elem);
    } else {
        float *f = buf;
        for (size_t i = 0; i < count; i++)
            f[i] = onnxb_rand(&g->rng) * scale;
    }
    onnxb_init_tensor(&g->b, name, dtype, dims, rank, buf, count * elem);
}

/* Declares the graph's one input and one output (a negative dim: the batch). */
static void io(graph *g, const char *in, int in_elem, int in_rank, const int64_t *in_dims,
               const char *out, int out_rank, const int64_t *out_dims)
{
    onnxb_input(&g->b, onnxb_value(&g->b, in, in_elem, in_rank, in_dims));
    onnxb_output(&g->b, onnxb_value(&g->b, out, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, out_rank,
                                    out_dims));
}

static int write_visual(uint64_t seed, int dim, const char *path)
{
    graph g = {.rng = seed * 2 + 1};
    onnxb_init(&g.b, "batch_size");
    int64_t wdims[4] = {STEM, 3, PATCH, PATCH}, bdims[1] = {STEM};
    init(&g, "stem.weight", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, wdims, NULL, 0.05f);
    init(&g, "stem.bias", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, bdims, NULL, 0.1f);
    int64_t pdims[2] = {STEM, dim}, pbd[1] = {dim};
    init(&g, "proj.weight", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, pdims, NULL, 1.0f);
    init(&g, "proj.bias", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, pbd, NULL, 0.1f);

    const char *conv_in[3] = {"image", "stem.weight", "stem.bias"};
    Onnx__NodeProto *c = node(&g, "Conv", 3, conv_in, "stem");
    int64_t k[2] = {PATCH, PATCH};
    onnxb_attr_ints(&g.b, c, "kernel_shape", k, 2);
    onnxb_attr_ints(&g.b, c, "strides", k, 2);
    const char *r_in[1] = {"stem"};
    node(&g, "Relu", 1, r_in, "stem_relu");
    const char *p_in[1] = {"stem_relu"};
    node(&g, "GlobalAveragePool", 1, p_in, "pooled");
    const char *f_in[1] = {"pooled"};
    onnxb_attr_int(&g.b, node(&g, "Flatten", 1, f_in, "flat"), "axis", 1);
    const char *gemm_in[3] = {"flat", "proj.weight", "proj.bias"};
    node(&g, "Gemm", 3, gemm_in, "embedding");

    int64_t in_dims[4] = {-1, 3, IMG, IMG}, out_dims[2] = {-1, dim};
    io(&g, "image", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, in_dims, "embedding", 2, out_dims);
    return onnxb_write_file(&g.b, "clip_visual", "mkclip", path);
}

static int write_textual(uint64_t seed, int dim, int vocab, int int64_ids, const char *path)
{
    graph g = {.rng = seed * 2 + 2};
    onnxb_init(&g.b, "batch_size");
    int64_t tdims[2] = {vocab, dim}, posd[2] = {CTX, dim}, projd[2] = {dim, dim};
    init(&g, "token_embedding", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, tdims, NULL, 1.0f);
    init(&g, "positional_embedding", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, posd, NULL, 0.1f);
    init(&g, "text_projection", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, projd, NULL, 0.5f);
    int64_t one[1] = {1}, three[1] = {3}, ax1[1] = {1}, ax2[1] = {2};
    int64_t expand_shape[3] = {1, 1, dim};
    init(&g, "axes1", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, one, ax1, 0);
    init(&g, "axes2", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, one, ax2, 0);
    init(&g, "expand_shape", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, three, expand_shape, 0);

    const char *ga[2] = {"token_embedding", "text"};
    onnxb_attr_int(&g.b, node(&g, "Gather", 2, ga, "tok"), "axis", 0);
    const char *ad[2] = {"tok", "positional_embedding"};
    node(&g, "Add", 2, ad, "h");
    const char *rm[1] = {"h"};
    Onnx__NodeProto *n = node(&g, "ReduceMean", 1, rm, "h_mean");
    onnxb_attr_ints(&g.b, n, "axes", ax1, 1);
    onnxb_attr_int(&g.b, n, "keepdims", 1);
    const char *mix[2] = {"h", "h_mean"};
    node(&g, "Add", 2, mix, "h_mix");
    const char *th[1] = {"h_mix"};
    node(&g, "Tanh", 1, th, "h_act");
    const char *am[1] = {"text"};
    n = node(&g, "ArgMax", 1, am, "eot_pos");
    onnxb_attr_int(&g.b, n, "axis", 1);
    onnxb_attr_int(&g.b, n, "keepdims", 1);
    const char *us[2] = {"eot_pos", "axes2"};
    node(&g, "Unsqueeze", 2, us, "eot_pos3");
    const char *ex[2] = {"eot_pos3", "expand_shape"};
    node(&g, "Expand", 2, ex, "eot_idx");
    const char *ge[2] = {"h_act", "eot_idx"};
    onnxb_attr_int(&g.b, node(&g, "GatherElements", 2, ge, "pooled3"), "axis", 1);
    const char *sq[2] = {"pooled3", "axes1"};
    node(&g, "Squeeze", 2, sq, "pooled");
    const char *mm[2] = {"pooled", "text_projection"};
    node(&g, "MatMul", 2, mm, "embedding");

    int64_t in_dims[2] = {-1, CTX}, out_dims[2] = {-1, dim};
    int et =
        int64_ids ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    io(&g, "text", et, 2, in_dims, "embedding", 2, out_dims);
    return onnxb_write_file(&g.b, "clip_textual", "mkclip", path);
}

static int write_json(json_t *j, const char *path)
{
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (rc != 0)
        fprintf(stderr, "mkclip: cannot write %s\n", path);
    return rc;
}

/* tokenizer.json in HF's layout from the tokenizer and its merges file. */
static int write_tokenizer(const text_tokenizer *t, const char *merges_path, const char *path)
{
    json_t *vocab = json_object(), *merges = json_array();
    for (int id = 0; id < text_tokenizer_vocab_size(t); id++) {
        const char *tok = text_tokenizer_token(t, id);
        if (tok != NULL)
            json_object_set_new(vocab, tok, json_integer(id));
    }
    FILE *f = fopen(merges_path, "r");
    if (f == NULL) {
        fprintf(stderr, "mkclip: %s: %s\n", merges_path, strerror(errno));
        json_decref(vocab);
        json_decref(merges);
        return -1;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f) != NULL &&
           json_array_size(merges) < TEXT_SIMPLE_MAX_MERGES) {
        line[strcspn(line, "\r\n")] = '\0';
        if (lineno++ > 0 && line[0] != '\0')
            json_array_append_new(merges, json_string(line));
    }
    fclose(f);
    json_t *added = json_array();
    const char *specials[2] = {"<|startoftext|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++)
        json_array_append_new(added, json_pack("{s:I, s:s, s:b}", "id",
                                               (json_int_t)text_tokenizer_id(t, specials[i]),
                                               "content", specials[i], "special", 1));
    json_t *root =
        json_pack("{s:s, s:o, s:{s:s, s:s, s:s, s:o, s:o}}", "version", "1.0", "added_tokens",
                  added, "model", "type", "BPE", "end_of_word_suffix", "</w>",
                  "continuing_subword_prefix", "", "vocab", vocab, "merges", merges);
    return write_json(root, path);
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkclip: mkdir %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: mkclip [--dim D] [--seed S] [--int64] [--no-textual] --merges FILE "
                    "OUTDIR\n");
}

int main(int argc, char **argv)
{
    int dim = 64, int64_ids = 0, textual = 1;
    uint64_t seed = 1;
    const char *merges = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dim") == 0 && i + 1 < argc)
            dim = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--merges") == 0 && i + 1 < argc)
            merges = argv[++i];
        else if (strcmp(argv[i], "--int64") == 0)
            int64_ids = 1;
        else if (strcmp(argv[i], "--no-textual") == 0)
            textual = 0;
        else if (argv[i][0] != '-' && out == NULL)
            out = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (out == NULL || merges == NULL || dim < 1 || dim > 4096) {
        usage();
        return 2;
    }
    err_t e = {0};
    text_tokenizer *tok = NULL;
    if (text_tokenizer_load(merges, &tok, &e) != ERR_OK) {
        fprintf(stderr, "mkclip: %s\n", e.msg);
        return 1;
    }
    int vocab = text_tokenizer_vocab_size(tok);
    char p[4096];
    int rc = mkdir_p(out);
    snprintf(p, sizeof p, "%s/visual", out);
    rc = rc ? rc : mkdir_p(p);
    snprintf(p, sizeof p, "%s/visual/model.onnx", out);
    rc = rc ? rc : write_visual(seed, dim, p);
    snprintf(p, sizeof p, "%s/visual/preprocess_cfg.json", out);
    rc = rc ? rc
            : write_json(json_pack("{s:[i,i], s:s, s:[f,f,f], s:[f,f,f], s:s, s:s, s:i}", "size",
                                   IMG, IMG, "mode", "RGB", "mean", 0.48145466, 0.4578275,
                                   0.40821073, "std", 0.26862954, 0.26130258, 0.27577711,
                                   "interpolation", "bicubic", "resize_mode", "shortest",
                                   "fill_color", 0),
                         p);
    snprintf(p, sizeof p, "%s/config.json", out);
    rc = rc ? rc
            : write_json(json_pack("{s:i, s:{s:i, s:i}, s:{s:i, s:i}}", "embed_dim", dim,
                                   "vision_cfg", "image_size", IMG, "patch_size", PATCH, "text_cfg",
                                   "context_length", CTX, "vocab_size", vocab),
                         p);
    if (textual) {
        snprintf(p, sizeof p, "%s/textual", out);
        rc = rc ? rc : mkdir_p(p);
        snprintf(p, sizeof p, "%s/textual/model.onnx", out);
        rc = rc ? rc : write_textual(seed, dim, vocab, int64_ids, p);
        snprintf(p, sizeof p, "%s/textual/tokenizer.json", out);
        rc = rc ? rc : write_tokenizer(tok, merges, p);
        snprintf(p, sizeof p, "%s/textual/tokenizer_config.json", out);
        rc = rc ? rc
                : write_json(json_pack("{s:s, s:i}", "pad_token", "<|endoftext|>",
                                       "model_max_length", CTX),
                             p);
    }
    text_tokenizer_free(tok);
    return rc ? 1 : 0;
}
