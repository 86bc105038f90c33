/*
 * fuzz/fuzz_tfjs.c — libFuzzer target for the TF.js readers of tfjs2onnx:
 * the JavaScript wrapper nsfwjs ships models in (export search and literal
 * to JSON), base64 shards, model.json graphs and weight decoding.
 *
 * Input: SOURCE, optionally followed by a NUL byte and the weight bytes.
 * SOURCE is unwrapped as JS (t2o_js_find_export, t2o_js_to_json) and, when
 * that fails, read as JSON; the model is initialised from it and the first
 * weights manifest group decoded from the weight bytes. The source is also
 * read as base64.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "t2o.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t slen = nul != NULL ? (size_t)(nul - data) : size;
    const uint8_t *wbuf = nul != NULL ? nul + 1 : NULL;
    size_t wlen = nul != NULL ? size - slen - 1 : 0;
    err_t e;

    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (t2o_base64_decode(src, slen, &bytes, &nbytes, &e) == ERR_OK)
        FUZZ_CHECK(nbytes <= slen);
    free(bytes);

    char *json = NULL;
    size_t off = 0, used = 0;
    json_t *root = NULL;
    if (t2o_js_find_export(src, slen, &off, &e) == ERR_OK) {
        FUZZ_CHECK(off <= slen);
        if (t2o_js_to_json(src + off, slen - off, &used, &json, &e) == ERR_OK) {
            FUZZ_CHECK(used <= slen - off);
            root = json_loads(json, 0, NULL);
        }
    }
    free(json);
    if (root == NULL)
        root = json_loadb(src, slen, 0, NULL);
    if (root == NULL)
        return 0;
    t2o_model m;
    memset(&m, 0, sizeof m);
    if (t2o_model_init(&m, root, &e) == ERR_OK) {
        json_t *groups = json_object_get(root, "weightsManifest");
        json_t *entries = json_object_get(json_array_get(groups, 0), "weights");
        if (entries != NULL && wbuf != NULL &&
            t2o_weights_decode(&m, entries, wbuf, wlen, &e) == ERR_OK) {
            for (size_t i = 0; i < m.nweights; i++)
                FUZZ_CHECK(m.weights[i].count == 0 || m.weights[i].data != NULL);
        }
    }
    t2o_model_free(&m);
    json_decref(root);
    return 0;
}
