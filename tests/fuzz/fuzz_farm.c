/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the farm provisioning file (farm_parse() in
 * native/core/farm.c, which farm_load() runs on the file's bytes).
 *
 * Every input must give a clean error (a non-empty reason of printable
 * ASCII, the caller's pointer untouched) or a farm that keeps every
 * documented bound: at most FARM_MAX_PRINTERS printers with unique,
 * printable names of at most FARM_MAX_NAME bytes, and for the farm and
 * every printer only settings in their ranges: texts printable and at most
 * FARM_MAX_TEXT bytes, paths absolute or empty, a server URL the host rule
 * accepts with that printer's cleartext opt-in, calls only known ones. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "farm.h"
#include "hostrule.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *text, size_t cap)
{
    size_t len = strnlen(text, cap + 1);

    if (len > cap)
        abort();
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
            abort();
    }
}

static void check_policy(const struct farm_policy *policy)
{
    static const double limits[][2] = {
        [FARM_SENSITIVITY] = {0.2, 2.0}, [FARM_FRAME_INTERVAL] = {1, 120},
        [FARM_MAX_TOOL_TEMP] = {0, PROTO_MAX_TOOL_TEMP},
        [FARM_MAX_BED_TEMP] = {0, PROTO_MAX_BED_TEMP},
        [FARM_MAX_CHAMBER_TEMP] = {0, PROTO_MAX_CHAMBER_TEMP},
    };
    const struct farm_value *v = policy->values;
    size_t known_calls = 0;

    while (proto_passthru_call(known_calls))
        known_calls++;
    for (int i = 0; i < FARM_SETTING_MAX; i++) {
        if (!v[i].set)
            continue;
        if (v[i].line < 1 || v[i].column < 1)
            abort();
        switch (farm_setting_kind((enum farm_setting)i)) {
        case FARM_KIND_TEXT:
            check_text(v[i].text, FARM_MAX_TEXT);
            break;
        case FARM_KIND_NUMBER:
            if (!isfinite(v[i].number) || v[i].number < limits[i][0] ||
                v[i].number > limits[i][1])
                abort();
            if (i == FARM_FRAME_INTERVAL && v[i].number != floor(v[i].number))
                abort();
            break;
        case FARM_KIND_CALLS:
            if (known_calls < 32 && (v[i].calls >> known_calls) != 0)
                abort();
            break;
        case FARM_KIND_BOOL:
            break;
        }
    }
    if (v[FARM_CA_FILE].set && v[FARM_CA_FILE].text[0] && v[FARM_CA_FILE].text[0] != '/')
        abort();
    if (v[FARM_MODEL_CONFIG].set && v[FARM_MODEL_CONFIG].text[0] &&
        v[FARM_MODEL_CONFIG].text[0] != '/')
        abort();
    if (v[FARM_WEBCAM].set && (!v[FARM_WEBCAM].text[0] || strlen(v[FARM_WEBCAM].text) > FARM_MAX_NAME))
        abort();
    if (v[FARM_SERVER_URL].set &&
        hostrule_check_url(v[FARM_SERVER_URL].text,
                           v[FARM_ALLOW_CLEARTEXT_LAN].set && v[FARM_ALLOW_CLEARTEXT_LAN].flag,
                           NULL, NULL, 0) != HOSTRULE_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct farm *const untouched = (struct farm *)(uintptr_t)0x1;
    struct farm *farm = untouched;
    struct farm_policy policy;
    char reason[512];
    enum farm_result result;
    char *text;

    /* An exact-size copy, so that ASan sees a read past the end. */
    text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    memset(reason, 0, sizeof(reason));
    result = farm_parse(text, size, &farm, reason, sizeof(reason));
    if (result >= FARM_RESULT_MAX || !farm_result_str(result))
        abort();
    if (result != FARM_OK) {
        if (farm != untouched || result == FARM_ERR_IO ||
            (result == FARM_ERR_INVALID && size <= FARM_MAX_FILE_BYTES))
            abort();
        if (!reason[0] || strnlen(reason, sizeof(reason)) == sizeof(reason))
            abort();
        check_text(reason, sizeof(reason) - 1);
        free(text);
        return 0;
    }
    if (farm_printer_count(farm) > FARM_MAX_PRINTERS || farm_resolve(farm, NULL, &policy))
        abort();
    check_policy(&policy);
    for (size_t i = 0; i < farm_printer_count(farm); i++) {
        const char *name = farm_printer_name(farm, i);

        if (!name || !name[0])
            abort();
        check_text(name, FARM_MAX_NAME);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(farm_printer_name(farm, k), name) == 0)
                abort();
        }
        if (!farm_resolve(farm, name, &policy))
            abort();
        check_policy(&policy);
    }
    farm_free(farm);
    free(text);
    return 0;
}
