/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the token file parser (tok_parse() in native/core/tok.c,
 * which tok_load() runs on the bytes it read).
 *
 * Input: byte 0 picks the mode, the rest is the file. In mode "as is" (even
 * byte 0) the file is parsed as given; the checksum on its last line almost
 * never matches, so this exercises the framing and the checksum check. In
 * mode "re-summed" (odd byte 0) the target appends "sha256 <hex>\n" over the
 * bytes given, as a save would, so that the fields behind the checksum are
 * reached too.
 *
 * Every input must give a clean error (a reason of printable ASCII, the
 * result pointer untouched) or a record that passes tok_record_check() and
 * whose canonical file is byte for byte the input: the parser accepts
 * exactly what tok_save() writes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SHA256_HEX 64u
#define SHA256_LINE (sizeof("sha256 ") - 1 + SHA256_HEX + 1)

static void sha256_hex(const void *bytes, size_t len, char hex[SHA256_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (EVP_Digest(bytes, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        abort();
    for (size_t i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[SHA256_HEX] = '\0';
}

/* The file tok_save() writes for record, without its sha256 line. */
static size_t canonical_body(const struct tok_record *record, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "tsd-token v1\nserver %s\ntoken %s\n%s%s%s", record->server,
                     record->token, record->name ? "name " : "",
                     record->name ? record->name : "", record->name ? "\n" : "");

    if (n < 0 || (size_t)n >= cap)
        abort(); /* a record the parser accepted always fits */
    return (size_t)n;
}

static void check(const char *file, size_t len)
{
    static char canonical[TOK_MAX_FILE_BYTES + 2 * SHA256_LINE];
    struct tok_record *sentinel = (struct tok_record *)(uintptr_t)0x1;
    struct tok_record *record = sentinel;
    char reason[256];
    enum tok_result result;

    memset(reason, 0x55, sizeof(reason));
    result = tok_parse(file, len, &record, reason, sizeof(reason));
    if (result >= TOK_RESULT_MAX || !tok_result_str(result))
        abort();
    if (result != TOK_OK) {
        size_t reason_len = strnlen(reason, sizeof(reason));

        if (record != sentinel || reason_len == 0 || reason_len == sizeof(reason))
            abort();
        for (size_t i = 0; i < reason_len; i++) {
            if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] > 0x7e)
                abort();
        }
        if (result != TOK_ERR_CORRUPT && result != TOK_ERR_NOMEM)
            abort(); /* no file system here: only the content can be wrong */
        return;
    }
    if (!record || record == sentinel || tok_record_check(record, NULL, 0) != TOK_OK)
        abort();
    {
        size_t body = canonical_body(record, canonical, sizeof(canonical));
        char hex[SHA256_HEX + 1];

        sha256_hex(canonical, body, hex);
        body += (size_t)snprintf(canonical + body, sizeof(canonical) - body, "sha256 %s\n", hex);
        if (body != len || memcmp(canonical, file, len) != 0)
            abort();
    }
    tok_record_free(record);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *file;
    char hex[SHA256_HEX + 1];
    size_t len;

    if (size < 1)
        return 0;
    len = size - 1;
    if ((data[0] & 1) == 0) {
        /* An exact-size copy, so that ASan sees a read past the end. */
        file = malloc(len ? len : 1);
        if (!file)
            abort();
        memcpy(file, data + 1, len);
        check(file, len);
        free(file);
        return 0;
    }
    file = malloc(len + SHA256_LINE);
    if (!file)
        abort();
    memcpy(file, data + 1, len);
    sha256_hex(file, len, hex);
    memcpy(file + len, "sha256 ", 7);
    memcpy(file + len + 7, hex, SHA256_HEX);
    file[len + 7 + SHA256_HEX] = '\n';
    check(file, len + SHA256_LINE);
    free(file);
    return 0;
}
