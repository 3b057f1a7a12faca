/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the incoming-message dispatcher (native/core/proto.c, proto_gcode.c).
 * Every input must give either a clean error or a JSON array of actions, and
 * every action must be one of the documented kinds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* A cloud-print download's stored name never carries a path: only
 * [A-Za-z0-9._-], no leading dot, at most PROTO_MAX_SAFE_NAME bytes. */
static int download_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > PROTO_MAX_SAFE_NAME || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const kinds[] = {"remote_status", "pause", "resume", "cancel",
                                        "passthru", "passthru_error", "rejected"};
    /* The rest of the printer's facts and the raw G-code switch from a hash
     * of the input, so that corpus files and mutations vary them. */
    uint32_t facts = 2166136261u;
    struct proto_options options;
    struct proto_printer printer;
    struct proto *proto = NULL;
    char *actions = NULL;
    size_t len = 0;
    json_t *root;
    json_t *action;
    size_t index;

    for (size_t i = 0; i < size; i++)
        facts = (facts ^ data[i]) * 16777619u;
    options = (struct proto_options){.allow_raw_gcode = (facts & 1) != 0};
    printer = (struct proto_printer){
        .print_id = (facts >> 1) & 1,
        .absolute_xyz = (facts >> 2) & 1,
        .absolute_e = (facts >> 3) & 1,
        .extruders = (int)((facts >> 4) & 31), /* 0..31: out of range on purpose */
        .shared_nozzle = (facts >> 9) & 1,
        .heated_bed = (facts >> 10) & 1,
        .heated_chamber = (facts >> 11) & 1,
        .max_tool_temp = PROTO_MAX_TOOL_TEMP,
        .max_bed_temp = (facts >> 12) & 1 ? 1e9 : 100,
        .max_chamber_temp = (facts >> 13) & 1 ? -1 : 40,
        .now_ms = (long long)(facts >> 14),
        .operational = (facts >> 31) & 1,
    };
    if (proto_new(&options, &proto) != PROTO_OK)
        abort();
    /* Every state; twice each: the second pass exercises the duplicate-ref
     * memory and the budgets. */
    for (int state = 0; state < PROTO_PRINTER_STATE_MAX; state++) {
        printer.state = (enum proto_printer_state)state;
        for (int pass = 0; pass < 2; pass++) {
            enum proto_result result = proto_dispatch(proto, &printer, (const char *)data, size,
                                                      &actions, &len);
            if (result != PROTO_OK) {
                if (result == PROTO_ERR_NOMEM)
                    abort();
                continue;
            }
            root = json_loadb(actions, len, 0, NULL);
            if (!root || !json_is_array(root))
                abort();
            json_array_foreach(root, index, action) {
                const char *kind = json_string_value(json_object_get(action, "action"));
                int known = 0;
                if (!kind)
                    abort();
                for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
                    known |= strcmp(kind, kinds[k]) == 0;
                if (!known)
                    abort();
                if (strcmp(kind, "passthru") == 0 &&
                    strcmp(json_string_value(json_object_get(action, "call")), "download") == 0 &&
                    !download_name_ok(json_string_value(
                        json_object_get(json_object_get(action, "params"), "safe_name"))))
                    abort();
            }
            json_decref(root);
            free(actions);
            actions = NULL;
        }
    }
    proto_free(proto);
    return 0;
}
