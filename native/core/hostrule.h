/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * hostrule: the one rule for "is this host on this machine or the owner's
 * LAN" and "may the printer's token go there unencrypted". The tunnel
 * (tunnel.c), linking (octoprint_tsd/link.py) and discovery
 * (octoprint_tsd/discovery.py) all ask it; docs/security.md states it.
 *
 * Only an address literal says where a connection goes: a name (localhost
 * included) goes through the resolver, and so does a shorthand numeric
 * form such as 127.1 or 0x7f000001, which inet_aton() would read. Both are
 * HOSTRULE_NAME, never local.
 */
#ifndef TSD_HOSTRULE_H
#define TSD_HOSTRULE_H

#include <stdbool.h>
#include <stddef.h>

enum hostrule_class {
    HOSTRULE_NAME = 0,  /* not a canonical address literal (or empty, or too long) */
    HOSTRULE_PUBLIC,    /* any other address: public, link-local, CGNAT, unspecified, ... */
    HOSTRULE_PRIVATE,   /* 10/8, 172.16/12, 192.168/16, fc00::/7 */
    HOSTRULE_LOOPBACK,  /* 127/8, ::1 */
    HOSTRULE_CLASS_MAX
};

enum hostrule_result {
    HOSTRULE_OK = 0,
    HOSTRULE_ERR_URL,       /* not a usable server URL */
    HOSTRULE_ERR_CLEARTEXT, /* cleartext to a host the rule does not allow */
    HOSTRULE_ERR_REACH,     /* a download to an address it may not reach */
    HOSTRULE_RESULT_MAX
};

#define HOSTRULE_MAX_HOST 253u
#define HOSTRULE_MAX_URL 2048u

/* What hostrule_check_url() read from a URL. */
struct hostrule_url {
    char scheme[8];                   /* lowercased: http, https, ws or wss */
    bool tls;                         /* https or wss */
    char host[HOSTRULE_MAX_HOST + 1]; /* as written, without an IPv6 literal's brackets */
    int port;                         /* 0: none given */
    const char *path;                 /* (transfer none) in the URL: "" or from its '/' on */
    enum hostrule_class host_class;
};

const char *hostrule_result_str(enum hostrule_result result);

/* "name", "public", "private", "loopback". */
const char *hostrule_class_str(enum hostrule_class host_class);

/* The class of a host: an IPv4 address in dotted-decimal, an IPv6 address
 * (bare or in brackets; an IPv4-mapped one counts as its IPv4 address), or
 * anything else (a name). NULL is a name. */
enum hostrule_class hostrule_classify(const char *host);

/* Loopback or private. */
bool hostrule_class_is_local(enum hostrule_class host_class);

/* Cleartext to a host of this class: loopback always, a private address
 * only when the owner allowed cleartext on the LAN, nothing else. */
bool hostrule_cleartext_allowed(enum hostrule_class host_class, bool allow_cleartext_lan);

/* Checks a server URL: scheme://host[:port][/path] with a scheme of http,
 * https, ws or wss in any case, no user, query or fragment, printable ASCII
 * only; cleartext (http, ws) only where hostrule_cleartext_allowed() says.
 * Fills *ret_url (may be NULL) on HOSTRULE_OK and HOSTRULE_ERR_CLEARTEXT;
 * writes the reason into reterr (may be NULL) on an error. */
enum hostrule_result hostrule_check_url(const char *url, bool allow_cleartext_lan,
                                        struct hostrule_url *ret_url, char *reterr,
                                        size_t reterr_len);

/* ---- downloads the server asks for (cloud print) ---------------------------
 *
 * The server hands out the URL of a G-code file (a signed storage URL, often
 * on another host), so a download is checked by what it could reach, not by
 * where the URL came from. Only two kinds of connection are allowed:
 *
 *   - to the linked server's own host (the same name or address literal as in
 *     the server URL): over TLS at any address; cleartext (http) only where
 *     hostrule_cleartext_allowed() allows it for every address it resolves to;
 *   - to any other host: over TLS only, and only to global addresses: never
 *     loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
 *     fe80::/10), unspecified or "this network" (0/8, ::), shared (100.64/10),
 *     multicast, broadcast or reserved (240/4), nor IPv6 forms that embed
 *     such an IPv4 address (v4-mapped, v4-compatible, NAT64 64:ff9b::/96,
 *     6to4 2002::/16).
 *
 * The download checks the scheme before it connects, and each resolved
 * address right before connecting to exactly that address (no second
 * lookup, so a name cannot change its answer between the check and the
 * connect); a redirect is a new URL, checked the same way. */
struct sockaddr;

struct hostrule_fetch_policy {
    const char *server_host; /* the linked server's host (hostrule_url.host); NULL: none */
    bool allow_cleartext_lan;
};

/* Whether host (as in a URL; an IPv6 literal with or without brackets) is
 * the linked server's own host: the same name, case-insensitively, or the
 * same address literal. */
bool hostrule_fetch_is_server_host(const struct hostrule_fetch_policy *policy, const char *host);

/* Before connecting: HOSTRULE_ERR_CLEARTEXT for http to a host other than
 * the server's own (the addresses are checked by the next function). */
enum hostrule_result hostrule_fetch_check_scheme(const struct hostrule_fetch_policy *policy,
                                                 bool tls, const char *host, char *reterr,
                                                 size_t reterr_len);

/* One resolved address of host: HOSTRULE_OK, HOSTRULE_ERR_REACH (an address
 * the rule above does not allow for that host) or HOSTRULE_ERR_CLEARTEXT
 * (http to the server's host at an address where cleartext may not go). */
enum hostrule_result hostrule_fetch_check_addr(const struct hostrule_fetch_policy *policy,
                                               bool tls, const char *host,
                                               const struct sockaddr *addr, size_t addr_len,
                                               char *reterr, size_t reterr_len);

#endif
