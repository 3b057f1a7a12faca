/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* layers: the layer rule (layers.h) over sent lines and over whole files.
 * The reader is tolerant where the allow-list's reader (proto_gcode.c) is
 * strict: slicers write "G1X10Y2E.5" without spaces, and a line we cannot
 * read only means we do not learn from it. */
#include "layers.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errtext.h"

#define READ_CHUNK 65536

struct move_words {
    bool has_x, has_y, has_z, has_e;
    double z, e;
};

const char *layers_result_str(enum layers_result result)
{
    switch (result) {
    case LAYERS_OK: return "ok";
    case LAYERS_ERR_OPEN: return "the G-code file cannot be read";
    case LAYERS_ERR_TOO_BIG: return "the G-code file is too large to count its layers";
    }
    return "unknown layers result";
}

void layer_counter_init(struct layer_counter *counter)
{
    memset(counter, 0, sizeof(*counter));
    counter->absolute_xyz = true;
    counter->absolute_e = true;
}

/* Skips spaces, an "N<number>" line number, and returns the command letter
 * and number ("G", 1); false for anything else. */
static bool command_of(const char **p, const char *end, char *ret_letter, long *ret_number)
{
    const char *q = *p;
    long number = 0;

    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    if (q < end && (*q == 'N' || *q == 'n')) {
        q++;
        while (q < end && isdigit((unsigned char)*q))
            q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
    }
    if (q + 1 >= end || !isalpha((unsigned char)q[0]) || !isdigit((unsigned char)q[1]))
        return false;
    *ret_letter = (char)toupper((unsigned char)*q++);
    /* Digits by hand: the line is not NUL-terminated (no strtol). */
    while (q < end && isdigit((unsigned char)*q) && number < 100000)
        number = number * 10 + (*q++ - '0');
    /* "G1.1" and the like are not the commands we follow. */
    if (q < end && (*q == '.' || isdigit((unsigned char)*q)))
        return false;
    *ret_number = number;
    *p = q;
    return true;
}

/* The X, Y, Z and E words of a move; false if a number is not readable. */
static bool read_words(const char *p, const char *end, struct move_words *ret)
{
    char number[40];

    memset(ret, 0, sizeof(*ret));
    while (p < end) {
        char letter = (char)toupper((unsigned char)*p);
        size_t n = 0;
        double value;
        char *stop;

        if (!isalpha((unsigned char)letter)) {
            p++;
            continue;
        }
        p++;
        while (p < end && n < sizeof(number) - 1 &&
               (isdigit((unsigned char)*p) || *p == '.' || *p == '-' || *p == '+'))
            number[n++] = *p++;
        number[n] = '\0';
        if (letter != 'X' && letter != 'Y' && letter != 'Z' && letter != 'E')
            continue;
        value = n ? strtod(number, &stop) : 0.0;
        if (n && (*stop != '\0' || !isfinite(value)))
            return false;
        switch (letter) {
        case 'X': ret->has_x = n > 0; break;
        case 'Y': ret->has_y = n > 0; break;
        case 'Z': ret->has_z = n > 0; ret->z = value; break;
        default: ret->has_e = n > 0; ret->e = value; break;
        }
    }
    return true;
}

static void apply_move(struct layer_counter *counter, long number, const struct move_words *w)
{
    double extruded = 0.0;

    if (w->has_z)
        counter->z = counter->absolute_xyz ? w->z : counter->z + w->z;
    if (w->has_e) {
        extruded = counter->absolute_e ? w->e - counter->e : w->e;
        counter->e = counter->absolute_e ? w->e : counter->e + w->e;
    }
    if (extruded <= 0.0 || !(w->has_x || w->has_y || number == 2 || number == 3))
        return;
    if (counter->layer == 0 || counter->z >= counter->layer_z + LAYERS_MIN_RISE_MM) {
        counter->layer++;
        counter->layer_z = counter->z;
    }
}

long layer_counter_feed(struct layer_counter *counter, const char *line, size_t len)
{
    const char *end = line + len;
    const char *cut = memchr(line, ';', len);
    const char *star;
    struct move_words words;
    char letter;
    long number;

    if (cut)
        end = cut;
    star = memchr(line, '*', (size_t)(end - line));
    if (star)
        end = star;
    if (!command_of(&line, end, &letter, &number))
        return counter->layer;
    if (letter == 'G') {
        switch (number) {
        case 0: case 1: case 2: case 3:
            if (read_words(line, end, &words))
                apply_move(counter, number, &words);
            break;
        case 90: counter->absolute_xyz = counter->absolute_e = true; break;
        case 91: counter->absolute_xyz = counter->absolute_e = false; break;
        case 92: /* sets positions without moving */
            if (read_words(line, end, &words)) {
                if (words.has_z)
                    counter->z = words.z;
                if (words.has_e)
                    counter->e = words.e;
            }
            break;
        case 28:
            if (read_words(line, end, &words) && (words.has_z || !(words.has_x || words.has_y)))
                counter->z = 0.0;
            break;
        default: break;
        }
    } else if (letter == 'M' && (number == 82 || number == 83)) {
        counter->absolute_e = number == 82;
    }
    return counter->layer;
}

enum layers_result layers_count_file(const char *path, uint64_t max_bytes, long *ret_layers,
                                     char *reason, size_t reason_size)
{
    enum layers_result result = LAYERS_ERR_OPEN;
    struct layer_counter counter;
    char errbuf[128];
    char line[LAYERS_MAX_LINE];
    char *chunk = NULL;
    size_t held = 0;       /* bytes of the current line kept in line[] */
    bool skipping = false; /* the current line is over LAYERS_MAX_LINE */
    struct stat st;
    int fd;

    layer_counter_init(&counter);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_reason(reason, reason_size, "cannot open %s: %s", path,
                   errno_text(errno, errbuf, sizeof(errbuf)));
        return LAYERS_ERR_OPEN;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_reason(reason, reason_size, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        set_reason(reason, reason_size, "%s is larger than %llu bytes", path,
                   (unsigned long long)max_bytes);
        result = LAYERS_ERR_TOO_BIG;
        goto out;
    }
    chunk = malloc(READ_CHUNK);
    if (!chunk) {
        set_reason(reason, reason_size, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t got = read(fd, chunk, READ_CHUNK);
        const char *p = chunk;
        const char *stop;

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            set_reason(reason, reason_size, "cannot read %s: %s", path,
                       errno_text(errno, errbuf, sizeof(errbuf)));
            goto out;
        }
        if (got == 0)
            break;
        stop = chunk + got;
        while (p < stop) {
            const char *nl = memchr(p, '\n', (size_t)(stop - p));
            size_t n = (size_t)((nl ? nl : stop) - p);

            /* A line may continue from the chunk before: collect it whole. */
            if (!skipping && held + n <= LAYERS_MAX_LINE) {
                memcpy(line + held, p, n);
                held += n;
            } else {
                skipping = true;
            }
            if (!nl)
                break;
            if (!skipping)
                layer_counter_feed(&counter, line, held);
            held = 0;
            skipping = false;
            p = nl + 1;
        }
    }
    if (!skipping && held)
        layer_counter_feed(&counter, line, held);
    *ret_layers = counter.layer;
    result = LAYERS_OK;
out:
    free(chunk);
    close(fd);
    return result;
}
