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
    float max_distance; /* [0.375] cosine distance (1 - dot) */
} people_opts;

#define PEOPLE_DEFAULT_MIN_FACES 3
/*
 * Tuned on the face-api group photos with the default face embedder
 * (mobileface, 256-D) in tests/unit/test_people.c: 22 people, 108 faces in
 * original, mirrored, cropped, JPEG-60 and pasted copies. Every max_distance
 * from 0.30 to 0.45 (min_faces 2 or 3) gives exactly 22 clean clusters; 0.25
 * splits people, 0.50 merges two pairs (the nearest faces of two different
 * people are 0.473 apart). 0.375 sits in the middle of that window. Immich's
 * 0.5 suits ArcFace-class embedders, not this smaller model. min_faces 3 as
 * Immich; 4 leaves a person with three faces unassigned.
 */
#define PEOPLE_DEFAULT_MAX_DISTANCE 0.375f

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

typedef struct {
    int faces;      /* faces with vectors of the model */
    int assigned;   /* faces newly assigned by this pass */
    int new_people; /* people created */
    int unassigned; /* faces left without a person */
} people_stats;

/*
 * One pass over the faces of `model` (NULL: every model, each clustered
 * apart) in the store: with `full`, store_people_reset() first. Creates the
 * new people and writes the assignments (store_faces_assign, which never
 * overrides a face that got a person meanwhile). `st` (may be NULL) receives
 * counts. Store errors as they come.
 */
int people_run(store *s, const char *model, const people_opts *o, int full, people_stats *st,
               err_t *e);

#endif
