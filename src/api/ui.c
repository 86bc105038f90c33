/*
 * api/ui.c — GET / and GET /ui/{file}: inferd's web page (web/), and
 * GET /openapi.json: the API's OpenAPI document (api/openapi.json). Both are
 * compiled into the binary by cmake/embed_web.cmake, so they work offline and
 * need no files beside the binary. Both are public (they hold no data); the
 * page asks for the token and sends it with each API call. A strict Content
 * Security Policy keeps the page to its own scripts and the API: no inline
 * script, no other origin.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/xalloc.h"

/* Sends compiled-in file `f` (200, no-cache: revalidated, so a new binary's files show at
 * once); `csp`: with the page's Content-Security-Policy and Referrer-Policy. */
static enum MHD_Result send_file(api_call *q, const api_web_file *f, int csp)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(f->len, (void *)(uintptr_t)f->data, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (csp) {
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' blob: data:; "
                                "style-src 'self'; script-src 'self'; connect-src 'self'; "
                                "frame-ancestors 'none'");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
    enum MHD_Result ret = MHD_queue_response(q->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api__handle_ui(api_call *q)
{
    const char *name = q->route->file;
    for (int i = 0; i < api__web_nfiles; i++)
        if (strcmp(api__web_files[i].name, name) == 0)
            return send_file(q, &api__web_files[i], 1);
    return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "no page file \"%.60s\"",
                           name);
}

enum MHD_Result api__handle_openapi(api_call *q)
{
    if (api__spec_nfiles < 1) /* the build embeds it; guard a broken build anyway */
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found",
                               "no OpenAPI document in this build");
    return send_file(q, &api__spec_files[0], 0);
}
