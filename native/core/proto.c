/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "proto.h"
#include "proto_gcode.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct proto {
    struct proto_options options;
    struct proto_budget budget;
    char refs[PROTO_REF_MEMORY][PROTO_MAX_REF + 1];
    size_t ref_next;
};

const char *proto_result_str(enum proto_result result)
{
    switch (result) {
    case PROTO_OK: return "ok";
    case PROTO_ERR_INVALID: return "invalid argument";
    case PROTO_ERR_PARSE: return "not valid JSON";
    case PROTO_ERR_NOT_OBJECT: return "not a JSON object";
    case PROTO_ERR_NOMEM: return "out of memory";
    case PROTO_RESULT_MAX: break;
    }
    return "unknown result";
}

enum proto_result proto_new(const struct proto_options *options, struct proto **ret_proto)
{
    struct proto *proto;

    if (!ret_proto)
        return PROTO_ERR_INVALID;
    proto = calloc(1, sizeof(*proto));
    if (!proto)
        return PROTO_ERR_NOMEM;
    if (options)
        proto->options = *options;
    proto_budget_init(&proto->budget);
    *ret_proto = proto;
    return PROTO_OK;
}

struct proto *proto_free(struct proto *proto)
{
    free(proto);
    return NULL;
}

void proto_set_options(struct proto *proto, const struct proto_options *options)
{
    if (proto && options)
        proto->options = *options;
}

/* ---- small validators --------------------------------------------------- */

bool proto_text_is_printable(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A string of 1..max printable characters (UTF-8 allowed, no controls). */
static const char *get_text(json_t *value, size_t max)
{
    const char *text;
    size_t len;

    if (!json_is_string(value))
        return NULL;
    text = json_string_value(value);
    len = json_string_length(value);
    if (len == 0 || len > max || strlen(text) != len || !proto_text_is_printable(text, len))
        return NULL;
    return text;
}

static bool get_number(json_t *value, double min, double max, double *ret_value)
{
    double v;

    if (!json_is_number(value))
        return false;
    v = json_number_value(value);
    if (!isfinite(v) || v < min || v > max)
        return false;
    *ret_value = v;
    return true;
}

/* true, false, "true", "false" */
static bool get_flag(json_t *value, bool *ret_flag)
{
    if (json_is_boolean(value)) {
        *ret_flag = json_is_true(value);
        return true;
    }
    if (json_is_string(value)) {
        if (strcmp(json_string_value(value), "true") == 0) {
            *ret_flag = true;
            return true;
        }
        if (strcmp(json_string_value(value), "false") == 0) {
            *ret_flag = false;
            return true;
        }
    }
    return false;
}

/* A relative path inside OctoPrint's storage: no "..", no leading "/". */
static const char *get_storage_path(json_t *value, bool allow_empty)
{
    const char *path;

    if (allow_empty && json_is_string(value) && json_string_length(value) == 0)
        return "";
    path = get_text(value, 1024);
    if (!path || path[0] == '/' || path[0] == '\\')
        return NULL;
    for (const char *p = path; *p; p++) {
        if (p[0] == '.' && p[1] == '.' && (p == path || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
            return NULL;
    }
    return path;
}

/* ---- actions ---------------------------------------------------------------- */

struct dispatch {
    struct proto *proto;
    const struct proto_printer *printer;
    json_t *actions;
    bool nomem;
    char error[160]; /* room for an error text that names the call */
};

const char *proto_printer_state_name(enum proto_printer_state state)
{
    switch (state) {
    case PROTO_PRINTER_IDLE: return "idle";
    case PROTO_PRINTER_PRINTING: return "printing";
    case PROTO_PRINTER_PAUSED: return "paused";
    case PROTO_PRINTER_STATE_MAX: break;
    }
    return "in an unknown state";
}

const char *proto_not_while_printing(char *error, size_t size, const char *what,
                                     enum proto_printer_state state)
{
    snprintf(error, size, "%s is not allowed while %s", what, proto_printer_state_name(state));
    return error;
}

static const char *not_while_printing(struct dispatch *d, const char *what)
{
    return proto_not_while_printing(d->error, sizeof(d->error), what, d->printer->state);
}

/* A limit from the owner's settings, never above the fixed ceiling; a value
 * that is not a number allows nothing but "off". */
static double heater_limit(double limit, double ceiling)
{
    if (!(limit >= 0))
        return 0;
    return limit < ceiling ? limit : ceiling;
}

static void add_action(struct dispatch *d, json_t *action)
{
    if (!action || json_array_append_new(d->actions, action) != 0)
        d->nomem = true;
}

static void reject(struct dispatch *d, const char *reason)
{
    add_action(d, json_pack("{s:s, s:s}", "action", "rejected", "reason", reason));
}

static void passthru_error(struct dispatch *d, const char *ref, const char *error)
{
    add_action(d, json_pack("{s:s, s:s, s:s}", "action", "passthru_error", "ref", ref,
                            "error", error));
}

static const char *initiator_of(json_t *command)
{
    const char *initiator = get_text(json_object_get(command, "initiator"), 32);
    return initiator ? initiator : "unknown";
}

static void handle_pause(struct dispatch *d, json_t *command)
{
    json_t *args = json_object_get(command, "args");
    json_t *warnings = json_array();
    double retract = PROTO_DEFAULT_RETRACT_MM;
    double lift_z = PROTO_DEFAULT_LIFT_Z_MM;
    bool tools_off = false;
    bool bed_off = false;
    json_t *value;

    if (!warnings) {
        d->nomem = true;
        return;
    }
    /* A pause always happens: a bad number must not keep a failing print
     * running. Bad values fall back to "do nothing" (0) and are reported. */
    if (args && json_is_object(args)) {
        value = json_object_get(args, "retract");
        if (value && !get_number(value, 0, PROTO_MAX_RETRACT_MM, &retract)) {
            retract = 0;
            json_array_append_new(warnings, json_string("retract out of range, not retracting"));
        }
        value = json_object_get(args, "lift_z");
        if (value && !get_number(value, 0, PROTO_MAX_LIFT_Z_MM, &lift_z)) {
            lift_z = 0;
            json_array_append_new(warnings, json_string("lift_z out of range, not lifting"));
        }
        value = json_object_get(args, "tools_off");
        if (value && !get_flag(value, &tools_off))
            json_array_append_new(warnings, json_string("tools_off is not a boolean, ignored"));
        value = json_object_get(args, "bed_off");
        if (value && !get_flag(value, &bed_off))
            json_array_append_new(warnings, json_string("bed_off is not a boolean, ignored"));
    } else if (args && !json_is_null(args)) {
        json_array_append_new(warnings, json_string("args is not an object, defaults used"));
    }
    add_action(d, json_pack("{s:s, s:f, s:f, s:b, s:b, s:s, s:o}", "action", "pause",
                            "retract", retract, "lift_z", lift_z, "tools_off", tools_off,
                            "bed_off", bed_off, "initiator", initiator_of(command),
                            "warnings", warnings));
}

static void handle_commands(struct dispatch *d, json_t *commands)
{
    size_t index;
    json_t *command;

    if (!json_is_array(commands)) {
        reject(d, "commands is not a list");
        return;
    }
    if (json_array_size(commands) > PROTO_MAX_COMMANDS) {
        reject(d, "too many commands in one message");
        return;
    }
    json_array_foreach(commands, index, command) {
        const char *cmd = json_is_object(command) ? get_text(json_object_get(command, "cmd"), 32) : NULL;

        if (!cmd)
            reject(d, "a command without a valid cmd");
        else if (strcmp(cmd, "pause") == 0)
            handle_pause(d, command);
        else if (strcmp(cmd, "resume") == 0 || strcmp(cmd, "cancel") == 0)
            add_action(d, json_pack("{s:s, s:s}", "action", cmd, "initiator", initiator_of(command)));
        else
            reject(d, "unknown command");
    }
}

static void handle_remote_status(struct dispatch *d, json_t *status)
{
    json_t *viewing;
    json_t *should_watch;

    if (!json_is_object(status)) {
        reject(d, "remote_status is not an object");
        return;
    }
    viewing = json_object_get(status, "viewing");
    should_watch = json_object_get(status, "should_watch");
    add_action(d, json_pack("{s:s, s:o, s:o}", "action", "remote_status",
                            "viewing", json_is_boolean(viewing) ? json_incref(viewing) : json_null(),
                            "should_watch",
                            json_is_boolean(should_watch) ? json_incref(should_watch) : json_null()));
}

/* Each passthru builder returns the params object, or NULL with *ret_error. */
typedef json_t *(*passthru_builder)(struct dispatch *d, json_t *args, json_t *kwargs,
                                    const char **ret_error);

static json_t *build_jog(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    json_t *axes = json_array_get(args, 0);
    json_t *out_axes = json_object();
    json_t *params = NULL;
    const char *key;
    json_t *value;
    double speed = 0;

    (void)d;
    if (!out_axes)
        return NULL;
    if (!json_is_object(axes) || json_object_size(axes) == 0 || json_object_size(axes) > 3) {
        *ret_error = "jog needs an object of axes";
        goto out;
    }
    json_object_foreach(axes, key, value) {
        double distance;
        if (strcmp(key, "x") != 0 && strcmp(key, "y") != 0 && strcmp(key, "z") != 0) {
            *ret_error = "jog axes are x, y and z";
            goto out;
        }
        if (!get_number(value, -PROTO_MAX_JOG_MM, PROTO_MAX_JOG_MM, &distance)) {
            *ret_error = "jog distance out of range";
            goto out;
        }
        json_object_set_new(out_axes, key, json_real(distance));
    }
    if (json_is_object(kwargs) && json_object_get(kwargs, "speed") &&
        !json_is_null(json_object_get(kwargs, "speed")) &&
        !get_number(json_object_get(kwargs, "speed"), 1, 20000, &speed)) {
        *ret_error = "jog speed out of range";
        goto out;
    }
    params = json_pack("{s:O, s:o}", "axes", out_axes, "speed", speed > 0 ? json_real(speed) : json_null());

out:
    json_decref(out_axes);
    return params;
}

static json_t *build_home(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    json_t *axes = json_array_get(args, 0);
    json_t *out = json_array();
    size_t index;
    json_t *value;
    unsigned seen = 0;

    (void)d;
    (void)kwargs;
    if (!out)
        return NULL;
    if (!json_is_array(axes) || json_array_size(axes) == 0 || json_array_size(axes) > 3) {
        *ret_error = "home needs a list of axes";
        json_decref(out);
        return NULL;
    }
    json_array_foreach(axes, index, value) {
        const char *axis = get_text(value, 1);
        unsigned bit;
        if (!axis || !strchr("xyz", axis[0])) {
            *ret_error = "home axes are x, y and z";
            json_decref(out);
            return NULL;
        }
        bit = 1u << (axis[0] - 'x');
        if (seen & bit)
            continue;
        seen |= bit;
        json_array_append_new(out, json_string(axis));
    }
    return json_pack("{s:o}", "axes", out);
}

static json_t *build_set_temperature(struct dispatch *d, json_t *args, json_t *kwargs,
                                     const char **ret_error)
{
    const struct proto_printer *printer = d->printer;
    const char *heater = get_text(json_array_get(args, 0), 8);
    int tools = printer->shared_nozzle ? 1 : printer->extruders;
    double limit = 0;
    double value;

    (void)kwargs;
    if (heater && strcmp(heater, "bed") == 0 && printer->heated_bed) {
        limit = heater_limit(printer->max_bed_temp, PROTO_MAX_BED_TEMP);
    } else if (heater && strcmp(heater, "chamber") == 0 && printer->heated_chamber) {
        limit = heater_limit(printer->max_chamber_temp, PROTO_MAX_CHAMBER_TEMP);
    } else if (heater && strncmp(heater, "tool", 4) == 0 && heater[4] && strlen(heater) <= 6 &&
               isdigit((unsigned char)heater[4]) && (!heater[5] || isdigit((unsigned char)heater[5])) &&
               (heater[4] != '0' || !heater[5]) && strtol(heater + 4, NULL, 10) < tools) {
        limit = heater_limit(printer->max_tool_temp, PROTO_MAX_TOOL_TEMP);
    } else {
        char last_tool[24] = "";

        if (tools > 1)
            snprintf(last_tool, sizeof(last_tool), "..tool%d", tools - 1);
        snprintf(d->error, sizeof(d->error),
                 "this printer's heaters are tool0%s%s%s (see its printer profile)", last_tool,
                 printer->heated_bed ? ", bed" : "", printer->heated_chamber ? ", chamber" : "");
        *ret_error = d->error;
        return NULL;
    }
    if (!get_number(json_array_get(args, 1), 0, limit, &value)) {
        snprintf(d->error, sizeof(d->error), "temperature out of range (0 to %.0f for %s)", limit,
                 heater);
        *ret_error = d->error;
        return NULL;
    }
    return json_pack("{s:s, s:f}", "heater", heater, "value", value);
}

static json_t *build_commands(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    json_t *first = json_array_get(args, 0);
    json_t *lines = json_array();
    json_t *pieces = NULL;
    size_t index;
    json_t *piece;

    (void)kwargs;
    if (!lines)
        return NULL;
    if (json_is_string(first)) {
        pieces = json_pack("[O]", first);
    } else if (json_is_array(first) && json_array_size(first) <= PROTO_MAX_GCODE_LINES) {
        pieces = json_incref(first);
    } else {
        *ret_error = "commands needs a string or a list of strings";
        goto fail;
    }
    json_array_foreach(pieces, index, piece) {
        const char *text = json_is_string(piece) ? json_string_value(piece) : NULL;
        size_t total = text ? json_string_length(piece) : 0;
        size_t start = 0;

        if (!text || strlen(text) != total) {
            *ret_error = "commands must be strings";
            goto fail;
        }
        while (start <= total) {
            const char *line = text + start;
            const char *newline = memchr(line, '\n', total - start);
            size_t len = newline ? (size_t)(newline - line) : total - start;
            size_t trimmed = len;
            const char *comment = memchr(line, ';', len);

            if (comment)
                trimmed = (size_t)(comment - line);
            while (trimmed > 0 && (line[trimmed - 1] == ' ' || line[trimmed - 1] == '\r' ||
                                   line[trimmed - 1] == '\t'))
                trimmed--;
            while (trimmed > 0 && (*line == ' ' || *line == '\t')) {
                line++;
                trimmed--;
            }
            if (trimmed > 0) {
                if (json_array_size(lines) >= PROTO_MAX_GCODE_LINES) {
                    *ret_error = "too many G-code lines";
                    goto fail;
                }
                if (trimmed > PROTO_MAX_GCODE_LINE || !proto_text_is_printable(line, trimmed)) {
                    *ret_error = "a G-code line is too long or has control characters";
                    goto fail;
                }
                json_array_append_new(lines, json_stringn(line, trimmed));
            }
            if (!newline)
                break;
            start += len + 1;
        }
    }
    if (json_array_size(lines) == 0) {
        *ret_error = "no G-code to send";
        goto fail;
    }
    /* Raw G-code is the owner's explicit trust in the server: sent as is. */
    if (!d->proto->options.allow_raw_gcode) {
        switch (proto_gcode_check_lines(&d->proto->budget, d->printer, lines, d->error,
                                        sizeof(d->error), ret_error)) {
        case PROTO_GCODE_ALLOWED:
            break;
        case PROTO_GCODE_NOMEM:
            d->nomem = true;
            goto fail;
        case PROTO_GCODE_REFUSED:
            goto fail;
        }
    }
    json_decref(pieces);
    return json_pack("{s:o}", "lines", lines);

fail:
    json_decref(pieces);
    json_decref(lines);
    return NULL;
}

static json_t *build_select_file(struct dispatch *d, json_t *args, json_t *kwargs,
                                 const char **ret_error)
{
    const char *path = get_storage_path(json_array_get(args, 0), false);
    json_t *sd = json_array_get(args, 1);
    bool print = false;

    (void)d;
    if (!path) {
        *ret_error = "select_file needs a relative path inside OctoPrint's storage";
        return NULL;
    }
    if (sd && !json_is_null(sd) && !json_is_false(sd)) {
        *ret_error = "files on the printer's SD card cannot be selected remotely";
        return NULL;
    }
    if (json_is_object(kwargs) && json_object_get(kwargs, "printAfterSelect") &&
        !get_flag(json_object_get(kwargs, "printAfterSelect"), &print)) {
        *ret_error = "printAfterSelect must be a boolean";
        return NULL;
    }
    return json_pack("{s:s, s:b}", "path", path, "print", print);
}

static json_t *build_connect(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    static const long baudrates[] = {9600, 19200, 38400, 57600, 115200, 230400, 250000,
                                     500000, 1000000};
    json_t *port = json_array_get(args, 0);
    json_t *baud = json_array_get(args, 1);
    const char *port_text = NULL;
    long baudrate = 0;

    (void)d;
    (void)kwargs;
    if (port && !json_is_null(port)) {
        port_text = get_text(port, 128);
        if (!port_text) {
            *ret_error = "connect: port must be a short string";
            return NULL;
        }
    }
    if (baud && !json_is_null(baud)) {
        bool known = false;
        if (json_is_integer(baud)) {
            baudrate = (long)json_integer_value(baud);
            for (size_t i = 0; i < sizeof(baudrates) / sizeof(baudrates[0]); i++)
                known = known || baudrates[i] == baudrate;
        }
        if (!known) {
            *ret_error = "connect: unsupported baud rate";
            return NULL;
        }
    }
    return json_pack("{s:o, s:o}", "port", port_text ? json_string(port_text) : json_null(),
                     "baudrate", baudrate ? json_integer(baudrate) : json_null());
}

static json_t *build_no_params(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    (void)d;
    (void)args;
    (void)kwargs;
    (void)ret_error;
    return json_object();
}

static json_t *build_list_files(struct dispatch *d, json_t *args, json_t *kwargs, const char **ret_error)
{
    const char *path = "";
    const char *filter = NULL;
    bool recursive = false;
    double level = 1;
    json_t *value;

    (void)d;
    (void)args;
    if (kwargs && !json_is_object(kwargs)) {
        *ret_error = "list_files needs keyword arguments";
        return NULL;
    }
    value = json_object_get(kwargs, "path");
    if (value && !json_is_null(value) && !(path = get_storage_path(value, true))) {
        *ret_error = "list_files: bad path";
        return NULL;
    }
    value = json_object_get(kwargs, "recursive");
    if (value && !get_flag(value, &recursive)) {
        *ret_error = "list_files: recursive must be a boolean";
        return NULL;
    }
    value = json_object_get(kwargs, "level");
    if (value && !json_is_null(value) && !get_number(value, 0, 10, &level)) {
        *ret_error = "list_files: level must be 0 to 10";
        return NULL;
    }
    value = json_object_get(kwargs, "filter");
    if (value && !json_is_null(value) && !(filter = get_text(value, 64))) {
        *ret_error = "list_files: bad filter";
        return NULL;
    }
    return json_pack("{s:s, s:b, s:i, s:o}", "path", path, "recursive", recursive, "level",
                     (int)level, "filter", filter ? json_string(filter) : json_null());
}

/* The name the file is stored under: the server's safe_filename reduced to
 * [A-Za-z0-9._-] (anything else, a '/' included, becomes '_'), no leading
 * dot, at most PROTO_MAX_SAFE_NAME bytes, with a G-code extension (".gcode"
 * added when it has none). Nothing of a path from the server survives. */
static bool make_safe_name(const char *name, char *out, size_t size)
{
    static const char *const extensions[] = {".gcode", ".gco", ".g"};
    size_t len = 0;
    bool known = false;

    while (*name == '.' || *name == '/' || *name == '\\')
        name++;
    for (; *name && len + 1 < size && len < PROTO_MAX_SAFE_NAME - 6; name++) {
        unsigned char c = (unsigned char)*name;
        out[len++] = (isalnum(c) && c < 0x80) || c == '.' || c == '-' || c == '_' ? (char)c : '_';
    }
    out[len] = '\0';
    if (len == 0)
        return false;
    for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++) {
        size_t ext = strlen(extensions[i]);
        known = known || (len > ext && strcasecmp(out + len - ext, extensions[i]) == 0);
    }
    if (!known && len + 7 <= size)
        memcpy(out + len, ".gcode", 7);
    return true;
}

static json_t *build_download(struct dispatch *d, json_t *args, json_t *kwargs,
                              const char **ret_error)
{
    json_t *file = json_array_get(args, 0);
    json_t *id = json_object_get(file, "id");
    const char *url = get_text(json_object_get(file, "url"), PROTO_MAX_DOWNLOAD_URL);
    const char *filename = get_text(json_object_get(file, "filename"), 255);
    const char *safe_filename = get_text(json_object_get(file, "safe_filename"), 255);
    char safe_name[PROTO_MAX_SAFE_NAME + 1];

    (void)kwargs;
    if (!d->printer->operational) {
        *ret_error = "Printer busy: download needs a connected, operational printer";
        return NULL;
    }
    if (!json_is_object(file) || json_array_size(args) != 1) {
        *ret_error = "download needs one file object";
        return NULL;
    }
    if (!json_is_integer(id) || json_integer_value(id) < 1) {
        *ret_error = "download: id must be a positive integer";
        return NULL;
    }
    if (!url || !filename) {
        *ret_error = "download needs a url and a filename";
        return NULL;
    }
    if (!make_safe_name(safe_filename ? safe_filename : filename, safe_name, sizeof(safe_name))) {
        *ret_error = "download: no usable file name";
        return NULL;
    }
    return json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)json_integer_value(id), "url", url,
                     "filename", filename, "safe_name", safe_name);
}

/* mid_print: allowed while a print runs or is paused (commands then checks
 * each line by its kind). */
static const struct passthru_entry {
    const char *target;
    const char *func;
    const char *call;
    passthru_builder build;
    bool mid_print;
} passthru_allow_list[] = {
    {"_printer", "jog", "jog", build_jog, false},
    {"_printer", "home", "home", build_home, false},
    {"_printer", "set_temperature", "set_temperature", build_set_temperature, true},
    {"_printer", "commands", "commands", build_commands, true},
    {"_printer", "select_file", "select_file", build_select_file, false},
    {"_printer", "connect", "connect", build_connect, false},
    {"_printer", "get_connection_options", "get_connection_options", build_no_params, true},
    {"_file_manager", "list_files", "list_files", build_list_files, true},
    {"file_downloader", "download", "download", build_download, false},
};

const char *proto_passthru_call(size_t index)
{
    if (index >= sizeof(passthru_allow_list) / sizeof(passthru_allow_list[0]))
        return NULL;
    return passthru_allow_list[index].call;
}

static bool ref_seen_before(struct proto *proto, const char *ref)
{
    for (size_t i = 0; i < PROTO_REF_MEMORY; i++)
        if (proto->refs[i][0] && strcmp(proto->refs[i], ref) == 0)
            return true;
    snprintf(proto->refs[proto->ref_next], sizeof(proto->refs[0]), "%s", ref);
    proto->ref_next = (proto->ref_next + 1) % PROTO_REF_MEMORY;
    return false;
}

static void handle_passthru(struct dispatch *d, json_t *passthru)
{
    const char *ref;
    const char *target;
    const char *func;
    json_t *args;
    json_t *kwargs;
    const char *error = NULL;
    json_t *params;

    if (!json_is_object(passthru)) {
        reject(d, "passthru is not an object");
        return;
    }
    ref = get_text(json_object_get(passthru, "ref"), PROTO_MAX_REF);
    if (!ref) {
        reject(d, "passthru without a valid ref");
        return;
    }
    if (ref_seen_before(d->proto, ref))
        return; /* the same call arrived twice: answer it once */
    target = get_text(json_object_get(passthru, "target"), 64);
    func = get_text(json_object_get(passthru, "func"), 64);
    args = json_object_get(passthru, "args");
    kwargs = json_object_get(passthru, "kwargs");
    if (!args || json_is_null(args))
        args = NULL;
    if (!kwargs || json_is_null(kwargs))
        kwargs = NULL;
    if (!target || !func) {
        passthru_error(d, ref, "passthru needs a target and a func");
        return;
    }
    if ((args && !json_is_array(args)) || (kwargs && !json_is_object(kwargs))) {
        passthru_error(d, ref, "args must be a list and kwargs an object");
        return;
    }
    for (size_t i = 0; i < sizeof(passthru_allow_list) / sizeof(passthru_allow_list[0]); i++) {
        const struct passthru_entry *entry = &passthru_allow_list[i];
        if (strcmp(entry->target, target) != 0 || strcmp(entry->func, func) != 0)
            continue;
        if (!entry->mid_print && d->printer->state != PROTO_PRINTER_IDLE) {
            passthru_error(d, ref, not_while_printing(d, entry->func));
            return;
        }
        params = entry->build(d, args, kwargs, &error);
        if (!params) {
            if (error)
                passthru_error(d, ref, error);
            else
                d->nomem = true;
            return;
        }
        add_action(d, json_pack("{s:s, s:s, s:s, s:o}", "action", "passthru", "ref", ref,
                                "call", entry->call, "params", params));
        return;
    }
    passthru_error(d, ref, "not allowed");
}

enum proto_result proto_dispatch(struct proto *proto, const struct proto_printer *printer,
                                 const char *message, size_t len, char **ret_actions,
                                 size_t *ret_len)
{
    enum proto_result result = PROTO_OK;
    struct proto_printer known;
    struct dispatch d = {.proto = proto, .printer = &known};
    json_t *root = NULL;
    json_t *value;
    json_error_t error;
    char *text = NULL;

    if (!proto || !printer || !message || !ret_actions || !ret_len || len > PROTO_MAX_MESSAGE ||
        printer->state < PROTO_PRINTER_IDLE || printer->state >= PROTO_PRINTER_STATE_MAX)
        return PROTO_ERR_INVALID;
    known = *printer;
    if (known.extruders < 1)
        known.extruders = 1;
    if (known.extruders > PROTO_MAX_TOOLS)
        known.extruders = PROTO_MAX_TOOLS;
    proto_budget_update(&proto->budget, &known);
    root = json_loadb(message, len, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        result = PROTO_ERR_PARSE;
        goto out;
    }
    if (!json_is_object(root)) {
        result = PROTO_ERR_NOT_OBJECT;
        goto out;
    }
    d.actions = json_array();
    if (!d.actions) {
        result = PROTO_ERR_NOMEM;
        goto out;
    }
    /* Known keys only; "type", "as_binary" and anything new are ignored. */
    value = json_object_get(root, "remote_status");
    if (value)
        handle_remote_status(&d, value);
    value = json_object_get(root, "commands");
    if (value)
        handle_commands(&d, value);
    value = json_object_get(root, "passthru");
    if (value)
        handle_passthru(&d, value);
    if (d.nomem) {
        result = PROTO_ERR_NOMEM;
        goto out;
    }
    text = json_dumps(d.actions, JSON_COMPACT);
    if (!text) {
        result = PROTO_ERR_NOMEM;
        goto out;
    }
    *ret_len = strlen(text);
    *ret_actions = text;

out:
    json_decref(d.actions);
    json_decref(root);
    return result;
}
