/*
 * api/immich.h — Immich's machine-learning API on its own listener
 * (--immich-listen), so that an Immich server can use inferd as its "remote
 * machine learning" URL.
 *
 * Routes, as Immich's server calls them (it builds each URL with
 * new URL('/predict', base), so they live at the origin root):
 *   GET  /         {"message": "Immich ML"}
 *   GET  /ping     "pong" (text/plain) once the models are loaded; 503 before
 *   POST /predict  multipart/form-data: "entries" (JSON text) and either
 *                  "image" (the file's bytes) or "text"
 * No token: Immich sends no credentials, so the listener is off by default
 * and is meant for a private network. It computes and stores nothing: the
 * job API, the store and the search routes are not reachable through it.
 *
 * The tasks of "entries" and what answers them:
 *   {"clip": {"visual": {"modelName": N}}}          the image embedder, named N
 *   {"clip": {"textual": {"modelName": N, "options": {"language": L}}}}
 *                                                   the CLIP text encoder of N
 *   {"facial-recognition": {"detection": {"modelName": N, "options": {"minScore": S}},
 *                           "recognition": {"modelName": N}}}
 *                                                   the detector + face embedder
 * The model named must be the one this process runs (a model is loaded at
 * start, never on demand): another name is answered 422 naming the loaded
 * one. Answers are shaped as Immich parses them: each task's result under its
 * key, embeddings as a string holding a JSON array, faces as
 * [{"boundingBox": {"x1","y1","x2","y2"} (whole pixels), "embedding", "score"}],
 * plus "imageHeight"/"imageWidth" for an image. A face embedding shorter than
 * 512 is zero-padded to 512 (Immich's column): cosine distances are unchanged.
 * Errors are FastAPI's shape, {"detail": "..."}: 400 no input, 413 too large,
 * 415 not a form, 422 bad entries / a model not loaded / an undecodable image,
 * 503 models loading or no slot free within --immich-wait-ms.
 *
 * Threading: libmicrohttpd runs one thread per connection plus its listener;
 * one reaper thread closes connections that trickle their headers. A /predict
 * waits on `slots` (a counting semaphore of cfg->slots) for at most
 * --immich-wait-ms, then runs the pipeline on its connection thread.
 */
#ifndef INFERD_API_IMMICH_H
#define INFERD_API_IMMICH_H

#include "api/api.h"
#include "util/err.h"

typedef struct immich_srv immich_srv;

/*
 * Binds deps->cfg->immich_host:immich_port and starts serving. `deps` must
 * outlive the server (its pl and clip are read atomically per request). On
 * success `*out` is the caller's: immich_free(). Fails with ERR_IO when the
 * address cannot be bound.
 */
int immich_start(api_deps *deps, immich_srv **out, err_t *e);

/* The port actually bound (useful with port 0). */
int immich_port(const immich_srv *s);

/* Stops accepting, wakes requests waiting for a slot (answered 503), joins the threads. */
void immich_stop(immich_srv *s);

/* immich_stop, then frees. NULL is a no-op. */
void immich_free(immich_srv *s);

#endif
