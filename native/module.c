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

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/annotate.h"
#include "core/decide.h"
#include "core/evq.h"
#include "core/grab.h"
#include "core/linkmsg.h"
#include "core/proto.h"
#include "core/superv.h"
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
    PyObject *grab_error;         /* _tsd.GrabError(TsdError) */
    PyTypeObject *camera_type;
    PyTypeObject *decider_type;
    PyObject *helper_error;       /* _tsd.HelperError(TsdError) */
    PyTypeObject *detector_type;
};

static inline struct tsd_state *get_state(PyObject *module)
{
    void *state = PyModule_GetState(module);
    assert(state != NULL);
    return (struct tsd_state *)state;
}

/* The module state of one of our objects: our types are not subclassable,
 * so Py_TYPE(self) is always our heap type. */
static struct tsd_state *type_state(PyObject *self)
{
    void *state = PyType_GetModuleState(Py_TYPE(self));
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
    return set_evq_error(type_state(self), result);
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
    return wait_for_event(type_state(self),
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
        return set_tun_error(type_state(self), result, reason);
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
    return set_tun_error(type_state(self), result, NULL);
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
    return wait_for_event(type_state(self), ((struct tunnel_object *)self)->events,
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

static PyObject *dispatcher_dispatch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"message", "state", "print_id", "absolute_xyz", "absolute_e",
                               "extruders", "shared_nozzle", "heated_bed", "heated_chamber",
                               "max_tool_temp", "max_bed_temp", "max_chamber_temp", "now_ms",
                               NULL};
    static const char *const states[] = {"idle", "printing", "paused"};
    struct dispatcher_object *obj = (struct dispatcher_object *)self;
    struct proto_printer printer = {
        .print_id = -1, .absolute_xyz = 1, .absolute_e = 1, .extruders = 1,
        .max_tool_temp = PROTO_MAX_TOOL_TEMP, .max_bed_temp = PROTO_MAX_BED_TEMP,
        .max_chamber_temp = PROTO_MAX_CHAMBER_TEMP,
    };
    const char *message;
    const char *state;
    Py_ssize_t len;
    char *actions = NULL;
    size_t actions_len = 0;
    enum proto_result result;
    PyObject *ret;
    size_t i;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#s|$LppipppdddL:dispatch", keywords,
                                     &message, &len, &state, &printer.print_id,
                                     &printer.absolute_xyz, &printer.absolute_e,
                                     &printer.extruders, &printer.shared_nozzle,
                                     &printer.heated_bed, &printer.heated_chamber,
                                     &printer.max_tool_temp, &printer.max_bed_temp,
                                     &printer.max_chamber_temp, &printer.now_ms))
        return NULL;
    for (i = 0; i < sizeof(states) / sizeof(states[0]) && strcmp(state, states[i]) != 0; i++)
        ;
    if (i == sizeof(states) / sizeof(states[0])) {
        PyErr_SetString(PyExc_ValueError, "state must be idle, printing or paused");
        return NULL;
    }
    printer.state = (enum proto_printer_state)i;
    result = proto_dispatch(obj->proto, &printer, message, (size_t)len, &actions, &actions_len);
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
    {"dispatch", (PyCFunction)(void (*)(void))dispatcher_dispatch, METH_VARARGS | METH_KEYWORDS,
     "dispatch(message: bytes, state: str, *, print_id=-1, absolute_xyz=True, absolute_e=True,\n"
     "         extruders=1, shared_nozzle=False, heated_bed=False, heated_chamber=False,\n"
     "         max_tool_temp, max_bed_temp, max_chamber_temp, now_ms=0) -> str\n\n"
     "Validate one server message against the allow-list for a printer in state 'idle',\n"
     "'printing' or 'paused' (the rest describes the printer: see proto.h) and return a JSON\n"
     "array of normalized actions. The temperature limits default to the fixed ceilings."},
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


/* ---- Camera (grab) ------------------------------------------------------- */

/* Short, stable names for GrabError.code (the reason carries the details). */
static const char *grab_code(enum grab_result result)
{
    switch (result) {
    case GRAB_ERR_INVALID: return "invalid";
    case GRAB_ERR_NOMEM: return "nomem";
    case GRAB_ERR_SYSTEM: return "system";
    case GRAB_ERR_URL: return "url";
    case GRAB_ERR_DNS: return "dns";
    case GRAB_ERR_CONNECT_REFUSED: return "refused";
    case GRAB_ERR_CONNECT_TIMEOUT: return "connect_timeout";
    case GRAB_ERR_CONNECT: return "connect";
    case GRAB_ERR_TLS: return "tls";
    case GRAB_ERR_TLS_VERIFY: return "tls_verify";
    case GRAB_ERR_IO: return "io";
    case GRAB_ERR_TIMEOUT: return "timeout";
    case GRAB_ERR_CLOSED: return "closed";
    case GRAB_ERR_HTTP: return "http";
    case GRAB_ERR_HTTP_STATUS: return "http_status";
    case GRAB_ERR_REDIRECT: return "redirect";
    case GRAB_ERR_NOT_MULTIPART: return "not_multipart";
    case GRAB_ERR_NO_BOUNDARY: return "no_boundary";
    case GRAB_ERR_TOO_BIG: return "too_big";
    case GRAB_ERR_INVALID_JPEG: return "invalid_jpeg";
    case GRAB_ERR_NO_FRAMES: return "no_frames";
    case GRAB_ERR_INTERRUPTED: return "interrupted";
    default: return "error";
    }
}

/* Raises exc_type(reason) with a "code" attribute; returns NULL. */
static PyObject *set_coded_error(PyObject *exc_type, const char *code, const char *reason)
{
    PyObject *exc = PyObject_CallFunction(exc_type, "s", reason);
    PyObject *code_obj;

    if (!exc)
        return NULL;
    code_obj = PyUnicode_FromString(code);
    if (!code_obj || PyObject_SetAttrString(exc, "code", code_obj) < 0) {
        Py_XDECREF(code_obj);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(code_obj);
    PyErr_SetObject(exc_type, exc);
    Py_DECREF(exc);
    return NULL;
}

/* The one place where a grab result becomes an exception. */
static PyObject *set_grab_error(struct tsd_state *state, enum grab_result result,
                                const char *reason)
{
    char text[GRAB_REASON_SIZE + 64];

    if (result == GRAB_ERR_NOMEM)
        return PyErr_NoMemory();
    snprintf(text, sizeof(text), "%s", reason && *reason ? reason : grab_result_str(result));
    return set_coded_error(state->grab_error, grab_code(result), text);
}

#define CAMERA_SLICE_MS 200

struct camera_object {
    PyObject_HEAD
    struct grab_config config; /* strings below are owned */
    char *url;
    char *ca_file;
    int stream_mode;
    int busy;                  /* a grab() is running (changed with the GIL held) */
    pthread_mutex_t lock;      /* guards stream against interrupt() */
    struct grab_stream *stream;
    atomic_bool nudged;
    atomic_bool stopped;
    uint64_t sessions;         /* stream sessions opened */
    struct grab_stream_stats last_stats;
};

static char *dup_or_null(const char *text)
{
    return text && *text ? strdup(text) : NULL;
}

static PyObject *camera_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"url", "ca_file", "stream", "connect_timeout_ms",
                               "read_timeout_ms", "total_timeout_ms", "frame_timeout_ms",
                               "max_frame", NULL};
    const char *url;
    const char *ca_file = NULL;
    int stream_mode = 0;
    int connect_timeout_ms = 0, read_timeout_ms = 0, total_timeout_ms = 0, frame_timeout_ms = 0;
    Py_ssize_t max_frame = 0;
    struct camera_object *self;
    struct grab_url parsed;
    char reason[GRAB_REASON_SIZE];
    enum grab_result result;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|zpiiiin:Camera", keywords, &url, &ca_file,
                                     &stream_mode, &connect_timeout_ms, &read_timeout_ms,
                                     &total_timeout_ms, &frame_timeout_ms, &max_frame))
        return NULL;
    if (max_frame < 0 || (size_t)max_frame > GRAB_MAX_FRAME_LIMIT) {
        PyErr_Format(PyExc_ValueError, "max_frame must be between 0 and %u", GRAB_MAX_FRAME_LIMIT);
        return NULL;
    }
    result = grab_url_parse(url, &parsed, reason, sizeof(reason));
    if (result != GRAB_OK) {
        PyObject *module = PyType_GetModule(type);
        return module ? set_grab_error(get_state(module), result, reason) : NULL;
    }
    self = (struct camera_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    atomic_init(&self->nudged, false);
    atomic_init(&self->stopped, false);
    self->url = strdup(url);
    self->ca_file = dup_or_null(ca_file);
    if (!self->url || (ca_file && *ca_file && !self->ca_file)) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->stream_mode = stream_mode;
    self->config = (struct grab_config){
        .url = self->url,
        .ca_file = self->ca_file,
        .connect_timeout_ms = connect_timeout_ms,
        .read_timeout_ms = read_timeout_ms,
        .total_timeout_ms = total_timeout_ms,
        .frame_timeout_ms = frame_timeout_ms,
        .max_frame = (size_t)max_frame,
    };
    return (PyObject *)self;
}

static void camera_drop_stream(struct camera_object *obj)
{
    struct grab_stream *stream;

    pthread_mutex_lock(&obj->lock);
    stream = obj->stream;
    obj->stream = NULL;
    pthread_mutex_unlock(&obj->lock);
    if (stream)
        grab_stream_get_stats(stream, &obj->last_stats);
    grab_stream_close(stream);
}

static void camera_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    struct camera_object *obj = (struct camera_object *)self;

    camera_drop_stream(obj);
    pthread_mutex_destroy(&obj->lock);
    free(obj->url);
    free(obj->ca_file);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *frame_tuple(struct grab_frame *frame)
{
    return Py_BuildValue("(y#iiK)", (const char *)frame->data, (Py_ssize_t)frame->len,
                         frame->width, frame->height, (unsigned long long)frame->seq);
}

/* Stream mode: drive the session for wait_ms (keeping only the newest frame)
 * and until a frame is there; the session's own timeouts bound the wait. */
static enum grab_result camera_stream_frame(struct camera_object *obj, int wait_ms,
                                            struct grab_frame **ret_frame, char *reason,
                                            size_t reason_len)
{
    struct grab_frame *newest = NULL;
    struct grab_frame *frame = NULL;
    enum grab_result result = GRAB_OK;
    double until = monotonic_seconds() + wait_ms / 1000.0;

    if (!obj->stream) {
        struct grab_stream *stream = NULL;
        result = grab_stream_open(&obj->config, &stream, reason, reason_len);
        if (result != GRAB_OK)
            goto out;
        pthread_mutex_lock(&obj->lock);
        obj->stream = stream;
        pthread_mutex_unlock(&obj->lock);
        obj->sessions++;
        if (atomic_load(&obj->stopped))
            grab_stream_interrupt(stream);
    }
    for (;;) {
        double left = until - monotonic_seconds();
        int slice = CAMERA_SLICE_MS;

        if (left > 0 && left * 1000.0 < slice)
            slice = (int)(left * 1000.0) + 1;
        result = grab_stream_poll(obj->stream, slice, reason, reason_len);
        if (result == GRAB_OK && grab_stream_take_frame(obj->stream, &frame) == GRAB_OK) {
            grab_frame_free(newest);
            newest = frame;
            frame = NULL;
        } else if (result != GRAB_OK && result != GRAB_NO_FRAME) {
            goto out;
        }
        if (newest && (monotonic_seconds() >= until || atomic_exchange(&obj->nudged, false)))
            break;
    }
    result = GRAB_OK;
out:
    if (result == GRAB_OK) {
        *ret_frame = newest;
        newest = NULL;
    } else if (obj->stream) {
        camera_drop_stream(obj); /* the session ended: the next grab reconnects */
    }
    grab_frame_free(newest);
    return result;
}

static PyObject *camera_grab(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"wait_ms", NULL};
    struct camera_object *obj = (struct camera_object *)self;
    int wait_ms = 0;
    struct grab_frame *frame = NULL;
    char reason[GRAB_REASON_SIZE] = "";
    enum grab_result result;
    PyObject *ret;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:grab", keywords, &wait_ms))
        return NULL;
    if (wait_ms < 0 || wait_ms > GRAB_MAX_TIMEOUT_MS) {
        PyErr_SetString(PyExc_ValueError, "wait_ms out of range");
        return NULL;
    }
    if (obj->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Camera.grab() is already running in another thread");
        return NULL;
    }
    if (atomic_load(&obj->stopped))
        return set_grab_error(type_state(self), GRAB_ERR_INTERRUPTED, "camera closed");
    obj->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    if (obj->stream_mode) {
        result = camera_stream_frame(obj, wait_ms, &frame, reason, sizeof(reason));
    } else {
        result = grab_snapshot(&obj->config, &frame, reason, sizeof(reason));
    }
    Py_END_ALLOW_THREADS
    obj->busy = 0;
    if (result != GRAB_OK)
        return set_grab_error(type_state(self), result, reason);
    ret = frame_tuple(frame);
    grab_frame_free(frame);
    return ret;
}

static PyObject *camera_nudge(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&((struct camera_object *)self)->nudged, true);
    Py_RETURN_NONE;
}

static PyObject *camera_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct camera_object *obj = (struct camera_object *)self;

    atomic_store(&obj->stopped, true);
    pthread_mutex_lock(&obj->lock);
    if (obj->stream)
        grab_stream_interrupt(obj->stream);
    pthread_mutex_unlock(&obj->lock);
    if (!obj->busy)
        camera_drop_stream(obj);
    Py_RETURN_NONE;
}

static PyObject *camera_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct camera_object *obj = (struct camera_object *)self;
    struct grab_stream_stats stats = obj->last_stats;

    pthread_mutex_lock(&obj->lock);
    if (obj->stream)
        grab_stream_get_stats(obj->stream, &stats);
    pthread_mutex_unlock(&obj->lock);
    return Py_BuildValue("{s:O,s:i,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:n,s:K}",
                         "connected", stats.connected ? Py_True : Py_False,
                         "http_status", stats.http_status,
                         "bytes", (unsigned long long)stats.bytes,
                         "frames", (unsigned long long)stats.frames,
                         "frames_taken", (unsigned long long)stats.frames_taken,
                         "frames_replaced", (unsigned long long)stats.frames_replaced,
                         "invalid_frames", (unsigned long long)stats.invalid_frames,
                         "too_big", (unsigned long long)stats.too_big,
                         "skipped_bytes", (unsigned long long)stats.skipped_bytes,
                         "memory", (Py_ssize_t)stats.memory,
                         "sessions", (unsigned long long)obj->sessions);
}

static PyMethodDef camera_methods[] = {
    {"grab", (PyCFunction)(void (*)(void))camera_grab, METH_VARARGS | METH_KEYWORDS,
     "grab(wait_ms=0) -> (jpeg: bytes, width, height, seq)\n\nSnapshot mode: one GET. Stream "
     "mode: keeps one connection, reads for wait_ms (only the newest frame is kept) or until "
     "nudge(), then returns the newest valid frame. Raises GrabError (with .code); after an "
     "error the next stream grab reconnects. The GIL is released."},
    {"nudge", camera_nudge, METH_NOARGS,
     "Any thread: make a running stream grab() return its newest frame now."},
    {"close", camera_close, METH_NOARGS,
     "Any thread: stop (a running grab() raises GrabError 'interrupted') and disconnect."},
    {"stats", camera_stats, METH_NOARGS, "stats() -> dict of stream counters"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot camera_slots[] = {
    {Py_tp_doc, "Camera(url, ca_file=None, stream=False, connect_timeout_ms=0, "
                "read_timeout_ms=0, total_timeout_ms=0, frame_timeout_ms=0, max_frame=0)\n\n"
                "JPEG frames from a webcam's snapshot URL or MJPEG stream (0: defaults)."},
    {Py_tp_new, camera_new},
    {Py_tp_dealloc, camera_dealloc},
    {Py_tp_methods, camera_methods},
    {0, NULL},
};

static PyType_Spec camera_spec = {
    .name = "octoprint_tsd._tsd.Camera",
    .basicsize = sizeof(struct camera_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = camera_slots,
};


/* ---- Decider (decide) ---------------------------------------------------- */

struct decider_object {
    PyObject_HEAD
    struct decide *decide;
};

static int parse_decide_params(PyObject *args, PyObject *kwargs, const char *format,
                               struct decide_params *params)
{
    static char *keywords[] = {"sensitivity", "bending_factor", "top_n", "frame_interval_s",
                               NULL};
    unsigned int top_n = params->top_n;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &params->sensitivity,
                                     &params->bending_factor, &top_n, &params->frame_interval_s))
        return -1;
    params->top_n = top_n;
    return 0;
}

static PyObject *decider_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    struct decide_params params = decide_params_default();
    struct decider_object *self;
    enum decide_result result;

    if (parse_decide_params(args, kwargs, "|ddId:Decider", &params) < 0)
        return NULL;
    self = (struct decider_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    result = decide_new(&params, &self->decide);
    if (result != DECIDE_OK) {
        Py_DECREF(self);
        if (result == DECIDE_ERR_NOMEM)
            return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, "Decider: parameter out of range (see decide.h)");
        return NULL;
    }
    return (PyObject *)self;
}

static void decider_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);

    ((struct decider_object *)self)->decide = decide_free(((struct decider_object *)self)->decide);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *decider_add_frame(PyObject *self, PyObject *arg)
{
    struct decider_object *obj = (struct decider_object *)self;
    PyObject *seq = PySequence_Fast(arg, "add_frame() takes a sequence of confidences");
    double *confidences = NULL;
    struct decide_frame_result frame;
    Py_ssize_t n, i;
    PyObject *ret = NULL;

    if (!seq)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n > DECIDE_MAX_DETECTIONS) {
        PyErr_Format(PyExc_ValueError, "at most %u detections", DECIDE_MAX_DETECTIONS);
        goto out;
    }
    confidences = PyMem_Calloc(n ? (size_t)n : 1, sizeof(double));
    if (!confidences) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < n; i++) {
        confidences[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (confidences[i] == -1.0 && PyErr_Occurred())
            goto out;
    }
    if (decide_add_frame(obj->decide, confidences, (size_t)n, &frame) != DECIDE_OK) {
        PyErr_SetString(PyExc_ValueError, "every confidence must be a number in [0, 1]");
        goto out;
    }
    ret = Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:K,s:s}", "p", frame.p, "ewm", frame.ewm,
                        "short_mean", frame.short_mean, "long_mean", frame.long_mean,
                        "adjusted", frame.adjusted, "frame", (unsigned long long)frame.frame,
                        "verdict", decide_verdict_str(frame.verdict));
out:
    PyMem_Free(confidences);
    Py_DECREF(seq);
    return ret;
}

static PyObject *decider_print_start(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    decide_print_start(((struct decider_object *)self)->decide);
    Py_RETURN_NONE;
}

static PyObject *decider_set_params(PyObject *self, PyObject *args, PyObject *kwargs)
{
    struct decider_object *obj = (struct decider_object *)self;
    struct decide_params params;

    decide_get_params(obj->decide, &params);
    if (parse_decide_params(args, kwargs, "|ddId:set_params", &params) < 0)
        return NULL;
    if (decide_set_params(obj->decide, &params) != DECIDE_OK) {
        PyErr_SetString(PyExc_ValueError, "Decider: parameter out of range (see decide.h)");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *decider_params(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct decide_params params;
    struct decide_effective eff;

    decide_get_params(((struct decider_object *)self)->decide, &params);
    decide_get_effective(((struct decider_object *)self)->decide, &eff);
    return Py_BuildValue("{s:d,s:d,s:I,s:d,s:d,s:d,s:K,s:K,s:K}", "sensitivity",
                         params.sensitivity, "bending_factor", params.bending_factor, "top_n",
                         params.top_n, "frame_interval_s", params.frame_interval_s, "span",
                         eff.span, "alpha", eff.alpha, "short_window",
                         (unsigned long long)eff.short_window, "long_window",
                         (unsigned long long)eff.long_window, "grace_frames",
                         (unsigned long long)eff.grace_frames);
}

static PyObject *decider_long_term(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    double mean = 0;
    uint64_t count = 0;

    decide_get_long_term(((struct decider_object *)self)->decide, &mean, &count);
    return Py_BuildValue("(dK)", mean, (unsigned long long)count);
}

static PyObject *decider_set_long_term(PyObject *self, PyObject *args)
{
    double mean;
    unsigned long long count;

    if (!PyArg_ParseTuple(args, "dK:set_long_term", &mean, &count))
        return NULL;
    if (decide_set_long_term(((struct decider_object *)self)->decide, mean, count) != DECIDE_OK) {
        PyErr_SetString(PyExc_ValueError, "the long-term mean must be finite and >= 0");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef decider_methods[] = {
    {"add_frame", decider_add_frame, METH_O,
     "add_frame(confidences) -> dict(p, ewm, short_mean, long_mean, adjusted, frame, verdict)"},
    {"print_start", decider_print_start, METH_NOARGS,
     "A new print: reset the EWM, the short-term mean and the frame count."},
    {"set_params", (PyCFunction)(void (*)(void))decider_set_params, METH_VARARGS | METH_KEYWORDS,
     "set_params(sensitivity=, bending_factor=, top_n=, frame_interval_s=)"},
    {"params", decider_params, METH_NOARGS, "params() -> dict (with the time-scaled constants)"},
    {"long_term", decider_long_term, METH_NOARGS, "long_term() -> (mean, count)"},
    {"set_long_term", decider_set_long_term, METH_VARARGS, "set_long_term(mean, count)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot decider_slots[] = {
    {Py_tp_doc, "Decider(sensitivity=1.0, bending_factor=1.0, top_n=0, frame_interval_s=10.0)"
                "\n\nThe Obico decision logic (native/core/decide.h). Not thread-safe."},
    {Py_tp_new, decider_new},
    {Py_tp_dealloc, decider_dealloc},
    {Py_tp_methods, decider_methods},
    {0, NULL},
};

static PyType_Spec decider_spec = {
    .name = "octoprint_tsd._tsd.Decider",
    .basicsize = sizeof(struct decider_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = decider_slots,
};


/* ---- Detector (superv) --------------------------------------------------- */

static const char *superv_code(enum superv_result result)
{
    switch (result) {
    case SUPERV_ERR_INVALID: return "invalid";
    case SUPERV_ERR_NOMEM: return "nomem";
    case SUPERV_ERR_SYSTEM: return "system";
    case SUPERV_ERR_SPAWN: return "spawn";
    case SUPERV_ERR_BACKOFF: return "backoff";
    case SUPERV_ERR_CONFIG: return "config";
    case SUPERV_ERR_TIMEOUT: return "timeout";
    case SUPERV_ERR_CRASHED: return "crashed";
    case SUPERV_ERR_PROTOCOL: return "protocol";
    case SUPERV_ERR_REFUSED: return "refused";
    case SUPERV_ERR_CLOSED: return "closed";
    default: return "error";
    }
}

/* The one place where a supervisor result becomes an exception. */
static PyObject *set_superv_error(struct tsd_state *state, enum superv_result result,
                                  const char *reason)
{
    if (result == SUPERV_ERR_NOMEM)
        return PyErr_NoMemory();
    return set_coded_error(state->helper_error, superv_code(result),
                           reason && *reason ? reason : superv_result_str(result));
}

struct detector_object {
    PyObject_HEAD
    struct superv *superv;
    int busy; /* detect()/ping()/stop() running (changed with the GIL held) */
};

static PyObject *detector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"helper_path", "config_path", "nice", "memory_limit_mb",
                               "start_timeout_ms", "deadline_ms", "backoff_min_ms",
                               "backoff_max_ms", NULL};
    struct superv_config config;
    long long memory_limit_mb = 0;
    char reason[SUPERV_REASON_SIZE] = "";
    struct detector_object *self;
    enum superv_result result;

    superv_config_init(&config);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|iLiiii:Detector", keywords,
                                     &config.helper_path, &config.config_path,
                                     &config.nice_increment, &memory_limit_mb,
                                     &config.start_timeout_ms, &config.deadline_ms,
                                     &config.backoff_min_ms, &config.backoff_max_ms))
        return NULL;
    if (memory_limit_mb < -1 || memory_limit_mb > (1LL << 40)) {
        PyErr_SetString(PyExc_ValueError, "memory_limit_mb out of range");
        return NULL;
    }
    /* -1: no limit (an AddressSanitizer build cannot run under one) */
    config.memory_limit_bytes =
        memory_limit_mb < 0 ? UINT64_MAX : (uint64_t)memory_limit_mb * 1024u * 1024u;
    self = (struct detector_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    result = superv_new(&config, &self->superv, reason, sizeof(reason));
    if (result != SUPERV_OK) {
        PyObject *module = PyType_GetModule(type);
        Py_DECREF(self);
        return module ? set_superv_error(get_state(module), result, reason) : NULL;
    }
    return (PyObject *)self;
}

static void detector_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    struct detector_object *obj = (struct detector_object *)self;

    /* Waits up to 1 s for the helper to exit: do it without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    obj->superv = superv_free(obj->superv);
    Py_END_ALLOW_THREADS
    type->tp_free(self);
    Py_DECREF(type);
}

static int detector_enter(struct detector_object *obj)
{
    if (obj->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Detector is in use by another thread");
        return -1;
    }
    obj->busy = 1;
    return 0;
}

static PyObject *detector_detect(PyObject *self, PyObject *arg)
{
    struct detector_object *obj = (struct detector_object *)self;
    Py_buffer view;
    char *json = NULL;
    size_t json_len = 0;
    char reason[SUPERV_REASON_SIZE] = "";
    enum superv_result result;
    PyObject *ret;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (detector_enter(obj) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    result = superv_detect(obj->superv, view.buf, (size_t)view.len, &json, &json_len, reason,
                           sizeof(reason));
    Py_END_ALLOW_THREADS
    obj->busy = 0;
    PyBuffer_Release(&view);
    if (result == SUPERV_ERR_REFUSED) {
        /* The helper's own error payload is the most useful reason. */
        ret = set_superv_error(type_state(self), result, json ? json : reason);
        free(json);
        return ret;
    }
    if (result != SUPERV_OK)
        return set_superv_error(type_state(self), result, reason);
    ret = PyUnicode_DecodeUTF8(json, (Py_ssize_t)json_len, "replace");
    free(json);
    return ret;
}

static PyObject *detector_ping(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct detector_object *obj = (struct detector_object *)self;
    char reason[SUPERV_REASON_SIZE] = "";
    enum superv_result result;

    if (detector_enter(obj) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = superv_ping(obj->superv, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    obj->busy = 0;
    if (result != SUPERV_OK)
        return set_superv_error(type_state(self), result, reason);
    Py_RETURN_NONE;
}

static PyObject *detector_stop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct detector_object *obj = (struct detector_object *)self;

    if (detector_enter(obj) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    superv_stop(obj->superv);
    Py_END_ALLOW_THREADS
    obj->busy = 0;
    Py_RETURN_NONE;
}

static PyObject *detector_interrupt(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    superv_interrupt(((struct detector_object *)self)->superv);
    Py_RETURN_NONE;
}

static PyObject *detector_health(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct superv_health health;

    superv_get_health(((struct detector_object *)self)->superv, &health);
    return Py_BuildValue(
        "{s:s,s:i,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:i,s:i,s:L,s:d,s:K,s:s,s:s}",
        "state", superv_state_str(health.state), "pid", (int)health.pid,
        "starts", (unsigned long long)health.starts,
        "crashes", (unsigned long long)health.crashes,
        "timeouts", (unsigned long long)health.timeouts,
        "protocol_errors", (unsigned long long)health.protocol_errors,
        "config_errors", (unsigned long long)health.config_errors,
        "answers", (unsigned long long)health.answers,
        "refused", (unsigned long long)health.refused,
        "last_exit_status", health.last_exit_status, "last_signal", health.last_signal,
        "backoff_left_ms", (long long)health.backoff_left_ms,
        "last_answer_ms", health.last_answer_ms,
        "rss_bytes", (unsigned long long)health.rss_bytes,
        "last_error", health.last_error, "stderr_tail", health.stderr_tail);
}

static PyMethodDef detector_methods[] = {
    {"detect", detector_detect, METH_O,
     "detect(jpeg) -> str\n\nThe helper's detections JSON for one JPEG. Starts the helper when "
     "needed; never waits longer than the deadline. Raises HelperError (with .code: backoff, "
     "config, timeout, crashed, protocol, refused, spawn, closed, system). The GIL is released."},
    {"ping", detector_ping, METH_NOARGS, "Start the helper when needed and wait for a pong."},
    {"stop", detector_stop, METH_NOARGS, "Stop the helper (the next call starts a new one)."},
    {"interrupt", detector_interrupt, METH_NOARGS,
     "Any thread: a running call raises HelperError('closed'), and so do later calls."},
    {"health", detector_health, METH_NOARGS, "health() -> dict"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot detector_slots[] = {
    {Py_tp_doc, "Detector(helper_path, config_path, nice=-1, memory_limit_mb=0, "
                "start_timeout_ms=0, deadline_ms=0, backoff_min_ms=0, backoff_max_ms=0)\n\n"
                "Runs and supervises tsd-helper (native/core/superv.h); 0 (nice: -1) means "
                "the default; memory_limit_mb=-1: no address-space limit."},
    {Py_tp_new, detector_new},
    {Py_tp_dealloc, detector_dealloc},
    {Py_tp_methods, detector_methods},
    {0, NULL},
};

static PyType_Spec detector_spec = {
    .name = "octoprint_tsd._tsd.Detector",
    .basicsize = sizeof(struct detector_object),
    .itemsize = 0,
    .flags = TSD_TYPE_FLAGS,
    .slots = detector_slots,
};

/* ---- annotate -------------------------------------------------------------- */

static PyObject *tsd_annotate_jpeg(PyObject *module, PyObject *args)
{
    Py_buffer view;
    PyObject *detections;
    PyObject *seq = NULL;
    struct annotate_box *boxes = NULL;
    unsigned char *out = NULL;
    size_t out_len = 0;
    Py_ssize_t n = 0;
    enum jpg_result result;
    PyObject *ret = NULL;

    if (!PyArg_ParseTuple(args, "y*O:annotate_jpeg", &view, &detections))
        return NULL;
    seq = PySequence_Fast(detections, "detections must be a sequence");
    if (!seq)
        goto out;
    n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n > ANNOTATE_MAX_BOXES)
        n = ANNOTATE_MAX_BOXES; /* the strongest come first */
    boxes = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*boxes));
    if (!boxes) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *field = PyMapping_Check(item) ? PyMapping_GetItemString(item, "box") : NULL;
        PyObject *box = field ? PySequence_Tuple(field) : NULL;
        PyObject *conf = box ? PyMapping_GetItemString(item, "confidence") : NULL;

        Py_XDECREF(field);
        PyErr_Clear();

        if (!box || !conf ||
            !PyArg_ParseTuple(box, "dddd", &boxes[i].x, &boxes[i].y, &boxes[i].w, &boxes[i].h) ||
            ((boxes[i].confidence = PyFloat_AsDouble(conf)) == -1.0 && PyErr_Occurred())) {
            Py_XDECREF(box);
            Py_XDECREF(conf);
            PyErr_SetString(PyExc_ValueError,
                            "each detection needs box=(x, y, w, h) and a confidence");
            goto out;
        }
        Py_DECREF(box);
        Py_DECREF(conf);
    }
    Py_BEGIN_ALLOW_THREADS
    result = annotate_jpeg(view.buf, (size_t)view.len, boxes, (size_t)n, &out, &out_len);
    Py_END_ALLOW_THREADS
    if (result == JPG_ERR_NOMEM) {
        PyErr_NoMemory();
        goto out;
    }
    if (result != JPG_OK) {
        PyErr_Format(get_state(module)->error, "cannot annotate the frame: %s",
                     jpg_result_str(result));
        goto out;
    }
    ret = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_len);
out:
    free(out);
    PyMem_Free(boxes);
    Py_XDECREF(seq);
    PyBuffer_Release(&view);
    return ret;
}


/* ---- token store ------------------------------------------------------- */

/* The one place where a token-store result becomes an exception. The
 * exception carries the result name as its "code" attribute. */
static PyObject *set_tok_error(struct tsd_state *state, enum tok_result result,
                               const char *reason)
{
    if (result == TOK_ERR_NOMEM)
        return PyErr_NoMemory();
    return set_coded_error(state->token_error,
                           result == TOK_ERR_NOT_FOUND ? "not_found"
                           : result == TOK_ERR_CORRUPT ? "corrupt"
                           : result == TOK_ERR_PERMISSIONS ? "permissions"
                           : result == TOK_ERR_INVALID ? "invalid"
                           : "io",
                           reason && *reason ? reason : tok_result_str(result));
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

/* ---- linking answers (core/linkmsg.c) -------------------------------------- */

/* Sets a dict item from a C string; returns -1 with an exception set. */
static int dict_set_str(PyObject *dict, const char *key, const char *value)
{
    PyObject *item;
    int rc;

    if (!value)
        return PyDict_SetItemString(dict, key, Py_None);
    item = PyUnicode_FromString(value);
    if (!item)
        return -1;
    rc = PyDict_SetItemString(dict, key, item);
    Py_DECREF(item);
    return rc;
}

static int dict_set_size(PyObject *dict, const char *key, size_t value)
{
    PyObject *item = PyLong_FromSize_t(value);
    int rc;

    if (!item)
        return -1;
    rc = PyDict_SetItemString(dict, key, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *unlinked_to_dict(const struct linkmsg_unlinked *parsed)
{
    PyObject *dict = PyDict_New();
    PyObject *list = NULL;

    if (!dict)
        return NULL;
    list = PyList_New(0);
    if (!list || PyDict_SetItemString(dict, "messages", list) < 0)
        goto fail;
    for (size_t i = 0; i < parsed->n_messages; i++) {
        const struct linkmsg_message *m = &parsed->messages[i];
        PyObject *entry = PyDict_New();

        if (!entry)
            goto fail;
        if (dict_set_str(entry, "device_id", m->device_id) < 0 ||
            dict_set_str(entry, "type", m->type) < 0 ||
            dict_set_str(entry, "code", m->code) < 0 ||
            dict_set_str(entry, "secret", m->has_secret ? m->secret : NULL) < 0 ||
            PyList_Append(list, entry) < 0) {
            Py_DECREF(entry);
            goto fail;
        }
        Py_DECREF(entry);
    }
    if (dict_set_size(dict, "invalid", parsed->invalid) < 0 ||
        dict_set_size(dict, "ignored", parsed->ignored) < 0 ||
        dict_set_size(dict, "dropped", parsed->dropped) < 0 ||
        dict_set_str(dict, "one_time_passcode",
                     parsed->has_passcode ? parsed->one_time_passcode : NULL) < 0 ||
        dict_set_str(dict, "one_time_passlink", parsed->one_time_passlink) < 0 ||
        dict_set_str(dict, "verification_code", parsed->verification_code) < 0)
        goto fail;
    Py_DECREF(list);
    return dict;
fail:
    Py_XDECREF(list);
    Py_DECREF(dict);
    return NULL;
}

static PyObject *tsd_parse_unlinked_response(PyObject *module, PyObject *arg)
{
    struct linkmsg_unlinked *parsed;
    enum linkmsg_result result;
    Py_buffer view;
    PyObject *dict;

    (void)module;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    parsed = PyMem_Calloc(1, sizeof(*parsed));
    if (!parsed) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    result = linkmsg_parse_unlinked(view.buf, (size_t)view.len, parsed);
    PyBuffer_Release(&view);
    if (result != LINKMSG_OK) {
        PyMem_Free(parsed);
        PyErr_SetString(PyExc_ValueError, linkmsg_result_str(result));
        return NULL;
    }
    dict = unlinked_to_dict(parsed);
    explicit_bzero(parsed, sizeof(*parsed));
    PyMem_Free(parsed);
    return dict;
}

static PyObject *tsd_parse_verify_response(PyObject *module, PyObject *arg)
{
    struct linkmsg_verify parsed;
    enum linkmsg_result result;
    Py_buffer view;
    PyObject *dict;

    (void)module;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    result = linkmsg_parse_verify(view.buf, (size_t)view.len, &parsed);
    PyBuffer_Release(&view);
    if (result != LINKMSG_OK) {
        PyErr_SetString(PyExc_ValueError, linkmsg_result_str(result));
        return NULL;
    }
    dict = PyDict_New();
    if (dict && (dict_set_str(dict, "token", parsed.token) < 0 ||
                 dict_set_str(dict, "name", parsed.has_name ? parsed.name : NULL) < 0))
        Py_CLEAR(dict);
    explicit_bzero(&parsed, sizeof(parsed));
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
    {"annotate_jpeg", tsd_annotate_jpeg, METH_VARARGS,
     "annotate_jpeg(jpeg, detections) -> bytes\n\nThe frame with each detection's box drawn "
     "(shrunk to fit 1280x960)."},
    {"parse_unlinked_response", tsd_parse_unlinked_response, METH_O,
     "parse_unlinked_response(body: bytes) -> dict\n\nThe server's /unlinked/ answer, bounded and "
     "normalized: messages (device_id, type, code, secret), invalid, ignored, dropped, "
     "one_time_passcode, one_time_passlink, verification_code. ValueError with the reason."},
    {"parse_verify_response", tsd_parse_verify_response, METH_O,
     "parse_verify_response(body: bytes) -> dict\n\nThe server's /verify/ answer: token and "
     "name. ValueError with the reason."},
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
    state->grab_error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.GrabError",
        "No frame from the camera; .code names the cause.", state->error, NULL);
    if (!state->grab_error || add_object(module, "GrabError", state->grab_error) < 0)
        return -1;
    state->camera_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &camera_spec, NULL);
    if (!state->camera_type || add_object(module, "Camera", (PyObject *)state->camera_type) < 0)
        return -1;
    state->decider_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &decider_spec, NULL);
    if (!state->decider_type ||
        add_object(module, "Decider", (PyObject *)state->decider_type) < 0)
        return -1;
    state->helper_error = PyErr_NewExceptionWithDoc(
        "octoprint_tsd._tsd.HelperError",
        "The inference helper gave no detections; .code names the cause.", state->error, NULL);
    if (!state->helper_error || add_object(module, "HelperError", state->helper_error) < 0)
        return -1;
    state->detector_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &detector_spec, NULL);
    if (!state->detector_type ||
        add_object(module, "Detector", (PyObject *)state->detector_type) < 0)
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
    Py_VISIT(state->grab_error);
    Py_VISIT(state->camera_type);
    Py_VISIT(state->decider_type);
    Py_VISIT(state->helper_error);
    Py_VISIT(state->detector_type);
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
    Py_CLEAR(state->grab_error);
    Py_CLEAR(state->camera_type);
    Py_CLEAR(state->decider_type);
    Py_CLEAR(state->helper_error);
    Py_CLEAR(state->detector_type);
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
