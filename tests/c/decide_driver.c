/* SPDX-License-Identifier: AGPL-3.0-or-later
 * decide_driver: runs native/core/decide.c on commands read from stdin, for
 * tests/py/test_decide_reference.py to compare with its own implementation.
 *
 * Commands, one per line (blank lines and lines starting with '#' skipped):
 *   params <sensitivity> <bending_factor> <top_n> <frame_interval_s>
 *   start                          a new print
 *   frame <n> <c1> ... <cn>        one frame with n detections
 *   longterm <mean> <count>        decide_set_long_term()
 *   get                            prints "<long_mean> <count>"
 * Every frame prints one line, "<p> <ewm> <short> <long> <adjusted> <verdict>"
 * (numbers as %.17g, verdict ok/warn/pause), or "error <result>" when the
 * decider refused the frame. A malformed line, a refused params or longterm
 * command, or a line longer than DRIVER_MAX_LINE stops the driver with a
 * message on stderr and exit status 2. The decider starts with the defaults.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"

#define DRIVER_MAX_LINE (256u * 1024u)

static char line[DRIVER_MAX_LINE + 2];
static double confidences[DECIDE_MAX_DETECTIONS];

/* The next whitespace-separated token of *cursor, NUL-terminated in place;
 * NULL at the end of the line. */
static char *next_token(char **cursor)
{
    char *start = *cursor;
    char *end;

    while (*start == ' ' || *start == '\t')
        start++;
    if (*start == '\0')
        return NULL;
    end = start;
    while (*end != '\0' && *end != ' ' && *end != '\t')
        end++;
    if (*end != '\0') {
        *end = '\0';
        end++;
    }
    *cursor = end;
    return start;
}

/* A whole token as a double; "nan" and "inf" are accepted (the decider is
 * the one to refuse them), out-of-range values are not. */
static bool parse_double(char **cursor, double *ret_value)
{
    char *token = next_token(cursor);
    char *end = NULL;
    double value;

    if (!token)
        return false;
    errno = 0;
    value = strtod(token, &end);
    if (end == token || *end != '\0' || errno == ERANGE)
        return false;
    *ret_value = value;
    return true;
}

/* A whole token of decimal digits (no sign) up to max. */
static bool parse_unsigned(char **cursor, unsigned long long max, unsigned long long *ret_value)
{
    char *token = next_token(cursor);
    char *end = NULL;
    unsigned long long value;

    if (!token || token[0] < '0' || token[0] > '9')
        return false;
    errno = 0;
    value = strtoull(token, &end, 10);
    if (*end != '\0' || errno == ERANGE || value > max)
        return false;
    *ret_value = value;
    return true;
}

static bool at_end(char **cursor)
{
    return next_token(cursor) == NULL;
}

static int fail(unsigned long line_number, const char *why)
{
    fprintf(stderr, "decide_driver: line %lu: %s\n", line_number, why);
    return 2;
}

static bool command_params(struct decide *decide, char **cursor)
{
    struct decide_params params;
    unsigned long long top_n;

    if (!parse_double(cursor, &params.sensitivity) ||
        !parse_double(cursor, &params.bending_factor) ||
        !parse_unsigned(cursor, DECIDE_MAX_DETECTIONS, &top_n) ||
        !parse_double(cursor, &params.frame_interval_s) || !at_end(cursor))
        return false;
    params.top_n = (unsigned)top_n;
    return decide_set_params(decide, &params) == DECIDE_OK;
}

static bool command_frame(struct decide *decide, char **cursor)
{
    struct decide_frame_result result;
    enum decide_result status;
    unsigned long long n;

    if (!parse_unsigned(cursor, DECIDE_MAX_DETECTIONS, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!parse_double(cursor, &confidences[i]))
            return false;
    }
    if (!at_end(cursor))
        return false;
    status = decide_add_frame(decide, confidences, (size_t)n, &result);
    if (status != DECIDE_OK) {
        printf("error %s\n", decide_result_str(status));
        return true;
    }
    printf("%.17g %.17g %.17g %.17g %.17g %s\n", result.p, result.ewm, result.short_mean,
           result.long_mean, result.adjusted, decide_verdict_str(result.verdict));
    return true;
}

static bool command_longterm(struct decide *decide, char **cursor)
{
    double mean;
    unsigned long long count;

    if (!parse_double(cursor, &mean) || !parse_unsigned(cursor, UINT64_MAX, &count) ||
        !at_end(cursor))
        return false;
    return decide_set_long_term(decide, mean, (uint64_t)count) == DECIDE_OK;
}

static bool command_get(struct decide *decide, char **cursor)
{
    double mean;
    uint64_t count;

    if (!at_end(cursor) || decide_get_long_term(decide, &mean, &count) != DECIDE_OK)
        return false;
    printf("%.17g %llu\n", mean, (unsigned long long)count);
    return true;
}

static int run(struct decide *decide)
{
    unsigned long line_number = 0;

    while (fgets(line, sizeof(line), stdin)) {
        size_t len = strlen(line);
        char *cursor = line;
        char *command;
        bool ok;

        line_number++;
        /* No newline before EOF: too long (or a NUL byte in the line). */
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof(stdin))
            return fail(line_number, "line too long");
        if (len > DRIVER_MAX_LINE)
            return fail(line_number, "line too long");
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        command = next_token(&cursor);
        if (!command || command[0] == '#')
            continue;
        if (strcmp(command, "params") == 0)
            ok = command_params(decide, &cursor);
        else if (strcmp(command, "start") == 0)
            ok = at_end(&cursor) && decide_print_start(decide) == DECIDE_OK;
        else if (strcmp(command, "frame") == 0)
            ok = command_frame(decide, &cursor);
        else if (strcmp(command, "longterm") == 0)
            ok = command_longterm(decide, &cursor);
        else if (strcmp(command, "get") == 0)
            ok = command_get(decide, &cursor);
        else
            ok = false;
        if (!ok)
            return fail(line_number, "malformed or refused command");
    }
    if (ferror(stdin))
        return fail(line_number, "read error");
    return 0;
}

int main(void)
{
    struct decide *decide = NULL;
    int status;

    if (decide_new(NULL, &decide) != DECIDE_OK) {
        fprintf(stderr, "decide_driver: cannot create a decider\n");
        return 2;
    }
    status = run(decide);
    decide_free(decide);
    if (fflush(stdout) != 0 && status == 0)
        status = 2;
    return status;
}
