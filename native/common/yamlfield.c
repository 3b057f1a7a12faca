/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "yamlfield.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errtext.h"
#include "fdio.h"

enum yamlfield_result yamlfield_read_file(const char *path, size_t max_bytes, char **ret_text,
                                          size_t *ret_len, char *reterr, size_t reterr_len)
{
    switch (read_file_whole(path, max_bytes, ret_text, ret_len, reterr, reterr_len)) {
    case FDIO_READ_OK: return YAMLFIELD_OK;
    case FDIO_READ_ERR_NOMEM: return YAMLFIELD_ERR_NOMEM;
    case FDIO_READ_ERR_IO:
    case FDIO_READ_ERR_TOO_BIG: break;
    }
    return YAMLFIELD_ERR_IO;
}

static void syntax_error(char *reterr, size_t reterr_len, const yaml_mark_t *mark,
                         const char *problem, const char *context)
{
    set_reason(reterr, reterr_len, "YAML error at line %lu column %lu: %s%s%s",
               (unsigned long)mark->line + 1, (unsigned long)mark->column + 1,
               problem ? problem : "syntax error", context ? " " : "", context ? context : "");
}

/* The events pass: nesting depth and aliases, before a document is built. */
static enum yamlfield_result check_events(const char *text, size_t len, unsigned max_depth,
                                          char *reterr, size_t reterr_len)
{
    enum yamlfield_result result = YAMLFIELD_OK;
    yaml_parser_t parser;
    yaml_event_t event;
    unsigned depth = 0;
    unsigned documents = 0;
    bool done = false;

    if (!yaml_parser_initialize(&parser)) {
        set_reason(reterr, reterr_len, "out of memory");
        return YAMLFIELD_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &event)) {
            syntax_error(reterr, reterr_len, &parser.problem_mark, parser.problem,
                         parser.context);
            result = parser.error == YAML_MEMORY_ERROR ? YAMLFIELD_ERR_NOMEM
                                                       : YAMLFIELD_ERR_SYNTAX;
            break;
        }
        switch (event.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > max_depth) {
                syntax_error(reterr, reterr_len, &event.start_mark,
                             "nested deeper than allowed", NULL);
                result = YAMLFIELD_ERR_SYNTAX;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_ALIAS_EVENT:
            syntax_error(reterr, reterr_len, &event.start_mark,
                         "aliases (*name) are not allowed", NULL);
            result = YAMLFIELD_ERR_SYNTAX;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                syntax_error(reterr, reterr_len, &event.start_mark,
                             "more than one document", NULL);
                result = YAMLFIELD_ERR_SYNTAX;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&event);
        if (result != YAMLFIELD_OK)
            break;
    }
    yaml_parser_delete(&parser);
    return result;
}

enum yamlfield_result yamlfield_load(const char *text, size_t len, unsigned max_depth,
                                     yaml_document_t *ret_doc, char *reterr, size_t reterr_len)
{
    enum yamlfield_result result = check_events(text, len, max_depth, reterr, reterr_len);
    yaml_parser_t parser;

    if (result != YAMLFIELD_OK)
        return result;
    if (!yaml_parser_initialize(&parser)) {
        set_reason(reterr, reterr_len, "out of memory");
        return YAMLFIELD_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, ret_doc)) {
        syntax_error(reterr, reterr_len, &parser.problem_mark, parser.problem, parser.context);
        result = parser.error == YAML_MEMORY_ERROR ? YAMLFIELD_ERR_NOMEM : YAMLFIELD_ERR_SYNTAX;
    }
    yaml_parser_delete(&parser);
    return result;
}

const char *yamlfield_quote(const char *value, char *buf, size_t len)
{
    size_t i;

    for (i = 0; value[i] != '\0' && i < YAMLFIELD_QUOTE_MAX && i + 1 < len; i++)
        buf[i] = (value[i] >= 0x20 && value[i] < 0x7f) ? value[i] : '?';
    buf[i] = '\0';
    return buf;
}

bool yamlfield_error(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                     const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (node)
        set_reason(ctx->reterr, ctx->reterr_len, "field '%s' (line %lu, column %lu): %s", name,
                   (unsigned long)node->start_mark.line + 1,
                   (unsigned long)node->start_mark.column + 1, what);
    else
        set_reason(ctx->reterr, ctx->reterr_len, "field '%s': %s", name, what);
    return false;
}

const char *yamlfield_text(const struct yamlfield_ctx *ctx, const char *name,
                           const yaml_node_t *node, size_t max_len)
{
    const char *text;

    if (!node || node->type != YAML_SCALAR_NODE) {
        yamlfield_error(ctx, name, node, "must be a single value");
        return NULL;
    }
    text = (const char *)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length) {
        yamlfield_error(ctx, name, node, "contains a NUL byte");
        return NULL;
    }
    if (max_len > 0 && node->data.scalar.length > max_len) {
        yamlfield_error(ctx, name, node, "is longer than %zu bytes", max_len);
        return NULL;
    }
    return text;
}

bool yamlfield_number(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                      bool integer, double min, double max, double *ret_value)
{
    const char *text = yamlfield_text(ctx, name, node, 0);
    char quoted[YAMLFIELD_QUOTE_MAX + 1];
    const char *shown;
    char *end = NULL;
    double value;

    if (!text)
        return false;
    errno = 0;
    value = integer ? (double)strtol(text, &end, 10) : strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(value) || value < min ||
        value > max) {
        shown = yamlfield_quote(text, quoted, sizeof(quoted));
        if (integer)
            return yamlfield_error(ctx, name, node,
                                   "must be an integer from %ld to %ld (got '%s')", (long)min,
                                   (long)max, shown);
        return yamlfield_error(ctx, name, node, "must be a number from %g to %g (got '%s')", min,
                               max, shown);
    }
    *ret_value = value;
    return true;
}

bool yamlfield_bool(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                    bool *ret_value)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On", "1"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off", "0"};
    const char *text = yamlfield_text(ctx, name, node, 0);
    char quoted[YAMLFIELD_QUOTE_MAX + 1];

    if (!text)
        return false;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(text, yes[i]) == 0 || strcmp(text, no[i]) == 0) {
            *ret_value = strcmp(text, yes[i]) == 0;
            return true;
        }
    }
    return yamlfield_error(ctx, name, node, "must be true or false (got '%s')",
                           yamlfield_quote(text, quoted, sizeof(quoted)));
}

bool yamlfield_choice(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                      const char *const *choices, size_t count, size_t *ret_index)
{
    const char *text = yamlfield_text(ctx, name, node, 0);
    char quoted[YAMLFIELD_QUOTE_MAX + 1];
    char listed[192] = "";
    size_t used = 0;

    if (!text)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *ret_index = i;
            return true;
        }
    }
    for (size_t i = 0; i < count && used < sizeof(listed); i++) {
        int n = snprintf(listed + used, sizeof(listed) - used, "%s%s",
                         i == 0 ? "" : (i + 1 == count ? " or " : ", "), choices[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return yamlfield_error(ctx, name, node, "must be %s (got '%s')", listed,
                           yamlfield_quote(text, quoted, sizeof(quoted)));
}

const yaml_node_t *yamlfield_node(const struct yamlfield_ctx *ctx, int index)
{
    return yaml_document_get_node(ctx->doc, index);
}
