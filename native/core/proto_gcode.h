/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * proto_gcode: the inside of the server's allow-list shared by proto.c (the
 * message dispatch and the passthru argument checks) and proto_gcode.c (the
 * G-code rules: the safe set of single lines, and what one "commands" call
 * may do given the printer's state, its positioning modes and the
 * extrusion and baby-step budgets). Not part of the API: only those two
 * files include it.
 */
#ifndef TSD_PROTO_GCODE_H
#define TSD_PROTO_GCODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "proto.h"

/* The only state that outlives one message besides the ref memory: what the
 * server has used of the per-print and per-minute allowances. */
struct proto_budget {
    bool print_known;           /* print_id below is set */
    long long print_id;
    double babystep_mm;         /* net M290 Z in this print */
    double extrude_mm;          /* what is left of the extrusion allowance */
    bool refill_known;          /* refilled_ms below is set */
    long long refilled_ms;
};

enum proto_gcode_verdict {
    PROTO_GCODE_ALLOWED = 0,
    PROTO_GCODE_REFUSED, /* *ret_error says why */
    PROTO_GCODE_NOMEM,
};

/* proto_gcode.c */

/* A full extrusion allowance, no print known yet. */
void proto_budget_init(struct proto_budget *budget);

/* Starts a new baby-step total when the print changed, and refills the
 * extrusion allowance for the time that passed. */
void proto_budget_update(struct proto_budget *budget, const struct proto_printer *printer);

/* Checks a call's lines (a JSON array of strings, each already trimmed)
 * against the safe set, the printer's state and the budgets. On
 * PROTO_GCODE_ALLOWED commits to the budget and appends to lines what puts
 * back the printer's positioning modes if they changed; on
 * PROTO_GCODE_REFUSED, *ret_error is a static text or error (error_size
 * bytes, formatted here). */
enum proto_gcode_verdict proto_gcode_check_lines(struct proto_budget *budget,
                                                const struct proto_printer *printer, json_t *lines,
                                                char *error, size_t error_size,
                                                const char **ret_error);

/* proto.c */

/* No control characters (UTF-8 allowed). */
bool proto_text_is_printable(const char *text, size_t len);

const char *proto_printer_state_name(enum proto_printer_state state);

/* "<what> is not allowed while <state>", formatted into error; returns error. */
const char *proto_not_while_printing(char *error, size_t size, const char *what,
                                     enum proto_printer_state state);

#endif
