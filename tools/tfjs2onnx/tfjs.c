/*
 * tools/tfjs2onnx/tfjs.c — loading a TF.js graph model: model.json (or its
 * JavaScript wrapper) or a bare weights manifest (the `*-weights_manifest.json`
 * of TF.js layers-less packages such as face-api), the weight shards, and the
 * decoding of every weight
 * into float32 or int32 the way tfjs-core does it (quantized values become
 * q*scale+min computed in double and rounded to float, as tfjs stores them in
 * a Float32Array).
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "t2o.h"
#include "util/xalloc.h"

/* Reads a whole file of at most `limit` bytes into a NUL-terminated buffer. */
static int read_file(const char *path, size_t limit, char **out, size_t *outlen, err_t *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", path, strerror(errno));
    int rc = ERR_OK;
    char *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((uint64_t)st.st_size > limit) {
        rc = err_set(e, ERR_TOOBIG, "%s: %lld bytes exceeds the limit of %zu", path,
                     (long long)st.st_size, limit);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n + 1);
    if (!buf) {
        rc = err_set(e, ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
        goto out;
    }
    if (n && fread(buf, 1, n, f) != n) {
        rc = err_set(e, ERR_IO, "%s: short read", path);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* Prefixes e->msg with "`what`: " and returns e->code. */
static int prefix_err(err_t *e, const char *what)
{
    char msg[sizeof e->msg];
    snprintf(msg, sizeof msg, "%s", e->msg);
    return err_set(e, e->code, "%s: %s", what, msg);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *skip_space(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    return s;
}

/* Parses model text that is either JSON or a JS wrapper around the literal. */
static int parse_model_text(const char *path, const char *text, size_t len, json_t **root,
                            err_t *e)
{
    const char *p = skip_space(text, text + len);
    json_error_t je;
    if (p < text + len && (*p == '{' || *p == '[')) {
        *root = json_loadb(text, len, 0, &je);
        if (*root)
            return ERR_OK;
    }
    size_t off;
    int rc = t2o_js_find_export(text, len, &off, e);
    if (rc)
        return err_set(e, rc, "%s: neither JSON nor a JS-wrapped model", path);
    char *json = NULL;
    if ((rc = t2o_js_to_json(text + off, len - off, NULL, &json, e)))
        return prefix_err(e, path);
    *root = json_loads(json, 0, &je);
    free(json);
    if (!*root)
        return err_set(e, ERR_FORMAT, "%s: converted literal is not JSON: %s (line %d)", path,
                       je.text, je.line);
    return ERR_OK;
}

/* Reads one shard; a .js shard holds `exports="<base64>"`. */
static int read_shard(const char *path, uint8_t **out, size_t *outlen, err_t *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, T2O_MAX_SHARD_BYTES, &text, &len, e);
    if (rc)
        return rc;
    if (!ends_with(path, ".js")) {
        *out = (uint8_t *)text;
        *outlen = len;
        return ERR_OK;
    }
    size_t off;
    if ((rc = t2o_js_find_export(text, len, &off, e)))
        goto out;
    if (off >= len || (text[off] != '"' && text[off] != '\'')) {
        rc = err_set(e, ERR_FORMAT, "%s: exported value is not a string", path);
        goto out;
    }
    char q = text[off];
    const char *s = text + off + 1;
    const char *end = memchr(s, q, len - off - 1);
    if (!end) {
        rc = err_set(e, ERR_FORMAT, "%s: unterminated string", path);
        goto out;
    }
    if ((rc = t2o_base64_decode(s, (size_t)(end - s), out, outlen, e)))
        prefix_err(e, path);
out:
    free(text);
    return rc;
}

int t2o_model_init(t2o_model *m, json_t *root, err_t *e)
{
    memset(m, 0, sizeof *m);
    if (!json_is_object(root))
        return err_set(e, ERR_FORMAT, "model: top level is not an object");
    json_t *topo = json_object_get(root, "modelTopology");
    json_t *nodes = topo ? json_object_get(topo, "node") : NULL;
    if (!json_is_array(nodes))
        return err_set(e, ERR_FORMAT, "model: no modelTopology.node array (not a graph model?)");
    m->root = json_incref(root);
    m->nodes = nodes;
    m->signature = json_object_get(root, "signature");
    if (!m->signature) {
        json_t *udm = json_object_get(root, "userDefinedMetadata");
        m->signature = udm ? json_object_get(udm, "signature") : NULL;
    }
    return ERR_OK;
}

static int elem_size(const char *dt)
{
    if (!strcmp(dt, "uint8"))
        return 1;
    if (!strcmp(dt, "uint16") || !strcmp(dt, "float16"))
        return 2;
    if (!strcmp(dt, "float32") || !strcmp(dt, "int32"))
        return 4;
    return 0;
}

static int decode_one(t2o_weight *w, json_t *ent, const uint8_t *buf, size_t len, size_t *off,
                      err_t *e)
{
    const char *dtype = json_string_value(json_object_get(ent, "dtype"));
    json_t *shape = json_object_get(ent, "shape");
    if (!dtype || !json_is_array(shape))
        return err_set(e, ERR_FORMAT, "weight '%s': missing dtype or shape", w->name);
    if (strcmp(dtype, "float32") && strcmp(dtype, "int32"))
        return err_set(e, ERR_UNSUPPORTED, "weight '%s': dtype %s", w->name, dtype);
    w->dtype = !strcmp(dtype, "float32") ? T2O_F32 : T2O_I32;
    if (json_array_size(shape) > T2O_MAX_RANK)
        return err_set(e, ERR_UNSUPPORTED, "weight '%s': rank %zu", w->name,
                       json_array_size(shape));
    w->rank = (int)json_array_size(shape);
    size_t count = 1;
    for (int i = 0; i < w->rank; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > T2O_MAX_ELEMS)
            return err_set(e, ERR_FORMAT, "weight '%s': bad dimension", w->name);
        w->dims[i] = json_integer_value(d);
        count *= (size_t)w->dims[i];
        if (count > T2O_MAX_ELEMS)
            return err_set(e, ERR_TOOBIG, "weight '%s': too many elements", w->name);
    }
    w->count = count;

    json_t *q = json_object_get(ent, "quantization");
    const char *qdt = q ? json_string_value(json_object_get(q, "dtype")) : NULL;
    if (q && !qdt)
        return err_set(e, ERR_FORMAT, "weight '%s': quantization without dtype", w->name);
    int esz = elem_size(qdt ? qdt : dtype);
    if (!esz)
        return err_set(e, ERR_UNSUPPORTED, "weight '%s': quantization dtype %s", w->name, qdt);
    size_t nbytes = count * (size_t)esz;
    if (*off > len || len - *off < nbytes)
        return err_set(e, ERR_FORMAT,
                       "weight '%s': needs %zu bytes at offset %zu, shards hold %zu", w->name,
                       nbytes, *off, len);
    const uint8_t *src = buf + *off;
    *off += nbytes;
    w->data = xmalloc(count * 4 + 1);
    float *fd = w->data;
    int32_t *id = w->data;
    if (!qdt) {
        memcpy(w->data, src, nbytes);
        return ERR_OK;
    }
    if (!strcmp(qdt, "float16")) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            float v = t2o_f16_to_f32(h);
            if (w->dtype == T2O_F32)
                fd[i] = v;
            else
                id[i] = (int32_t)lrintf(v);
        }
        return ERR_OK;
    }
    json_t *jmin = json_object_get(q, "min"), *jscale = json_object_get(q, "scale");
    if (!json_is_number(jmin) || !json_is_number(jscale))
        return err_set(e, ERR_FORMAT, "weight '%s': quantization needs min and scale", w->name);
    double mn = json_number_value(jmin), sc = json_number_value(jscale);
    for (size_t i = 0; i < count; i++) {
        unsigned qv = esz == 1 ? src[i] : (unsigned)(src[2 * i] | (src[2 * i + 1] << 8));
        double v = qv * sc + mn;
        if (w->dtype == T2O_F32)
            fd[i] = (float)v;
        else
            id[i] = (int32_t)lrint(v);
    }
    return ERR_OK;
}

int t2o_weights_decode(t2o_model *m, json_t *entries, const uint8_t *buf, size_t len, err_t *e)
{
    if (!json_is_array(entries))
        return err_set(e, ERR_FORMAT, "weightsManifest: 'weights' is not an array");
    size_t off = 0, idx;
    json_t *ent;
    json_array_foreach(entries, idx, ent)
    {
        const char *name = json_string_value(json_object_get(ent, "name"));
        if (!name)
            return err_set(e, ERR_FORMAT, "weightsManifest: entry %zu has no name", idx);
        m->weights = xrealloc(m->weights, (m->nweights + 1) * sizeof *m->weights);
        t2o_weight *w = &m->weights[m->nweights++];
        memset(w, 0, sizeof *w);
        w->name = xstrdup(name);
        int rc = decode_one(w, ent, buf, len, &off, e);
        if (rc)
            return rc;
    }
    return ERR_OK;
}

const t2o_weight *t2o_model_weight(const t2o_model *m, const char *name)
{
    for (size_t i = 0; i < m->nweights; i++)
        if (!strcmp(m->weights[i].name, name))
            return &m->weights[i];
    return NULL;
}

/* Resolves a shard path relative to `dir`, trying the .js spellings nsfwjs uses. */
static int shard_path(const char *dir, const char *rel, char *out, size_t cap, err_t *e)
{
    static const char *const suffixes[] = {"", ".min.js", ".js"};
    struct stat st;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        int n = snprintf(out, cap, "%s/%s%s", dir, rel, suffixes[i]);
        if (n < 0 || (size_t)n >= cap)
            return err_set(e, ERR_TOOBIG, "shard path too long: %s/%s", dir, rel);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
            return ERR_OK;
    }
    return err_set(e, ERR_NOENT, "weight shard '%s' not found in %s", rel, dir);
}

int t2o_model_load(const char *path, t2o_model *m, err_t *e)
{
    err_t local;
    if (!e)
        e = &local; /* error prefixes below read e->msg */
    memset(m, 0, sizeof *m);
    char *text = NULL, *pathcopy = NULL;
    uint8_t *group = NULL;
    size_t len = 0;
    json_t *root = NULL;
    int rc = read_file(path, T2O_MAX_JSON_BYTES, &text, &len, e);
    if (rc)
        goto out;
    if ((rc = parse_model_text(path, text, len, &root, e)))
        goto out;
    json_t *manifest, *g;
    if (json_is_array(root)) {
        /* A bare weights manifest: weights without a graph (see t2o.h). */
        m->root = json_incref(root);
        manifest = root;
    } else {
        if ((rc = t2o_model_init(m, root, e)))
            goto out;
        manifest = json_object_get(root, "weightsManifest");
    }
    pathcopy = xstrdup(path);
    const char *dir = dirname(pathcopy);
    size_t gi;
    json_array_foreach(manifest, gi, g)
    {
        json_t *paths = json_object_get(g, "paths"), *p;
        size_t glen = 0, pi;
        json_array_foreach(paths, pi, p)
        {
            const char *rel = json_string_value(p);
            char full[4096];
            uint8_t *sb = NULL;
            size_t sl = 0;
            if (!rel) {
                rc = err_set(e, ERR_FORMAT, "weightsManifest[%zu].paths[%zu] is not a string", gi,
                             pi);
                goto out;
            }
            if ((rc = shard_path(dir, rel, full, sizeof full, e)))
                goto out;
            if ((rc = read_shard(full, &sb, &sl, e)))
                goto out;
            if (glen + sl > T2O_MAX_SHARD_BYTES) {
                free(sb);
                rc = err_set(e, ERR_TOOBIG, "weight group %zu exceeds %u bytes", gi,
                             T2O_MAX_SHARD_BYTES);
                goto out;
            }
            group = xrealloc(group, glen + sl + 1);
            memcpy(group + glen, sb, sl);
            glen += sl;
            free(sb);
        }
        if ((rc = t2o_weights_decode(m, json_object_get(g, "weights"), group, glen, e)))
            goto out;
        free(group);
        group = NULL;
    }
out:
    free(text);
    free(pathcopy);
    free(group);
    json_decref(root); /* m holds its own reference */
    if (rc)
        t2o_model_free(m);
    return rc;
}

void t2o_model_free(t2o_model *m)
{
    for (size_t i = 0; i < m->nweights; i++) {
        free(m->weights[i].name);
        free(m->weights[i].data);
    }
    free(m->weights);
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}
