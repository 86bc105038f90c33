/*
 * main.c — the inferd binary: parses the command line and dispatches
 * subcommands. Each subcommand validates its own flags and exits 2 on a usage
 * error, naming the flag.
 *
 *   inferd serve [options]              the daemon: HTTP API + worker slots in one process
 *   inferd api [options]                the HTTP API alone (no slots, no models)
 *   inferd worker [options]             worker slots alone (+ /health, /ready, /metrics)
 *   inferd analyze [options] IMAGE...   run every model on images, print JSON lines
 *   inferd people recluster [options]   forget every person, cluster all faces again
 *   inferd version                      versions of inferd and its runtimes
 *
 * Roles. api and worker are serve cut in two along the store: they share
 * one database (PostgreSQL for several processes) and nothing else. Each
 * process has a worker id (--worker-id, default HOSTNAME-PID): the lease
 * owner of its jobs and of the MQTT publisher lease, recorded on each job
 * it ran as worker_id. The api role loads no models, so /v1/predict there
 * answers 503 predict_unavailable: lazily loading every model into the API
 * process on the first predict call was rejected, as it would put model
 * memory and inference CPU into the process that must stay responsive
 * (run `inferd serve` where synchronous predictions are wanted).
 *
 * Threading (serve, api, worker): the main thread blocks SIGTERM/SIGINT/SIGHUP before any
 * other thread exists, so every thread (libmicrohttpd, worker, publisher,
 * ONNX Runtime, libvips, libcurl) inherits the mask and the main thread alone
 * receives them, in sigwait. It owns every object and tears them down in
 * reverse order after the signal.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "api/api.h"
#include "api/immich.h"
#include "client/index.h"
#include "events/events.h"
#include "fetch/fetch.h"
#include "infer/clip.h"
#include "infer/infer.h"
#include "fetch/models_fetch.h"
#include "index/people.h"
#include "index/search.h"
#include "pipeline/analyze.h"
#include "queue/listen.h"
#include "queue/worker.h"
#include "store/store.h"
#include "util/config.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/redact.h"
#include "util/xalloc.h"

static const char usage_top[] =
    "usage: inferd COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  serve              run the daemon: HTTP API and worker slots (see inferd help serve)\n"
    "  api                run the HTTP API alone; workers share its --db (inferd help api)\n"
    "  worker             run worker slots alone, + /health on --listen (inferd help worker)\n"
    "  analyze IMAGE...   run face detection, face and image embedding on image files and\n"
    "                     print one JSON object per image per line\n"
    "  models fetch NAME  download a model directory (resumable, sha256-checked); models list\n"
    "                     shows the installed ones (inferd models help)\n"
    "  index DIR...       submit the photos under DIR to a running inferd, show progress\n"
    "                     (inferd help index)\n"
    "  people recluster   forget every person and cluster all faces again (inferd help people)\n"
    "  version            print versions of inferd, ONNX Runtime and libvips\n"
    "  help [COMMAND]     show help\n";

static void print_error_line(const char *path, const err_t *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_t *er = json_object();
    json_object_set_new(er, "code", json_string(err_name(e->code)));
    json_object_set_new(er, "message", json_string(e->msg));
    json_object_set_new(o, "error", er);
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    puts(s);
    free(s);
    json_decref(o);
}

/*
 * inferd analyze [options] IMAGE...: the pipeline in this process, one JSON
 * line per image. Options come from the config table (CONFIG_ROLE_ANALYZE:
 * the model rows the worker reads, from the same flags and INFERD_*
 * variables). An embedder given as "" is skipped; one left out is the
 * pipeline's default.
 */
static int cmd_analyze(int argc, char **argv)
{
    static const char cmdname[] = "inferd analyze";
    config cfg;
    char msg[600];
    argv[0] = (char *)cmdname;
    int prc = config_parse_role(&cfg, CONFIG_ROLE_ANALYZE, argc, argv, msg, sizeof msg);
    if (prc == 1)
        return 0;
    if (prc != 0) {
        config_print_error(cmdname, msg);
        return 2;
    }
    if (cfg.verbose)
        log_set_level(LOG_DEBUG);
    pipeline_opts o = {0};
    o.models_dir = cfg.models_dir;
    if (config_given(&cfg, "detector"))
        o.detector = cfg.detector;
    if (config_given(&cfg, "face-embedder"))
        o.face_embedder = cfg.face_embedder; /* "" skips */
    if (config_given(&cfg, "image-embedder"))
        o.image_embedder = cfg.image_embedder;
    o.intra_op_threads = cfg.intra_op_threads;
    o.decode.max_side = cfg.max_side;
    o.decode.max_pixels = cfg.max_pixels;
    o.detect.score_threshold = cfg.face_threshold;
    o.detect.no_tiles = cfg.no_tiles;
    o.verify_models = cfg.verify_models;

    err_t e;
    err_clear(&e);
    pipeline *p = NULL;
    if (pipeline_new(&o, &p, &e) != ERR_OK) {
        fprintf(stderr, "%s: %s\n", cmdname, e.msg);
        return 2;
    }
    int failed = 0;
    for (int i = 0; i < cfg.nargs; i++) {
        const char *path = cfg.args[i];
        analysis *a = NULL;
        err_clear(&e);
        if (pipeline_analyze_file(p, path, PIPELINE_ALL, &a, &e) != ERR_OK) {
            print_error_line(path, &e);
            failed = 1;
        } else {
            json_t *j = json_object();
            json_object_set_new(j, "path", json_string(path));
            json_t *r = analysis_to_json(a, cfg.vectors);
            json_object_update(j, r);
            json_decref(r);
            char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(7));
            puts(s);
            free(s);
            json_decref(j);
            analysis_free(a);
        }
        fflush(stdout);
    }
    pipeline_free(p);
    vision_shutdown();
    return failed;
}

/*
 * inferd serve|api|worker: config -> data dir -> store -> fetcher -> events
 * -> api (not ready; the worker role: /health, /ready, /metrics only) ->
 * models -> worker -> job listener -> wait for SIGTERM/SIGINT -> listener
 * stop -> worker_stop (grace) -> events_stop (flush) -> api_stop -> free.
 * The api role stops after the api step. The API starts before the models
 * load so that /health answers and /ready says 503 meanwhile.
 * Exit status: 0 after a signal, 1 when a subsystem fails to start, 2 on a
 * usage error.
 */
static int cmd_run(config_role role, int argc, char **argv)
{
    config cfg;
    char msg[600];
    char cmdname[32];
    snprintf(cmdname, sizeof cmdname, "inferd %s", config_role_name(role));
    argv[0] = cmdname;
    int prc = config_parse_role(&cfg, role, argc, argv, msg, sizeof msg);
    if (prc == 1)
        return 0;
    if (prc != 0) {
        config_print_error(cmdname, msg);
        return 2;
    }
    int runs_jobs = role != CONFIG_ROLE_API;
    if (cfg.verbose)
        log_set_level(LOG_DEBUG);

    /* Before any thread exists: every thread inherits this mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    err_t e;
    err_clear(&e);
    store *st = NULL;
    fetcher *fe = NULL;
    events *ev = NULL;
    api *ap = NULL;
    immich_srv *im = NULL;
    pipeline *pl = NULL;
    worker *wk = NULL;
    queue_listen *ql = NULL;
    search *srch = NULL;
    infer_env *clip_env = NULL;
    clip_model *clip_own = NULL;
    int fetch_inited = 0;
    api_deps deps;
    memset(&deps, 0, sizeof deps);

    char *db_shown = redact_url(cfg.db_url), *mqtt_shown = redact_url(cfg.mqtt_url);
    log_info("main",
             "inferd %s %s worker_id=%s listen=%s:%d db=%s data_dir=%s slots=%d "
             "intra_op_threads=%d models=%s media_root=%s mqtt=%s auth=%s",
             INFERD_VERSION, config_role_name(role), cfg.worker_id, cfg.listen_host,
             cfg.listen_port, db_shown, cfg.data_dir, runs_jobs ? cfg.slots : 0,
             cfg.intra_op_threads, runs_jobs ? cfg.models_dir : "(none)",
             cfg.media_root[0] ? cfg.media_root : "(none)",
             cfg.mqtt_url[0] ? mqtt_shown : "(none)", cfg.token[0] ? "token" : "none");
    free(db_shown);
    free(mqtt_shown);

    /*
     * The data dir holds face embeddings (biometric data) and uploaded photos:
     * everything the daemon creates is private to its user, and a data dir
     * that others can read or enter is closed.
     */
    umask(077);
    if (fileio_mkdir_p(cfg.data_dir, 0755, NULL) != 0) {
        log_error("main", "cannot create data dir %s: %s", cfg.data_dir, strerror(errno));
        goto out;
    }
    struct stat dst;
    if (stat(cfg.data_dir, &dst) == 0 && (dst.st_mode & 077) != 0) {
        if (chmod(cfg.data_dir, dst.st_mode & 0700) == 0)
            log_info("main", "made data dir %s private (was %03o)", cfg.data_dir,
                     (unsigned)(dst.st_mode & 0777));
        else
            log_warn("main", "data dir %s is readable by others and cannot be made private: %s",
                     cfg.data_dir, strerror(errno));
    }
    if (store_open(cfg.db_url, NULL, &st, &e) != ERR_OK) {
        log_error("main", "store: %s", e.msg);
        goto out;
    }
    if (fetch_global_init(&e) != ERR_OK) {
        log_error("main", "fetch: %s", e.msg);
        goto out;
    }
    fetch_inited = 1;
    char spool[1100];
    snprintf(spool, sizeof spool, "%s/uploads", cfg.data_dir);
    fetch_opts fo = {
        .media_root = cfg.media_root[0] != '\0' ? cfg.media_root : NULL,
        .spool_dir = spool,
        .max_bytes = cfg.max_body,
        .timeout_ms = cfg.fetch_timeout_ms,
        .allow_private = cfg.allow_private_urls,
    };
    if (fetch_new(&fo, &fe, &e) != ERR_OK) {
        log_error("main", "fetch: %s", e.msg);
        goto out;
    }
    events_opts eo = {
        .mqtt_url = cfg.mqtt_url,
        .tls_ca_file = cfg.mqtt_ca_file,
        .tls_cert_file = cfg.mqtt_cert_file,
        .tls_key_file = cfg.mqtt_key_file,
        .client_id = cfg.worker_id,
        .poll_ms = (int)cfg.poll_ms,
        .lease_owner = cfg.worker_id,
    };
    if (events_new(st, &eo, &ev, &e) != ERR_OK || events_start(ev, &e) != ERR_OK) {
        log_error("main", "events: %s", e.msg);
        goto out;
    }

    deps.cfg = &cfg;
    deps.st = st;
    deps.fetch = fe;
    deps.ev = ev;
    deps.role = config_role_name(role);
    deps.health_only = role == CONFIG_ROLE_WORKER;
    atomic_init(&deps.wk, NULL);
    atomic_init(&deps.pl, NULL);
    atomic_init(&deps.srch, NULL);
    atomic_init(&deps.clip, NULL);
    atomic_init(&deps.clip_missing, NULL);
    if (role != CONFIG_ROLE_WORKER && cfg.clip_model[0] != '\0') {
        infer_env_opts io = {0};
        if (infer_env_new(&io, &clip_env, &e) != ERR_OK ||
            clip_model_load(clip_env, cfg.clip_model, &clip_own, &e) != ERR_OK) {
            log_error("main", "--clip-model %s: %s", cfg.clip_model, e.msg);
            goto out;
        }
        atomic_store(&deps.clip, clip_own);
        log_info("main", "text search: CLIP text encoder from %s", cfg.clip_model);
    } else if (role == CONFIG_ROLE_API) {
        atomic_store(&deps.clip_missing,
                     "this inferd api process loads no models; start it with --clip-model DIR "
                     "(a CLIP model directory)");
    }
    /* One descriptor per connection, plus the store's, models' and uploads': use the hard
     * limit, and hold no more connections than it allows. */
    struct rlimit nof;
    if (getrlimit(RLIMIT_NOFILE, &nof) == 0) {
        if (nof.rlim_cur < nof.rlim_max) {
            nof.rlim_cur = nof.rlim_max;
            setrlimit(RLIMIT_NOFILE, &nof);
            getrlimit(RLIMIT_NOFILE, &nof);
        }
        if (nof.rlim_cur != RLIM_INFINITY && (rlim_t)cfg.max_connections + 128 > nof.rlim_cur) {
            int fit = nof.rlim_cur > 160 ? (int)nof.rlim_cur - 128 : 32;
            log_warn("main", "--max-connections %d lowered to %d: the open-files limit is %llu",
                     cfg.max_connections, fit, (unsigned long long)nof.rlim_cur);
            cfg.max_connections = fit;
        }
    }
    if (api_start(&deps, &ap, &e) != ERR_OK) {
        log_error("main", "api: %s", e.msg);
        goto out;
    }
    /* Search: serve and api roles (workers answer only /health). */
    if (role != CONFIG_ROLE_WORKER) {
        search_opts so = {
            .st = st,
            .ev = ev,
            .poll_ms = (int)cfg.poll_ms,
            .owner = cfg.worker_id,
            /* The stored model name is the model folder; an absent index falls back to the largest.
             */
            .image_model = cfg.image_embedder[0] != '\0' ? cfg.image_embedder
                                                         : PIPELINE_DEFAULT_IMAGE_EMBEDDER,
            .index =
                {
                    .hnsw_threshold = (size_t)cfg.hnsw_threshold,
                    .M = (uint32_t)cfg.hnsw_m,
                    .ef_construction = (uint32_t)cfg.hnsw_ef_construction,
                    .ef_search = (uint32_t)cfg.hnsw_ef,
                },
            .people = {.min_faces = cfg.people_min_faces, .max_distance = cfg.people_max_distance},
        };
        char people_dist[32] = "per-model";
        if (cfg.people_max_distance > 0)
            snprintf(people_dist, sizeof people_dist, "%g", (double)cfg.people_max_distance);
        log_info("main",
                 "search hnsw_threshold=%d hnsw_m=%d hnsw_ef_construction=%d hnsw_ef=%d "
                 "people_min_faces=%d people_max_distance=%s duplicates_threshold=%g",
                 cfg.hnsw_threshold, cfg.hnsw_m, cfg.hnsw_ef_construction, cfg.hnsw_ef,
                 cfg.people_min_faces, people_dist, (double)cfg.duplicates_threshold);
        if (search_new(&so, &srch, &e) != ERR_OK || search_start(srch, &e) != ERR_OK) {
            log_error("main", "search: %s", e.msg);
            goto out;
        }
        atomic_store(&deps.srch, srch);
    }
    int v6 = strchr(cfg.listen_host, ':') != NULL;
    log_info("main", "listening on %s%s%s:%d", v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "",
             api_port(ap));
    if (cfg.immich_listen[0] != '\0') {
        if (immich_start(&deps, &im, &e) != ERR_OK) {
            log_error("main", "--immich-listen: %s", e.msg);
            goto out;
        }
        v6 = strchr(cfg.immich_host, ':') != NULL;
        log_info("main", "immich machine-learning API on %s%s%s:%d (no token)", v6 ? "[" : "",
                 cfg.immich_host, v6 ? "]" : "", immich_port(im));
    }
    if (!runs_jobs) {
        log_info("main", "ready worker_id=%s role=api (no slots, no models)", cfg.worker_id);
        goto wait;
    }

    /* Decodes in flight share one memory budget (an interlaced PNG is decoded whole). */
    size_t budget = cfg.decode_memory;
    if (budget == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        budget = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 4 : (size_t)1 << 30;
        if (budget > (size_t)1 << 30)
            budget = (size_t)1 << 30;
    }
    vision_set_decode_budget((int64_t)budget);
    log_info("main", "decode memory budget %zu MiB", budget >> 20);
    pipeline_opts po;
    memset(&po, 0, sizeof po);
    po.models_dir = cfg.models_dir;
    if (cfg.image_embedder[0] != '\0')
        po.image_embedder = cfg.image_embedder;
    if (cfg.face_embedder[0] != '\0')
        po.face_embedder = cfg.face_embedder;
    if (cfg.detector[0] != '\0')
        po.detector = cfg.detector;
    po.intra_op_threads = cfg.intra_op_threads;
    po.decode.max_side = cfg.max_side;
    po.decode.max_pixels = cfg.max_pixels;
    po.detect.score_threshold = cfg.face_threshold;
    if (pipeline_new(&po, &pl, &e) != ERR_OK) {
        log_error("main", "models: %s", e.msg);
        goto out;
    }
    atomic_store(&deps.pl, pl);
    log_info("main", "models loaded from %s", cfg.models_dir);
    if (clip_own == NULL) {
        clip_model *cm = pipeline_clip(pl);
        if (cm != NULL)
            atomic_store(&deps.clip, (void *)cm);
        else
            atomic_store(&deps.clip_missing,
                         "the image embedder is not a CLIP model directory and no --clip-model "
                         "was given");
    }

    worker_opts wo = {
        .st = st,
        .pl = pl,
        .fetch = fe,
        .owner = cfg.worker_id,
        .slots = cfg.slots,
        .slot_idle = strcmp(cfg.slot_priority, "idle") == 0,
        .lease_ms = cfg.lease_ms,
        .poll_ms = cfg.poll_ms,
        .retry_base_ms = cfg.retry_base_ms,
        .job_timeout_ms = cfg.job_timeout_ms,
    };
    /*
     * Jobs still running under this worker id belong to an earlier run of
     * this process that died (ids are unique per live process, README
     * "Scaling out"): our heartbeat would keep their leases alive forever,
     * so hand them back to the queue first. With the default id (the pid is
     * in it) there are none.
     */
    int nrel = 0;
    if (store_job_release(st, cfg.worker_id, &nrel, &e) != ERR_OK)
        log_warn("main", "releasing jobs of an earlier worker_id=%s: %s", cfg.worker_id, e.msg);
    else if (nrel > 0)
        log_warn("main", "released=%d jobs left running by an earlier worker_id=%s", nrel,
                 cfg.worker_id);
    err_clear(&e);
    if (worker_start(&wo, &wk, &e) != ERR_OK) {
        log_error("main", "worker: %s", e.msg);
        goto out;
    }
    atomic_store(&deps.wk, wk);
    /* Cross-process wake-ups: NOTIFY on PostgreSQL; on SQLite the poll does it. */
    if (queue_listen_start(st, wk, 0, &ql, &e) != ERR_OK) {
        log_error("main", "listen: %s", e.msg);
        goto out;
    }
    log_info("main", "ready worker_id=%s role=%s slots=%d wakeups=%s", cfg.worker_id,
             config_role_name(role), cfg.slots,
             strcmp(store_backend(st), "postgres") == 0 ? "notify" : "poll");

wait:;
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0 || sig == SIGHUP) {
        if (sig == SIGHUP)
            log_info("main", "SIGHUP ignored (configuration is read at start only)");
    }
    log_info("main", "signal=%s: stopping (grace %lld ms)", sig == SIGTERM ? "TERM" : "INT",
             (long long)cfg.grace_ms);
    status = 0;

out:
    queue_listen_stop(ql);
    if (wk != NULL)
        worker_stop(wk, cfg.grace_ms);
    /* A slot still inside a fetch or model run past the grace has had its job
     * released (it will not commit); worker_free would wait for that run to end.
     * The process must exit within the grace, so such threads are abandoned:
     * no store, pipeline or fetcher is freed under them, and _exit skips the
     * libraries' exit handlers that could pull state from under them. */
    int abandon = 0;
    if (wk != NULL) {
        worker_stats ws;
        worker_get_stats(wk, &ws);
        abandon = ws.busy;
    }
    if (ev != NULL)
        events_stop(ev, 2000);
    search_stop(srch);
    immich_free(im);
    if (ap != NULL)
        api_stop(ap);
    api_free(ap);
    atomic_store(&deps.srch, NULL);
    search_free(srch);
    atomic_store(&deps.clip, NULL);
    clip_model_free(clip_own);
    infer_env_free(clip_env);
    if (abandon > 0) {
        log_warn("main", "exiting with %d slot(s) still busy past the grace; their jobs were "
                 "released to queued", abandon);
        log_info("main", "stopped status=%d", status);
        fflush(NULL);
        _exit(status);
    }
    atomic_store(&deps.wk, NULL);
    if (wk != NULL)
        worker_free(wk);
    atomic_store(&deps.pl, NULL);
    pipeline_free(pl);
    events_free(ev);
    fetch_free(fe);
    if (fetch_inited)
        fetch_global_cleanup();
    store_close(st);
    if (pl != NULL)
        vision_shutdown();
    log_info("main", "stopped status=%d", status);
    return status;
}

/*
 * inferd people recluster [options]: forgets every person and clusters all
 * faces again (people.h), holding the "people" lease so that no serve/api
 * process clusters meanwhile. Its options are the config table's
 * (CONFIG_ROLE_RECLUSTER: --db, --data-dir and the --people-* values, from
 * flags or the same INFERD_* variables as the daemons), so that a recluster
 * run in the daemons' environment groups faces as their passes do.
 * --min-faces and --max-distance, the names before the config table had
 * them, are accepted as aliases (the table's `alias` column). Exit status:
 * 0 done, 1 store error, 2 usage.
 */
static int cmd_people(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "recluster") != 0) {
        fputs(config_usage_role(CONFIG_ROLE_RECLUSTER), stderr);
        return 2;
    }
    static const char args0[] = "inferd people recluster";
    argv[1] = (char *)args0; /* the command name in messages */
    config cfg;
    char msg[600];
    int prc = config_parse_role(&cfg, CONFIG_ROLE_RECLUSTER, argc - 1, argv + 1, msg, sizeof msg);
    if (prc == 1)
        return 0;
    if (prc != 0) {
        config_print_error(args0, msg);
        return 2;
    }
    if (cfg.verbose)
        log_set_level(LOG_DEBUG);
    people_opts po = {.min_faces = cfg.people_min_faces, .max_distance = cfg.people_max_distance};
    const char *db = cfg.db_url;
    err_t e;
    err_clear(&e);
    store *st = NULL;
    if (store_open(db, NULL, &st, &e) != ERR_OK) {
        fprintf(stderr, "inferd people recluster: %s\n", e.msg);
        return 1;
    }
    char owner[64];
    snprintf(owner, sizeof owner, "recluster-%ld", (long)getpid());
    int rc = store_leader_acquire(st, STORE_LEADER_PEOPLE, owner, 600000, &e);
    people_stats ps = {0};
    if (rc == ERR_OK)
        rc = people_run(st, NULL, &po, 1, &ps, &e);
    err_t ignore;
    store_leader_release(st, STORE_LEADER_PEOPLE, owner, &ignore);
    store_close(st);
    if (rc != ERR_OK) {
        fprintf(stderr, "inferd people recluster: %s\n", e.msg);
        return 1;
    }
    printf("{\"faces\": %d, \"assigned\": %d, \"people\": %d, \"unassigned\": %d}\n", ps.faces,
           ps.assigned, ps.new_people, ps.unassigned);
    return 0;
}

static int cmd_version(void)
{
    printf("inferd %s\nonnxruntime %s (C API %d)\nlibvips %s\njansson %s\n", INFERD_VERSION,
           infer_runtime_version(), infer_api_version(), vips_version_string(),
           JANSSON_VERSION);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_top, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    xalloc_keep_freed(); /* before any thread: see xalloc.h */
    if (strcmp(cmd, "serve") == 0)
        return cmd_run(CONFIG_ROLE_SERVE, argc - 1, argv + 1);
    if (strcmp(cmd, "api") == 0)
        return cmd_run(CONFIG_ROLE_API, argc - 1, argv + 1);
    if (strcmp(cmd, "worker") == 0)
        return cmd_run(CONFIG_ROLE_WORKER, argc - 1, argv + 1);
    if (strcmp(cmd, "analyze") == 0)
        return cmd_analyze(argc - 1, argv + 1);
    if (strcmp(cmd, "models") == 0)
        return models_fetch_main(argc - 1, argv + 1);
    if (strcmp(cmd, "people") == 0)
        return cmd_people(argc - 1, argv + 1);
    if (strcmp(cmd, "index") == 0)
        return index_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2 && strcmp(argv[2], "analyze") == 0)
            fputs(config_usage_role(CONFIG_ROLE_ANALYZE), stdout);
        else if (argc > 2 && strcmp(argv[2], "serve") == 0)
            fputs(config_usage(), stdout);
        else if (argc > 2 && strcmp(argv[2], "api") == 0)
            fputs(config_usage_role(CONFIG_ROLE_API), stdout);
        else if (argc > 2 && strcmp(argv[2], "worker") == 0)
            fputs(config_usage_role(CONFIG_ROLE_WORKER), stdout);
        else if (argc > 2 && strcmp(argv[2], "index") == 0)
            fputs(config_usage_role(CONFIG_ROLE_INDEX), stdout);
        else if (argc > 2 && strcmp(argv[2], "people") == 0)
            fputs(config_usage_role(CONFIG_ROLE_RECLUSTER), stdout);
        else if (argc > 2 && strcmp(argv[2], "models") == 0) {
            char *margv[] = {(char *)"models", (char *)"help", NULL};
            return models_fetch_main(2, margv);
        }
        else
            fputs(usage_top, stdout);
        return 0;
    }
    fprintf(stderr, "inferd: unknown command \"%s\"\n%s", cmd, usage_top);
    return 2;
}
