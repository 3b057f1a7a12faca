/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the one host rule (native/core/hostrule.c): which hosts are
 * loopback, private or public, which are only names, and where the token
 * may go unencrypted. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "hostrule.h"

static void test_ipv4(void)
{
    CHECK(hostrule_classify("127.0.0.1") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("127.255.255.254") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("10.0.0.1") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("172.16.0.1") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("172.31.255.255") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("192.168.1.10") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("172.15.255.255") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("172.32.0.1") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("192.169.0.1") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("8.8.8.8") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("100.64.0.1") == HOSTRULE_PUBLIC);   /* CGNAT: not the owner's LAN */
    CHECK(hostrule_classify("169.254.1.1") == HOSTRULE_PUBLIC);  /* link-local */
    CHECK(hostrule_classify("0.0.0.0") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("192.0.2.1") == HOSTRULE_PUBLIC);    /* documentation */
    CHECK(hostrule_classify("255.255.255.255") == HOSTRULE_PUBLIC);
}

static void test_ipv6(void)
{
    CHECK(hostrule_classify("::1") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("[::1]") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("0:0:0:0:0:0:0:1") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("fd00::1") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("FC00::5") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("[FD12:3456::1]") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("fe80::1") == HOSTRULE_PUBLIC);      /* link-local */
    CHECK(hostrule_classify("fec0::1") == HOSTRULE_PUBLIC);      /* site-local, deprecated */
    CHECK(hostrule_classify("::") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("2001:4860::8888") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("ff02::1") == HOSTRULE_PUBLIC);
    CHECK(hostrule_classify("64:ff9b::7f00:1") == HOSTRULE_PUBLIC); /* NAT64 of 127.0.0.1 */
    /* Zone ids and brackets around anything but IPv6 are not addresses. */
    CHECK(hostrule_classify("fe80::1%eth0") == HOSTRULE_NAME);
    CHECK(hostrule_classify("fd00::1%eth0") == HOSTRULE_NAME);
    CHECK(hostrule_classify("[127.0.0.1]") == HOSTRULE_NAME);
    CHECK(hostrule_classify("[::1") == HOSTRULE_NAME);
    CHECK(hostrule_classify("[]") == HOSTRULE_NAME);
}

static void test_ipv4_mapped_ipv6(void)
{
    CHECK(hostrule_classify("::ffff:127.0.0.1") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("[::FFFF:7f00:1]") == HOSTRULE_LOOPBACK);
    CHECK(hostrule_classify("::ffff:192.168.1.10") == HOSTRULE_PRIVATE);
    CHECK(hostrule_classify("::ffff:8.8.8.8") == HOSTRULE_PUBLIC);
    /* IPv4-compatible (deprecated): not read as IPv4. */
    CHECK(hostrule_classify("::127.0.0.1") == HOSTRULE_PUBLIC);
}

static void test_names_and_numeric_forms(void)
{
    /* Names go through the resolver: never loopback or private. */
    CHECK(hostrule_classify("localhost") == HOSTRULE_NAME);
    CHECK(hostrule_classify("localhost.") == HOSTRULE_NAME);
    CHECK(hostrule_classify("LOCALHOST") == HOSTRULE_NAME);
    CHECK(hostrule_classify("printer.local") == HOSTRULE_NAME);
    CHECK(hostrule_classify("127.0.0.1.nip.io") == HOSTRULE_NAME);
    CHECK(hostrule_classify("127.attacker.example") == HOSTRULE_NAME);
    /* Shorthand numeric forms that inet_aton() would read as 127.0.0.1 or
     * 10.0.0.1: names here, so they never count as local. */
    CHECK(hostrule_classify("127.1") == HOSTRULE_NAME);
    CHECK(hostrule_classify("0x7f000001") == HOSTRULE_NAME);
    CHECK(hostrule_classify("2130706433") == HOSTRULE_NAME);
    CHECK(hostrule_classify("0177.0.0.1") == HOSTRULE_NAME);
    CHECK(hostrule_classify("010.0.0.1") == HOSTRULE_NAME);
    CHECK(hostrule_classify("127.0.0.1.") == HOSTRULE_NAME);
    CHECK(hostrule_classify(" 127.0.0.1") == HOSTRULE_NAME);
    CHECK(hostrule_classify("") == HOSTRULE_NAME);
    CHECK(hostrule_classify(NULL) == HOSTRULE_NAME);
    CHECK(!hostrule_class_is_local(HOSTRULE_NAME) && !hostrule_class_is_local(HOSTRULE_PUBLIC));
    CHECK(hostrule_class_is_local(HOSTRULE_PRIVATE) && hostrule_class_is_local(HOSTRULE_LOOPBACK));
}

static void test_cleartext_rule(void)
{
    CHECK(hostrule_cleartext_allowed(HOSTRULE_LOOPBACK, false));
    CHECK(hostrule_cleartext_allowed(HOSTRULE_LOOPBACK, true));
    CHECK(!hostrule_cleartext_allowed(HOSTRULE_PRIVATE, false));
    CHECK(hostrule_cleartext_allowed(HOSTRULE_PRIVATE, true));
    CHECK(!hostrule_cleartext_allowed(HOSTRULE_PUBLIC, true));
    CHECK(!hostrule_cleartext_allowed(HOSTRULE_NAME, true));
}

static enum hostrule_result check(const char *url, bool allow_lan, struct hostrule_url *out)
{
    char reason[256] = "";
    enum hostrule_result result = hostrule_check_url(url, allow_lan, out, reason, sizeof(reason));

    CHECK((result == HOSTRULE_OK) == (reason[0] == '\0'));
    return result;
}

static void test_urls(void)
{
    struct hostrule_url out;

    CHECK(check("https://app.obico.io", false, &out) == HOSTRULE_OK);
    CHECK(out.tls && strcmp(out.scheme, "https") == 0 && strcmp(out.host, "app.obico.io") == 0 &&
          out.port == 0 && out.host_class == HOSTRULE_NAME);
    CHECK(check("HTTPS://App.Obico.io:8443/sub/", false, &out) == HOSTRULE_OK);
    CHECK(strcmp(out.scheme, "https") == 0 && out.port == 8443 && strcmp(out.host, "App.Obico.io") == 0);
    CHECK(check("WSS://[::1]:3334/ws/dev/", false, &out) == HOSTRULE_OK);
    CHECK(strcmp(out.scheme, "wss") == 0 && strcmp(out.host, "::1") == 0 &&
          out.host_class == HOSTRULE_LOOPBACK);
    /* Cleartext: loopback always, private only when allowed. */
    CHECK(check("http://127.0.0.1:3334", false, &out) == HOSTRULE_OK && !out.tls);
    CHECK(check("Ws://[::ffff:127.0.0.1]:3334/ws/dev/", false, &out) == HOSTRULE_OK);
    CHECK(check("HTTP://192.168.1.5:3334", false, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(out.host_class == HOSTRULE_PRIVATE);
    CHECK(check("HTTP://192.168.1.5:3334", true, &out) == HOSTRULE_OK);
    CHECK(check("ws://[fd00::1]/ws/dev/", true, &out) == HOSTRULE_OK);
    CHECK(check("ws://8.8.8.8/ws/dev/", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("ws://[fe80::1]/ws/dev/", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("http://localhost:3334", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("http://127.0.0.1.nip.io", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("http://127.1", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("http://0x7f000001", true, &out) == HOSTRULE_ERR_CLEARTEXT);
    CHECK(check("https://127.1", false, &out) == HOSTRULE_OK); /* TLS: names are fine */
}

static void test_bad_urls(void)
{
    static const char *const bad[] = {
        "", "app.obico.io", "ftp://x", "https:/x", "https://", "https:///path",
        "https://user:pw@x.io", "https://x.io@127.0.0.1", "http://127.0.0.1@evil.example",
        "https://x.io/?a=1", "https://x.io/#f", "https://x.io\\@y", "https://x .io",
        "https://x.io:", "https://x.io:0", "https://x.io:65536", "https://x.io:123456",
        "https://x.io:8a", "https://[::1", "https://[127.0.0.1]/", "https://[::1]x/",
        "https://fe80::1/", "https://x%2eio", "https://[fe80::1%25eth0]/", "https://\xc3\xa9.io",
        "httpss://x.io", "wss//x.io",
    };
    char too_long[HOSTRULE_MAX_URL + 16];
    char reason[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        if (hostrule_check_url(bad[i], true, NULL, reason, sizeof(reason)) != HOSTRULE_ERR_URL) {
            printf("#   accepted: %s\n", bad[i]);
            CHECK(!"a bad URL was accepted");
        }
        CHECK(reason[0] != '\0');
    }
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    memcpy(too_long, "https://", 8);
    CHECK(hostrule_check_url(too_long, false, NULL, NULL, 0) == HOSTRULE_ERR_URL);
    CHECK(hostrule_check_url(NULL, false, NULL, NULL, 0) == HOSTRULE_ERR_URL);
}

/* Checks host at the address literal addr_text the way a download would. */
static enum hostrule_result fetch_addr(const char *server, bool lan, bool tls, const char *host,
                                       const char *addr_text)
{
    struct hostrule_fetch_policy policy = {.server_host = server, .allow_cleartext_lan = lan};
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    char reason[256] = "";
    enum hostrule_result result;

    if (inet_pton(AF_INET, addr_text, &in.sin_addr) == 1)
        result = hostrule_fetch_check_addr(&policy, tls, host, (struct sockaddr *)&in, sizeof(in),
                                           reason, sizeof(reason));
    else if (inet_pton(AF_INET6, addr_text, &in6.sin6_addr) == 1)
        result = hostrule_fetch_check_addr(&policy, tls, host, (struct sockaddr *)&in6,
                                           sizeof(in6), reason, sizeof(reason));
    else
        return HOSTRULE_RESULT_MAX;
    if (result != HOSTRULE_OK && !reason[0])
        return HOSTRULE_RESULT_MAX; /* every refusal says why */
    return result;
}

static void test_cloudprint_fetch_addresses_of_other_hosts(void)
{
    static const char *const refused[] = {
        "127.0.0.1", "127.3.2.1", "10.1.2.3", "172.16.5.4", "192.168.0.10", "169.254.169.254",
        "0.0.0.0", "0.1.2.3", "100.64.1.1", "224.0.0.1", "255.255.255.255", "240.0.0.1",
        "192.0.0.170",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
        "::127.0.0.1", "::8.8.8.8", "64:ff9b::10.0.0.1", "64:ff9b::7f00:1", "2002:c0a8:0101::1",
        "2002:7f00:1::",
    };
    static const char *const allowed[] = {
        "93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
        "::ffff:93.184.216.34", "64:ff9b::808:808", "2002:808:808::1",
    };

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (fetch_addr("app.obico.io", false, true, "storage.example", refused[i]) !=
            HOSTRULE_ERR_REACH) {
            fprintf(stderr, "# allowed %s\n", refused[i]);
            CHECK(!"a non-public address was allowed");
        }
        /* Not even with cleartext on the LAN allowed. */
        CHECK(fetch_addr("app.obico.io", true, true, "storage.example", refused[i]) ==
              HOSTRULE_ERR_REACH);
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (fetch_addr("app.obico.io", false, true, "storage.example", allowed[i]) != HOSTRULE_OK) {
            fprintf(stderr, "# refused %s\n", allowed[i]);
            CHECK(!"a public address was refused");
        }
        /* Never cleartext to another host, public or not. */
        CHECK(fetch_addr("app.obico.io", true, false, "storage.example", allowed[i]) ==
              HOSTRULE_ERR_CLEARTEXT);
    }
    /* A name that is not the server's, however local it looks. */
    CHECK(fetch_addr("127.0.0.1", false, true, "localhost", "127.0.0.1") == HOSTRULE_ERR_REACH);
    CHECK(fetch_addr(NULL, false, true, "storage.example", "10.0.0.1") == HOSTRULE_ERR_REACH);
}

static void test_cloudprint_fetch_server_host(void)
{
    struct hostrule_fetch_policy loop = {.server_host = "127.0.0.1"};
    struct hostrule_fetch_policy v6 = {.server_host = "[::1]"};
    struct hostrule_fetch_policy named = {.server_host = "Obico.Example.LAN"};
    char reason[256];

    CHECK(hostrule_fetch_is_server_host(&loop, "127.0.0.1"));
    CHECK(!hostrule_fetch_is_server_host(&loop, "127.0.0.2"));
    CHECK(!hostrule_fetch_is_server_host(&loop, "localhost"));
    CHECK(hostrule_fetch_is_server_host(&v6, "::1"));
    CHECK(hostrule_fetch_is_server_host(&v6, "[0:0::1]"));
    CHECK(hostrule_fetch_is_server_host(&named, "obico.example.lan"));
    CHECK(!hostrule_fetch_is_server_host(&named, "obico.example.lan.evil"));
    CHECK(!hostrule_fetch_is_server_host(NULL, "x"));
    /* The scheme: http only from the server's own host. */
    CHECK(hostrule_fetch_check_scheme(&loop, false, "127.0.0.1", NULL, 0) == HOSTRULE_OK);
    CHECK(hostrule_fetch_check_scheme(&loop, false, "storage.example", reason, sizeof(reason)) ==
          HOSTRULE_ERR_CLEARTEXT);
    CHECK(strstr(reason, "https://") != NULL);
    CHECK(hostrule_fetch_check_scheme(&loop, true, "storage.example", NULL, 0) == HOSTRULE_OK);
    /* The server's own host: any address over TLS; cleartext where the link may go. */
    CHECK(fetch_addr("127.0.0.1", false, false, "127.0.0.1", "127.0.0.1") == HOSTRULE_OK);
    CHECK(fetch_addr("obico.lan", false, true, "obico.lan", "192.168.1.5") == HOSTRULE_OK);
    CHECK(fetch_addr("obico.lan", false, false, "obico.lan", "192.168.1.5") == HOSTRULE_ERR_CLEARTEXT);
    CHECK(fetch_addr("obico.lan", true, false, "obico.lan", "192.168.1.5") == HOSTRULE_OK);
    CHECK(fetch_addr("obico.lan", true, false, "obico.lan", "93.184.216.34") == HOSTRULE_ERR_CLEARTEXT);
    CHECK(fetch_addr("obico.lan", true, false, "obico.lan", "169.254.1.1") == HOSTRULE_ERR_CLEARTEXT);
    CHECK(fetch_addr("app.obico.io", false, true, "APP.obico.io", "93.184.216.34") == HOSTRULE_OK);
    /* No address, or one of another family. */
    CHECK(hostrule_fetch_check_addr(&loop, true, "x", NULL, 0, NULL, 0) == HOSTRULE_ERR_REACH);
    {
        struct sockaddr unknown = {.sa_family = AF_UNIX};
        CHECK(hostrule_fetch_check_addr(&loop, true, "x", &unknown, sizeof(unknown), NULL, 0) ==
              HOSTRULE_ERR_REACH);
    }
}

int main(void)
{
    RUN_TEST(test_ipv4);
    RUN_TEST(test_ipv6);
    RUN_TEST(test_ipv4_mapped_ipv6);
    RUN_TEST(test_names_and_numeric_forms);
    RUN_TEST(test_cleartext_rule);
    RUN_TEST(test_urls);
    RUN_TEST(test_bad_urls);
    RUN_TEST(test_cloudprint_fetch_addresses_of_other_hosts);
    RUN_TEST(test_cloudprint_fetch_server_host);
    return CHECK_DONE();
}
