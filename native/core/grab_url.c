/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * The webcam URLs of grab.h: parsing (only what a webcam needs: http and
 * https, a host, a port, a target) and resolving a redirect's Location.
 */
#include "grab.h"
#include "errtext.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool has_bad_char(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return true;
    return false;
}

/* A registered name: dot-separated labels of 1..63 host characters; one
 * trailing dot allowed. */
static bool host_name_ok(const char *host, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > GRAB_MAX_HOST)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!is_host_char(c))
            return false;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (++label > 63) {
            return false;
        }
    }
    return true;
}

enum grab_result grab_url_parse(const char *text, struct grab_url *ret_url, char *reterr,
                                size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_url url;
    const char *authority;
    const char *authority_end;
    const char *host_end;
    const char *port_start = NULL;
    const char *rest;
    size_t len;
    size_t host_len;
    size_t target_len;

    memset(&url, 0, sizeof(url));
    if (!text || !ret_url) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    len = strnlen(text, GRAB_MAX_URL + 1);
    if (len == 0 || len > GRAB_MAX_URL) {
        set_reason(reterr, reterr_len, "the URL is empty or longer than %u bytes", GRAB_MAX_URL);
        result = GRAB_ERR_URL;
        goto out;
    }
    if (has_bad_char(text, len)) {
        set_reason(reterr, reterr_len,
                   "the URL contains spaces, control characters or non-ASCII bytes");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (strncasecmp(text, "http://", 7) == 0) {
        authority = text + 7;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        url.tls = true;
        authority = text + 8;
    } else {
        set_reason(reterr, reterr_len, "the URL must start with http:// or https://");
        result = GRAB_ERR_URL;
        goto out;
    }
    authority_end = authority + strcspn(authority, "/?#");
    if (memchr(authority, '@', (size_t)(authority_end - authority))) {
        set_reason(reterr, reterr_len,
                   "user names and passwords in the URL (user:password@host) are not supported");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (authority == authority_end) {
        set_reason(reterr, reterr_len, "the URL has no host");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (*authority == '[') {
        const char *close = memchr(authority, ']', (size_t)(authority_end - authority));
        struct in6_addr addr;

        if (!close) {
            set_reason(reterr, reterr_len, "unterminated IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        host_len = (size_t)(close - authority - 1);
        if (host_len == 0 || host_len >= INET6_ADDRSTRLEN) {
            set_reason(reterr, reterr_len, "malformed IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        memcpy(url.host, authority + 1, host_len);
        url.host[host_len] = '\0';
        if (strchr(url.host, '%')) {
            set_reason(reterr, reterr_len, "IPv6 zone ids (%%...) are not supported");
            result = GRAB_ERR_URL;
            goto out;
        }
        if (inet_pton(AF_INET6, url.host, &addr) != 1) {
            set_reason(reterr, reterr_len, "malformed IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.ipv6 = true;
        host_end = close + 1;
        if (host_end < authority_end) {
            if (*host_end != ':') {
                set_reason(reterr, reterr_len, "unexpected characters after the IPv6 address");
                result = GRAB_ERR_URL;
                goto out;
            }
            port_start = host_end + 1;
        }
    } else {
        const char *colon = memchr(authority, ':', (size_t)(authority_end - authority));

        host_end = colon ? colon : authority_end;
        host_len = (size_t)(host_end - authority);
        if (!host_name_ok(authority, host_len)) {
            set_reason(reterr, reterr_len, "the host name in the URL is empty or malformed");
            result = GRAB_ERR_URL;
            goto out;
        }
        for (size_t i = 0; i < host_len; i++) {
            char c = authority[i];
            url.host[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        url.host[host_len] = '\0';
        if (colon)
            port_start = colon + 1;
    }
    url.port = url.tls ? 443 : 80;
    if (port_start && port_start < authority_end) {
        unsigned long port = 0;
        size_t digits = (size_t)(authority_end - port_start);

        if (digits > 5) {
            set_reason(reterr, reterr_len, "the port in the URL is out of range");
            result = GRAB_ERR_URL;
            goto out;
        }
        for (size_t i = 0; i < digits; i++) {
            if (port_start[i] < '0' || port_start[i] > '9') {
                set_reason(reterr, reterr_len, "the port in the URL is not a number");
                result = GRAB_ERR_URL;
                goto out;
            }
            port = port * 10 + (unsigned long)(port_start[i] - '0');
        }
        if (port < 1 || port > 65535) {
            set_reason(reterr, reterr_len, "the port in the URL is out of range");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.port = (uint16_t)port;
    }
    rest = authority_end;
    target_len = strcspn(rest, "#");
    if (target_len == 0) {
        memcpy(url.target, "/", 2);
    } else if (rest[0] == '?') {
        if (target_len + 1 > GRAB_MAX_URL) {
            set_reason(reterr, reterr_len, "the URL is too long");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.target[0] = '/';
        memcpy(url.target + 1, rest, target_len);
        url.target[target_len + 1] = '\0';
    } else {
        memcpy(url.target, rest, target_len);
        url.target[target_len] = '\0';
    }
    *ret_url = url;

out:
    return result;
}

static bool has_scheme(const char *text)
{
    const char *p = text;

    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':';
}

enum grab_result grab_url_resolve(const struct grab_url *base, const char *location,
                                  struct grab_url *ret_url, char *reterr, size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_url next;
    char why[GRAB_REASON_SIZE];
    char absolute[GRAB_MAX_URL + 8];
    size_t len;

    if (!base || !location || !ret_url) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    len = strnlen(location, GRAB_MAX_URL + 1);
    if (len == 0 || len > GRAB_MAX_URL || has_bad_char(location, len)) {
        set_reason(reterr, reterr_len,
                   "the redirect's Location is empty, too long or has invalid characters");
        result = GRAB_ERR_REDIRECT;
        goto out;
    }
    if (has_scheme(location) || strncmp(location, "//", 2) == 0) {
        const char *text = location;

        if (location[0] == '/') {
            snprintf(absolute, sizeof(absolute), "%s:%s", base->tls ? "https" : "http", location);
            text = absolute;
        }
        if (grab_url_parse(text, &next, why, sizeof(why)) != GRAB_OK) {
            set_reason(reterr, reterr_len, "the redirect's Location cannot be used: %s", why);
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
        if (next.tls != base->tls) {
            set_reason(reterr, reterr_len, "a redirect from %s to %s is not followed",
                       base->tls ? "https" : "http", next.tls ? "https" : "http");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
    } else {
        size_t keep = 0; /* bytes of the base target kept in front */
        size_t add = strcspn(location, "#");

        next = *base;
        if (location[0] == '/') {
            keep = 0;
        } else if (location[0] == '?') {
            keep = strcspn(base->target, "?");
        } else if (add > 0) {
            size_t path_len = strcspn(base->target, "?");
            const char *slash = NULL;
            for (size_t i = 0; i < path_len; i++)
                if (base->target[i] == '/')
                    slash = base->target + i;
            keep = slash ? (size_t)(slash - base->target) + 1 : 0;
        } else {
            keep = strlen(base->target); /* "#fragment" only: the same resource */
        }
        if (keep + add > GRAB_MAX_URL) {
            set_reason(reterr, reterr_len, "the redirect's Location makes the URL too long");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
        memcpy(next.target, base->target, keep);
        memcpy(next.target + keep, location, add);
        next.target[keep + add] = '\0';
        if (next.target[0] != '/') {
            set_reason(reterr, reterr_len, "the redirect's Location cannot be resolved");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
    }
    *ret_url = next;

out:
    return result;
}
