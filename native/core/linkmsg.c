/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Parsers for the server's linking answers: see linkmsg.h. */
#include "linkmsg.h"

#include <jansson.h>
#include <string.h>

static const char *const result_strings[LINKMSG_RESULT_MAX] = {
    [LINKMSG_OK] = "ok",
    [LINKMSG_ERR_INVALID] = "invalid argument",
    [LINKMSG_ERR_TOO_LARGE] = "the answer is too large",
    [LINKMSG_ERR_PARSE] = "the answer is not JSON",
    [LINKMSG_ERR_NOT_OBJECT] = "the answer is not a JSON object",
    [LINKMSG_ERR_NO_TOKEN] = "the answer has no printer token",
    [LINKMSG_ERR_BAD_TOKEN] = "the answer has an unusable printer token",
    [LINKMSG_ERR_BAD_FIELD] = "the answer has a malformed field",
};

const char *linkmsg_result_str(enum linkmsg_result result)
{
    if ((unsigned)result >= LINKMSG_RESULT_MAX)
        return "unknown result";
    return result_strings[result];
}

enum charset { CS_DIGITS, CS_ID, CS_TYPE, CS_PRINTABLE, CS_PASSCODE };

static int char_ok(enum charset set, unsigned char c)
{
    switch (set) {
    case CS_DIGITS:
        return c >= '0' && c <= '9';
    case CS_ID:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '-' || c == '_';
    case CS_TYPE:
        return (c >= 'a' && c <= 'z') || c == '_';
    case CS_PASSCODE:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
    case CS_PRINTABLE:
        return c >= 0x21 && c <= 0x7e;
    }
    return 0;
}

/* Copies a JSON string of 1..cap characters, all in `set`, into out[cap+1].
 * Returns 0, or -1 (out is then ""). */
static int copy_checked(const json_t *value, enum charset set, char *out, size_t cap)
{
    const char *text;
    size_t len;

    out[0] = '\0';
    if (!json_is_string(value))
        return -1;
    text = json_string_value(value);
    len = json_string_length(value);
    if (len == 0 || len > cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!char_ok(set, (unsigned char)text[i]))
            return -1;
    }
    memcpy(out, text, len);
    out[len] = '\0';
    return 0;
}

/* Copies valid UTF-8 (jansson guarantees it) without C0/C1 controls or DEL,
 * cut at cap bytes on a character boundary. */
static void copy_display_name(const json_t *value, char *out, size_t cap)
{
    const unsigned char *text = (const unsigned char *)json_string_value(value);
    size_t len = json_string_length(value);
    size_t o = 0;
    size_t i = 0;

    while (i < len) {
        unsigned char c = text[i];
        size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

        if (i + n > len)
            break;
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && text[i + 1] < 0xa0)) {
            i += n;
            continue;
        }
        if (o + n > cap)
            break;
        memcpy(out + o, text + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

static json_t *load_object(const char *body, size_t len, enum linkmsg_result *ret_result)
{
    json_error_t error;
    json_t *root;

    if (!body && len) {
        *ret_result = LINKMSG_ERR_INVALID;
        return NULL;
    }
    if (len > LINKMSG_MAX_BODY) {
        *ret_result = LINKMSG_ERR_TOO_LARGE;
        return NULL;
    }
    root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        *ret_result = LINKMSG_ERR_PARSE;
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *ret_result = LINKMSG_ERR_NOT_OBJECT;
        return NULL;
    }
    *ret_result = LINKMSG_OK;
    return root;
}

/* The start of both parsers: *ret zeroed (when there is one), body loaded
 * as a JSON object. NULL with *ret_result set when either fails. */
static json_t *start_parse(const char *body, size_t len, void *ret, size_t ret_size,
                           enum linkmsg_result *ret_result)
{
    if (!ret) {
        *ret_result = LINKMSG_ERR_INVALID;
        return NULL;
    }
    memset(ret, 0, ret_size);
    return load_object(body, len, ret_result);
}

static void parse_message(const json_t *entry, struct linkmsg_unlinked *out)
{
    struct linkmsg_message message;
    const json_t *data;
    const json_t *secret;

    memset(&message, 0, sizeof(message));
    if (!json_is_object(entry) ||
        copy_checked(json_object_get(entry, "type"), CS_TYPE, message.type, LINKMSG_MAX_TYPE) != 0) {
        out->invalid++;
        return;
    }
    if (strcmp(message.type, "verify_code") != 0) {
        out->ignored++;
        return;
    }
    data = json_object_get(entry, "data");
    if (copy_checked(json_object_get(entry, "device_id"), CS_ID, message.device_id,
                     LINKMSG_MAX_DEVICE_ID) != 0 ||
        !json_is_object(data) ||
        copy_checked(json_object_get(data, "code"), CS_DIGITS, message.code, LINKMSG_MAX_CODE) != 0) {
        out->invalid++;
        return;
    }
    secret = json_object_get(data, "secret");
    if (secret && !json_is_null(secret)) {
        if (copy_checked(secret, CS_PRINTABLE, message.secret, LINKMSG_MAX_SECRET) != 0) {
            out->invalid++;
            return;
        }
        message.has_secret = 1;
    }
    if (out->n_messages >= LINKMSG_MAX_MESSAGES) {
        out->dropped++;
        return;
    }
    out->messages[out->n_messages++] = message;
}

enum linkmsg_result linkmsg_parse_unlinked(const char *body, size_t len, struct linkmsg_unlinked *ret)
{
    enum linkmsg_result result;
    const json_t *messages;
    const json_t *value;
    json_t *root;
    size_t index;
    const json_t *entry;

    root = start_parse(body, len, ret, sizeof(*ret), &result);
    if (!root)
        return result;
    messages = json_object_get(root, "messages");
    if (messages && !json_is_null(messages)) {
        if (!json_is_array(messages)) {
            result = LINKMSG_ERR_BAD_FIELD;
            goto out;
        }
        json_array_foreach(messages, index, entry)
            parse_message(entry, ret);
    }
    value = json_object_get(root, "one_time_passcode");
    if (value && !json_is_null(value)) {
        if (!json_is_string(value)) {
            result = LINKMSG_ERR_BAD_FIELD;
            goto out;
        }
        ret->has_passcode = 1;
        if (json_string_length(value) > 0 &&
            copy_checked(value, CS_PASSCODE, ret->one_time_passcode, LINKMSG_MAX_PASSCODE) != 0) {
            result = LINKMSG_ERR_BAD_FIELD;
            goto out;
        }
    }
    value = json_object_get(root, "one_time_passlink");
    if (json_is_string(value) && json_string_length(value) > 0)
        (void)copy_checked(value, CS_PRINTABLE, ret->one_time_passlink, LINKMSG_MAX_PASSLINK);
    value = json_object_get(root, "verification_code");
    if (value && !json_is_null(value)) {
        if (!json_is_string(value) ||
            (json_string_length(value) > 0 &&
             copy_checked(value, CS_DIGITS, ret->verification_code, LINKMSG_MAX_CODE) != 0)) {
            result = LINKMSG_ERR_BAD_FIELD;
            goto out;
        }
    }
out:
    json_decref(root);
    if (result != LINKMSG_OK)
        memset(ret, 0, sizeof(*ret));
    return result;
}

enum linkmsg_result linkmsg_parse_verify(const char *body, size_t len, struct linkmsg_verify *ret)
{
    enum linkmsg_result result;
    const json_t *printer;
    const json_t *token;
    const json_t *name;
    json_t *root;

    root = start_parse(body, len, ret, sizeof(*ret), &result);
    if (!root)
        return result;
    printer = json_object_get(root, "printer");
    token = json_is_object(printer) ? json_object_get(printer, "auth_token") : NULL;
    if (!json_is_string(token)) {
        result = LINKMSG_ERR_NO_TOKEN;
        goto out;
    }
    if (copy_checked(token, CS_PRINTABLE, ret->token, LINKMSG_MAX_TOKEN) != 0) {
        result = LINKMSG_ERR_BAD_TOKEN;
        goto out;
    }
    name = json_object_get(printer, "name");
    if (json_is_string(name)) {
        copy_display_name(name, ret->name, LINKMSG_MAX_NAME);
        ret->has_name = 1;
    }
out:
    json_decref(root);
    if (result != LINKMSG_OK)
        memset(ret, 0, sizeof(*ret));
    return result;
}
