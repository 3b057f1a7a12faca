/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the server allow-list's rules (native/core/proto.c, proto_gcode.c): what
 * the printer's state allows (sec03), the G-code rules and budgets (sec04)
 * and the heaters of the printer profile (sec12). An optional argument runs
 * only the tests whose names contain it (meson registers one test per issue
 * number). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "proto.h"

static const char *filter;

#define RUN(fn)                                  \
    do {                                         \
        if (!filter || strstr(#fn, filter))      \
            RUN_TEST(fn);                        \
    } while (0)

static struct proto_printer idle_printer(void)
{
    return (struct proto_printer){
        .state = PROTO_PRINTER_IDLE, .print_id = -1, .absolute_xyz = 1, .absolute_e = 1,
        .extruders = 1, .heated_bed = 1, .max_tool_temp = PROTO_MAX_TOOL_TEMP,
        .max_bed_temp = PROTO_MAX_BED_TEMP, .max_chamber_temp = PROTO_MAX_CHAMBER_TEMP,
    };
}

/* Dispatches one passthru call to target and returns its action (to json_decref). */
static json_t *call_target(struct proto *proto, const struct proto_printer *printer,
                           const char *target, const char *func, const char *args_json)
{
    static unsigned serial;
    char message[4096];
    char *actions = NULL;
    size_t len = 0;
    json_t *root;
    json_t *action = NULL;

    snprintf(message, sizeof(message),
             "{\"passthru\":{\"ref\":\"r%u\",\"target\":\"%s\",\"func\":\"%s\",\"args\":%s}}",
             serial++, target, func, args_json);
    if (proto_dispatch(proto, printer, message, strlen(message), &actions, &len) != PROTO_OK)
        return NULL;
    root = json_loadb(actions, len, 0, NULL);
    free(actions);
    if (root && json_array_size(root) == 1)
        action = json_incref(json_array_get(root, 0));
    json_decref(root);
    return action;
}

static json_t *call(struct proto *proto, const struct proto_printer *printer, const char *func,
                    const char *args_json)
{
    return call_target(proto, printer, "_printer", func, args_json);
}

/* 1: passed on (and *ret_lines the lines sent, as JSON, if asked), 0: refused. */
static int accepted(struct proto *proto, const struct proto_printer *printer, const char *func,
                    const char *args_json, char **ret_lines)
{
    json_t *action = call(proto, printer, func, args_json);
    int ok = action && strcmp(json_string_value(json_object_get(action, "action")), "passthru") == 0;

    if (ok && ret_lines)
        *ret_lines = json_dumps(json_object_get(json_object_get(action, "params"), "lines"),
                                JSON_COMPACT);
    json_decref(action);
    return ok;
}

static int gcode(struct proto *proto, const struct proto_printer *printer, const char *lines_json)
{
    char args[1024];

    snprintf(args, sizeof(args), "[%s]", lines_json);
    return accepted(proto, printer, "commands", args, NULL);
}

static struct proto *new_proto(void)
{
    struct proto_options options = {0};
    struct proto *proto = NULL;

    if (proto_new(&options, &proto) != PROTO_OK)
        abort();
    return proto;
}

static void test_sec03_motion_only_while_idle(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();
    json_t *action;

    CHECK(accepted(proto, &printer, "jog", "[{\"x\":10}]", NULL));
    CHECK(accepted(proto, &printer, "home", "[[\"x\"]]", NULL));
    CHECK(accepted(proto, &printer, "connect", "[\"VIRTUAL\",115200]", NULL));
    CHECK(accepted(proto, &printer, "select_file", "[\"a.gcode\",null]", NULL));
    CHECK(gcode(proto, &printer, "\"M84\""));
    CHECK(gcode(proto, &printer, "\"T0\""));
    for (int state = PROTO_PRINTER_PRINTING; state <= PROTO_PRINTER_PAUSED; state++) {
        printer.state = (enum proto_printer_state)state;
        CHECK(!accepted(proto, &printer, "jog", "[{\"x\":10}]", NULL));
        CHECK(!accepted(proto, &printer, "home", "[[\"x\"]]", NULL));
        CHECK(!accepted(proto, &printer, "connect", "[null,null]", NULL));
        CHECK(!accepted(proto, &printer, "select_file", "[\"a.gcode\",null]", NULL));
        CHECK(!gcode(proto, &printer, "\"M84\""));
        CHECK(!gcode(proto, &printer, "\"M18 E\""));
        CHECK(!gcode(proto, &printer, "\"T0\""));
        CHECK(!gcode(proto, &printer, "\"G91\""));
        CHECK(!gcode(proto, &printer, "\"M83\""));
        CHECK(!gcode(proto, &printer, "[\"M106 S100\",\"M83\",\"G1 E2\"]"));
        /* What cannot move the print is allowed. */
        CHECK(gcode(proto, &printer, "[\"M106 S100\",\"M107\",\"M220 S120\",\"M221 S90\"]"));
        CHECK(gcode(proto, &printer, "[\"M117 hello\",\"M105\",\"M114\",\"M400\",\"M290 Z0.02\"]"));
        CHECK(gcode(proto, &printer, "\"M112\""));
        CHECK(accepted(proto, &printer, "set_temperature", "[\"tool0\",200]", NULL));
        CHECK(accepted(proto, &printer, "get_connection_options", "[]", NULL));
        action = call(proto, &printer, "jog", "[{\"x\":1}]");
        CHECK(action && strstr(json_string_value(json_object_get(action, "error")),
                               state == PROTO_PRINTER_PAUSED ? "while paused" : "while printing"));
        json_decref(action);
    }
    proto_free(proto);
}

static void test_sec04_extrusion_is_relative_and_bounded(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();
    char *lines = NULL;

    /* Absolute extrusion (the printer's mode, or M82 in the call) is refused. */
    CHECK(!gcode(proto, &printer, "\"G1 E-100\""));
    CHECK(!gcode(proto, &printer, "[\"M82\",\"G1 E-100\"]"));
    CHECK(!gcode(proto, &printer, "[\"M83\",\"G90\",\"G1 E5\"]")); /* G90 sets E absolute too */
    CHECK(!gcode(proto, &printer, "[\"M83\",\"M82\",\"G1 E5\"]"));
    /* Relative: allowed, and the printer's modes are put back after. */
    CHECK(accepted(proto, &printer, "commands", "[[\"M83\",\"G1 E5 F300\"]]", &lines));
    CHECK(lines && strcmp(lines, "[\"M83\",\"G1 E5 F300\",\"G90\",\"M82\"]") == 0);
    free(lines);
    lines = NULL;
    CHECK(accepted(proto, &printer, "commands", "[[\"G91\",\"G1 E-5\"]]", &lines));
    CHECK(lines && strcmp(lines, "[\"G91\",\"G1 E-5\",\"G90\",\"M82\"]") == 0);
    free(lines);
    lines = NULL;
    /* A printer already in relative extrusion needs no M83 and keeps its modes. */
    printer.absolute_e = 0;
    CHECK(accepted(proto, &printer, "commands", "[\"G1 E1\"]", &lines));
    CHECK(lines && strcmp(lines, "[\"G1 E1\"]") == 0);
    free(lines);
    /* 100 mm per call, counted in both directions. */
    CHECK(!gcode(proto, &printer, "[\"G1 E60\",\"G1 E-60\"]"));
    CHECK(!gcode(proto, &printer, "\"G1 E101\""));
    proto_free(proto);
}

static void test_sec04_extrusion_per_minute(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();

    printer.absolute_e = 0;
    printer.now_ms = 1000;
    CHECK(gcode(proto, &printer, "\"G1 E100\""));
    CHECK(gcode(proto, &printer, "\"G1 E-100\""));
    CHECK(!gcode(proto, &printer, "\"G1 E1\"")); /* 200 mm used */
    printer.now_ms += 15000;                     /* a quarter of a minute: 50 mm back */
    CHECK(gcode(proto, &printer, "\"G1 E50\""));
    CHECK(!gcode(proto, &printer, "\"G1 E1\""));
    printer.now_ms += 10 * 60000; /* never more than a minute's worth */
    CHECK(gcode(proto, &printer, "\"G1 E100\""));
    CHECK(gcode(proto, &printer, "\"G1 E100\""));
    CHECK(!gcode(proto, &printer, "\"G1 E1\""));
    proto_free(proto);
}

static void test_sec04_no_feed_rate_only_moves(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();

    CHECK(!proto_gcode_line_is_safe("G1 F100", 7));
    CHECK(!proto_gcode_line_is_safe("G0 F9000", 8));
    CHECK(!proto_gcode_line_is_safe("G1 E1 E2", 8));
    CHECK(!proto_gcode_line_is_safe("G1 E1 F0", 8));
    CHECK(proto_gcode_line_is_safe("G1 E1 F300", 10));
    CHECK(!gcode(proto, &printer, "[\"M83\",\"G1 F100\"]"));
    proto_free(proto);
}

static void test_sec04_babystep_total_per_print(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();

    printer.state = PROTO_PRINTER_PRINTING;
    printer.print_id = 1;
    CHECK(!proto_gcode_line_is_safe("M290 Z-0.6", 10));
    CHECK(!gcode(proto, &printer, "[\"M290 Z-0.5\",\"M290 Z-0.5\",\"M290 Z-0.5\"]"));
    CHECK(gcode(proto, &printer, "[\"M290 Z-0.5\",\"M290 Z-0.3\"]"));
    CHECK(gcode(proto, &printer, "\"M290 Z-0.2\"")); /* -1.0 mm: the limit */
    CHECK(!gcode(proto, &printer, "\"M290 Z-0.01\""));
    printer.state = PROTO_PRINTER_PAUSED; /* the same print */
    CHECK(!gcode(proto, &printer, "\"M290 Z-0.01\""));
    CHECK(gcode(proto, &printer, "\"M290 Z0.5\"")); /* back up is fine */
    CHECK(gcode(proto, &printer, "\"M290 Z-0.5\""));
    CHECK(!gcode(proto, &printer, "\"M290 Z-0.01\""));
    printer.print_id = 2; /* a new print, a new total */
    printer.state = PROTO_PRINTER_PRINTING;
    CHECK(gcode(proto, &printer, "\"M290 Z-0.5\""));
    proto_free(proto);
}

static void test_sec12_heaters_of_the_profile(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();

    printer.heated_bed = 0;
    CHECK(accepted(proto, &printer, "set_temperature", "[\"tool0\",200]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool1\",200]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool00\",200]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"bed\",50]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"chamber\",40]", NULL));
    CHECK(!gcode(proto, &printer, "\"T1\""));
    printer.extruders = 3;
    printer.heated_bed = 1;
    printer.heated_chamber = 1;
    CHECK(accepted(proto, &printer, "set_temperature", "[\"tool2\",200]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool3\",200]", NULL));
    CHECK(accepted(proto, &printer, "set_temperature", "[\"bed\",50]", NULL));
    CHECK(accepted(proto, &printer, "set_temperature", "[\"chamber\",40]", NULL));
    CHECK(gcode(proto, &printer, "\"T2\""));
    CHECK(!gcode(proto, &printer, "\"T3\""));
    /* A shared nozzle: three extruders, one heater. */
    printer.shared_nozzle = 1;
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool1\",200]", NULL));
    CHECK(gcode(proto, &printer, "\"T2\""));
    proto_free(proto);
}

static void test_sec12_owner_limits_below_the_ceilings(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();

    printer.max_tool_temp = 250;
    printer.max_bed_temp = 1000; /* never above the ceiling */
    CHECK(accepted(proto, &printer, "set_temperature", "[\"tool0\",250]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool0\",251]", NULL));
    CHECK(accepted(proto, &printer, "set_temperature", "[\"bed\",150]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"bed\",151]", NULL));
    printer.max_tool_temp = -5; /* not a limit: only "off" */
    CHECK(accepted(proto, &printer, "set_temperature", "[\"tool0\",0]", NULL));
    CHECK(!accepted(proto, &printer, "set_temperature", "[\"tool0\",1]", NULL));
    proto_free(proto);
}

/* file_downloader.download: idle and operational only; the stored name is
 * made here and never carries a path. */
static void test_cloudprint_download_allowed_only_when_ready(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();
    static const char file[] =
        "[{\"id\":42,\"url\":\"https://storage.example/f?sig=1\",\"filename\":\"My part.gcode\","
        "\"safe_filename\":\"My_part.gcode\"}]";
    json_t *action;
    json_t *params;
    const char *error;

    /* Not operational (not connected, or in an error state): refused. */
    action = call_target(proto, &printer, "file_downloader", "download", file);
    CHECK(action && strcmp(json_string_value(json_object_get(action, "action")), "passthru_error") == 0);
    error = action ? json_string_value(json_object_get(action, "error")) : NULL;
    CHECK(error && strstr(error, "Printer busy"));
    json_decref(action);

    printer.operational = 1;
    action = call_target(proto, &printer, "file_downloader", "download", file);
    CHECK(action && strcmp(json_string_value(json_object_get(action, "action")), "passthru") == 0);
    params = json_object_get(action, "params");
    CHECK(json_integer_value(json_object_get(params, "id")) == 42);
    CHECK(strcmp(json_string_value(json_object_get(action, "call")), "download") == 0);
    CHECK(strcmp(json_string_value(json_object_get(params, "url")), "https://storage.example/f?sig=1") == 0);
    CHECK(strcmp(json_string_value(json_object_get(params, "safe_name")), "My_part.gcode") == 0);
    json_decref(action);

    for (int state = PROTO_PRINTER_PRINTING; state <= PROTO_PRINTER_PAUSED; state++) {
        printer.state = (enum proto_printer_state)state;
        action = call_target(proto, &printer, "file_downloader", "download", file);
        error = action ? json_string_value(json_object_get(action, "error")) : NULL;
        CHECK(error && strstr(error, "not allowed while"));
        json_decref(action);
    }
    proto_free(proto);
}

static int call_ok(struct proto *proto, const struct proto_printer *printer, const char *args)
{
    json_t *action = call_target(proto, printer, "file_downloader", "download", args);
    int ok = action && strcmp(json_string_value(json_object_get(action, "action")), "passthru") == 0;

    json_decref(action);
    return ok;
}

static const char *download_safe_name(struct proto *proto, const struct proto_printer *printer,
                                      const char *safe_filename, char *out, size_t size)
{
    char args[1024];
    json_t *action;
    const char *name;

    snprintf(args, sizeof(args),
             "[{\"id\":1,\"url\":\"https://s.example/f\",\"filename\":\"x\",\"safe_filename\":\"%s\"}]",
             safe_filename);
    action = call_target(proto, printer, "file_downloader", "download", args);
    name = json_string_value(json_object_get(json_object_get(action, "params"), "safe_name"));
    snprintf(out, size, "%s", name ? name : "(refused)");
    json_decref(action);
    return out;
}

static void test_cloudprint_download_names_and_arguments(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();
    char name[256];
    char longest[400];

    printer.operational = 1;
    CHECK(strcmp(download_safe_name(proto, &printer, "../../etc/passwd", name, sizeof(name)),
                 "etc_passwd.gcode") == 0);
    CHECK(strcmp(download_safe_name(proto, &printer, "/abs/part.GCO", name, sizeof(name)),
                 "abs_part.GCO") == 0);
    CHECK(strcmp(download_safe_name(proto, &printer, ".hidden.g", name, sizeof(name)), "hidden.g") == 0);
    CHECK(strcmp(download_safe_name(proto, &printer, "caf\\u00e9 x.gcode", name, sizeof(name)),
                 "caf___x.gcode") == 0);
    CHECK(strcmp(download_safe_name(proto, &printer, "...", name, sizeof(name)), "(refused)") == 0);
    memset(longest, 'a', 300);
    longest[300] = '\0';
    CHECK(strlen(download_safe_name(proto, &printer, longest, name, sizeof(name))) <= PROTO_MAX_SAFE_NAME);
    CHECK(strstr(name, ".gcode") != NULL);
    /* Bad arguments: each an error, nothing passed on. */
    CHECK(!call_ok(proto, &printer, "[]"));
    CHECK(!call_ok(proto, &printer, "[\"https://s.example/f\"]"));
    CHECK(!call_ok(proto, &printer, "[{\"id\":\"7\",\"url\":\"https://s/f\",\"filename\":\"a\"}]"));
    CHECK(!call_ok(proto, &printer, "[{\"id\":0,\"url\":\"https://s/f\",\"filename\":\"a\"}]"));
    CHECK(!call_ok(proto, &printer, "[{\"id\":3,\"filename\":\"a\"}]"));
    CHECK(!call_ok(proto, &printer, "[{\"id\":3,\"url\":\"https://s/\\nf\",\"filename\":\"a\"}]"));
    CHECK(!call_ok(proto, &printer, "[{\"id\":3,\"url\":\"https://s/f\",\"filename\":\"a\"},{}]"));
    CHECK(call_ok(proto, &printer, "[{\"id\":3,\"url\":\"https://s/f\",\"filename\":\"a\"}]"));
    proto_free(proto);
}

static void test_bad_printer_facts(void)
{
    struct proto *proto = new_proto();
    struct proto_printer printer = idle_printer();
    char *actions = NULL;
    size_t len = 0;

    CHECK(proto_dispatch(proto, NULL, "{}", 2, &actions, &len) == PROTO_ERR_INVALID);
    printer.state = PROTO_PRINTER_STATE_MAX;
    CHECK(proto_dispatch(proto, &printer, "{}", 2, &actions, &len) == PROTO_ERR_INVALID);
    printer = idle_printer();
    printer.extruders = 0; /* at least one tool */
    CHECK(accepted(proto, &printer, "set_temperature", "[\"tool0\",200]", NULL));
    proto_free(proto);
}

int main(int argc, char **argv)
{
    filter = argc > 1 ? argv[1] : NULL;
    RUN(test_sec03_motion_only_while_idle);
    RUN(test_sec04_extrusion_is_relative_and_bounded);
    RUN(test_sec04_extrusion_per_minute);
    RUN(test_sec04_no_feed_rate_only_moves);
    RUN(test_sec04_babystep_total_per_print);
    RUN(test_sec12_heaters_of_the_profile);
    RUN(test_sec12_owner_limits_below_the_ceilings);
    RUN(test_bad_printer_facts);
    RUN(test_cloudprint_download_allowed_only_when_ready);
    RUN(test_cloudprint_download_names_and_arguments);
    return CHECK_DONE();
}
