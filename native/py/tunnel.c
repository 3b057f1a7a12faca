/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Tunnel: the device websocket of native/core/tunnel.h. Its service
 * thread never calls Python; events reach Python through an event queue.
 */
#include "common.h"

#include "core/evq.h"
#include "core/tunnel.h"

#define TUNNEL_DEFAULT_EVENTS 4096
#define TUNNEL_DEFAULT_EVENT_BYTES (8 * 1024 * 1024)

struct tunnel_object {
    PyObject_HEAD
    struct evq *events;
    struct tun *tunnel;
};

static PyObject *tunnel_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"url", "token", "ca_file", "allow_cleartext_lan",
                               "max_incoming", "backoff_first_ms", "backoff_cap_ms",
                               "ping_after_s", "hangup_after_s", "octoprint_port",
                               "octoprint_host", "remote_access", "max_tunnel_body",
                               "remote_address", NULL};
    const char *url = NULL;
    const char *token = NULL;
    const char *ca_file = NULL;
    int allow_cleartext_lan = 0;
    Py_ssize_t max_incoming = 0;
    unsigned int backoff_first_ms = 0;
    unsigned int backoff_cap_ms = 0;
    unsigned short ping_after_s = 0;
    unsigned short hangup_after_s = 0;
    unsigned short octoprint_port = 0;
    const char *octoprint_host = NULL;
    int remote_access = 0;
    Py_ssize_t max_tunnel_body = 0;
    const char *remote_address = NULL;
    struct tunnel_object *self = NULL;
    struct tsd_state *state = tsd_type_state(type);
    struct tun_config config;
    enum tun_result result;
    char reason[512] = "";

    if (!state)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|zpnIIHHHzpnz:Tunnel", keywords, &url,
                                     &token, &ca_file, &allow_cleartext_lan, &max_incoming,
                                     &backoff_first_ms, &backoff_cap_ms, &ping_after_s,
                                     &hangup_after_s, &octoprint_port, &octoprint_host,
                                     &remote_access, &max_tunnel_body, &remote_address))
        return NULL;
    if (max_incoming < 0 || max_tunnel_body < 0) {
        PyErr_SetString(PyExc_ValueError, "max_incoming and max_tunnel_body must be >= 0");
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
        .octoprint_port = octoprint_port,
        .octoprint_host = octoprint_host,
        .remote_access = remote_access,
        .max_tunnel_body = (size_t)max_tunnel_body,
        .remote_address = remote_address,
    };
    /* tun_new() starts the remote-access workers: no GIL needed, none taken. */
    result = tun_new(&config, self->events, &self->tunnel, reason, sizeof(reason));
    if (result != TUN_OK) {
        Py_DECREF(self);
        return tsd_raise(state, &tsd_tun_errors, result, reason);
    }
    return (PyObject *)self;
}

static void tunnel_dealloc(PyObject *self)
{
    struct tunnel_object *obj = (struct tunnel_object *)self;
    struct tun *tunnel = obj->tunnel;

    obj->tunnel = NULL;
    /* Joining never needs the GIL: the service thread never calls Python. */
    Py_BEGIN_ALLOW_THREADS
    tun_free(tunnel);
    Py_END_ALLOW_THREADS
    obj->events = evq_free(obj->events);
    tsd_object_free(self);
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
        return tsd_raise(tsd_object_state(self), &tsd_tun_errors, result, reason);
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
    return tsd_raise(tsd_object_state(self), &tsd_tun_errors, result, NULL);
}

static PyObject *tunnel_send_status(PyObject *self, PyObject *args)
{
    return tunnel_send_common(self, args, 1);
}

static PyObject *tunnel_send(PyObject *self, PyObject *args)
{
    return tunnel_send_common(self, args, 0);
}

static PyObject *tunnel_set_remote_access(PyObject *self, PyObject *args)
{
    int enabled = 0;

    if (!PyArg_ParseTuple(args, "p:set_remote_access", &enabled))
        return NULL;
    tun_set_remote_access(((struct tunnel_object *)self)->tunnel, enabled);
    Py_RETURN_NONE;
}

static PyObject *tunnel_next_event(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", NULL};
    PyObject *timeout_obj = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:next_event", keywords, &timeout_obj))
        return NULL;
    return tsd_wait_for_event(tsd_object_state(self), ((struct tunnel_object *)self)->events,
                              timeout_obj);
}

static PyObject *tunnel_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct tunnel_object *obj = (struct tunnel_object *)self;
    struct tun_stats stats = {0};
    struct evq_stats queue = {0};

    tun_get_stats(obj->tunnel, &stats);
    evq_get_stats(obj->events, &queue);
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:I,s:n,s:K,"
        "s:K,s:K,s:K,s:K,s:n,s:K,s:K,s:n}",
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
        "event_queue_dropped", (unsigned long long)queue.dropped,
        "remote_requests", (unsigned long long)stats.remote_requests,
        "remote_refused", (unsigned long long)stats.remote_refused,
        "remote_ws_messages", (unsigned long long)stats.remote_ws_messages,
        "remote_ws_refused", (unsigned long long)stats.remote_ws_refused,
        "remote_ws_open", (Py_ssize_t)stats.remote_ws_open,
        "bulk_sent", (unsigned long long)stats.bulk_sent,
        "bulk_dropped", (unsigned long long)stats.bulk_dropped,
        "bulk_bytes", (Py_ssize_t)stats.bulk_bytes);
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
    {"set_remote_access", tunnel_set_remote_access, METH_VARARGS,
     "set_remote_access(enabled)\n\nThe owner's OctoPrint remote-access switch."},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_tunnel_spec, "Tunnel", struct tunnel_object,
              "Tunnel(url, token, ca_file=None, allow_cleartext_lan=False, ...)\n\n"
              "The device websocket to an Obico-compatible server.",
              tunnel_new, tunnel_dealloc, tunnel_methods);
