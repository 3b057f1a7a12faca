/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * proto: the allow-list for what the server may ask of the printer.
 *
 * Every message the server sends goes through proto_dispatch(), which turns
 * it into a JSON array of normalized, validated actions for the shim to
 * carry out. Nothing the server sends reaches OctoPrint in any other way:
 * unknown keys are ignored, unknown passthru targets and functions and bad
 * arguments become a passthru error (which the shim acks), and the numbers
 * of a pause are range-checked here.
 *
 * Actions (one JSON object each):
 *   {"action":"remote_status","viewing":bool|null,"should_watch":bool|null}
 *   {"action":"pause","retract":mm,"lift_z":mm,"tools_off":bool,"bed_off":bool,"initiator":str}
 *   {"action":"resume","initiator":str}   {"action":"cancel","initiator":str}
 *   {"action":"passthru","ref":str,"call":NAME,"params":{...}}
 *   {"action":"passthru_error","ref":str,"error":str}
 *   {"action":"rejected","reason":str}          (nothing to ack: logged only)
 * where NAME is one of jog, home, set_temperature, commands, select_file,
 * connect, get_connection_options, list_files, download.
 *
 * download (file_downloader.download, args [{id, url, filename,
 * safe_filename}]) is allowed only while the printer is idle and
 * operational; its params are {"id":int, "url":str, "filename":str,
 * "safe_name":str}, where safe_name is made here from the server's
 * safe_filename (a base name of [A-Za-z0-9._-] ending in a G-code
 * extension; no path from the server survives). Where the URL may lead is
 * checked by the download itself (hostrule_fetch_*, grab_download_*).
 *
 * What is allowed depends on the printer, which the shim describes on every
 * call (struct proto_printer): while a print runs or is paused only the calls
 * that cannot move the print head or change the print's feed rate or position
 * pass (temperatures within the printer's limits, fans, speed and flow
 * factors, baby-steps within a per-print total, messages, queries, emergency
 * stop, file listings); jog, home, connect, select_file, motors off, moves,
 * tool changes and mode changes are refused with an error. The heaters that
 * exist and their limits come from the printer profile and the owner's
 * settings, never above the fixed ceilings below.
 *
 * The dispatcher remembers the last PROTO_REF_MEMORY passthru refs and drops
 * repeats (the same call may arrive twice), and owns the only state that
 * outlives a message: struct proto_budget (the baby-step total of the current
 * print and the extrusion allowance per minute).
 */
#ifndef TSD_PROTO_H
#define TSD_PROTO_H

#include <stddef.h>

enum proto_result {
    PROTO_OK = 0,
    PROTO_ERR_INVALID,   /* bad argument */
    PROTO_ERR_PARSE,     /* not JSON */
    PROTO_ERR_NOT_OBJECT,
    PROTO_ERR_NOMEM,
    PROTO_RESULT_MAX
};

#define PROTO_MAX_MESSAGE (1024u * 1024u)
#define PROTO_REF_MEMORY 128
#define PROTO_MAX_REF 128
#define PROTO_MAX_COMMANDS 16
#define PROTO_MAX_GCODE_LINES 64
#define PROTO_MAX_GCODE_LINE 128
#define PROTO_DEFAULT_RETRACT_MM 6.5
#define PROTO_DEFAULT_LIFT_Z_MM 2.5
#define PROTO_MAX_RETRACT_MM 20.0
#define PROTO_MAX_LIFT_Z_MM 50.0
#define PROTO_MAX_JOG_MM 500.0
#define PROTO_MAX_TOOL_TEMP 320.0
#define PROTO_MAX_BED_TEMP 150.0
#define PROTO_MAX_CHAMBER_TEMP 90.0
#define PROTO_MAX_TOOLS 16
/* file_downloader.download */
#define PROTO_MAX_DOWNLOAD_URL 2048
#define PROTO_MAX_SAFE_NAME 128
/* Baby-steps (M290 Z): per line, and the net offset over one print. */
#define PROTO_MAX_BABYSTEP_MM 0.5
#define PROTO_MAX_BABYSTEP_TOTAL_MM 1.0
/* Extrusion (G0/G1 E, relative only, idle only): per passthru call, and per
 * minute (an allowance that refills continuously). */
#define PROTO_MAX_EXTRUDE_MM 100.0
#define PROTO_MAX_EXTRUDE_PER_MINUTE_MM 200.0
#define PROTO_MAX_FEEDRATE 10000.0

struct proto_options {
    int allow_raw_gcode; /* 0: only the safe G-code set in passthru commands */
};

enum proto_printer_state {
    PROTO_PRINTER_IDLE = 0, /* not printing: connected and ready, or not connected */
    PROTO_PRINTER_PRINTING, /* starting, printing, pausing, resuming, cancelling, finishing */
    PROTO_PRINTER_PAUSED,
    PROTO_PRINTER_STATE_MAX
};

/* What the shim knows about the printer when a message arrives. Passed to
 * every proto_dispatch(); nothing of it is kept except print_id. */
struct proto_printer {
    enum proto_printer_state state;
    long long print_id;    /* the current print; a new id starts a new baby-step total */
    int absolute_xyz;      /* the positioning modes last sent to the printer (G90/G91) */
    int absolute_e;        /* (M82/M83) */
    int extruders;         /* the printer profile's extruder count: T0..T<n-1> */
    int shared_nozzle;     /* one heater (tool0) for all extruders */
    int heated_bed;
    int heated_chamber;
    double max_tool_temp;  /* the owner's limits; each capped at its PROTO_MAX_*_TEMP */
    double max_bed_temp;
    double max_chamber_temp;
    long long now_ms;      /* a monotonic clock, for the extrusion allowance */
    int operational;       /* connected and ready (OctoPrint's is_operational()); a
                            * cloud download needs it besides PROTO_PRINTER_IDLE */
};

struct proto;

const char *proto_result_str(enum proto_result result);

enum proto_result proto_new(const struct proto_options *options, struct proto **ret_proto);

/* Accepts NULL; returns NULL. */
struct proto *proto_free(struct proto *proto);

void proto_set_options(struct proto *proto, const struct proto_options *options);

/* On PROTO_OK, *ret_actions is a (transfer full) NUL-terminated JSON array
 * (possibly empty) to release with free(), and *ret_len its length. */
enum proto_result proto_dispatch(struct proto *proto, const struct proto_printer *printer,
                                 const char *message, size_t len, char **ret_actions,
                                 size_t *ret_len);

/* The name of the index-th passthru call the allow-list knows ("jog",
 * "home", ...: the "call" of a passthru action), or NULL past the last one.
 * The farm file (farm.c) enables calls by these names. */
const char *proto_passthru_call(size_t index);

/* Exposed for tests: 1 if one G-code line is in the safe set, taken alone
 * (the printer's state, modes and the budgets are checked by proto_dispatch). */
int proto_gcode_line_is_safe(const char *line, size_t len);

#endif
