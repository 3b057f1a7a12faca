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
#include "core/versions.h"

#ifndef TSD_VERSION
#error "meson passes TSD_VERSION"
#endif

/* A blocking pop waits in slices of this length so that Ctrl-C and
 * interpreter shutdown are noticed (PEP 475 style). */
#define TSD_WAIT_SLICE_MS 100

#define EVENT_QUEUE_DEFAULT_EVENTS 1024
#define EVENT_QUEUE_DEFAULT_BYTES (1024 * 1024)

struct tsd_state {
    PyObject *error;              /* _tsd.TsdError */
    PyObject *queue_closed_error; /* _tsd.QueueClosedError(TsdError) */
    PyTypeObject *event_queue_type;
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

static PyObject *event_queue_pop(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", NULL};
    struct event_queue_object *obj = (struct event_queue_object *)self;
    PyObject *timeout_obj = Py_None;
    double timeout = -1.0;
    struct evq_event *event = NULL;
    enum evq_result result = EVQ_TIMEOUT;
    double deadline = 0.0;
    PyObject *ret = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:pop", keywords, &timeout_obj))
        return NULL;
    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 or None");
            return NULL;
        }
    }

    if (timeout >= 0)
        deadline = monotonic_seconds() + timeout;
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
        result = evq_pop(obj->queue, slice_ms, &event);
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
        return set_evq_error(event_queue_state(self), result);
    ret = Py_BuildValue("(iy#)", event->type, (const char *)event->data,
                        (Py_ssize_t)event->len);
    evq_event_free(event);
    return ret;
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
#ifdef Py_TPFLAGS_IMMUTABLETYPE
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
#else
    .flags = Py_TPFLAGS_DEFAULT,
#endif
    .slots = event_queue_slots,
};

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
    return 0;
}

static int tsd_clear(PyObject *module)
{
    struct tsd_state *state = get_state(module);

    Py_CLEAR(state->error);
    Py_CLEAR(state->queue_closed_error);
    Py_CLEAR(state->event_queue_type);
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
