/*
 * index/search.c — the search service (search.h): indexes per (collection,
 * model), the tables that map index ids back to assets and faces, and the
 * change-feed thread that keeps them current from the outbox.
 *
 * Image ids. The index wants an int64 per image; the store keys images by
 * asset_id text. The service interns each asset_id to a process-local number
 * (1, 2, ... in first-seen order) and keeps it while the process lives, also
 * across a delete and re-add. Rejected: a `seq` column on assets (a schema
 * step on both backends, and SQLite's implicit rowid is not stable across
 * VACUUM) — the number never leaves the process, so it need not be stored.
 *
 * Change feed. At start the service notes the newest outbox id, then loads
 * every vector; afterwards it applies every outbox row after that id (a row
 * committed during the load is applied again, which is harmless: applying
 * an event reloads the asset's current vectors from the store, so it is
 * idempotent and order only matters per asset, which the outbox keeps).
 * "deleted" events, and any other event for an asset that is gone, drop it.
 * After each pass the feed logs the indexes whose backend changed (an HNSW
 * build that finished in the background, or a fall-back to exact).
 *
 * Threading
 *   - `lock` (rwlock) guards the asset and face tables and the collection
 *     list. Searches hold it for reading across index_search (the keep filter
 *     reads payloads under it); the feed holds it for writing while it
 *     applies one asset (the index calls inside are short: a row copy, an
 *     HNSW insert of about a millisecond, or at worst waiting for a
 *     background build's final catch-up of at most 16 inserts; never a whole
 *     build). Lock order: `lock`, then the index's own locks.
 *   - `flock` serialises whole feed passes (the thread and search_sync()),
 *     and guards `after_id`; taken before `lock`.
 *   - The feed thread is the only writer of the indexes after search_new().
 *   - Clustering (people_run) runs on the feed thread without `lock` held:
 *     it reads the store, not the indexes.
 *   - search_wait_idle copies the index handles under `lock` (read) and waits
 *     for their background builds without it.
 */
#include "index/search.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/xalloc.h"
#include "util/clock.h"

#define SEARCH_PAGE 1000
#define SEARCH_LEASE_MS 30000
#define SEARCH_CLUSTER_MIN_MS 2000

typedef struct {
    char *model;
    index_t *ix;
    int hnsw; /* backend last logged (note_backends): 1 HNSW, 0 exact; feed passes only */
} coll;

typedef struct {
    char *asset_id;
    json_t *payload; /* NULL when none */
    int live;        /* has image vectors now */
    int64_t *faces;  /* face ids of the asset */
    size_t nfaces;
} asset_ent;

typedef struct {
    int64_t face_id; /* 0: empty slot */
    int64_t aid;     /* index into assets (1-based) */
    int64_t person_id;
    int coll; /* index into fcolls */
} face_ent;

struct search {
    search_opts o;
    char *image_model; /* opts.image_model copy or NULL */
    pthread_rwlock_t lock;
    /* assets: 1-based array + open-addressing hash asset_id -> aid */
    asset_ent *assets;
    size_t nassets, capassets;
    int64_t *ahash;
    size_t ahcap;
    /* faces: open-addressing hash face_id -> face_ent (0 = empty, -1 = tombstone) */
    face_ent *fhash;
    size_t fhcap, fhused;
    coll *icolls, *fcolls;
    size_t nicolls, nfcolls;

    pthread_mutex_t flock;
    int64_t after_id;
    int faces_dirty;
    int64_t cluster_at_ms;

    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    atomic_int stopping;
    int started;
    pthread_t thread;
};

/* --- tables --------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static uint64_t hash_i64(int64_t v)
{
    uint64_t x = (uint64_t)v;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void ahash_put(search *s, int64_t aid)
{
    size_t m = s->ahcap - 1;
    for (size_t i = hash_str(s->assets[aid - 1].asset_id) & m;; i = (i + 1) & m)
        if (s->ahash[i] == 0) {
            s->ahash[i] = aid;
            return;
        }
}

/* The aid of `asset_id`, interning it when `create`; 0 when absent. Under the write lock to create.
 */
static int64_t asset_aid(search *s, const char *asset_id, int create)
{
    if (s->ahcap > 0) {
        size_t m = s->ahcap - 1;
        for (size_t i = hash_str(asset_id) & m; s->ahash[i] != 0; i = (i + 1) & m)
            if (strcmp(s->assets[s->ahash[i] - 1].asset_id, asset_id) == 0)
                return s->ahash[i];
    }
    if (!create)
        return 0;
    if (s->nassets == s->capassets) {
        s->capassets = s->capassets ? s->capassets * 2 : 256;
        s->assets = xrealloc(s->assets, s->capassets * sizeof *s->assets);
    }
    asset_ent *a = &s->assets[s->nassets++];
    memset(a, 0, sizeof *a);
    a->asset_id = xstrdup(asset_id);
    int64_t aid = (int64_t)s->nassets;
    if ((s->nassets + 1) * 2 > s->ahcap) {
        free(s->ahash);
        s->ahcap = s->ahcap ? s->ahcap * 2 : 512;
        s->ahash = xcalloc(s->ahcap, sizeof *s->ahash);
        for (int64_t k = 1; k <= (int64_t)s->nassets; k++)
            ahash_put(s, k);
    } else {
        ahash_put(s, aid);
    }
    return aid;
}

static face_ent *face_find(search *s, int64_t face_id)
{
    if (s->fhcap == 0)
        return NULL;
    size_t m = s->fhcap - 1;
    for (size_t i = hash_i64(face_id) & m; s->fhash[i].face_id != 0; i = (i + 1) & m)
        if (s->fhash[i].face_id == face_id)
            return &s->fhash[i];
    return NULL;
}

static void face_insert_raw(search *s, const face_ent *f)
{
    size_t m = s->fhcap - 1;
    for (size_t i = hash_i64(f->face_id) & m;; i = (i + 1) & m)
        if (s->fhash[i].face_id <= 0) {
            s->fhash[i] = *f;
            return;
        }
}

static void face_put(search *s, const face_ent *f)
{
    face_ent *old = face_find(s, f->face_id);
    if (old != NULL) {
        *old = *f;
        return;
    }
    if ((s->fhused + 1) * 2 > s->fhcap) {
        face_ent *prev = s->fhash;
        size_t pcap = s->fhcap;
        s->fhcap = s->fhcap ? s->fhcap * 2 : 1024;
        s->fhash = xcalloc(s->fhcap, sizeof *s->fhash);
        s->fhused = 0;
        for (size_t i = 0; i < pcap; i++)
            if (prev[i].face_id > 0) {
                face_insert_raw(s, &prev[i]);
                s->fhused++;
            }
        free(prev);
    }
    face_insert_raw(s, f);
    s->fhused++;
}

/* Tombstones (face_id -1) keep probe chains intact; they are dropped at the next growth. */
static void face_del(search *s, int64_t face_id)
{
    face_ent *f = face_find(s, face_id);
    if (f != NULL)
        f->face_id = -1;
}

static coll *coll_get(coll **arr, size_t *n, const char *model, int dim, const index_opts *io,
                      int create, int *pos)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*arr)[i].model, model) == 0) {
            if (pos != NULL)
                *pos = (int)i;
            return &(*arr)[i];
        }
    if (!create)
        return NULL;
    index_t *ix = NULL;
    if (index_new((size_t)dim, io, &ix) != ERR_OK)
        return NULL;
    *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
    coll *c = &(*arr)[(*n)++];
    c->model = xstrdup(model);
    c->ix = ix;
    c->hnsw = 0;
    if (pos != NULL)
        *pos = (int)(*n - 1);
    return c;
}

/* --- applying store rows (write lock held) ----------------------------------- */

static void add_image(search *s, const store_vec *v)
{
    int64_t aid = asset_aid(s, v->asset_id, 1);
    asset_ent *a = &s->assets[aid - 1];
    coll *c = coll_get(&s->icolls, &s->nicolls, v->model, v->dim, &s->o.index, 1, NULL);
    if (c == NULL || index_dim(c->ix) != (size_t)v->dim ||
        index_add(c->ix, aid, v->vector, (size_t)v->dim) != ERR_OK) {
        log_warn("search", "asset=%s model=%s dim=%d: image vector not indexed", v->asset_id,
                 v->model, v->dim);
        return;
    }
    json_decref(a->payload);
    a->payload = v->payload != NULL ? json_loads(v->payload, 0, NULL) : NULL;
    a->live = 1;
}

static void add_face(search *s, const store_vec *v)
{
    int64_t aid = asset_aid(s, v->asset_id, 1);
    asset_ent *a = &s->assets[aid - 1];
    int pos = 0;
    coll *c = coll_get(&s->fcolls, &s->nfcolls, v->model, v->dim, &s->o.index, 1, &pos);
    if (c == NULL || index_dim(c->ix) != (size_t)v->dim ||
        index_add(c->ix, v->face_id, v->vector, (size_t)v->dim) != ERR_OK) {
        log_warn("search", "face=%lld model=%s dim=%d: face vector not indexed",
                 (long long)v->face_id, v->model, v->dim);
        return;
    }
    face_ent f = {.face_id = v->face_id, .aid = aid, .person_id = v->person_id, .coll = pos};
    face_put(s, &f);
    a->faces = xrealloc(a->faces, (a->nfaces + 1) * sizeof *a->faces);
    a->faces[a->nfaces++] = v->face_id;
}

/* Drops every vector of asset `aid` from every index. */
static void drop_asset(search *s, int64_t aid)
{
    asset_ent *a = &s->assets[aid - 1];
    for (size_t i = 0; i < s->nicolls; i++)
        (void)index_remove(s->icolls[i].ix, aid); /* ERR_NOENT: not in this model */
    for (size_t i = 0; i < a->nfaces; i++) {
        face_ent *f = face_find(s, a->faces[i]);
        if (f != NULL) {
            (void)index_remove(s->fcolls[f->coll].ix, f->face_id);
            face_del(s, f->face_id);
        }
    }
    free(a->faces);
    a->faces = NULL;
    a->nfaces = 0;
    json_decref(a->payload);
    a->payload = NULL;
    a->live = 0;
}

/* Reads every vector of `kind` (of `asset_id`, or all when NULL) page by page. */
static int read_all(search *s, store_vec_kind kind, const char *asset_id, store_vec **out, int *n,
                    err_t *e)
{
    store_vec *all = NULL;
    int cnt = 0;
    store_vec last;
    memset(&last, 0, sizeof last);
    int have = 0;
    for (;;) {
        store_vec *page = NULL;
        int np = 0;
        int rc = store_vectors_read(s->o.st, kind, asset_id, have ? &last : NULL, SEARCH_PAGE,
                                    &page, &np, e);
        if (rc) {
            free(last.model);
            store_vec_array_free(all, cnt);
            return rc;
        }
        if (np > 0) {
            all = xrealloc(all, (size_t)(cnt + np) * sizeof *all);
            memcpy(all + cnt, page, (size_t)np * sizeof *page);
            cnt += np;
            free(last.model);
            last = page[np - 1];
            last.model = xstrdup(last.model);
            last.vector = NULL;
            last.payload = NULL;
            have = 1;
        }
        free(page); /* members moved into `all` */
        if (np < SEARCH_PAGE)
            break;
    }
    free(last.model);
    *out = all;
    *n = cnt;
    return ERR_OK;
}

/* Replaces asset `asset_id`'s vectors by what the store holds now. */
static int reload_asset(search *s, const char *asset_id, err_t *e)
{
    store_vec *im = NULL, *fa = NULL;
    int ni = 0, nf = 0;
    int rc = read_all(s, STORE_VEC_IMAGE, asset_id, &im, &ni, e);
    if (rc == ERR_OK)
        rc = read_all(s, STORE_VEC_FACE, asset_id, &fa, &nf, e);
    if (rc == ERR_OK) {
        pthread_rwlock_wrlock(&s->lock);
        int64_t aid = asset_aid(s, asset_id, 0);
        if (aid > 0)
            drop_asset(s, aid);
        for (int i = 0; i < ni; i++)
            add_image(s, &im[i]);
        for (int i = 0; i < nf; i++)
            add_face(s, &fa[i]);
        pthread_rwlock_unlock(&s->lock);
        if (nf > 0)
            s->faces_dirty = 1;
    }
    store_vec_array_free(im, ni);
    store_vec_array_free(fa, nf);
    return rc;
}

/* Applies outbox rows after s->after_id; the caller holds flock. */
static int feed_apply(search *s, err_t *e)
{
    for (int round = 0; round < 1000; round++) {
        outbox_event *ev = NULL;
        int n = 0;
        int rc = store_outbox_read(s->o.st, s->after_id, 0, SEARCH_PAGE, &ev, &n, e);
        if (rc)
            return rc;
        for (int i = 0; i < n && rc == ERR_OK; i++) {
            rc = reload_asset(s, ev[i].asset_id, e);
            if (rc == ERR_OK)
                s->after_id = ev[i].id;
        }
        outbox_event_array_free(ev, n);
        if (rc)
            return rc;
        if (n < SEARCH_PAGE)
            return ERR_OK;
    }
    return ERR_OK;
}

/*
 * Logs every index whose backend changed since the last pass: graphs are
 * built in the background (index.h), so a switch shows up here, on the pass
 * after it happened. The caller holds flock (feed passes are the only
 * writers of coll.hnsw, and the collection arrays change only under flock).
 */
static void note_backends(search *s)
{
    pthread_rwlock_rdlock(&s->lock);
    for (int faces = 0; faces <= 1; faces++) {
        coll *arr = faces ? s->fcolls : s->icolls;
        size_t n = faces ? s->nfcolls : s->nicolls;
        for (size_t i = 0; i < n; i++) {
            int h = index_is_hnsw(arr[i].ix);
            if (h == arr[i].hnsw)
                continue;
            arr[i].hnsw = h;
            log_info("search", "index=%s model=%s backend=%s vectors=%zu",
                     faces ? "faces" : "images", arr[i].model, h ? "hnsw" : "exact",
                     index_size(arr[i].ix));
        }
    }
    pthread_rwlock_unlock(&s->lock);
}

/* A feed pass: the outbox rows, then the backend log. The caller holds flock. */
static int feed_pass(search *s, err_t *e)
{
    int rc = feed_apply(s, e);
    note_backends(s);
    return rc;
}

/* --- lifecycle --------------------------------------------------------------- */

int search_new(const search_opts *o, search **out, err_t *e)
{
    if (o == NULL || o->st == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "search_new: missing argument");
    *out = NULL;
    search *s = xcalloc(1, sizeof *s);
    s->o = *o;
    s->o.owner = o->owner != NULL ? xstrdup(o->owner) : NULL;
    s->image_model = o->image_model != NULL && o->image_model[0] ? xstrdup(o->image_model) : NULL;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->flock, NULL);
    pthread_mutex_init(&s->tlock, NULL);
    clock_cond_init(&s->tcond);
    atomic_init(&s->stopping, 0);
    store_vec *im = NULL, *fa = NULL;
    int ni = 0, nf = 0;
    int rc = store_outbox_max_id(s->o.st, &s->after_id, e);
    if (rc == ERR_OK)
        rc = read_all(s, STORE_VEC_IMAGE, NULL, &im, &ni, e);
    if (rc == ERR_OK)
        rc = read_all(s, STORE_VEC_FACE, NULL, &fa, &nf, e);
    if (rc == ERR_OK) {
        pthread_rwlock_wrlock(&s->lock);
        for (int i = 0; i < ni; i++)
            add_image(s, &im[i]);
        for (int i = 0; i < nf; i++)
            add_face(s, &fa[i]);
        pthread_rwlock_unlock(&s->lock);
    }
    store_vec_array_free(im, ni);
    store_vec_array_free(fa, nf);
    if (rc) {
        search_free(s);
        return rc;
    }
    s->faces_dirty = 1;
    log_info("search", "loaded images=%d faces=%d outbox_after=%lld", ni, nf,
             (long long)s->after_id);
    *out = s;
    return ERR_OK;
}

int search_sync(search *s, err_t *e)
{
    if (s == NULL)
        return err_set(e, ERR_INVAL, "search_sync: no service");
    pthread_mutex_lock(&s->flock);
    int rc = feed_pass(s, e);
    pthread_mutex_unlock(&s->flock);
    return rc;
}

/* Re-reads every face's person id into the face table (after a clustering pass). */
static int refresh_persons(search *s, err_t *e)
{
    store_vec *fa = NULL;
    int nf = 0;
    int rc = read_all(s, STORE_VEC_FACE, NULL, &fa, &nf, e);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&s->lock);
    for (int i = 0; i < nf; i++) {
        face_ent *f = face_find(s, fa[i].face_id);
        if (f != NULL)
            f->person_id = fa[i].person_id;
    }
    pthread_rwlock_unlock(&s->lock);
    store_vec_array_free(fa, nf);
    return ERR_OK;
}

int search_refresh_people(search *s, err_t *e)
{
    if (s == NULL)
        return err_set(e, ERR_INVAL, "search_refresh_people: no service");
    return refresh_persons(s, e);
}

/* Clusters new faces when this process holds the people lease. */
static void maybe_cluster(search *s)
{
    if (s->o.owner == NULL || !s->faces_dirty)
        return;
    int64_t now = store_now_ms();
    if (now < s->cluster_at_ms)
        return;
    s->cluster_at_ms = now + SEARCH_CLUSTER_MIN_MS;
    err_t e;
    err_clear(&e);
    if (store_leader_acquire(s->o.st, STORE_LEADER_PEOPLE, s->o.owner, SEARCH_LEASE_MS, &e) !=
        ERR_OK)
        return; /* another process clusters */
    /* The lease is held for the pass only, so `inferd people recluster` can take it between passes.
     */
    people_stats ps;
    int rc = people_run(s->o.st, NULL, &s->o.people, 0, &ps, &e);
    err_t ignore;
    store_leader_release(s->o.st, STORE_LEADER_PEOPLE, s->o.owner, &ignore);
    if (rc != ERR_OK) {
        log_warn("search", "people clustering: %s", e.msg);
        return;
    }
    s->faces_dirty = 0;
    if (ps.assigned > 0 && refresh_persons(s, &e) != ERR_OK)
        log_warn("search", "refreshing person ids: %s", e.msg);
}

static void *feed_main(void *arg)
{
    search *s = arg;
    int poll = s->o.poll_ms > 0 ? s->o.poll_ms : 1000;
    while (!atomic_load(&s->stopping)) {
        err_t e;
        err_clear(&e);
        pthread_mutex_lock(&s->flock);
        int rc = feed_pass(s, &e);
        if (rc == ERR_OK)
            maybe_cluster(s);
        pthread_mutex_unlock(&s->flock);
        if (rc != ERR_OK)
            log_warn("search", "change feed: %s", e.msg);
        if (atomic_load(&s->stopping))
            break;
        /* events_wait answers -1 at once once the hub stops: then the condition variable waits. */
        if (s->o.ev == NULL || events_wait(s->o.ev, poll) < 0) {
            /* Short waits so that search_stop is prompt. */
            pthread_mutex_lock(&s->tlock);
            struct timespec ts;
            clock_deadline(&ts, poll);
            if (!atomic_load(&s->stopping))
                pthread_cond_timedwait(&s->tcond, &s->tlock, &ts);
            pthread_mutex_unlock(&s->tlock);
        }
    }
    return NULL;
}

int search_start(search *s, err_t *e)
{
    if (s == NULL || s->started)
        return err_set(e, ERR_INVAL, "search_start: no service or started twice");
    if (pthread_create(&s->thread, NULL, feed_main, s) != 0)
        return err_set(e, ERR_NOMEM, "search: cannot start the feed thread");
    s->started = 1;
    return ERR_OK;
}

void search_stop(search *s)
{
    if (s == NULL || !s->started)
        return;
    atomic_store(&s->stopping, 1);
    pthread_mutex_lock(&s->tlock);
    pthread_cond_broadcast(&s->tcond);
    pthread_mutex_unlock(&s->tlock);
    pthread_join(s->thread, NULL);
    s->started = 0;
    if (s->o.owner != NULL) {
        err_t e;
        store_leader_release(s->o.st, STORE_LEADER_PEOPLE, s->o.owner, &e);
    }
}

void search_free(search *s)
{
    if (s == NULL)
        return;
    search_stop(s);
    for (size_t i = 0; i < s->nicolls; i++) {
        free(s->icolls[i].model);
        index_free(s->icolls[i].ix);
    }
    for (size_t i = 0; i < s->nfcolls; i++) {
        free(s->fcolls[i].model);
        index_free(s->fcolls[i].ix);
    }
    free(s->icolls);
    free(s->fcolls);
    for (size_t i = 0; i < s->nassets; i++) {
        free(s->assets[i].asset_id);
        json_decref(s->assets[i].payload);
        free(s->assets[i].faces);
    }
    free(s->assets);
    free(s->ahash);
    free(s->fhash);
    free((char *)s->o.owner);
    free(s->image_model);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->flock);
    pthread_mutex_destroy(&s->tlock);
    pthread_cond_destroy(&s->tcond);
    free(s);
}

/* --- queries (read lock) --------------------------------------------------------- */

/* The collection named `model`, or the configured default, or the largest. */
static coll *pick(coll *arr, size_t n, const char *model, const char *dflt)
{
    const char *want = model != NULL ? model : dflt;
    if (want != NULL) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(arr[i].model, want) == 0)
                return &arr[i];
        if (model != NULL)
            return NULL;
    }
    coll *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (best == NULL || index_size(arr[i].ix) > index_size(best->ix))
            best = &arr[i];
    return best;
}

/*
 * Searches collection `c` (NULL: none indexed for `model`) for `query`, with
 * the errors both search kinds share: ERR_NOENT naming what is not indexed,
 * ERR_INVAL for a vector of the wrong dimension. Caller holds s->lock.
 */
static int coll_search(coll *c, const char *kind, const char *model, const float *query, int dim,
                       int limit, uint32_t ef, float min_score, index_keep_fn keep, void *ctx,
                       index_hit *hits, size_t *nh, err_t *e)
{
    if (c == NULL)
        return err_set(e, ERR_NOENT, "no %s embeddings%s%s are indexed", kind,
                       model ? " of model " : "", model ? model : "");
    if (index_dim(c->ix) != (size_t)dim)
        return err_set(e, ERR_INVAL, "vector: %d floats, but model %s has dimension %zu", dim,
                       c->model, index_dim(c->ix));
    int rc = index_search(c->ix, query, (size_t)dim, (size_t)limit, ef, min_score, keep, ctx, hits,
                          nh);
    if (rc)
        err_set(e, rc, "%s search failed", kind);
    return rc;
}

const char *search_image_model(search *s)
{
    if (s == NULL)
        return NULL;
    pthread_rwlock_rdlock(&s->lock);
    coll *c = pick(s->icolls, s->nicolls, NULL, s->image_model);
    const char *m = c != NULL ? c->model : NULL; /* models are never freed before search_free */
    pthread_rwlock_unlock(&s->lock);
    return m;
}

int search_index_is_hnsw(search *s, store_vec_kind kind, const char *model)
{
    if (s == NULL)
        return -1;
    pthread_rwlock_rdlock(&s->lock);
    coll *c = kind == STORE_VEC_FACE ? pick(s->fcolls, s->nfcolls, model, NULL)
                                     : pick(s->icolls, s->nicolls, model, s->image_model);
    int h = c != NULL ? index_is_hnsw(c->ix) : -1;
    pthread_rwlock_unlock(&s->lock);
    return h;
}

int search_wait_idle(search *s, err_t *e)
{
    if (s == NULL)
        return err_set(e, ERR_INVAL, "search_wait_idle: no service");
    /*
     * The index handles are copied under the read lock and waited on
     * without it: a build can take seconds, and a feed pass waiting for the
     * write lock meanwhile would hold up every search (the lock prefers
     * writers). Indexes are freed only by search_free.
     */
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->nicolls + s->nfcolls;
    index_t **ixs = xmalloc((n > 0 ? n : 1) * sizeof *ixs);
    for (size_t i = 0; i < s->nicolls; i++)
        ixs[i] = s->icolls[i].ix;
    for (size_t i = 0; i < s->nfcolls; i++)
        ixs[s->nicolls + i] = s->fcolls[i].ix;
    pthread_rwlock_unlock(&s->lock);
    int rc = ERR_OK;
    for (size_t i = 0; i < n; i++) {
        int r = index_wait_idle(ixs[i]);
        if (r != ERR_OK && rc == ERR_OK)
            rc = err_set(e, r, "search: an index build failed (%s)", err_strerror(r));
    }
    free(ixs);
    return rc;
}

typedef struct {
    search *s;
    int64_t exclude;
    const json_t *filter;
} keep_ctx;

static int keep_image(void *ctx, int64_t id)
{
    keep_ctx *k = ctx;
    if (id == k->exclude)
        return 0;
    if (k->filter == NULL || json_object_size(k->filter) == 0)
        return 1;
    const asset_ent *a = &k->s->assets[id - 1];
    if (a->payload == NULL)
        return 0;
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)k->filter, key, want)
    {
        json_t *have = json_object_get(a->payload, key);
        if (have == NULL || !json_equal(have, want))
            return 0;
    }
    return 1;
}

static int keep_face(void *ctx, int64_t id)
{
    keep_ctx *k = ctx;
    return id != k->exclude;
}

/*
 * The stored vector of `asset_id` (images of `model`, NULL: any) or of face
 * `face_id`, read from the store: the index keeps no way to read a vector
 * back, and one small read per query is cheap next to the search.
 * `*vec` is a new array of `*dim` floats; `*model_out` a new string.
 */
static int stored_vector(search *s, store_vec_kind kind, const char *asset_id, int64_t face_id,
                         const char *model, float **vec, int *dim, char **model_out, err_t *e)
{
    store_vec *v = NULL;
    int n = 0;
    int rc = read_all(s, kind, asset_id, &v, &n, e);
    if (rc)
        return rc;
    rc = ERR_NOENT;
    for (int i = 0; i < n; i++) {
        if (kind == STORE_VEC_FACE ? v[i].face_id != face_id
                                   : (model != NULL && strcmp(v[i].model, model) != 0))
            continue;
        *vec = v[i].vector;
        v[i].vector = NULL;
        *dim = v[i].dim;
        *model_out = xstrdup(v[i].model);
        rc = ERR_OK;
        break;
    }
    store_vec_array_free(v, n);
    if (rc == ERR_NOENT) {
        if (kind == STORE_VEC_FACE)
            err_set(e, rc, "face %lld not found (or has no embedding)", (long long)face_id);
        else
            err_set(e, rc, "asset \"%s\" has no image embedding%s%s", asset_id,
                    model ? " of model " : "", model ? model : "");
    }
    return rc;
}

int search_images(search *s, const search_image_query *q, json_t **out, err_t *e)
{
    if (s == NULL || q == NULL || out == NULL || q->limit < 1 || q->limit > 1000)
        return err_set(e, ERR_INVAL, "search_images: bad arguments");
    *out = NULL;
    const char *model = q->model;
    float *own = NULL;
    char *own_model = NULL;
    const float *query = q->vector;
    int dim = q->dim;
    int rc = ERR_OK;
    if (q->asset_id != NULL) {
        const char *want = model != NULL ? model : search_image_model(s);
        rc = stored_vector(s, STORE_VEC_IMAGE, q->asset_id, 0, want, &own, &dim, &own_model, e);
        if (rc)
            return rc;
        query = own;
        model = own_model;
    }
    if (query == NULL) {
        free(own_model);
        return err_set(e, ERR_INVAL, "search_images: no query vector");
    }
    size_t k = (size_t)q->limit + (q->asset_id != NULL ? 1 : 0);
    index_hit *hits = xmalloc(k * sizeof *hits);
    size_t nh = 0;
    pthread_rwlock_rdlock(&s->lock);
    coll *c = pick(s->icolls, s->nicolls, model, s->image_model);
    keep_ctx kc = {.s = s, .exclude = 0, .filter = q->filter};
    if (q->asset_id != NULL)
        kc.exclude = asset_aid(s, q->asset_id, 0);
    rc = coll_search(c, "image", model, query, dim, q->limit, q->ef, q->min_score, keep_image,
                     &kc, hits, &nh, e);
    if (rc == ERR_OK) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nh; i++) {
            const asset_ent *a = &s->assets[hits[i].id - 1];
            json_t *o = json_object();
            json_object_set_new(o, "asset_id", json_string(a->asset_id));
            json_object_set_new(o, "score", json_real(round(hits[i].score * 1e6) / 1e6));
            json_object_set_new(o, "payload",
                                a->payload != NULL ? json_deep_copy(a->payload) : json_null());
            json_array_append_new(arr, o);
        }
        *out = arr;
    }
    pthread_rwlock_unlock(&s->lock);
    free(hits);
    free(own);
    free(own_model);
    return rc;
}

int search_faces(search *s, const search_face_query *q, json_t **out, err_t *e)
{
    if (s == NULL || q == NULL || out == NULL || q->limit < 1 || q->limit > 1000)
        return err_set(e, ERR_INVAL, "search_faces: bad arguments");
    *out = NULL;
    const char *model = q->model;
    float *own = NULL;
    char *own_model = NULL;
    const float *query = q->vector;
    int dim = q->dim;
    int rc = ERR_OK;
    if (q->face_id > 0) {
        char asset_id[STORE_ASSET_ID_MAX + 1] = "";
        pthread_rwlock_rdlock(&s->lock);
        face_ent *f = face_find(s, q->face_id);
        if (f != NULL)
            snprintf(asset_id, sizeof asset_id, "%s", s->assets[f->aid - 1].asset_id);
        pthread_rwlock_unlock(&s->lock);
        if (asset_id[0] == '\0')
            return err_set(e, ERR_NOENT, "face %lld not found (or has no embedding)",
                           (long long)q->face_id);
        rc =
            stored_vector(s, STORE_VEC_FACE, asset_id, q->face_id, NULL, &own, &dim, &own_model, e);
        if (rc)
            return rc;
        query = own;
        model = own_model;
    }
    if (query == NULL) {
        free(own_model);
        return err_set(e, ERR_INVAL, "search_faces: no query vector");
    }
    index_hit *hits = xmalloc((size_t)q->limit * sizeof *hits);
    size_t nh = 0;
    pthread_rwlock_rdlock(&s->lock);
    coll *c = pick(s->fcolls, s->nfcolls, model, NULL);
    keep_ctx kc = {.s = s, .exclude = q->face_id, .filter = NULL};
    rc = coll_search(c, "face", model, query, dim, q->limit, q->ef, q->min_score, keep_face, &kc,
                     hits, &nh, e);
    if (rc == ERR_OK) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nh; i++) {
            face_ent *f = face_find(s, hits[i].id);
            json_t *o = json_object();
            json_object_set_new(o, "face_id", json_integer(hits[i].id));
            json_object_set_new(o, "asset_id",
                                f != NULL ? json_string(s->assets[f->aid - 1].asset_id)
                                          : json_null());
            json_object_set_new(o, "person_id",
                                f != NULL && f->person_id > 0 ? json_integer(f->person_id)
                                                              : json_null());
            json_object_set_new(o, "score", json_real(round(hits[i].score * 1e6) / 1e6));
            json_array_append_new(arr, o);
        }
        *out = arr;
    }
    pthread_rwlock_unlock(&s->lock);
    free(hits);
    free(own);
    free(own_model);
    return rc;
}

static void index_stats_add(json_t *arr, const char *collection, const coll *c)
{
    json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:b, s:b}", "collection", collection,
                                         "model", c->model, "vectors",
                                         (json_int_t)index_size(c->ix), "hnsw",
                                         index_is_hnsw(c->ix), "building", index_building(c->ix)));
}

json_t *search_index_stats(search *s)
{
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->nicolls; i++)
        index_stats_add(arr, "images", &s->icolls[i]);
    for (size_t i = 0; i < s->nfcolls; i++)
        index_stats_add(arr, "faces", &s->fcolls[i]);
    pthread_rwlock_unlock(&s->lock);
    return arr;
}

json_t *search_stats(search *s)
{
    json_t *o = json_object();
    json_t *im = json_object();
    json_t *fa = json_object();
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->nicolls; i++)
        json_object_set_new(im, s->icolls[i].model,
                            json_integer((json_int_t)index_size(s->icolls[i].ix)));
    for (size_t i = 0; i < s->nfcolls; i++)
        json_object_set_new(fa, s->fcolls[i].model,
                            json_integer((json_int_t)index_size(s->fcolls[i].ix)));
    pthread_rwlock_unlock(&s->lock);
    json_object_set_new(o, "images", im);
    json_object_set_new(o, "faces", fa);
    return o;
}
