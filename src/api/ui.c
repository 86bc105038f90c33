/*
 * api/ui.c — GET / and GET /ui/{file}: inferd's web page (web/), compiled
 * into the binary by cmake/embed_web.cmake, so it works offline and needs
 * no files beside the binary. The page is public (it holds no data); it asks
 * for the token and sends it with each API call. A strict Content Security
 * Policy keeps it to its own scripts and the API: no inline script, no
 * other origin.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/xalloc.h"

enum MHD_Result api__handle_ui(api_call *q)
{
    const char *name = q->route->file;
    for (int i = 0; i < api__web_nfiles; i++) {
        const api_web_file *f = &api__web_files[i];
        if (strcmp(f->name, name) != 0)
            continue;
        struct MHD_Response *r = MHD_create_response_from_buffer(f->len, (void *)(uintptr_t)f->data,
                                                                 MHD_RESPMEM_PERSISTENT);
        if (r == NULL)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f->type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' blob: data:; "
                                "style-src 'self'; script-src 'self'; connect-src 'self'; "
                                "frame-ancestors 'none'");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
        enum MHD_Result ret = MHD_queue_response(q->conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "no page file \"%.60s\"",
                           name);
}
