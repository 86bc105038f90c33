/*
 * util/config.c — fills the daemon's config struct (config.h) from defaults,
 * INFERD_* environment variables and command-line flags, in that order.
 *
 * Every option is one row of `opts[]`: flag, variable, type, where it lands
 * in the struct, its range, its help line, the roles that use it, and an
 * optional short flag and older name. The roles are every command that takes
 * options: serve, api, worker, `people recluster` (which shares the store and
 * clustering rows so that it reads them exactly as the daemons do), `analyze`
 * (the model rows, as the worker reads them) and `models fetch|list`. The
 * parser, the error messages and the --help text are all driven by that
 * table, so an option cannot be parsed without being documented or
 * documented under the wrong variable, and one flag means one thing in every
 * command.
 * getopt_long was rejected because it prints its own messages to stderr,
 * while config_parse must return the message (naming the flag) to its caller.
 *
 * Threading: config_parse runs once at start on the main thread; the result
 * is read-only afterwards. config_usage builds its text once (pthread_once).
 */
#include "util/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum {
    OPT_STR,    /* char[size] */
    OPT_INT,    /* int in [lo, hi] */
    OPT_I64,    /* int64_t in [lo, hi] */
    OPT_LL,     /* long long in [lo, hi] */
    OPT_SIZE,   /* size_t in [lo, hi], with an optional K/M/G suffix */
    OPT_FLOAT,  /* float in [flo, fhi] */
    OPT_BOOL,   /* flag without a value; the variable takes 1/0/true/false/yes/no */
    OPT_LISTEN, /* HOST:PORT or [V6]:PORT into listen_host + listen_port */
    OPT_VERBOSE,
    OPT_HELP,
} opt_type;

typedef struct {
    const char *flag; /* without the leading "--" */
    const char *env;  /* NULL: flag only */
    opt_type type;
    size_t off;  /* offsetof(config, field) */
    size_t size; /* OPT_STR: sizeof the field */
    long long lo, hi;
    float flo, fhi;
    const char *arg;   /* metavariable in --help */
    const char *help;  /* help text, default included */
    unsigned roles;    /* R_ bits of the roles that use it */
    char short_flag;   /* -X, or 0 */
    const char *alias; /* an older name, accepted as a flag (without "--"), or NULL */
} opt_def;

#define R_SERVE (1u << CONFIG_ROLE_SERVE)
#define R_API (1u << CONFIG_ROLE_API)
#define R_WORKER (1u << CONFIG_ROLE_WORKER)
#define R_RECLUSTER (1u << CONFIG_ROLE_RECLUSTER)
#define R_ANALYZE (1u << CONFIG_ROLE_ANALYZE)
#define R_FETCH (1u << CONFIG_ROLE_MODELS_FETCH)
#define R_LIST (1u << CONFIG_ROLE_MODELS_LIST)
#define R_MODELS (R_FETCH | R_LIST)
#define R_INDEX (1u << CONFIG_ROLE_INDEX)
#define R_DAEMON (R_SERVE | R_API | R_WORKER) /* every long-running process */
#define R_JOBS (R_SERVE | R_WORKER)           /* runs jobs: slots, models, leases */
#define R_HTTP_API (R_SERVE | R_API)          /* serves the job API */
#define R_SEARCH (R_SERVE | R_API)            /* holds the search indexes and clusters faces */
#define R_PEOPLE (R_SEARCH | R_RECLUSTER)     /* clustering parameters */
#define R_PIPELINE (R_JOBS | R_ANALYZE)       /* loads and runs the models */
#define R_ALL 0xffu

#define F(field) offsetof(config, field), sizeof(((config *)0)->field)

/* Most rows leave short_flag and alias out (zero): positional rows stay one line shorter. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const opt_def opts[] = {
    {"listen", "INFERD_LISTEN", OPT_LISTEN, F(listen_host), 0, 0, 0, 0, "HOST:PORT",
     "address to serve HTTP on; [::1]:PORT for IPv6, [::]:PORT for every address, port 0 "
     "picks a free one (default 127.0.0.1:8002)",
     R_DAEMON},
    {"immich-listen", "INFERD_IMMICH_LISTEN", OPT_STR, F(immich_listen), 0, 0, 0, 0, "HOST:PORT",
     "also answer Immich's machine-learning API (GET /ping, POST /predict) on this address, "
     "without a token (Immich sends none): keep it on a private network (default empty: off)",
     R_SERVE},
    {"immich-wait-ms", "INFERD_IMMICH_WAIT_MS", OPT_I64, F(immich_wait_ms), 0, 3600000, 0, 0, "MS",
     "an Immich /predict waits this long for a free slot before it is answered 503 (default "
     "60000)",
     R_SERVE},
    {"data-dir", "INFERD_DATA_DIR", OPT_STR, F(data_dir), 0, 0, 0, 0, "DIR",
     "database, spooled uploads (DIR/uploads) (default ./var)", R_DAEMON | R_RECLUSTER},
    {"models-dir", "INFERD_MODELS_DIR", OPT_STR, F(models_dir), 0, 0, 0, 0, "DIR",
     "model directories (default var/models)", R_PIPELINE | R_MODELS},
    {"image-embedder", "INFERD_IMAGE_EMBEDDER", OPT_STR, F(image_embedder), 0, 0, 0, 0, "NAME",
     "image embedding model (a folder under the models dir: a manifest model, or a CLIP "
     "directory, whose text encoder then serves {\"text\"} searches) (default "
     "mobilenet-v2-mid)",
     R_PIPELINE},
    {"face-embedder", "INFERD_FACE_EMBEDDER", OPT_STR, F(face_embedder), 0, 0, 0, 0, "NAME",
     "face embedding model (a folder under the models dir); faces are stored under their "
     "model's name, and changing it means re-submitting the photos, then `inferd people "
     "recluster` (default dlib-resnet)",
     R_PIPELINE},
    {"detector", "INFERD_DETECTOR", OPT_STR, F(detector), 0, 0, 0, 0, "NAME",
     "face detection model (a folder under the models dir, or an Immich face pack such as "
     "buffalo_l) (default blazeface-back-256)",
     R_PIPELINE},
    {"clip-model", "INFERD_CLIP_MODEL", OPT_STR, F(clip_model), 0, 0, 0, 0, "DIR",
     "CLIP model directory whose text encoder serves {\"text\"} image searches when the image "
     "embedder is not a CLIP model, or in the api role (default: the image embedder's, if CLIP)",
     R_HTTP_API},
    {"media-root", "INFERD_MEDIA_ROOT", OPT_STR, F(media_root), 0, 0, 0, 0, "DIR",
     "jobs may read files under DIR by {\"path\"}; empty refuses path sources (default empty)",
     R_DAEMON | R_INDEX},
    {"db", "INFERD_DB", OPT_STR, F(db_url), 0, 0, 0, 0, "URL",
     "store: sqlite:PATH or postgres://... (default sqlite:DATA_DIR/inferd.db)",
     R_DAEMON | R_RECLUSTER},
    {"mqtt-url", "INFERD_MQTT_URL", OPT_STR, F(mqtt_url), 0, 0, 0, 0, "URL",
     "publish job events to mqtt://[USER[:PASS]@]HOST[:PORT] (1883), or over TLS to "
     "mqtts://... (8883); empty disables MQTT; with several processes on one database, one "
     "publisher at a time holds the publisher lease (default empty)",
     R_DAEMON},
    {"mqtt-ca-file", "INFERD_MQTT_CA_FILE", OPT_STR, F(mqtt_ca_file), 0, 0, 0, 0, "FILE",
     "PEM file of the CAs that sign an mqtts:// broker's certificate; the broker's name must "
     "match it (default empty: the system's CAs in /etc/ssl/certs)",
     R_DAEMON},
    {"mqtt-cert-file", "INFERD_MQTT_CERT_FILE", OPT_STR, F(mqtt_cert_file), 0, 0, 0, 0, "FILE",
     "PEM client certificate for an mqtts:// broker that asks for one; needs --mqtt-key-file "
     "(default empty)",
     R_DAEMON},
    {"mqtt-key-file", "INFERD_MQTT_KEY_FILE", OPT_STR, F(mqtt_key_file), 0, 0, 0, 0, "FILE",
     "the unencrypted PEM private key of --mqtt-cert-file (keep it 0600) (default empty)",
     R_DAEMON},
    {"token", "INFERD_TOKEN", OPT_STR, F(token), 0, 0, 0, 0, "TOKEN",
     "require \"Authorization: Bearer TOKEN\" on every endpoint but /health; prefer "
     "--token-file, flags show in ps (default empty: no auth)",
     R_DAEMON | R_INDEX},
    {"token-file", "INFERD_TOKEN_FILE", OPT_STR, F(token_file), 0, 0, 0, 0, "FILE",
     "read the token from the first line of FILE (keep it 0600), instead of --token (default "
     "empty)",
     R_DAEMON | R_INDEX},
    {"allow-no-auth", "INFERD_ALLOW_NO_AUTH", OPT_BOOL, F(allow_no_auth), 0, 0, 0, 0, NULL,
     "serve the API on an address other than loopback without a token; without it, "
     "serve and api refuse to start that way (default off)",
     R_HTTP_API},
    {"worker-id", "INFERD_WORKER_ID", OPT_STR, F(worker_id), 0, 0, 0, 0, "ID",
     "name of this process, unique among the processes sharing a database: the lease owner "
     "of the jobs it runs (recorded as their worker_id) and of the MQTT publisher lease "
     "(default HOSTNAME-PID, new at each start)",
     R_DAEMON},
    {"slots", "INFERD_SLOTS", OPT_INT, F(slots), 1, 256, 0, 0, "N",
     "jobs run at once, 1..256 (default: number of cores)", R_JOBS},
    {"slot-priority", "INFERD_SLOT_PRIORITY", OPT_STR, F(slot_priority), 0, 0, 0, 0, "batch|idle",
     "how the slot threads give way to everything else: batch (SCHED_BATCH, nice 10) or idle "
     "(SCHED_IDLE: the API answers at its idle latency with every slot busy, but other "
     "processes at normal priority leave the slots almost no CPU; for a machine that runs "
     "inferd and little else) (default batch)",
     R_JOBS},
    {"intra-op-threads", "INFERD_INTRA_OP_THREADS", OPT_INT, F(intra_op_threads), 1, 1024, 0, 0,
     "N", "ONNX Runtime threads per model run (default 1 when slots > 1, else cores)", R_PIPELINE},
    {"allow-private-urls", "INFERD_ALLOW_PRIVATE_URLS", OPT_BOOL, F(allow_private_urls), 0, 0, 0, 0,
     NULL, "let URL sources reach loopback/private/link-local addresses (default off)",
     R_DAEMON | R_FETCH},
    {"max-body", "INFERD_MAX_BODY", OPT_SIZE, F(max_body), 1024, 1LL << 32, 0, 0, "BYTES",
     "largest image upload, suffix K/M/G allowed; JSON bodies are capped at 1 MiB "
     "(default 64M)",
     R_HTTP_API},
    {"max-connections", "INFERD_MAX_CONNECTIONS", OPT_INT, F(max_connections), 32, 65536, 0, 0, "N",
     "HTTP connections at once, one thread each; the last 16 are kept for loopback, so that "
     "a local health probe gets in whatever remote clients do (default 1024, lowered to fit "
     "the open-files limit)",
     R_DAEMON},
    {"max-connections-per-ip", "INFERD_MAX_CONNECTIONS_PER_IP", OPT_INT, F(max_connections_per_ip),
     0, 65536, 0, 0, "N",
     "connections from one client address, 0 = no limit; loopback is exempt (behind a "
     "reverse proxy every client is the proxy: raise it or rely on the proxy) (default 64)",
     R_DAEMON},
    {"header-timeout-ms", "INFERD_HEADER_TIMEOUT_MS", OPT_I64, F(header_timeout_ms), 0, 3600000, 0,
     0, "MS",
     "a connection that has not sent a request's headers this long after connecting (or "
     "after its last response) is closed, however it trickles bytes; 0 = never (default "
     "10000)",
     R_DAEMON},
    {"max-event-streams", "INFERD_MAX_EVENT_STREAMS", OPT_INT, F(max_event_streams), 1, 65536, 0, 0,
     "N", "GET /v1/events streams open at once; more are refused with 503 (default 64)",
     R_HTTP_API},
    {"lease-ms", "INFERD_LEASE_MS", OPT_I64, F(lease_ms), 1000, 3600000, 0, 0, "MS",
     "job lease; a job whose worker is silent this long is requeued (default 30000)", R_JOBS},
    {"poll-ms", "INFERD_POLL_MS", OPT_I64, F(poll_ms), 10, 600000, 0, 0, "MS",
     "fallback poll for jobs enqueued by other processes and for outbox rows; PostgreSQL "
     "wakes workers at once by LISTEN/NOTIFY, SQLite relies on this poll (default 1000)",
     R_DAEMON},
    {"max-attempts", "INFERD_MAX_ATTEMPTS", OPT_INT, F(max_attempts), 1, 20, 0, 0, "N",
     "attempts before a transient failure fails the job, 1..20 (default 3)", R_HTTP_API},
    {"retry-base-ms", "INFERD_RETRY_BASE_MS", OPT_I64, F(retry_base_ms), 1, 3600000, 0, 0, "MS",
     "first retry delay, doubling per attempt (default 1000)", R_JOBS},
    {"grace-ms", "INFERD_GRACE_MS", OPT_I64, F(grace_ms), 0, 3600000, 0, 0, "MS",
     "on SIGTERM, wait this long for running jobs before requeueing them (default 30000)", R_JOBS},
    {"fetch-timeout-ms", "INFERD_FETCH_TIMEOUT_MS", OPT_INT, F(fetch_timeout_ms), 100, 3600000, 0,
     0, "MS", "whole-transfer timeout of URL sources (default 30000)", R_DAEMON},
    {"job-timeout-ms", "INFERD_JOB_TIMEOUT_MS", OPT_I64, F(job_timeout_ms), 1000, 86400000, 0, 0,
     "MS",
     "a job's (or a /v1/predict call's) decode and model runs are stopped this long after it "
     "starts: the job ends failed with code timeout, not retried, and its slot is free "
     "(default 120000)",
     R_JOBS},
    {"decode-memory", "INFERD_DECODE_MEMORY", OPT_SIZE, F(decode_memory), 16LL << 20, 1LL << 40, 0,
     0, "BYTES",
     "memory that image decodes in flight may hold together, suffix K/M/G: a decode waits "
     "for room, and an image that alone needs more (an interlaced PNG or a HEIF is decoded "
     "whole) fails too_big (default: a quarter of RAM, at most 1G)",
     R_JOBS},
    {"max-side", "INFERD_MAX_SIDE", OPT_INT, F(max_side), 64, 65535, 0, 0, "N",
     "shrink images on load to this longest side; an image lands on half, a quarter or an "
     "eighth of its size instead when that is within 10 % under it (4032 wide: 2016): a JPEG "
     "is then decoded at that scale, a fraction of a full decode, and other formats shrink by "
     "a whole factor (default 2048)",
     R_PIPELINE},
    {"max-pixels", "INFERD_MAX_PIXELS", OPT_LL, F(max_pixels), 1, 1LL << 40, 0, 0, "N",
     "refuse images with more pixels than this (default 100000000)", R_PIPELINE},
    {"face-threshold", "INFERD_FACE_THRESHOLD", OPT_FLOAT, F(face_threshold), 0, 0, 0.01f, 1.0f,
     "F", "face detection score threshold 0.01..1 (default 0.75)", R_PIPELINE},
    /*
     * Search. The defaults repeat index.h's INDEX_DEFAULT_* and people.h's
     * PEOPLE_DEFAULT_* (tests/unit/test_config.c checks that they agree;
     * people-max-distance defaults to 0, each face model's own distance);
     * ranges: an index holds at most 2^31-2 vectors, index_new takes M in
     * 4..64, and "ef" in a search request is capped at 10000.
     */
    {"hnsw-threshold", "INFERD_HNSW_THRESHOLD", OPT_INT, F(hnsw_threshold), 1, 2147483647, 0, 0,
     "N",
     "an index (one per collection and model) switches from exact search to HNSW once it holds "
     "N vectors, 1..2147483647; a value above the collection size keeps it exact "
     "(default 20000)",
     R_SEARCH},
    {"hnsw-m", "INFERD_HNSW_M", OPT_INT, F(hnsw_m), 4, 64, 0, 0, "N",
     "HNSW links per node (twice that on the base layer), 4..64: more gives better recall for "
     "more memory and slower inserts (default 16)",
     R_SEARCH},
    {"hnsw-ef-construction", "INFERD_HNSW_EF_CONSTRUCTION", OPT_INT, F(hnsw_ef_construction), 1,
     10000, 0, 0, "N",
     "HNSW beam width while inserting, 1..10000: more gives a better graph for slower inserts "
     "and builds (default 200)",
     R_SEARCH},
    {"hnsw-ef", "INFERD_HNSW_EF", OPT_INT, F(hnsw_ef), 1, 10000, 0, 0, "N",
     "HNSW beam width of a search whose request gives no \"ef\" (a request's \"ef\" wins), "
     "1..10000: more gives better recall for slower searches (default 64)",
     R_SEARCH},
    {"people-min-faces", "INFERD_PEOPLE_MIN_FACES", OPT_INT, F(people_min_faces), 1, 1000, 0, 0,
     "N",
     "a face founds or joins a person when this many faces (itself included) lie within "
     "--people-max-distance of it, 1..1000 (default 3)",
     R_PEOPLE, 0, "min-faces"},
    {"people-max-distance", "INFERD_PEOPLE_MAX_DISTANCE", OPT_FLOAT, F(people_max_distance), 0, 0,
     0.01f, 2.0f, "F",
     "cosine distance (1 - similarity) within which two faces count as the same person, "
     "0.01..2 (default: the face model's own, 0.40 for dlib-resnet, 0.375 for mobileface, "
     "0.5 for others)",
     R_PEOPLE, 0, "max-distance"},
    {"duplicates-threshold", "INFERD_DUPLICATES_THRESHOLD", OPT_FLOAT, F(duplicates_threshold), 0,
     0, -1.0f, 1.0f, "F",
     "similarity from which GET /v1/assets/{id}/duplicates reports an image when the request "
     "gives no threshold, -1..1 (default 0.95)",
     R_SEARCH},
    /* analyze */
    {"vectors", NULL, OPT_BOOL, F(vectors), 0, 0, 0, 0, NULL,
     "include the embedding vectors in the output", R_ANALYZE},
    {"no-tiles", NULL, OPT_BOOL, F(no_tiles), 0, 0, 0, 0, NULL,
     "detect faces on the whole image only (faster, misses small faces)", R_ANALYZE},
    {"verify-models", NULL, OPT_BOOL, F(verify_models), 0, 0, 0, 0, NULL,
     "check each model file's sha256 against its manifest at load", R_ANALYZE},
    /* models fetch / list */
    {"base-url", NULL, OPT_STR, F(base_url), 0, 0, 0, 0, "URL",
     "replaces {base} in the catalogue's URLs (required when they use it): a mirror of the "
     "model files, http(s)",
     R_FETCH},
    {"catalog", "INFERD_CATALOG", OPT_STR, F(catalog), 0, 0, 0, 0, "FILE|URL",
     "the catalogue (default models/catalog.json)", R_FETCH},
    {"hub-url", "INFERD_HUB_URL", OPT_STR, F(hub_url), 0, 0, 0, 0, "URL",
     "for NAME immich/MODEL: a Hugging Face compatible hub (the Hugging Face hub or a "
     "mirror), http(s); files come from its repository immich-app/MODEL (default empty)",
     R_FETCH},
    {"revision", NULL, OPT_STR, F(revision), 0, 0, 0, 0, "REV",
     "for NAME immich/MODEL: the branch, tag or commit to fetch, [A-Za-z0-9._-] (default "
     "main)",
     R_FETCH},
    {"force", NULL, OPT_BOOL, F(force), 0, 0, 0, 0, NULL,
     "replace MODELS_DIR/NAME even when it was not installed from this catalogue entry "
     "(another version, your own files)",
     R_FETCH},
    {"retries", NULL, OPT_INT, F(retries), 0, 100, 0, 0, "N",
     "retries of a cut or failed transfer, resuming, 0..100 (default 3)", R_FETCH},
    {"connect-timeout", NULL, OPT_I64, F(connect_timeout_s), 1, 604800, 0, 0, "S",
     "seconds to connect (default 10)", R_FETCH},
    {"stall-timeout", NULL, OPT_I64, F(stall_timeout_s), 1, 604800, 0, 0, "S",
     "give up on a transfer that receives nothing for S seconds (default 60)", R_FETCH},
    {"timeout", NULL, OPT_I64, F(timeout_s), 0, 604800, 0, 0, "S",
     "limit on each file's transfer, seconds (default 0: none)", R_FETCH},
    {"no-verify", NULL, OPT_BOOL, F(no_verify), 0, 0, 0, 0, NULL,
     "do not hash the files (the SHA column shows \"-\")", R_LIST},
    /* index */
    {"url", "INFERD_URL", OPT_STR, F(url), 0, 0, 0, 0, "URL",
     "the inferd API to submit to (default http://127.0.0.1:8002)", R_INDEX},
    {"batch", NULL, OPT_INT, F(batch), 1, 1000, 0, 0, "N",
     "jobs per request to POST /v1/jobs/batch, 1..1000; 1 sends each file alone to POST "
     "/v1/jobs (default 200)",
     R_INDEX},
    {"state", "INFERD_INDEX_STATE", OPT_STR, F(state_file), 0, 0, 0, 0, "FILE",
     "remembers each submitted file's size and modification time, so that a new run submits "
     "only new or changed files (default ~/.local/state/inferd/index-HOST-PORT.tsv)",
     R_INDEX},
    {"all", NULL, OPT_BOOL, F(all), 0, 0, 0, 0, NULL,
     "submit every image file, changed or not (default off)", R_INDEX},
    {"watch", NULL, OPT_BOOL, F(watch), 0, 0, 0, 0, NULL,
     "keep running after the first pass and submit files as they appear or change (inotify) "
     "until Ctrl-C (default off)",
     R_INDEX},
    {"no-wait", NULL, OPT_BOOL, F(no_wait), 0, 0, 0, 0, NULL,
     "end once every file is submitted instead of following the jobs to their end (default "
     "off)",
     R_INDEX},
    {"quiet", NULL, OPT_BOOL, F(quiet), 0, 0, 0, 0, NULL, "no progress on stderr",
     R_MODELS | R_INDEX, 'q'},
    {"verbose", NULL, OPT_VERBOSE, F(verbose), 0, 0, 0, 0, NULL, "debug logging",
     R_DAEMON | R_RECLUSTER | R_ANALYZE, 'v'},
    {"help", NULL, OPT_HELP, 0, 0, 0, 0, 0, 0, NULL, "print this help and exit", R_ALL, 'h'},
};
#pragma GCC diagnostic pop
#define NOPTS (sizeof opts / sizeof opts[0])
_Static_assert(NOPTS <= 128, "config.given holds 128 bits");

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int parse_ll(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0)
        return -1;
    *out = v;
    return 0;
}

/* "64M", "1048576", "512K", "1G" -> bytes. */
static int parse_size(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || end == s || errno != 0 || v < 0)
        return -1;
    long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1LL << 10;
    else if (*end == 'M' || *end == 'm')
        mul = 1LL << 20;
    else if (*end == 'G' || *end == 'g')
        mul = 1LL << 30;
    if (mul != 1)
        end++;
    if (*end != '\0' || v > (1LL << 40) / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    return -1;
}

static int parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        h = s;
        hl = (size_t)(colon - s);
        if (memchr(h, ':', hl) != NULL) /* bare IPv6 without brackets: ambiguous */
            return -1;
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    long long p;
    if (parse_ll(colon + 1, &p) != 0 || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* Applies one value to option `o`; `who` is "--flag" or "VARIABLE" for messages. */
static int apply(config *c, const opt_def *o, const char *who, const char *v, char *err,
                 size_t errlen)
{
    char *base = (char *)c;
    long long n;
    switch (o->type) {
    case OPT_STR:
        if (strlen(v) >= o->size)
            return failf(err, errlen, "%s: value longer than %zu bytes", who, o->size - 1);
        memcpy(base + o->off, v, strlen(v) + 1);
        return 0;
    case OPT_INT:
    case OPT_I64:
    case OPT_LL:
        if (parse_ll(v, &n) != 0 || n < o->lo || n > o->hi)
            return failf(err, errlen, "%s: expected an integer in %lld..%lld, got \"%s\"", who,
                         o->lo, o->hi, v);
        if (o->type == OPT_INT)
            *(int *)(void *)(base + o->off) = (int)n;
        else if (o->type == OPT_I64)
            *(int64_t *)(void *)(base + o->off) = (int64_t)n;
        else
            *(long long *)(void *)(base + o->off) = n;
        return 0;
    case OPT_SIZE:
        if (parse_size(v, &n) != 0 || n < o->lo || n > o->hi)
            return failf(err, errlen,
                         "%s: expected a size in bytes (suffix K, M or G allowed) in %lld..%lld, "
                         "got \"%s\"",
                         who, o->lo, o->hi, v);
        *(size_t *)(void *)(base + o->off) = (size_t)n;
        return 0;
    case OPT_FLOAT: {
        char *end;
        float f = strtof(v, &end);
        if (*v == '\0' || *end != '\0' || !(f >= o->flo && f <= o->fhi))
            return failf(err, errlen, "%s: expected a number in %g..%g, got \"%s\"", who,
                         (double)o->flo, (double)o->fhi, v);
        *(float *)(void *)(base + o->off) = f;
        return 0;
    }
    case OPT_BOOL: {
        int b;
        if (parse_bool(v, &b) != 0)
            return failf(err, errlen, "%s: expected 1/0/true/false/yes/no, got \"%s\"", who, v);
        *(int *)(void *)(base + o->off) = b;
        return 0;
    }
    case OPT_LISTEN:
        if (parse_listen(v, c->listen_host, sizeof c->listen_host, &c->listen_port) != 0)
            return failf(err, errlen,
                         "%s: expected HOST:PORT or [IPV6]:PORT with a port in 0..65535, got "
                         "\"%s\"",
                         who, v);
        return 0;
    case OPT_VERBOSE:
    case OPT_HELP:
        return 0;
    }
    return failf(err, errlen, "%s: internal error", who);
}

static void set_defaults(config *c, config_role role)
{
    memset(c, 0, sizeof *c);
    c->role = role;
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = role == CONFIG_ROLE_WORKER ? 8003 : 8002;
    strcpy(c->data_dir, "./var");
    strcpy(c->models_dir, "var/models");
    c->slots = 0;            /* resolved after parsing: cores */
    strcpy(c->slot_priority, "batch");
    c->intra_op_threads = 0; /* resolved after parsing */
    c->max_body = (size_t)64 << 20;
    c->immich_wait_ms = 60000;
    c->lease_ms = 30000;
    c->poll_ms = 1000;
    c->max_attempts = 3;
    c->retry_base_ms = 1000;
    c->grace_ms = 30000;
    c->fetch_timeout_ms = 30000;
    c->job_timeout_ms = 120000;
    c->max_connections = 1024;
    c->max_connections_per_ip = 64;
    c->header_timeout_ms = 10000;
    c->max_event_streams = 64;
    c->max_side = 2048;
    c->max_pixels = 100000000LL;
    c->face_threshold = 0.75f;
    c->hnsw_threshold = 20000;
    c->hnsw_m = 16;
    c->hnsw_ef_construction = 200;
    c->hnsw_ef = 64;
    c->people_min_faces = 3;
    c->people_max_distance = 0; /* each face model's own (people_default_max_distance) */
    c->duplicates_threshold = 0.95f;
    strcpy(c->catalog, "models/catalog.json");
    strcpy(c->revision, "main");
    c->retries = 3;
    c->connect_timeout_s = 10;
    c->stall_timeout_s = 60;
    strcpy(c->url, "http://127.0.0.1:8002");
    c->batch = 200;
}

/* Loopback listen addresses: 127.0.0.0/8, ::1 and "localhost". */
static int is_loopback(const char *host)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return memcmp(a, one, 16) == 0;
    }
    return strcmp(host, "localhost") == 0;
}

/*
 * The token from the first line of `path` (a trailing CR/LF and spaces
 * dropped): not empty, shorter than `cap`, printable ASCII.
 */
static int read_token_file(const char *path, char *token, size_t cap, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return failf(err, errlen, "--token-file: %s: %s", path, strerror(errno));
    char line[1024];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    if (n == 0)
        return failf(err, errlen, "--token-file: %s: the first line is empty", path);
    if (n >= cap)
        return failf(err, errlen, "--token-file: %s: token longer than %zu bytes", path, cap - 1);
    for (size_t i = 0; i < n; i++)
        if (line[i] < 0x21 || line[i] > 0x7e)
            return failf(err, errlen, "--token-file: %s: the token must be printable ASCII "
                                      "without spaces", path);
    memcpy(token, line, n);
    token[n] = '\0';
    return 0;
}

/* The row whose flag or older name is name[0..len), or NULL. */
/* The row of the long flag (or older name) name[0..len), or with `len` 0 of the short flag
 * `-name[0]`; NULL when none. */
static const opt_def *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *al = opts[i].alias;
        if (len == 0 ? opts[i].short_flag != 0 && opts[i].short_flag == name[0]
                     : (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0) ||
                           (al != NULL && strlen(al) == len && strncmp(al, name, len) == 0))
            return &opts[i];
    }
    return NULL;
}

static void mark_given(config *c, const opt_def *o)
{
    size_t i = (size_t)(o - opts);
    c->given[i / 64] |= (uint64_t)1 << (i % 64);
}

int config_given(const config *c, const char *flag)
{
    const opt_def *o = find_flag(flag, strlen(flag));
    if (o == NULL)
        return 0;
    size_t i = (size_t)(o - opts);
    return (c->given[i / 64] >> (i % 64)) & 1;
}

/* How many operands each role takes, and what they are called in messages. */
static const struct {
    int min, max;
    const char *name;
} operands[CONFIG_ROLES] = {
    [CONFIG_ROLE_ANALYZE] = {1, 1 << 30, "IMAGE"},
    [CONFIG_ROLE_MODELS_FETCH] = {1, 1, "NAME"},
    [CONFIG_ROLE_INDEX] = {1, 1 << 30, "DIR"},
};

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 256 ? 256 : (int)n);
}

const char *config_role_name(config_role role)
{
    switch (role) {
    case CONFIG_ROLE_SERVE:
        return "serve";
    case CONFIG_ROLE_API:
        return "api";
    case CONFIG_ROLE_WORKER:
        return "worker";
    case CONFIG_ROLE_RECLUSTER:
        return "people recluster";
    case CONFIG_ROLE_ANALYZE:
        return "analyze";
    case CONFIG_ROLE_MODELS_FETCH:
        return "models fetch";
    case CONFIG_ROLE_MODELS_LIST:
        return "models list";
    case CONFIG_ROLE_INDEX:
        return "index";
    }
    return "?";
}

static int role_uses(const opt_def *o, config_role role)
{
    return (o->roles & (1u << role)) != 0;
}

int config_parse(config *c, int argc, char **argv, char *err, size_t errlen)
{
    return config_parse_role(c, CONFIG_ROLE_SERVE, argc, argv, err, errlen);
}

int config_parse_role(config *c, config_role role, int argc, char **argv, char *err,
                      size_t errlen)
{
    const char *cmd = argc > 0 && argv[0] != NULL ? argv[0] : "inferd";
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if ((unsigned)role >= CONFIG_ROLES)
        role = CONFIG_ROLE_SERVE;
    set_defaults(c, role);
    int db_given = 0;
    int only_operands = 0;
    /* Operands are moved to the front of argv[1..] as they come (getopt permutes the same
     * way): each lands at or before the entry being read, which was read already. */
    c->args = argv + (argc > 0 ? 1 : 0);

    for (size_t i = 0; i < NOPTS; i++) {
        const opt_def *o = &opts[i];
        const char *v = o->env != NULL ? getenv(o->env) : NULL;
        if (v == NULL || !role_uses(o, role))
            continue;
        if (apply(c, o, o->env, v, err, errlen) != 0)
            return -1;
        mark_given(c, o);
        if (o->off == offsetof(config, db_url) && o->type == OPT_STR && v[0] != '\0')
            db_given = 1;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_operands && strcmp(a, "--") == 0) {
            only_operands = 1;
            continue;
        }
        if (only_operands || a[0] != '-' || a[1] == '\0') {
            if (c->nargs >= operands[role].max)
                return failf(err, errlen, "%s: unexpected argument \"%s\"%s", cmd, a,
                             operands[role].max == 1 ? " (one at a time)" : "");
            c->args[c->nargs++] = argv[i];
            continue;
        }
        const opt_def *o;
        const char *name, *eq = NULL;
        size_t nl;
        if (a[1] != '-') { /* -X */
            o = a[2] == '\0' ? find_flag(a + 1, 0) : NULL;
            if (o == NULL)
                return failf(err, errlen, "%s: unknown option \"%s\" (see --help)", cmd, a);
            name = o->flag;
            nl = strlen(name);
        } else {
            name = a + 2;
            eq = strchr(name, '=');
            nl = eq != NULL ? (size_t)(eq - name) : strlen(name);
            o = find_flag(name, nl);
        }
        if (o == NULL)
            return failf(err, errlen, "%s: unknown option \"--%.*s\" (see --help)", cmd, (int)nl,
                         name);
        char who[64];
        snprintf(who, sizeof who, "--%s", o->flag);
        if (o->type == OPT_HELP) {
            fputs(config_usage_role(role), stdout);
            return 1;
        }
        if (!role_uses(o, role))
            return failf(err, errlen, "%s: not used by inferd %s (see --help)", who,
                         config_role_name(role));
        if (o->type == OPT_VERBOSE || o->type == OPT_BOOL) {
            int b = 1;
            if (eq != NULL && parse_bool(eq + 1, &b) != 0)
                return failf(err, errlen, "%s: expected no value or 1/0/true/false, got \"%s\"",
                             who, eq + 1);
            *(int *)(void *)((char *)c + o->off) = b;
            mark_given(c, o);
            continue;
        }
        const char *v;
        if (eq != NULL) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return failf(err, errlen, "%s: missing value (%s)", who,
                             o->arg != NULL ? o->arg : "VALUE");
            v = argv[++i];
        }
        if (apply(c, o, who, v, err, errlen) != 0)
            return -1;
        mark_given(c, o);
        if (o->off == offsetof(config, db_url) && o->type == OPT_STR)
            db_given = v[0] != '\0';
    }
    if (c->nargs < operands[role].min)
        return failf(err, errlen, "%s: no %s given (see --help)", cmd, operands[role].name);

    /* Derived defaults. */
    if (c->data_dir[0] == '\0')
        return failf(err, errlen, "--data-dir: must not be empty");
    if (c->models_dir[0] == '\0')
        return failf(err, errlen, "--models-dir: must not be empty");
    if (!db_given) {
        int n = snprintf(c->db_url, sizeof c->db_url, "sqlite:%s/inferd.db", c->data_dir);
        if (n < 0 || (size_t)n >= sizeof c->db_url)
            return failf(err, errlen, "--data-dir: path too long");
    }
    if (c->worker_id[0] == '\0') {
        char host[48] = "inferd";
        if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
            strcpy(host, "inferd");
        host[sizeof host - 1] = '\0';
        snprintf(c->worker_id, sizeof c->worker_id, "%s-%ld", host, (long)getpid());
    }
    if (c->token_file[0] != '\0') {
        if (c->token[0] != '\0')
            return failf(err, errlen, "--token-file: give either --token or --token-file, not both");
        if (read_token_file(c->token_file, c->token, sizeof c->token, err, errlen) != 0)
            return -1;
    }
    int mqtts = strncmp(c->mqtt_url, "mqtts://", 8) == 0;
    if (!mqtts && (c->mqtt_ca_file[0] || c->mqtt_cert_file[0] || c->mqtt_key_file[0]))
        return failf(err, errlen, "--mqtt-ca-file, --mqtt-cert-file and --mqtt-key-file need an "
                                  "mqtts:// --mqtt-url: events would go in clear");
    if (!c->mqtt_cert_file[0] != !c->mqtt_key_file[0])
        return failf(err, errlen, "--mqtt-cert-file and --mqtt-key-file go together");
    if ((role == CONFIG_ROLE_SERVE || role == CONFIG_ROLE_API) && c->token[0] == '\0' &&
        !c->allow_no_auth && !is_loopback(c->listen_host))
        return failf(err, errlen,
                     "--listen: refusing to serve the API on %s without a token: anyone who "
                     "can reach the port could read face embeddings, delete assets and make "
                     "inferd fetch URLs; set --token-file (or INFERD_TOKEN), or --allow-no-auth "
                     "to accept that",
                     c->listen_host);
    if (c->immich_listen[0] != '\0') {
        if (parse_listen(c->immich_listen, c->immich_host, sizeof c->immich_host,
                         &c->immich_port) != 0)
            return failf(err, errlen,
                         "--immich-listen: expected HOST:PORT or [IPV6]:PORT with a port in "
                         "0..65535, got \"%s\"",
                         c->immich_listen);
        if (c->immich_port != 0 && c->immich_port == c->listen_port)
            return failf(err, errlen, "--immich-listen: port %d is --listen's too", c->immich_port);
    }
    if (strcmp(c->slot_priority, "batch") != 0 && strcmp(c->slot_priority, "idle") != 0)
        return failf(err, errlen, "--slot-priority: expected batch or idle, got \"%s\"",
                     c->slot_priority);
    if (role == CONFIG_ROLE_SERVE || role == CONFIG_ROLE_WORKER) {
        if (c->slots == 0)
            c->slots = online_cores();
        if (c->intra_op_threads == 0)
            c->intra_op_threads = c->slots > 1 ? 1 : online_cores();
    } /* analyze: 0 leaves ONNX Runtime's default, every core for its one run */
    return 0;
}

#define NROLES CONFIG_ROLES
static char usage_bufs[NROLES][16384];
static pthread_once_t usage_once = PTHREAD_ONCE_INIT;

/* Appends `text` to `buf`, word-wrapped at 79 columns from column `col`. */
static size_t wrap(char *buf, size_t size, size_t n, size_t col, const char *text)
{
    size_t x = col;
    const char *p = text;
    while (*p != '\0' && n < size) {
        size_t wl = strcspn(p, " ");
        if (x > col && x + 1 + wl > 79) {
            n += (size_t)snprintf(buf + n, size - n, "\n%*s", (int)col, "");
            x = col;
        } else if (x > col) {
            n += (size_t)snprintf(buf + n, size - n, " ");
            x++;
        }
        if (n >= size)
            break;
        n += (size_t)snprintf(buf + n, size - n, "%.*s", (int)wl, p);
        x += wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    if (n < size)
        n += (size_t)snprintf(buf + n, size - n, "\n");
    return n;
}

static const char *const usage_head[NROLES] = {
    "usage: inferd serve [options]\n"
    "\n"
    "Runs the HTTP API and the worker slots in one process until SIGTERM or SIGINT.\n"
    "To run them apart (many workers, many machines, one PostgreSQL queue) see\n"
    "inferd help api and inferd help worker.\n",
    "usage: inferd api [options]\n"
    "\n"
    "Runs the HTTP API alone until SIGTERM or SIGINT: accepts and queries jobs,\n"
    "assets, events (SSE) and health; `inferd worker` processes sharing the same\n"
    "--db run the jobs. It loads no models: POST /v1/predict answers 503\n"
    "(predict_unavailable: run `inferd serve` for synchronous predictions) and\n"
    "/ready is 200 once the store is open. With --mqtt-url it competes for the\n"
    "publisher lease like every other process.\n",
    "usage: inferd worker [options]\n"
    "\n"
    "Runs worker slots alone until SIGTERM or SIGINT: claims jobs from the shared\n"
    "--db (use PostgreSQL for several processes), runs the models, commits the\n"
    "results. It serves only GET /health, /ready and /metrics on --listen\n"
    "(default 127.0.0.1:8003). PostgreSQL wakes it at once when a job is queued\n"
    "(LISTEN/NOTIFY); on SQLite it polls every --poll-ms.\n",
    "usage: inferd people recluster [options]\n"
    "\n"
    "Forgets every person (names included) and clusters all faces in --db again,\n"
    "then prints {\"faces\", \"assigned\", \"people\", \"unassigned\"}. It holds the\n"
    "people lease meanwhile, so the serve and api processes on the same database\n"
    "cluster no faces until it is done; give it the --people-* values they use.\n"
    "--min-faces and --max-distance are accepted as older names of the --people-*\n"
    "flags.\n",
    "usage: inferd analyze [options] IMAGE...\n"
    "\n"
    "Runs the models on each image file, in this process, and prints one JSON\n"
    "object per image per line:\n"
    "  {\"path\", \"width\", \"height\", \"image_embedding\": {\"model\", \"dim\", \"norm\"},\n"
    "   \"nsfw\": {class: score}, \"faces\": [{\"box\": [x1,y1,x2,y2], \"score\",\n"
    "   \"keypoints\": [[x,y],...], \"embedding\": {\"model\", \"dim\"}}], \"timings_ms\": {...}}\n"
    "An image that fails prints {\"path\", \"error\": {\"code\", \"message\"}} and the next\n"
    "image is processed. Exit status: 0 when every image succeeded, 1 when any failed,\n"
    "2 on a usage or model loading error.\n",
    "usage: inferd models fetch [options] NAME\n"
    "       inferd models fetch [options] --hub-url URL immich/MODEL\n"
    "\n"
    "Downloads model NAME as described by the catalogue, checks the size and sha256\n"
    "of every file, and installs it as MODELS_DIR/NAME in one step. A download that\n"
    "was cut resumes where it stopped (Range request); a file whose sha256 is wrong\n"
    "is deleted and nothing is installed. When MODELS_DIR/NAME already holds the\n"
    "right files it prints \"present\" and does nothing; a corrupted install from the\n"
    "same catalogue entry is repaired. Partial downloads live in MODELS_DIR/.partial.\n"
    "\n"
    "The catalogue names no download host: its URLs are templates such as\n"
    "{base}/NAME/model.onnx. Point --base-url at a mirror of the model files.\n"
    "\n"
    "immich/MODEL fetches Immich's model repository immich-app/MODEL from the\n"
    "Hugging Face compatible hub at --hub-url (the Hugging Face hub or a mirror; no\n"
    "default): it lists the repository at --revision, takes the files of a CLIP model\n"
    "(visual/, textual/, config.json) or of a face model (detection/, recognition/),\n"
    "skips other runtimes' files (ArmNN, RKNN, OpenVINO), checks sizes, the sha256 of\n"
    "large (LFS) files and the git id of the others, and installs MODELS_DIR/MODEL,\n"
    "usable as --image-embedder MODEL (CLIP) or --detector MODEL (faces).\n"
    "Exit status: 0 success or nothing to do, 1 failure, 2 usage error.\n",
    "usage: inferd models list [options]\n"
    "\n"
    "Prints NAME, TASK, DIM, LICENCE and SHA (ok, or what is wrong) for every model\n"
    "directory; exits 1 when a model fails its check, 2 on a usage error.\n",
    "usage: inferd index [options] DIR...\n"
    "\n"
    "Walks each DIR (recursively, skipping hidden entries), picks image files by their\n"
    "content (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF) and submits them to a running\n"
    "inferd as path jobs, in batches: a file's asset id is its path relative to the\n"
    "media root (files outside it are refused). It shows live progress from the\n"
    "server's events and ends with a summary; a new run submits only new or changed\n"
    "files. Ctrl-C stops submitting: what was submitted keeps running on the server.\n"
    "Exit status: 0 every file done, 1 a file failed or was refused, 2 usage error,\n"
    "3 the server could not be reached, 130 interrupted.\n",
};

static void usage_build(void)
{
    for (int role = 0; role < NROLES; role++) {
        char *buf = usage_bufs[role];
        size_t size = sizeof usage_bufs[role];
        size_t n = 0;
        n += (size_t)snprintf(buf + n, size - n, "%s%s", usage_head[role],
                              "Each option can also be set by the environment variable shown; "
                              "flags win.\n"
                              "\n"
                              "options:\n");
        for (size_t i = 0; i < NOPTS && n < size; i++) {
            const opt_def *o = &opts[i];
            if (!role_uses(o, (config_role)role))
                continue;
            char left[64], shortf[8] = "";
            if (o->short_flag != 0)
                snprintf(shortf, sizeof shortf, "-%c, ", o->short_flag);
            snprintf(left, sizeof left, "%s--%s%s%s", shortf, o->flag,
                     o->arg != NULL ? " " : "", o->arg != NULL ? o->arg : "");
            char text[640];
            const char *help = o->help;
            if (role == CONFIG_ROLE_WORKER && strcmp(o->flag, "listen") == 0)
                help = "address of /health, /ready and /metrics; port 0 picks a free one "
                       "(default 127.0.0.1:8003)";
            if (role == CONFIG_ROLE_RECLUSTER && strcmp(o->flag, "data-dir") == 0)
                help = "where the default database lives (default ./var)";
            if (role == CONFIG_ROLE_ANALYZE && strcmp(o->flag, "intra-op-threads") == 0)
                help = "ONNX Runtime threads per model run (default: every core)";
            if (role == CONFIG_ROLE_ANALYZE && strcmp(o->flag, "image-embedder") == 0)
                help = "image embedding model, \"\" to skip (default mobilenet-v2-mid)";
            if (role == CONFIG_ROLE_ANALYZE && strcmp(o->flag, "face-embedder") == 0)
                help = "face embedding model, \"\" to skip (default dlib-resnet)";
            if (role == CONFIG_ROLE_INDEX && strcmp(o->flag, "media-root") == 0)
                help = "the server's --media-root as this machine sees it: files are "
                       "submitted by their path relative to it (default: the one the server "
                       "reports in GET /v1/info)";
            if (role == CONFIG_ROLE_INDEX && strcmp(o->flag, "token") == 0)
                help = "send \"Authorization: Bearer TOKEN\"; prefer --token-file, flags show "
                       "in ps (default empty)";
            if (role == CONFIG_ROLE_MODELS_FETCH && strcmp(o->flag, "allow-private-urls") == 0)
                help = "let --base-url, --hub-url and the catalogue's URLs reach "
                       "loopback/private/link-local addresses (a mirror on a local network) "
                       "(default off)";
            if (role != CONFIG_ROLE_SERVE && role != CONFIG_ROLE_API &&
                role != CONFIG_ROLE_WORKER && strcmp(o->flag, "models-dir") == 0)
                help = "model directories (default var/models)";
            if (o->env != NULL)
                snprintf(text, sizeof text, "%s [%s]", help, o->env);
            else
                snprintf(text, sizeof text, "%s", help);
            n += (size_t)snprintf(buf + n, size - n, "  %-26s ", left);
            if (n >= size)
                break;
            n = wrap(buf, size, n, 29, text);
        }
    }
}

void config_print_error(const char *cmd, const char *msg)
{
    if (strncmp(msg, cmd, strlen(cmd)) == 0)
        fprintf(stderr, "%s\n", msg);
    else
        fprintf(stderr, "%s: %s\n", cmd, msg);
}

const char *config_usage(void)
{
    return config_usage_role(CONFIG_ROLE_SERVE);
}

const char *config_usage_role(config_role role)
{
    pthread_once(&usage_once, usage_build);
    if ((unsigned)role >= CONFIG_ROLES)
        role = CONFIG_ROLE_SERVE;
    return usage_bufs[role];
}
