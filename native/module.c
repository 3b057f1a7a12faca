/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * octoprint_tsd._tsd: the CPython glue over native/core.
 *
 * This is the only file under native/ that includes Python.h. It parses
 * arguments, keeps module state (exceptions, types), maps core results to
 * exceptions in exactly one function, and releases the GIL around waits.
 * No business logic lives here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

#include "core/evq.h"
#include "core/proto.h"
#include "core/tok.h"
#include "core/tunnel.h"
#include "core/versions.h"

#ifndef TSD_VERSION
#error "meson passes TSD_VERSION"
#endif

/* A blocking pop waits in slices of this length so that Ctrl-C and
 * interpreter shutdown are noticed (PEP 475 style). */
#define TSD_WAIT_SLICE_MS 100

/* Our types are neither subclassable nor mutable (3.10+ can say so). */
#ifdef Py_TPFLAGS_IMMUTABLETYPE
#define TSD_TYPE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE)
#else
#define TSD_TYPE_FLAGS Py_TPFLAGS_DEFAULT
#endif

#define EVENT_QUEUE_DEFAULT_EVENTS 1024
#define EVENT_QUEUE_DEFAULT_BYTES (1024 * 1024)

struct tsd_state {
    PyObject *error;              /* _tsd.TsdError */
    PyObject *queue_closed_error; /* _tsd.QueueClosedError(TsdError) */
    PyTypeObject *event_queue_type;
    PyObject *tunnel_error;       /* _tsd.TunnelError(TsdError) */
    PyTypeObject *tunnel_type;
    PyTypeObject *dispatcher_type;
    PyObject *token_error;        /* _tsd.TokenError(TsdError) */
};

static inline struct tsd_state *get_state(PyObject *module)
{
    void *state = PyModule_GetState(module);
    assert(state != NULL);
    return (struct tsd_state *)state;
}

/* The one place where a core result becomes a Python exception. Always
 * returns NULL so callers can `return set_evq_error(...)`. */
static PyObject *set_evq_error(struct tsd_state *state, enum evq_result result)
{
    switch (result) {
    case EVQ_NOMEM:
        return PyErr_NoMemory();
    case EVQ_INVALID:
        PyErr_SetString(PyExc_ValueError, evq_result_str(result));
        return NULL;
    case EVQ_CLOSED:
        PyErr_SetString(state->queue_closed_error, "event queue is closed");
        return NULL;
    default:
        PyErr_Format(state->error, "event queue: %s", evq_result_str(result));
        return NULL;
    }
}

/* ---- EventQueue -------------------------------------------------------- */

struct event_queue_object {
    PyObject_HEAD
    struct evq *queue;
};

static struct tsd_state *event_queue_state(PyObject *self)
{
    /* The type is not subclassable, so Py_TYPE(self) is our heap type. */
    void *state = PyType_GetModuleState(Py_TYPE(self));
    assert(state != NULL);
    return (struct tsd_state *)state;
}

static PyObject *event_queue_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_events", "max_bytes", NULL};
    Py_ssize_t max_events = EVENT_QUEUE_DEFAULT_EVENTS;
    Py_ssize_t max_bytes = EVENT_QUEUE_DEFAULT_BYTES;
    struct event_queue_object *self = NULL;
    struct evq *queue = NULL;
    enum evq_result result;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nn:EventQueue", keywords,
                                     &max_events, &max_bytes))
        return NULL;
    if (max_events <= 0 || (size_t)max_events > EVQ_MAX_EVENTS_LIMIT) {
        PyErr_Format(PyExc_ValueError, "max_events must be between 1 and %u",
                     EVQ_MAX_EVENTS_LIMIT);
        return NULL;
    }
    if (max_bytes <= 0 || (size_t)max_bytes > EVQ_MAX_BYTES_LIMIT) {
        PyErr_Format(PyExc_ValueError, "max_bytes must be between 1 and %u",
                     EVQ_MAX_BYTES_LIMIT);
        return NULL;
    }
    result = evq_new((size_t)max_events, (size_t)max_bytes, &queue);
    if (result != EVQ_OK) {
        PyObject *module = PyType_GetModule(type);
        return module ? set_evq_error(get_state(module), result) : NULL;
    }
    self = (struct event_queue_object *)type->tp_alloc(type, 0);
    if (!self) {
        evq_free(queue);
        return NULL;
    }
    self->queue = queue;
    return (PyObject *)self;
}

static void event_queue_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    struct event_queue_object *obj = (struct event_queue_object *)self;

    /* No other thread can be inside pop() here: a caller in pop() holds a
     * reference to self. */
    obj->queue = evq_free(obj->queue);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *event_queue_push(PyObject *self, PyObject *args)
{
    struct event_queue_object *obj = (struct event_queue_object *)self;
    int type;
    Py_buffer data;
    enum evq_result result;

    if (!PyArg_ParseTuple(args, "iy*:push", &type, &data))
        return NULL;
    result = evq_push(obj->queue, type, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    if (result == EVQ_OK)
        Py_RETURN_TRUE;
    if (result == EVQ_FULL)
        Py_RETURN_FALSE; /* dropped and counted, like a C producer */
    return set_evq_error(event_queue_state(self), result);
}

static double monotonic_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Waits for one event with the GIL released, in slices so that signals are
 * noticed. timeout_obj: None (forever) or seconds >= 0. Returns (type, bytes),
 * None on timeout, or NULL with an exception. */
static PyObject *wait_for_event(struct tsd_state *state, struct evq *queue,
                                PyObject *timeout_obj, int as_text)
{
    double timeout = -1.0;
    double deadline = 0.0;
    struct evq_event *event = NULL;
    enum evq_result result = EVQ_TIMEOUT;
    PyObject *ret = NULL;

    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 or None");
            return NULL;
        }
        deadline = monotonic_seconds() + timeout;
    }
    for (;;) {
        int slice_ms = TSD_WAIT_SLICE_MS;
        int last_slice = 0;

        if (timeout >= 0) {
            double left_ms = (deadline - monotonic_seconds()) * 1000.0;
            if (left_ms <= 0) {
                slice_ms = 0; /* one last look, without waiting */
                last_slice = 1;
            } else if (left_ms < slice_ms) {
                slice_ms = (int)left_ms + 1; /* round up: never spin on 0 */
            }
        }
        Py_BEGIN_ALLOW_THREADS
        result = evq_pop(queue, slice_ms, &event);
        Py_END_ALLOW_THREADS
        if (result != EVQ_TIMEOUT)
            break;
        if (PyErr_CheckSignals() < 0)
            return NULL;
        if (last_slice)
            break;
    }
    if (result == EVQ_TIMEOUT)
        Py_RETURN_NONE;
    if (result != EVQ_OK)
        return set_evq_error(state, result);
    if (as_text)
        ret = Py_BuildValue("(is#)", event->type, (const char *)event->data,
                            (Py_ssize_t)event->len);
    else
        ret = Py_BuildValue("(iy#)", event->type, (const char *)event->data,
                            (Py_ssize_t)event->len);
    evq_event_free(event);
    return ret;
}

static PyObject *event_queue_pop(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", NULL};
    PyObject *timeout_obj = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:pop", keywords, &timeout_obj))
        return NULL;
    return wait_for_event(event_queue_state(self),
                          ((struct event_queue_object *)self)->queue, timeout_obj, 0);
}

static PyObject *event_queue_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    evq_close(((struct event_queue_object *)self)->queue);
    Py_RETURN_NONE;
}

static PyObject *event_queue_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct evq_stats stats = {0};

    evq_get_stats(((struct event_queue_object *)self)->queue, &stats);
    return Py_BuildValue("{s:n,s:n,s:K,s:K,s:n,s:n,s:O}",
                         "depth", (Py_ssize_t)stats.depth,
                         "bytes", (Py_ssize_t)stats.bytes,
                         "pushed", (unsigned long long)stats.pushed,
                         "dropped", (unsigned long long)stats.dropped,
                         "max_events", (Py_ssize_t)stats.max_events,
                         "max_bytes", (Py_ssize_t)stats.max_bytes,
                         "closed", stats.closed ? Py_True : Py_False);
}

static PyMethodDef event_queue_methods[] = {
    {"push", event_queue_push, METH_VARARGS,
     "push(type, data) -> bool\n\nQueue a copy of data. Returns False when a limit "
     "was reached (the event is dropped and counted). Never blocks."},
    {"pop", (PyCFunction)(void (*)(void))event_queue_pop, METH_VARARGS | METH_KEYWORDS,
     "pop(timeout=None) -> (type, bytes) or None\n\nWait with the GIL released. "
     "Returns None on timeout; raises QueueClosedError once closed and drained."},
    {"close", event_queue_close, METH_NOARGS, "Wake every waiter; idempotent."},
    {"stats", event_queue_stats, METH_NOARGS, "Depth, limits and counters as a dict."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot event_queue_slots[] = {
    {Py_tp_doc, "EventQueue(max_events=1024, max_bytes=1048576)\n\n"
                "A bounded queue that C threads fill and a Python thread drains."},
    {Py_tp_new, event_queue_new},
    {Py_tp_dealloc, event_queue_dealloc},
    {Py_tp_methods, event_queue_methods},
    {0, NULL},
};

static PyType_Spec event_queue_spec = {
    .name = "octoprint_tsd._tsd.EventQueue",
    .basicsize = sizeof(struct event_queue_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = event_queue_slots,
};


/* ---- Tunnel ------------------------------------------------------------ */

struct tunnel_object {
    PyObject_HEAD
    struct evq *events;
    struct tun *tunnel;
};

#define TUNNEL_DEFAULT_EVENTS 4096
#define TUNNEL_DEFAULT_EVENT_BYTES (8 * 1024 * 1024)

static struct tsd_state *tunnel_state(PyObject *self)
{
    void *state = PyType_GetModuleState(Py_TYPE(self));
    assert(state != NULL);
    return (struct tsd_state *)state;
}

/* The one place where a tunnel result becomes a Python exception. */
static PyObject *set_tun_error(struct tsd_state *state, enum tun_result result,
                               const char *reason)
{
    const char *text = reason && *reason ? reason : tun_result_str(result);

    switch (result) {
    case TUN_ERR_NOMEM:
        return PyErr_NoMemory();
    case TUN_ERR_INVALID:
    case TUN_ERR_TOO_BIG:
        PyErr_SetString(PyExc_ValueError, text);
        return NULL;
    default:
        PyErr_SetString(state->tunnel_error, text);
        return NULL;
    }
}

static PyObject *tunnel_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"url", "token", "ca_file", "allow_cleartext_lan",
                               "max_incoming", "backoff_first_ms", "backoff_cap_ms",
                               "ping_after_s", "hangup_after_s", NULL};
    const char *url = NULL;
    const char *token = NULL;
    const char *ca_file = NULL;
    int allow_cleartext_lan = 0;
    Py_ssize_t max_incoming = 0;
    unsigned int backoff_first_ms = 0;
    unsigned int backoff_cap_ms = 0;
    unsigned short ping_after_s = 0;
    unsigned short hangup_after_s = 0;
    struct tunnel_object *self = NULL;
    struct tsd_state *state;
    struct tun_config config;
    enum tun_result result;
    char reason[512] = "";
    PyObject *module = PyType_GetModule(type);

    if (!module)
        return NULL;
    state = get_state(module);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|zpnIIHH:Tunnel", keywords, &url,
                                     &token, &ca_file, &allow_cleartext_lan, &max_incoming,
                                     &backoff_first_ms, &backoff_cap_ms, &ping_after_s,
                                     &hangup_after_s))
        return NULL;
    if (max_incoming < 0) {
        PyErr_SetString(PyExc_ValueError, "max_incoming must be >= 0");
        return NULL;
    }
    self = (struct tunnel_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    if (evq_new(TUNNEL_DEFAULT_EVENTS, TUNNEL_DEFAULT_EVENT_BYTES, &self->events) != EVQ_OK) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    config = (struct tun_config){
        .url = url,
        .token = token,
        .ca_file = ca_file,
        .allow_cleartext_lan = allow_cleartext_lan,
        .max_incoming = (size_t)max_incoming,
        .backoff_first_ms = backoff_first_ms,
        .backoff_cap_ms = backoff_cap_ms,
        .ping_after_s = ping_after_s,
        .hangup_after_s = hangup_after_s,
    };
    result = tun_new(&config, self->events, &self->tunnel, reason, sizeof(reason));
    if (result != TUN_OK) {
        Py_DECREF(self);
        return set_tun_error(state, result, reason);
    }
    return (PyObject *)self;
}

static void tunnel_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    struct tunnel_object *obj = (struct tunnel_object *)self;
    struct tun *tunnel = obj->tunnel;

    obj->tunnel = NULL;
    /* Joining never needs the GIL: the service thread never calls Python. */
    Py_BEGIN_ALLOW_THREADS
    tun_free(tunnel);
    Py_END_ALLOW_THREADS
    obj->events = evq_free(obj->events);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *tunnel_start(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct tunnel_object *obj = (struct tunnel_object *)self;
    char reason[512] = "";
    enum tun_result result;

    Py_BEGIN_ALLOW_THREADS
    result = tun_start(obj->tunnel, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TUN_OK)
        return set_tun_error(tunnel_state(self), result, reason);
    Py_RETURN_NONE;
}

static PyObject *tunnel_stop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct tunnel_object *obj = (struct tunnel_object *)self;

    Py_BEGIN_ALLOW_THREADS
    tun_stop(obj->tunnel);
    Py_END_ALLOW_THREADS
    /* Wake the drain thread: it sees the remaining events, then "closed". */
    evq_close(obj->events);
    Py_RETURN_NONE;
}

static PyObject *tunnel_send_common(PyObject *self, PyObject *args, int status)
{
    struct tunnel_object *obj = (struct tunnel_object *)self;
    const char *text;
    Py_ssize_t len;
    enum tun_result result;

    if (!PyArg_ParseTuple(args, status ? "s#:send_status" : "s#:send", &text, &len))
        return NULL;
    if (status)
        result = tun_send_status(obj->tunnel, text, (size_t)len);
    else
        result = tun_send_message(obj->tunnel, text, (size_t)len);
    if (result == TUN_OK)
        Py_RETURN_TRUE;
    if (result == TUN_ERR_FULL)
        Py_RETURN_FALSE; /* dropped and counted */
    return set_tun_error(tunnel_state(self), result, NULL);
}

static PyObject *tunnel_send_status(PyObject *self, PyObject *args)
{
    return tunnel_send_common(self, args, 1);
}

static PyObject *tunnel_send(PyObject *self, PyObject *args)
{
    return tunnel_send_common(self, args, 0);
}

static PyObject *tunnel_next_event(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", NULL};
    PyObject *timeout_obj = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:next_event", keywords, &timeout_obj))
        return NULL;
    return wait_for_event(tunnel_state(self), ((struct tunnel_object *)self)->events,
                          timeout_obj, 0);
}

static PyObject *tunnel_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct tunnel_object *obj = (struct tunnel_object *)self;
    struct tun_stats stats = {0};
    struct evq_stats queue = {0};

    tun_get_stats(obj->tunnel, &stats);
    evq_get_stats(obj->events, &queue);
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:I,s:n,s:K}",
        "connects", (unsigned long long)stats.connects,
        "disconnects", (unsigned long long)stats.disconnects,
        "received", (unsigned long long)stats.received,
        "malformed", (unsigned long long)stats.malformed,
        "oversized", (unsigned long long)stats.oversized,
        "binary_ignored", (unsigned long long)stats.binary_ignored,
        "events_dropped", (unsigned long long)stats.events_dropped,
        "status_sent", (unsigned long long)stats.status_sent,
        "status_replaced", (unsigned long long)stats.status_replaced,
        "messages_sent", (unsigned long long)stats.messages_sent,
        "messages_dropped", (unsigned long long)stats.messages_dropped,
        "connected", stats.connected ? Py_True : Py_False,
        "stopped", stats.stopped ? Py_True : Py_False,
        "next_retry_ms", (unsigned int)stats.next_retry_ms,
        "event_queue_depth", (Py_ssize_t)queue.depth,
        "event_queue_dropped", (unsigned long long)queue.dropped);
}

static PyMethodDef tunnel_methods[] = {
    {"start", tunnel_start, METH_NOARGS,
     "Start the service thread; it connects and keeps reconnecting."},
    {"stop", tunnel_stop, METH_NOARGS,
     "Stop and join the service thread (idempotent); no socket or thread remains."},
    {"send_status", tunnel_send_status, METH_VARARGS,
     "send_status(json_text) -> True\n\nReplace any unsent status with this one."},
    {"send", tunnel_send, METH_VARARGS,
     "send(json_text) -> bool\n\nQueue an ack or event; False when the lane is full."},
    {"next_event", (PyCFunction)(void (*)(void))tunnel_next_event,
     METH_VARARGS | METH_KEYWORDS,
     "next_event(timeout=None) -> (type, bytes) or None\n\nWait with the GIL released."},
    {"stats", tunnel_stats, METH_NOARGS, "Counters and state as a dict."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot tunnel_slots[] = {
    {Py_tp_doc, "Tunnel(url, token, ca_file=None, allow_cleartext_lan=False, ...)\n\n"
                "The device websocket to an Obico-compatible server."},
    {Py_tp_new, tunnel_new},
    {Py_tp_dealloc, tunnel_dealloc},
    {Py_tp_methods, tunnel_methods},
    {0, NULL},
};

static PyType_Spec tunnel_spec = {
    .name = "octoprint_tsd._tsd.Tunnel",
    .basicsize = sizeof(struct tunnel_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = tunnel_slots,
};


/* ---- Dispatcher ------------------------------------------------------------ */

struct dispatcher_object {
    PyObject_HEAD
    struct proto *proto;
};

static PyObject *dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"allow_raw_gcode", NULL};
    int allow_raw_gcode = 0;
    struct proto_options options;
    struct dispatcher_object *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:Dispatcher", keywords, &allow_raw_gcode))
        return NULL;
    self = (struct dispatcher_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    options = (struct proto_options){.allow_raw_gcode = allow_raw_gcode};
    if (proto_new(&options, &self->proto) != PROTO_OK) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void dispatcher_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);

    ((struct dispatcher_object *)self)->proto = proto_free(((struct dispatcher_object *)self)->proto);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *dispatcher_dispatch(PyObject *self, PyObject *args)
{
    struct dispatcher_object *obj = (struct dispatcher_object *)self;
    const char *message;
    Py_ssize_t len;
    char *actions = NULL;
    size_t actions_len = 0;
    enum proto_result result;
    PyObject *ret;

    if (!PyArg_ParseTuple(args, "y#:dispatch", &message, &len))
        return NULL;
    result = proto_dispatch(obj->proto, message, (size_t)len, &actions, &actions_len);
    if (result == PROTO_ERR_NOMEM)
        return PyErr_NoMemory();
    if (result != PROTO_OK) {
        PyObject *module = PyType_GetModule(Py_TYPE(self));
        if (module)
            PyErr_Format(get_state(module)->error, "server message ignored: %s",
                         proto_result_str(result));
        return NULL;
    }
    ret = PyUnicode_DecodeUTF8(actions, (Py_ssize_t)actions_len, "strict");
    free(actions);
    return ret;
}

static PyObject *dispatcher_set_allow_raw_gcode(PyObject *self, PyObject *arg)
{
    struct proto_options options;
    int allow = PyObject_IsTrue(arg);

    if (allow < 0)
        return NULL;
    options = (struct proto_options){.allow_raw_gcode = allow};
    proto_set_options(((struct dispatcher_object *)self)->proto, &options);
    Py_RETURN_NONE;
}

static PyObject *dispatcher_gcode_line_is_safe(PyObject *self, PyObject *args)
{
    const char *line;
    Py_ssize_t len;

    (void)self;
    if (!PyArg_ParseTuple(args, "s#:gcode_line_is_safe", &line, &len))
        return NULL;
    return PyBool_FromLong(proto_gcode_line_is_safe(line, (size_t)len));
}

static PyMethodDef dispatcher_methods[] = {
    {"dispatch", dispatcher_dispatch, METH_VARARGS,
     "dispatch(message: bytes) -> str\n\nValidate one server message against the allow-list "
     "and return a JSON array of normalized actions."},
    {"set_allow_raw_gcode", dispatcher_set_allow_raw_gcode, METH_O,
     "Allow any G-code in passthru commands (off by default)."},
    {"gcode_line_is_safe", dispatcher_gcode_line_is_safe, METH_VARARGS,
     "gcode_line_is_safe(line) -> bool"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot dispatcher_slots[] = {
    {Py_tp_doc, "Dispatcher(allow_raw_gcode=False)\n\nThe allow-list for server messages."},
    {Py_tp_new, dispatcher_new},
    {Py_tp_dealloc, dispatcher_dealloc},
    {Py_tp_methods, dispatcher_methods},
    {0, NULL},
};

static PyType_Spec dispatcher_spec = {
    .name = "octoprint_tsd._tsd.Dispatcher",
    .basicsize = sizeof(struct dispatcher_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = dispatcher_slots,
};


/* ---- token store ------------------------------------------------------- */

/* The one place where a token-store result becomes an exception. The
 * exception carries the result name as its "code" attribute. */
static PyObject *set_tok_error(struct tsd_state *state, enum tok_result result,
                               const char *reason)
{
    PyObject *exc;
    PyObject *code;

    if (result == TOK_ERR_NOMEM)
        return PyErr_NoMemory();
    exc = PyObject_CallFunction(state->token_error, "s",
                                reason && *reason ? reason : tok_result_str(result));
    if (!exc)
        return NULL;
    code = PyUnicode_FromString(result == TOK_ERR_NOT_FOUND ? "not_found"
                                : result == TOK_ERR_CORRUPT ? "corrupt"
                                : result == TOK_ERR_PERMISSIONS ? "permissions"
                                : result == TOK_ERR_INVALID ? "invalid"
                                : "io");
    if (!code || PyObject_SetAttrString(exc, "code", code) < 0) {
        Py_XDECREF(code);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(code);
    PyErr_SetObject(state->token_error, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *tsd_token_save(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"directory", "server", "token", "name", NULL};
    const char *directory;
    struct tok_record record = {0};
    char reason[512] = "";
    enum tok_result result;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sss|z:token_save", keywords, &directory,
                                     &record.server, &record.token, &record.name))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_save(directory, &record, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return set_tok_error(get_state(module), result, reason);
    Py_RETURN_NONE;
}

static PyObject *tsd_token_load(PyObject *module, PyObject *args)
{
    const char *directory;
    struct tok_record *record = NULL;
    char reason[512] = "";
    enum tok_result result;
    PyObject *ret;

    if (!PyArg_ParseTuple(args, "s:token_load", &directory))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_load(directory, &record, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return set_tok_error(get_state(module), result, reason);
    ret = Py_BuildValue("{s:s,s:s,s:z}", "server", record->server, "token", record->token,
                        "name", record->name);
    tok_record_free(record);
    return ret;
}

static PyObject *tsd_token_delete(PyObject *module, PyObject *args)
{
    const char *directory;
    char reason[512] = "";
    enum tok_result result;

    if (!PyArg_ParseTuple(args, "s:token_delete", &directory))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_delete(directory, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return set_tok_error(get_state(module), result, reason);
    Py_RETURN_NONE;
}

/* ---- module functions -------------------------------------------------- */

static PyObject *tsd_library_versions_py(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    const struct tsd_library_version *entry;
    PyObject *dict = PyDict_New();

    (void)module;
    if (!dict)
        return NULL;
    for (entry = tsd_library_versions(); entry->name; entry++) {
        PyObject *value = PyUnicode_FromString(entry->version ? entry->version : "unknown");
        if (!value || PyDict_SetItemString(dict, entry->name, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(value);
    }
    return dict;
}

static PyMethodDef tsd_methods[] = {
    {"token_save", (PyCFunction)(void (*)(void))tsd_token_save, METH_VARARGS | METH_KEYWORDS,
     "token_save(directory, server, token, name=None)\n\nAtomically replace the token file "
     "(mode 0600) in directory."},
    {"token_load", tsd_token_load, METH_VARARGS,
     "token_load(directory) -> dict\n\nRead and verify the token file; raises TokenError "
     "(code: not_found, corrupt, permissions, invalid, io)."},
    {"token_delete", tsd_token_delete, METH_VARARGS,
     "token_delete(directory)\n\nRemove the token file; a missing one is fine."},
    {"library_versions", tsd_library_versions_py, METH_NOARGS,
     "library_versions() -> dict\n\nVersions of the C libraries loaded at run time."},
    {NULL, NULL, 0, NULL},
};

static int add_object(PyObject *module, const char *name, PyObject *value)
{
    /* PyModule_AddObjectRef is 3.10+; we support 3.9. */
    Py_INCREF(value);
    if (PyModule_AddObject(module, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
}

static int tsd_exec(PyObject *module)
{
    struct tsd_state *state = get_state(module);

    state->error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.TsdError", "Base class of errors from the native core.",
        PyExc_RuntimeError, NULL);
    if (!state->error || add_object(module, "TsdError", state->error) < 0)
        return -1;
    state->queue_closed_error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.QueueClosedError", "The event queue was closed and is empty.",
        state->error, NULL);
    if (!state->queue_closed_error ||
        add_object(module, "QueueClosedError", state->queue_closed_error) < 0)
        return -1;
    state->event_queue_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &event_queue_spec, NULL);
    if (!state->event_queue_type ||
        add_object(module, "EventQueue", (PyObject *)state->event_queue_type) < 0)
        return -1;
    state->tunnel_error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.TunnelError", "The tunnel could not be configured or started.",
        state->error, NULL);
    if (!state->tunnel_error || add_object(module, "TunnelError", state->tunnel_error) < 0)
        return -1;
    state->tunnel_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &tunnel_spec, NULL);
    if (!state->tunnel_type ||
        add_object(module, "Tunnel", (PyObject *)state->tunnel_type) < 0)
        return -1;
    state->token_error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.TokenError",
        "The token file is missing, corrupt, unsafe or could not be written.", state->error, NULL);
    if (!state->token_error || add_object(module, "TokenError", state->token_error) < 0)
        return -1;
    state->dispatcher_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &dispatcher_spec, NULL);
    if (!state->dispatcher_type ||
        add_object(module, "Dispatcher", (PyObject *)state->dispatcher_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "TUNNEL_EVENT_LOG", TUN_EVENT_LOG) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_CONNECTED", TUN_EVENT_CONNECTED) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_DISCONNECTED", TUN_EVENT_DISCONNECTED) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_MESSAGE", TUN_EVENT_MESSAGE) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_UNAUTHORIZED", TUN_EVENT_UNAUTHORIZED) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_REPLACED", TUN_EVENT_REPLACED) < 0 ||
        PyModule_AddIntConstant(module, "TUNNEL_EVENT_STOPPED", TUN_EVENT_STOPPED) < 0)
        return -1;
    if (PyModule_AddStringConstant(module, "__version__", TSD_VERSION) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "EVQ_MAX_EVENTS_LIMIT", EVQ_MAX_EVENTS_LIMIT) < 0 ||
        PyModule_AddIntConstant(module, "EVQ_MAX_BYTES_LIMIT", EVQ_MAX_BYTES_LIMIT) < 0)
        return -1;
    return 0;
}

static int tsd_traverse(PyObject *module, visitproc visit, void *arg)
{
    struct tsd_state *state = get_state(module);

    Py_VISIT(state->error);
    Py_VISIT(state->queue_closed_error);
    Py_VISIT(state->event_queue_type);
    Py_VISIT(state->tunnel_error);
    Py_VISIT(state->tunnel_type);
    Py_VISIT(state->dispatcher_type);
    Py_VISIT(state->token_error);
    return 0;
}

static int tsd_clear(PyObject *module)
{
    struct tsd_state *state = get_state(module);

    Py_CLEAR(state->error);
    Py_CLEAR(state->queue_closed_error);
    Py_CLEAR(state->event_queue_type);
    Py_CLEAR(state->tunnel_error);
    Py_CLEAR(state->tunnel_type);
    Py_CLEAR(state->dispatcher_type);
    Py_CLEAR(state->token_error);
    return 0;
}

static void tsd_free(void *module)
{
    (void)tsd_clear((PyObject *)module);
}

static PyModuleDef_Slot tsd_slots[] = {
    {Py_mod_exec, tsd_exec},
    {0, NULL},
};

static struct PyModuleDef tsd_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "octoprint_tsd._tsd",
    .m_doc = "Native core of The Spaghetti Detective (private: use octoprint_tsd.bridge).",
    .m_size = sizeof(struct tsd_state),
    .m_methods = tsd_methods,
    .m_slots = tsd_slots,
    .m_traverse = tsd_traverse,
    .m_clear = tsd_clear,
    .m_free = tsd_free,
};

PyMODINIT_FUNC PyInit__tsd(void); /* the one exported symbol */

PyMODINIT_FUNC PyInit__tsd(void)
{
    return PyModuleDef_Init(&tsd_module_def);
}
