/*
 * index/people.h — grouping faces into people, in the spirit of Immich's
 * incremental face clustering (DBSCAN-like):
 *
 *  - a face is a *core* face when at least `min_faces` faces (itself
 *    included) lie within cosine distance `max_distance` (score >=
 *    1 - max_distance) of it;
 *  - a core face joins the person of its nearest neighbour within that
 *    distance that has one, or founds a new person;
 *  - a face that is not core is deferred: after every core face was placed,
 *    it joins the person of its nearest assigned neighbour within the
 *    distance, if any; otherwise it stays unassigned and is revisited on the
 *    next pass (when more faces may have arrived).
 * Faces already assigned keep their person (manual merges survive); a full
 * recluster resets everything first.
 *
 * people_assign() is the pure algorithm over an array of vectors;
 * people_run() is the pass over the store's faces (reads every face vector,
 * writes new people and assignments).
 */
#ifndef INFERD_INDEX_PEOPLE_H
#define INFERD_INDEX_PEOPLE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

typedef struct {
    int min_faces;      /* [3] faces within max_distance (itself included) to found a person */
    float max_distance; /* cosine distance (1 - dot); <= 0: the face model's own default */
} people_opts;

#define PEOPLE_DEFAULT_MIN_FACES 3

/*
 * The cosine distance within which two faces of `model` are one person when
 * the operator sets none (--people-max-distance), measured per model because
 * every embedder spreads faces differently:
 *
 *  dlib-resnet (the default)  0.40   derived on real same-person photos:
 *      ../shared/data/faces-dev (4 people x 5 scenes) with the 22 faces of
 *      the face-api group photos (21 women: one is in two photos) as other
 *      people. Same-person pairs are at most 0.389 apart (that woman's two
 *      photos, edited copies included), different people at least 0.481.
 *      Clustering gives 4 clean people on faces-dev for every max_distance
 *      from 0.23 to 0.51 (min_faces 2..4), and 21 clean people on the group
 *      photos' originals and edited copies from 0.40 to 0.55. 0.40 is the
 *      low end of where both agree, on purpose: a bigger library chains more
 *      (more photos of one person bridge wider gaps, more strangers bring
 *      more near pairs), so splits heal and merges spread. See
 *      docs/internals/faces.md and bench/faces.
 *  mobileface                 0.375  tuned on the face-api group photos in
 *      original, mirrored, cropped, re-encoded and pasted copies
 *      (tests/unit/test_people.c: 0.30..0.45 separates all 22 people); on
 *      real photos of one person in different scenes it splits them.
 *  any other model            0.5    Immich's default, for ArcFace-class
 *      embedders trained for cosine distance.
 *
 * NULL counts as any other model.
 */
float people_default_max_distance(const char *model);

#define PEOPLE_FALLBACK_MAX_DISTANCE 0.5f

/*
 * Clusters `n` unit vectors of `dim` floats (row-major in `vecs`).
 * `person[i]` in: the face's person (> 0) or 0 (unassigned); out: unchanged
 * for assigned faces, else the person it joins: an existing id, or a new
 * cluster numbered -1, -2, ... (the caller creates those), or 0 (still
 * unassigned). `*new_people` (may be NULL) receives how many new clusters.
 * Processing order is by index (callers pass faces in id order, so that a
 * pass is deterministic). ERR_INVAL, ERR_NOMEM.
 */
int people_assign(const float *vecs, size_t n, size_t dim, const people_opts *o, int64_t *person,
                  int *new_people);

/* (people_assign with max_distance <= 0 uses PEOPLE_FALLBACK_MAX_DISTANCE: it knows no model.) */

typedef struct {
    int faces;      /* faces with vectors of the model */
    int assigned;   /* faces newly assigned by this pass */
    int new_people; /* people created */
    int unassigned; /* faces left without a person */
} people_stats;

/*
 * One pass over the faces of `model` (NULL: every model, each clustered
 * apart, each at its own people_default_max_distance() unless o->max_distance
 * is set) in the store: with `full`, store_people_reset() first. Creates the
 * new people and writes the assignments (store_faces_assign, which never
 * overrides a face that got a person meanwhile). `st` (may be NULL) receives
 * counts. Store errors as they come.
 */
int people_run(store *s, const char *model, const people_opts *o, int full, people_stats *st,
               err_t *e);

#endif
