/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the incoming-message dispatcher (native/core/proto.c).
 * Every input must give either a clean error or a JSON array of actions, and
 * every action must be one of the documented kinds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const kinds[] = {"remote_status", "pause", "resume", "cancel",
                                        "passthru", "passthru_error", "rejected"};
    struct proto_options options = {.allow_raw_gcode = size > 0 && (data[0] & 1)};
    struct proto *proto = NULL;
    char *actions = NULL;
    size_t len = 0;
    json_t *root;
    json_t *action;
    size_t index;

    if (proto_new(&options, &proto) != PROTO_OK)
        abort();
    /* Twice: the second pass exercises the duplicate-ref memory. */
    for (int pass = 0; pass < 2; pass++) {
        enum proto_result result = proto_dispatch(proto, (const char *)data, size, &actions, &len);
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
        }
        json_decref(root);
        free(actions);
        actions = NULL;
    }
    proto_free(proto);
    return 0;
}
