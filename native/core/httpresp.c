/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "httpresp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct httpresp_field {
    size_t name;  /* offset of the NUL-terminated name in head */
    size_t value; /* offset of the NUL-terminated, trimmed value in head */
};

struct httpresp {
    /* Lines are NUL-terminated in place once complete (their CR or LF, or
     * the colon and trailing whitespace, are overwritten). */
    char head[HTTPRESP_MAX_HEAD];
    size_t len;        /* bytes stored in head */
    size_t line_start; /* offset of the line being received */
    bool after_cr;     /* the last byte stored was a CR */
    bool have_status;
    bool complete;
    enum httpresp_result error; /* sticky; HTTPRESP_OK while none */
    struct httpresp_field fields[HTTPRESP_MAX_HEADERS];
    size_t field_count;
    int version_minor;
    int status;
    size_t reason; /* offset of the reason phrase */
    struct httpresp_info info;
};

const char *httpresp_result_str(enum httpresp_result result)
{
    switch (result) {
    case HTTPRESP_OK: return "ok";
    case HTTPRESP_NEED_MORE: return "response head incomplete";
    case HTTPRESP_ERR_INVALID: return "invalid argument";
    case HTTPRESP_ERR_NOMEM: return "out of memory";
    case HTTPRESP_ERR_STATUS_LINE: return "malformed status line";
    case HTTPRESP_ERR_HEADER: return "malformed header field";
    case HTTPRESP_ERR_OBS_FOLD: return "obsolete header line folding";
    case HTTPRESP_ERR_NUL: return "NUL byte in response head";
    case HTTPRESP_ERR_BARE_CR: return "CR not followed by LF";
    case HTTPRESP_ERR_LINE_TOO_LONG: return "response line too long";
    case HTTPRESP_ERR_HEAD_TOO_BIG: return "response head too big";
    case HTTPRESP_ERR_TOO_MANY_HEADERS: return "too many header fields";
    case HTTPRESP_ERR_CONTENT_LENGTH: return "invalid Content-Length";
    case HTTPRESP_ERR_CONTENT_TYPE: return "invalid Content-Type";
    case HTTPRESP_ERR_TOO_SMALL: return "output buffer too small";
    case HTTPRESP_RESULT_MAX: break;
    }
    return "unknown result";
}

/* RFC 9110 tchar. */
bool httpresp_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 optional white space. */
bool httpresp_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* HTAB, SP, VCHAR or obs-text: what a reason phrase or field value may hold. */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

enum httpresp_result httpresp_new(struct httpresp **ret_parser)
{
    enum httpresp_result result = HTTPRESP_OK;
    struct httpresp *parser = NULL;

    if (!ret_parser) {
        result = HTTPRESP_ERR_INVALID;
        goto out;
    }
    parser = malloc(sizeof(*parser));
    if (!parser) {
        result = HTTPRESP_ERR_NOMEM;
        goto out;
    }
    httpresp_reset(parser);
    *ret_parser = parser;
    parser = NULL;

out:
    free(parser);
    return result;
}

struct httpresp *httpresp_free(struct httpresp *parser)
{
    free(parser);
    return NULL;
}

void httpresp_reset(struct httpresp *parser)
{
    if (!parser)
        return;
    /* The head buffer needs no clearing: only bytes below len are read. */
    parser->len = 0;
    parser->line_start = 0;
    parser->after_cr = false;
    parser->have_status = false;
    parser->complete = false;
    parser->error = HTTPRESP_OK;
    parser->field_count = 0;
    parser->version_minor = 0;
    parser->status = 0;
    parser->reason = 0;
    memset(&parser->info, 0, sizeof(parser->info));
}

/* "HTTP/1.x NNN[ reason]" in head[start, end); end is already a NUL. */
static enum httpresp_result parse_status_line(struct httpresp *parser, size_t start, size_t end)
{
    const unsigned char *line = (const unsigned char *)parser->head + start;
    size_t len = end - start;
    size_t i;

    /* "HTTP/1.x NNN" is 12 bytes. */
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return HTTPRESP_ERR_STATUS_LINE;
    for (i = 9; i < 12; i++)
        if (line[i] < '0' || line[i] > '9')
            return HTTPRESP_ERR_STATUS_LINE;
    if (line[9] == '0')
        return HTTPRESP_ERR_STATUS_LINE;
    if (len > 12 && line[12] != ' ')
        return HTTPRESP_ERR_STATUS_LINE;
    for (i = 13; i < len; i++)
        if (!is_field_char(line[i]))
            return HTTPRESP_ERR_STATUS_LINE;

    parser->version_minor = line[7] - '0';
    parser->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    /* With no reason phrase, point at the line's terminating NUL. */
    parser->reason = start + (len > 12 ? 13 : 12);
    parser->have_status = true;
    return HTTPRESP_OK;
}

/* "name: value" in head[start, end); end is already a NUL. */
static enum httpresp_result parse_field_line(struct httpresp *parser, size_t start, size_t end)
{
    unsigned char *head = (unsigned char *)parser->head;
    size_t colon;
    size_t value;
    size_t value_end;
    size_t i;

    if (httpresp_is_ows(head[start]))
        return HTTPRESP_ERR_OBS_FOLD;
    if (parser->field_count >= HTTPRESP_MAX_HEADERS)
        return HTTPRESP_ERR_TOO_MANY_HEADERS;
    for (colon = start; colon < end && head[colon] != ':'; colon++)
        if (!httpresp_is_tchar(head[colon]))
            return HTTPRESP_ERR_HEADER; /* includes whitespace before the colon */
    if (colon == end || colon == start)
        return HTTPRESP_ERR_HEADER;
    for (i = colon + 1; i < end; i++)
        if (!is_field_char(head[i]))
            return HTTPRESP_ERR_HEADER;
    value = colon + 1;
    while (value < end && httpresp_is_ows(head[value]))
        value++;
    value_end = end;
    while (value_end > value && httpresp_is_ows(head[value_end - 1]))
        value_end--;
    head[colon] = '\0';
    head[value_end] = '\0';
    parser->fields[parser->field_count].name = start;
    parser->fields[parser->field_count].value = value;
    parser->field_count++;
    return HTTPRESP_OK;
}

/* The head is complete: work out the framing of the body. */
static enum httpresp_result finish_head(struct httpresp *parser)
{
    struct httpresp_info *info = &parser->info;
    const char *transfer_encoding = NULL;
    size_t i;

    memset(info, 0, sizeof(*info));
    for (i = 0; i < parser->field_count; i++) {
        const char *name = parser->head + parser->fields[i].name;
        const char *value = parser->head + parser->fields[i].value;

        if (strcasecmp(name, "Content-Length") == 0) {
            uint64_t length = 0;
            if (httpresp_parse_content_length(value, strlen(value), &length) != HTTPRESP_OK)
                return HTTPRESP_ERR_CONTENT_LENGTH;
            if (info->has_content_length && info->content_length != length)
                return HTTPRESP_ERR_CONTENT_LENGTH;
            info->has_content_length = true;
            info->content_length = length;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            transfer_encoding = value; /* the last one holds the final coding */
            info->has_transfer_encoding = true;
        } else if (strcasecmp(name, "Content-Type") == 0) {
            if (!info->content_type)
                info->content_type = value;
        } else if (strcasecmp(name, "Location") == 0) {
            if (!info->location)
                info->location = value;
        } else if (strcasecmp(name, "Content-MD5") == 0) {
            if (!info->content_md5)
                info->content_md5 = value;
        } else if (strcasecmp(name, "x-goog-hash") == 0) {
            if (!info->goog_hash && strstr(value, "md5="))
                info->goog_hash = value;
        }
    }
    if (transfer_encoding) {
        const char *coding = strrchr(transfer_encoding, ',');

        coding = coding ? coding + 1 : transfer_encoding;
        while (httpresp_is_ows((unsigned char)*coding))
            coding++;
        /* Values are stored without trailing whitespace. */
        info->chunked = strcasecmp(coding, "chunked") == 0;
    }
    info->version_minor = parser->version_minor;
    info->status = parser->status;
    info->reason = parser->head + parser->reason;
    info->header_count = parser->field_count;
    info->head_len = parser->len;
    if (info->status < 200 || info->status == 204 || info->status == 304)
        info->body = HTTPRESP_BODY_NONE;
    else if (info->chunked)
        info->body = HTTPRESP_BODY_CHUNKED;
    else if (info->has_transfer_encoding)
        info->body = HTTPRESP_BODY_CLOSE; /* RFC 9112 6.3: length overridden */
    else if (info->has_content_length)
        info->body = HTTPRESP_BODY_LENGTH;
    else
        info->body = HTTPRESP_BODY_CLOSE;
    return HTTPRESP_OK;
}

/* A complete line ends at head[newline] ('\n'). Sets *ret_done on the empty
 * line that ends the head. */
static enum httpresp_result end_of_line(struct httpresp *parser, size_t newline, bool *ret_done)
{
    size_t start = parser->line_start;
    size_t end = newline;
    enum httpresp_result result;

    if (end > start && parser->head[end - 1] == '\r')
        end--;
    parser->head[end] = '\0';
    parser->line_start = newline + 1;
    if (!parser->have_status) {
        /* An empty line here is a missing status line, not an empty head. */
        return parse_status_line(parser, start, end);
    }
    if (end == start) {
        result = finish_head(parser);
        if (result == HTTPRESP_OK)
            *ret_done = true;
        return result;
    }
    return parse_field_line(parser, start, end);
}

enum httpresp_result httpresp_feed(struct httpresp *parser, const void *data, size_t len,
                                   size_t *ret_used)
{
    enum httpresp_result result = HTTPRESP_NEED_MORE;
    const unsigned char *bytes = data;
    bool done = false;
    size_t i;

    if (!parser || (!data && len > 0))
        return HTTPRESP_ERR_INVALID;
    if (parser->error != HTTPRESP_OK)
        return parser->error;
    if (parser->complete) {
        if (ret_used)
            *ret_used = 0;
        return HTTPRESP_OK;
    }
    for (i = 0; i < len && !done; i++) {
        unsigned char c = bytes[i];

        if (c == '\0') {
            result = HTTPRESP_ERR_NUL;
            goto out;
        }
        if (parser->after_cr && c != '\n') {
            result = HTTPRESP_ERR_BARE_CR;
            goto out;
        }
        if (parser->len >= HTTPRESP_MAX_HEAD) {
            result = HTTPRESP_ERR_HEAD_TOO_BIG;
            goto out;
        }
        parser->head[parser->len++] = (char)c;
        parser->after_cr = c == '\r';
        if (c == '\n') {
            result = end_of_line(parser, parser->len - 1, &done);
            if (result != HTTPRESP_OK)
                goto out;
            result = HTTPRESP_NEED_MORE;
        } else if (c != '\r' && parser->len - parser->line_start > HTTPRESP_MAX_LINE) {
            result = HTTPRESP_ERR_LINE_TOO_LONG;
            goto out;
        }
    }
    if (done) {
        parser->complete = true;
        result = HTTPRESP_OK;
    }
    if (ret_used)
        *ret_used = i;

out:
    if (result != HTTPRESP_OK && result != HTTPRESP_NEED_MORE)
        parser->error = result;
    return result;
}

enum httpresp_result httpresp_get_info(const struct httpresp *parser,
                                       struct httpresp_info *ret_info)
{
    if (!parser || !ret_info || !parser->complete)
        return HTTPRESP_ERR_INVALID;
    *ret_info = parser->info;
    return HTTPRESP_OK;
}

const char *httpresp_header(const struct httpresp *parser, const char *name)
{
    size_t i;

    if (!parser || !name || !parser->complete)
        return NULL;
    for (i = 0; i < parser->field_count; i++)
        if (strcasecmp(parser->head + parser->fields[i].name, name) == 0)
            return parser->head + parser->fields[i].value;
    return NULL;
}

enum httpresp_result httpresp_header_at(const struct httpresp *parser, size_t index,
                                        const char **ret_name, const char **ret_value)
{
    if (!parser || !parser->complete || index >= parser->field_count || !ret_name ||
        !ret_value)
        return HTTPRESP_ERR_INVALID;
    *ret_name = parser->head + parser->fields[index].name;
    *ret_value = parser->head + parser->fields[index].value;
    return HTTPRESP_OK;
}

enum httpresp_result httpresp_parse_content_length(const char *value, size_t len,
                                                   uint64_t *ret_length)
{
    uint64_t length = 0;
    size_t start = 0;
    size_t end = len;
    size_t i;

    if (!value || !ret_length)
        return HTTPRESP_ERR_INVALID;
    while (start < end && httpresp_is_ows((unsigned char)value[start]))
        start++;
    while (end > start && httpresp_is_ows((unsigned char)value[end - 1]))
        end--;
    /* 19 digits cannot overflow 64 bits. */
    if (end == start || end - start > 19)
        return HTTPRESP_ERR_CONTENT_LENGTH;
    for (i = start; i < end; i++) {
        if (value[i] < '0' || value[i] > '9')
            return HTTPRESP_ERR_CONTENT_LENGTH;
        length = length * 10 + (uint64_t)(value[i] - '0');
    }
    *ret_length = length;
    return HTTPRESP_OK;
}

/* Copies a token starting at *pos, lower-cased, into out (size bytes with the
 * NUL); returns its length, 0 when there is no token or it does not fit. */
static size_t take_token(const char *value, size_t *pos, char *out, size_t size)
{
    size_t len = 0;

    while (httpresp_is_tchar((unsigned char)value[*pos])) {
        char c = value[*pos];
        if (len + 1 >= size)
            return 0;
        out[len++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        (*pos)++;
    }
    out[len] = '\0';
    return len;
}

static void skip_ows(const char *value, size_t *pos)
{
    while (httpresp_is_ows((unsigned char)value[*pos]))
        (*pos)++;
}

/* Counts one character of a parameter value and, with out, stores it at
 * *len; false when out (size bytes with the NUL) is full. */
static bool put_value_char(char *out, size_t size, size_t *len, unsigned char c)
{
    if (out) {
        if (*len + 1 >= size)
            return false;
        out[*len] = (char)c;
    }
    (*len)++;
    return true;
}

/* A parameter value at *pos: a quoted-string (unquoted into out) or a run of
 * visible characters other than ';' and '"'. With out NULL the value is only
 * checked and skipped. Returns false when malformed or, with out, longer than
 * size - 1 (out is then unspecified). */
static bool take_param_value(const char *value, size_t *pos, char *out, size_t size,
                             size_t *ret_len)
{
    size_t len = 0;
    unsigned char c;

    if (value[*pos] == '"') {
        (*pos)++;
        for (;;) {
            c = (unsigned char)value[*pos];
            if (c == '"') {
                (*pos)++;
                break;
            }
            if (c == '\\') {
                (*pos)++;
                c = (unsigned char)value[*pos];
            }
            if (c == '\0' || !is_field_char(c))
                return false; /* unterminated, or a control character */
            if (!put_value_char(out, size, &len, c))
                return false;
            (*pos)++;
        }
    } else {
        for (;;) {
            c = (unsigned char)value[*pos];
            if (c <= 0x20 || c == 0x7f || c == ';' || c == '"')
                break;
            if (!put_value_char(out, size, &len, c))
                return false;
            (*pos)++;
        }
        if (len == 0)
            return false;
    }
    if (out)
        out[len] = '\0';
    *ret_len = len;
    return true;
}

enum httpresp_result httpresp_content_type(const char *value, char *ret_media_type,
                                           size_t media_type_size, char *ret_boundary,
                                           size_t boundary_size)
{
    char media_type[HTTPRESP_MEDIA_TYPE_SIZE];
    char boundary[HTTPRESP_BOUNDARY_SIZE] = "";
    char param_name[HTTPRESP_MEDIA_TYPE_SIZE];
    char param_value[HTTPRESP_BOUNDARY_SIZE];
    bool have_boundary = false;
    size_t type_len;
    size_t subtype_len;
    size_t boundary_len = 0;
    size_t pos = 0;

    if (!value || !ret_media_type || !ret_boundary)
        return HTTPRESP_ERR_INVALID;
    skip_ows(value, &pos);
    type_len = take_token(value, &pos, media_type, sizeof(media_type));
    if (type_len == 0 || value[pos] != '/' || type_len + 2 >= sizeof(media_type))
        return HTTPRESP_ERR_CONTENT_TYPE;
    media_type[type_len] = '/';
    pos++;
    subtype_len = take_token(value, &pos, media_type + type_len + 1,
                             sizeof(media_type) - type_len - 1);
    if (subtype_len == 0)
        return HTTPRESP_ERR_CONTENT_TYPE;

    for (;;) {
        size_t param_len = 0;
        bool is_boundary;

        skip_ows(value, &pos);
        if (value[pos] == '\0')
            break;
        if (value[pos] != ';')
            return HTTPRESP_ERR_CONTENT_TYPE;
        pos++;
        skip_ows(value, &pos);
        if (value[pos] == '\0' || value[pos] == ';')
            continue; /* an empty parameter, as in "image/jpeg;" */
        if (take_token(value, &pos, param_name, sizeof(param_name)) == 0)
            return HTTPRESP_ERR_CONTENT_TYPE;
        skip_ows(value, &pos);
        if (value[pos] != '=')
            return HTTPRESP_ERR_CONTENT_TYPE;
        pos++;
        skip_ows(value, &pos);
        is_boundary = !have_boundary && strcmp(param_name, "boundary") == 0;
        if (!take_param_value(value, &pos, is_boundary ? param_value : NULL,
                              sizeof(param_value), &param_len))
            return HTTPRESP_ERR_CONTENT_TYPE;
        if (is_boundary) {
            if (param_len == 0)
                return HTTPRESP_ERR_CONTENT_TYPE;
            memcpy(boundary, param_value, param_len + 1);
            boundary_len = param_len;
            have_boundary = true;
        }
    }
    if (type_len + 1 + subtype_len + 1 > media_type_size || boundary_len + 1 > boundary_size)
        return HTTPRESP_ERR_TOO_SMALL;
    memcpy(ret_media_type, media_type, type_len + 1 + subtype_len + 1);
    memcpy(ret_boundary, boundary, boundary_len + 1);
    return HTTPRESP_OK;
}
