/*
 * infer/clip.c — loads an Immich / OpenCLIP-layout CLIP directory (layout in
 * clip.h) into an image_embedding infer_model, a text "tensor model" and a
 * tokenizer, and embeds text queries.
 *
 * Immich's directories carry no inferd manifest.json, and we must not write
 * into a user's model directory, so the visual manifest is synthesised in
 * memory from preprocess_cfg.json and handed to infer_model_load_manifest.
 * The text model has no image input at all; it is loaded as a tensor model
 * (task unknown) and fed through infer_run_tensor.
 *
 * Threading: everything here is set up in clip_model_load and read-only
 * afterwards; clip_encode_text keeps its state on the stack.
 */
#include "infer/clip.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/log.h"
#include "util/xalloc.h"

#define CLIP_MAX_DIM 16384
#define CLIP_MAX_CTX 1024
#define CLIP_MAX_DIR 3072 /* leaves room for the longest file name below */

struct clip_model {
    infer_model *visual;
    infer_model *textual; /* NULL when the directory has no text model */
    text_tokenizer *tok;
    char textual_path[4096];
    const char *text_input; /* "text" or "input_ids" */
    infer_elem_type text_elem;
    int dim;
    int ctx;
    int64_t pad_id;
};

static const float openai_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float openai_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/*
 * Writes a + b into out[cap]. A path that does not fit becomes "" (which then
 * fails as a missing file); clip_model_load refuses directories long enough
 * for that to happen.
 */
static void path_join(char *out, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 1 > cap) {
        out[0] = '\0';
        return;
    }
    memcpy(out, a, la);
    memcpy(out + la, b, lb + 1);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads `path` as JSON when it exists: *root NULL and ERR_OK when it does not. */
static int load_json_opt(const char *path, json_t **root, err_t *e)
{
    *root = NULL;
    if (!file_exists(path))
        return ERR_OK;
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (*root == NULL)
        return err_set(e, ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    return ERR_OK;
}

/* Reads a 3-vector of positive (std) or any (mean) numbers. */
static int get_vec3(json_t *obj, const char *key, int positive, float *out, const char *path,
                    err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return ERR_OK;
    if (!json_is_array(v) || json_array_size(v) != 3)
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be an array of 3 numbers", path, key);
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x) || (positive && !(json_number_value(x) > 0.0)))
            return err_set(e, ERR_MANIFEST, "%s: \"%s\"[%zu] must be a %snumber", path, key, i,
                           positive ? "positive " : "");
        out[i] = (float)json_number_value(x);
    }
    return ERR_OK;
}

/* "size" / "image_size": an integer or [H, W]. */
static int get_size(json_t *obj, const char *key, int *h, int *w, const char *path, err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return ERR_OK;
    json_int_t a, b;
    if (json_is_integer(v)) {
        a = b = json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
        a = json_integer_value(json_array_get(v, 0));
        b = json_integer_value(json_array_get(v, 1));
    } else {
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be an integer or [height, width]", path,
                       key);
    }
    if (a < 1 || a > 4096 || b < 1 || b > 4096)
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" is outside 1..4096", path, key);
    *h = (int)a;
    *w = (int)b;
    return ERR_OK;
}

/*
 * input.resize from preprocess_cfg's "resize_mode" ("shortest", the default,
 * or "squash") and "interpolation" ("bicubic", the default, or "bilinear"),
 * OpenCLIP's defaults for configs that predate the keys, as Immich uses them.
 * Anything else (OpenCLIP's "longest", Pillow's other filters) is refused
 * naming the file and key rather than fed differently from Immich.
 */
static int get_resize(json_t *obj, image_resize *out, const char *path, err_t *e)
{
    const char *mode = "shortest", *interp = "bicubic";
    json_t *v;

    if (obj != NULL && (v = json_object_get(obj, "resize_mode")) != NULL) {
        if (!json_is_string(v))
            return err_set(e, ERR_MANIFEST, "%s: \"resize_mode\" must be a string", path);
        mode = json_string_value(v);
    }
    if (obj != NULL && (v = json_object_get(obj, "interpolation")) != NULL) {
        if (!json_is_string(v))
            return err_set(e, ERR_MANIFEST, "%s: \"interpolation\" must be a string", path);
        interp = json_string_value(v);
    }
    int shortest = strcmp(mode, "shortest") == 0, cubic = strcmp(interp, "bicubic") == 0;
    if (!shortest && strcmp(mode, "squash") != 0)
        return err_set(e, ERR_MANIFEST,
                       "%s: \"resize_mode\" = \"%s\" is not supported (expected shortest or "
                       "squash)",
                       path, mode);
    if (!cubic && strcmp(interp, "bilinear") != 0)
        return err_set(e, ERR_MANIFEST,
                       "%s: \"interpolation\" = \"%s\" is not supported (expected bicubic or "
                       "bilinear)",
                       path, interp);
    *out = shortest ? (cubic ? RESIZE_SHORTEST_CROP_BICUBIC : RESIZE_SHORTEST_CROP_BILINEAR)
                    : (cubic ? RESIZE_SQUASH_BICUBIC : RESIZE_SQUASH_BILINEAR);
    return ERR_OK;
}

/* The model config: config.json, else open_clip_config.json's model_cfg. */
typedef struct {
    int embed_dim; /* 0 when unknown */
    int ctx;       /* 0 when unknown */
    int image_h, image_w;
} model_cfg;

static int read_model_cfg(const char *dir, model_cfg *c, json_t **ocfg_out, char *ocfg_path,
                          size_t cap, err_t *e)
{
    char path[4096];
    json_t *root = NULL, *ocfg = NULL;
    memset(c, 0, sizeof *c);
    *ocfg_out = NULL;
    snprintf(ocfg_path, cap, "%s/open_clip_config.json", dir);
    int rc = load_json_opt(ocfg_path, &ocfg, e);
    if (rc != ERR_OK)
        return rc;
    path_join(path, sizeof path, dir, "/config.json");
    if ((rc = load_json_opt(path, &root, e)) != ERR_OK)
        goto out;
    json_t *cfg = root;
    const char *where = path;
    if (cfg == NULL && ocfg != NULL) {
        cfg = json_object_get(ocfg, "model_cfg");
        where = ocfg_path;
    }
    if (cfg != NULL) {
        json_t *d = json_object_get(cfg, "embed_dim");
        if (d != NULL && (!json_is_integer(d) || json_integer_value(d) < 1 ||
                          json_integer_value(d) > CLIP_MAX_DIM)) {
            rc = err_set(e, ERR_MANIFEST, "%s: \"embed_dim\" must be an integer in 1..%d", where,
                         CLIP_MAX_DIM);
            goto out;
        }
        c->embed_dim = d ? (int)json_integer_value(d) : 0;
        json_t *l = json_object_get(json_object_get(cfg, "text_cfg"), "context_length");
        if (l != NULL && (!json_is_integer(l) || json_integer_value(l) < 2 ||
                          json_integer_value(l) > CLIP_MAX_CTX)) {
            rc = err_set(e, ERR_MANIFEST,
                         "%s: \"text_cfg.context_length\" must be an integer in 2..%d", where,
                         CLIP_MAX_CTX);
            goto out;
        }
        c->ctx = l ? (int)json_integer_value(l) : 0;
        rc = get_size(json_object_get(cfg, "vision_cfg"), "image_size", &c->image_h, &c->image_w,
                      where, e);
    }
out:
    json_decref(root);
    if (rc == ERR_OK)
        *ocfg_out = ocfg;
    else
        json_decref(ocfg);
    return rc;
}

int clip_visual_manifest(const char *dir, model_manifest *man, err_t *e)
{
    memset(man, 0, sizeof *man);
    model_cfg c;
    json_t *ocfg = NULL, *pre = NULL;
    char ocfg_path[4096], path[4096];
    int rc = read_model_cfg(dir, &c, &ocfg, ocfg_path, sizeof ocfg_path, e);
    if (rc != ERR_OK)
        return rc;
    int h = c.image_h ? c.image_h : 224, w = c.image_w ? c.image_w : 224;
    float mean[3], std[3];
    memcpy(mean, openai_mean, sizeof mean);
    memcpy(std, openai_std, sizeof std);
    path_join(path, sizeof path, dir, "/visual/preprocess_cfg.json");
    if ((rc = load_json_opt(path, &pre, e)) != ERR_OK)
        goto out;
    json_t *p = pre;
    const char *where = path;
    if (p == NULL && ocfg != NULL) {
        p = json_object_get(ocfg, "preprocess_cfg");
        where = ocfg_path;
    }
    image_resize resize = RESIZE_SHORTEST_CROP_BICUBIC;
    if (p != NULL &&
        ((rc = get_size(p, "size", &h, &w, where, e)) ||
         (rc = get_vec3(p, "mean", 0, mean, where, e)) ||
         (rc = get_vec3(p, "std", 1, std, where, e)) || (rc = get_resize(p, &resize, where, e))))
        goto out;

    if ((rc = manifest_name_from_dir(man, dir, e)) != ERR_OK)
        goto out;
    snprintf(man->family, sizeof man->family, "clip");
    snprintf(man->file, sizeof man->file, "visual/model.onnx");
    snprintf(man->input_name, sizeof man->input_name, "image");
    man->task = TASK_IMAGE_EMBEDDING;
    man->layout = LAYOUT_NCHW;
    man->width = w;
    man->height = h;
    man->channels = 3;
    man->resize = resize;
    for (int i = 0; i < 3; i++) {
        man->mean[i] = mean[i] * 255.0f; /* the pipeline feeds RGB in 0..255 */
        man->std[i] = std[i] * 255.0f;
    }
    man->noutputs = 1;
    snprintf(man->outputs[0].role, sizeof man->outputs[0].role, "embedding");
    snprintf(man->outputs[0].name, sizeof man->outputs[0].name, "embedding");
    man->embedding_dim = c.embed_dim;
out:
    json_decref(pre);
    json_decref(ocfg);
    return rc;
}

/* Loads `path` with `man`, retrying with input `alt` when man's input is absent. */
static int load_with_alt(infer_env *env, const char *path, model_manifest *man, const char *alt,
                         infer_model **out, err_t *e)
{
    err_t local;
    if (e == NULL)
        e = &local; /* the message is inspected below */
    int rc = infer_model_load_manifest(env, path, man, out, e);
    if (rc == ERR_MANIFEST && strstr(e->msg, "input \"") != NULL) {
        char first[128];
        snprintf(first, sizeof first, "%s", man->input_name);
        snprintf(man->input_name, sizeof man->input_name, "%s", alt);
        rc = infer_model_load_manifest(env, path, man, out, e);
        if (rc == ERR_MANIFEST && strstr(e->msg, "input \"") != NULL)
            rc = err_set(e, ERR_MODEL, "%s: has neither input \"%s\" nor \"%s\"", path, first, alt);
    }
    return rc;
}

/* Runs the visual model once on a zero image to learn D (no config gave it). */
static int probe_dim(infer_model *v, int *dim, err_t *e)
{
    size_t n = infer_input_size(v);
    float *img = xcalloc(n, sizeof *img);
    float *out = xmalloc(CLIP_MAX_DIM * sizeof *out);
    infer_output o = {.role = "embedding", .data = out, .cap = CLIP_MAX_DIM};
    int rc = infer_run(v, img, 1, &o, 1, e);
    if (rc == ERR_OK)
        *dim = (int)o.count;
    free(img);
    free(out);
    return rc;
}

static int load_textual(infer_env *env, const char *dir, clip_model *m, int cfg_ctx, err_t *e)
{
    char tdir[4096];
    path_join(tdir, sizeof tdir, dir, "/textual");
    const char *tokdirs[2] = {tdir, dir};
    int rc = ERR_NOENT;
    for (int i = 0; i < 2 && rc == ERR_NOENT; i++) {
        char a[4096], b[4096], c[4096];
        path_join(a, sizeof a, tokdirs[i], "/tokenizer.json");
        path_join(b, sizeof b, tokdirs[i], "/merges.txt");
        path_join(c, sizeof c, tokdirs[i], "/bpe_simple_vocab_16e6.txt.gz");
        if (file_exists(a) || file_exists(b) || file_exists(c))
            rc = text_tokenizer_load(tokdirs[i], &m->tok, e);
    }
    if (rc == ERR_NOENT)
        return err_set(e, ERR_NOENT,
                       "%s: text model present but no tokenizer (textual/tokenizer.json, "
                       "textual/vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz)",
                       dir);
    if (rc != ERR_OK)
        return rc;

    model_manifest man = {0};
    snprintf(man.name, sizeof man.name, "clip-textual");
    snprintf(man.family, sizeof man.family, "clip");
    snprintf(man.input_name, sizeof man.input_name, "text");
    man.task = TASK_UNKNOWN;
    man.noutputs = 1;
    snprintf(man.outputs[0].role, sizeof man.outputs[0].role, "embedding");
    snprintf(man.outputs[0].name, sizeof man.outputs[0].name, "embedding");
    if ((rc = load_with_alt(env, m->textual_path, &man, "input_ids", &m->textual, e)) != ERR_OK)
        return rc;
    m->text_input = strcmp(man.input_name, "text") == 0 ? "text" : "input_ids";

    int et, rank;
    int64_t dims[8];
    if ((rc = infer_input_info(m->textual, m->text_input, &et, dims, &rank, e)) != ERR_OK)
        return rc;
    if ((et != INFER_ELEM_INT32 && et != INFER_ELEM_INT64) || rank != 2)
        return err_set(e, ERR_MODEL,
                       "%s: input \"%s\" must be int32 or int64 [N, L] (type %d, rank %d)",
                       m->textual_path, m->text_input, et, rank);
    m->text_elem = (infer_elem_type)et;
    m->ctx = cfg_ctx ? cfg_ctx : TEXT_CONTEXT_LENGTH;
    if (dims[1] > 0 && dims[1] != m->ctx) {
        if (cfg_ctx)
            return err_set(e, ERR_MODEL, "%s: input length %lld, config says context_length %d",
                           m->textual_path, (long long)dims[1], cfg_ctx);
        m->ctx = (int)dims[1];
    }

    /* Padding id: the tokenizer_config's pad_token (HF / Immich), else 0 (OpenCLIP). */
    char path[4096];
    json_t *tc = NULL;
    path_join(path, sizeof path, tdir, "/tokenizer_config.json");
    if ((rc = load_json_opt(path, &tc, e)) != ERR_OK)
        return rc;
    json_t *pad = json_object_get(tc, "pad_token");
    if (json_is_object(pad)) /* transformers' AddedToken form */
        pad = json_object_get(pad, "content");
    if (json_is_string(pad)) {
        m->pad_id = text_tokenizer_id(m->tok, json_string_value(pad));
        if (m->pad_id < 0)
            rc = err_set(e, ERR_FORMAT, "%s: pad_token \"%s\" is not in the vocabulary", path,
                         json_string_value(pad));
    }
    json_decref(tc);
    return rc;
}

int clip_model_load(infer_env *env, const char *dir, clip_model **out, err_t *e)
{
    *out = NULL;
    clip_model *m = xcalloc(1, sizeof *m);
    model_manifest man;
    model_cfg cfg;
    json_t *ocfg = NULL;
    char vpath[4096], ocfg_path[4096];
    if (strlen(dir) > CLIP_MAX_DIR) {
        clip_model_free(m);
        return err_set(e, ERR_INVAL, "CLIP directory path longer than %d bytes", CLIP_MAX_DIR);
    }
    int rc = read_model_cfg(dir, &cfg, &ocfg, ocfg_path, sizeof ocfg_path, e);
    json_decref(ocfg);
    if (rc != ERR_OK)
        goto out;
    path_join(vpath, sizeof vpath, dir, "/visual/model.onnx");
    if (!file_exists(vpath)) {
        rc = err_set(e, ERR_NOENT, "%s: not a CLIP model directory: visual/model.onnx is missing",
                     dir);
        goto out;
    }
    if ((rc = clip_visual_manifest(dir, &man, e)) != ERR_OK)
        goto out;
    if ((rc = load_with_alt(env, vpath, &man, "pixel_values", &m->visual, e)) != ERR_OK)
        goto out;
    m->dim = cfg.embed_dim;
    if (m->dim == 0 && (rc = probe_dim(m->visual, &m->dim, e)) != ERR_OK)
        goto out;

    path_join(m->textual_path, sizeof m->textual_path, dir, "/textual/model.onnx");
    if (file_exists(m->textual_path)) {
        if ((rc = load_textual(env, dir, m, cfg.ctx, e)) != ERR_OK)
            goto out;
    } else {
        log_info("clip", "dir=%s has no textual/model.onnx: image embeddings only", dir);
    }
    log_debug("clip", "dir=%s dim=%d ctx=%d text=%s", dir, m->dim, m->ctx,
              m->textual ? m->text_input : "none");
    *out = m;
    m = NULL;
out:
    clip_model_free(m);
    return rc;
}

void clip_model_free(clip_model *m)
{
    if (m == NULL)
        return;
    infer_model_free(m->visual);
    infer_model_free(m->textual);
    text_tokenizer_free(m->tok);
    free(m);
}

int clip_embedding_dim(const clip_model *m)
{
    return m->dim;
}

int clip_context_length(const clip_model *m)
{
    return m->ctx;
}

infer_model *clip_visual(const clip_model *m)
{
    return m->visual;
}

const text_tokenizer *clip_tokenizer(const clip_model *m)
{
    return m->tok;
}

int clip_encode_text(clip_model *m, const char *text, float *out, err_t *e)
{
    if (m->textual == NULL)
        return err_set(e, ERR_NOENT, "text search needs a CLIP text encoder, but %s is missing",
                       m->textual_path);
    int64_t ids[CLIP_MAX_CTX];
    int32_t ids32[CLIP_MAX_CTX];
    int rc = text_tokenize(m->tok, text, strlen(text), ids, (size_t)m->ctx, m->pad_id, NULL, e);
    if (rc != ERR_OK)
        return rc;
    const void *data = ids;
    if (m->text_elem == INFER_ELEM_INT32) {
        for (int i = 0; i < m->ctx; i++)
            ids32[i] = (int32_t)ids[i];
        data = ids32;
    }
    int64_t shape[2] = {1, m->ctx};
    infer_output o = {.role = "embedding", .data = out, .cap = (size_t)m->dim};
    rc = infer_run_tensor(m->textual, m->text_input, m->text_elem, data, shape, 2, &o, 1, e);
    if (rc == ERR_TOOBIG || (rc == ERR_OK && o.count != (size_t)m->dim))
        return err_set(e, ERR_MODEL, "%s: text embedding has %zu floats, the image one %d",
                       m->textual_path, rc == ERR_OK ? o.count : (size_t)0, m->dim);
    if (rc != ERR_OK)
        return rc;
    infer_l2_normalize(out, (size_t)m->dim);
    return ERR_OK;
}
