/*
 * fetch/addr.c — classification of IP addresses for the SSRF guard: which
 * targets a URL fetch may not connect to unless --allow-private-urls is set.
 *
 * Pure code, no I/O. The reference is IANA's IPv4 and IPv6 Special-Purpose
 * Address Registries (and the multicast ranges): every block the registries
 * mark as not globally reachable is refused, and so are the few whose
 * globally reachable exceptions are anycast services, never photo hosts
 * (192.0.0.0/24, 2001::/23): refusing a whole block is simpler to check and
 * costs nothing real. Reserved space (240/4), broadcast and multicast are
 * refused too. IPv6 forms that carry an IPv4 address (mapped, compatible,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4 address,
 * because a dual-stack host or a translator would deliver them there; the
 * local-use NAT64 prefix 64:ff9b:1::/48 and Teredo (2001::/32, an obfuscated
 * IPv4 inside) are refused outright.
 */
#include "fetch/fetch_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* One refused block: `len` leading bits of `net` (network order). */
typedef struct {
    uint8_t net[16];
    int len;
    const char *cls;
} addr__block;

/* IPv4 Special-Purpose Address Registry, not globally reachable, + multicast. */
static const addr__block addr__v4[] = {
    {{0}, 8, "unspecified"},                    /* 0.0.0.0/8 "this network" */
    {{10}, 8, "private"},                       /* 10.0.0.0/8 */
    {{100, 64}, 10, "cgnat"},                   /* 100.64.0.0/10 shared address space */
    {{127}, 8, "loopback"},                     /* 127.0.0.0/8 */
    {{169, 254}, 16, "link-local"},             /* 169.254.0.0/16, cloud metadata */
    {{172, 16}, 12, "private"},                 /* 172.16.0.0/12 */
    {{192, 0, 0}, 24, "protocol-assignments"},  /* 192.0.0.0/24 IETF protocol assignments */
    {{192, 0, 2}, 24, "documentation"},         /* 192.0.2.0/24 TEST-NET-1 */
    {{192, 88, 99}, 24, "reserved"},            /* 192.88.99.0/24 ex-6to4 relay anycast */
    {{192, 168}, 16, "private"},                /* 192.168.0.0/16 */
    {{198, 18}, 15, "benchmarking"},            /* 198.18.0.0/15 */
    {{198, 51, 100}, 24, "documentation"},      /* 198.51.100.0/24 TEST-NET-2 */
    {{203, 0, 113}, 24, "documentation"},       /* 203.0.113.0/24 TEST-NET-3 */
    {{224}, 4, "multicast"},                    /* 224.0.0.0/4 */
    {{240}, 4, "reserved"},                     /* 240.0.0.0/4, 255.255.255.255 in it */
};

/* IPv6 Special-Purpose Address Registry, not globally reachable, + multicast. */
static const addr__block addr__v6[] = {
    {{0}, 128, "unspecified"},                                     /* ::/128 */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"}, /* ::1/128 */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, "nat64-local"},             /* 64:ff9b:1::/48 */
    {{0x01, 0x00}, 64, "discard"},                                /* 100::/64 discard-only */
    {{0x01, 0x00, 0, 0, 0, 0, 0, 1}, 64, "dummy"},                /* 100:0:0:1::/64 dummy */
    {{0x20, 0x01, 0x00, 0x00}, 23, "protocol-assignments"},       /* 2001::/23, Teredo in it */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},              /* 2001:db8::/32 */
    {{0x3f, 0xff}, 20, "documentation"},                          /* 3fff::/20 */
    {{0x5f, 0x00}, 16, "segment-routing"},                        /* 5f00::/16 SRv6 SIDs */
    {{0xfc}, 7, "private"},                                       /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10, "link-local"},                             /* fe80::/10 */
    {{0xfe, 0xc0}, 10, "site-local"},                             /* fec0::/10, deprecated */
    {{0xff}, 8, "multicast"},                                     /* ff00::/8 */
};

/* Does `a` start with the first `len` bits of `net`? */
static int addr__in(const uint8_t *a, const uint8_t *net, int len)
{
    int whole = len / 8, rest = len % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

static const char *addr__lookup(const uint8_t *a, const addr__block *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (addr__in(a, t[i].net, t[i].len))
            return t[i].cls;
    return NULL;
}

/* Class of an IPv4 address given as its four bytes in network order. */
static const char *addr__v4_class(const uint8_t b[4])
{
    return addr__lookup(b, addr__v4, sizeof addr__v4 / sizeof addr__v4[0]);
}

static const char *addr__v6_class(const uint8_t a[16])
{
    static const uint8_t zero12[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    const char *c = addr__lookup(a, addr__v6, sizeof addr__v6 / sizeof addr__v6[0]);

    if (c != NULL)
        return c;
    /* ::ffff:a.b.c.d, ::a.b.c.d (deprecated compatible) and NAT64: the IPv4 inside decides. */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero12, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return addr__v4_class(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) /* 2002:AABB:CCDD::/48 6to4 */
        return addr__v4_class(a + 2);
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
