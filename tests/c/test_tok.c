/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/tok.c: round trip, every kind of corruption,
 * permissions, symbolic links, deletion, invalid records, failures in the
 * middle of a save and a crash (SIGKILL) at random points of a save loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <openssl/evp.h>

#include "check.h"
#include "tok.h"

#define LITERAL_LEN(s) (sizeof(s) - 1)

static char test_root[64];   /* mkdtemp directory, removed at the end */
static char work_dir[128];   /* test_root/work: emptied before every test */
static char token_path[192];

static const struct tok_record record_a = {
    .server = "https://app.example.com",
    .token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    .name = "Printer A",
};
static const struct tok_record record_b = {
    .server = "http://192.168.1.20:3334/base/path?x=1",
    .token = "b0b-token_with.punctuation!~",
    .name = NULL,
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Removes every entry of path (one level: the tests create no subfolders
 * except where they remove them themselves). */
static void empty_dir(const char *path)
{
    DIR *listing = opendir(path);
    struct dirent *entry;

    if (!listing)
        return;
    while ((entry = readdir(listing))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(listing), entry->d_name, 0) != 0 && errno == EISDIR)
            unlinkat(dirfd(listing), entry->d_name, AT_REMOVEDIR);
    }
    closedir(listing);
}

static void fresh_work_dir(void)
{
    empty_dir(work_dir);
    chmod(work_dir, 0700);
}

static int count_entries(const char *path, const char *prefix)
{
    DIR *listing = opendir(path);
    struct dirent *entry;
    int count = 0;

    if (!listing)
        return -1;
    while ((entry = readdir(listing))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        if (!prefix || strncmp(entry->d_name, prefix, strlen(prefix)) == 0)
            count++;
    }
    closedir(listing);
    return count;
}

static bool write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok;

    if (fd < 0)
        return false;
    ok = write(fd, data, len) == (ssize_t)len && fchmod(fd, mode) == 0;
    return close(fd) == 0 && ok;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return 0;
    n = read(fd, buf, cap);
    close(fd);
    return n > 0 ? (size_t)n : 0;
}

/* body + "sha256 <hex of body>\n", as a writer of the format would. */
static size_t with_checksum(const char *body, size_t body_len, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    size_t len;

    if (EVP_Digest(body, body_len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32 ||
        body_len + 7 + 64 + 1 > cap)
        return 0;
    memcpy(out, body, body_len);
    len = body_len;
    memcpy(out + len, "sha256 ", 7);
    len += 7;
    for (unsigned i = 0; i < md_len; i++) {
        snprintf(out + len, 3, "%02x", md[i]);
        len += 2;
    }
    out[len++] = '\n';
    return len;
}

static bool same_text(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool same_record(const struct tok_record *a, const struct tok_record *b)
{
    return a && b && same_text(a->server, b->server) && same_text(a->token, b->token) &&
           same_text(a->name, b->name);
}

/* Loads and expects result; on TOK_OK also expects the record. */
static bool load_is(enum tok_result expected, const struct tok_record *expected_record)
{
    struct tok_record *record = NULL;
    char reason[256] = "";
    enum tok_result result = tok_load(work_dir, &record, reason, sizeof(reason));
    bool ok = result == expected;

    if (result == TOK_OK)
        ok = ok && expected_record && same_record(record, expected_record);
    else
        ok = ok && record == NULL && reason[0] != '\0';
    if (!ok)
        printf("#   load: %s (%s), expected %s\n", tok_result_str(result), reason,
               tok_result_str(expected));
    tok_record_free(record);
    return ok;
}

/* Writes raw bytes as the token file (mode 0600) and expects CORRUPT. */
static bool raw_is_corrupt(const void *data, size_t len)
{
    return write_file(token_path, data, len, 0600) && load_is(TOK_ERR_CORRUPT, NULL);
}

static bool body_is_corrupt(const char *body)
{
    char file[TOK_MAX_FILE_BYTES];
    size_t len = with_checksum(body, strlen(body), file, sizeof(file));

    if (len == 0 || !raw_is_corrupt(file, len)) {
        printf("#   body accepted or not written: \"%s\"\n", body);
        return false;
    }
    return true;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_invalid_arguments(void)
{
    struct tok_record *record = NULL;
    char long_dir[TOK_MAX_DIR + 2];
    char reason[128] = "";

    memset(long_dir, 'd', sizeof(long_dir) - 1);
    long_dir[sizeof(long_dir) - 1] = '\0';
    CHECK(tok_save(NULL, &record_a, NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_save("", &record_a, NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_save(long_dir, &record_a, reason, sizeof(reason)) == TOK_ERR_INVALID);
    CHECK(strstr(reason, "directory") != NULL);
    CHECK(tok_load(NULL, &record, NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_load(work_dir, NULL, NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_load(long_dir, &record, NULL, 0) == TOK_ERR_INVALID);
    CHECK(record == NULL);
    CHECK(tok_delete(NULL, NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_delete("", NULL, 0) == TOK_ERR_INVALID);
    CHECK(tok_record_free(NULL) == NULL);
    CHECK(tok_record_check(NULL, NULL, 0) == TOK_ERR_INVALID);
}

static void test_round_trip(void)
{
    char reason[256] = "";
    char file[TOK_MAX_FILE_BYTES];
    size_t len;

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, reason, sizeof(reason)) == TOK_OK);
    CHECK(load_is(TOK_OK, &record_a));
    /* The format is what tok.h documents. */
    len = read_file(token_path, file, sizeof(file) - 1);
    file[len] = '\0';
    CHECK(strncmp(file, "tsd-token v1\nserver https://app.example.com\ntoken AAAA", 54) == 0);
    CHECK(strstr(file, "\nname Printer A\nsha256 ") != NULL);
    CHECK(len > 0 && file[len - 1] == '\n');

    /* No name: no name line, and NULL comes back. */
    CHECK(tok_save(work_dir, &record_b, reason, sizeof(reason)) == TOK_OK);
    CHECK(load_is(TOK_OK, &record_b));
    len = read_file(token_path, file, sizeof(file) - 1);
    file[len] = '\0';
    CHECK(strstr(file, "name") == NULL);

    /* An empty name is kept as an empty name. */
    {
        struct tok_record empty_name = {.server = "https://x", .token = "t", .name = ""};
        CHECK(tok_save(work_dir, &empty_name, NULL, 0) == TOK_OK);
        CHECK(load_is(TOK_OK, &empty_name));
    }
    /* Every field at its maximum, and UTF-8 names. */
    {
        static char server[TOK_MAX_SERVER + 1];
        static char token[TOK_MAX_TOKEN + 1];
        static char name[TOK_MAX_NAME + 1];
        struct tok_record big = {.server = server, .token = token, .name = name};
        const char *utf8 = "K\xc3\xbc" "che \xe2\x80\x93 \xf0\x9f\x96\xa8";
        size_t ulen = strlen(utf8);

        memcpy(server, "https://", 8);
        memset(server + 8, 'h', TOK_MAX_SERVER - 8);
        for (unsigned i = 0; i < TOK_MAX_TOKEN; i++)
            token[i] = (char)(0x21 + i % (0x7f - 0x21));
        for (size_t i = 0; i + ulen <= TOK_MAX_NAME; i += ulen)
            memcpy(name + i, utf8, ulen);
        memset(name + (TOK_MAX_NAME / ulen) * ulen, 'n', TOK_MAX_NAME % ulen);
        CHECK(strlen(server) == TOK_MAX_SERVER);
        CHECK(strlen(token) == TOK_MAX_TOKEN);
        CHECK(strlen(name) == TOK_MAX_NAME);
        CHECK(tok_record_check(&big, NULL, 0) == TOK_OK);
        CHECK(tok_save(work_dir, &big, reason, sizeof(reason)) == TOK_OK);
        CHECK(load_is(TOK_OK, &big));
    }
    /* reterr may be tiny or absent. */
    {
        struct tok_record *record = NULL;
        char tiny[1] = {'x'};
        CHECK(tok_load(work_dir, &record, tiny, sizeof(tiny)) == TOK_OK);
        CHECK(tiny[0] == 'x'); /* untouched on success */
        record = tok_record_free(record);
        CHECK(record == NULL);
        CHECK(write_file(token_path, "junk", 4, 0600));
        CHECK(tok_load(work_dir, &record, tiny, sizeof(tiny)) == TOK_ERR_CORRUPT);
        CHECK(tiny[0] == '\0');
        CHECK(tok_load(work_dir, &record, NULL, 0) == TOK_ERR_CORRUPT);
        CHECK(tok_load(work_dir, &record, tiny, 0) == TOK_ERR_CORRUPT);
        CHECK(record == NULL);
    }
    CHECK(count_entries(work_dir, NULL) == 1);
}

static void test_missing_file(void)
{
    char missing[192];
    char reason[128] = "";
    struct tok_record *record = NULL;

    fresh_work_dir();
    CHECK(load_is(TOK_ERR_NOT_FOUND, NULL));
    snprintf(missing, sizeof(missing), "%s/does-not-exist", test_root);
    CHECK(tok_load(missing, &record, reason, sizeof(reason)) == TOK_ERR_NOT_FOUND);
    CHECK(record == NULL);
    /* Saving into a missing directory is an I/O error, never a mkdir. */
    CHECK(tok_save(missing, &record_a, reason, sizeof(reason)) == TOK_ERR_IO);
    CHECK(access(missing, F_OK) != 0);
}

static void test_truncated_at_every_offset(void)
{
    char file[TOK_MAX_FILE_BYTES];
    size_t len;
    int failures = 0;

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    len = read_file(token_path, file, sizeof(file));
    CHECK(len > 100);
    for (size_t cut = 0; cut < len; cut++)
        if (!raw_is_corrupt(file, cut))
            failures++;
    CHECK(failures == 0);
    /* The untruncated file is fine again. */
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(load_is(TOK_OK, &record_a));
}

static void test_flipped_bytes(void)
{
    static const unsigned char masks[] = {0x01, 0x20, 0x80, 0xff};
    char file[TOK_MAX_FILE_BYTES];
    char copy[TOK_MAX_FILE_BYTES];
    size_t len;
    int failures = 0;

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    len = read_file(token_path, file, sizeof(file));
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, file, len);
            copy[i] = (char)(copy[i] ^ masks[m]);
            if (!raw_is_corrupt(copy, len))
                failures++;
        }
        /* A NUL or a newline in place of any byte. */
        memcpy(copy, file, len);
        copy[i] = copy[i] == '\0' ? 'x' : '\0';
        if (!raw_is_corrupt(copy, len))
            failures++;
        memcpy(copy, file, len);
        if (copy[i] != '\n') {
            copy[i] = '\n';
            if (!raw_is_corrupt(copy, len))
                failures++;
        }
    }
    CHECK(failures == 0);
    /* Extra bytes after the checksum line, or a line appended. */
    memcpy(copy, file, len);
    memcpy(copy + len, "x", 1);
    CHECK(raw_is_corrupt(copy, len + 1));
    memcpy(copy + len, "\n", 1);
    CHECK(raw_is_corrupt(copy, len + 1));
    memcpy(copy + len, "name x\n", 7);
    CHECK(raw_is_corrupt(copy, len + 7));
}

static void test_bad_structure_with_valid_checksum(void)
{
    static const char *const bodies[] = {
        "",                                                        /* only a checksum */
        "tsd-token v2\nserver https://a\ntoken t\n",               /* wrong version */
        "tsd-token v10\nserver https://a\ntoken t\n",
        "tsd-token v1 \nserver https://a\ntoken t\n",
        "TSD-TOKEN v1\nserver https://a\ntoken t\n",
        "tsd-token\nserver https://a\ntoken t\n",
        "\ntsd-token v1\nserver https://a\ntoken t\n",
        "server https://a\ntoken t\n",                             /* no header */
        "tsd-token v1\ntoken t\n",                                 /* no server */
        "tsd-token v1\nserver https://a\n",                        /* no token */
        "tsd-token v1\nname n\n",
        "tsd-token v1\n",
        "tsd-token v1\ntoken t\nserver https://a\n",               /* order */
        "tsd-token v1\nserver https://a\nname n\ntoken t\n",
        "tsd-token v1\nserver https://a\ntoken t\ntoken u\n",      /* repeated */
        "tsd-token v1\nserver https://a\nserver https://b\ntoken t\n",
        "tsd-token v1\nserver https://a\ntoken t\nname n\nname m\n",
        "tsd-token v1\nserver https://a\ntoken t\nextra x\n",      /* unknown */
        "tsd-token v1\nserver https://a\ntoken t\n\n",             /* blank line */
        "tsd-token v1\nserver https://a\ntoken t\nsha256 00\n",
        "tsd-token v1\r\nserver https://a\r\ntoken t\r\n",         /* CRLF */
        "tsd-token v1\nserver https://a\ntoken t\r\n",
        "tsd-token v1\nserver  https://a\ntoken t\n",              /* double space */
        "tsd-token v1\nserver https://a\ntoken  t\n",
        "tsd-token v1\nserver\ntoken t\n",                         /* no value */
        "tsd-token v1\nserver https://a\ntoken\n",
        "tsd-token v1\nserver https://a\ntoken \n",                /* empty values */
        "tsd-token v1\nserver \ntoken t\n",
        "tsd-token v1\nserver ftp://a\ntoken t\n",                 /* bad fields */
        "tsd-token v1\nserver https://\ntoken t\n",
        "tsd-token v1\nserver wss://a\ntoken t\n",
        "tsd-token v1\nserver https://a b\ntoken t\n",
        "tsd-token v1\nserver https://a\ntoken t u\n",
        "tsd-token v1\nserver https://a\ntoken t\x7f\n",
        "tsd-token v1\nserver https://a\ntoken t\xc3\xa9\n",
        "tsd-token v1\nserver https://a\ntoken t\nname tab\there\n",
        "tsd-token v1\nserver https://a\ntoken t\nname \xc0\x80\n",
        "tsd-token v1\nserver https://a\ntoken t\nname \xc2\x85\n",
        "tsd-token v1\nserver https://a\ntoken t\nname \xed\xa0\x80\n",
        "tsd-token v1\nserver https://a\ntoken t\nname \xf4\x90\x80\x80\n",
        "tsd-token v1\nserver https://a\ntoken t\nname \xe2\x82\n",
    };
    char body[TOK_MAX_FILE_BYTES];
    char file[TOK_MAX_FILE_BYTES];
    char reason[256] = "";
    struct tok_record *record = NULL;
    size_t len;

    fresh_work_dir();
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        CHECK(body_is_corrupt(bodies[i]));
    /* NUL bytes inside a field (strlen() cannot build these). */
    memcpy(body, "tsd-token v1\nserver https://a\ntoken t\0u\n", 40);
    len = with_checksum(body, 40, file, sizeof(file));
    CHECK(raw_is_corrupt(file, len));
    /* Fields over their limits, summed correctly. */
    len = (size_t)snprintf(body, sizeof(body), "tsd-token v1\nserver https://a\ntoken ");
    memset(body + len, 't', TOK_MAX_TOKEN + 1);
    len += TOK_MAX_TOKEN + 1;
    body[len++] = '\n';
    CHECK(raw_is_corrupt(file, with_checksum(body, len, file, sizeof(file))));
    len = (size_t)snprintf(body, sizeof(body), "tsd-token v1\nserver https://");
    memset(body + len, 's', TOK_MAX_SERVER);
    len += TOK_MAX_SERVER;
    len += (size_t)snprintf(body + len, sizeof(body) - len, "\ntoken t\n");
    CHECK(raw_is_corrupt(file, with_checksum(body, len, file, sizeof(file))));
    len = (size_t)snprintf(body, sizeof(body), "tsd-token v1\nserver https://a\ntoken t\nname ");
    memset(body + len, 'n', TOK_MAX_NAME + 1);
    len += TOK_MAX_NAME + 1;
    body[len++] = '\n';
    CHECK(raw_is_corrupt(file, with_checksum(body, len, file, sizeof(file))));

    /* The reasons say what is wrong. */
    len = with_checksum("tsd-token v2\nserver https://a\ntoken t\n",
                        strlen("tsd-token v2\nserver https://a\ntoken t\n"), file, sizeof(file));
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_CORRUPT);
    CHECK(strstr(reason, "version") != NULL);
    len = with_checksum("tsd-token v1\ntoken t\n", strlen("tsd-token v1\ntoken t\n"), file,
                        sizeof(file));
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_CORRUPT);
    CHECK(strstr(reason, "server") != NULL);
    CHECK(record == NULL);

    /* A correct file written by hand is accepted. */
    {
        static const char good[] = "tsd-token v1\nserver https://a\ntoken t\nname n\n";
        len = with_checksum(good, LITERAL_LEN(good), file, sizeof(file));
    }
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(load_is(TOK_OK, &(struct tok_record){.server = "https://a", .token = "t",
                                                 .name = "n"}));
}

static void test_bad_checksum(void)
{
    static const char body[] = "tsd-token v1\nserver https://a\ntoken t\n";
    char file[TOK_MAX_FILE_BYTES];
    char reason[256] = "";
    struct tok_record *record = NULL;
    size_t len;
    char *hex;

    fresh_work_dir();
    len = with_checksum(body, LITERAL_LEN(body), file, sizeof(file));
    CHECK(len > 0);
    hex = file + LITERAL_LEN(body) + 7;
    /* Same file, token changed, old checksum. */
    file[LITERAL_LEN(body) - 2] = 'u';
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_CORRUPT);
    CHECK(strstr(reason, "checksum") != NULL);
    file[LITERAL_LEN(body) - 2] = 't';
    CHECK(write_file(token_path, file, len, 0600));
    CHECK(load_is(TOK_OK, &(struct tok_record){.server = "https://a", .token = "t"}));
    /* Upper-case hex, short, long and missing checksums, other algorithms. */
    for (int i = 0; i < 64; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f') {
            hex[i] = (char)(hex[i] - 'a' + 'A');
            CHECK(raw_is_corrupt(file, len));
            hex[i] = (char)(hex[i] - 'A' + 'a');
            break;
        }
    memmove(hex + 63, hex + 64, 1);
    CHECK(raw_is_corrupt(file, len - 1));
    CHECK(raw_is_corrupt(body, LITERAL_LEN(body)));
    len = (size_t)snprintf(file, sizeof(file), "%scrc32 deadbeef\n", body);
    CHECK(raw_is_corrupt(file, len));
    len = (size_t)snprintf(file, sizeof(file), "%ssha256 %064d\n", body, 0);
    CHECK(raw_is_corrupt(file, len));
    len = (size_t)snprintf(file, sizeof(file), "%ssha256 \n", body);
    CHECK(raw_is_corrupt(file, len));
}

static void test_empty_and_oversized(void)
{
    static char big[1 << 20];
    char file[TOK_MAX_FILE_BYTES];
    char reason[256] = "";
    struct tok_record *record = NULL;
    size_t len;

    fresh_work_dir();
    CHECK(raw_is_corrupt("", 0));
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_CORRUPT);
    CHECK(strstr(reason, "empty") != NULL);
    /* A valid file with bytes appended past the cap. */
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    len = read_file(token_path, file, sizeof(file));
    memset(big, 'x', sizeof(big));
    memcpy(big, file, len);
    CHECK(raw_is_corrupt(big, TOK_MAX_FILE_BYTES + 1));
    CHECK(raw_is_corrupt(big, sizeof(big)));
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_CORRUPT);
    CHECK(strstr(reason, "bytes") != NULL);
    CHECK(raw_is_corrupt(big, TOK_MAX_FILE_BYTES)); /* at the cap: garbage */
    /* A sparse 1 GiB file is refused from its size alone. */
    {
        int fd = open(token_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        CHECK(fd >= 0 && ftruncate(fd, (off_t)1 << 30) == 0);
        if (fd >= 0)
            close(fd);
        CHECK(load_is(TOK_ERR_CORRUPT, NULL));
    }
    CHECK(record == NULL);
}

static void test_permissions(void)
{
    static const mode_t masks[] = {0, 022, 077, 0777};
    static const mode_t unsafe[] = {0644, 0640, 0604, 0660, 0606, 0610, 0601, 0666, 0777};
    char reason[256] = "";
    struct tok_record *record = NULL;
    struct stat st;
    mode_t old_mask;

    fresh_work_dir();
    for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
        old_mask = umask(masks[i]);
        CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
        umask(old_mask);
        CHECK(lstat(token_path, &st) == 0);
        CHECK(S_ISREG(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(st.st_uid == geteuid());
    }
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        CHECK(chmod(token_path, unsafe[i]) == 0);
        reason[0] = '\0';
        CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_PERMISSIONS);
        CHECK(strstr(reason, "group or others") != NULL);
        CHECK(record == NULL);
    }
    printf("#   reason for 0777: %s\n", reason);
    /* Stricter than 0600 is fine. */
    CHECK(chmod(token_path, 0400) == 0);
    CHECK(load_is(TOK_OK, &record_a));
    /* Saving over an unsafe file replaces it with a safe one. */
    CHECK(chmod(token_path, 0644) == 0);
    CHECK(tok_save(work_dir, &record_b, NULL, 0) == TOK_OK);
    CHECK(stat(token_path, &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK(load_is(TOK_OK, &record_b));

    /* Owned by another user: only root can set that up. */
    if (geteuid() == 0) {
        CHECK(chown(token_path, 65534, 65534) == 0);
        reason[0] = '\0';
        CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_PERMISSIONS);
        CHECK(strstr(reason, "owned by uid 65534") != NULL);
        printf("#   reason: %s\n", reason);
        CHECK(chown(token_path, geteuid(), getegid()) == 0);
        CHECK(load_is(TOK_OK, &record_b));
    } else {
        printf("#   skip: foreign owner check needs root\n");
    }
    CHECK(record == NULL);
}

static void test_symlink_and_special_files(void)
{
    char target[192];
    char target_bytes[TOK_MAX_FILE_BYTES];
    char after[TOK_MAX_FILE_BYTES];
    char reason[256] = "";
    struct tok_record *record = NULL;
    struct stat st;
    size_t len;

    fresh_work_dir();
    /* A valid token file, then a link to it at the final path. */
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    snprintf(target, sizeof(target), "%s/elsewhere", work_dir);
    CHECK(rename(token_path, target) == 0);
    len = read_file(target, target_bytes, sizeof(target_bytes));
    CHECK(symlink("elsewhere", token_path) == 0);
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_ERR_PERMISSIONS);
    CHECK(strstr(reason, "symbolic link") != NULL);
    CHECK(record == NULL);
    reason[0] = '\0';
    CHECK(tok_save(work_dir, &record_b, reason, sizeof(reason)) == TOK_ERR_PERMISSIONS);
    CHECK(strstr(reason, "symbolic link") != NULL);
    /* The link and its target are untouched, no temporary file is left. */
    CHECK(lstat(token_path, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(read_file(target, after, sizeof(after)) == len && memcmp(after, target_bytes, len) == 0);
    CHECK(count_entries(work_dir, TOK_TEMP_PREFIX) == 0);
    /* A dangling link is refused as well. */
    CHECK(unlink(target) == 0);
    CHECK(load_is(TOK_ERR_PERMISSIONS, NULL));
    CHECK(tok_save(work_dir, &record_b, NULL, 0) == TOK_ERR_PERMISSIONS);
    CHECK(access(target, F_OK) != 0);
    /* Delete removes the link, never its target. */
    CHECK(write_file(target, target_bytes, len, 0600));
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK);
    CHECK(lstat(token_path, &st) != 0 && errno == ENOENT);
    CHECK(access(target, F_OK) == 0);

    /* A FIFO must not hang the load; a directory is not a token file. */
    CHECK(mkfifo(token_path, 0600) == 0);
    CHECK(load_is(TOK_ERR_PERMISSIONS, NULL));
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_ERR_PERMISSIONS);
    CHECK(unlink(token_path) == 0);
    CHECK(mkdir(token_path, 0700) == 0);
    CHECK(load_is(TOK_ERR_PERMISSIONS, NULL));
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_ERR_PERMISSIONS);
    CHECK(rmdir(token_path) == 0);
    /* The directory argument itself must be a directory. */
    CHECK(tok_load(target, &record, NULL, 0) == TOK_ERR_IO);
    CHECK(tok_save(target, &record_a, NULL, 0) == TOK_ERR_IO);
    CHECK(record == NULL);
}

static void test_delete(void)
{
    char path[256];
    char missing[192];

    fresh_work_dir();
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK); /* nothing there */
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    CHECK(load_is(TOK_OK, &record_a));
    /* Stale temporary files of a killed save, and an unrelated file. */
    snprintf(path, sizeof(path), "%s/%sabcdefghijkl", work_dir, TOK_TEMP_PREFIX);
    CHECK(write_file(path, "tsd-token v1\n", 13, 0600));
    snprintf(path, sizeof(path), "%s/%sZZZZZZZZZZZZ", work_dir, TOK_TEMP_PREFIX);
    CHECK(write_file(path, "", 0, 0600));
    snprintf(path, sizeof(path), "%s/settings.yaml", work_dir);
    CHECK(write_file(path, "x: 1\n", 5, 0644));
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK);
    CHECK(load_is(TOK_ERR_NOT_FOUND, NULL));
    CHECK(count_entries(work_dir, TOK_TEMP_PREFIX) == 0);
    CHECK(count_entries(work_dir, NULL) == 1); /* settings.yaml stays */
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK); /* twice is fine */
    snprintf(missing, sizeof(missing), "%s/does-not-exist", test_root);
    CHECK(tok_delete(missing, NULL, 0) == TOK_OK);
    /* A corrupt or unsafe file can always be deleted. */
    CHECK(write_file(token_path, "garbage", 7, 0666));
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK);
    CHECK(load_is(TOK_ERR_NOT_FOUND, NULL));
}

static void test_overwrite_keeps_only_new(void)
{
    char file[TOK_MAX_FILE_BYTES + 1];
    size_t len;

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    CHECK(tok_save(work_dir, &record_b, NULL, 0) == TOK_OK);
    CHECK(load_is(TOK_OK, &record_b));
    len = read_file(token_path, file, sizeof(file) - 1);
    file[len] = '\0';
    CHECK(strstr(file, record_a.token) == NULL);
    CHECK(strstr(file, record_a.server) == NULL);
    CHECK(count_entries(work_dir, NULL) == 1); /* no temporary file left */
    /* A save also sweeps leftovers of killed saves. */
    {
        char path[256];
        snprintf(path, sizeof(path), "%s/%sstalestale12", work_dir, TOK_TEMP_PREFIX);
        CHECK(write_file(path, "old", 3, 0600));
        CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
        CHECK(count_entries(work_dir, NULL) == 1);
        CHECK(load_is(TOK_OK, &record_a));
    }
}

static void test_invalid_records_write_nothing(void)
{
    static char long_token[TOK_MAX_TOKEN + 2];
    static char long_server[TOK_MAX_SERVER + 2];
    static char long_name[TOK_MAX_NAME + 2];
    const struct tok_record bad[] = {
        {.server = NULL, .token = "t"},
        {.server = "https://a", .token = NULL},
        {.server = "https://a", .token = ""},
        {.server = "https://a", .token = long_token},
        {.server = "https://a", .token = "with space"},
        {.server = "https://a", .token = "new\nline"},
        {.server = "https://a", .token = "tab\t"},
        {.server = "https://a", .token = "del\x7f"},
        {.server = "https://a", .token = "caf\xc3\xa9"},
        {.server = "", .token = "t"},
        {.server = "https://", .token = "t"},
        {.server = "http://", .token = "t"},
        {.server = "ftp://a", .token = "t"},
        {.server = "HTTPS://a", .token = "t"},
        {.server = "app.example.com", .token = "t"},
        {.server = "https://a b", .token = "t"},
        {.server = "https://a\nsha256 0", .token = "t"},
        {.server = long_server, .token = "t"},
        {.server = "https://a", .token = "t", .name = long_name},
        {.server = "https://a", .token = "t", .name = "new\nline"},
        {.server = "https://a", .token = "t", .name = "tab\there"},
        {.server = "https://a", .token = "t", .name = "cr\r"},
        {.server = "https://a", .token = "t", .name = "del\x7f"},
        {.server = "https://a", .token = "t", .name = "c1 \xc2\x85"},
        {.server = "https://a", .token = "t", .name = "overlong \xc0\xaf"},
        {.server = "https://a", .token = "t", .name = "overlong \xe0\x80\xaf"},
        {.server = "https://a", .token = "t", .name = "surrogate \xed\xa0\x80"},
        {.server = "https://a", .token = "t", .name = "too big \xf4\x90\x80\x80"},
        {.server = "https://a", .token = "t", .name = "lone \x80"},
        {.server = "https://a", .token = "t", .name = "cut \xe2\x82"},
        {.server = "https://a", .token = "t", .name = "cut \xf0\x9f\x96"},
        {.server = "https://a", .token = "t", .name = "bad \xf8\x88\x80\x80\x80"},
        {.server = "https://a", .token = "t", .name = "bad \xff"},
    };
    char before[TOK_MAX_FILE_BYTES];
    char after[TOK_MAX_FILE_BYTES];
    char reason[256];
    size_t before_len;
    int failures = 0;

    memset(long_token, 't', TOK_MAX_TOKEN + 1);
    memcpy(long_server, "https://", 8);
    memset(long_server + 8, 's', TOK_MAX_SERVER - 7);
    memset(long_name, 'n', TOK_MAX_NAME + 1);

    /* Into an empty directory: nothing appears. */
    fresh_work_dir();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        if (tok_record_check(&bad[i], NULL, 0) != TOK_ERR_INVALID ||
            tok_save(work_dir, &bad[i], reason, sizeof(reason)) != TOK_ERR_INVALID ||
            reason[0] == '\0') {
            printf("#   bad record %zu accepted\n", i);
            failures++;
        }
    }
    CHECK(failures == 0);
    CHECK(tok_save(work_dir, NULL, NULL, 0) == TOK_ERR_INVALID);
    CHECK(count_entries(work_dir, NULL) == 0);

    /* Over an existing token: it stays byte for byte. */
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    before_len = read_file(token_path, before, sizeof(before));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(tok_save(work_dir, &bad[i], NULL, 0) == TOK_ERR_INVALID);
    CHECK(read_file(token_path, after, sizeof(after)) == before_len);
    CHECK(memcmp(before, after, before_len) == 0);
    CHECK(count_entries(work_dir, NULL) == 1);
    CHECK(load_is(TOK_OK, &record_a));

    /* The reasons never contain the token. */
    {
        struct tok_record secret = {.server = "gopher://x", .token = "SECRET-123"};
        CHECK(tok_save(work_dir, &secret, reason, sizeof(reason)) == TOK_ERR_INVALID);
        CHECK(strstr(reason, "SECRET") == NULL);
        CHECK(strstr(reason, "https://") != NULL);
    }
}

/* A save that fails in the middle (the write hits RLIMIT_FSIZE) removes its
 * temporary file and leaves the old token alone. Run in a child so the
 * limit does not leak into the other tests. */
static void test_failed_write_keeps_old_token(void)
{
    char before[TOK_MAX_FILE_BYTES];
    char after[TOK_MAX_FILE_BYTES];
    size_t before_len;
    int status = 0;
    pid_t child;

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    before_len = read_file(token_path, before, sizeof(before));
    fflush(stdout);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct sigaction ignore = {.sa_handler = SIG_IGN};
        struct rlimit limit = {.rlim_cur = 16, .rlim_max = 16};
        char reason[256] = "";
        enum tok_result result;

        sigemptyset(&ignore.sa_mask);
        sigaction(SIGXFSZ, &ignore, NULL); /* write() then fails with EFBIG */
        setrlimit(RLIMIT_FSIZE, &limit);
        result = tok_save(work_dir, &record_b, reason, sizeof(reason));
        printf("#   failed save: %s (%s)\n", tok_result_str(result), reason);
        fflush(stdout);
        _exit(result == TOK_ERR_IO && strstr(reason, "write") ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(read_file(token_path, after, sizeof(after)) == before_len);
    CHECK(memcmp(before, after, before_len) == 0);
    CHECK(count_entries(work_dir, TOK_TEMP_PREFIX) == 0);
    CHECK(load_is(TOK_OK, &record_a));

    /* Read-only directory: only meaningful when not root. */
    if (geteuid() != 0) {
        CHECK(chmod(work_dir, 0500) == 0);
        CHECK(tok_save(work_dir, &record_b, NULL, 0) == TOK_ERR_IO);
        CHECK(chmod(work_dir, 0700) == 0);
        CHECK(load_is(TOK_OK, &record_a));
        CHECK(count_entries(work_dir, NULL) == 1);
    }
}

static void sleep_ns(long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A child saves A and B in turn, forever; the parent kills it at a random
 * moment and loads. Only A or B may come back: never a torn or corrupt file. */
static void test_crash_safety(void)
{
    enum { ITERATIONS = 1000 };
    int seen_a = 0;
    int seen_b = 0;
    int bad = 0;
    int interrupted = 0;
    int max_temps = 0;
    double start = now_ms();

    fresh_work_dir();
    CHECK(tok_save(work_dir, &record_a, NULL, 0) == TOK_OK);
    fflush(stdout);
    for (int i = 0; i < ITERATIONS; i++) {
        struct tok_record *record = NULL;
        char reason[256] = "";
        enum tok_result result;
        int status = 0;
        int temps;
        long delay_ns = (long)(rng_next() % 2000001u); /* 0..2 ms */
        pid_t child = fork();

        if (child < 0) {
            CHECK(child >= 0);
            break;
        }
        if (child == 0) {
            for (unsigned n = 0;; n++)
                tok_save(work_dir, n % 2 ? &record_a : &record_b, NULL, 0);
        }
        sleep_ns(delay_ns);
        kill(child, SIGKILL);
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFSIGNALED(status))
            bad++;
        temps = count_entries(work_dir, TOK_TEMP_PREFIX);
        if (temps > 0)
            interrupted++;
        if (temps > max_temps)
            max_temps = temps;
        result = tok_load(work_dir, &record, reason, sizeof(reason));
        if (result == TOK_OK && same_record(record, &record_a)) {
            seen_a++;
        } else if (result == TOK_OK && same_record(record, &record_b)) {
            seen_b++;
        } else {
            printf("#   iteration %d: %s (%s)\n", i, tok_result_str(result), reason);
            bad++;
        }
        tok_record_free(record);
    }
    printf("#   %d kills in %.0f ms: A %d, B %d, temp file left behind %d times (max %d)\n",
           ITERATIONS, now_ms() - start, seen_a, seen_b, interrupted, max_temps);
    CHECK(bad == 0);
    CHECK(seen_a + seen_b == ITERATIONS);
    /* Leftovers of killed saves are swept by the next completed save, and
     * delete removes the last ones. */
    CHECK(tok_delete(work_dir, NULL, 0) == TOK_OK);
    CHECK(count_entries(work_dir, NULL) == 0);
}

/* ---- sec13: concurrent saves ------------------------------------------------ */

enum { SEC13_PROCESSES = 4, SEC13_THREADS = 4, SEC13_SAVES = 40 };

struct sec13_writer {
    unsigned process;
    unsigned thread;
    int failures;
    char last_reason[256];
};

static void sec13_token(char *out, size_t cap, unsigned process, unsigned thread)
{
    snprintf(out, cap, "sec13-p%u-t%u", process, thread);
}

static void *sec13_save_loop(void *arg)
{
    struct sec13_writer *writer = arg;
    char token[32];
    struct tok_record record = {.server = "https://app.example.com", .token = token,
                                .name = "concurrent"};

    sec13_token(token, sizeof(token), writer->process, writer->thread);
    for (int i = 0; i < SEC13_SAVES; i++) {
        char reason[256] = "";

        if (tok_save(work_dir, &record, reason, sizeof(reason)) != TOK_OK) {
            writer->failures++;
            snprintf(writer->last_reason, sizeof(writer->last_reason), "%s", reason);
        }
    }
    return NULL;
}

/* One process of the test: SEC13_THREADS threads saving at once; the exit
 * status is the number of failed saves (capped). */
static int sec13_process(unsigned process)
{
    struct sec13_writer writers[SEC13_THREADS];
    pthread_t threads[SEC13_THREADS];
    int failures = 0;

    for (unsigned t = 0; t < SEC13_THREADS; t++) {
        writers[t] = (struct sec13_writer){.process = process, .thread = t};
        if (pthread_create(&threads[t], NULL, sec13_save_loop, &writers[t]) != 0)
            return 100;
    }
    for (unsigned t = 0; t < SEC13_THREADS; t++) {
        pthread_join(threads[t], NULL);
        failures += writers[t].failures;
        if (writers[t].failures)
            printf("#   process %u thread %u: %d failed saves, last: %s\n", process, t,
                   writers[t].failures, writers[t].last_reason);
    }
    fflush(stdout);
    return failures > 99 ? 99 : failures;
}

/* Two (here: sixteen) writers saving at the same moment must all succeed:
 * one writer's clean-up never removes another writer's temporary file, and
 * the file left is one of the written tokens, valid. */
static void test_sec13_concurrent_saves(void)
{
    pid_t children[SEC13_PROCESSES];
    struct tok_record *record = NULL;
    char reason[256] = "";
    bool known = false;

    fresh_work_dir();
    fflush(stdout);
    for (unsigned p = 0; p < SEC13_PROCESSES; p++) {
        children[p] = fork();
        CHECK(children[p] >= 0);
        if (children[p] == 0)
            _exit(sec13_process(p));
    }
    for (unsigned p = 0; p < SEC13_PROCESSES; p++) {
        int status = 0;

        if (children[p] <= 0)
            continue;
        while (waitpid(children[p], &status, 0) < 0 && errno == EINTR)
            ;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(tok_load(work_dir, &record, reason, sizeof(reason)) == TOK_OK);
    for (unsigned p = 0; record && p < SEC13_PROCESSES; p++) {
        for (unsigned t = 0; t < SEC13_THREADS; t++) {
            char token[32];

            sec13_token(token, sizeof(token), p, t);
            known = known || strcmp(record->token, token) == 0;
        }
    }
    CHECK(known);
    tok_record_free(record);
    /* Every writer removed its own temporary file. */
    CHECK(count_entries(work_dir, TOK_TEMP_PREFIX) == 0);
    CHECK(count_entries(work_dir, NULL) == 1);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= TOK_RESULT_MAX; r++)
        CHECK(tok_result_str((enum tok_result)r) != NULL);
    CHECK(strcmp(tok_result_str(TOK_ERR_PERMISSIONS), "unsafe token file") == 0);
    CHECK(strcmp(tok_result_str((enum tok_result)99), "unknown result") == 0);
}

int main(void)
{
    const char *seed_text = getenv("TOK_TEST_SEED");
    uint64_t seed = 20240601u;
    int failed;

    if (seed_text && *seed_text)
        seed = strtoull(seed_text, NULL, 0);
    rng_state = seed;
    printf("# seed %llu (set TOK_TEST_SEED to repeat)\n", (unsigned long long)seed);

    snprintf(test_root, sizeof(test_root), "/tmp/tsd-tok-test-XXXXXX");
    if (!mkdtemp(test_root)) {
        printf("Bail out! mkdtemp failed\n");
        return 1;
    }
    snprintf(work_dir, sizeof(work_dir), "%s/work", test_root);
    snprintf(token_path, sizeof(token_path), "%s/%s", work_dir, TOK_FILE_NAME);
    if (mkdir(work_dir, 0700) != 0) {
        printf("Bail out! mkdir failed\n");
        rmdir(test_root);
        return 1;
    }

    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_round_trip);
    RUN_TEST(test_missing_file);
    RUN_TEST(test_truncated_at_every_offset);
    RUN_TEST(test_flipped_bytes);
    RUN_TEST(test_bad_structure_with_valid_checksum);
    RUN_TEST(test_bad_checksum);
    RUN_TEST(test_empty_and_oversized);
    RUN_TEST(test_permissions);
    RUN_TEST(test_symlink_and_special_files);
    RUN_TEST(test_delete);
    RUN_TEST(test_overwrite_keeps_only_new);
    RUN_TEST(test_invalid_records_write_nothing);
    RUN_TEST(test_failed_write_keeps_old_token);
    RUN_TEST(test_crash_safety);
    RUN_TEST(test_sec13_concurrent_saves);
    RUN_TEST(test_result_strings);

    failed = CHECK_DONE();
    empty_dir(work_dir);
    rmdir(work_dir);
    empty_dir(test_root);
    if (rmdir(test_root) != 0)
        printf("# could not remove %s\n", test_root);
    return failed;
}
