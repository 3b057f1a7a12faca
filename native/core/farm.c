/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "farm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errtext.h"
#include "hostrule.h"
#include "proto.h"
#include "yamlfield.h"

/* Texts are copied out of the document; escapes can make a text longer
 * than the bytes that wrote it, so the pool is checked as it fills. */
#define FARM_POOL_BYTES (2u * FARM_MAX_FILE_BYTES)
#define FARM_MAX_FIELD_NAME (FARM_MAX_NAME + 64u)

struct farm_printer {
    char name[FARM_MAX_NAME + 1];
    struct farm_policy policy;
};

struct farm {
    struct farm_policy all;
    size_t num_printers;
    struct farm_printer printers[FARM_MAX_PRINTERS];
    size_t pool_used;
    char pool[FARM_POOL_BYTES];
};

enum text_rule {
    TEXT_NONE = 0,
    TEXT_URL,    /* hostrule_check_url() */
    TEXT_PATH,   /* "" or absolute */
    TEXT_NAME,   /* 1..FARM_MAX_NAME */
    TEXT_ACTION, /* one of actions[] */
};

static const char *const actions[] = {"notify", "pause", "pause_heaters_off", "cancel"};
static const char *const sections[] = {"server", "detection", "remote"};
#define NUM_SECTIONS (sizeof(sections) / sizeof(sections[0]))

static const struct farm_field {
    const char *section; /* NULL: at the top of a policy */
    const char *key;
    const char *path;    /* section.key, for messages */
    const char *setting; /* the plugin's setting */
    enum farm_kind kind;
    enum text_rule rule;
    bool integer;
    double min;
    double max;
} fields[FARM_SETTING_MAX] = {
#define TEXT(sec, name, setting_, rule_) \
    {.section = sec, .key = name, .path = sec "." name, .setting = setting_, \
     .kind = FARM_KIND_TEXT, .rule = rule_}
#define FLAG(sec, name, setting_) \
    {.section = sec, .key = name, .path = sec "." name, .setting = setting_, \
     .kind = FARM_KIND_BOOL}
#define NUMBER(sec, name, setting_, integer_, min_, max_) \
    {.section = sec, .key = name, .path = sec "." name, .setting = setting_, \
     .kind = FARM_KIND_NUMBER, .integer = integer_, .min = min_, .max = max_}
    [FARM_SERVER_URL] = TEXT("server", "url", "server_url", TEXT_URL),
    [FARM_CA_FILE] = TEXT("server", "ca_file", "ca_file", TEXT_PATH),
    [FARM_ALLOW_CLEARTEXT_LAN] = FLAG("server", "allow_cleartext_lan", "allow_cleartext_lan"),
    [FARM_DETECTION_ENABLED] = FLAG("detection", "enabled", "detection_enabled"),
    [FARM_ACTION] = TEXT("detection", "action", "action", TEXT_ACTION),
    [FARM_SENSITIVITY] = NUMBER("detection", "sensitivity", "sensitivity", false, 0.2, 2.0),
    [FARM_FRAME_INTERVAL] = NUMBER("detection", "frame_interval", "frame_interval", true, 1, 120),
    [FARM_MODEL_CONFIG] = TEXT("detection", "model", "model_config", TEXT_PATH),
    [FARM_SHARED_HELPER] = FLAG("detection", "shared_helper", "shared_helper"),
    [FARM_ALLOW_RAW_GCODE] = FLAG("remote", "allow_raw_gcode", "allow_raw_gcode"),
    [FARM_MAX_TOOL_TEMP] = NUMBER("remote", "max_tool_temp", "max_tool_temp", false, 0,
                                  PROTO_MAX_TOOL_TEMP),
    [FARM_MAX_BED_TEMP] = NUMBER("remote", "max_bed_temp", "max_bed_temp", false, 0,
                                 PROTO_MAX_BED_TEMP),
    [FARM_MAX_CHAMBER_TEMP] = NUMBER("remote", "max_chamber_temp", "max_chamber_temp", false, 0,
                                     PROTO_MAX_CHAMBER_TEMP),
    [FARM_REMOTE_CALLS] = {.section = "remote", .key = "calls", .path = "remote.calls",
                           .setting = "remote_calls", .kind = FARM_KIND_CALLS},
    [FARM_WEBCAM] = {.key = "webcam", .path = "webcam", .setting = "webcam",
                     .kind = FARM_KIND_TEXT, .rule = TEXT_NAME},
#undef TEXT
#undef FLAG
#undef NUMBER
};

struct parse_ctx {
    struct yamlfield_ctx yaml;
    struct farm *farm;
    const char *prefix; /* "printers.NAME." inside an override, else "" */
};

const char *farm_result_str(enum farm_result result)
{
    switch (result) {
    case FARM_OK: return "ok";
    case FARM_ERR_INVALID: return "invalid argument";
    case FARM_ERR_IO: return "the farm file could not be read";
    case FARM_ERR_SYNTAX: return "the farm file is not valid YAML";
    case FARM_ERR_FIELD: return "invalid field in the farm file";
    case FARM_ERR_NOMEM: return "out of memory";
    case FARM_RESULT_MAX: break;
    }
    return "unknown result";
}

static enum farm_result from_yamlfield(enum yamlfield_result result)
{
    switch (result) {
    case YAMLFIELD_OK: return FARM_OK;
    case YAMLFIELD_ERR_IO: return FARM_ERR_IO;
    case YAMLFIELD_ERR_SYNTAX: return FARM_ERR_SYNTAX;
    case YAMLFIELD_ERR_NOMEM: return FARM_ERR_NOMEM;
    }
    return FARM_ERR_INVALID;
}

const char *farm_setting_name(enum farm_setting setting)
{
    return setting < FARM_SETTING_MAX ? fields[setting].setting : NULL;
}

const char *farm_setting_path(enum farm_setting setting)
{
    return setting < FARM_SETTING_MAX ? fields[setting].path : NULL;
}

enum farm_kind farm_setting_kind(enum farm_setting setting)
{
    return setting < FARM_SETTING_MAX ? fields[setting].kind : FARM_KIND_TEXT;
}

/* "printers.NAME.section.key" inside an override. */
static const char *field_name(const struct parse_ctx *ctx, const char *path, char *buf,
                              size_t len)
{
    snprintf(buf, len, "%s%s", ctx->prefix, path);
    return buf;
}

static bool printable(const char *text)
{
    for (; *text; text++) {
        if ((unsigned char)*text < 0x20 || (unsigned char)*text > 0x7e)
            return false;
    }
    return true;
}

/* A key that would hold a secret: a printer's token has no place here. */
static bool secret_key(const char *key)
{
    static const char *const parts[] = {"token", "secret", "password", "passwd"};

    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (strcasestr(key, parts[i]))
            return true;
    }
    return strcasecmp(key, "api_key") == 0 || strcasecmp(key, "apikey") == 0;
}

/* The text of a mapping key, refused when it names a secret. */
static const char *key_text(const struct parse_ctx *ctx, const yaml_node_t *node)
{
    char quoted[YAMLFIELD_QUOTE_MAX + 1];
    const char *text = yamlfield_text(&ctx->yaml, "(key)", node, FARM_MAX_NAME);

    if (text && secret_key(text)) {
        yamlfield_error(&ctx->yaml, yamlfield_quote(text, quoted, sizeof(quoted)), node,
                        "a printer's token or any other secret never goes in the farm file; "
                        "link each printer with `octoprint plugins tsd:link`");
        return NULL;
    }
    return text;
}

static bool unknown_key(const struct parse_ctx *ctx, const char *text, const yaml_node_t *node)
{
    char quoted[YAMLFIELD_QUOTE_MAX + 1];
    char name[FARM_MAX_FIELD_NAME];

    snprintf(name, sizeof(name), "%s%s", ctx->prefix,
             yamlfield_quote(text, quoted, sizeof(quoted)));
    return yamlfield_error(&ctx->yaml, name, node, "unknown field");
}

static const char *pool_copy(struct farm *farm, const char *text)
{
    size_t len = strlen(text);
    char *copy;

    if (len + 1 > FARM_POOL_BYTES - farm->pool_used)
        return NULL;
    copy = farm->pool + farm->pool_used;
    memcpy(copy, text, len + 1);
    farm->pool_used += len + 1;
    return copy;
}

static bool get_text(const struct parse_ctx *ctx, const struct farm_field *field,
                     const char *name, const yaml_node_t *node, struct farm_value *value)
{
    const char *text = yamlfield_text(&ctx->yaml, name, node, FARM_MAX_TEXT);
    char reason[256];
    size_t index = 0;

    if (!text)
        return false;
    if (!printable(text))
        return yamlfield_error(&ctx->yaml, name, node, "must be printable ASCII");
    switch (field->rule) {
    case TEXT_URL:
        /* The cleartext part of the rule needs the effective opt-in: finish(). */
        if (hostrule_check_url(text, true, NULL, reason, sizeof(reason)) != HOSTRULE_OK)
            return yamlfield_error(&ctx->yaml, name, node, "%s", reason);
        break;
    case TEXT_PATH:
        if (text[0] != '\0' && text[0] != '/')
            return yamlfield_error(&ctx->yaml, name, node, "must be an absolute path or empty");
        break;
    case TEXT_NAME:
        if (text[0] == '\0' || strlen(text) > FARM_MAX_NAME)
            return yamlfield_error(&ctx->yaml, name, node, "must be 1 to %u characters",
                                   FARM_MAX_NAME);
        break;
    case TEXT_ACTION:
        if (!yamlfield_choice(&ctx->yaml, name, node, actions,
                              sizeof(actions) / sizeof(actions[0]), &index))
            return false;
        break;
    case TEXT_NONE:
        break;
    }
    value->text = pool_copy(ctx->farm, text);
    if (!value->text)
        return yamlfield_error(&ctx->yaml, name, node, "the file's texts are too long");
    return true;
}

static bool get_calls(const struct parse_ctx *ctx, const char *name, const yaml_node_t *node,
                      struct farm_value *value)
{
    char quoted[YAMLFIELD_QUOTE_MAX + 1];
    uint32_t calls = 0;

    if (!node || node->type != YAML_SEQUENCE_NODE)
        return yamlfield_error(&ctx->yaml, name, node,
                               "must be a list of the remote calls to allow");
    for (const yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        const yaml_node_t *call_node = yamlfield_node(&ctx->yaml, *item);
        const char *text = yamlfield_text(&ctx->yaml, name, call_node, FARM_MAX_NAME);
        size_t index = 0;
        const char *known;

        if (!text)
            return false;
        while ((known = proto_passthru_call(index)) != NULL && strcmp(known, text) != 0)
            index++;
        if (!known)
            return yamlfield_error(&ctx->yaml, name, call_node, "'%s' is not a remote call",
                                   yamlfield_quote(text, quoted, sizeof(quoted)));
        if (calls & (UINT32_C(1) << index))
            return yamlfield_error(&ctx->yaml, name, call_node, "'%s' is listed twice", text);
        calls |= UINT32_C(1) << index;
    }
    value->calls = calls;
    return true;
}

static bool set_value(const struct parse_ctx *ctx, enum farm_setting setting,
                      const yaml_node_t *key_node, const yaml_node_t *node,
                      struct farm_policy *policy)
{
    const struct farm_field *field = &fields[setting];
    struct farm_value *value = &policy->values[setting];
    char name[FARM_MAX_FIELD_NAME];
    bool ok = false;

    field_name(ctx, field->path, name, sizeof(name));
    if (value->set)
        return yamlfield_error(&ctx->yaml, name, key_node, "given twice");
    switch (field->kind) {
    case FARM_KIND_TEXT:
        ok = get_text(ctx, field, name, node, value);
        break;
    case FARM_KIND_BOOL:
        ok = yamlfield_bool(&ctx->yaml, name, node, &value->flag);
        break;
    case FARM_KIND_NUMBER:
        ok = yamlfield_number(&ctx->yaml, name, node, field->integer, field->min, field->max,
                              &value->number);
        break;
    case FARM_KIND_CALLS:
        ok = get_calls(ctx, name, node, value);
        break;
    }
    if (!ok)
        return false;
    value->set = true;
    value->line = (unsigned long)node->start_mark.line + 1;
    value->column = (unsigned long)node->start_mark.column + 1;
    return true;
}

/* The setting of section.key (section NULL: a top-level key), or
 * FARM_SETTING_MAX. */
static enum farm_setting find_setting(const char *section, const char *key)
{
    for (int i = 0; i < FARM_SETTING_MAX; i++) {
        const struct farm_field *field = &fields[i];

        if (strcmp(field->key, key) == 0 &&
            (section ? field->section && strcmp(field->section, section) == 0 : !field->section))
            return (enum farm_setting)i;
    }
    return FARM_SETTING_MAX;
}

static bool parse_section(const struct parse_ctx *ctx, const char *section,
                          const yaml_node_t *node, struct farm_policy *policy)
{
    char name[FARM_MAX_FIELD_NAME];

    if (!node || node->type != YAML_MAPPING_NODE)
        return yamlfield_error(&ctx->yaml, field_name(ctx, section, name, sizeof(name)), node,
                               "must be a mapping of its settings");
    for (const yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key_node = yamlfield_node(&ctx->yaml, pair->key);
        const char *key = key_text(ctx, key_node);
        enum farm_setting setting;
        char path[FARM_MAX_FIELD_NAME];

        if (!key)
            return false;
        setting = find_setting(section, key);
        if (setting == FARM_SETTING_MAX) {
            snprintf(path, sizeof(path), "%s.%s", section, key);
            return unknown_key(ctx, path, key_node);
        }
        if (!set_value(ctx, setting, key_node, yamlfield_node(&ctx->yaml, pair->value), policy))
            return false;
    }
    return true;
}

/* One key of a policy (the farm's or a printer's): a section or webcam.
 * *ret_known false: not a policy key. */
static bool policy_key(const struct parse_ctx *ctx, const char *key, const yaml_node_t *key_node,
                       const yaml_node_t *value_node, unsigned *sections_seen,
                       struct farm_policy *policy, bool *ret_known)
{
    char name[FARM_MAX_FIELD_NAME];

    *ret_known = true;
    for (size_t i = 0; i < NUM_SECTIONS; i++) {
        if (strcmp(key, sections[i]) != 0)
            continue;
        if (*sections_seen & (1u << i))
            return yamlfield_error(&ctx->yaml, field_name(ctx, key, name, sizeof(name)),
                                   key_node, "given twice");
        *sections_seen |= 1u << i;
        return parse_section(ctx, key, value_node, policy);
    }
    if (find_setting(NULL, key) == FARM_WEBCAM)
        return set_value(ctx, FARM_WEBCAM, key_node, value_node, policy);
    *ret_known = false;
    return true;
}

static bool parse_printer(struct parse_ctx *ctx, const yaml_node_t *key_node,
                          const yaml_node_t *node)
{
    struct farm *farm = ctx->farm;
    const char *instance = yamlfield_text(&ctx->yaml, "printers", key_node, FARM_MAX_NAME);
    struct farm_printer *printer;
    unsigned sections_seen = 0;
    char prefix[FARM_MAX_NAME + 16];
    bool ok = true;

    if (!instance)
        return false;
    if (!instance[0] || !printable(instance) || instance[0] == ' ' ||
        instance[strlen(instance) - 1] == ' ')
        return yamlfield_error(&ctx->yaml, "printers", key_node,
                               "a printer's name must be 1 to %u printable ASCII characters, "
                               "without spaces around it", FARM_MAX_NAME);
    for (size_t i = 0; i < farm->num_printers; i++) {
        if (strcmp(farm->printers[i].name, instance) == 0)
            return yamlfield_error(&ctx->yaml, "printers", key_node,
                                   "printer '%s' is given twice", instance);
    }
    if (farm->num_printers == FARM_MAX_PRINTERS)
        return yamlfield_error(&ctx->yaml, "printers", key_node, "more than %u printers",
                               FARM_MAX_PRINTERS);
    printer = &farm->printers[farm->num_printers++];
    memcpy(printer->name, instance, strlen(instance) + 1);
    snprintf(prefix, sizeof(prefix), "printers.%s.", instance);
    if (!node || node->type != YAML_MAPPING_NODE)
        return yamlfield_error(&ctx->yaml, "printers", node,
                               "printer '%s' must be a mapping of overrides", instance);
    ctx->prefix = prefix;
    for (const yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         ok && pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *pair_key = yamlfield_node(&ctx->yaml, pair->key);
        const char *key = key_text(ctx, pair_key);
        bool known = false;

        ok = key && policy_key(ctx, key, pair_key, yamlfield_node(&ctx->yaml, pair->value),
                               &sections_seen, &printer->policy, &known);
        if (ok && !known)
            ok = unknown_key(ctx, key, pair_key);
    }
    ctx->prefix = "";
    return ok;
}

static bool parse_printers(struct parse_ctx *ctx, const yaml_node_t *node)
{
    if (!node || node->type != YAML_MAPPING_NODE)
        return yamlfield_error(&ctx->yaml, "printers", node,
                               "must be a mapping from each instance's name to its overrides");
    for (const yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        if (!parse_printer(ctx, yamlfield_node(&ctx->yaml, pair->key),
                           yamlfield_node(&ctx->yaml, pair->value)))
            return false;
    }
    return true;
}

bool farm_resolve(const struct farm *farm, const char *instance, struct farm_policy *ret_policy)
{
    const struct farm_printer *printer = NULL;

    *ret_policy = farm->all;
    for (size_t i = 0; instance && i < farm->num_printers; i++) {
        if (strcmp(farm->printers[i].name, instance) == 0)
            printer = &farm->printers[i];
    }
    if (!printer)
        return false;
    for (int i = 0; i < FARM_SETTING_MAX; i++) {
        if (printer->policy.values[i].set)
            ret_policy->values[i] = printer->policy.values[i];
    }
    return true;
}

/* The server URL of every instance against its own cleartext opt-in. */
static bool check_policy(const struct parse_ctx *ctx, const char *instance)
{
    const struct farm_value *url;
    struct farm_policy policy;
    char reason[256];
    bool cleartext;

    farm_resolve(ctx->farm, instance, &policy);
    url = &policy.values[FARM_SERVER_URL];
    cleartext = policy.values[FARM_ALLOW_CLEARTEXT_LAN].set &&
                policy.values[FARM_ALLOW_CLEARTEXT_LAN].flag;
    if (!url->set || hostrule_check_url(url->text, cleartext, NULL, reason, sizeof(reason)) ==
                         HOSTRULE_OK)
        return true;
    set_reason(ctx->yaml.reterr, ctx->yaml.reterr_len,
               "field 'server.url' (line %lu, column %lu): %s%s%s%s", url->line, url->column,
               reason, instance ? " (for printer '" : "", instance ? instance : "",
               instance ? "')" : "");
    return false;
}

static bool parse_root(struct parse_ctx *ctx, const yaml_node_t *root)
{
    const yaml_node_t *version_node = NULL;
    unsigned sections_seen = 0;
    bool printers_seen = false;
    double version = 0;

    for (const yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key_node = yamlfield_node(&ctx->yaml, pair->key);
        const yaml_node_t *value_node = yamlfield_node(&ctx->yaml, pair->value);
        const char *key = key_text(ctx, key_node);
        bool known = false;

        if (!key)
            return false;
        if (strcmp(key, "version") == 0) {
            if (version_node)
                return yamlfield_error(&ctx->yaml, "version", key_node, "given twice");
            version_node = value_node;
            if (!yamlfield_number(&ctx->yaml, "version", value_node, true, FARM_VERSION,
                                  FARM_VERSION, &version))
                return false;
        } else if (strcmp(key, "printers") == 0) {
            if (printers_seen)
                return yamlfield_error(&ctx->yaml, "printers", key_node, "given twice");
            printers_seen = true;
            if (!parse_printers(ctx, value_node))
                return false;
        } else {
            if (!policy_key(ctx, key, key_node, value_node, &sections_seen, &ctx->farm->all,
                            &known))
                return false;
            if (!known)
                return unknown_key(ctx, key, key_node);
        }
    }
    if (!version_node)
        return yamlfield_error(&ctx->yaml, "version", NULL, "is required (version: %d)",
                               FARM_VERSION);
    if (!check_policy(ctx, NULL))
        return false;
    for (size_t i = 0; i < ctx->farm->num_printers; i++) {
        if (!check_policy(ctx, ctx->farm->printers[i].name))
            return false;
    }
    return true;
}

enum farm_result farm_parse(const char *text, size_t len, struct farm **ret_farm, char *reterr,
                            size_t reterr_len)
{
    enum farm_result result = FARM_OK;
    struct farm *farm = NULL;
    yaml_document_t doc;
    bool doc_ready = false;
    struct parse_ctx ctx = {
        .yaml = {.doc = &doc, .reterr = reterr, .reterr_len = reterr_len},
        .prefix = "",
    };
    const yaml_node_t *root;

    if (!text || !ret_farm || len > FARM_MAX_FILE_BYTES) {
        set_reason(reterr, reterr_len, "the farm file is missing or larger than %u bytes",
                   FARM_MAX_FILE_BYTES);
        result = FARM_ERR_INVALID;
        goto out;
    }
    farm = calloc(1, sizeof(*farm));
    if (!farm) {
        set_reason(reterr, reterr_len, "out of memory");
        result = FARM_ERR_NOMEM;
        goto out;
    }
    ctx.farm = farm;
    result = from_yamlfield(yamlfield_load(text, len, FARM_MAX_DEPTH, &doc, reterr, reterr_len));
    if (result != FARM_OK)
        goto out;
    doc_ready = true;
    root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        set_reason(reterr, reterr_len,
                   "the farm file must be a YAML mapping (version: %d, server:, ...)",
                   FARM_VERSION);
        result = FARM_ERR_SYNTAX;
        goto out;
    }
    if (!parse_root(&ctx, root)) {
        result = FARM_ERR_FIELD;
        goto out;
    }
    *ret_farm = farm;
    farm = NULL;

out:
    if (doc_ready)
        yaml_document_delete(&doc);
    free(farm);
    return result;
}

enum farm_result farm_load(const char *path, struct farm **ret_farm, char *reterr,
                           size_t reterr_len)
{
    enum farm_result result = FARM_OK;
    char reason[512] = "";
    char *text = NULL;
    size_t len = 0;

    if (!path || !*path || !ret_farm) {
        set_reason(reterr, reterr_len, "no farm file given");
        return FARM_ERR_INVALID;
    }
    result = from_yamlfield(
        yamlfield_read_file(path, FARM_MAX_FILE_BYTES, &text, &len, reterr, reterr_len));
    if (result != FARM_OK)
        return result;
    result = farm_parse(text, len, ret_farm, reason, sizeof(reason));
    if (result != FARM_OK)
        set_reason(reterr, reterr_len, "%s: %s", path, reason);
    free(text);
    return result;
}

void farm_free(struct farm *farm)
{
    free(farm);
}

size_t farm_printer_count(const struct farm *farm)
{
    return farm->num_printers;
}

const char *farm_printer_name(const struct farm *farm, size_t index)
{
    return index < farm->num_printers ? farm->printers[index].name : NULL;
}
