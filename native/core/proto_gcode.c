/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* proto_gcode: the G-code rules of the server's allow-list (what one line
 * may be, and what a passthru "commands" call may do given the printer's
 * state, modes and the extrusion and baby-step budgets), apart from the
 * message dispatch and argument checks in proto.c. */
#include "proto.h"
#include "proto_gcode.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one line --------------------------------------------------------------- */

struct gcode_word {
    char letter;
    double value;
    bool has_value;
};

/* Parses "<letter><number> <letter><number>..." after the command word. */
static int parse_words(const char *p, const char *end, struct gcode_word *words, int max_words)
{
    int count = 0;

    while (p < end) {
        char number[32];
        size_t n = 0;
        char *stop = NULL;

        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        if (count >= max_words || !isalpha((unsigned char)*p))
            return -1;
        words[count].letter = (char)toupper((unsigned char)*p);
        p++;
        while (p < end && *p != ' ' && n < sizeof(number) - 1)
            number[n++] = *p++;
        if (p < end && *p != ' ')
            return -1;
        number[n] = '\0';
        words[count].has_value = n > 0;
        words[count].value = 0;
        if (n > 0) {
            words[count].value = strtod(number, &stop);
            if (!stop || *stop != '\0' || !isfinite(words[count].value))
                return -1;
        }
        count++;
    }
    return count;
}

static bool words_within(const struct gcode_word *words, int count, const char *letters,
                         double min, double max)
{
    for (int i = 0; i < count; i++) {
        if (!strchr(letters, words[i].letter))
            return false;
        if (words[i].has_value && (words[i].value < min || words[i].value > max))
            return false;
    }
    return true;
}

/* What a line of the safe set does. The kinds from GCODE_FIRST_IDLE_ONLY on
 * move something or change how later moves are read, so they are refused
 * while a print runs or is paused. */
enum gcode_kind {
    GCODE_UNSAFE = 0,
    GCODE_MESSAGE,        /* M117 */
    GCODE_QUERY,          /* M105 M114 M115 M400 */
    GCODE_EMERGENCY_STOP, /* M112 */
    GCODE_FAN,            /* M106 M107 */
    GCODE_FACTOR,         /* M220 M221: speed and flow factors */
    GCODE_BABYSTEP,       /* M290 Z */
    GCODE_MODE,           /* G90 G91 M82 M83 */
    GCODE_FIRST_IDLE_ONLY = GCODE_MODE,
    GCODE_MOTORS_OFF,     /* M18 M84 */
    GCODE_EXTRUDE,        /* G0/G1 E [F] */
    GCODE_TOOL,           /* T0..T15 */
};

struct gcode_line {
    enum gcode_kind kind;
    char command[8];
    double amount; /* E mm (extrude), Z mm (baby-step), index (tool) */
};

static bool command_is(const char *command, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(command, *names) == 0)
            return true;
    return false;
}

/* The kind of one line; fills ret_line's command and amount. */
static enum gcode_kind gcode_kind_of(const char *line, size_t len, struct gcode_line *ret_line)
{
    static const char *const queries[] = {"M105", "M114", "M115", "M400", NULL};
    static const char *const modes[] = {"G90", "G91", "M82", "M83", NULL};
    static const char *const motors_off[] = {"M18", "M84", NULL};
    static const char *const moves[] = {"G0", "G1", NULL};
    struct gcode_word words[8];
    char *command = ret_line->command;
    size_t n = 0;
    const char *p = line;
    const char *end = line + len;
    int count;

    ret_line->amount = 0;
    command[0] = '\0';
    if (!line || len == 0 || len > PROTO_MAX_GCODE_LINE || !proto_text_is_printable(line, len))
        return GCODE_UNSAFE;
    while (p < end && n < sizeof(ret_line->command) - 1 && *p != ' ')
        command[n++] = (char)toupper((unsigned char)*p++);
    command[n] = '\0';
    if (p < end && *p != ' ')
        return GCODE_UNSAFE;

    if (strcmp(command, "M117") == 0)
        return GCODE_MESSAGE; /* a message on the printer's display: text only */
    count = parse_words(p, end, words, 8);
    if (count < 0)
        return GCODE_UNSAFE;
    if (command_is(command, queries) && count == 0)
        return GCODE_QUERY;
    if (strcmp(command, "M112") == 0 && count == 0)
        return GCODE_EMERGENCY_STOP;
    if (command_is(command, modes) && count == 0)
        return GCODE_MODE;
    if (command_is(command, motors_off) && words_within(words, count, "XYZE", 0, 0))
        return GCODE_MOTORS_OFF;
    if ((strcmp(command, "M107") == 0 && count == 0) ||
        (strcmp(command, "M106") == 0 && words_within(words, count, "SP", 0, 255)))
        return GCODE_FAN;
    if ((strcmp(command, "M220") == 0 || strcmp(command, "M221") == 0) && count == 1 &&
        words_within(words, count, "S", 10, 300))
        return GCODE_FACTOR;
    if (strcmp(command, "M290") == 0) {
        if (!words_within(words, count, "Z", -PROTO_MAX_BABYSTEP_MM, PROTO_MAX_BABYSTEP_MM))
            return GCODE_UNSAFE;
        for (int i = 0; i < count; i++)
            ret_line->amount += words[i].value;
        return GCODE_BABYSTEP;
    }
    if (command_is(command, moves)) {
        /* Only extrusion and retraction: one E (mm), optionally F (mm/min).
         * A move without E would only set the feed rate for what follows. */
        bool has_e = false;
        for (int i = 0; i < count; i++) {
            if (words[i].letter == 'E' && !has_e && words[i].has_value &&
                fabs(words[i].value) <= PROTO_MAX_EXTRUDE_MM) {
                has_e = true;
                ret_line->amount = words[i].value;
            } else if (!(words[i].letter == 'F' && words[i].has_value && words[i].value > 0 &&
                         words[i].value <= PROTO_MAX_FEEDRATE)) {
                return GCODE_UNSAFE;
            }
        }
        return has_e ? GCODE_EXTRUDE : GCODE_UNSAFE;
    }
    if (command[0] == 'T' && n >= 2 && n <= 3 && count == 0) {
        for (size_t i = 1; i < n; i++)
            if (!isdigit((unsigned char)command[i]))
                return GCODE_UNSAFE;
        ret_line->amount = (double)strtol(command + 1, NULL, 10);
        return ret_line->amount < PROTO_MAX_TOOLS ? GCODE_TOOL : GCODE_UNSAFE;
    }
    return GCODE_UNSAFE;
}

static void classify_gcode(const char *line, size_t len, struct gcode_line *ret_line)
{
    ret_line->kind = gcode_kind_of(line, len, ret_line);
}

int proto_gcode_line_is_safe(const char *line, size_t len)
{
    struct gcode_line parsed;

    classify_gcode(line, len, &parsed);
    return parsed.kind != GCODE_UNSAFE;
}

/* ---- budgets ---------------------------------------------------------------- */

void proto_budget_init(struct proto_budget *budget)
{
    *budget = (struct proto_budget){.extrude_mm = PROTO_MAX_EXTRUDE_PER_MINUTE_MM};
}

/* Starts a new baby-step total when the print changed, and refills the
 * extrusion allowance for the time that passed. */
void proto_budget_update(struct proto_budget *budget, const struct proto_printer *printer)
{
    if (!budget->print_known || budget->print_id != printer->print_id) {
        budget->print_known = true;
        budget->print_id = printer->print_id;
        budget->babystep_mm = 0;
    }
    if (budget->refill_known && printer->now_ms > budget->refilled_ms) {
        double refill = (double)(printer->now_ms - budget->refilled_ms) *
                        (PROTO_MAX_EXTRUDE_PER_MINUTE_MM / 60000.0);
        budget->extrude_mm = fmin(PROTO_MAX_EXTRUDE_PER_MINUTE_MM, budget->extrude_mm + refill);
    }
    budget->refill_known = true;
    budget->refilled_ms = printer->now_ms;
}

/* ---- a call's lines ----------------------------------------------------------- */

/* The G-code rules beyond the single line: what the printer's state allows,
 * extrusion only in relative mode and within the allowances, baby-steps
 * within the print's total. On success, commits to the budget and appends
 * the lines that put back the printer's positioning modes if they changed. */
enum proto_gcode_verdict proto_gcode_check_lines(struct proto_budget *budget,
                                                const struct proto_printer *printer, json_t *lines,
                                                char *error, size_t error_size,
                                                const char **ret_error)
{
    bool absolute_xyz = printer->absolute_xyz;
    bool absolute_e = printer->absolute_e;
    double extruded = 0;
    double babystep = 0;
    size_t index;
    json_t *value;

    json_array_foreach(lines, index, value) {
        struct gcode_line line;

        classify_gcode(json_string_value(value), json_string_length(value), &line);
        if (line.kind == GCODE_UNSAFE) {
            *ret_error = "G-code not in the allowed set (raw G-code is disabled in the plugin's settings)";
            return PROTO_GCODE_REFUSED;
        }
        if (line.kind >= GCODE_FIRST_IDLE_ONLY && printer->state != PROTO_PRINTER_IDLE) {
            *ret_error = proto_not_while_printing(error, error_size, line.command, printer->state);
            return PROTO_GCODE_REFUSED;
        }
        switch (line.kind) {
        case GCODE_MODE:
            if (strcmp(line.command, "G90") == 0 || strcmp(line.command, "G91") == 0)
                absolute_xyz = absolute_e = strcmp(line.command, "G90") == 0;
            else
                absolute_e = strcmp(line.command, "M82") == 0;
            break;
        case GCODE_EXTRUDE:
            /* In absolute mode E is a position, not a distance: "G1 E-100"
             * could unwind the whole filament path. */
            if (absolute_e) {
                *ret_error = "extrusion only in relative mode (send M83 first)";
                return PROTO_GCODE_REFUSED;
            }
            extruded += fabs(line.amount);
            break;
        case GCODE_TOOL:
            if ((int)line.amount >= printer->extruders) {
                *ret_error = "no such tool on this printer (see its printer profile)";
                return PROTO_GCODE_REFUSED;
            }
            break;
        case GCODE_BABYSTEP:
            babystep += line.amount;
            break;
        default:
            break;
        }
    }
    if (extruded > PROTO_MAX_EXTRUDE_MM) {
        snprintf(error, error_size, "at most %.0f mm of extrusion in one call",
                 PROTO_MAX_EXTRUDE_MM);
        *ret_error = error;
        return PROTO_GCODE_REFUSED;
    }
    if (extruded > budget->extrude_mm) {
        snprintf(error, error_size,
                 "at most %.0f mm of extrusion per minute (%.1f mm left now)",
                 PROTO_MAX_EXTRUDE_PER_MINUTE_MM, budget->extrude_mm);
        *ret_error = error;
        return PROTO_GCODE_REFUSED;
    }
    if (fabs(budget->babystep_mm + babystep) > PROTO_MAX_BABYSTEP_TOTAL_MM + 1e-9) {
        snprintf(error, error_size,
                 "baby-steps may move Z by at most %.1f mm in one print (now %+.2f mm)",
                 PROTO_MAX_BABYSTEP_TOTAL_MM, budget->babystep_mm);
        *ret_error = error;
        return PROTO_GCODE_REFUSED;
    }
    if (absolute_xyz != (bool)printer->absolute_xyz || absolute_e != (bool)printer->absolute_e) {
        if (json_array_append_new(lines, json_string(printer->absolute_xyz ? "G90" : "G91")) != 0 ||
            json_array_append_new(lines, json_string(printer->absolute_e ? "M82" : "M83")) != 0) {
            return PROTO_GCODE_NOMEM;
        }
    }
    budget->extrude_mm -= extruded;
    budget->babystep_mm += babystep;
    return PROTO_GCODE_ALLOWED;
}
