/*
 * util/config.h — the daemon's one typed configuration, filled from flags and
 * INFERD_* environment variables (flags win), validated at start with errors
 * that name the flag, read-only afterwards. Every command reads its options
 * through the same table: the daemons (serve, api, worker), `inferd people
 * recluster` (store, clustering), `inferd analyze` (models) and `inferd
 * models fetch|list`.
 */
#ifndef INFERD_UTIL_CONFIG_H
#define INFERD_UTIL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Which process `inferd` runs (README "Scaling out"). */
typedef enum {
    CONFIG_ROLE_SERVE = 0,  /* HTTP API + worker slots in one process (the default) */
    CONFIG_ROLE_API = 1,    /* HTTP API only: enqueue, query, search; no slots, no models */
    CONFIG_ROLE_WORKER = 2, /* worker slots + /health, /ready, /metrics on their own port */
    /* `inferd people recluster`: the store and clustering options only */
    CONFIG_ROLE_RECLUSTER = 3,
    CONFIG_ROLE_ANALYZE = 4,      /* `inferd analyze IMAGE...`: the model options */
    CONFIG_ROLE_MODELS_FETCH = 5, /* `inferd models fetch NAME` */
    CONFIG_ROLE_MODELS_LIST = 6,  /* `inferd models list` */
    CONFIG_ROLE_INDEX = 7,        /* `inferd index DIR...`: a client of a running inferd */
} config_role;

#define CONFIG_ROLES 8

typedef struct {
    config_role role;
    /* --listen HOST:PORT, default 127.0.0.1:8002 (worker role: 8003); port 0 = any free */
    char listen_host[256];
    int listen_port;
    /* --immich-listen HOST:PORT: Immich's machine-learning API (serve role), "" = off;
     * parsed into immich_host + immich_port */
    char immich_listen[300];
    char immich_host[256];
    int immich_port;
    int64_t immich_wait_ms; /* --immich-wait-ms: a /predict waits this long for a slot, 60000 */
    char data_dir[1024];   /* --data-dir, default ./var */
    char models_dir[1024]; /* --models-dir, default var/models */
    char media_root[1024]; /* --media-root, "" = path sources refused */
    char image_embedder[256]; /* --image-embedder, "" = the pipeline's default */
    char face_embedder[256];  /* --face-embedder, "" = the pipeline's default */
    char detector[256];       /* --detector, "" = the pipeline's default */
    char clip_model[1024];    /* --clip-model DIR: text encoder for {text} searches, "" = none */
    char db_url[1100];     /* --db, default sqlite:<data-dir>/inferd.db */
    char mqtt_url[512];    /* --mqtt-url, "" = no MQTT publisher */
    char mqtt_ca_file[1024];   /* --mqtt-ca-file: CAs that sign an mqtts:// broker, "" = system's */
    char mqtt_cert_file[1024]; /* --mqtt-cert-file: client certificate for mqtts://, "" = none */
    char mqtt_key_file[1024];  /* --mqtt-key-file: its private key */
    char token[256];       /* --token: bearer token required on every endpoint but /health */
    char token_file[1024]; /* --token-file: read the token from this file's first line */
    int allow_no_auth;     /* --allow-no-auth: serve the API off loopback without a token */
    char worker_id[64];    /* --worker-id, default <hostname>-<pid> */
    int slots;             /* --slots, default: cores */
    char slot_priority[8]; /* --slot-priority: "batch" (default) or "idle" */
    int intra_op_threads;  /* --intra-op-threads, default 1 when slots > 1, else cores */
    int allow_private_urls;
    size_t max_body;       /* --max-body bytes for uploads, default 64 MiB; JSON bodies 1 MiB */
    int max_connections;        /* --max-connections, default 1024 (capped by RLIMIT_NOFILE) */
    int max_connections_per_ip; /* --max-connections-per-ip, default 64; loopback exempt */
    int64_t header_timeout_ms;  /* --header-timeout-ms to deliver request headers, 10000 */
    int max_event_streams;      /* --max-event-streams open /v1/events streams, default 64 */
    int64_t lease_ms;      /* --lease-ms, default 30000 */
    int64_t poll_ms;       /* --poll-ms, default 1000 */
    int max_attempts;      /* --max-attempts, default 3 */
    int64_t retry_base_ms; /* --retry-base-ms, default 1000 */
    int64_t grace_ms;      /* --grace-ms, default 30000 */
    int fetch_timeout_ms;  /* --fetch-timeout-ms, default 30000 */
    int64_t job_timeout_ms; /* --job-timeout-ms: decode + models of one job or predict, 120000 */
    size_t decode_memory;   /* --decode-memory bytes for decodes in flight; 0 = a quarter of RAM,
                               at most 1 GiB */
    int max_side;          /* --max-side, default 2048 */
    long long max_pixels;  /* --max-pixels, default 100000000 */
    float face_threshold;  /* --face-threshold, default 0.75 */
    /* Search (serve and api roles): index/index.h, index/people.h, the duplicates route. */
    int hnsw_threshold;         /* --hnsw-threshold, default 20000 (INDEX_DEFAULT_HNSW_THRESHOLD) */
    int hnsw_m;                 /* --hnsw-m, default 16 */
    int hnsw_ef_construction;   /* --hnsw-ef-construction, default 200 */
    int hnsw_ef;                /* --hnsw-ef: search beam when a query gives no ef, default 64 */
    int people_min_faces;       /* --people-min-faces, default 3 (also recluster) */
    float people_max_distance;  /* --people-max-distance, 0 = per model (also recluster) */
    float duplicates_threshold; /* --duplicates-threshold: GET .../duplicates default, 0.95 */
    /* analyze */
    int vectors;       /* --vectors: print the embedding vectors */
    int no_tiles;      /* --no-tiles: detect on the whole image only */
    int verify_models; /* --verify-models: check model files' sha256 at load */
    /* models fetch / list */
    char base_url[1024];   /* --base-url: replaces {base} in the catalogue's URLs */
    char catalog[1024];    /* --catalog FILE|URL, default models/catalog.json */
    char hub_url[1024];    /* --hub-url: the hub that serves immich/MODEL, default empty */
    char revision[128];    /* --revision of a hub repository, default "main" */
    int force;             /* --force: replace a directory not installed from this entry */
    int retries;           /* --retries, default 3 */
    int64_t connect_timeout_s; /* --connect-timeout, default 10 */
    int64_t stall_timeout_s;   /* --stall-timeout, default 60 */
    int64_t timeout_s;         /* --timeout per file, default 0: none */
    int no_verify;         /* --no-verify: list without hashing */
    /* index */
    char url[512];         /* --url of the API, default http://127.0.0.1:8002 */
    int batch;             /* --batch jobs per request, default 200 */
    char state_file[1024]; /* --state FILE, "" = ~/.local/state/inferd/index-HOST-PORT.tsv */
    int all;               /* --all: submit unchanged files too */
    int watch;             /* --watch: inotify after the first pass */
    int no_wait;           /* --no-wait: end after submitting */
    int quiet;             /* -q, --quiet: no progress */
    int verbose;
    /* The operands (IMAGE..., NAME): args[0..nargs) is argv[1..] of config_parse_role,
     * which moves them there (like getopt, it permutes argv). */
    char **args;
    int nargs;
    uint64_t given[2]; /* bit i: row i of the option table was set by a flag or a variable */
} config;

/*
 * Fills `c` with defaults, then INFERD_* variables, then flags from
 * argv[1..argc) (argv[0] is the command name used in messages). On a bad
 * value writes a message naming the flag or variable into err[errlen] and
 * returns -1; returns 1 when --help was given (usage printed to stdout);
 * 0 on success.
 */
int config_parse(config *c, int argc, char **argv, char *err, size_t errlen);

/*
 * As config_parse, for `role`: role defaults (the worker listens on
 * 127.0.0.1:8003), and a flag that the role does not use (--slots for the
 * api, --listen for `people recluster`) is an error naming the role; such a
 * variable is ignored, so that one environment can serve every role.
 * Operands (arguments that are not options, anywhere, or everything after
 * "--") are collected in c->args for the commands that take them (analyze:
 * one or more IMAGE; models fetch: one NAME); a wrong count is an error.
 */
int config_parse_role(config *c, config_role role, int argc, char **argv, char *err,
                      size_t errlen);

/*
 * 1 when option `flag` (without "--") was set by a flag or its variable,
 * even to "" (analyze reads an empty --face-embedder as "skip"); 0 when it
 * kept its default or is unknown.
 */
int config_given(const config *c, const char *flag);

/*
 * Prints a config_parse error to stderr for command `cmd`: messages about a
 * flag start with the flag ("--slots: ..."), those about the command line as
 * a whole with the command name already, which is then not repeated.
 */
void config_print_error(const char *cmd, const char *msg);

/* The --help text for `inferd serve`; static storage. */
const char *config_usage(void);

/* The --help text of `role`'s command; static storage. */
const char *config_usage_role(config_role role);

/* "serve", "api", "worker", "people recluster", "analyze", "models fetch", "models list";
 * static storage. */
const char *config_role_name(config_role role);

#endif
