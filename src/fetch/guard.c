/*
 * fetch/guard.c — the one libcurl set-up that every outbound GET of inferd
 * goes through (image URLs in fetch.c, model files and catalogues in
 * models_fetch.c): http and https only, redirects included; no proxy taken
 * from the environment; no signals; inferd's user agent; and the SSRF guard
 * in the socket callback, which judges every address curl is about to
 * connect to, redirect hops and every resolved address included
 * (fetch__addr_class). The options the guard depends on are checked: a
 * libcurl that ignored one of them would fetch what it must not.
 *
 * Threading: a guard and its handle belong to the calling thread.
 */
#include "fetch/fetch_int.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static int sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        return ntohs(in.sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        return ntohs(in6.sin6_port);
    }
    return 0;
}

/* The SSRF guard: called by curl for every connect it attempts. */
static curl_socket_t guard_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    fetch__guard *g = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!g->allow_private) {
        const char *cls = fetch__addr_class(&a->addr);
        if (cls != NULL && !(g->exempt_port != 0 && sockaddr_port(&a->addr) == g->exempt_port)) {
            if (!g->refused) {
                g->refused = 1;
                g->refused_class = cls;
                fetch__addr_text(&a->addr, g->refused_addr, sizeof g->refused_addr);
            }
            return CURL_SOCKET_BAD;
        }
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int fetch__curl_new(const char *url, fetch__guard *g, fetch__write_fn write, void *wdata,
                    char *errbuf, void **out, err_t *e)
{
    *out = NULL;
    g->refused = 0;
    g->refused_class = NULL;
    g->refused_addr[0] = '\0';
    CURL *h = curl_easy_init();
    if (h == NULL)
        return err_set(e, ERR_NOMEM, "curl_easy_init failed");
    errbuf[0] = '\0';
    if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, guard_opensocket) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, g) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK || /* ignore *_proxy */
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, wdata) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK) {
        curl_easy_cleanup(h);
        return err_set(e, ERR_INTERNAL, "libcurl refused a required option");
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for DNS timeouts: threads */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "inferd/" INFERD_VERSION);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    *out = h;
    return ERR_OK;
}

int fetch__refused(const fetch__guard *g, const char *shown_url, const char *at, err_t *e)
{
    return err_set(e, ERR_FORBIDDEN,
                   "GET %s: address %s is %s; refused (allow with --allow-private-urls)%s%s%s",
                   shown_url, g->refused_addr, g->refused_class, at != NULL ? " (at " : "",
                   at != NULL ? at : "", at != NULL ? ")" : "");
}
