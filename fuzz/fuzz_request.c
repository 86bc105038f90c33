/*
 * fuzz/fuzz_request.c — libFuzzer target for what an HTTP client controls
 * before any handler runs: route matching of the path, the query parameters
 * of GET /v1/jobs, the tasks list, and every JSON body the API parses
 * (POST /v1/jobs, /v1/search/images, /v1/search/faces, PATCH /v1/people/{id},
 * POST .../merge, and Immich's /predict "entries").
 *
 * Input: "PATH\nSTATE\nLIMIT\nCURSOR\nBODY" (missing lines are empty). The
 * checks: nothing crashes, leaks or reads out of bounds (ASan, UBSan), and
 * what a parser accepts is consistent with what it promised (asserted below).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "fuzz.h"

/* The next '\n'-terminated line of [*p, end) as a new NUL-terminated string. */
static char *take_line(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl != NULL ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl != NULL ? nl + 1 : end;
    return s;
}

static void bodies(const char *body, size_t len)
{
    char msg[512];
    immich_entries en;
    if (api__immich_parse_entries(body, len, &en, msg, sizeof msg) == 0) {
        FUZZ_CHECK(en.clip_visual || en.clip_textual || en.faces);
        FUZZ_CHECK(!en.clip_textual || (!en.clip_visual && !en.faces));
        FUZZ_CHECK(!en.faces || (en.detection_model[0] != '\0' && en.recognition_model[0] != '\0'));
        FUZZ_CHECK(en.min_score >= 0 && en.min_score <= 1);
    } else {
        FUZZ_CHECK(msg[0] != '\0' && !en.clip_visual && !en.faces);
    }
    api_job_req jr;
    if (api__parse_job_json(body, len, &jr, msg, sizeof msg) == 0) {
        FUZZ_CHECK(jr.source != NULL && store_asset_id_valid(jr.asset_id));
        api__job_req_clear(&jr);
    } else {
        FUZZ_CHECK(msg[0] != '\0' && jr.source == NULL);
    }
    json_t *root = api__parse_body_object(body, len, msg, sizeof msg);
    if (root == NULL)
        return;
    search_image_query sq;
    float *vec = NULL;
    const char *text = NULL;
    if (api__parse_search_images(root, &sq, &vec, &text, msg, sizeof msg) == 0) {
        FUZZ_CHECK((sq.asset_id != NULL) + (vec != NULL) + (text != NULL) == 1);
        FUZZ_CHECK(sq.limit >= 1 && sq.limit <= 1000);
        FUZZ_CHECK(vec == NULL || (sq.dim >= 1 && sq.vector == vec));
        free(vec);
    }
    search_face_query fq;
    if (api__parse_search_faces(root, &fq, &vec, msg, sizeof msg) == 0) {
        FUZZ_CHECK((fq.face_id > 0) != (vec != NULL));
        free(vec);
    }
    const char *name = NULL;
    if (api__parse_person_patch(root, &name, msg, sizeof msg) == 0)
        FUZZ_CHECK(name == NULL || strlen(name) <= STORE_PERSON_NAME_MAX);
    int64_t from[API_MERGE_MAX];
    int n = 0;
    if (api__parse_person_merge(root, 7, from, &n, msg, sizeof msg) == 0) {
        FUZZ_CHECK(n >= 1 && n <= API_MERGE_MAX);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(from[i] > 0 && from[i] != 7);
    }
    json_t *src = json_object_get(root, "source");
    char *compact = NULL;
    if (src != NULL && api__parse_source(src, &compact, msg, sizeof msg) == 0)
        FUZZ_CHECK(compact != NULL);
    free(compact);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    char *path = take_line(&p, end);
    char *state = take_line(&p, end);
    char *limit = take_line(&p, end);
    char *cursor = take_line(&p, end);

    api_route r;
    api_route_id id = api__route_match(path, &r);
    if (id != API_R_NONE)
        FUZZ_CHECK(api__route_allow(id) != NULL);
    api_list_query lq;
    char msg[512];
    if (api__parse_list_query(state[0] ? state : NULL, limit[0] ? limit : NULL,
                              cursor[0] ? cursor : NULL, &lq, msg, sizeof msg) == 0)
        FUZZ_CHECK(lq.limit >= 1 && lq.limit <= 1000 && lq.cursor >= 0);
    unsigned tasks = 0;
    api__parse_tasks_csv("tasks", state, &tasks, msg, sizeof msg);
    long long v = 0;
    api__parse_int("limit", limit, -5, 5, &v, msg, sizeof msg);

    bodies(p, (size_t)(end - p));
    free(path);
    free(state);
    free(limit);
    free(cursor);
    return 0;
}
