/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the farm provisioning file (native/core/farm.c): a whole
 * file with overrides, every bound, and the errors with line and column. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "farm.h"
#include "proto.h"

#define FULL                                    \
    "version: 1\n"                              \
    "server:\n"                                 \
    "  url: https://obico.example.com\n"        \
    "  ca_file: /etc/ssl/farm-ca.pem\n"         \
    "  allow_cleartext_lan: false\n"            \
    "detection:\n"                              \
    "  enabled: true\n"                         \
    "  action: pause_heaters_off\n"             \
    "  sensitivity: 1.5\n"                      \
    "  frame_interval: 20\n"                    \
    "  model: /srv/models/helper.yaml\n"        \
    "  shared_helper: true\n"                   \
    "remote:\n"                                 \
    "  allow_raw_gcode: no\n"                   \
    "  max_tool_temp: 260\n"                    \
    "  max_bed_temp: 100\n"                     \
    "  max_chamber_temp: 60\n"                  \
    "  calls: [jog, home, list_files]\n"        \
    "webcam: classic\n"                         \
    "printers:\n"                               \
    "  prusa-01:\n"                             \
    "    detection: {action: cancel}\n"         \
    "    webcam: side\n"                        \
    "  lan-02:\n"                               \
    "    server:\n"                             \
    "      url: http://192.168.1.5:3334\n"      \
    "      allow_cleartext_lan: true\n"

static char reason[512];

static struct farm *parse(const char *text)
{
    struct farm *farm = NULL;

    reason[0] = '\0';
    if (farm_parse(text, strlen(text), &farm, reason, sizeof(reason)) != FARM_OK)
        return NULL;
    return farm;
}

/* The file is refused and the reason contains want. */
static int refused_with(const char *text, const char *want)
{
    struct farm *farm = (struct farm *)(void *)&reason; /* must stay untouched */
    struct farm *before = farm;
    enum farm_result result;

    reason[0] = '\0';
    result = farm_parse(text, strlen(text), &farm, reason, sizeof(reason));
    if (result == FARM_OK || farm != before || !strstr(reason, want)) {
        printf("#   result %d, reason '%s', wanted '%s'\n", result, reason, want);
        return 0;
    }
    return 1;
}

static void test_full_file(void)
{
    struct farm *farm = parse(FULL);
    struct farm_policy policy;
    const struct farm_value *v;

    CHECK(farm != NULL);
    if (!farm) {
        printf("#   %s\n", reason);
        return;
    }
    CHECK(farm_printer_count(farm) == 2);
    CHECK(strcmp(farm_printer_name(farm, 0), "prusa-01") == 0);
    CHECK(farm_printer_name(farm, 2) == NULL);

    CHECK(!farm_resolve(farm, "someone-else", &policy));
    v = policy.values;
    CHECK(strcmp(v[FARM_SERVER_URL].text, "https://obico.example.com") == 0);
    CHECK(v[FARM_SERVER_URL].line == 3 && v[FARM_SERVER_URL].column == 8);
    CHECK(strcmp(v[FARM_CA_FILE].text, "/etc/ssl/farm-ca.pem") == 0);
    CHECK(v[FARM_ALLOW_CLEARTEXT_LAN].set && !v[FARM_ALLOW_CLEARTEXT_LAN].flag);
    CHECK(v[FARM_DETECTION_ENABLED].set && v[FARM_DETECTION_ENABLED].flag);
    CHECK(strcmp(v[FARM_ACTION].text, "pause_heaters_off") == 0);
    CHECK(v[FARM_SENSITIVITY].number == 1.5);
    CHECK(v[FARM_FRAME_INTERVAL].number == 20);
    CHECK(strcmp(v[FARM_MODEL_CONFIG].text, "/srv/models/helper.yaml") == 0);
    CHECK(v[FARM_SHARED_HELPER].set && v[FARM_SHARED_HELPER].flag);
    CHECK(v[FARM_ALLOW_RAW_GCODE].set && !v[FARM_ALLOW_RAW_GCODE].flag);
    CHECK(v[FARM_MAX_TOOL_TEMP].number == 260 && v[FARM_MAX_BED_TEMP].number == 100 &&
          v[FARM_MAX_CHAMBER_TEMP].number == 60);
    CHECK(v[FARM_REMOTE_CALLS].set && v[FARM_REMOTE_CALLS].calls != 0);
    for (size_t i = 0; proto_passthru_call(i); i++) {
        const char *call = proto_passthru_call(i);
        bool listed = strcmp(call, "jog") == 0 || strcmp(call, "home") == 0 ||
                      strcmp(call, "list_files") == 0;
        CHECK(listed == ((v[FARM_REMOTE_CALLS].calls >> i) & 1u));
    }
    CHECK(strcmp(v[FARM_WEBCAM].text, "classic") == 0);

    CHECK(farm_resolve(farm, "prusa-01", &policy));
    CHECK(strcmp(policy.values[FARM_ACTION].text, "cancel") == 0);
    CHECK(strcmp(policy.values[FARM_WEBCAM].text, "side") == 0);
    CHECK(policy.values[FARM_SENSITIVITY].number == 1.5); /* the farm's */

    CHECK(farm_resolve(farm, "lan-02", &policy));
    CHECK(strcmp(policy.values[FARM_SERVER_URL].text, "http://192.168.1.5:3334") == 0);
    CHECK(policy.values[FARM_ALLOW_CLEARTEXT_LAN].flag);
    farm_free(farm);
}

static void test_minimal_and_names(void)
{
    struct farm *farm = parse("version: 1\n");
    struct farm_policy policy;

    CHECK(farm != NULL);
    if (farm) {
        CHECK(!farm_resolve(farm, NULL, &policy));
        for (int i = 0; i < FARM_SETTING_MAX; i++)
            CHECK(!policy.values[i].set);
        farm_free(farm);
    }
    CHECK(strcmp(farm_setting_name(FARM_MODEL_CONFIG), "model_config") == 0);
    CHECK(strcmp(farm_setting_path(FARM_MODEL_CONFIG), "detection.model") == 0);
    CHECK(farm_setting_kind(FARM_REMOTE_CALLS) == FARM_KIND_CALLS);
    CHECK(strcmp(farm_setting_name(FARM_SHARED_HELPER), "shared_helper") == 0);
    CHECK(strcmp(farm_setting_path(FARM_SHARED_HELPER), "detection.shared_helper") == 0);
    CHECK(farm_setting_kind(FARM_SHARED_HELPER) == FARM_KIND_BOOL);
    CHECK(farm_setting_name(FARM_SETTING_MAX) == NULL);
    /* An empty list: no remote call at all. */
    farm = parse("version: 1\nremote: {calls: []}\n");
    CHECK(farm != NULL);
    if (farm) {
        farm_resolve(farm, NULL, &policy);
        CHECK(policy.values[FARM_REMOTE_CALLS].set && policy.values[FARM_REMOTE_CALLS].calls == 0);
        farm_free(farm);
    }
}

static void test_refused_with_line_and_column(void)
{
    CHECK(refused_with("version: 1\nserver:\n  url: [1\n", "YAML error at line 4 column 1"));
    CHECK(refused_with("version: 1\ndetection:\n  sensitivity: 9\n",
                       "field 'detection.sensitivity' (line 3, column 16): must be a number "
                       "from 0.2 to 2 (got '9')"));
    CHECK(refused_with("version: 1\ndetection:\n  colour: red\n",
                       "field 'detection.colour' (line 3, column 3): unknown field"));
    CHECK(refused_with("version: 1\nservr: {}\n", "field 'servr' (line 2, column 1): unknown field"));
    CHECK(refused_with("version: 1\ndetection: {action: explode}\n",
                       "must be notify, pause, pause_heaters_off or cancel (got 'explode')"));
    CHECK(refused_with("version: 1\ndetection: {frame_interval: 2.5}\n",
                       "must be an integer from 1 to 120"));
    CHECK(refused_with("version: 1\ndetection: {frame_interval: 0}\n", "from 1 to 120"));
    CHECK(refused_with("version: 1\nremote: {max_tool_temp: 321}\n", "from 0 to 320"));
    CHECK(refused_with("version: 1\nremote: {max_bed_temp: 151}\n", "from 0 to 150"));
    CHECK(refused_with("version: 1\nremote: {max_chamber_temp: -1}\n", "from 0 to 90"));
    CHECK(refused_with("version: 1\nremote: {calls: [jog, reboot]}\n",
                       "field 'remote.calls' (line 2, column 23): 'reboot' is not a remote call"));
    CHECK(refused_with("version: 1\nremote: {calls: [jog, jog]}\n", "'jog' is listed twice"));
    CHECK(refused_with("version: 1\nremote: {calls: jog}\n", "must be a list"));
    CHECK(refused_with("version: 1\nserver: {ca_file: relative.pem}\n", "absolute path"));
    CHECK(refused_with("version: 1\ndetection: {model: models/x.yaml}\n", "absolute path"));
    CHECK(refused_with("version: 1\nwebcam: ''\n", "must be 1 to 64 characters"));
    CHECK(refused_with("version: 2\n", "field 'version' (line 1, column 10)"));
    CHECK(refused_with("server: {}\n", "field 'version': is required"));
    CHECK(refused_with("- a\n- b\n", "must be a YAML mapping"));
    CHECK(refused_with("", "must be a YAML mapping"));
    CHECK(refused_with("version: 1\nversion: 1\n", "given twice"));
    CHECK(refused_with("version: 1\ndetection: {enabled: yes, enabled: no}\n", "given twice"));
    CHECK(refused_with("version: 1\ndetection: {}\ndetection: {}\n", "given twice"));
    CHECK(refused_with("version: 1\ndetection: {enabled: maybe}\n", "must be true or false"));
    CHECK(refused_with("version: 1\ndetection: on\n", "must be a mapping of its settings"));
    CHECK(refused_with("version: 1\n---\nversion: 1\n", "more than one document"));
    CHECK(refused_with("version: 1\nwebcam: \"a\\tb\"\n", "printable ASCII"));
}

static void test_printers(void)
{
    CHECK(refused_with("version: 1\nprinters:\n  a: {detection: {sensitivity: 5}}\n",
                       "field 'printers.a.detection.sensitivity' (line 3, column 32)"));
    CHECK(refused_with("version: 1\nprinters:\n  a: {}\n  a: {}\n",
                       "printer 'a' is given twice"));
    CHECK(refused_with("version: 1\nprinters:\n  a: {printers: {}}\n",
                       "field 'printers.a.printers' (line 3, column 7): unknown field"));
    CHECK(refused_with("version: 1\nprinters:\n  a: pause\n", "must be a mapping of overrides"));
    CHECK(refused_with("version: 1\nprinters: [a, b]\n", "must be a mapping from each"));
    CHECK(refused_with("version: 1\nprinters:\n  ' a': {}\n", "without spaces around it"));
    CHECK(refused_with("version: 1\nprinters:\n  a: {webcam: x, webcam: y}\n", "given twice"));
}

static void test_server_url(void)
{
    /* The host rule: cleartext only to a LAN address, and only when opted in. */
    CHECK(refused_with("version: 1\nserver: {url: 'http://192.168.1.5'}\n",
                       "field 'server.url' (line 2, column 15)"));
    CHECK(refused_with("version: 1\nserver: {url: 'http://obico.example.com', "
                       "allow_cleartext_lan: true}\n", "server.url"));
    CHECK(refused_with("version: 1\nserver: {url: 'https://user@x.example'}\n", "server.url"));
    CHECK(refused_with("version: 1\nserver: {url: 'ftp://x.example'}\n", "server.url"));
    /* A printer that turns the opt-in off under the farm's LAN URL. */
    CHECK(refused_with("version: 1\nserver: {url: 'http://10.0.0.2', allow_cleartext_lan: true}\n"
                       "printers:\n  strict: {server: {allow_cleartext_lan: false}}\n",
                       "(for printer 'strict')"));
    {
        struct farm *farm = parse("version: 1\nserver: {url: 'http://127.0.0.1:3334'}\n");
        CHECK(farm != NULL);
        farm_free(farm);
    }
}

static void test_no_secrets(void)
{
    static const char *const files[] = {
        "version: 1\ntoken: abc\n",
        "version: 1\nserver: {auth_token: abc}\n",
        "version: 1\nprinters:\n  a: {server: {Token: abc}}\n",
        "version: 1\nprinters:\n  a: {device_secret: abc}\n",
        "version: 1\nserver: {password: abc}\n",
        "version: 1\napi_key: abc\n",
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        CHECK(refused_with(files[i], "never goes in the farm file"));
        CHECK(strstr(reason, "tsd:link") != NULL);
        CHECK(strstr(reason, "abc") == NULL); /* the secret is not repeated */
    }
}

static void test_bounds(void)
{
    static char text[FARM_MAX_FILE_BYTES * 2];
    size_t used;
    struct farm *farm = NULL;

    /* Too deep. */
    CHECK(refused_with("version: 1\nprinters:\n  a:\n    remote:\n      calls: [[[x]]]\n",
                       "nested deeper than allowed"));
    /* No aliases: a small file must not stand for a large one. */
    CHECK(refused_with("version: 1\nserver: &s {url: 'https://a.example'}\nprinters:\n"
                       "  a: {server: *s}\n", "aliases"));
    /* Printers: FARM_MAX_PRINTERS, not one more. */
    used = (size_t)snprintf(text, sizeof(text), "version: 1\nprinters:\n");
    for (unsigned i = 0; i < FARM_MAX_PRINTERS; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "  p%u: {}\n", i);
    CHECK(farm_parse(text, used, &farm, reason, sizeof(reason)) == FARM_OK);
    CHECK(farm && farm_printer_count(farm) == FARM_MAX_PRINTERS);
    farm_free(farm);
    snprintf(text + used, sizeof(text) - used, "  one-more: {}\n");
    CHECK(refused_with(text, "more than 128 printers"));
    /* Texts and names. */
    memset(text, 0, sizeof(text));
    used = (size_t)snprintf(text, sizeof(text), "version: 1\nserver: {ca_file: /");
    memset(text + used, 'a', FARM_MAX_TEXT);
    memcpy(text + used + FARM_MAX_TEXT, "}\n", 3);
    CHECK(refused_with(text, "longer than 1024 bytes"));
    used = (size_t)snprintf(text, sizeof(text), "version: 1\nprinters:\n  ");
    memset(text + used, 'n', FARM_MAX_NAME + 1);
    memcpy(text + used + FARM_MAX_NAME + 1, ": {}\n", 6);
    CHECK(refused_with(text, "longer than 64 bytes"));
    /* The file's size. */
    memset(text, '#', FARM_MAX_FILE_BYTES + 1);
    CHECK(farm_parse(text, FARM_MAX_FILE_BYTES + 1, &farm, reason, sizeof(reason)) ==
          FARM_ERR_INVALID);
}

static void test_load(void)
{
    char path[] = "/tmp/tsd-farm-test-XXXXXX";
    struct farm *farm = NULL;
    int fd = mkstemp(path);
    const char *bad = "version: 1\ndetection:\n  action: explode\n";

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, FULL, strlen(FULL)) == (ssize_t)strlen(FULL));
    CHECK(farm_load(path, &farm, reason, sizeof(reason)) == FARM_OK);
    farm_free(farm);
    farm = NULL;
    CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, bad, strlen(bad), 0) == (ssize_t)strlen(bad));
    CHECK(farm_load(path, &farm, reason, sizeof(reason)) == FARM_ERR_FIELD);
    CHECK(strncmp(reason, path, strlen(path)) == 0 && strstr(reason, "(line 3, column 11)"));
    CHECK(farm == NULL);
    close(fd);
    unlink(path);
    CHECK(farm_load(path, &farm, reason, sizeof(reason)) == FARM_ERR_IO);
    CHECK(strstr(reason, "cannot read") != NULL);
    CHECK(farm_load("/", &farm, reason, sizeof(reason)) == FARM_ERR_IO);
}

int main(void)
{
    RUN_TEST(test_full_file);
    RUN_TEST(test_minimal_and_names);
    RUN_TEST(test_refused_with_line_and_column);
    RUN_TEST(test_printers);
    RUN_TEST(test_server_url);
    RUN_TEST(test_no_secrets);
    RUN_TEST(test_bounds);
    RUN_TEST(test_load);
    return CHECK_DONE();
}
