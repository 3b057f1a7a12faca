/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * octoprint_tsd._tsd: the CPython glue over native/core.
 *
 * This file only assembles the module: its state (exceptions, types), the
 * types and functions of the binding files (one per Python type, in py/),
 * and its constants. The binding files parse arguments, map core results to
 * exceptions through py/errors.c and release the GIL around waits. No
 * business logic lives in either.
 */
#include "py/common.h"

#include "core/evq.h"
#include "core/fetch.h"
#include "core/tunnel.h"
#include "core/versions.h"

#ifndef TSD_VERSION
#error "meson passes TSD_VERSION"
#endif

static const struct {
    const char *name;
    const char *doc;
} exception_table[TSD_EXC_COUNT] = {
    [TSD_EXC_ERROR] = {"TsdError", "Base class of errors from the native core."},
    [TSD_EXC_QUEUE_CLOSED] = {"QueueClosedError", "The event queue was closed and is empty."},
    [TSD_EXC_TUNNEL] = {"TunnelError", "The tunnel could not be configured or started."},
    [TSD_EXC_TOKEN] = {"TokenError",
                       "The token file is missing, corrupt, unsafe or could not be written."},
    [TSD_EXC_GRAB] = {"GrabError", "No frame from the camera; .code names the cause."},
    [TSD_EXC_HELPER] = {"HelperError",
                        "The inference helper gave no detections; .code names the cause."},
};

static PyType_Spec *const type_table[TSD_TYPE_COUNT] = {
    [TSD_TYPE_EVENT_QUEUE] = &tsd_event_queue_spec,
    [TSD_TYPE_TUNNEL] = &tsd_tunnel_spec,
    [TSD_TYPE_DISPATCHER] = &tsd_dispatcher_spec,
    [TSD_TYPE_CAMERA] = &tsd_camera_spec,
    [TSD_TYPE_DECIDER] = &tsd_decider_spec,
    [TSD_TYPE_DETECTOR] = &tsd_detector_spec,
    [TSD_TYPE_LAYER_COUNTER] = &tsd_layer_counter_spec,
    [TSD_TYPE_DOWNLOAD] = &tsd_download_spec,
};

static const struct {
    const char *name;
    long value;
} int_constants[] = {
    {"TUNNEL_EVENT_LOG", TUN_EVENT_LOG},
    {"TUNNEL_EVENT_CONNECTED", TUN_EVENT_CONNECTED},
    {"TUNNEL_EVENT_DISCONNECTED", TUN_EVENT_DISCONNECTED},
    {"TUNNEL_EVENT_MESSAGE", TUN_EVENT_MESSAGE},
    {"TUNNEL_EVENT_UNAUTHORIZED", TUN_EVENT_UNAUTHORIZED},
    {"TUNNEL_EVENT_REPLACED", TUN_EVENT_REPLACED},
    {"TUNNEL_EVENT_STOPPED", TUN_EVENT_STOPPED},
    {"DOWNLOAD_EVENT_PROGRESS", FETCH_EVENT_PROGRESS},
    {"DOWNLOAD_EVENT_DONE", FETCH_EVENT_DONE},
    {"DOWNLOAD_EVENT_FAILED", FETCH_EVENT_FAILED},
    {"TUNNEL_EVENT_REMOTE_LOGIN", TUN_EVENT_REMOTE_LOGIN},
    {"EVQ_MAX_EVENTS_LIMIT", EVQ_MAX_EVENTS_LIMIT},
    {"EVQ_MAX_BYTES_LIMIT", EVQ_MAX_BYTES_LIMIT},
};

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

/* The module functions of the binding files (tsd_methods: the module's own). */
static PyMethodDef *const function_tables[] = {
    tsd_annotate_functions,
    tsd_token_functions,
    tsd_linkmsg_functions,
    tsd_hostrule_functions,
    tsd_farm_functions,
    tsd_layers_functions,
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
    struct tsd_state *state = tsd_module_state(module);
    char qualified[96];

    /* TsdError first: the others derive from it. */
    for (int i = 0; i < TSD_EXC_COUNT; i++) {
        PyObject *base = i == TSD_EXC_ERROR ? PyExc_RuntimeError : state->exceptions[TSD_EXC_ERROR];

        PyOS_snprintf(qualified, sizeof(qualified), "octoprint_tsd._tsd.%s",
                      exception_table[i].name);
        state->exceptions[i] =
            PyErr_NewExceptionWithDoc(qualified, exception_table[i].doc, base, NULL);
        if (!state->exceptions[i] ||
            add_object(module, exception_table[i].name, state->exceptions[i]) < 0)
            return -1;
    }
    for (int i = 0; i < TSD_TYPE_COUNT; i++) {
        state->types[i] = (PyTypeObject *)PyType_FromModuleAndSpec(module, type_table[i], NULL);
        if (!state->types[i] || PyModule_AddType(module, state->types[i]) < 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(function_tables) / sizeof(function_tables[0]); i++) {
        if (PyModule_AddFunctions(module, function_tables[i]) < 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(int_constants) / sizeof(int_constants[0]); i++) {
        if (PyModule_AddIntConstant(module, int_constants[i].name, int_constants[i].value) < 0)
            return -1;
    }
    if (PyModule_AddStringConstant(module, "__version__", TSD_VERSION) < 0)
        return -1;
    return 0;
}

static int tsd_traverse(PyObject *module, visitproc visit, void *arg)
{
    struct tsd_state *state = tsd_module_state(module);

    for (int i = 0; i < TSD_EXC_COUNT; i++)
        Py_VISIT(state->exceptions[i]);
    for (int i = 0; i < TSD_TYPE_COUNT; i++)
        Py_VISIT(state->types[i]);
    return 0;
}

static int tsd_clear(PyObject *module)
{
    struct tsd_state *state = tsd_module_state(module);

    for (int i = 0; i < TSD_EXC_COUNT; i++)
        Py_CLEAR(state->exceptions[i]);
    for (int i = 0; i < TSD_TYPE_COUNT; i++)
        Py_CLEAR(state->types[i]);
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
