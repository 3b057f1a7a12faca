/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * farm: the print farm's provisioning file (YAML, read with libyaml through
 * native/common/yamlfield.h). One file sets the plugin's settings for every
 * OctoPrint instance of a farm, with overrides per instance:
 *
 *   version: 1                         (required; the only version)
 *   server:
 *     url: https://obico.example.com   server_url (the host rule of hostrule.h,
 *                                       with the effective allow_cleartext_lan)
 *     ca_file: /etc/ssl/farm-ca.pem    ca_file: an absolute path, or ""
 *     allow_cleartext_lan: false       allow_cleartext_lan
 *   detection:
 *     enabled: true                    detection_enabled
 *     action: pause                    notify | pause | pause_heaters_off | cancel
 *     sensitivity: 1.0                 0.2 .. 2
 *     frame_interval: 10               seconds, an integer 1 .. 120
 *     model: /srv/models/helper.yaml   model_config: an absolute path, or ""
 *     shared_helper: false             shared_helper: the instances of this host's
 *                                       user share one tsd-helper (README, "One
 *                                       detector per host"); $TSD_SHARED_HELPER,
 *                                       where set, decides instead
 *   remote:
 *     allow_raw_gcode: false           allow_raw_gcode
 *     max_tool_temp: 260               0 .. 320 (PROTO_MAX_TOOL_TEMP)
 *     max_bed_temp: 100                0 .. 150
 *     max_chamber_temp: 60             0 .. 90
 *     calls: [jog, home, ...]          remote_calls: the passthru calls the
 *                                       server may make (proto_passthru_call())
 *   webcam: classic                    webcam: the name of one of OctoPrint's webcams
 *   printers:                          per-instance overrides, keyed by the
 *     prusa-01:                         instance's name: the same sections and
 *       detection: {action: cancel}     webcam, nothing else
 *
 * Every key is known (an unknown one is an error, so a typo is reported, not
 * ignored), and a key that would hold a secret (token, secret, password,
 * api_key) is refused: a printer's token never goes into this file; each
 * printer is linked with `octoprint plugins tsd:link`. The file is bounded:
 * FARM_MAX_FILE_BYTES, FARM_MAX_DEPTH nested collections, no aliases, one
 * document, FARM_MAX_PRINTERS printers, texts of FARM_MAX_TEXT bytes. A bad
 * file is refused whole, with the field, its line and its column.
 */
#ifndef TSD_FARM_H
#define TSD_FARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum farm_result {
    FARM_OK = 0,
    FARM_ERR_INVALID, /* bad argument */
    FARM_ERR_IO,      /* the file could not be read, or is too large */
    FARM_ERR_SYNTAX,  /* not YAML, not a mapping, too deep, an alias */
    FARM_ERR_FIELD,   /* a missing, unknown, repeated, secret or invalid field */
    FARM_ERR_NOMEM,
    FARM_RESULT_MAX
};

#define FARM_MAX_FILE_BYTES (64u * 1024u)
/* printers > name > section > calls: the deepest a valid file nests. */
#define FARM_MAX_DEPTH 5u
#define FARM_MAX_PRINTERS 128u
#define FARM_MAX_NAME 64u
#define FARM_MAX_TEXT 1024u
#define FARM_VERSION 1

/* The settings a farm file can set, in the order the file lists them. */
enum farm_setting {
    FARM_SERVER_URL = 0,
    FARM_CA_FILE,
    FARM_ALLOW_CLEARTEXT_LAN,
    FARM_DETECTION_ENABLED,
    FARM_ACTION,
    FARM_SENSITIVITY,
    FARM_FRAME_INTERVAL,
    FARM_MODEL_CONFIG,
    FARM_SHARED_HELPER,
    FARM_ALLOW_RAW_GCODE,
    FARM_MAX_TOOL_TEMP,
    FARM_MAX_BED_TEMP,
    FARM_MAX_CHAMBER_TEMP,
    FARM_REMOTE_CALLS,
    FARM_WEBCAM,
    FARM_SETTING_MAX
};

enum farm_kind {
    FARM_KIND_TEXT = 0,
    FARM_KIND_BOOL,
    FARM_KIND_NUMBER,  /* frame_interval is a whole number */
    FARM_KIND_CALLS,   /* a set of passthru calls */
};

struct farm_value {
    bool set;
    bool flag;              /* FARM_KIND_BOOL */
    double number;          /* FARM_KIND_NUMBER */
    uint32_t calls;         /* FARM_KIND_CALLS: bit i is proto_passthru_call(i) */
    const char *text;       /* FARM_KIND_TEXT: (transfer none) owned by the farm */
    unsigned long line;     /* where the file gives it, from 1 */
    unsigned long column;
};

struct farm_policy {
    struct farm_value values[FARM_SETTING_MAX];
};

struct farm;

const char *farm_result_str(enum farm_result result);

/* The plugin's setting (its key in config.yaml) and the file's "section.key". */
const char *farm_setting_name(enum farm_setting setting);
const char *farm_setting_path(enum farm_setting setting);
enum farm_kind farm_setting_kind(enum farm_setting setting);

/* Parses a farm file's bytes. On FARM_OK *ret_farm is the farm (farm_free()
 * it); otherwise *ret_farm is untouched and reterr says what, where. */
enum farm_result farm_parse(const char *text, size_t len, struct farm **ret_farm, char *reterr,
                            size_t reterr_len);

/* Reads and parses the file at path; reterr starts with the path. */
enum farm_result farm_load(const char *path, struct farm **ret_farm, char *reterr,
                           size_t reterr_len);

/* Accepts NULL. */
void farm_free(struct farm *farm);

size_t farm_printer_count(const struct farm *farm);

/* (transfer none) The index-th printer's name, or NULL. */
const char *farm_printer_name(const struct farm *farm, size_t index);

/* The settings for the instance called instance (NULL: none): the farm's,
 * with that printer's overrides. Returns whether the file names it. The
 * texts stay valid while the farm does. */
bool farm_resolve(const struct farm *farm, const char *instance, struct farm_policy *ret_policy);

#endif
