/*
 * fetch/addr.c — classification of IP addresses for the SSRF guard: which
 * targets a URL fetch may not connect to unless --allow-private-urls is set.
 *
 * Pure code, no I/O. The table is deliberately a little wider than "RFC 1918
 * plus loopback": anything that is not a routable unicast address on the
 * public Internet (unspecified, CGNAT, link-local with its cloud metadata
 * endpoints at 169.254.169.254, multicast, the reserved 240/4 and broadcast)
 * is refused, and IPv6 forms that carry an IPv4 address (mapped, compatible,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4 address,
 * because a dual-stack host or a translator would deliver them there.
 */
#include "fetch/fetch_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* Class of an IPv4 address given as its four bytes in network order. */
static const char *addr__v4_class(const uint8_t b[4])
{
    if (b[0] == 0)
        return "unspecified"; /* 0.0.0.0/8 "this network" */
    if (b[0] == 127)
        return "loopback"; /* 127.0.0.0/8 */
    if (b[0] == 10)
        return "private"; /* 10.0.0.0/8 */
    if (b[0] == 172 && (b[1] & 0xf0) == 16)
        return "private"; /* 172.16.0.0/12 */
    if (b[0] == 192 && b[1] == 168)
        return "private"; /* 192.168.0.0/16 */
    if (b[0] == 100 && (b[1] & 0xc0) == 64)
        return "cgnat"; /* 100.64.0.0/10 */
    if (b[0] == 169 && b[1] == 254)
        return "link-local"; /* 169.254.0.0/16 */
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255)
        return "broadcast";
    if ((b[0] & 0xf0) == 224)
        return "multicast"; /* 224.0.0.0/4 */
    if ((b[0] & 0xf0) == 240)
        return "reserved"; /* 240.0.0.0/4 */
    return NULL;
}

static const char *addr__v6_class(const uint8_t a[16])
{
    static const uint8_t zero12[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t unspec[16] = {0};

    if (memcmp(a, unspec, 16) == 0)
        return "unspecified";
    if (memcmp(a, loop, 16) == 0)
        return "loopback";
    /* ::ffff:a.b.c.d, ::a.b.c.d (deprecated compatible) and NAT64: the IPv4 inside decides. */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero12, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return addr__v4_class(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) /* 2002:AABB:CCDD::/48 6to4 */
        return addr__v4_class(a + 2);
    if ((a[0] & 0xfe) == 0xfc)
        return "private"; /* fc00::/7 unique local */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return "link-local"; /* fe80::/10 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        return "site-local"; /* fec0::/10, deprecated but still routed internally */
    if (a[0] == 0xff)
        return "multicast"; /* ff00::/8 */
    return NULL;
}

const char *fetch__addr_class(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in); /* the caller's buffer may be unaligned */
        return addr__v4_class((const uint8_t *)&in.sin_addr.s_addr);
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        return addr__v6_class(in6.sin6_addr.s6_addr);
    }
    return "unsupported family";
}

int fetch_addr_is_private(const char *addr)
{
    uint8_t buf[16];

    if (addr == NULL)
        return -1;
    if (inet_pton(AF_INET, addr, buf) == 1)
        return addr__v4_class(buf) != NULL;
    if (inet_pton(AF_INET6, addr, buf) == 1)
        return addr__v6_class(buf) != NULL;
    return -1;
}

void fetch__addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        inet_ntop(AF_INET, &in.sin_addr, buf, (socklen_t)size);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        inet_ntop(AF_INET6, &in6.sin6_addr, buf, (socklen_t)size);
    }
}
