/*
 * api/immich.c — Immich's machine-learning API on --immich-listen (see
 * immich.h for the contract): its own libmicrohttpd daemon, the multipart
 * form of POST /predict, the bounded wait for a slot and the answers in
 * Immich's shapes.
 *
 * A /predict body is read through libmicrohttpd's post processor: "entries"
 * and "text" into memory (capped), "image" into a spool file as it arrives
 * (fetch_upload, capped at --max-body, never held in memory), any other field
 * dropped. The final access-handler call validates the entries against the
 * models this process runs, waits for a slot and runs the pipeline (or the
 * CLIP text encoder) on the connection's own thread.
 *
 * Threading: see immich.h. `lock` guards `busy` and `stopping` and is the
 * mutex of `cond` (slot waits and the reaper sleep on it); it is a leaf lock,
 * never held across a model run, a libmicrohttpd call or another lock.
 */
#include "api/immich.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_int.h"
#include "infer/clip.h"
#include "text/tokenizer.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"

#define IMMICH_FIELD_MAX ((size_t)64 << 10) /* "entries" and "text", each */
#define IMMICH_FORM_SLACK ((size_t)1 << 20) /* multipart headers and small fields */
#define IMMICH_FACE_DIM 512                 /* Immich's face_search.embedding vector(512) */
#define IMMICH_REAP_MS 1000

struct immich_srv {
    api_deps *deps;
    struct MHD_Daemon *mhd;
    api_conns *conns;
    int port;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int busy, slots; /* predicts running, and how many may */
    int stopping;
    pthread_t reaper;
    int reaper_started;
};

enum { R_ROOT = 1, R_PING, R_PREDICT };

typedef struct {
    char *data;
    size_t len;
} im_field;

/* One request, from its first access-handler call to its completion. */
typedef struct {
    int route;
    struct MHD_PostProcessor *pp;
    im_field entries, text;
    int has_entries, has_text, has_image, has_asset_id;
    fetch_upload *upload;
    int too_large;
    err_t upload_err;
} im_req;

/* --- responses ------------------------------------------------------------ */

static enum MHD_Result send_detail(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* FastAPI's error shape, {"detail": "..."}, which is what Immich's own service answers. */
static enum MHD_Result send_detail(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return api__send_json(c, status, json_pack("{s:s}", "detail", msg), NULL);
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    size_t n = strlen(text);
    char *copy = xmalloc(n + 1);
    memcpy(copy, text, n + 1);
    return api__send_bytes(c, status, copy, n, "text/plain; charset=utf-8", "no-store");
}

/* A JSON array of v[0..n) followed by `pad` zeros, as text: Immich stores it as it comes. */
static json_t *vector_string(const float *v, int n, int pad)
{
    size_t cap = (size_t)(n + pad) * 18 + 3, len = 0;
    char *s = xmalloc(cap);
    s[len++] = '[';
    for (int i = 0; i < n + pad; i++) {
        float x = i < n ? v[i] : 0.0f;
        len += (size_t)snprintf(s + len, cap - len, "%s%.9g", i > 0 ? "," : "", (double)x);
    }
    s[len++] = ']';
    s[len] = '\0';
    json_t *j = json_stringn(s, len);
    free(s);
    return j;
}

/* --- the slot wait ----------------------------------------------------------- */

/* Waits at most `wait_ms` for a free slot: 1 when taken, 0 on timeout or stop. */
static int slot_take(immich_srv *s, int64_t wait_ms)
{
    struct timespec until;
    clock_deadline(&until, wait_ms);
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    while (!s->stopping && s->busy >= s->slots && rc == 0)
        rc = pthread_cond_timedwait(&s->cond, &s->lock, &until);
    int got = !s->stopping && s->busy < s->slots;
    if (got)
        s->busy++;
    pthread_mutex_unlock(&s->lock);
    return got;
}

static void slot_give(immich_srv *s)
{
    pthread_mutex_lock(&s->lock);
    s->busy--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* --- /predict ---------------------------------------------------------------- */

/* The answer for one analysed image, in Immich's shapes. */
static json_t *image_answer(const immich_entries *en, const analysis *an)
{
    json_t *o = json_object();
    if (en->clip_visual)
        json_object_set_new(o, "clip", vector_string(an->image_embedding, an->image_dim, 0));
    if (en->faces) {
        json_t *faces = json_array();
        int pad = an->face_dim < IMMICH_FACE_DIM ? IMMICH_FACE_DIM - an->face_dim : 0;
        for (int i = 0; i < an->nfaces; i++) {
            const analysis_face *f = &an->faces[i];
            if (f->embedding == NULL)
                continue;
            json_t *box = json_pack("{s:I,s:I,s:I,s:I}", "x1", (json_int_t)lrintf(f->det.box.x1),
                                    "y1", (json_int_t)lrintf(f->det.box.y1), "x2",
                                    (json_int_t)lrintf(f->det.box.x2), "y2",
                                    (json_int_t)lrintf(f->det.box.y2));
            json_array_append_new(faces, json_pack("{s:o,s:o,s:f}", "boundingBox", box, "embedding",
                                                   vector_string(f->embedding, an->face_dim, pad),
                                                   "score", (double)f->det.score));
        }
        json_object_set_new(o, "facial-recognition", faces);
    }
    json_object_set_new(o, "imageHeight", json_integer(an->height));
    json_object_set_new(o, "imageWidth", json_integer(an->width));
    return o;
}

/* Whether the models the entries name are the ones loaded; 422 naming them otherwise. */
static int models_match(const immich_entries *en, pipeline *pl, clip_model *cm, char *msg,
                        size_t msglen)
{
    const model_manifest *im = pipeline_model(pl, TASK_IMAGE_EMBEDDING);
    const model_manifest *det = pipeline_model(pl, TASK_FACE_DETECTION);
    const model_manifest *rec = pipeline_model(pl, TASK_FACE_EMBEDDING);
    if (en->clip_visual && (im == NULL || strcmp(im->name, en->visual_model) != 0)) {
        snprintf(msg, msglen,
                 "clip visual model \"%s\" is not loaded: this inferd runs %s (set Immich's "
                 "CLIP model to it, or start inferd with --image-embedder %s)",
                 en->visual_model, im != NULL ? im->name : "no image embedder", en->visual_model);
        return -1;
    }
    if (en->clip_textual) {
        const char *have = cm != NULL ? infer_model_manifest(clip_visual(cm))->name : NULL;
        if (have == NULL || strcmp(have, en->textual_model) != 0) {
            snprintf(msg, msglen,
                     "clip textual model \"%s\" is not loaded: this inferd's text encoder is "
                     "%s",
                     en->textual_model,
                     have != NULL ? have
                                  : "none (the image embedder is not "
                                    "a CLIP model directory)");
            return -1;
        }
    }
    if (en->faces) {
        if (det == NULL || rec == NULL) {
            snprintf(msg, msglen, "facial-recognition: this inferd runs no %s",
                     det == NULL ? "face detector" : "face embedder");
            return -1;
        }
        /* The recognition model defines the embedding space; the detection name may be the
         * detector's own or the pack's (Immich sends one name for both). */
        if (strcmp(rec->name, en->recognition_model) != 0 ||
            (strcmp(det->name, en->detection_model) != 0 &&
             strcmp(rec->name, en->detection_model) != 0)) {
            snprintf(msg, msglen,
                     "facial-recognition model \"%s\" is not loaded: this inferd runs detector "
                     "%s and face embedder %s (set Immich's facial recognition model to %s)",
                     en->recognition_model, det->name, rec->name, rec->name);
            return -1;
        }
        if (rec->embedding_dim > IMMICH_FACE_DIM) {
            snprintf(msg, msglen,
                     "facial-recognition: %s embeds faces in %d dimensions; Immich stores %d",
                     rec->name, rec->embedding_dim, IMMICH_FACE_DIM);
            return -1;
        }
    }
    return 0;
}

/* Pipeline failures: the image is the problem (422) unless the runtime failed (500). */
static enum MHD_Result send_failure(struct MHD_Connection *c, const err_t *e)
{
    unsigned st = e->code == ERR_DECODE || e->code == ERR_TOOBIG || e->code == ERR_FORMAT ||
                          e->code == ERR_UNSUPPORTED_FORMAT || e->code == ERR_TIMEOUT
                      ? MHD_HTTP_UNPROCESSABLE_CONTENT
                      : MHD_HTTP_INTERNAL_SERVER_ERROR;
    return send_detail(c, st, "%s: %s", err_name(e->code), e->msg);
}

static enum MHD_Result predict(immich_srv *s, struct MHD_Connection *c, im_req *rq)
{
    const config *cfg = s->deps->cfg;
    if (!rq->has_entries)
        return send_detail(c, MHD_HTTP_UNPROCESSABLE_CONTENT,
                           "Invalid request format: the form has no \"entries\" field");
    immich_entries en;
    char msg[600];
    if (api__immich_parse_entries(rq->entries.data, rq->entries.len, &en, msg, sizeof msg) != 0)
        return send_detail(c, MHD_HTTP_UNPROCESSABLE_CONTENT, "Invalid request format: %s", msg);
    int image = rq->has_image && rq->upload != NULL && fetch_upload_size(rq->upload) > 0;
    if (!image && !rq->has_text)
        return send_detail(c, MHD_HTTP_BAD_REQUEST, "Either image or text must be provided%s",
                           rq->has_asset_id ? " (inferd takes the image's bytes, not an assetId)"
                                            : "");
    if (image && en.clip_textual)
        return send_detail(c, MHD_HTTP_UNPROCESSABLE_CONTENT,
                           "clip.textual embeds text: send a \"text\" field, not an image");
    if (!image && (en.clip_visual || en.faces))
        return send_detail(c, MHD_HTTP_UNPROCESSABLE_CONTENT,
                           "%s needs an image: send an \"image\" field",
                           en.clip_visual ? "clip.visual" : "facial-recognition");
    pipeline *pl = atomic_load(&s->deps->pl);
    if (pl == NULL)
        return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "models are still loading");
    clip_model *cm = atomic_load(&s->deps->clip);
    if (models_match(&en, pl, cm, msg, sizeof msg) != 0)
        return send_detail(c, MHD_HTTP_UNPROCESSABLE_CONTENT, "%s", msg);

    if (!slot_take(s, cfg->immich_wait_ms))
        return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                           "all %d slots stayed busy for %lld ms (--immich-wait-ms)", s->slots,
                           (long long)cfg->immich_wait_ms);
    err_t e;
    err_clear(&e);
    json_t *answer = NULL;
    if (image) {
        unsigned tasks =
            (en.clip_visual ? PIPELINE_IMAGE_EMBEDDING : 0u) | (en.faces ? PIPELINE_FACES : 0u);
        pipeline_call call = {.deadline_ms = clock_mono_ms() + cfg->job_timeout_ms,
                              .min_score = en.faces ? en.min_score : 0};
        if (en.faces && call.min_score <= 0)
            call.min_score = 0.7f; /* Immich's default */
        analysis *an = NULL;
        if (pipeline_analyze_file_ex(pl, fetch_upload_path(rq->upload), tasks, &call, &an, &e) ==
            ERR_OK) {
            answer = image_answer(&en, an);
            analysis_free(an);
        }
    } else {
        int dim = clip_embedding_dim(cm);
        float *v = xmalloc((size_t)dim * sizeof *v);
        if (rq->text.len > TEXT_MAX_QUERY_BYTES)
            err_set(&e, ERR_TOOBIG, "text of %zu bytes is longer than %u", rq->text.len,
                    TEXT_MAX_QUERY_BYTES);
        else if (clip_encode_text(cm, rq->text.data != NULL ? rq->text.data : "", v, &e) == ERR_OK)
            answer = json_pack("{s:o}", "clip", vector_string(v, dim, 0));
        free(v);
    }
    slot_give(s);
    if (answer == NULL)
        return send_failure(c, &e);
    return api__send_json(c, MHD_HTTP_OK, answer, NULL);
}

/* --- libmicrohttpd callbacks ------------------------------------------------------ */

static int field_append(im_field *f, const char *data, size_t size)
{
    if (size > IMMICH_FIELD_MAX - f->len)
        return -1;
    char *d = realloc(f->data, f->len + size + 1);
    if (d == NULL)
        return -1;
    memcpy(d + f->len, data, size);
    f->data = d;
    f->len += size;
    f->data[f->len] = '\0';
    return 0;
}

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    im_req *rq = cls;
    (void)kind, (void)filename, (void)content_type, (void)transfer_encoding, (void)off;
    if (rq->too_large || rq->upload_err.code != ERR_OK || key == NULL)
        return MHD_YES;
    if (strcmp(key, "entries") == 0) {
        rq->has_entries = 1;
        if (field_append(&rq->entries, data, size) != 0)
            rq->too_large = 1;
    } else if (strcmp(key, "text") == 0) {
        rq->has_text = 1;
        if (field_append(&rq->text, data, size) != 0)
            rq->too_large = 1;
    } else if (strcmp(key, "image") == 0) {
        rq->has_image = 1;
        if (rq->upload != NULL && size > 0) {
            err_t ue;
            err_clear(&ue);
            if (fetch_upload_write(rq->upload, data, size, &ue) != ERR_OK) {
                if (ue.code == ERR_TOOBIG)
                    rq->too_large = 1;
                else
                    rq->upload_err = ue;
                fetch_upload_abort(rq->upload);
                rq->upload = NULL;
            }
        }
    } else if (strcmp(key, "assetId") == 0) {
        rq->has_asset_id = 1;
    }
    return MHD_YES;
}

static int route_of(const char *url)
{
    if (strcmp(url, "/") == 0)
        return R_ROOT;
    if (strcmp(url, "/ping") == 0)
        return R_PING;
    if (strcmp(url, "/predict") == 0 || strcmp(url, "/predict/") == 0)
        return R_PREDICT;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    immich_srv *s = cls;
    im_req *rq = *con_cls;
    (void)version;
    if (rq == NULL) {
        api_conns_request(s->conns, c, 1);
        int route = route_of(url);
        if (route == 0)
            return send_detail(c, MHD_HTTP_NOT_FOUND, "Not Found");
        int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if ((route == R_PREDICT) == get)
            return send_detail(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
        if (route == R_ROOT)
            return api__send_json(c, MHD_HTTP_OK, json_pack("{s:s}", "message", "Immich ML"), NULL);
        if (route == R_PING)
            return atomic_load(&s->deps->pl) != NULL
                       ? send_text(c, MHD_HTTP_OK, "pong")
                       : send_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "models are loading");
        const config *cfg = s->deps->cfg;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno != 0 || *end != '\0' || n > cfg->max_body + IMMICH_FORM_SLACK)
                return send_detail(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                   "body of %s bytes exceeds the limit of %zu bytes", cl,
                                   cfg->max_body + IMMICH_FORM_SLACK);
        }
        rq = xcalloc(1, sizeof *rq);
        rq->route = route;
        rq->pp = MHD_create_post_processor(c, 64 * 1024, on_field, rq);
        if (rq->pp == NULL) {
            free(rq);
            return send_detail(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                               "POST /predict takes multipart/form-data with \"entries\" and "
                               "\"image\" or \"text\"");
        }
        err_t ue;
        err_clear(&ue);
        if (s->deps->fetch == NULL ||
            fetch_upload_begin(s->deps->fetch, &rq->upload, &ue) != ERR_OK) {
            MHD_destroy_post_processor(rq->pp);
            free(rq);
            return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot spool the image: %s",
                               ue.msg[0] != '\0' ? ue.msg : "no spool in this process");
        }
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->pp != NULL && MHD_post_process(rq->pp, upload_data, n) != MHD_YES) {
            MHD_destroy_post_processor(rq->pp);
            rq->pp = NULL; /* malformed: the rest is drained and the final call answers 400 */
        }
        return MHD_YES;
    }
    int complete = rq->pp != NULL && MHD_destroy_post_processor(rq->pp) == MHD_YES;
    rq->pp = NULL;
    if (rq->too_large)
        return send_detail(c, MHD_HTTP_CONTENT_TOO_LARGE,
                           "a form field is too large (image: %zu bytes, entries and text: %zu)",
                           s->deps->cfg->max_body, IMMICH_FIELD_MAX);
    if (rq->upload_err.code != ERR_OK)
        return send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "spooling the image: %s",
                           rq->upload_err.msg);
    if (!complete)
        return send_detail(c, MHD_HTTP_BAD_REQUEST, "malformed multipart/form-data body");
    return predict(s, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    immich_srv *s = cls;
    (void)toe;
    api_conns_request(s->conns, c, 0);
    im_req *rq = *con_cls;
    if (rq == NULL)
        return;
    if (rq->pp != NULL)
        MHD_destroy_post_processor(rq->pp);
    fetch_upload_abort(rq->upload);
    free(rq->entries.data);
    free(rq->text.data);
    free(rq);
    *con_cls = NULL;
}

/* Closes connections that do not deliver their headers in time (api_conns_reap). */
static void *reaper_main(void *arg)
{
    immich_srv *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        clock_deadline(&until, IMMICH_REAP_MS);
        pthread_cond_timedwait(&s->cond, &s->lock, &until);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        api_conns_reap(s->conns);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int immich_start(api_deps *deps, immich_srv **out, err_t *e)
{
    *out = NULL;
    const config *cfg = deps->cfg;
    int fd = api__open_listener(cfg->immich_host, cfg->immich_port, e);
    if (fd < 0)
        return e != NULL ? e->code : ERR_IO;
    immich_srv *s = xcalloc(1, sizeof *s);
    s->deps = deps;
    s->port = api__bound_port(fd);
    s->slots = cfg->slots > 0 ? cfg->slots : 1;
    pthread_mutex_init(&s->lock, NULL);
    clock_cond_init(&s->cond);
    s->conns = api__conns_for(cfg);
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        close(fd);
        immich_free(s);
        return err_set(e, ERR_INTERNAL, "immich: cannot start the reaper thread");
    }
    s->reaper_started = 1;
    s->mhd = api__start_daemon(fd, s->conns, cfg->max_connections, on_request, on_completed, s);
    if (s->mhd == NULL) {
        close(fd);
        immich_free(s);
        return err_set(e, ERR_IO, "cannot serve Immich's API on %s:%d: libmicrohttpd failed",
                       cfg->immich_host, cfg->immich_port);
    }
    *out = s;
    return ERR_OK;
}

int immich_port(const immich_srv *s)
{
    return s != NULL ? s->port : -1;
}

void immich_stop(immich_srv *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->reaper_started) {
        pthread_join(s->reaper, NULL);
        s->reaper_started = 0;
    }
    if (s->mhd != NULL) {
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
    }
}

void immich_free(immich_srv *s)
{
    if (s == NULL)
        return;
    immich_stop(s);
    api_conns_free(s->conns);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
