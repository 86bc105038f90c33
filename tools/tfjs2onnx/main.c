/*
 * tools/tfjs2onnx/main.c — the `tfjs2onnx` command.
 *
 *   tfjs2onnx [--output NODE[=NAME]]... MODEL OUT.onnx
 *   tfjs2onnx --arch dlib-resnet [--input-size N] WEIGHTS_MANIFEST OUT.onnx
 *   tfjs2onnx --list-ops MODEL
 *
 * MODEL is a TF.js model.json or a JavaScript file wrapping one (nsfwjs's
 * model.min.js). --output exposes another node's tensor as a graph output,
 * named NAME (default "NODE:0"); NODE may be a unique "/suffix" of the name.
 * A package that ships only weights (a *-weights_manifest.json and its
 * shards) names the architecture that holds them with --arch: dlib-resnet is
 * dlib's face recognition ResNet as face-api ships it (input size 150 unless
 * --input-size says otherwise; see dlibnet.c).
 * OUT is written to OUT.tmp and renamed, so a failed run leaves no partial
 * file. Exit status 0 on success, 1 on a conversion error, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t2o.h"
#include "util/xalloc.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tfjs2onnx [--output NODE[=NAME]]... MODEL OUT.onnx\n"
               "       tfjs2onnx --arch dlib-resnet [--input-size N] WEIGHTS_MANIFEST OUT.onnx\n"
               "       tfjs2onnx --list-ops MODEL\n");
}

static int write_atomic(const char *path, const uint8_t *buf, size_t n, err_t *e)
{
    size_t len = strlen(path) + 8;
    char *tmp = xmalloc(len);
    snprintf(tmp, len, "%s.tmp", path);
    int rc = ERR_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = err_set(e, ERR_IO, "%s: cannot create", tmp);
        goto out;
    }
    int bad = fwrite(buf, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        rc = err_set(e, ERR_IO, "%s: write failed", path);
    }
out:
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    t2o_options o = {0};
    int list = 0, input_size = 150;
    const char *arch = NULL;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list-ops")) {
            list = 1;
        } else if (!strcmp(argv[i], "--arch") && i + 1 < argc) {
            arch = argv[++i];
            if (strcmp(arch, "dlib-resnet") != 0) {
                fprintf(stderr, "tfjs2onnx: unknown --arch '%s' (known: dlib-resnet)\n", arch);
                return 2;
            }
        } else if (!strcmp(argv[i], "--input-size") && i + 1 < argc) {
            char *end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || v < 32 || v > 1024) {
                fprintf(stderr, "tfjs2onnx: --input-size wants 32..1024, got '%s'\n", argv[i]);
                return 2;
            }
            input_size = (int)v;
        } else if (!strcmp(argv[i], "--output") && i + 1 < argc) {
            if (o.nextra == T2O_MAX_EXTRA) {
                fprintf(stderr, "tfjs2onnx: at most %d --output\n", T2O_MAX_EXTRA);
                return 2;
            }
            char *spec = argv[++i];
            char *eq = strchr(spec, '=');
            if (eq)
                *eq = '\0';
            o.extra[o.nextra].node = spec;
            o.extra[o.nextra].name = eq ? eq + 1 : NULL;
            o.nextra++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || npos == 2) {
            usage(stderr);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != (list ? 1 : 2)) {
        usage(stderr);
        return 2;
    }
    err_t e = {0};
    t2o_model m;
    if (t2o_model_load(pos[0], &m, &e)) {
        fprintf(stderr, "tfjs2onnx: %s\n", e.msg);
        return 1;
    }
    if (list && m.nodes == NULL) {
        fprintf(stderr, "tfjs2onnx: %s holds weights only, no graph\n", pos[0]);
        t2o_model_free(&m);
        return 1;
    }
    if (list) {
        t2o_print_histogram(&m, stdout);
        t2o_model_free(&m);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc;
    if (arch != NULL && o.nextra > 0) {
        fprintf(stderr, "tfjs2onnx: --output applies to graph models, not to --arch\n");
        t2o_model_free(&m);
        return 2;
    }
    if (arch != NULL)
        rc = t2o_build_dlib_resnet(&m, input_size, &buf, &n, &e);
    else if (m.nodes == NULL)
        rc = err_set(&e, ERR_INVAL, "%s holds weights only: name the architecture with --arch",
                     pos[0]);
    else
        rc = t2o_convert(&m, &o, &buf, &n, &e);
    if (!rc)
        rc = write_atomic(pos[1], buf, n, &e);
    if (rc)
        fprintf(stderr, "tfjs2onnx: %s\n", e.msg);
    free(buf);
    t2o_model_free(&m);
    return rc ? 1 : 0;
}
