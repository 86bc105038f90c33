/*
 * index/people.c — face clustering into people (see people.h for the rule).
 *
 * people_assign() builds a private exact index over the faces it is given and
 * asks, for each unassigned face, for its neighbours within max_distance.
 * Rejected: reusing the search service's live face index — its contents move
 * under the pass as jobs commit, and a pass must see one consistent set of
 * faces and persons; copying the vectors once per pass is cheap next to the
 * neighbour queries. The exact index keeps a pass deterministic; for very
 * large collections index_opts would switch it to HNSW.
 *
 * No threads of its own: people_run() runs in the caller's thread (the search
 * service's feed thread, or `inferd people recluster`).
 */
#include "index/people.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"
#include "util/log.h"
#include "util/xalloc.h"

/* Neighbours fetched per face: enough to count min_faces and find a person. */
#define PEOPLE_K 64

static const struct {
    const char *model;
    float max_distance;
} people_model_defaults[] = {
    {"dlib-resnet", 0.40f},
    {"mobileface", 0.375f},
};

float people_default_max_distance(const char *model)
{
    for (size_t i = 0; model != NULL && i < sizeof people_model_defaults /
                                                sizeof people_model_defaults[0]; i++)
        if (strcmp(model, people_model_defaults[i].model) == 0)
            return people_model_defaults[i].max_distance;
    return PEOPLE_FALLBACK_MAX_DISTANCE;
}

static void resolve(const people_opts *o, int *min_faces, float *min_score)
{
    *min_faces = o != NULL && o->min_faces > 0 ? o->min_faces : PEOPLE_DEFAULT_MIN_FACES;
    float d = o != NULL && o->max_distance > 0 ? o->max_distance : PEOPLE_FALLBACK_MAX_DISTANCE;
    *min_score = 1.0f - d;
}

/* The person of the best hit other than `self` that has one, else 0. */
static int64_t nearest_person(const index_hit *hits, size_t nh, size_t self, const int64_t *person)
{
    for (size_t h = 0; h < nh; h++) {
        size_t j = (size_t)hits[h].id;
        if (j != self && person[j] != 0)
            return person[j];
    }
    return 0;
}

int people_assign(const float *vecs, size_t n, size_t dim, const people_opts *o, int64_t *person,
                  int *new_people)
{
    int dummy = 0;
    if (new_people == NULL)
        new_people = &dummy;
    *new_people = 0;
    if (n == 0)
        return ERR_OK;
    if (vecs == NULL || person == NULL || dim == 0)
        return ERR_INVAL;
    int min_faces;
    float min_score;
    resolve(o, &min_faces, &min_score);
    index_opts io = {.hnsw_threshold = SIZE_MAX};
    index_t *ix = NULL;
    int rc = index_new(dim, &io, &ix);
    for (size_t i = 0; rc == ERR_OK && i < n; i++)
        rc = index_add(ix, (int64_t)i, vecs + i * dim, dim);
    size_t k = (size_t)min_faces > PEOPLE_K ? (size_t)min_faces : PEOPLE_K;
    index_hit *hits = xmalloc(k * sizeof *hits);
    unsigned char *deferred = xcalloc(n, 1);
    int64_t next = -1;
    /* Pass 1: core faces found or join people. */
    for (size_t i = 0; rc == ERR_OK && i < n; i++) {
        if (person[i] != 0)
            continue;
        size_t nh = 0;
        rc = index_search(ix, vecs + i * dim, dim, k, 0, min_score, NULL, NULL, hits, &nh);
        if (rc)
            break;
        if (nh < (size_t)min_faces) {
            deferred[i] = 1;
            continue;
        }
        int64_t p = nearest_person(hits, nh, i, person);
        if (p == 0) {
            p = next--;
            (*new_people)++;
        }
        person[i] = p;
    }
    /* Pass 2: border faces join the nearest person within reach. */
    for (size_t i = 0; rc == ERR_OK && i < n; i++) {
        if (!deferred[i])
            continue;
        size_t nh = 0;
        rc = index_search(ix, vecs + i * dim, dim, k, 0, min_score, NULL, NULL, hits, &nh);
        if (rc == ERR_OK)
            person[i] = nearest_person(hits, nh, i, person);
    }
    free(deferred);
    free(hits);
    index_free(ix);
    return rc;
}

typedef struct {
    char *model;
    size_t n, cap, dim;
    float *vecs;
    int64_t *face_ids;
    int64_t *person;
} people_group;

static void group_add(people_group *g, const store_vec *v)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 256;
        g->vecs = xrealloc(g->vecs, g->cap * g->dim * sizeof(float));
        g->face_ids = xrealloc(g->face_ids, g->cap * sizeof(int64_t));
        g->person = xrealloc(g->person, g->cap * sizeof(int64_t));
    }
    memcpy(g->vecs + g->n * g->dim, v->vector, g->dim * sizeof(float));
    g->face_ids[g->n] = v->face_id;
    g->person[g->n] = v->person_id;
    g->n++;
}

/* Creates the people for the new clusters of `g` and writes its new assignments. */
static int group_commit(store *s, people_group *g, const int64_t *before, int nnew,
                        people_stats *st, err_t *e)
{
    int64_t *ids = xcalloc((size_t)nnew + 1, sizeof *ids);
    int rc = ERR_OK;
    for (int i = 0; rc == ERR_OK && i < nnew; i++)
        rc = store_person_create(s, NULL, &ids[i], e);
    int64_t fb[1000], pb[1000];
    int nb = 0;
    for (size_t i = 0; rc == ERR_OK && i <= g->n; i++) {
        if (i < g->n && before[i] == 0 && g->person[i] != 0) {
            int64_t p = g->person[i];
            fb[nb] = g->face_ids[i];
            pb[nb] = p < 0 ? ids[-p - 1] : p;
            nb++;
        }
        if (nb == 1000 || (i == g->n && nb > 0)) {
            int done = 0;
            rc = store_faces_assign(s, fb, pb, nb, &done, e);
            st->assigned += done;
            nb = 0;
        }
    }
    for (size_t i = 0; i < g->n; i++)
        if (g->person[i] == 0)
            st->unassigned++;
    st->new_people += nnew;
    free(ids);
    return rc;
}

int people_run(store *s, const char *model, const people_opts *o, int full, people_stats *st,
               err_t *e)
{
    people_stats local = {0};
    if (st == NULL)
        st = &local;
    memset(st, 0, sizeof *st);
    int rc = full ? store_people_reset(s, e) : ERR_OK;
    if (rc)
        return rc;
    people_group *groups = NULL;
    size_t ng = 0;
    store_vec *page = NULL;
    int n = 0;
    store_vec last = {0};
    char last_model[8] = "";
    last.model = last_model;
    int have_last = 0;
    for (;;) {
        rc = store_vectors_read(s, STORE_VEC_FACE, NULL, have_last ? &last : NULL, 1000, &page, &n,
                                e);
        if (rc)
            break;
        for (int i = 0; i < n; i++) {
            const store_vec *v = &page[i];
            if (model != NULL && strcmp(v->model, model) != 0)
                continue;
            people_group *g = NULL;
            for (size_t k = 0; k < ng; k++)
                if (strcmp(groups[k].model, v->model) == 0 && groups[k].dim == (size_t)v->dim)
                    g = &groups[k];
            if (g == NULL) {
                groups = xrealloc(groups, (ng + 1) * sizeof *groups);
                g = &groups[ng++];
                memset(g, 0, sizeof *g);
                g->model = xstrdup(v->model);
                g->dim = (size_t)v->dim;
            }
            group_add(g, v);
            st->faces++;
        }
        if (n > 0) {
            last.face_id = page[n - 1].face_id;
            have_last = 1;
        }
        int more = n == 1000;
        store_vec_array_free(page, n);
        page = NULL;
        if (!more)
            break;
    }
    for (size_t k = 0; rc == ERR_OK && k < ng; k++) {
        people_group *g = &groups[k];
        int64_t *before = xmalloc(g->n * sizeof *before);
        memcpy(before, g->person, g->n * sizeof *before);
        int nnew = 0;
        people_opts go = {.min_faces = o != NULL ? o->min_faces : 0,
                          .max_distance = o != NULL && o->max_distance > 0
                                              ? o->max_distance
                                              : people_default_max_distance(g->model)};
        rc = people_assign(g->vecs, g->n, g->dim, &go, g->person, &nnew);
        if (rc)
            err_set(e, rc, "people: clustering %zu faces of %s failed", g->n, g->model);
        else
            rc = group_commit(s, g, before, nnew, st, e);
        free(before);
    }
    for (size_t k = 0; k < ng; k++) {
        free(groups[k].model);
        free(groups[k].vecs);
        free(groups[k].face_ids);
        free(groups[k].person);
    }
    free(groups);
    if (rc == ERR_OK && (st->assigned > 0 || st->new_people > 0))
        log_info("people", "faces=%d assigned=%d new_people=%d unassigned=%d full=%d", st->faces,
                 st->assigned, st->new_people, st->unassigned, full);
    return rc;
}
