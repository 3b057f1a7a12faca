/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for read_file_whole() (native/common/fdio.c), the bounded
 * whole-file read behind the helper's configuration, the farm file and
 * tsd-helper --bench's frame. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fdio.h"

static char reason[512];

/* A temporary file holding len bytes of c; its path in path. */
static int make_file(char *path, size_t len, char c)
{
    char *bytes = malloc(len + 1);
    int fd = mkstemp(path);
    int ok = fd >= 0 && bytes != NULL;

    if (ok) {
        memset(bytes, c, len);
        ok = write_all(fd, bytes, len);
    }
    if (fd >= 0)
        close(fd);
    free(bytes);
    return ok;
}

static void test_reads_all_of_it_with_a_nul_after(void)
{
    char path[] = "/tmp/tsd-fdio-test-XXXXXX";
    char *data = NULL;
    size_t len = 0;

    CHECK(make_file(path, 100, 'a'));
    CHECK(read_file_whole(path, 100, &data, &len, reason, sizeof(reason)) == FDIO_READ_OK);
    CHECK(len == 100 && data && data[0] == 'a' && data[99] == 'a' && data[100] == '\0');
    free(data);
    data = NULL;
    /* One byte over the limit. */
    CHECK(read_file_whole(path, 99, &data, &len, reason, sizeof(reason)) == FDIO_READ_ERR_TOO_BIG);
    CHECK(data == NULL && strstr(reason, "is 100 bytes, more than the 99 allowed") && strstr(reason, path));
    unlink(path);
}

static void test_an_empty_file_is_read_as_empty(void)
{
    char path[] = "/tmp/tsd-fdio-test-XXXXXX";
    char *data = NULL;
    size_t len = 1;

    CHECK(make_file(path, 0, 'a'));
    CHECK(read_file_whole(path, 10, &data, &len, reason, sizeof(reason)) == FDIO_READ_OK);
    CHECK(len == 0 && data && data[0] == '\0');
    free(data);
    unlink(path);
}

static void test_refused_with_a_reason(void)
{
    char *data = NULL;
    size_t len = 0;

    CHECK(read_file_whole("/nonexistent/tsd-fdio", 10, &data, &len, reason, sizeof(reason)) ==
          FDIO_READ_ERR_IO);
    CHECK(data == NULL && strstr(reason, "cannot read /nonexistent/tsd-fdio: "));
    CHECK(read_file_whole("/tmp", 10, &data, &len, reason, sizeof(reason)) == FDIO_READ_ERR_IO);
    CHECK(data == NULL && strstr(reason, "/tmp is not a regular file"));
    /* No room for the reason: still refused. */
    CHECK(read_file_whole("/tmp", 10, &data, &len, NULL, 0) == FDIO_READ_ERR_IO);
}

/* /proc files say they are empty and are not: the read goes on to their
 * end, within the limit, and stops past it. */
static void test_a_file_larger_than_it_said(void)
{
    char *data = NULL;
    size_t len = 0;
    struct stat st;

    CHECK(stat("/proc/self/status", &st) == 0 && st.st_size == 0);
    CHECK(read_file_whole("/proc/self/status", 1u << 20, &data, &len, reason, sizeof(reason)) ==
          FDIO_READ_OK);
    CHECK(len > 100 && data && strncmp(data, "Name:", 5) == 0 && strlen(data) == len);
    free(data);
    data = NULL;
    CHECK(read_file_whole("/proc/self/status", 64, &data, &len, reason, sizeof(reason)) ==
          FDIO_READ_ERR_TOO_BIG);
    CHECK(data == NULL && strstr(reason, "grew past the 64 bytes allowed"));
}

int main(void)
{
    RUN_TEST(test_reads_all_of_it_with_a_nul_after);
    RUN_TEST(test_an_empty_file_is_read_as_empty);
    RUN_TEST(test_refused_with_a_reason);
    RUN_TEST(test_a_file_larger_than_it_said);
    return CHECK_DONE();
}
