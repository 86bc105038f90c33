/*
 * tests/unit/test_api_parse.c — the HTTP API's request parsing, without a
 * server: job request validation, query parameters, route matching. The
 * daemon's config parsing is tested in test_config.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_int.h"

static char msg[512];

/* Parses `body`; asserts failure and that the message starts with `prefix`. */
static void expect_job_error(const char *body, const char *prefix)
{
    api_job_req r;
    msg[0] = '\0';
    int rc = api__parse_job_json(body, strlen(body), &r, msg, sizeof msg);
    if (rc == 0 || strncmp(msg, prefix, strlen(prefix)) != 0)
        fail_msg("body %s: rc=%d msg=\"%s\", expected prefix \"%s\"", body, rc, msg, prefix);
    assert_null(r.source);
    assert_null(r.payload);
}

static void test_job_minimal(void **state)
{
    (void)state;
    const char *b = "{\"asset_id\": \"img-1\", \"source\": {\"path\": \"a/b.jpg\"}}";
    api_job_req r;
    assert_int_equal(api__parse_job_json(b, strlen(b), &r, msg, sizeof msg), 0);
    assert_string_equal(r.asset_id, "img-1");
    assert_string_equal(r.source, "{\"path\":\"a/b.jpg\"}");
    assert_int_equal(r.tasks, JOB_TASK_ALL);
    assert_int_equal(r.priority, 0);
    assert_int_equal(r.max_attempts, 0);
    assert_null(r.payload);
    api__job_req_clear(&r);
}

static void test_job_full(void **state)
{
    (void)state;
    const char *b = "{\"asset_id\": \"lib:2024/07/IMG_0001.jpg@v2\", "
                    "\"source\": {\"url\": \"https://example.com/x.jpg\"}, "
                    "\"tasks\": [\"faces\"], \"priority\": -1000, \"max_attempts\": 20, "
                    "\"payload\": {\"album\": \"x\", \"n\": [1, 2]}}";
    api_job_req r;
    assert_int_equal(api__parse_job_json(b, strlen(b), &r, msg, sizeof msg), 0);
    assert_string_equal(r.asset_id, "lib:2024/07/IMG_0001.jpg@v2");
    assert_string_equal(r.source, "{\"url\":\"https://example.com/x.jpg\"}");
    assert_int_equal(r.tasks, JOB_TASK_FACES);
    assert_int_equal(r.priority, -1000);
    assert_int_equal(r.max_attempts, 20);
    assert_non_null(r.payload);
    assert_non_null(strstr(r.payload, "\"album\""));
    api__job_req_clear(&r);

    const char *b2 = "{\"asset_id\": \"a\", \"source\": {\"path\": \"p\"}, "
                     "\"tasks\": [\"image_embedding\", \"faces\", \"faces\"], \"payload\": null}";
    assert_int_equal(api__parse_job_json(b2, strlen(b2), &r, msg, sizeof msg), 0);
    assert_int_equal(r.tasks, JOB_TASK_ALL);
    assert_null(r.payload);
    api__job_req_clear(&r);
}

static void test_job_errors(void **state)
{
    (void)state;
    expect_job_error("", "body: invalid JSON");
    expect_job_error("{\"asset_id\": ", "body: invalid JSON");
    expect_job_error("[1, 2]", "body: expected a JSON object");
    expect_job_error("{\"asset_id\": \"a\", \"asset_id\": \"b\", \"source\": {\"path\": \"p\"}}",
                     "body: invalid JSON");
    expect_job_error("{\"source\": {\"path\": \"p\"}}", "asset_id: required");
    expect_job_error("{\"asset_id\": 5, \"source\": {\"path\": \"p\"}}", "asset_id: expected");
    expect_job_error("{\"asset_id\": \"\", \"source\": {\"path\": \"p\"}}", "asset_id: expected");
    expect_job_error("{\"asset_id\": \"has space\", \"source\": {\"path\": \"p\"}}",
                     "asset_id: expected");
    expect_job_error("{\"asset_id\": \"caf\\u00e9\", \"source\": {\"path\": \"p\"}}",
                     "asset_id: expected");
    char big[400];
    snprintf(big, sizeof big, "{\"asset_id\": \"%0129d\", \"source\": {\"path\": \"p\"}}", 0);
    expect_job_error(big, "asset_id: expected");
    snprintf(big, sizeof big, "{\"asset_id\": \"%0128d\", \"source\": {\"path\": \"p\"}}", 0);
    api_job_req r;
    assert_int_equal(api__parse_job_json(big, strlen(big), &r, msg, sizeof msg), 0);
    api__job_req_clear(&r);

    expect_job_error("{\"asset_id\": \"a\"}", "source: required");
    expect_job_error("{\"asset_id\": \"a\", \"source\": \"p.jpg\"}", "source: expected an object");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {}}", "source: expected exactly one");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {\"path\": \"p\", \"url\": \"u\"}}",
                     "source: expected exactly one");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {\"ftp\": \"x\"}}",
                     "source: unknown source type \"ftp\" (expected path, url)");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {\"upload\": \"abc\"}}",
                     "source: unknown source type \"upload\"");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {\"path\": 3}}", "source.path: expected");
    expect_job_error("{\"asset_id\": \"a\", \"source\": {\"url\": \"\"}}", "source.url: expected");

    const char *src = "\"source\": {\"path\": \"p\"}";
    char b[256];
#define JOB(extra) (snprintf(b, sizeof b, "{\"asset_id\": \"a\", %s, %s}", src, extra), b)
    expect_job_error(JOB("\"tasks\": \"faces\""), "tasks: expected an array");
    expect_job_error(JOB("\"tasks\": []"), "tasks: must not be empty");
    expect_job_error(JOB("\"tasks\": [\"faces\", \"x\"]"),
                     "tasks[1]: unknown task \"x\" (expected image_embedding, faces)");
    expect_job_error(JOB("\"tasks\": [1]"), "tasks[0]: expected a string");
    expect_job_error(JOB("\"priority\": 1001"), "priority: 1001 is out of range -1000..1000");
    expect_job_error(JOB("\"priority\": -1001"), "priority: -1001 is out of range");
    expect_job_error(JOB("\"priority\": \"5\""), "priority: expected an integer");
    expect_job_error(JOB("\"priority\": 1.5"), "priority: expected an integer");
    expect_job_error(JOB("\"max_attempts\": 0"), "max_attempts: 0 is out of range 1..20");
    expect_job_error(JOB("\"max_attempts\": 21"), "max_attempts: 21 is out of range");
    expect_job_error(JOB("\"payload\": [1]"), "payload: expected an object");
    expect_job_error(JOB("\"payload\": \"x\""), "payload: expected an object");
    expect_job_error(JOB("\"priorty\": 1"), "priorty: unknown field");
#undef JOB
}

static void test_tasks_csv(void **state)
{
    (void)state;
    unsigned t = 0;
    assert_int_equal(api__parse_tasks_csv("tasks", "faces", &t, msg, sizeof msg), 0);
    assert_int_equal(t, JOB_TASK_FACES);
    assert_int_equal(api__parse_tasks_csv("tasks", "image_embedding,faces", &t, msg, sizeof msg),
                     0);
    assert_int_equal(t, JOB_TASK_ALL);
    assert_int_equal(api__parse_tasks_csv("tasks", "faces,x", &t, msg, sizeof msg), -1);
    assert_string_equal(msg, "tasks[1]: unknown task \"x\" (expected image_embedding, faces)");
    assert_int_equal(api__parse_tasks_csv("tasks", "faces,", &t, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "tasks[1]: empty task name"));
    assert_int_equal(api__parse_tasks_csv("tasks", "", &t, msg, sizeof msg), -1);
    assert_int_equal(api__parse_tasks_csv("tasks", "a,,b", &t, msg, sizeof msg), -1);
    assert_int_equal(api__parse_tasks_csv("tasks", "averyveryveryverylongtasknamethatdoesnotfit",
                                          &t, msg, sizeof msg),
                     -1);
}

static void test_list_query(void **state)
{
    (void)state;
    api_list_query q;
    assert_int_equal(api__parse_list_query(NULL, NULL, NULL, &q, msg, sizeof msg), 0);
    assert_int_equal(q.state, -1);
    assert_int_equal(q.limit, 50);
    assert_int_equal(q.cursor, 0);
    assert_int_equal(api__parse_list_query("done", "1000", "77", &q, msg, sizeof msg), 0);
    assert_int_equal(q.state, JOB_DONE);
    assert_int_equal(q.limit, 1000);
    assert_int_equal(q.cursor, 77);
    assert_int_equal(api__parse_list_query("", "1", NULL, &q, msg, sizeof msg), 0);
    assert_int_equal(q.state, -1);

    static const struct {
        const char *state, *limit, *cursor, *prefix;
    } bad[] = {
        {"bogus", NULL, NULL, "state: unknown state \"bogus\""},
        {NULL, "0", NULL, "limit: expected an integer in 1..1000"},
        {NULL, "1001", NULL, "limit: expected an integer in 1..1000"},
        {NULL, "abc", NULL, "limit: expected"},
        {NULL, "10x", NULL, "limit: expected"},
        {NULL, "", NULL, "limit: expected"},
        {NULL, " 5", NULL, "limit: expected"},
        {NULL, "+5", NULL, "limit: expected"},
        {NULL, NULL, "-1", "cursor: expected"},
        {NULL, NULL, "0", "cursor: expected"},
        {NULL, NULL, "abc", "cursor: expected"},
        {NULL, NULL, "99999999999999999999999", "cursor: expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = '\0';
        int rc =
            api__parse_list_query(bad[i].state, bad[i].limit, bad[i].cursor, &q, msg, sizeof msg);
        if (rc == 0 || strncmp(msg, bad[i].prefix, strlen(bad[i].prefix)) != 0)
            fail_msg("case %zu: rc=%d msg=\"%s\"", i, rc, msg);
    }
}

static void test_routes(void **state)
{
    (void)state;
    api_route r;
    assert_int_equal(api__route_match("/health", &r), API_R_HEALTH);
    assert_int_equal(api__route_match("/health/", &r), API_R_HEALTH);
    assert_int_equal(api__route_match("/ready", &r), API_R_READY);
    assert_int_equal(api__route_match("/metrics", &r), API_R_METRICS);
    assert_int_equal(api__route_match("/v1/jobs", &r), API_R_JOBS);
    assert_int_equal(api__route_match("/v1/jobs/", &r), API_R_JOBS);
    assert_int_equal(api__route_match("/v1/predict", &r), API_R_PREDICT);
    assert_int_equal(api__route_match("/v1/events", &r), API_R_EVENTS);
    assert_int_equal(api__route_match("/v1/search/images", &r), API_R_SEARCH_IMAGES);
    assert_int_equal(api__route_match("/v1/search/faces/", &r), API_R_SEARCH_FACES);
    assert_int_equal(api__route_match("/v1/people", &r), API_R_PEOPLE);
    assert_int_equal(api__route_match("/v1/people/7", &r), API_R_PERSON);
    assert_int_equal(r.person_id, 7);
    assert_int_equal(api__route_match("/v1/people/7/merge", &r), API_R_PERSON_MERGE);
    assert_int_equal(r.person_id, 7);
    assert_int_equal(api__route_match("/v1/people/x", &r), API_R_PERSON);
    assert_string_not_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/assets/a.jpg/duplicates", &r), API_R_DUPLICATES);
    assert_string_equal(r.asset_id, "a.jpg");
    assert_string_equal(api__route_allow(API_R_ASSET), "GET, DELETE");
    assert_string_equal(api__route_allow(API_R_PERSON), "GET, PATCH");
    assert_true(api__route_method_ok(API_R_SEARCH_IMAGES, "POST"));
    assert_false(api__route_method_ok(API_R_SEARCH_IMAGES, "GET"));

    assert_int_equal(api__route_match("/v1/jobs/123", &r), API_R_JOB);
    assert_int_equal(r.job_id, 123);
    assert_string_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/jobs/123/", &r), API_R_JOB);
    assert_int_equal(r.job_id, 123);
    assert_int_equal(api__route_match("/v1/jobs/abc", &r), API_R_JOB);
    assert_non_null(strstr(r.bad_id, "job id: expected a positive integer, got \"abc\""));
    assert_int_equal(api__route_match("/v1/jobs/0", &r), API_R_JOB);
    assert_string_not_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/jobs/-1", &r), API_R_JOB);
    assert_string_not_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/jobs/12x", &r), API_R_JOB);
    assert_string_not_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/jobs/9999999999999999999999", &r), API_R_JOB);
    assert_string_not_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/jobs/1/2", &r), API_R_JOB);
    assert_string_not_equal(r.bad_id, "");

    assert_int_equal(api__route_match("/v1/assets/lib:2024/IMG_1.jpg", &r), API_R_ASSET);
    assert_string_equal(r.asset_id, "lib:2024/IMG_1.jpg");
    assert_string_equal(r.bad_id, "");
    assert_int_equal(api__route_match("/v1/assets/a b", &r), API_R_ASSET);
    assert_string_not_equal(r.bad_id, "");
    char longp[300] = "/v1/assets/";
    memset(longp + strlen(longp), 'x', 129);
    assert_int_equal(api__route_match(longp, &r), API_R_ASSET);
    assert_string_not_equal(r.bad_id, "");

    /* The web page: / is its index, /ui/NAME its files (a name too long for the route: none). */
    assert_int_equal(api__route_match("/", &r), API_R_UI);
    assert_string_equal(r.file, "index.html");
    assert_int_equal(api__route_match("/ui/app.js", &r), API_R_UI);
    assert_string_equal(r.file, "app.js");
    char longui[200] = "/ui/";
    memset(longui + strlen(longui), 'x', 100);
    assert_int_equal(api__route_match(longui, &r), API_R_NONE);
    assert_int_equal(api__route_match("/ui/", &r), API_R_NONE);
    /* The OpenAPI document: its own route, not a page file. */
    assert_int_equal(api__route_match("/openapi.json", &r), API_R_OPENAPI);
    assert_int_equal(api__route_match("/openapi.json/", &r), API_R_OPENAPI);
    assert_string_equal(api__route_allow(API_R_OPENAPI), "GET");
    assert_false(api__route_method_ok(API_R_OPENAPI, "POST"));
    assert_int_equal(api__route_match("/openapi.jsonx", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1/openapi.json", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1/jobs/batch", &r), API_R_JOBS_BATCH);
    assert_int_equal(api__route_match("/v1/info", &r), API_R_INFO);
    assert_int_equal(api__route_match("/v1/assets", &r), API_R_ASSETS);
    assert_int_equal(api__route_match("/v1/assets/a/b.jpg/thumbnail", &r), API_R_THUMB);
    assert_string_equal(r.asset_id, "a/b.jpg");
    assert_int_equal(api__route_match("", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1/job", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1/jobsx", &r), API_R_NONE);
    assert_int_equal(api__route_match("/v1/assets/", &r), API_R_ASSETS); /* trailing / ignored */
    assert_int_equal(api__route_match("/healthz", &r), API_R_NONE);
    assert_int_equal(api__route_match("//health", &r), API_R_NONE);

    assert_string_equal(api__route_allow(API_R_JOBS), "GET, POST");
    assert_string_equal(api__route_allow(API_R_JOB), "GET, DELETE");
    assert_true(api__route_method_ok(API_R_JOBS, "POST"));
    assert_true(api__route_method_ok(API_R_JOBS, "GET"));
    assert_false(api__route_method_ok(API_R_JOBS, "DELETE"));
    assert_false(api__route_method_ok(API_R_JOBS, "GE"));
    assert_false(api__route_method_ok(API_R_HEALTH, "POST"));
    assert_false(api__route_method_ok(API_R_PREDICT, "GET"));
    assert_false(api__route_method_ok(API_R_NONE, "GET"));
    assert_false(api__route_method_ok(API_R_JOB, ""));
}

static void test_asset_id(void **state)
{
    (void)state;
    assert_true(store_asset_id_valid("a"));
    assert_true(store_asset_id_valid("A-z_0.9:@/x"));
    assert_false(store_asset_id_valid(""));
    assert_false(store_asset_id_valid("a b"));
    assert_false(store_asset_id_valid("a?b"));
    assert_false(store_asset_id_valid("a%2F"));
}

/* Search and people bodies: accepted forms, and the field each refusal names. */
static void test_search_people_bodies(void **state)
{
    (void)state;
    static const char *const bad_body[] = {"", "[1]", "{", "\"x\""};
    for (size_t i = 0; i < sizeof bad_body / sizeof bad_body[0]; i++) {
        assert_null(api__parse_body_object(bad_body[i], strlen(bad_body[i]), msg, sizeof msg));
        assert_true(strncmp(msg, "body: ", 6) == 0);
    }
    const char *vbody = "{\"vector\":[1,2.5],\"limit\":3}";
    json_t *r = api__parse_body_object(vbody, strlen(vbody), msg, sizeof msg);
    assert_non_null(r);
    search_image_query sq;
    float *vec = NULL;
    const char *text = NULL;
    assert_int_equal(api__parse_search_images(r, &sq, &vec, &text, msg, sizeof msg), 0);
    assert_int_equal(sq.dim, 2);
    assert_true(sq.vector == vec && vec[1] == 2.5f);
    assert_int_equal(sq.limit, 3);
    assert_null(text);
    free(vec);
    json_decref(r);

    static const struct {
        const char *body, *field;
    } bad_img[] = {
        {"{}", "body"},
        {"{\"text\":\"a\",\"vector\":[1]}", "body"},
        {"{\"text\":\"\"}", "text"},
        {"{\"vector\":[]}", "vector"},
        {"{\"vector\":[1,\"x\"]}", "vector[1]"},
        {"{\"asset_id\":\"a b\"}", "asset_id"},
        {"{\"asset_id\":\"a\",\"limit\":0}", "limit"},
        {"{\"asset_id\":\"a\",\"min_score\":2}", "min_score"},
        {"{\"asset_id\":\"a\",\"ef\":-1}", "ef"},
        {"{\"asset_id\":\"a\",\"model\":\"\"}", "model"},
        {"{\"asset_id\":\"a\",\"filter\":[]}", "filter"},
    };
    for (size_t i = 0; i < sizeof bad_img / sizeof bad_img[0]; i++) {
        r = api__parse_body_object(bad_img[i].body, strlen(bad_img[i].body), msg, sizeof msg);
        assert_non_null(r);
        assert_int_equal(api__parse_search_images(r, &sq, &vec, &text, msg, sizeof msg), -1);
        assert_null(vec);
        assert_true(strncmp(msg, bad_img[i].field, strlen(bad_img[i].field)) == 0);
        assert_int_equal(msg[strlen(bad_img[i].field)], ':');
        json_decref(r);
    }
    r = json_pack("{s:s, s:s}", "text", "a red car", "model", "clip");
    assert_int_equal(api__parse_search_images(r, &sq, &vec, &text, msg, sizeof msg), 0);
    assert_string_equal(text, "a red car");
    assert_string_equal(sq.model, "clip");
    json_decref(r);

    search_face_query fq;
    r = json_pack("{s:i}", "face_id", 7);
    assert_int_equal(api__parse_search_faces(r, &fq, &vec, msg, sizeof msg), 0);
    assert_int_equal(fq.face_id, 7);
    json_decref(r);
    r = json_pack("{s:i}", "face_id", 0);
    assert_int_equal(api__parse_search_faces(r, &fq, &vec, msg, sizeof msg), -1);
    assert_true(strncmp(msg, "face_id:", 8) == 0);
    json_decref(r);

    const char *name = "x";
    r = json_pack("{s:n}", "name");
    assert_int_equal(api__parse_person_patch(r, &name, msg, sizeof msg), 0);
    assert_null(name);
    json_decref(r);
    char longname[202];
    memset(longname, 'a', 201);
    longname[201] = '\0';
    r = json_pack("{s:s}", "name", longname);
    assert_int_equal(api__parse_person_patch(r, &name, msg, sizeof msg), -1);
    json_decref(r);

    int64_t from[API_MERGE_MAX];
    int n = 0;
    r = json_pack("{s:[i,i]}", "from", 2, 3);
    assert_int_equal(api__parse_person_merge(r, 1, from, &n, msg, sizeof msg), 0);
    assert_int_equal(n, 2);
    assert_int_equal(from[1], 3);
    assert_int_equal(api__parse_person_merge(r, 3, from, &n, msg, sizeof msg), -1);
    assert_true(strncmp(msg, "from:", 5) == 0);
    json_decref(r);
}

/* Immich's /predict "entries", in the shapes Immich's server sends, and what is refused. */
static void test_immich_entries(void **state)
{
    (void)state;
    immich_entries en;
    char why[512];
#define ENTRIES(s) api__immich_parse_entries((s), strlen(s), &en, why, sizeof why)
    assert_int_equal(ENTRIES("{\"clip\":{\"visual\":{\"modelName\":\"ViT-B-32__openai\"}}}"), 0);
    assert_true(en.clip_visual && !en.clip_textual && !en.faces);
    assert_string_equal(en.visual_model, "ViT-B-32__openai");
    assert_int_equal(ENTRIES("{\"clip\":{\"textual\":{\"modelName\":\"m\",\"options\":"
                             "{\"language\":\"de\"}}}}"),
                     0);
    assert_true(en.clip_textual && !en.clip_visual);
    assert_string_equal(en.textual_model, "m");
    assert_int_equal(ENTRIES("{\"facial-recognition\":{\"detection\":{\"modelName\":\"buffalo_l\","
                             "\"options\":{\"minScore\":0.7}},\"recognition\":{\"modelName\":"
                             "\"buffalo_l\"}}}"),
                     0);
    assert_true(en.faces && !en.clip_visual);
    assert_string_equal(en.detection_model, "buffalo_l");
    assert_string_equal(en.recognition_model, "buffalo_l");
    assert_float_equal(en.min_score, 0.7f, 1e-6);
    /* Both image tasks in one request. */
    assert_int_equal(ENTRIES("{\"clip\":{\"visual\":{\"modelName\":\"a\"}},\"facial-recognition\":"
                             "{\"detection\":{\"modelName\":\"b\"},\"recognition\":{\"modelName\":"
                             "\"b\"}}}"),
                     0);
    assert_true(en.faces && en.clip_visual && en.min_score == 0);

    static const struct {
        const char *json, *why;
    } bad[] = {
        {"", "invalid JSON"},
        {"[]", "expected an object of tasks"},
        {"{}", "expected an object of tasks"},
        {"{\"ocr\":{\"detection\":{\"modelName\":\"x\"}}}", "no OCR model"},
        {"{\"image-classification\":{}}", "unknown task"},
        {"{\"clip\":{}}", "expected an object of model types"},
        {"{\"clip\":{\"visual\":{}}}", "modelName"},
        {"{\"clip\":{\"visual\":{\"modelName\":\"\"}}}", "modelName"},
        {"{\"clip\":{\"visual\":{\"modelName\":7}}}", "modelName"},
        {"{\"clip\":{\"visual\":{\"modelName\":\"a\\u0000b\"}}}", "not allowed"},
        {"{\"clip\":{\"visual\":{\"modelName\":\"a\",\"options\":3}}}", "options"},
        {"{\"clip\":{\"audio\":{\"modelName\":\"a\"}}}", "unknown model type"},
        {"{\"facial-recognition\":{\"detection\":{\"modelName\":\"b\"}}}", "needs both"},
        {"{\"facial-recognition\":{\"detection\":{\"modelName\":\"b\",\"options\":{\"minScore\":"
         "1.5}},\"recognition\":{\"modelName\":\"b\"}}}",
         "minScore"},
        {"{\"facial-recognition\":{\"detection\":{\"modelName\":\"b\",\"options\":{\"minScore\":"
         "\"0.5\"}},\"recognition\":{\"modelName\":\"b\"}}}",
         "minScore"},
        {"{\"clip\":{\"visual\":{\"modelName\":\"a\"},\"textual\":{\"modelName\":\"a\"}}}",
         "separate requests"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(ENTRIES(bad[i].json), -1);
        if (strstr(why, bad[i].why) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", bad[i].json, why, bad[i].why);
        assert_false(en.clip_visual || en.clip_textual || en.faces);
    }
    char longname[400];
    snprintf(longname, sizeof longname, "{\"clip\":{\"visual\":{\"modelName\":\"%0*d\"}}}",
             IMMICH_MODEL_NAME_MAX, 0);
    assert_int_equal(ENTRIES(longname), -1);
#undef ENTRIES
}

/*
 * api/openapi.json against the router: every path of the document is a route
 * (its templates filled with valid ids) whose methods are exactly the
 * document's operations there, and every route is in the document. A route
 * added without its description, or a described one the server lacks, fails.
 */
static void test_openapi_routes(void **state)
{
    (void)state;
    json_error_t je;
    json_t *doc = json_load_file(INFERD_SRCDIR "/api/openapi.json", 0, &je);
    if (doc == NULL)
        fail_msg("api/openapi.json: line %d: %s", je.line, je.text);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_object_size(paths) > 0);
    int seen[API_R_OPENAPI + 1] = {0};
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        /* {id} -> 7, {asset_id} -> a/b.jpg (an id with a slash), {file} -> app.js */
        static const char *const fill[][2] = {
            {"{id}", "7"}, {"{asset_id}", "a/b.jpg"}, {"{file}", "app.js"}};
        char url[256] = "";
        for (const char *p = path; *p != '\0';) {
            size_t k = 0;
            for (; k < sizeof fill / sizeof fill[0]; k++)
                if (strncmp(p, fill[k][0], strlen(fill[k][0])) == 0)
                    break;
            if (k < sizeof fill / sizeof fill[0]) {
                strncat(url, fill[k][1], sizeof url - strlen(url) - 1);
                p += strlen(fill[k][0]);
            } else {
                strncat(url, p, 1);
                p++;
            }
        }
        assert_null(strchr(url, '{'));
        api_route r;
        api_route_id id = api__route_match(url, &r);
        if (id == API_R_NONE || r.bad_id[0] != '\0')
            fail_msg("openapi path %s (%s): no route (%s)", path, url, r.bad_id);
        seen[id] = 1;
        static const char *const methods[][2] = {
            {"get", "GET"},       {"post", "POST"}, {"put", "PUT"},         {"patch", "PATCH"},
            {"delete", "DELETE"}, {"head", "HEAD"}, {"options", "OPTIONS"}, {"trace", "TRACE"}};
        int described = 0;
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            int doc_has = json_object_get(item, methods[m][0]) != NULL;
            described += doc_has;
            if (doc_has != api__route_method_ok(id, methods[m][1]))
                fail_msg("openapi path %s: %s is %s in the document but %s by the server "
                         "(allowed: %s)",
                         path, methods[m][1], doc_has ? "described" : "not described",
                         doc_has ? "refused" : "accepted", api__route_allow(id));
        }
        assert_true(described > 0);
    }
    for (int id = API_R_NONE + 1; id <= API_R_OPENAPI; id++)
        if (!seen[id])
            fail_msg("route %d (allowed: %s) is not in api/openapi.json", id,
                     api__route_allow((api_route_id)id));
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_minimal),          cmocka_unit_test(test_job_full),
        cmocka_unit_test(test_job_errors),           cmocka_unit_test(test_tasks_csv),
        cmocka_unit_test(test_list_query),           cmocka_unit_test(test_routes),
        cmocka_unit_test(test_openapi_routes),       cmocka_unit_test(test_asset_id),
        cmocka_unit_test(test_search_people_bodies), cmocka_unit_test(test_immich_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
