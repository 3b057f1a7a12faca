/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "tok.h"
#include "errtext.h"
#include "fdio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HEADER_LINE "tsd-token v1"
#define HEADER_PREFIX "tsd-token v"
#define KEY_SERVER "server "
#define KEY_TOKEN "token "
#define KEY_NAME "name "
#define KEY_SHA256 "sha256 "
#define SHA256_BYTES 32
#define SHA256_HEX (2 * SHA256_BYTES)
#define TEMP_RANDOM 12      /* random characters in a temporary file name */
#define TEMP_ATTEMPTS 64    /* names tried before giving up */

#define LITERAL_LEN(s) (sizeof(s) - 1)

/* A line of the file: a slice of the read buffer, not NUL-terminated. */
struct slice {
    const char *data;
    size_t len;
};

const char *tok_result_str(enum tok_result result)
{
    switch (result) {
    case TOK_OK: return "ok";
    case TOK_ERR_NOT_FOUND: return "no token file";
    case TOK_ERR_CORRUPT: return "token file corrupt";
    case TOK_ERR_IO: return "input/output error";
    case TOK_ERR_INVALID: return "invalid argument";
    case TOK_ERR_PERMISSIONS: return "unsafe token file";
    case TOK_ERR_NOMEM: return "out of memory";
    case TOK_RESULT_MAX: break;
    }
    return "unknown result";
}



/* Sets "<what>: <text of err>" and returns result. */
static enum tok_result fail_errno(char *reterr, size_t reterr_len, enum tok_result result,
                                  int err, const char *what)
{
    char why[128];

    set_reason(reterr, reterr_len, "%s: %s", what, errno_text(err, why, sizeof(why)));
    return result;
}

static void wipe_string(char *text)
{
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
}

struct tok_record *tok_record_free(struct tok_record *record)
{
    if (record) {
        wipe_string(record->server);
        wipe_string(record->token);
        wipe_string(record->name);
        explicit_bzero(record, sizeof(*record));
        free(record);
    }
    return NULL;
}

/* ---- field rules --------------------------------------------------------- */

static bool is_visible_ascii(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

static bool check_token(const char *data, size_t len, char *reterr, size_t reterr_len)
{
    if (len == 0 || len > TOK_MAX_TOKEN) {
        set_reason(reterr, reterr_len, "the token must be 1 to %u bytes long", TOK_MAX_TOKEN);
        return false;
    }
    if (!is_visible_ascii(data, len)) {
        set_reason(reterr, reterr_len,
                   "the token must be printable ASCII without spaces or control characters");
        return false;
    }
    return true;
}

static bool check_server(const char *data, size_t len, char *reterr, size_t reterr_len)
{
    static const char https[] = "https://";
    static const char http[] = "http://";

    if (len == 0 || len > TOK_MAX_SERVER) {
        set_reason(reterr, reterr_len, "the server URL must be 1 to %u bytes long", TOK_MAX_SERVER);
        return false;
    }
    if (!is_visible_ascii(data, len)) {
        set_reason(reterr, reterr_len,
                   "the server URL must be printable ASCII without spaces or control characters");
        return false;
    }
    if (!(len > LITERAL_LEN(https) && memcmp(data, https, LITERAL_LEN(https)) == 0) &&
        !(len > LITERAL_LEN(http) && memcmp(data, http, LITERAL_LEN(http)) == 0)) {
        set_reason(reterr, reterr_len,
                   "the server URL must start with https:// or http:// followed by a host");
        return false;
    }
    return true;
}

static bool is_continuation(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF)
 * without C0 controls, DEL or C1 controls. */
static bool check_name(const char *data, size_t len, char *reterr, size_t reterr_len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;

    if (len > TOK_MAX_NAME) {
        set_reason(reterr, reterr_len, "the printer name is longer than %u bytes", TOK_MAX_NAME);
        return false;
    }
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned char lo = 0x80;
        unsigned char hi = 0xbf;

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                goto control;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
                goto control; /* U+0080..U+009F */
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            goto invalid;
        }
        if (len - i - 1 < need || p[i + 1] < lo || p[i + 1] > hi)
            goto invalid;
        for (size_t k = 2; k <= need; k++)
            if (!is_continuation(p[i + k]))
                goto invalid;
        i += need + 1;
    }
    return true;

control:
    set_reason(reterr, reterr_len, "the printer name contains a control character");
    return false;
invalid:
    set_reason(reterr, reterr_len, "the printer name is not valid UTF-8");
    return false;
}

/* Length of text if it is at most max bytes, else max + 1. */
static size_t bounded_len(const char *text, size_t max)
{
    return strnlen(text, max + 1);
}

enum tok_result tok_record_check(const struct tok_record *record,
                                 char *reterr, size_t reterr_len)
{
    if (!record) {
        set_reason(reterr, reterr_len, "missing record");
        return TOK_ERR_INVALID;
    }
    if (!record->server) {
        set_reason(reterr, reterr_len, "the server URL is missing");
        return TOK_ERR_INVALID;
    }
    if (!record->token) {
        set_reason(reterr, reterr_len, "the token is missing");
        return TOK_ERR_INVALID;
    }
    if (!check_server(record->server, bounded_len(record->server, TOK_MAX_SERVER),
                      reterr, reterr_len) ||
        !check_token(record->token, bounded_len(record->token, TOK_MAX_TOKEN),
                     reterr, reterr_len))
        return TOK_ERR_INVALID;
    if (record->name &&
        !check_name(record->name, bounded_len(record->name, TOK_MAX_NAME), reterr, reterr_len))
        return TOK_ERR_INVALID;
    return TOK_OK;
}

static enum tok_result check_dir(const char *dir, char *reterr, size_t reterr_len)
{
    size_t len;

    if (!dir) {
        set_reason(reterr, reterr_len, "missing directory");
        return TOK_ERR_INVALID;
    }
    len = bounded_len(dir, TOK_MAX_DIR);
    if (len == 0 || len > TOK_MAX_DIR) {
        set_reason(reterr, reterr_len, "the directory path must be 1 to %u bytes long",
                   TOK_MAX_DIR);
        return TOK_ERR_INVALID;
    }
    return TOK_OK;
}

/* ---- file format --------------------------------------------------------- */

static bool sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != SHA256_BYTES)
        return false;
    for (size_t i = 0; i < SHA256_BYTES; i++) {
        ret_hex[2 * i] = digits[md[i] >> 4];
        ret_hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    ret_hex[SHA256_HEX] = '\0';
    return true;
}

static bool append(char *buf, size_t cap, size_t *len, const char *data, size_t data_len)
{
    if (data_len > cap - *len)
        return false;
    memcpy(buf + *len, data, data_len);
    *len += data_len;
    return true;
}

static bool append_line(char *buf, size_t cap, size_t *len, const char *key, const char *value)
{
    return append(buf, cap, len, key, strlen(key)) &&
           append(buf, cap, len, value, strlen(value)) &&
           append(buf, cap, len, "\n", 1);
}

/* Writes the whole file for a checked record into buf (cap bytes). */
static enum tok_result serialize(const struct tok_record *record, char *buf, size_t cap,
                                 size_t *ret_len, char *reterr, size_t reterr_len)
{
    char hex[SHA256_HEX + 1];
    size_t len = 0;

    if (!append_line(buf, cap, &len, HEADER_LINE, "") ||
        !append_line(buf, cap, &len, KEY_SERVER, record->server) ||
        !append_line(buf, cap, &len, KEY_TOKEN, record->token) ||
        (record->name && !append_line(buf, cap, &len, KEY_NAME, record->name))) {
        set_reason(reterr, reterr_len, "the record does not fit in %u bytes", TOK_MAX_FILE_BYTES);
        return TOK_ERR_INVALID;
    }
    if (!sha256_hex(buf, len, hex)) {
        set_reason(reterr, reterr_len, "OpenSSL could not compute SHA-256");
        return TOK_ERR_IO;
    }
    if (!append_line(buf, cap, &len, KEY_SHA256, hex)) {
        set_reason(reterr, reterr_len, "the record does not fit in %u bytes", TOK_MAX_FILE_BYTES);
        return TOK_ERR_INVALID;
    }
    *ret_len = len;
    return TOK_OK;
}

/* Takes the next body line if it starts with key; the value is the rest of
 * the line without its newline. The body always ends with a newline. */
static bool take_line(const char *buf, size_t body_end, size_t *pos, const char *key,
                      struct slice *ret_value)
{
    size_t key_len = strlen(key);
    const char *start = buf + *pos;
    const char *newline;
    size_t line_len;

    if (*pos >= body_end)
        return false;
    newline = memchr(start, '\n', body_end - *pos);
    if (!newline)
        return false;
    line_len = (size_t)(newline - start);
    if (line_len < key_len || memcmp(start, key, key_len) != 0)
        return false;
    ret_value->data = start + key_len;
    ret_value->len = line_len - key_len;
    *pos += line_len + 1;
    return true;
}

static bool is_lower_hex(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((data[i] >= '0' && data[i] <= '9') || (data[i] >= 'a' && data[i] <= 'f')))
            return false;
    return true;
}

enum tok_result tok_parse(const char *buf, size_t len, struct tok_record **ret_record,
                          char *reterr, size_t reterr_len)
{
    enum tok_result result = TOK_OK;
    struct tok_record *record = NULL;
    char hex[SHA256_HEX + 1];
    char why[160];
    size_t last_start;
    size_t pos = 0;
    struct slice header = {0};
    struct slice server = {0};
    struct slice token = {0};
    struct slice name = {0};
    struct slice sum;
    bool has_name;

    if (!buf || !ret_record) {
        set_reason(reterr, reterr_len, "no buffer or no result pointer");
        result = TOK_ERR_INVALID;
        goto out;
    }
    if (len > TOK_MAX_FILE_BYTES) {
        set_reason(reterr, reterr_len, "the token file is more than %u bytes",
                   TOK_MAX_FILE_BYTES);
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (len == 0) {
        set_reason(reterr, reterr_len, "the token file is empty");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (buf[len - 1] != '\n') {
        set_reason(reterr, reterr_len,
                   "the token file does not end with a newline (truncated?)");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    /* The checksum is the last line and covers every byte before it. */
    last_start = len - 1;
    while (last_start > 0 && buf[last_start - 1] != '\n')
        last_start--;
    if (!take_line(buf, len, &(size_t){last_start}, KEY_SHA256, &sum)) {
        set_reason(reterr, reterr_len,
                   "the token file does not end with its sha256 line (truncated?)");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (sum.len != SHA256_HEX || !is_lower_hex(sum.data, sum.len)) {
        set_reason(reterr, reterr_len, "the sha256 line of the token file is malformed");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (!sha256_hex(buf, last_start, hex)) {
        set_reason(reterr, reterr_len, "OpenSSL could not compute SHA-256");
        result = TOK_ERR_IO;
        goto out;
    }
    if (CRYPTO_memcmp(hex, sum.data, SHA256_HEX) != 0) {
        set_reason(reterr, reterr_len,
                   "the sha256 checksum of the token file does not match (edited or torn)");
        result = TOK_ERR_CORRUPT;
        goto out;
    }

    /* The checksum matched: any error below is a file that was written (or
     * edited and re-summed) with content this version does not accept. */
    if (!take_line(buf, last_start, &pos, "", &header) ||
        header.len != LITERAL_LEN(HEADER_LINE) ||
        memcmp(header.data, HEADER_LINE, LITERAL_LEN(HEADER_LINE)) != 0) {
        if (header.data && header.len > LITERAL_LEN(HEADER_PREFIX) &&
            memcmp(header.data, HEADER_PREFIX, LITERAL_LEN(HEADER_PREFIX)) == 0)
            set_reason(reterr, reterr_len,
                       "the token file has an unsupported format version (expected \"%s\")",
                       HEADER_LINE);
        else
            set_reason(reterr, reterr_len, "the token file does not start with \"%s\"",
                       HEADER_LINE);
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (!take_line(buf, last_start, &pos, KEY_SERVER, &server)) {
        set_reason(reterr, reterr_len, "the token file has no server line where expected");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (!take_line(buf, last_start, &pos, KEY_TOKEN, &token)) {
        set_reason(reterr, reterr_len, "the token file has no token line where expected");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    has_name = take_line(buf, last_start, &pos, KEY_NAME, &name);
    if (pos != last_start) {
        set_reason(reterr, reterr_len,
                   "the token file has an unexpected line before its sha256 line");
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    if (!check_server(server.data, server.len, why, sizeof(why)) ||
        !check_token(token.data, token.len, why, sizeof(why)) ||
        (has_name && !check_name(name.data, name.len, why, sizeof(why)))) {
        set_reason(reterr, reterr_len, "the token file holds an invalid field: %s", why);
        result = TOK_ERR_CORRUPT;
        goto out;
    }

    record = calloc(1, sizeof(*record));
    if (!record) {
        result = TOK_ERR_NOMEM;
        goto out;
    }
    /* Validated fields hold no NUL byte. */
    record->server = strndup(server.data, server.len);
    record->token = strndup(token.data, token.len);
    if (has_name)
        record->name = strndup(name.data, name.len);
    if (!record->server || !record->token || (has_name && !record->name)) {
        result = TOK_ERR_NOMEM;
        goto out;
    }
    *ret_record = record;
    record = NULL;

out:
    if (result == TOK_ERR_NOMEM)
        set_reason(reterr, reterr_len, "out of memory");
    tok_record_free(record);
    return result;
}

/* ---- file system ----------------------------------------------------------- */

/* Reads until end of file or until cap bytes are in buf. */
static bool read_up_to(int fd, char *buf, size_t cap, size_t *ret_len)
{
    size_t len = 0;

    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret_len = len;
    return true;
}

static void random_suffix(char *out, size_t count, unsigned attempt)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char bytes[TEMP_RANDOM];

    if (count > sizeof(bytes))
        count = sizeof(bytes);
    if (getrandom(bytes, count, GRND_NONBLOCK) != (ssize_t)count) {
        /* No entropy yet (early boot) or no getrandom: the name only has to
         * be unlikely to collide, and O_EXCL catches collisions anyway. */
        struct timespec now;
        uint64_t x;

        clock_gettime(CLOCK_MONOTONIC, &now);
        x = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 32) ^
            ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&now ^ attempt;
        for (size_t i = 0; i < count; i++) {
            x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            bytes[i] = (unsigned char)(z ^ (z >> 31));
        }
    }
    for (size_t i = 0; i < count; i++)
        out[i] = alphabet[bytes[i] % LITERAL_LEN(alphabet)];
    out[count] = '\0';
}

/* Creates a new, empty temporary file in dir_fd; name receives its name. */
static enum tok_result create_temp(int dir_fd, char name[sizeof(TOK_TEMP_PREFIX) + TEMP_RANDOM],
                                   int *ret_fd, char *reterr, size_t reterr_len)
{
    for (unsigned attempt = 0; attempt < TEMP_ATTEMPTS; attempt++) {
        int fd;

        memcpy(name, TOK_TEMP_PREFIX, LITERAL_LEN(TOK_TEMP_PREFIX));
        random_suffix(name + LITERAL_LEN(TOK_TEMP_PREFIX), TEMP_RANDOM, attempt);
        fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            *ret_fd = fd;
            return TOK_OK;
        }
        if (errno != EEXIST && errno != EINTR)
            return fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                              "cannot create a temporary token file");
    }
    set_reason(reterr, reterr_len, "cannot create a temporary token file: all names taken");
    return TOK_ERR_IO;
}

/* Unlinks every TOK_TEMP_PREFIX* entry of dir_fd. Returns 0 or an errno. */
static int remove_temps(int dir_fd)
{
    DIR *listing;
    struct dirent *entry;
    int fd;
    int err = 0;

    fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    listing = fdopendir(fd);
    if (!listing) {
        err = errno;
        close(fd);
        return err;
    }
    for (;;) {
        errno = 0;
        entry = readdir(listing);
        if (!entry) {
            if (errno != 0 && err == 0)
                err = errno;
            break;
        }
        if (strncmp(entry->d_name, TOK_TEMP_PREFIX, LITERAL_LEN(TOK_TEMP_PREFIX)) != 0)
            continue;
        if (unlinkat(dir_fd, entry->d_name, 0) != 0 && errno != ENOENT && err == 0)
            err = errno;
    }
    closedir(listing);
    return err;
}

/* Takes the writers' lock of the token directory: flock() on dir_fd, held
 * until dir_fd is closed. Saves and deletes in this and other processes take
 * it too, so while it is held no other writer has a temporary file in
 * progress and the leftovers of killed saves may be removed. Returns false
 * where the file system has no flock() (some network file systems): the
 * caller then removes only its own temporary file. */
static bool lock_writers(int dir_fd)
{
    for (;;) {
        if (flock(dir_fd, LOCK_EX) == 0)
            return true;
        if (errno != EINTR)
            return false;
    }
}

/* fsync of a directory; file systems that cannot do it say EINVAL. */
static bool sync_dir(int dir_fd)
{
    return fsync(dir_fd) == 0 || errno == EINVAL;
}

static enum tok_result open_dir(const char *dir, int *ret_fd, char *reterr, size_t reterr_len)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        int err = errno;
        enum tok_result result = err == ENOENT ? TOK_ERR_NOT_FOUND : TOK_ERR_IO;
        char why[128];

        set_reason(reterr, reterr_len, "cannot open the directory %s: %s", dir,
                   errno_text(err, why, sizeof(why)));
        return result;
    }
    *ret_fd = fd;
    return TOK_OK;
}

enum tok_result tok_save(const char *dir, const struct tok_record *record,
                         char *reterr, size_t reterr_len)
{
    enum tok_result result;
    char buf[TOK_MAX_FILE_BYTES];
    size_t len = 0;
    char temp_name[sizeof(TOK_TEMP_PREFIX) + TEMP_RANDOM];
    bool temp_exists = false;
    bool writers_locked = false;
    int dir_fd = -1;
    int fd = -1;
    struct stat st;

    result = check_dir(dir, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    result = tok_record_check(record, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    result = serialize(record, buf, sizeof(buf), &len, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    result = open_dir(dir, &dir_fd, reterr, reterr_len);
    if (result != TOK_OK) {
        result = TOK_ERR_IO; /* saving needs the directory to exist */
        goto out;
    }
    writers_locked = lock_writers(dir_fd);

    /* rename() would replace a symlink rather than follow it, but a link
     * there means someone tampered with the data folder: refuse. */
    if (fstatat(dir_fd, TOK_FILE_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            set_reason(reterr, reterr_len,
                       "%s is a symbolic link; refusing to replace it", TOK_FILE_NAME);
            result = TOK_ERR_PERMISSIONS;
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            set_reason(reterr, reterr_len,
                       "%s is not a regular file; refusing to replace it", TOK_FILE_NAME);
            result = TOK_ERR_PERMISSIONS;
            goto out;
        }
    } else if (errno != ENOENT) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno, "cannot stat the token file");
        goto out;
    }

    result = create_temp(dir_fd, temp_name, &fd, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    temp_exists = true;
    /* The umask may have widened nothing (0600 & ~umask), but be explicit. */
    if (fchmod(fd, 0600) != 0) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot set the mode of the temporary token file");
        goto out;
    }
    if (!write_all(fd, buf, len)) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot write the temporary token file");
        goto out;
    }
    if (fsync(fd) != 0) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot fsync the temporary token file");
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot close the temporary token file");
        goto out;
    }
    fd = -1;
    if (renameat(dir_fd, temp_name, dir_fd, TOK_FILE_NAME) != 0) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot rename the temporary token file");
        goto out;
    }
    temp_exists = false;
    /* Leftovers of saves that were killed hold old tokens: best effort, and
     * only under the writers' lock, when no other save is in progress (sec13:
     * removing a live writer's file made its rename fail). */
    if (writers_locked)
        (void)remove_temps(dir_fd);
    if (!sync_dir(dir_fd)) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "the token file was replaced but fsync of its directory failed");
        goto out;
    }

out:
    if (fd >= 0)
        close(fd);
    if (temp_exists)
        unlinkat(dir_fd, temp_name, 0);
    if (dir_fd >= 0)
        close(dir_fd);
    explicit_bzero(buf, sizeof(buf));
    return result;
}

enum tok_result tok_load(const char *dir, struct tok_record **ret_record,
                         char *reterr, size_t reterr_len)
{
    enum tok_result result;
    char buf[TOK_MAX_FILE_BYTES + 1];
    size_t len = 0;
    int dir_fd = -1;
    int fd = -1;
    struct stat st;

    if (!ret_record) {
        set_reason(reterr, reterr_len, "missing ret_record");
        result = TOK_ERR_INVALID;
        goto out;
    }
    result = check_dir(dir, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    result = open_dir(dir, &dir_fd, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    /* O_NONBLOCK: a FIFO planted at the path must not hang the open. */
    fd = openat(dir_fd, TOK_FILE_NAME,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) {
            set_reason(reterr, reterr_len, "there is no token file");
            result = TOK_ERR_NOT_FOUND;
        } else if (err == ELOOP) {
            set_reason(reterr, reterr_len,
                       "%s is a symbolic link; refusing to use it", TOK_FILE_NAME);
            result = TOK_ERR_PERMISSIONS;
        } else if (err == EACCES || err == EPERM) {
            result = fail_errno(reterr, reterr_len, TOK_ERR_PERMISSIONS, err,
                                "cannot open the token file");
        } else {
            result = fail_errno(reterr, reterr_len, TOK_ERR_IO, err,
                                "cannot open the token file");
        }
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno, "cannot stat the token file");
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_reason(reterr, reterr_len,
                   "%s is not a regular file; refusing to use it", TOK_FILE_NAME);
        result = TOK_ERR_PERMISSIONS;
        goto out;
    }
    if (st.st_uid != geteuid()) {
        set_reason(reterr, reterr_len,
                   "%s is owned by uid %u, not by this user (uid %u); refusing to use it",
                   TOK_FILE_NAME, (unsigned)st.st_uid, (unsigned)geteuid());
        result = TOK_ERR_PERMISSIONS;
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        set_reason(reterr, reterr_len,
                   "%s is accessible by group or others (mode %04o, must be 0600); "
                   "refusing to use it", TOK_FILE_NAME, (unsigned)(st.st_mode & 07777));
        result = TOK_ERR_PERMISSIONS;
        goto out;
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > TOK_MAX_FILE_BYTES) {
        set_reason(reterr, reterr_len, "the token file is %jd bytes, more than the %u allowed",
                   (intmax_t)st.st_size, TOK_MAX_FILE_BYTES);
        result = TOK_ERR_CORRUPT;
        goto out;
    }
    /* One byte more than allowed: catches a file that grew after fstat. */
    if (!read_up_to(fd, buf, sizeof(buf), &len)) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno, "cannot read the token file");
        goto out;
    }
    /* More than TOK_MAX_FILE_BYTES is refused by the parser. */
    result = tok_parse(buf, len, ret_record, reterr, reterr_len);

out:
    if (fd >= 0)
        close(fd);
    if (dir_fd >= 0)
        close(dir_fd);
    explicit_bzero(buf, sizeof(buf));
    return result;
}

enum tok_result tok_delete(const char *dir, char *reterr, size_t reterr_len)
{
    enum tok_result result;
    int dir_fd = -1;
    int err;

    result = check_dir(dir, reterr, reterr_len);
    if (result != TOK_OK)
        goto out;
    result = open_dir(dir, &dir_fd, reterr, reterr_len);
    if (result == TOK_ERR_NOT_FOUND) {
        result = TOK_OK; /* no directory, no token */
        goto out;
    }
    if (result != TOK_OK)
        goto out;
    /* Waits for a save in progress; without flock() the temporary files are
     * removed anyway: after an unlink no token may stay on disk. */
    (void)lock_writers(dir_fd);
    if (unlinkat(dir_fd, TOK_FILE_NAME, 0) != 0 && errno != ENOENT) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "cannot remove the token file");
        goto out;
    }
    err = remove_temps(dir_fd);
    if (err != 0) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, err,
                            "cannot remove a temporary token file");
        goto out;
    }
    if (!sync_dir(dir_fd)) {
        result = fail_errno(reterr, reterr_len, TOK_ERR_IO, errno,
                            "the token file was removed but fsync of its directory failed");
        goto out;
    }

out:
    if (dir_fd >= 0)
        close(dir_fd);
    return result;
}
