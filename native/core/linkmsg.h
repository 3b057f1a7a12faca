/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * linkmsg: parsers for the two linking answers of the server.
 *
 *   linkmsg_parse_unlinked()  the body of POST /api/v1/octo/unlinked/:
 *       {"messages": [{"device_id", "type", "data": {"code", "secret"}}, ...],
 *        "one_time_passcode", "one_time_passlink", "verification_code"}
 *   linkmsg_parse_verify()    the body of POST /api/v1/octo/verify/:
 *       {"printer": {"auth_token", "name", ...}, ...}
 *
 * Both are bounded (body size, number of messages, string lengths) and
 * return normalized, fixed-size results; the library never logs. Anything
 * out of bounds is an error (verify) or, for one discovery message, counted
 * in `invalid` so that the caller can close its discovery window.
 */
#ifndef TSD_LINKMSG_H
#define TSD_LINKMSG_H

#include <stddef.h>

enum linkmsg_result {
    LINKMSG_OK = 0,
    LINKMSG_ERR_INVALID,      /* bad argument */
    LINKMSG_ERR_TOO_LARGE,    /* body over LINKMSG_MAX_BODY */
    LINKMSG_ERR_PARSE,        /* not JSON */
    LINKMSG_ERR_NOT_OBJECT,   /* top level is not an object */
    LINKMSG_ERR_NO_TOKEN,     /* verify: printer.auth_token missing or not a string */
    LINKMSG_ERR_BAD_TOKEN,    /* verify: token empty, too long, or not printable ASCII */
    LINKMSG_ERR_BAD_FIELD,    /* unlinked: messages not an array, or a bad OTP field */
    LINKMSG_RESULT_MAX
};

#define LINKMSG_MAX_BODY (256u * 1024u)
#define LINKMSG_MAX_MESSAGES 8       /* more are counted in `dropped` */
#define LINKMSG_MAX_DEVICE_ID 64
#define LINKMSG_MAX_TYPE 32
#define LINKMSG_MAX_CODE 16
#define LINKMSG_MAX_SECRET 128
#define LINKMSG_MAX_PASSCODE 32
#define LINKMSG_MAX_PASSLINK 512
#define LINKMSG_MAX_TOKEN 256
#define LINKMSG_MAX_NAME 256         /* bytes of UTF-8 */

struct linkmsg_message {
    char device_id[LINKMSG_MAX_DEVICE_ID + 1];
    char type[LINKMSG_MAX_TYPE + 1];
    char code[LINKMSG_MAX_CODE + 1];     /* verify_code only: digits */
    char secret[LINKMSG_MAX_SECRET + 1]; /* verify_code only; "" when absent */
    int has_secret;
};

struct linkmsg_unlinked {
    size_t n_messages;
    struct linkmsg_message messages[LINKMSG_MAX_MESSAGES];
    size_t invalid;   /* verify_code messages with missing or out-of-bounds fields */
    size_t ignored;   /* entries of another type (kept out of messages[]) */
    size_t dropped;   /* valid messages beyond LINKMSG_MAX_MESSAGES */
    int has_passcode;
    char one_time_passcode[LINKMSG_MAX_PASSCODE + 1];  /* [a-z0-9] */
    char one_time_passlink[LINKMSG_MAX_PASSLINK + 1];  /* printable ASCII; "" if bad */
    char verification_code[LINKMSG_MAX_CODE + 1];      /* digits, or "" */
};

struct linkmsg_verify {
    char token[LINKMSG_MAX_TOKEN + 1];
    char name[LINKMSG_MAX_NAME + 1];   /* control characters removed, cut on a UTF-8 boundary */
    int has_name;
};

const char *linkmsg_result_str(enum linkmsg_result result);

enum linkmsg_result linkmsg_parse_unlinked(const char *body, size_t len, struct linkmsg_unlinked *ret);

/* On error *ret is zeroed: no partial token is ever left behind. */
enum linkmsg_result linkmsg_parse_verify(const char *body, size_t len, struct linkmsg_verify *ret);

#endif
