/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * Runs a libFuzzer target without libFuzzer: every file named on the command
 * line, and every regular file in every directory named there (not
 * recursive, in name order), is passed once to LLVMFuzzerTestOneInput().
 * Fails when an argument cannot be read or no input was found, so a wrong
 * corpus path cannot pass silently. A crash or sanitizer report fails the
 * run the way it would under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Inputs larger than this are refused (libFuzzer's default -max_len is far
 * smaller; corpora here hold small seeds). */
#define DRIVER_MAX_INPUT (16u * 1024u * 1024u)
#define DRIVER_MAX_PATH 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file; 0 on success. */
static int run_file(const char *path, unsigned long *count)
{
    int result = 1;
    FILE *file = NULL;
    uint8_t *data = NULL;
    struct stat st;
    size_t len;

    file = fopen(path, "rb");
    if (!file || fstat(fileno(file), &st) != 0) {
        fprintf(stderr, "cannot open %s (errno %d)\n", path, errno);
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > DRIVER_MAX_INPUT) {
        fprintf(stderr, "%s: larger than %u bytes\n", path, DRIVER_MAX_INPUT);
        goto out;
    }
    len = (size_t)st.st_size;
    /* A copy of exactly len bytes, so ASan catches reads past the end. */
    data = malloc(len ? len : 1);
    if (!data) {
        fprintf(stderr, "%s: out of memory\n", path);
        goto out;
    }
    if (len > 0 && fread(data, 1, len, file) != len) {
        fprintf(stderr, "cannot read %s\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(data, len);
    (*count)++;
    result = 0;

out:
    free(data);
    if (file)
        fclose(file);
    return result;
}

static int run_directory(const char *dir, unsigned long *count)
{
    int result = 0;
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, alphasort);

    if (n < 0) {
        fprintf(stderr, "cannot list %s (errno %d)\n", dir, errno);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char path[DRIVER_MAX_PATH];
        struct stat st;
        int len = snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);

        if (len < 0 || (size_t)len >= sizeof(path)) {
            fprintf(stderr, "path too long in %s\n", dir);
            result = 1;
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path, count) != 0)
                result = 1;
        }
        free(entries[i]);
    }
    free(entries);
    return result;
}

int main(int argc, char **argv)
{
    unsigned long count = 0;
    int result = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (argv[i][0] == '-')
            continue; /* libFuzzer-style flags are accepted and ignored */
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "cannot stat %s (errno %d)\n", argv[i], errno);
            result = 1;
        } else if (S_ISDIR(st.st_mode)) {
            result |= run_directory(argv[i], &count);
        } else {
            result |= run_file(argv[i], &count);
        }
    }
    printf("ran %lu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "no inputs found\n");
        result = 1;
    }
    return result;
}
