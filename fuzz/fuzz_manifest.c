/*
 * fuzz/fuzz_manifest.c — libFuzzer target for model manifests
 * (manifest.json, which `inferd models fetch` downloads with a model).
 *
 * The check beyond memory safety: what parses names a model file inside its
 * directory (no '/', not "..") and has sane sizes.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "infer/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model_manifest m;
    err_t e;
    if (manifest_parse((const char *)data, size, "fuzz/manifest.json", &m, &e) == ERR_OK) {
        FUZZ_CHECK(strchr(m.file, '/') == NULL && strcmp(m.file, "..") != 0 && m.file[0]);
        FUZZ_CHECK(m.name[0] != '\0');
        manifest_clear(&m);
    } else {
        FUZZ_CHECK(e.msg[0] != '\0');
    }
    return 0;
}
