/*
 * infer/manifest.c — reads and validates a model directory's manifest.json
 * (format in manifest.h). Errors name the offending key so that a user who
 * writes a manifest for their own model knows what to fix.
 */
#include "infer/manifest.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fileio.h"
#include "util/xalloc.h"

static const struct {
    model_task task;
    const char *name;
} task_names[] = {
    {TASK_FACE_DETECTION, "face_detection"},
    {TASK_FACE_EMBEDDING, "face_embedding"},
    {TASK_IMAGE_EMBEDDING, "image_embedding"},
};

const char *manifest_task_name(model_task t)
{
    for (size_t i = 0; i < sizeof task_names / sizeof task_names[0]; i++)
        if (task_names[i].task == t)
            return task_names[i].name;
    return "unknown";
}

/* input.resize names, indexed by image_resize. */
static const char *const resize_names[] = {
    [RESIZE_AREA] = "area",
    [RESIZE_BILINEAR_ALIGN_CORNERS] = "bilinear_align_corners",
    [RESIZE_SHORTEST_CROP_BICUBIC] = "shortest_crop_bicubic",
    [RESIZE_SHORTEST_CROP_BILINEAR] = "shortest_crop_bilinear",
    [RESIZE_SQUASH_BICUBIC] = "squash_bicubic",
    [RESIZE_SQUASH_BILINEAR] = "squash_bilinear",
};

const char *manifest_resize_name(image_resize r)
{
    if ((unsigned)r < sizeof resize_names / sizeof resize_names[0] && resize_names[r])
        return resize_names[r];
    return "unknown";
}

/* The image_resize named `s`, or -1. */
static int manifest__resize_parse(const char *s)
{
    for (size_t i = 0; i < sizeof resize_names / sizeof resize_names[0]; i++)
        if (resize_names[i] && strcmp(resize_names[i], s) == 0)
            return (int)i;
    return -1;
}

/* Copies string key `key` of `obj` into dst[cap]. Missing optional keys leave dst empty. */
static int get_str(json_t *obj, const char *key, int required, char *dst, size_t cap,
                   const char *path, err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        dst[0] = '\0';
        if (required)
            return err_set(e, ERR_MANIFEST, "%s: missing key \"%s\"", path, key);
        return ERR_OK;
    }
    if (!json_is_string(v))
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be a string", path, key);
    const char *s = json_string_value(v);
    if (required && s[0] == '\0')
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must not be empty", path, key);
    if (strlen(s) >= cap)
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" is longer than %zu bytes", path, key, cap - 1);
    memcpy(dst, s, strlen(s) + 1);
    return ERR_OK;
}

static int get_int(json_t *obj, const char *key, int lo, int hi, int *out, const char *path,
                   err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" = %lld is outside %d..%d", path, key,
                       (long long)x, lo, hi);
    *out = (int)x;
    return ERR_OK;
}

static int get_vec(json_t *obj, const char *key, int n, float def, float *out, const char *path,
                   err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        for (int i = 0; i < n; i++)
            out[i] = def;
        return ERR_OK;
    }
    if (json_is_number(v)) {
        for (int i = 0; i < n; i++)
            out[i] = (float)json_number_value(v);
        return ERR_OK;
    }
    if (!json_is_array(v) || (int)json_array_size(v) != n)
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be a number or an array of %d numbers",
                       path, key, n);
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (!json_is_number(x))
            return err_set(e, ERR_MANIFEST, "%s: \"%s\"[%d] must be a number", path, key, i);
        out[i] = (float)json_number_value(x);
    }
    return ERR_OK;
}

static int get_float(json_t *obj, const char *key, float lo, float hi, float def, float *out,
                     const char *path, err_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        *out = def;
        return ERR_OK;
    }
    double x = json_is_number(v) ? json_number_value(v) : (double)NAN;
    if (!(x >= lo && x <= hi))
        return err_set(e, ERR_MANIFEST, "%s: \"%s\" must be a number in %g..%g", path, key,
                       (double)lo, (double)hi);
    *out = (float)x;
    return ERR_OK;
}

/* "crop" of a face embedder (see manifest.h); other tasks must not have one. */
static int load_crop(json_t *root, model_manifest *m, const char *path, err_t *e)
{
    json_t *c = json_object_get(root, "crop");
    m->crop_method = CROP_ALIGN;
    m->crop_scale = 1.0f;
    if (c == NULL)
        return ERR_OK;
    if (m->task != TASK_FACE_EMBEDDING || !json_is_object(c))
        return err_set(e, ERR_MANIFEST, "%s: \"crop\" must be an object, and only for "
                                        "face_embedding", path);
    char method[16];
    int rc = get_str(c, "method", 1, method, sizeof method, path, e);
    if (rc != ERR_OK)
        return rc;
    if (strcmp(method, "box") == 0) {
        m->crop_method = CROP_BOX;
        if ((rc = get_float(c, "scale", 0.25f, 4.0f, 1.0f, &m->crop_scale, path, e)) ||
            (rc = get_float(c, "shift_y", -1.0f, 1.0f, 0.0f, &m->crop_shift_y, path, e)))
            return rc;
        return ERR_OK;
    }
    if (strcmp(method, "align5") == 0) {
        m->crop_method = CROP_ALIGN5;
        return ERR_OK;
    }
    if (strcmp(method, "align") != 0)
        return err_set(e, ERR_MANIFEST, "%s: crop.method = \"%s\" (expected align, align5 or box)",
                       path, method);
    json_t *t = json_object_get(c, "template");
    if (t == NULL)
        return ERR_OK;
    if (!json_is_array(t) || json_array_size(t) != 4)
        return err_set(e, ERR_MANIFEST, "%s: crop.template must be 4 [x, y] points (eyes, nose, "
                                        "mouth)", path);
    for (int i = 0; i < 4; i++) {
        json_t *pt = json_array_get(t, (size_t)i);
        json_t *x = json_array_get(pt, 0), *y = json_array_get(pt, 1);
        if (!json_is_array(pt) || json_array_size(pt) != 2 || !json_is_number(x) ||
            !json_is_number(y))
            return err_set(e, ERR_MANIFEST, "%s: crop.template[%d] must be [x, y]", path, i);
        m->crop_template[i][0] = (float)json_number_value(x);
        m->crop_template[i][1] = (float)json_number_value(y);
    }
    m->crop_has_template = 1;
    return ERR_OK;
}

/* "embedding_center": embedding_dim finite numbers. */
static int load_center(json_t *root, model_manifest *m, const char *path, err_t *e)
{
    json_t *c = json_object_get(root, "embedding_center");
    if (c == NULL)
        return ERR_OK;
    if (!json_is_array(c) || m->embedding_dim <= 0 || m->embedding_dim > MANIFEST_MAX_CENTER ||
        json_array_size(c) != (size_t)m->embedding_dim)
        return err_set(e, ERR_MANIFEST, "%s: \"embedding_center\" must be an array of "
                                        "embedding_dim (%d, at most %d) numbers", path,
                       m->embedding_dim, MANIFEST_MAX_CENTER);
    for (int i = 0; i < m->embedding_dim; i++) {
        json_t *x = json_array_get(c, (size_t)i);
        if (!json_is_number(x) || !isfinite(json_number_value(x)))
            return err_set(e, ERR_MANIFEST, "%s: embedding_center[%d] must be a number", path, i);
        m->center[i] = (float)json_number_value(x);
    }
    m->ncenter = m->embedding_dim;
    return ERR_OK;
}

int manifest_load(const char *dir, model_manifest *m, err_t *e)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/manifest.json", dir) >= sizeof path)
        return err_set(e, ERR_INVAL, "model directory path too long");
    size_t len = 0;
    char *text = NULL;
    if (fileio_read_all(path, MANIFEST_MAX_BYTES, &text, &len) != 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_NOENT, "%s: no manifest (is the model provisioned?)", path);
        return err_set(e, ERR_MANIFEST, "%s: %s", path, strerror(errno));
    }
    int rc = manifest_parse(text, len, path, m, e);
    free(text);
    return rc;
}

int manifest_parse(const char *text, size_t len, const char *path, model_manifest *m, err_t *e)
{
    memset(m, 0, sizeof *m);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (root == NULL)
        return err_set(e, ERR_MANIFEST, "%s:%d: %s", path, jerr.line, jerr.text);
    int rc = ERR_OK;
    if (!json_is_object(root)) {
        rc = err_set(e, ERR_MANIFEST, "%s: top level must be an object", path);
        goto out;
    }
    char task[32];
    if ((rc = get_str(root, "name", 1, m->name, sizeof m->name, path, e)) ||
        (rc = get_str(root, "task", 1, task, sizeof task, path, e)) ||
        (rc = get_str(root, "family", 1, m->family, sizeof m->family, path, e)) ||
        (rc = get_str(root, "file", 0, m->file, sizeof m->file, path, e)) ||
        (rc = get_str(root, "sha256", 0, m->sha256, sizeof m->sha256, path, e)) ||
        (rc = get_str(root, "licence", 0, m->licence, sizeof m->licence, path, e)))
        goto out;
    if (m->file[0] == '\0')
        strcpy(m->file, "model.onnx");
    if (strchr(m->file, '/') != NULL || strcmp(m->file, "..") == 0) {
        rc = err_set(e, ERR_MANIFEST, "%s: \"file\" must name a file inside the model directory",
                     path);
        goto out;
    }
    m->task = TASK_UNKNOWN;
    for (size_t i = 0; i < sizeof task_names / sizeof task_names[0]; i++)
        if (strcmp(task, task_names[i].name) == 0)
            m->task = task_names[i].task;
    if (m->task == TASK_UNKNOWN) {
        rc = err_set(e, ERR_MANIFEST,
                     "%s: \"task\" = \"%s\" (expected face_detection, face_embedding or "
                     "image_embedding)",
                     path, task);
        goto out;
    }

    json_t *in = json_object_get(root, "input");
    if (!json_is_object(in)) {
        rc = err_set(e, ERR_MANIFEST, "%s: missing object \"input\"", path);
        goto out;
    }
    char layout[8];
    if ((rc = get_str(in, "name", 1, m->input_name, sizeof m->input_name, path, e)) ||
        (rc = get_str(in, "layout", 1, layout, sizeof layout, path, e)) ||
        (rc = get_int(in, "width", 1, 8192, &m->width, path, e)) ||
        (rc = get_int(in, "height", 1, 8192, &m->height, path, e)) ||
        (rc = get_int(in, "channels", 1, 4, &m->channels, path, e)))
        goto out;
    if (strcmp(layout, "NHWC") == 0) {
        m->layout = LAYOUT_NHWC;
    } else if (strcmp(layout, "NCHW") == 0) {
        m->layout = LAYOUT_NCHW;
    } else {
        rc = err_set(e, ERR_MANIFEST, "%s: input.layout = \"%s\" (expected NHWC or NCHW)", path,
                     layout);
        goto out;
    }
    char resize[32];
    if ((rc = get_str(in, "resize", 0, resize, sizeof resize, path, e)))
        goto out;
    m->resize = RESIZE_AREA;
    if (resize[0] != '\0') {
        int r = manifest__resize_parse(resize);
        if (r < 0) {
            rc = err_set(e, ERR_MANIFEST,
                         "%s: input.resize = \"%s\" (expected area, bilinear_align_corners, "
                         "shortest_crop_bicubic, shortest_crop_bilinear, squash_bicubic or "
                         "squash_bilinear)",
                         path, resize);
            goto out;
        }
        m->resize = (image_resize)r;
    }
    if ((rc = get_vec(in, "mean", m->channels, 0.0f, m->mean, path, e)) ||
        (rc = get_vec(in, "std", m->channels, 1.0f, m->std, path, e)))
        goto out;
    for (int i = 0; i < m->channels; i++) {
        if (!(m->std[i] != 0.0f)) {
            rc = err_set(e, ERR_MANIFEST, "%s: input.std[%d] must not be 0", path, i);
            goto out;
        }
    }

    json_t *outs = json_object_get(root, "outputs");
    if (!json_is_object(outs) || json_object_size(outs) == 0) {
        rc = err_set(e, ERR_MANIFEST, "%s: missing object \"outputs\" (role -> tensor name)",
                     path);
        goto out;
    }
    json_t *labels = json_object_get(root, "labels");
    const char *role;
    json_t *val;
    json_object_foreach(outs, role, val)
    {
        if (m->noutputs == MANIFEST_MAX_OUTPUTS) {
            rc = err_set(e, ERR_MANIFEST, "%s: more than %d outputs", path, MANIFEST_MAX_OUTPUTS);
            goto out;
        }
        manifest_output *o = &m->outputs[m->noutputs];
        if (strlen(role) >= sizeof o->role || !json_is_string(val) ||
            strlen(json_string_value(val)) >= sizeof o->name) {
            rc = err_set(e, ERR_MANIFEST, "%s: outputs.%s must be a tensor name string", path,
                         role);
            goto out;
        }
        strcpy(o->role, role);
        strcpy(o->name, json_string_value(val));
        m->noutputs++;
        json_t *lab = json_object_get(labels, role);
        if (lab != NULL) {
            if (!json_is_array(lab) || json_array_size(lab) > MANIFEST_MAX_LABELS) {
                rc = err_set(e, ERR_MANIFEST, "%s: labels.%s must be an array of at most %d names",
                             path, role, MANIFEST_MAX_LABELS);
                goto out;
            }
            for (size_t i = 0; i < json_array_size(lab); i++) {
                json_t *s = json_array_get(lab, i);
                if (!json_is_string(s)) {
                    rc = err_set(e, ERR_MANIFEST, "%s: labels.%s[%zu] must be a string", path,
                                 role, i);
                    goto out;
                }
                o->labels[o->nlabels++] = xstrdup(json_string_value(s));
            }
        }
    }

    json_t *dim = json_object_get(root, "embedding_dim");
    if (dim != NULL && (rc = get_int(root, "embedding_dim", 0, 65536, &m->embedding_dim, path, e)))
        goto out;
    if (m->task != TASK_FACE_DETECTION) {
        if (m->embedding_dim <= 0) {
            rc = err_set(e, ERR_MANIFEST, "%s: \"embedding_dim\" is required for task %s", path,
                         task);
            goto out;
        }
        if (manifest_output_by_role(m, "embedding") == NULL) {
            rc = err_set(e, ERR_MANIFEST, "%s: outputs.embedding is required for task %s", path,
                         task);
            goto out;
        }
    }
    if ((rc = load_crop(root, m, path, e)) != ERR_OK || (rc = load_center(root, m, path, e)))
        goto out;
    json_t *src = json_object_get(root, "source");
    if (json_is_object(src)) {
        if ((rc = get_str(src, "package", 0, m->source_package, sizeof m->source_package, path,
                          e)) ||
            (rc = get_str(src, "version", 0, m->source_version, sizeof m->source_version, path,
                          e)))
            goto out;
    }
out:
    json_decref(root);
    if (rc != ERR_OK)
        manifest_clear(m);
    return rc;
}

void manifest_clear(model_manifest *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < MANIFEST_MAX_OUTPUTS; i++) {
        for (int j = 0; j < m->outputs[i].nlabels; j++)
            free(m->outputs[i].labels[j]);
        m->outputs[i].nlabels = 0;
    }
    m->noutputs = 0;
}

const manifest_output *manifest_output_by_role(const model_manifest *m, const char *role)
{
    for (int i = 0; i < m->noutputs; i++)
        if (strcmp(m->outputs[i].role, role) == 0)
            return &m->outputs[i];
    return NULL;
}

int manifest_name_from_dir(model_manifest *m, const char *dir, err_t *e)
{
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    size_t n = end - start;
    if (n == 0 || n >= sizeof m->name)
        return err_set(e, ERR_MANIFEST, "%s: a model directory's name must be 1..%zu bytes", dir,
                       sizeof m->name - 1);
    memcpy(m->name, dir + start, n);
    m->name[n] = '\0';
    return ERR_OK;
}
