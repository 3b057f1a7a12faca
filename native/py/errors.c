/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * The one mapping from core results to Python exceptions: a table per
 * family of results, and tsd_raise() to read them.
 */
#include "common.h"

#include <limits.h>

#include "core/decide.h"
#include "core/evq.h"
#include "core/farm.h"
#include "core/grab.h"
#include "core/jpeg.h"
#include "core/layers.h"
#include "core/hostrule.h"
#include "core/linkmsg.h"
#include "core/proto.h"
#include "core/superv.h"
#include "core/tok.h"
#include "core/tunnel.h"

/* Matches every result: the last rule of each table. */
#define ANY_RESULT INT_MIN

struct tsd_error_rule {
    int result;
    enum tsd_exception exception;
    const char *code;   /* the exception's .code; NULL: the exception has none */
    const char *text;   /* fixed message; NULL: the reason, else the result's text */
};

struct tsd_error_map {
    const char *(*describe)(int result); /* the result's own text */
    const char *prefix;                  /* before the message of the catch-all rule */
    const struct tsd_error_rule *rules;  /* the first that matches wins */
};

#define DESCRIBE(family, result_enum)                                                 \
    static const char *describe_##family(int result)                                  \
    {                                                                                  \
        return family##_result_str((enum result_enum)result);                          \
    }
DESCRIBE(evq, evq_result)
DESCRIBE(tun, tun_result)
DESCRIBE(proto, proto_result)
DESCRIBE(grab, grab_result)
DESCRIBE(decide, decide_result)
DESCRIBE(superv, superv_result)
DESCRIBE(jpg, jpg_result)
DESCRIBE(tok, tok_result)
DESCRIBE(linkmsg, linkmsg_result)
DESCRIBE(hostrule, hostrule_result)
DESCRIBE(layers, layers_result)
DESCRIBE(farm, farm_result)

const struct tsd_error_map tsd_evq_errors = {
    describe_evq, "event queue: ", (const struct tsd_error_rule[]){
        {EVQ_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {EVQ_INVALID, TSD_EXC_VALUE, NULL, NULL},
        {EVQ_CLOSED, TSD_EXC_QUEUE_CLOSED, NULL, "event queue is closed"},
        {ANY_RESULT, TSD_EXC_ERROR, NULL, NULL},
    }};

const struct tsd_error_map tsd_tun_errors = {
    describe_tun, NULL, (const struct tsd_error_rule[]){
        {TUN_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {TUN_ERR_INVALID, TSD_EXC_VALUE, NULL, NULL},
        {TUN_ERR_TOO_BIG, TSD_EXC_VALUE, NULL, NULL},
        {ANY_RESULT, TSD_EXC_TUNNEL, NULL, NULL},
    }};

const struct tsd_error_map tsd_proto_errors = {
    describe_proto, "server message ignored: ", (const struct tsd_error_rule[]){
        {PROTO_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {ANY_RESULT, TSD_EXC_ERROR, NULL, NULL},
    }};

/* GrabError.code: short, stable names (the message carries the details). */
const struct tsd_error_map tsd_grab_errors = {
    describe_grab, NULL, (const struct tsd_error_rule[]){
        {GRAB_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {GRAB_ERR_INVALID, TSD_EXC_GRAB, "invalid", NULL},
        {GRAB_ERR_SYSTEM, TSD_EXC_GRAB, "system", NULL},
        {GRAB_ERR_URL, TSD_EXC_GRAB, "url", NULL},
        {GRAB_ERR_DNS, TSD_EXC_GRAB, "dns", NULL},
        {GRAB_ERR_CONNECT_REFUSED, TSD_EXC_GRAB, "refused", NULL},
        {GRAB_ERR_CONNECT_TIMEOUT, TSD_EXC_GRAB, "connect_timeout", NULL},
        {GRAB_ERR_CONNECT, TSD_EXC_GRAB, "connect", NULL},
        {GRAB_ERR_TLS, TSD_EXC_GRAB, "tls", NULL},
        {GRAB_ERR_TLS_VERIFY, TSD_EXC_GRAB, "tls_verify", NULL},
        {GRAB_ERR_IO, TSD_EXC_GRAB, "io", NULL},
        {GRAB_ERR_TIMEOUT, TSD_EXC_GRAB, "timeout", NULL},
        {GRAB_ERR_CLOSED, TSD_EXC_GRAB, "closed", NULL},
        {GRAB_ERR_HTTP, TSD_EXC_GRAB, "http", NULL},
        {GRAB_ERR_HTTP_STATUS, TSD_EXC_GRAB, "http_status", NULL},
        {GRAB_ERR_REDIRECT, TSD_EXC_GRAB, "redirect", NULL},
        {GRAB_ERR_NOT_MULTIPART, TSD_EXC_GRAB, "not_multipart", NULL},
        {GRAB_ERR_NO_BOUNDARY, TSD_EXC_GRAB, "no_boundary", NULL},
        {GRAB_ERR_TOO_BIG, TSD_EXC_GRAB, "too_big", NULL},
        {GRAB_ERR_INVALID_JPEG, TSD_EXC_GRAB, "invalid_jpeg", NULL},
        {GRAB_ERR_NO_FRAMES, TSD_EXC_GRAB, "no_frames", NULL},
        {GRAB_ERR_INTERRUPTED, TSD_EXC_GRAB, "interrupted", NULL},
        {GRAB_ERR_REFUSED, TSD_EXC_GRAB, "refused_by_rule", NULL},
        {GRAB_ERR_WRITE, TSD_EXC_GRAB, "write", NULL},
        {GRAB_ERR_DIGEST, TSD_EXC_GRAB, "digest", NULL},
        {GRAB_ERR_CONTENT, TSD_EXC_GRAB, "content", NULL},
        {ANY_RESULT, TSD_EXC_GRAB, "error", NULL},
    }};

/* Every refusal is about the caller's numbers; the reason says which. */
const struct tsd_error_map tsd_decide_errors = {
    describe_decide, NULL, (const struct tsd_error_rule[]){
        {DECIDE_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {ANY_RESULT, TSD_EXC_VALUE, NULL, NULL},
    }};

const struct tsd_error_map tsd_superv_errors = {
    describe_superv, NULL, (const struct tsd_error_rule[]){
        {SUPERV_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {SUPERV_ERR_INVALID, TSD_EXC_HELPER, "invalid", NULL},
        {SUPERV_ERR_SYSTEM, TSD_EXC_HELPER, "system", NULL},
        {SUPERV_ERR_SPAWN, TSD_EXC_HELPER, "spawn", NULL},
        {SUPERV_ERR_BACKOFF, TSD_EXC_HELPER, "backoff", NULL},
        {SUPERV_ERR_CONFIG, TSD_EXC_HELPER, "config", NULL},
        {SUPERV_ERR_TIMEOUT, TSD_EXC_HELPER, "timeout", NULL},
        {SUPERV_ERR_CRASHED, TSD_EXC_HELPER, "crashed", NULL},
        {SUPERV_ERR_PROTOCOL, TSD_EXC_HELPER, "protocol", NULL},
        {SUPERV_ERR_REFUSED, TSD_EXC_HELPER, "refused", NULL},
        {SUPERV_ERR_CLOSED, TSD_EXC_HELPER, "closed", NULL},
        {SUPERV_ERR_LATE, TSD_EXC_HELPER, "late", NULL},
        {SUPERV_ERR_INSECURE, TSD_EXC_HELPER, "insecure", NULL},
        {ANY_RESULT, TSD_EXC_HELPER, "error", NULL},
    }};

const struct tsd_error_map tsd_jpg_errors = {
    describe_jpg, "cannot annotate the frame: ", (const struct tsd_error_rule[]){
        {JPG_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {ANY_RESULT, TSD_EXC_ERROR, NULL, NULL},
    }};

const struct tsd_error_map tsd_tok_errors = {
    describe_tok, NULL, (const struct tsd_error_rule[]){
        {TOK_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {TOK_ERR_NOT_FOUND, TSD_EXC_TOKEN, "not_found", NULL},
        {TOK_ERR_CORRUPT, TSD_EXC_TOKEN, "corrupt", NULL},
        {TOK_ERR_PERMISSIONS, TSD_EXC_TOKEN, "permissions", NULL},
        {TOK_ERR_INVALID, TSD_EXC_TOKEN, "invalid", NULL},
        {ANY_RESULT, TSD_EXC_TOKEN, "io", NULL},
    }};

/* The server's linking answers: what is wrong with the body. */
const struct tsd_error_map tsd_linkmsg_errors = {
    describe_linkmsg, NULL, (const struct tsd_error_rule[]){
        {ANY_RESULT, TSD_EXC_VALUE, NULL, NULL},
    }};

/* ValueError.code: the kinds of octoprint_tsd.link.LinkError. */
const struct tsd_error_map tsd_hostrule_errors = {
    describe_hostrule, NULL, (const struct tsd_error_rule[]){
        {HOSTRULE_ERR_CLEARTEXT, TSD_EXC_VALUE, "insecure_url", NULL},
        {ANY_RESULT, TSD_EXC_VALUE, "bad_url", NULL},
    }};

/* Counting a file's layers: TsdError with the file and the cause. */
const struct tsd_error_map tsd_layers_errors = {
    describe_layers, NULL, (const struct tsd_error_rule[]){
        {ANY_RESULT, TSD_EXC_ERROR, NULL, NULL},
    }};

/* A farm file that is refused: ValueError with where and why. */
const struct tsd_error_map tsd_farm_errors = {
    describe_farm, NULL, (const struct tsd_error_rule[]){
        {FARM_ERR_NOMEM, TSD_EXC_NO_MEMORY, NULL, NULL},
        {FARM_ERR_IO, TSD_EXC_VALUE, "io", NULL},
        {FARM_ERR_SYNTAX, TSD_EXC_VALUE, "syntax", NULL},
        {ANY_RESULT, TSD_EXC_VALUE, "field", NULL},
    }};

/* Raises exc_type(message) with a "code" attribute. */
static void set_coded_error(PyObject *exc_type, const char *code, PyObject *message)
{
    PyObject *exc = PyObject_CallFunctionObjArgs(exc_type, message, NULL);
    PyObject *code_obj;

    if (!exc)
        return;
    code_obj = PyUnicode_FromString(code);
    if (!code_obj || PyObject_SetAttrString(exc, "code", code_obj) < 0) {
        Py_XDECREF(code_obj);
        Py_DECREF(exc);
        return;
    }
    Py_DECREF(code_obj);
    PyErr_SetObject(exc_type, exc);
    Py_DECREF(exc);
}

PyObject *tsd_raise(struct tsd_state *state, const struct tsd_error_map *map, int result,
                    const char *reason)
{
    const struct tsd_error_rule *rule = map->rules;
    const char *text;
    PyObject *exc_type;
    PyObject *message;

    if (!state)
        return NULL;
    while (rule->result != ANY_RESULT && rule->result != result)
        rule++;
    if (rule->exception == TSD_EXC_NO_MEMORY)
        return PyErr_NoMemory();
    text = rule->text ? rule->text : reason && *reason ? reason : map->describe(result);
    message = PyUnicode_FromFormat("%s%s",
                                   rule->result == ANY_RESULT && map->prefix ? map->prefix : "",
                                   text);
    if (!message)
        return NULL;
    exc_type = rule->exception == TSD_EXC_VALUE ? PyExc_ValueError
                                                : state->exceptions[rule->exception];
    if (rule->code)
        set_coded_error(exc_type, rule->code, message);
    else
        PyErr_SetObject(exc_type, message);
    Py_DECREF(message);
    return NULL;
}
