/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "hostrule.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "errtext.h"

const char *hostrule_result_str(enum hostrule_result result)
{
    switch (result) {
    case HOSTRULE_OK: return "ok";
    case HOSTRULE_ERR_URL: return "the server URL cannot be used";
    case HOSTRULE_ERR_REACH:
        return "a download may not reach that address (loopback, private, link-local or "
               "another non-public address that is not the linked server's own host)";
    case HOSTRULE_ERR_CLEARTEXT:
        return "unencrypted http:// or ws:// is only allowed to a loopback address, or a "
               "private LAN address when cleartext on the LAN is allowed";
    case HOSTRULE_RESULT_MAX: break;
    }
    return "unknown result";
}

const char *hostrule_class_str(enum hostrule_class host_class)
{
    switch (host_class) {
    case HOSTRULE_NAME: return "name";
    case HOSTRULE_PUBLIC: return "public";
    case HOSTRULE_PRIVATE: return "private";
    case HOSTRULE_LOOPBACK: return "loopback";
    case HOSTRULE_CLASS_MAX: break;
    }
    return "unknown";
}

/* addr: in host byte order. */
static enum hostrule_class classify_ipv4(uint32_t addr)
{
    if ((addr >> 24) == 127)
        return HOSTRULE_LOOPBACK;
    if ((addr >> 24) == 10 || (addr >> 20) == (172u << 4 | 1u) || (addr >> 16) == (192u << 8 | 168u))
        return HOSTRULE_PRIVATE;
    return HOSTRULE_PUBLIC;
}

static enum hostrule_class classify_ipv6(const struct in6_addr *addr)
{
    const uint8_t *b = addr->s6_addr;

    if (IN6_IS_ADDR_LOOPBACK(addr))
        return HOSTRULE_LOOPBACK;
    /* ::ffff:a.b.c.d is where a dual-stack socket connects: a.b.c.d. The
     * deprecated IPv4-compatible form (::a.b.c.d) is not read as IPv4. */
    if (IN6_IS_ADDR_V4MAPPED(addr))
        return classify_ipv4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                             (uint32_t)b[14] << 8 | (uint32_t)b[15]);
    if ((b[0] & 0xfe) == 0xfc)
        return HOSTRULE_PRIVATE;
    return HOSTRULE_PUBLIC;
}

/* host[0..len): inet_pton() reads only canonical literals (dotted-decimal
 * with four parts, no octal or hex), unlike inet_aton() and getaddrinfo(). */
static enum hostrule_class classify_span(const char *host, size_t len)
{
    char bare[INET6_ADDRSTRLEN + 1];
    struct in_addr v4;
    struct in6_addr v6;

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
        if (len == 0 || len >= sizeof(bare))
            return HOSTRULE_NAME;
        memcpy(bare, host, len);
        bare[len] = '\0';
        return inet_pton(AF_INET6, bare, &v6) == 1 ? classify_ipv6(&v6) : HOSTRULE_NAME;
    }
    if (len == 0 || len >= sizeof(bare))
        return HOSTRULE_NAME;
    memcpy(bare, host, len);
    bare[len] = '\0';
    if (inet_pton(AF_INET, bare, &v4) == 1)
        return classify_ipv4(ntohl(v4.s_addr));
    if (inet_pton(AF_INET6, bare, &v6) == 1)
        return classify_ipv6(&v6);
    return HOSTRULE_NAME;
}

enum hostrule_class hostrule_classify(const char *host)
{
    return host ? classify_span(host, strlen(host)) : HOSTRULE_NAME;
}

bool hostrule_class_is_local(enum hostrule_class host_class)
{
    return host_class == HOSTRULE_LOOPBACK || host_class == HOSTRULE_PRIVATE;
}

bool hostrule_cleartext_allowed(enum hostrule_class host_class, bool allow_cleartext_lan)
{
    return host_class == HOSTRULE_LOOPBACK ||
           (allow_cleartext_lan && host_class == HOSTRULE_PRIVATE);
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

enum hostrule_result hostrule_check_url(const char *url, bool allow_cleartext_lan,
                                        struct hostrule_url *ret_url, char *reterr,
                                        size_t reterr_len)
{
    static const char *const schemes[] = {"https", "wss", "http", "ws"}; /* TLS ones first */
    struct hostrule_url parsed = {0};
    enum hostrule_result result = HOSTRULE_ERR_URL;
    const char *scheme_end;
    const char *authority;
    const char *end;
    const char *host;
    size_t host_len;
    const char *after_host;
    size_t scheme_len;

    if (!url || !*url || strlen(url) > HOSTRULE_MAX_URL) {
        set_reason(reterr, reterr_len, "the server URL is empty or too long");
        goto out;
    }
    for (const char *c = url; *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            set_reason(reterr, reterr_len, "the server URL contains spaces or control characters");
            goto out;
        }
        if (*c == '?' || *c == '#' || *c == '\\') {
            set_reason(reterr, reterr_len,
                       "the server URL must not contain a query, a fragment or a backslash");
            goto out;
        }
    }
    scheme_end = strstr(url, "://");
    scheme_len = scheme_end ? (size_t)(scheme_end - url) : 0;
    for (size_t i = 0; scheme_end && i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i]) == scheme_len && strncasecmp(url, schemes[i], scheme_len) == 0) {
            memcpy(parsed.scheme, schemes[i], scheme_len + 1);
            parsed.tls = i < 2;
            break;
        }
    }
    if (!parsed.scheme[0]) {
        set_reason(reterr, reterr_len, "the server URL must start with https:// or wss:// "
                                       "(http:// or ws:// for a loopback or allowed LAN server)");
        goto out;
    }
    authority = scheme_end + 3;
    end = strchr(authority, '/');
    if (!end)
        end = authority + strlen(authority);
    if (memchr(authority, '@', (size_t)(end - authority))) {
        set_reason(reterr, reterr_len, "the server URL must not contain a user");
        goto out;
    }
    host = authority;
    if (*authority == '[') {
        const char *close = memchr(authority, ']', (size_t)(end - authority));

        if (!close) {
            set_reason(reterr, reterr_len, "the server URL has an unclosed [");
            goto out;
        }
        host = authority + 1;
        host_len = (size_t)(close - host);
        after_host = close + 1;
        /* Brackets hold an IPv6 address and nothing else. */
        if (classify_span(authority, (size_t)(after_host - authority)) == HOSTRULE_NAME) {
            set_reason(reterr, reterr_len, "the server URL has no IPv6 address inside [ ]");
            goto out;
        }
    } else {
        const char *colon = memchr(authority, ':', (size_t)(end - authority));

        after_host = colon ? colon : end;
        host_len = (size_t)(after_host - host);
        for (size_t i = 0; i < host_len; i++) {
            if (!host_char_ok(host[i])) {
                set_reason(reterr, reterr_len, "the server URL's host has a character that "
                                               "is not allowed in a name or address");
                goto out;
            }
        }
    }
    if (host_len == 0 || host_len > HOSTRULE_MAX_HOST) {
        set_reason(reterr, reterr_len, "the server URL has no host, or one that is too long");
        goto out;
    }
    if (after_host < end) {
        const char *digit = after_host + 1;
        long port = 0;

        if (*after_host != ':' || digit == end || end - digit > 5) {
            set_reason(reterr, reterr_len, "the server URL has an invalid port");
            goto out;
        }
        for (; digit < end; digit++) {
            if (*digit < '0' || *digit > '9') {
                set_reason(reterr, reterr_len, "the server URL has an invalid port");
                goto out;
            }
            port = port * 10 + (*digit - '0');
        }
        if (port < 1 || port > 65535) {
            set_reason(reterr, reterr_len, "the server URL has an invalid port");
            goto out;
        }
        parsed.port = (int)port;
    }
    parsed.path = end;
    memcpy(parsed.host, host, host_len);
    parsed.host[host_len] = '\0';
    parsed.host_class = classify_span(host == authority ? host : authority,
                                      host == authority ? host_len : host_len + 2);
    result = HOSTRULE_OK;
    if (!parsed.tls && !hostrule_cleartext_allowed(parsed.host_class, allow_cleartext_lan)) {
        set_reason(reterr, reterr_len,
                   "%s:// sends the printer's token unencrypted; it is allowed only to a loopback "
                   "address (127.0.0.1, ::1), or to a private LAN address when cleartext on the "
                   "LAN is allowed in the plugin's settings (%s is %s)",
                   parsed.scheme, parsed.host,
                   parsed.host_class == HOSTRULE_NAME ? "a name, not an address"
                   : parsed.host_class == HOSTRULE_PRIVATE ? "a LAN address"
                                                           : "not a LAN address");
        result = HOSTRULE_ERR_CLEARTEXT;
    }
    if (ret_url)
        *ret_url = parsed;

out:
    return result;
}

/* ---- downloads the server asks for ------------------------------------------ */

/* Why a download may not go to this IPv4 address (host byte order), or NULL
 * for a global one. */
static const char *ipv4_not_global(uint32_t a)
{
    if ((a >> 24) == 127)
        return "loopback";
    if ((a >> 24) == 10 || (a >> 20) == (172u << 4 | 1u) || (a >> 16) == (192u << 8 | 168u))
        return "private";
    if ((a >> 16) == (169u << 8 | 254u))
        return "link-local";
    if ((a >> 24) == 0)
        return "unspecified";
    if ((a >> 22) == (100u << 2 | 1u)) /* 100.64/10 */
        return "shared (carrier-grade NAT)";
    if ((a >> 28) == 14)
        return "multicast";
    if ((a >> 28) == 15)
        return "reserved or broadcast";
    if ((a >> 8) == (192u << 16 | 0u << 8 | 0u)) /* 192.0.0/24: IETF protocol assignments */
        return "reserved";
    return NULL;
}

static uint32_t ipv4_at(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static const char *ipv6_not_global(const struct in6_addr *addr)
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    const uint8_t *b = addr->s6_addr;
    bool zero96 = true;

    for (int i = 0; i < 12; i++)
        zero96 = zero96 && b[i] == 0;
    if (IN6_IS_ADDR_LOOPBACK(addr))
        return "loopback";
    if (IN6_IS_ADDR_UNSPECIFIED(addr))
        return "unspecified";
    if (IN6_IS_ADDR_V4MAPPED(addr))
        return ipv4_not_global(ipv4_at(b + 12));
    if (zero96) /* ::a.b.c.d, deprecated: where it goes depends on the stack */
        return "IPv4-compatible";
    if (memcmp(b, nat64, sizeof(nat64)) == 0)
        return ipv4_not_global(ipv4_at(b + 12));
    if (b[0] == 0x20 && b[1] == 0x02) /* 6to4: the IPv4 address behind it */
        return ipv4_not_global(ipv4_at(b + 2));
    if ((b[0] & 0xfe) == 0xfc)
        return "private";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "site-local";
    if (b[0] == 0xff)
        return "multicast";
    return NULL;
}

/* A host as written in a URL, without an IPv6 literal's brackets. */
static size_t bare_host(const char *host, const char **ret_start)
{
    size_t len = strlen(host);

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        *ret_start = host + 1;
        return len - 2;
    }
    *ret_start = host;
    return len;
}

bool hostrule_fetch_is_server_host(const struct hostrule_fetch_policy *policy, const char *host)
{
    const char *a;
    const char *b;
    size_t a_len;
    size_t b_len;
    char a_text[INET6_ADDRSTRLEN + 1];
    char b_text[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;
    struct in6_addr b6;

    if (!policy || !policy->server_host || !*policy->server_host || !host || !*host)
        return false;
    a_len = bare_host(policy->server_host, &a);
    b_len = bare_host(host, &b);
    if (a_len == b_len && strncasecmp(a, b, a_len) == 0)
        return true;
    /* The same IPv6 address written differently (::1 and 0:0::1). */
    if (a_len >= sizeof(a_text) || b_len >= sizeof(b_text))
        return false;
    memcpy(a_text, a, a_len);
    a_text[a_len] = '\0';
    memcpy(b_text, b, b_len);
    b_text[b_len] = '\0';
    return inet_pton(AF_INET6, a_text, &a6) == 1 && inet_pton(AF_INET6, b_text, &b6) == 1 &&
           memcmp(&a6, &b6, sizeof(a6)) == 0;
}

enum hostrule_result hostrule_fetch_check_scheme(const struct hostrule_fetch_policy *policy,
                                                 bool tls, const char *host, char *reterr,
                                                 size_t reterr_len)
{
    if (tls || hostrule_fetch_is_server_host(policy, host))
        return HOSTRULE_OK;
    set_reason(reterr, reterr_len,
               "a download over http:// is allowed only from the linked server's own host "
               "(%.100s is not it): the file must come over https://",
               host ? host : "(none)");
    return HOSTRULE_ERR_CLEARTEXT;
}

enum hostrule_result hostrule_fetch_check_addr(const struct hostrule_fetch_policy *policy,
                                               bool tls, const char *host,
                                               const struct sockaddr *addr, size_t addr_len,
                                               char *reterr, size_t reterr_len)
{
    char text[INET6_ADDRSTRLEN + 1] = "?";
    enum hostrule_class host_class;
    const char *not_global;
    bool server = hostrule_fetch_is_server_host(policy, host);

    if (!addr)
        goto refused_family;
    if (addr->sa_family == AF_INET && addr_len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)addr;
        uint32_t a = ntohl(in->sin_addr.s_addr);

        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        not_global = ipv4_not_global(a);
        host_class = classify_ipv4(a);
    } else if (addr->sa_family == AF_INET6 && addr_len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)addr;

        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        not_global = ipv6_not_global(&in6->sin6_addr);
        host_class = classify_ipv6(&in6->sin6_addr);
    } else {
        goto refused_family;
    }
    if (server) {
        /* The server's own host is where the owner chose to link: TLS may go
         * to any of its addresses; cleartext only where the link itself may. */
        if (tls || hostrule_cleartext_allowed(host_class, policy->allow_cleartext_lan))
            return HOSTRULE_OK;
        set_reason(reterr, reterr_len,
                   "http:// to the server's host %.100s at %s is not allowed: cleartext only to "
                   "loopback, or to a LAN address when cleartext on the LAN is allowed",
                   host, text);
        return HOSTRULE_ERR_CLEARTEXT;
    }
    if (!tls) {
        set_reason(reterr, reterr_len, "a download from %.100s must use https://", host ? host : "?");
        return HOSTRULE_ERR_CLEARTEXT;
    }
    if (!not_global)
        return HOSTRULE_OK;
    set_reason(reterr, reterr_len,
               "%.100s resolves to %s, a %s address: a download may reach only public addresses "
               "(or the linked server's own host)",
               host ? host : "?", text, not_global);
    return HOSTRULE_ERR_REACH;

refused_family:
    set_reason(reterr, reterr_len, "%.100s resolves to an address that is not IPv4 or IPv6",
               host ? host : "?");
    return HOSTRULE_ERR_REACH;
}
