/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * yamlfield: the bounded YAML reading that the helper's configuration
 * (helper/config.c) and the farm provisioning file (native/core/farm.c)
 * share, written once: a file read with a size limit, a document loaded
 * with a nesting limit and no aliases, and typed, range-checked field
 * values. Every error is a message in the caller's buffer that names the
 * field and its line and column; nothing is logged.
 */
#ifndef TSD_YAMLFIELD_H
#define TSD_YAMLFIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

/* How much of an offending value an error message quotes. */
#define YAMLFIELD_QUOTE_MAX 64u

enum yamlfield_result {
    YAMLFIELD_OK = 0,
    YAMLFIELD_ERR_IO,     /* the file could not be read, or is too large */
    YAMLFIELD_ERR_SYNTAX, /* not YAML, too deeply nested, or an alias */
    YAMLFIELD_ERR_NOMEM,
};

/* What a field reader needs: the document and the caller's error buffer
 * (may be NULL / 0). */
struct yamlfield_ctx {
    yaml_document_t *doc;
    char *reterr;
    size_t reterr_len;
};

/* Reads the regular file at path, at most max_bytes, into a malloc()ed
 * buffer (*ret_text, NUL-terminated, *ret_len bytes): read_file_whole()
 * (fdio.h) with this module's results. */
enum yamlfield_result yamlfield_read_file(const char *path, size_t max_bytes, char **ret_text,
                                          size_t *ret_len, char *reterr, size_t reterr_len);

/* Loads one YAML document from text into *ret_doc (yaml_document_delete()
 * it after YAMLFIELD_OK). Refuses nesting deeper than max_depth
 * collections and any alias (an alias lets a small file stand for a large
 * tree), with "YAML error at line L column C: ...". */
enum yamlfield_result yamlfield_load(const char *text, size_t len, unsigned max_depth,
                                     yaml_document_t *ret_doc, char *reterr, size_t reterr_len);

/* A printable copy of at most YAMLFIELD_QUOTE_MAX bytes of value. */
const char *yamlfield_quote(const char *value, char *buf, size_t len);

/* Writes "field 'name' (line L, column C): what" (without the place when
 * node is NULL) and returns false, so that a reader can return it. */
bool yamlfield_error(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The text of a scalar node, at most max_len bytes (0: no limit), or NULL
 * with an error for anything else (a sequence, a mapping, a NUL byte). */
const char *yamlfield_text(const struct yamlfield_ctx *ctx, const char *name,
                           const yaml_node_t *node, size_t max_len);

/* A number from min to max that parses completely: an integer (base 10)
 * when integer, otherwise any finite number. */
bool yamlfield_number(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                      bool integer, double min, double max, double *ret_value);

/* true/false (also yes/no, on/off, 1/0 in the usual capitalisations). */
bool yamlfield_bool(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                    bool *ret_value);

/* One of count choices; its index in *ret_index. */
bool yamlfield_choice(const struct yamlfield_ctx *ctx, const char *name, const yaml_node_t *node,
                      const char *const *choices, size_t count, size_t *ret_index);

/* The node of a sequence's item or a mapping pair's key or value. */
const yaml_node_t *yamlfield_node(const struct yamlfield_ctx *ctx, int index);

#endif
