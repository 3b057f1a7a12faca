/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the linking-answer parsers (native/core/linkmsg.c).
 * Every input must give a clean error or a result that keeps every bound:
 * counts within limits, every string NUL-terminated within its buffer and in
 * its character set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linkmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_charset(const char *text, size_t cap, const char *allowed)
{
    size_t len = strnlen(text, cap + 1);

    if (len > cap)
        abort();
    for (size_t i = 0; i < len; i++) {
        if (allowed && !strchr(allowed, text[i]))
            abort();
        if (!allowed && ((unsigned char)text[i] < 0x21 || (unsigned char)text[i] > 0x7e))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char digits[] = "0123456789";
    static const char passcode[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    struct linkmsg_unlinked *unlinked = calloc(1, sizeof(*unlinked));
    struct linkmsg_verify verify;
    enum linkmsg_result result;

    if (!unlinked)
        abort();
    result = linkmsg_parse_unlinked((const char *)data, size, unlinked);
    if (result >= LINKMSG_RESULT_MAX || !linkmsg_result_str(result))
        abort();
    if (result == LINKMSG_OK) {
        if (unlinked->n_messages > LINKMSG_MAX_MESSAGES)
            abort();
        for (size_t i = 0; i < unlinked->n_messages; i++) {
            const struct linkmsg_message *m = &unlinked->messages[i];

            if (strcmp(m->type, "verify_code") != 0 || m->code[0] == '\0' || m->device_id[0] == '\0')
                abort();
            check_charset(m->code, LINKMSG_MAX_CODE, digits);
            check_charset(m->device_id, LINKMSG_MAX_DEVICE_ID, NULL);
            check_charset(m->secret, LINKMSG_MAX_SECRET, NULL);
            if (m->has_secret && m->secret[0] == '\0')
                abort();
        }
        check_charset(unlinked->one_time_passcode, LINKMSG_MAX_PASSCODE, passcode);
        check_charset(unlinked->one_time_passlink, LINKMSG_MAX_PASSLINK, NULL);
        check_charset(unlinked->verification_code, LINKMSG_MAX_CODE, digits);
    } else {
        const struct linkmsg_unlinked zero = {0};

        if (memcmp(unlinked, &zero, sizeof(zero)) != 0)
            abort();
    }
    free(unlinked);

    result = linkmsg_parse_verify((const char *)data, size, &verify);
    if (result >= LINKMSG_RESULT_MAX)
        abort();
    if (result == LINKMSG_OK) {
        if (verify.token[0] == '\0')
            abort();
        check_charset(verify.token, LINKMSG_MAX_TOKEN, NULL);
        if (strnlen(verify.name, LINKMSG_MAX_NAME + 1) > LINKMSG_MAX_NAME)
            abort();
        for (const unsigned char *p = (const unsigned char *)verify.name; *p; p++) {
            if (*p < 0x20 || *p == 0x7f)
                abort();
        }
    } else if (verify.token[0] != '\0' || verify.name[0] != '\0') {
        abort();  /* no partial token after an error */
    }
    return 0;
}
