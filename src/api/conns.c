/*
 * api/conns.c — the connection guard: who may connect, and how long a client
 * may take to send its request's headers.
 *
 * libmicrohttpd runs one thread per connection, so a client that connects
 * and then trickles a header byte at a time (slowloris), or that simply
 * holds hundreds of idle sockets, costs a thread each and, past the
 * connection limit, keeps everyone else out, /health included. The guard:
 *
 *  - refuses a client address past --max-connections-per-ip (loopback is
 *    exempt: local probes and proxies);
 *  - keeps the last API_CONNS_RESERVED connections of --max-connections for
 *    loopback, so that a local health probe gets in even when remote
 *    clients fill the rest;
 *  - closes a connection that has not delivered its request headers within
 *    --header-timeout-ms of connecting (or of its previous response, for
 *    keep-alive): libmicrohttpd's own timeout is for inactivity, which a
 *    byte every few seconds defeats. The reaper (api_conns_reap, run by the
 *    api's ticker) shuts the socket down; the connection's thread then sees
 *    the end of the stream and libmicrohttpd closes it.
 *
 * Tracking: every connection gets an entry at MHD_CONNECTION_NOTIFY_STARTED
 * (its socket context points at it) and loses it at ..._CLOSED. libmicrohttpd
 * calls CLOSED before it closes the socket, and the callback takes `lock`:
 * so while the reaper holds `lock`, every socket it may shut down is still
 * the connection's own.
 *
 * Threading: the accept policy runs on the listener thread, the notify
 * callbacks and request marks on connection threads, the reaper on the api's
 * ticker. `lock` guards the list and the counters; it is a leaf lock and is
 * never held across a call into libmicrohttpd.
 */
#include "api/api_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"

typedef struct conn_entry {
    struct conn_entry *prev, *next;
    int fd;
    unsigned char ip[16]; /* IPv4 as v4-mapped IPv6 */
    int loopback;
    int in_request;   /* headers complete, request not yet finished */
    int64_t phase_ms; /* when the wait for headers began (connect or last response) */
    int reaped;
} conn_entry;

struct api_conns {
    api_conns_opts o;
    pthread_mutex_t lock;
    conn_entry *head;
    int count;
    int64_t refused, reaped;
};

/* An address as 16 bytes (IPv4 v4-mapped) and whether it is loopback. */
static int conns_key(const struct sockaddr *sa, unsigned char ip[16], int *loopback)
{
    memset(ip, 0, 16);
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        ip[10] = ip[11] = 0xff;
        memcpy(ip + 12, &in.sin_addr, 4);
        *loopback = ip[12] == 127;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        memcpy(ip, &in6.sin6_addr, 16);
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        *loopback = memcmp(ip, one, 16) == 0 || (memcmp(ip, mapped, 12) == 0 && ip[12] == 127);
        return 0;
    }
    return -1;
}

api_conns *api_conns_new(const api_conns_opts *o)
{
    api_conns *g = xcalloc(1, sizeof *g);
    g->o = *o;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void api_conns_free(api_conns *g)
{
    if (g == NULL)
        return;
    conn_entry *e = g->head;
    while (e != NULL) {
        conn_entry *n = e->next;
        free(e);
        e = n;
    }
    pthread_mutex_destroy(&g->lock);
    free(g);
}

enum MHD_Result api_conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    api_conns *g = cls;
    unsigned char ip[16];
    int loopback = 0;
    (void)addrlen;
    if (conns_key(addr, ip, &loopback) != 0)
        return MHD_YES;
    pthread_mutex_lock(&g->lock);
    int ok = 1;
    if (!loopback) {
        if (g->o.max_connections > 0 &&
            g->count >= g->o.max_connections - API_CONNS_RESERVED)
            ok = 0;
        if (ok && g->o.max_per_ip > 0) {
            int same = 0;
            for (conn_entry *e = g->head; e != NULL; e = e->next)
                same += memcmp(e->ip, ip, 16) == 0;
            ok = same < g->o.max_per_ip;
        }
    }
    if (!ok)
        g->refused++;
    pthread_mutex_unlock(&g->lock);
    return ok ? MHD_YES : MHD_NO;
}

void api_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    api_conns *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_entry *e = xcalloc(1, sizeof *e);
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        e->fd = fd != NULL ? (int)fd->connect_fd : -1;
        if (ad == NULL || conns_key(ad->client_addr, e->ip, &e->loopback) != 0)
            e->loopback = 0;
        e->phase_ms = clock_mono_ms();
        pthread_mutex_lock(&g->lock);
        e->next = g->head;
        if (g->head != NULL)
            g->head->prev = e;
        g->head = e;
        g->count++;
        pthread_mutex_unlock(&g->lock);
        *socket_context = e;
        return;
    }
    conn_entry *e = *socket_context;
    if (e == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        g->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    g->count--;
    pthread_mutex_unlock(&g->lock);
    free(e);
    *socket_context = NULL;
}

/* The entry of connection `c` (its socket context), or NULL. */
static conn_entry *conns_entry(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

void api_conns_request(api_conns *g, struct MHD_Connection *c, int begin)
{
    conn_entry *e = conns_entry(c);
    if (e == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    e->in_request = begin;
    if (!begin)
        e->phase_ms = clock_mono_ms();
    pthread_mutex_unlock(&g->lock);
}

int api_conns_reap(api_conns *g)
{
    int n = 0;
    if (g->o.header_timeout_ms <= 0)
        return 0;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&g->lock);
    for (conn_entry *e = g->head; e != NULL; e = e->next) {
        if (e->in_request || e->reaped || e->fd < 0 || now - e->phase_ms < g->o.header_timeout_ms)
            continue;
        /* The socket is still the connection's (see the file comment): end its stream. */
        shutdown(e->fd, SHUT_RDWR);
        e->reaped = 1;
        n++;
    }
    g->reaped += n;
    pthread_mutex_unlock(&g->lock);
    if (n > 0)
        log_debug("api", "closed %d connection(s) that sent no request headers within %lld ms", n,
                  (long long)g->o.header_timeout_ms);
    return n;
}

void api_conns_stats(api_conns *g, int *open, int64_t *refused, int64_t *reaped)
{
    pthread_mutex_lock(&g->lock);
    *open = g->count;
    *refused = g->refused;
    *reaped = g->reaped;
    pthread_mutex_unlock(&g->lock);
}
