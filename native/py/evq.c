/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.EventQueue: the bounded queue of native/core/evq.h, which C threads
 * fill and a Python thread drains.
 */
#include "common.h"

#include "common/monotime.h"
#include "core/evq.h"

#define EVENT_QUEUE_DEFAULT_EVENTS 1024
#define EVENT_QUEUE_DEFAULT_BYTES (1024 * 1024)

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
    if (result != EVQ_OK)
        return tsd_raise(tsd_type_state(type), &tsd_evq_errors, result, NULL);
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
    struct event_queue_object *obj = (struct event_queue_object *)self;

    /* No other thread can be inside pop() here: a caller in pop() holds a
     * reference to self. */
    obj->queue = evq_free(obj->queue);
    tsd_object_free(self);
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
    return tsd_raise(tsd_object_state(self), &tsd_evq_errors, result, NULL);
}

PyObject *tsd_wait_for_event(struct tsd_state *state, struct evq *queue, PyObject *timeout_obj)
{
    double timeout = -1.0;
    double deadline_ms = 0.0;
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
        deadline_ms = now_ms_precise() + timeout * 1000.0;
    }
    for (;;) {
        int slice_ms = TSD_WAIT_SLICE_MS;
        int last_slice = 0;

        if (timeout >= 0) {
            double left_ms = deadline_ms - now_ms_precise();
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
        return tsd_raise(state, &tsd_evq_errors, result, NULL);
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
    return tsd_wait_for_event(tsd_object_state(self),
                              ((struct event_queue_object *)self)->queue, timeout_obj);
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

TSD_TYPE_SPEC(tsd_event_queue_spec, "EventQueue", struct event_queue_object,
              "EventQueue(max_events=1024, max_bytes=1048576)\n\n"
              "A bounded queue that C threads fill and a Python thread drains.",
              event_queue_new, event_queue_dealloc, event_queue_methods);
