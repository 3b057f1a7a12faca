/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Download: a cloud-print download (native/core/fetch.h) on a C thread
 * of its own, which never calls Python: its progress and its end reach
 * Python through the download's own event queue (next_event()).
 */
#include "common.h"

#include "core/evq.h"
#include "core/fetch.h"

#define DOWNLOAD_EVENTS 64
#define DOWNLOAD_EVENT_BYTES (64 * 1024)

struct download_object {
    PyObject_HEAD
    struct evq *events;
    struct fetch *fetch;
};

static PyObject *download_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"url", "path", "max_bytes", "server_host", "allow_cleartext_lan",
                               "ca_file", "total_timeout_ms", "read_timeout_ms",
                               "connect_timeout_ms", "progress_ms", "max_line", NULL};
    const char *url = NULL;
    PyObject *path_obj = NULL;
    unsigned long long max_bytes = 0;
    const char *server_host = NULL;
    int allow_cleartext_lan = 0;
    const char *ca_file = NULL;
    int total_timeout_ms = 0;
    int read_timeout_ms = 0;
    int connect_timeout_ms = 0;
    int progress_ms = 0;
    Py_ssize_t max_line = 0;
    struct download_object *self = NULL;
    struct tsd_state *state = tsd_type_state(type);
    struct fetch_config config;
    enum grab_result result;
    char reason[GRAB_REASON_SIZE] = "";

    if (!state)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO&K|$zpziiiin:Download", keywords,
                                     &url, PyUnicode_FSConverter, &path_obj, &max_bytes,
                                     &server_host, &allow_cleartext_lan, &ca_file,
                                     &total_timeout_ms, &read_timeout_ms, &connect_timeout_ms,
                                     &progress_ms, &max_line))
        return NULL;
    if (max_line < 0) {
        Py_XDECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, "max_line must be >= 0");
        return NULL;
    }
    self = (struct download_object *)type->tp_alloc(type, 0);
    if (!self)
        goto out;
    if (evq_new(DOWNLOAD_EVENTS, DOWNLOAD_EVENT_BYTES, &self->events) != EVQ_OK) {
        Py_CLEAR(self);
        PyErr_NoMemory();
        goto out;
    }
    config = (struct fetch_config){
        .url = url, .ca_file = ca_file, .server_host = server_host,
        .allow_cleartext_lan = allow_cleartext_lan, .path = PyBytes_AS_STRING(path_obj),
        .max_bytes = max_bytes, .max_line = (size_t)max_line, .connect_timeout_ms = connect_timeout_ms,
        .read_timeout_ms = read_timeout_ms, .total_timeout_ms = total_timeout_ms,
        .progress_ms = progress_ms,
    };
    /* No network I/O here: the URL check and creating the file. */
    result = fetch_start(&config, self->events, &self->fetch, reason, sizeof(reason));
    if (result != GRAB_OK) {
        Py_CLEAR(self);
        tsd_raise(state, &tsd_grab_errors, result, reason);
    }

out:
    Py_XDECREF(path_obj);
    return (PyObject *)self;
}

/* Cancels and joins the thread (idempotent). */
static void download_stop(struct download_object *obj)
{
    struct fetch *fetch = obj->fetch;

    obj->fetch = NULL;
    /* Joining never needs the GIL: the thread never calls Python. */
    Py_BEGIN_ALLOW_THREADS
    fetch_free(fetch);
    Py_END_ALLOW_THREADS
}

static void download_dealloc(PyObject *self)
{
    struct download_object *obj = (struct download_object *)self;

    download_stop(obj);
    obj->events = evq_free(obj->events);
    tsd_object_free(self);
}

static PyObject *download_cancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    fetch_cancel(((struct download_object *)self)->fetch);
    Py_RETURN_NONE;
}

static PyObject *download_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct download_object *obj = (struct download_object *)self;

    download_stop(obj);
    /* Wake a drain thread: it sees the remaining events, then "closed". */
    evq_close(obj->events);
    Py_RETURN_NONE;
}

static PyObject *download_next_event(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", NULL};
    PyObject *timeout_obj = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:next_event", keywords, &timeout_obj))
        return NULL;
    return tsd_wait_for_event(tsd_object_state(self), ((struct download_object *)self)->events,
                              timeout_obj);
}

static PyMethodDef download_methods[] = {
    {"cancel", download_cancel, METH_NOARGS,
     "Stop the download (any thread); it ends with a FAILED event, code 'cancelled'."},
    {"close", download_close, METH_NOARGS,
     "Cancel, join the thread and close the event queue (idempotent)."},
    {"next_event", (PyCFunction)(void (*)(void))download_next_event,
     METH_VARARGS | METH_KEYWORDS,
     "next_event(timeout=None) -> (type, bytes) or None\n\nWait with the GIL released."},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_download_spec, "Download", struct download_object,
              "Download(url, path, max_bytes, *, server_host=None, allow_cleartext_lan=False,\n"
              "         ca_file=None, total_timeout_ms=0, read_timeout_ms=0,\n"
              "         connect_timeout_ms=0, progress_ms=0, max_line=0)\n\n"
              "Downloads url into the new file path on a C thread, by the download rule\n"
              "(docs/security.md, 'Cloud print'). GrabError (code 'refused', 'write', ...)\n"
              "when it cannot start; then DOWNLOAD_EVENT_PROGRESS, and DOWNLOAD_EVENT_DONE or\n"
              "DOWNLOAD_EVENT_FAILED (JSON payloads, see native/core/fetch.h). A failed or\n"
              "cancelled download has removed its file.",
              download_new, download_dealloc, download_methods);
