/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the linking-answer parsers (native/core/linkmsg.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "linkmsg.h"

static enum linkmsg_result unlinked(const char *body, struct linkmsg_unlinked *out)
{
    return linkmsg_parse_unlinked(body, strlen(body), out);
}

static enum linkmsg_result verify(const char *body, struct linkmsg_verify *out)
{
    return linkmsg_parse_verify(body, strlen(body), out);
}

static void test_verify_code_message(void)
{
    static struct linkmsg_unlinked out;

    CHECK(unlinked("{\"messages\":[{\"device_id\":\"d1\",\"type\":\"verify_code\","
                   "\"data\":{\"code\":\"123456\",\"secret\":\"abcdef\"}}]}", &out) == LINKMSG_OK);
    CHECK(out.n_messages == 1);
    CHECK(strcmp(out.messages[0].device_id, "d1") == 0);
    CHECK(strcmp(out.messages[0].code, "123456") == 0);
    CHECK(out.messages[0].has_secret && strcmp(out.messages[0].secret, "abcdef") == 0);
    CHECK(out.invalid == 0 && out.ignored == 0 && !out.has_passcode);
}

static void test_secretless_and_unknown(void)
{
    static struct linkmsg_unlinked out;

    CHECK(unlinked("{\"messages\":[{\"device_id\":\"d1\",\"type\":\"verify_code\",\"data\":{\"code\":\"1\"}},"
                   "{\"type\":\"hello\"},{\"type\":5}]}", &out) == LINKMSG_OK);
    CHECK(out.n_messages == 1 && !out.messages[0].has_secret && out.messages[0].secret[0] == '\0');
    CHECK(out.ignored == 1 && out.invalid == 1);
}

static void test_malformed_messages_are_counted(void)
{
    static struct linkmsg_unlinked out;
    static char big[4096];

    CHECK(unlinked("{\"messages\":[{\"device_id\":\"d 1\",\"type\":\"verify_code\",\"data\":{\"code\":\"1\"}},"
                   "{\"device_id\":\"d1\",\"type\":\"verify_code\",\"data\":{\"code\":\"12a\"}},"
                   "{\"device_id\":\"d1\",\"type\":\"verify_code\",\"data\":[]},"
                   "{\"device_id\":\"d1\",\"type\":\"verify_code\",\"data\":{\"code\":\"1\",\"secret\":\"\"}},"
                   "3]}", &out) == LINKMSG_OK);
    CHECK(out.n_messages == 0 && out.invalid == 5);
    /* A 129-character secret is out of bounds. */
    snprintf(big, sizeof(big), "{\"messages\":[{\"device_id\":\"d\",\"type\":\"verify_code\","
             "\"data\":{\"code\":\"1\",\"secret\":\"%0129d\"}}]}", 0);
    CHECK(unlinked(big, &out) == LINKMSG_OK && out.invalid == 1 && out.n_messages == 0);
}

static void test_message_count_is_bounded(void)
{
    static struct linkmsg_unlinked out;
    static char body[8192];
    size_t used = 0;

    used += (size_t)snprintf(body + used, sizeof(body) - used, "{\"messages\":[");
    for (int i = 0; i < 20; i++)
        used += (size_t)snprintf(body + used, sizeof(body) - used,
                                 "%s{\"device_id\":\"d%d\",\"type\":\"verify_code\",\"data\":{\"code\":\"1\"}}",
                                 i ? "," : "", i);
    snprintf(body + used, sizeof(body) - used, "]}");
    CHECK(unlinked(body, &out) == LINKMSG_OK);
    CHECK(out.n_messages == LINKMSG_MAX_MESSAGES && out.dropped == 20 - LINKMSG_MAX_MESSAGES);
}

static void test_otp_fields(void)
{
    static struct linkmsg_unlinked out;

    CHECK(unlinked("{\"messages\":[],\"one_time_passcode\":\"ab3x9\",\"one_time_passlink\":\"https://x/?p=ab3x9\","
                   "\"verification_code\":\"654321\"}", &out) == LINKMSG_OK);
    CHECK(out.has_passcode && strcmp(out.one_time_passcode, "ab3x9") == 0);
    CHECK(strcmp(out.one_time_passlink, "https://x/?p=ab3x9") == 0);
    CHECK(strcmp(out.verification_code, "654321") == 0);
    CHECK(unlinked("{\"one_time_passcode\":\"\",\"verification_code\":\"\"}", &out) == LINKMSG_OK);
    CHECK(out.has_passcode && out.one_time_passcode[0] == '\0' && out.verification_code[0] == '\0');
    CHECK(unlinked("{\"one_time_passcode\":\"AB!\"}", &out) == LINKMSG_ERR_BAD_FIELD);
    CHECK(!out.has_passcode);
    CHECK(unlinked("{\"verification_code\":7}", &out) == LINKMSG_ERR_BAD_FIELD);
    CHECK(unlinked("{\"verification_code\":\"12 34\"}", &out) == LINKMSG_ERR_BAD_FIELD);
    CHECK(unlinked("{\"messages\":{}}", &out) == LINKMSG_ERR_BAD_FIELD);
}

static void test_unlinked_errors(void)
{
    static struct linkmsg_unlinked out;
    char *huge;

    CHECK(unlinked("", &out) == LINKMSG_ERR_PARSE);
    CHECK(unlinked("{\"messages\":[", &out) == LINKMSG_ERR_PARSE);
    CHECK(unlinked("[]", &out) == LINKMSG_ERR_NOT_OBJECT);
    CHECK(unlinked("{\"a\":1,\"a\":2}", &out) == LINKMSG_ERR_PARSE);
    CHECK(linkmsg_parse_unlinked(NULL, 3, &out) == LINKMSG_ERR_INVALID);
    CHECK(linkmsg_parse_unlinked("{}", 2, NULL) == LINKMSG_ERR_INVALID);
    huge = malloc(LINKMSG_MAX_BODY + 2);
    CHECK(huge != NULL);
    if (huge) {
        memset(huge, ' ', LINKMSG_MAX_BODY + 1);
        huge[0] = '{';
        huge[LINKMSG_MAX_BODY] = '}';
        CHECK(linkmsg_parse_unlinked(huge, LINKMSG_MAX_BODY + 1, &out) == LINKMSG_ERR_TOO_LARGE);
        free(huge);
    }
    CHECK(strcmp(linkmsg_result_str(LINKMSG_ERR_TOO_LARGE), "the answer is too large") == 0);
    CHECK(strcmp(linkmsg_result_str((enum linkmsg_result)99), "unknown result") == 0);
}

static void test_verify(void)
{
    struct linkmsg_verify out;

    CHECK(verify("{\"id\":1,\"printer\":{\"auth_token\":\"0123456789abcdef0123\",\"name\":\"Alice's Prusa\"}}",
                 &out) == LINKMSG_OK);
    CHECK(strcmp(out.token, "0123456789abcdef0123") == 0);
    CHECK(out.has_name && strcmp(out.name, "Alice's Prusa") == 0);
    /* Control characters (C0, DEL, C1) are removed from the name; UTF-8 stays. */
    CHECK(verify("{\"printer\":{\"auth_token\":\"t\",\"name\":\"a\\u0007b\\u007f\\u0085c\\u00e9\"}}",
                 &out) == LINKMSG_OK);
    CHECK(strcmp(out.name, "abc\xc3\xa9") == 0);
    CHECK(verify("{\"printer\":{\"auth_token\":\"t\"}}", &out) == LINKMSG_OK && !out.has_name);
}

static void test_verify_errors(void)
{
    struct linkmsg_verify out;
    char body[1024];

    CHECK(verify("{\"printer\":{}}", &out) == LINKMSG_ERR_NO_TOKEN);
    CHECK(verify("{\"printer\":\"x\"}", &out) == LINKMSG_ERR_NO_TOKEN);
    CHECK(verify("{\"printer\":{\"auth_token\":5}}", &out) == LINKMSG_ERR_NO_TOKEN);
    CHECK(verify("{\"printer\":{\"auth_token\":\"\"}}", &out) == LINKMSG_ERR_BAD_TOKEN);
    CHECK(verify("{\"printer\":{\"auth_token\":\"a b\"}}", &out) == LINKMSG_ERR_BAD_TOKEN);
    CHECK(out.token[0] == '\0');
    snprintf(body, sizeof(body), "{\"printer\":{\"auth_token\":\"%0257d\"}}", 0);
    CHECK(verify(body, &out) == LINKMSG_ERR_BAD_TOKEN);
    CHECK(verify("not json", &out) == LINKMSG_ERR_PARSE);
    CHECK(verify("\"s\"", &out) == LINKMSG_ERR_PARSE);  /* jansson: objects and arrays only */
    CHECK(verify("[]", &out) == LINKMSG_ERR_NOT_OBJECT);
}

int main(void)
{
    RUN_TEST(test_verify_code_message);
    RUN_TEST(test_secretless_and_unknown);
    RUN_TEST(test_malformed_messages_are_counted);
    RUN_TEST(test_message_count_is_bounded);
    RUN_TEST(test_otp_fields);
    RUN_TEST(test_unlinked_errors);
    RUN_TEST(test_verify);
    RUN_TEST(test_verify_errors);
    return CHECK_DONE();
}
