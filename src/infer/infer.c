/*
 * infer/infer.c — the only file that calls the ONNX Runtime C API.
 *
 * Every OrtStatus is translated here into ERR_RUNTIME (or ERR_MODEL at load)
 * with ORT's message kept. Sessions are created with per-session threads
 * disabled, so all sessions share the env's global pools: the process has one
 * intra-op pool whose size the operator sets (slots x intra_op ~ cores), not
 * one pool per model per slot.
 *
 * Threading: an infer_model is immutable after infer_model_load, and OrtRun
 * is thread-safe on one session, so infer_run takes no lock. Inputs and
 * outputs with fully known shapes are bound to the caller's buffers
 * (CreateTensorWithDataAsOrtValue): a run allocates no tensor memory of its own.
 *
 * Deadlines. A run with a deadline (infer_run_until) gets its own
 * OrtRunOptions and registers it with the env's watchdog, a thread started
 * on the first such run that sleeps until the nearest registered deadline and
 * then calls RunOptionsSetTerminate on every run past its own: ORT checks the
 * flag between kernels and returns, and the run fails with ERR_TIMEOUT. The
 * registry (`wd`) is guarded by `wd.lock`, held only for list edits and the
 * terminate calls (which only set a flag); no run holds it while running.
 */
#include "infer/infer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#define INFER_MAX_RANK 8

#define INFER_MAX_TIMED 512 /* runs with a deadline at once, per env */

/* The runs a deadline may stop, and the thread that stops them. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a run registered (a nearer deadline maybe), or stop */
    pthread_t thread;
    int started, stop;
    OrtRunOptions *ro[INFER_MAX_TIMED];
    int64_t until[INFER_MAX_TIMED]; /* monotonic ms; 0 = free slot */
} infer_watchdog;

struct infer_env {
    OrtEnv *env;
    OrtMemoryInfo *cpu;
    infer_watchdog wd;
};

typedef struct {
    int64_t dims[INFER_MAX_RANK]; /* -1 where dynamic */
    int rank;
} tensor_shape;

struct infer_model {
    infer_env *env;
    OrtSession *session;
    model_manifest man;
    tensor_shape in_shape;
    /* Parallel to man.outputs: static shapes as the model declares them. */
    tensor_shape out_shape[MANIFEST_MAX_OUTPUTS];
};

static const OrtApi *api(void)
{
    static const OrtApi *a;
    if (a == NULL)
        a = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    return a;
}

/* Translates a non-NULL status into `code` + ORT's message and releases it. */
static int status_err(OrtStatus *st, int code, err_t *e, const char *what)
{
    int rc = err_set(e, code, "%s: %s", what, api()->GetErrorMessage(st));
    api()->ReleaseStatus(st);
    return rc;
}

#define ORT_TRY(call, code, what)                                                                  \
    do {                                                                                           \
        OrtStatus *st__ = (call);                                                                  \
        if (st__ != NULL) {                                                                        \
            rc = status_err(st__, (code), e, (what));                                              \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

const char *infer_runtime_version(void)
{
    return OrtGetApiBase()->GetVersionString();
}

int infer_api_version(void)
{
    return ORT_API_VERSION;
}

int infer_env_new(const infer_env_opts *opts, infer_env **out, err_t *e)
{
    infer_env_opts o = {0};
    if (opts != NULL)
        o = *opts;
    int rc = ERR_OK;
    *out = NULL;
    if (api() == NULL)
        return err_set(e, ERR_RUNTIME, "ONNX Runtime %s does not provide C API version %d",
                       infer_runtime_version(), ORT_API_VERSION);
    infer_env *env = xcalloc(1, sizeof *env);
    pthread_mutex_init(&env->wd.lock, NULL);
    clock_cond_init(&env->wd.cond);
    OrtThreadingOptions *tp = NULL;
    ORT_TRY(api()->CreateThreadingOptions(&tp), ERR_RUNTIME, "threading options");
    if (o.intra_op_threads > 0)
        ORT_TRY(api()->SetGlobalIntraOpNumThreads(tp, o.intra_op_threads), ERR_RUNTIME,
                "intra-op threads");
    ORT_TRY(api()->SetGlobalInterOpNumThreads(tp, o.inter_op_threads > 0 ? o.inter_op_threads : 1),
            ERR_RUNTIME, "inter-op threads");
    ORT_TRY(api()->SetGlobalSpinControl(tp, o.allow_spinning ? 1 : 0), ERR_RUNTIME,
            "spin control");
    int level = o.log_level > 0 ? o.log_level : ORT_LOGGING_LEVEL_ERROR;
    if (level > ORT_LOGGING_LEVEL_FATAL)
        level = ORT_LOGGING_LEVEL_FATAL;
    ORT_TRY(api()->CreateEnvWithGlobalThreadPools((OrtLoggingLevel)level, "inferd", tp, &env->env),
            ERR_RUNTIME, "create env");
    ORT_TRY(api()->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &env->cpu),
            ERR_RUNTIME, "memory info");
    *out = env;
    env = NULL;
out:
    if (tp != NULL)
        api()->ReleaseThreadingOptions(tp);
    infer_env_free(env);
    return rc;
}

void infer_env_free(infer_env *env)
{
    if (env == NULL)
        return;
    if (env->wd.started) {
        pthread_mutex_lock(&env->wd.lock);
        env->wd.stop = 1;
        pthread_cond_signal(&env->wd.cond);
        pthread_mutex_unlock(&env->wd.lock);
        pthread_join(env->wd.thread, NULL);
    }
    pthread_cond_destroy(&env->wd.cond);
    pthread_mutex_destroy(&env->wd.lock);
    if (env->cpu != NULL)
        api()->ReleaseMemoryInfo(env->cpu);
    if (env->env != NULL)
        api()->ReleaseEnv(env->env);
    free(env);
}

/* Reads the static shape of input/output `index` into `sh`. */
static int read_shape(const OrtSession *s, int is_input, size_t index, tensor_shape *sh, err_t *e)
{
    int rc = ERR_OK;
    OrtTypeInfo *ti = NULL;
    if (is_input)
        ORT_TRY(api()->SessionGetInputTypeInfo(s, index, &ti), ERR_MODEL, "input type");
    else
        ORT_TRY(api()->SessionGetOutputTypeInfo(s, index, &ti), ERR_MODEL, "output type");
    const OrtTensorTypeAndShapeInfo *tsi = NULL;
    ORT_TRY(api()->CastTypeInfoToTensorInfo(ti, &tsi), ERR_MODEL, "tensor info");
    if (tsi == NULL) {
        rc = err_set(e, ERR_MODEL, "model %s %zu is not a tensor", is_input ? "input" : "output",
                     index);
        goto out;
    }
    ONNXTensorElementDataType et;
    ORT_TRY(api()->GetTensorElementType(tsi, &et), ERR_MODEL, "element type");
    if (et != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        rc = err_set(e, ERR_UNSUPPORTED, "model %s %zu is not float32 (type %d)",
                     is_input ? "input" : "output", index, (int)et);
        goto out;
    }
    size_t rank;
    ORT_TRY(api()->GetDimensionsCount(tsi, &rank), ERR_MODEL, "rank");
    if (rank > INFER_MAX_RANK) {
        rc = err_set(e, ERR_UNSUPPORTED, "tensor rank %zu exceeds %d", rank, INFER_MAX_RANK);
        goto out;
    }
    ORT_TRY(api()->GetDimensions(tsi, sh->dims, rank), ERR_MODEL, "dims");
    sh->rank = (int)rank;
out:
    if (ti != NULL)
        api()->ReleaseTypeInfo(ti);
    return rc;
}

/* Finds `name` among the session's inputs (is_input) or outputs; -1 if absent. */
static long find_name(OrtSession *s, int is_input, const char *name, err_t *e, int *rc)
{
    OrtAllocator *alloc;
    OrtStatus *st = api()->GetAllocatorWithDefaultOptions(&alloc);
    if (st != NULL) {
        *rc = status_err(st, ERR_RUNTIME, e, "allocator");
        return -1;
    }
    size_t n = 0;
    st = is_input ? api()->SessionGetInputCount(s, &n) : api()->SessionGetOutputCount(s, &n);
    if (st != NULL) {
        *rc = status_err(st, ERR_MODEL, e, "count");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char *nm = NULL;
        st = is_input ? api()->SessionGetInputName(s, i, alloc, &nm)
                      : api()->SessionGetOutputName(s, i, alloc, &nm);
        if (st != NULL) {
            *rc = status_err(st, ERR_MODEL, e, "name");
            return -1;
        }
        int eq = strcmp(nm, name) == 0;
        OrtStatus *fst = api()->AllocatorFree(alloc, nm);
        if (fst != NULL)
            api()->ReleaseStatus(fst);
        if (eq)
            return (long)i;
    }
    return -1;
}

static int open_session(infer_model *m, const char *dir, const char *path, err_t *e);

/*
 * Resolves a manifest tensor name "#K" (the K-th input or output, see
 * infer/manifest.h) into the model's real name, written back into `name`
 * (cap bytes). Other names are left alone. ERR_MANIFEST when K is out of
 * range or the real name does not fit.
 */
static int resolve_index_name(OrtSession *s, int is_input, char *name, size_t cap, const char *dir,
                              err_t *e)
{
    if (name[0] != '#')
        return ERR_OK;
    char *end = NULL;
    long k = strtol(name + 1, &end, 10);
    size_t n = 0;
    OrtStatus *st =
        is_input ? api()->SessionGetInputCount(s, &n) : api()->SessionGetOutputCount(s, &n);
    if (st != NULL)
        return status_err(st, ERR_MODEL, e, "count");
    if (end == name + 1 || *end != '\0' || k < 0 || (size_t)k >= n)
        return err_set(e, ERR_MANIFEST, "%s: %s \"%s\": the model has %zu", dir,
                       is_input ? "input" : "output", name, n);
    OrtAllocator *alloc;
    if ((st = api()->GetAllocatorWithDefaultOptions(&alloc)) != NULL)
        return status_err(st, ERR_RUNTIME, e, "allocator");
    char *nm = NULL;
    st = is_input ? api()->SessionGetInputName(s, (size_t)k, alloc, &nm)
                  : api()->SessionGetOutputName(s, (size_t)k, alloc, &nm);
    if (st != NULL)
        return status_err(st, ERR_MODEL, e, "name");
    int rc = ERR_OK;
    if (strlen(nm) >= cap)
        rc = err_set(e, ERR_MANIFEST, "%s: tensor name \"%s\" is too long", dir, nm);
    else
        memcpy(name, nm, strlen(nm) + 1);
    OrtStatus *fst = api()->AllocatorFree(alloc, nm);
    if (fst != NULL)
        api()->ReleaseStatus(fst);
    return rc;
}

int infer_model_load(infer_env *env, const char *dir, int verify_sha256, infer_model **out,
                     err_t *e)
{
    int rc = ERR_OK;
    *out = NULL;
    infer_model *m = xcalloc(1, sizeof *m);
    m->env = env;
    if ((rc = manifest_load(dir, &m->man, e)) != ERR_OK)
        goto out;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, m->man.file) >= sizeof path) {
        rc = err_set(e, ERR_INVAL, "model path too long");
        goto out;
    }
    if (verify_sha256 && m->man.sha256[0] != '\0') {
        char got[65];
        if ((rc = sha256_file_hex(path, got, e)) != ERR_OK)
            goto out;
        if (strcmp(got, m->man.sha256) != 0) {
            rc = err_set(e, ERR_CHECKSUM, "%s: sha256 %s does not match the manifest's %s", path,
                         got, m->man.sha256);
            goto out;
        }
    }
    rc = open_session(m, dir, path, e);
    if (rc != ERR_OK)
        goto out;
    *out = m;
    m = NULL;
out:
    infer_model_free(m);
    return rc;
}

/*
 * Creates m's session from `path` and checks the manifest's names against it
 * (`dir` names the model in messages). A tensor model (TASK_UNKNOWN) only
 * needs its input to exist; image models need a float rank-4 input.
 */
static int open_session(infer_model *m, const char *dir, const char *path, err_t *e)
{
    int rc = ERR_OK;
    OrtSessionOptions *so = NULL;
    infer_env *env = m->env;
    ORT_TRY(api()->CreateSessionOptions(&so), ERR_RUNTIME, "session options");
    ORT_TRY(api()->DisablePerSessionThreads(so), ERR_RUNTIME, "disable per-session threads");
    ORT_TRY(api()->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL), ERR_RUNTIME,
            "optimization level");
    ORT_TRY(api()->SetSessionExecutionMode(so, ORT_SEQUENTIAL), ERR_RUNTIME, "execution mode");
    ORT_TRY(api()->CreateSession(env->env, path, so, &m->session), ERR_MODEL, path);

    if ((rc = resolve_index_name(m->session, 1, m->man.input_name, sizeof m->man.input_name, dir,
                                 e)) != ERR_OK)
        goto out;
    for (int i = 0; i < m->man.noutputs; i++)
        if ((rc = resolve_index_name(m->session, 0, m->man.outputs[i].name,
                                     sizeof m->man.outputs[i].name, dir, e)) != ERR_OK)
            goto out;
    long idx = find_name(m->session, 1, m->man.input_name, e, &rc);
    if (rc != ERR_OK)
        goto out;
    if (idx < 0) {
        rc = err_set(e, ERR_MANIFEST, "%s: input \"%s\" named in the manifest is not in the model",
                     dir, m->man.input_name);
        goto out;
    }
    /* A tensor model (TASK_UNKNOWN) may take any input; image models take float NCHW/NHWC. */
    if (m->man.task != TASK_UNKNOWN) {
        if ((rc = read_shape(m->session, 1, (size_t)idx, &m->in_shape, e)) != ERR_OK)
            goto out;
        if (m->in_shape.rank != 4) {
            rc = err_set(e, ERR_MANIFEST, "%s: input \"%s\" has rank %d, expected 4", dir,
                         m->man.input_name, m->in_shape.rank);
            goto out;
        }
    }
    for (int i = 0; i < m->man.noutputs; i++) {
        idx = find_name(m->session, 0, m->man.outputs[i].name, e, &rc);
        if (rc != ERR_OK)
            goto out;
        if (idx < 0) {
            rc = err_set(e, ERR_MANIFEST,
                         "%s: output \"%s\" (role %s) named in the manifest is not in the model",
                         dir, m->man.outputs[i].name, m->man.outputs[i].role);
            goto out;
        }
        if ((rc = read_shape(m->session, 0, (size_t)idx, &m->out_shape[i], e)) != ERR_OK)
            goto out;
    }
    log_debug("infer", "model=%s task=%s loaded from %s", m->man.name,
              manifest_task_name(m->man.task), dir);
out:
    if (so != NULL)
        api()->ReleaseSessionOptions(so);
    return rc;
}

int infer_model_load_manifest(infer_env *env, const char *model_path, const model_manifest *man,
                              infer_model **out, err_t *e)
{
    *out = NULL;
    infer_model *m = xcalloc(1, sizeof *m);
    m->env = env;
    m->man = *man;
    for (int i = 0; i < MANIFEST_MAX_OUTPUTS; i++)
        for (int j = 0; j < MANIFEST_MAX_LABELS; j++)
            m->man.outputs[i].labels[j] =
                (i < man->noutputs && j < man->outputs[i].nlabels && man->outputs[i].labels[j])
                    ? xstrdup(man->outputs[i].labels[j])
                    : NULL;
    int rc = open_session(m, model_path, model_path, e);
    if (rc == ERR_OK) {
        *out = m;
        m = NULL;
    }
    infer_model_free(m);
    return rc;
}

void infer_model_free(infer_model *m)
{
    if (m == NULL)
        return;
    if (m->session != NULL)
        api()->ReleaseSession(m->session);
    manifest_clear(&m->man);
    free(m);
}

const model_manifest *infer_model_manifest(const infer_model *m)
{
    return &m->man;
}

size_t infer_input_size(const infer_model *m)
{
    return (size_t)m->man.width * (size_t)m->man.height * (size_t)m->man.channels;
}

int infer_output_shape(const infer_model *m, const char *role, int64_t dims[8])
{
    for (int i = 0; i < m->man.noutputs; i++)
        if (strcmp(m->man.outputs[i].role, role) == 0) {
            memcpy(dims, m->out_shape[i].dims, sizeof(int64_t) * (size_t)m->out_shape[i].rank);
            return m->out_shape[i].rank;
        }
    return -1;
}

void infer_model_set_embedding_dim(infer_model *m, int dim)
{
    m->man.embedding_dim = dim;
}

int infer_fixed_batch(const infer_model *m)
{
    return m->in_shape.dims[0] > 0 ? (int)m->in_shape.dims[0] : 0;
}

/* The watchdog thread: terminates registered runs as their deadlines pass. */
static void *watchdog_main(void *arg)
{
    infer_watchdog *wd = arg;
    pthread_mutex_lock(&wd->lock);
    while (!wd->stop) {
        int64_t now = clock_mono_ms(), next = 0;
        for (int i = 0; i < INFER_MAX_TIMED; i++) {
            if (wd->until[i] == 0)
                continue;
            if (wd->until[i] <= now) {
                OrtStatus *st = api()->RunOptionsSetTerminate(wd->ro[i]);
                if (st != NULL)
                    api()->ReleaseStatus(st);
                wd->until[i] = -1; /* terminated; the run unregisters itself */
            } else if (wd->until[i] > 0 && (next == 0 || wd->until[i] < next)) {
                next = wd->until[i];
            }
        }
        if (next == 0) {
            pthread_cond_wait(&wd->cond, &wd->lock);
        } else {
            struct timespec ts;
            clock_deadline(&ts, next - now);
            pthread_cond_timedwait(&wd->cond, &wd->lock, &ts);
        }
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

/*
 * Registers `ro` to be terminated at `until` (monotonic ms); returns its slot
 * or -1 when the registry is full (the run then goes unguarded: deadlines are
 * a safety net, not a contract).
 */
static int watchdog_add(infer_env *env, OrtRunOptions *ro, int64_t until)
{
    infer_watchdog *wd = &env->wd;
    int slot = -1;
    pthread_mutex_lock(&wd->lock);
    if (!wd->started && pthread_create(&wd->thread, NULL, watchdog_main, wd) == 0)
        wd->started = 1;
    for (int i = 0; wd->started && i < INFER_MAX_TIMED && slot < 0; i++)
        if (wd->until[i] == 0) {
            wd->ro[i] = ro;
            wd->until[i] = until;
            slot = i;
        }
    pthread_cond_signal(&wd->cond);
    pthread_mutex_unlock(&wd->lock);
    return slot;
}

/* Unregisters slot `i`; returns whether the watchdog terminated the run. */
static int watchdog_remove(infer_env *env, int i)
{
    infer_watchdog *wd = &env->wd;
    pthread_mutex_lock(&wd->lock);
    int terminated = wd->until[i] == -1;
    wd->until[i] = 0;
    wd->ro[i] = NULL;
    pthread_mutex_unlock(&wd->lock);
    return terminated;
}

/*
 * Resolves the requested output roles, binds caller buffers where the output
 * shape is static, runs `in_val` as input `in_name` and copies dynamic
 * outputs out. `batch` replaces a dynamic first output dimension. With a
 * deadline (monotonic ms, > 0) the run is stopped there (ERR_TIMEOUT).
 */
static int run_one(infer_model *m, const char *in_name, const OrtValue *in_val, int64_t batch,
                   infer_output *outs, size_t nouts, int64_t deadline_ms, err_t *e)
{
    int rc = ERR_OK;
    OrtRunOptions *ro = NULL;
    int wslot = -1;
    const char *out_names[MANIFEST_MAX_OUTPUTS];
    OrtValue *out_vals[MANIFEST_MAX_OUTPUTS] = {0};
    int out_idx[MANIFEST_MAX_OUTPUTS];
    for (size_t i = 0; i < nouts; i++) {
        out_idx[i] = -1;
        for (int j = 0; j < m->man.noutputs; j++)
            if (strcmp(m->man.outputs[j].role, outs[i].role) == 0)
                out_idx[i] = j;
        if (out_idx[i] < 0)
            return err_set(e, ERR_INVAL, "model %s has no output role \"%s\"", m->man.name,
                           outs[i].role);
        out_names[i] = m->man.outputs[out_idx[i]].name;
        outs[i].count = 0;
        outs[i].rank = 0;
    }

    /* Bind caller buffers where the output shape is known up to the batch dimension. */
    for (size_t i = 0; i < nouts; i++) {
        const tensor_shape *sh = &m->out_shape[out_idx[i]];
        int64_t dims[INFER_MAX_RANK];
        size_t count = 1;
        int known = sh->rank > 0;
        for (int d = 0; d < sh->rank; d++) {
            dims[d] = sh->dims[d];
            if (d == 0 && dims[d] < 0)
                dims[d] = batch;
            if (dims[d] < 0)
                known = 0;
            else
                count *= (size_t)dims[d];
        }
        if (!known)
            continue;
        if (count > outs[i].cap) {
            rc = err_set(e, ERR_TOOBIG, "output %s needs %zu floats, buffer holds %zu",
                         outs[i].role, count, outs[i].cap);
            goto out;
        }
        ORT_TRY(api()->CreateTensorWithDataAsOrtValue(
                    m->env->cpu, outs[i].data, count * sizeof(float), dims, (size_t)sh->rank,
                    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &out_vals[i]),
                ERR_RUNTIME, "output tensor");
    }
    const char *in_names[1] = {in_name};
    const OrtValue *ins[1] = {in_val};
    if (deadline_ms > 0) {
        if (clock_mono_ms() >= deadline_ms) {
            rc = err_set(e, ERR_TIMEOUT, "%s: the deadline passed before the run", m->man.name);
            goto out;
        }
        ORT_TRY(api()->CreateRunOptions(&ro), ERR_RUNTIME, "run options");
        wslot = watchdog_add(m->env, ro, deadline_ms);
    }
    OrtStatus *rst = api()->Run(m->session, ro, in_names, ins, 1, out_names, nouts, out_vals);
    int terminated = wslot >= 0 && watchdog_remove(m->env, wslot);
    if (rst != NULL) {
        rc = status_err(rst, terminated ? ERR_TIMEOUT : ERR_RUNTIME, e,
                        terminated ? "deadline passed; run terminated" : m->man.name);
        goto out;
    }

    for (size_t i = 0; i < nouts; i++) {
        OrtTensorTypeAndShapeInfo *tsi = NULL;
        ORT_TRY(api()->GetTensorTypeAndShape(out_vals[i], &tsi), ERR_RUNTIME, "output shape");
        size_t rank = 0, count = 0;
        OrtStatus *st = api()->GetDimensionsCount(tsi, &rank);
        if (st == NULL && rank <= INFER_MAX_RANK)
            st = api()->GetDimensions(tsi, outs[i].shape, rank);
        if (st == NULL)
            st = api()->GetTensorShapeElementCount(tsi, &count);
        api()->ReleaseTensorTypeAndShapeInfo(tsi);
        if (st != NULL) {
            rc = status_err(st, ERR_RUNTIME, e, "output shape");
            goto out;
        }
        if (rank > INFER_MAX_RANK) {
            rc = err_set(e, ERR_UNSUPPORTED, "output rank %zu exceeds %d", rank, INFER_MAX_RANK);
            goto out;
        }
        outs[i].rank = (int)rank;
        float *data = NULL;
        ORT_TRY(api()->GetTensorMutableData(out_vals[i], (void **)&data), ERR_RUNTIME,
                "output data");
        if (data != outs[i].data) {
            /* ORT allocated it (dynamic shape): copy out, checking the size first. */
            if (count > outs[i].cap) {
                rc = err_set(e, ERR_TOOBIG, "output %s has %zu floats, buffer holds %zu",
                             outs[i].role, count, outs[i].cap);
                goto out;
            }
            memcpy(outs[i].data, data, count * sizeof(float));
        }
        outs[i].count = count;
    }
out:
    for (size_t i = 0; i < nouts; i++)
        if (out_vals[i] != NULL)
            api()->ReleaseValue(out_vals[i]);
    if (ro != NULL)
        api()->ReleaseRunOptions(ro);
    return rc;
}

int infer_run(infer_model *m, const float *input, int batch, infer_output *outs, size_t nouts,
              err_t *e)
{
    return infer_run_until(m, input, batch, outs, nouts, 0, e);
}

int infer_run_until(infer_model *m, const float *input, int batch, infer_output *outs,
                    size_t nouts, int64_t deadline_ms, err_t *e)
{
    int rc = ERR_OK;
    if (batch < 1 || nouts == 0 || nouts > MANIFEST_MAX_OUTPUTS)
        return err_set(e, ERR_INVAL, "infer_run: batch %d, %zu outputs", batch, nouts);
    if (m->man.task == TASK_UNKNOWN)
        return err_set(e, ERR_INVAL, "model %s is a tensor model: use infer_run_tensor",
                       m->man.name);
    if (m->in_shape.dims[0] > 0 && m->in_shape.dims[0] != batch)
        return err_set(e, ERR_INVAL, "model %s takes batch %lld, not %d", m->man.name,
                       (long long)m->in_shape.dims[0], batch);

    int64_t in_dims[4];
    if (m->man.layout == LAYOUT_NHWC) {
        int64_t d[4] = {batch, m->man.height, m->man.width, m->man.channels};
        memcpy(in_dims, d, sizeof d);
    } else {
        int64_t d[4] = {batch, m->man.channels, m->man.height, m->man.width};
        memcpy(in_dims, d, sizeof d);
    }
    OrtValue *in_val = NULL;
    size_t in_count = (size_t)batch * infer_input_size(m);
    ORT_TRY(api()->CreateTensorWithDataAsOrtValue(m->env->cpu, (void *)input,
                                                  in_count * sizeof(float), in_dims, 4,
                                                  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in_val),
            ERR_RUNTIME, "input tensor");
    rc = run_one(m, m->man.input_name, in_val, batch, outs, nouts, deadline_ms, e);
out:
    if (in_val != NULL)
        api()->ReleaseValue(in_val);
    return rc;
}

int infer_run_tensor(infer_model *m, const char *input_name, infer_elem_type elem_type,
                     const void *data, const int64_t *shape, int rank, infer_output *outs,
                     size_t nouts, err_t *e)
{
    int rc = ERR_OK;
    if (nouts == 0 || nouts > MANIFEST_MAX_OUTPUTS || rank < 1 || rank > INFER_MAX_RANK)
        return err_set(e, ERR_INVAL, "infer_run_tensor: rank %d, %zu outputs", rank, nouts);
    size_t elem = elem_type == INFER_ELEM_INT64 ? 8 : 4;
    if (elem_type != INFER_ELEM_FLOAT && elem_type != INFER_ELEM_INT32 &&
        elem_type != INFER_ELEM_INT64)
        return err_set(e, ERR_INVAL, "infer_run_tensor: element type %d", (int)elem_type);
    size_t count = 1;
    for (int d = 0; d < rank; d++) {
        if (shape[d] <= 0 || shape[d] > (1 << 30))
            return err_set(e, ERR_INVAL, "infer_run_tensor: dimension %d is %lld", d,
                           (long long)shape[d]);
        count *= (size_t)shape[d];
    }
    OrtValue *in_val = NULL;
    ORT_TRY(api()->CreateTensorWithDataAsOrtValue(m->env->cpu, (void *)data, count * elem, shape,
                                                  (size_t)rank,
                                                  (ONNXTensorElementDataType)elem_type, &in_val),
            ERR_RUNTIME, "input tensor");
    rc = run_one(m, input_name ? input_name : m->man.input_name, in_val, shape[0], outs, nouts, 0,
                 e);
out:
    if (in_val != NULL)
        api()->ReleaseValue(in_val);
    return rc;
}

int infer_input_info(const infer_model *m, const char *name, int *elem_type, int64_t *dims,
                     int *rank, err_t *e)
{
    int rc = ERR_OK;
    long idx = find_name(m->session, 1, name, e, &rc);
    if (rc != ERR_OK)
        return rc;
    if (idx < 0)
        return err_set(e, ERR_INVAL, "model %s has no input \"%s\"", m->man.name, name);
    OrtTypeInfo *ti = NULL;
    ORT_TRY(api()->SessionGetInputTypeInfo(m->session, (size_t)idx, &ti), ERR_MODEL, "input type");
    const OrtTensorTypeAndShapeInfo *tsi = NULL;
    ORT_TRY(api()->CastTypeInfoToTensorInfo(ti, &tsi), ERR_MODEL, "tensor info");
    if (tsi == NULL) {
        rc = err_set(e, ERR_MODEL, "model input \"%s\" is not a tensor", name);
        goto out;
    }
    ONNXTensorElementDataType et;
    ORT_TRY(api()->GetTensorElementType(tsi, &et), ERR_MODEL, "element type");
    size_t r;
    ORT_TRY(api()->GetDimensionsCount(tsi, &r), ERR_MODEL, "rank");
    if (r > INFER_MAX_RANK) {
        rc = err_set(e, ERR_UNSUPPORTED, "tensor rank %zu exceeds %d", r, INFER_MAX_RANK);
        goto out;
    }
    ORT_TRY(api()->GetDimensions(tsi, dims, r), ERR_MODEL, "dims");
    *elem_type = (int)et;
    *rank = (int)r;
out:
    if (ti != NULL)
        api()->ReleaseTypeInfo(ti);
    return rc;
}

float infer_l2_normalize(float *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    float norm = (float)sqrt(s);
    if (norm > 0.0f) {
        float inv = 1.0f / norm;
        for (size_t i = 0; i < n; i++)
            v[i] *= inv;
    }
    return norm;
}
