/*
 * fuzz/fuzz_source.c — libFuzzer target for a job's "source", as a client
 * sends it: the API's check of the member (api__parse_source) and the
 * fetcher's whole validation (fetch_check_source: the object's shape, a path
 * resolved under a media root, a URL parsed by libcurl and its literal
 * address classified, an upload name looked up in the spool). No network:
 * fetch_check_source never connects.
 *
 * The input is the source JSON text. The media root and spool are a fresh
 * temporary directory holding one file, "a.jpg", and one upload.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_int.h"
#include "fetch/fetch.h"
#include "fuzz.h"

static fetcher *fz_fetch;

static void setup(void)
{
    char tmpl[] = "/tmp/inferd-fuzz-source-XXXXXX";
    char *dir = mkdtemp(tmpl);
    FUZZ_CHECK(dir != NULL);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/media", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/media/a.jpg", dir);
    FILE *f = fopen(path, "w");
    FUZZ_CHECK(f != NULL);
    fputs("not really a jpeg", f);
    fclose(f);
    char media[PATH_MAX], spool[PATH_MAX];
    snprintf(media, sizeof media, "%s/media", dir);
    snprintf(spool, sizeof spool, "%s/spool", dir);
    fetch_opts o = {.media_root = media, .spool_dir = spool, .max_bytes = 1 << 20};
    err_t e;
    FUZZ_CHECK(fetch_new(&o, &fz_fetch, &e) == ERR_OK);
    char sha[65];
    FUZZ_CHECK(fetch_spool(fz_fetch, "upload", 6, sha, &e) == ERR_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_fetch == NULL)
        setup();
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    err_t e;
    err_clear(&e);
    int rc = fetch_check_source(fz_fetch, text, &e);
    FUZZ_CHECK(rc == ERR_OK || e.msg[0] != '\0');

    json_error_t je;
    json_t *root = json_loadb((const char *)data, size, 0, &je);
    if (root != NULL) {
        char msg[256], *compact = NULL;
        if (api__parse_source(root, &compact, msg, sizeof msg) == 0) {
            /* What the API accepted is valid JSON of the same shape. */
            json_t *again = json_loads(compact, 0, NULL);
            FUZZ_CHECK(again != NULL && json_object_size(again) == 1);
            json_decref(again);
        }
        free(compact);
        json_decref(root);
    }
    free(text);
    return 0;
}
