/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * What every binding file of octoprint_tsd._tsd shares: the module state,
 * the one mapping from core results to exceptions, and the heap-type
 * boilerplate. Only native/py/ and native/module.c include Python.h.
 */
#ifndef TSD_PY_COMMON_H
#define TSD_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Our types are neither subclassable nor mutable (3.10+ can say so). */
#ifdef Py_TPFLAGS_IMMUTABLETYPE
#define TSD_TYPE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE)
#else
#define TSD_TYPE_FLAGS Py_TPFLAGS_DEFAULT
#endif

/* A blocking wait runs in slices of this length so that Ctrl-C and
 * interpreter shutdown are noticed (PEP 475 style). */
#define TSD_WAIT_SLICE_MS 100

/* The exceptions a core result can become. Those before TSD_EXC_COUNT live
 * in the module state (TsdError first: it is the base of the others). */
enum tsd_exception {
    TSD_EXC_ERROR = 0,    /* TsdError(RuntimeError) */
    TSD_EXC_QUEUE_CLOSED, /* QueueClosedError */
    TSD_EXC_TUNNEL,       /* TunnelError */
    TSD_EXC_TOKEN,        /* TokenError, with .code */
    TSD_EXC_GRAB,         /* GrabError, with .code */
    TSD_EXC_HELPER,       /* HelperError, with .code */
    TSD_EXC_COUNT,
    TSD_EXC_NO_MEMORY,    /* MemoryError */
    TSD_EXC_VALUE,        /* ValueError: the caller's argument */
};

enum tsd_type {
    TSD_TYPE_EVENT_QUEUE = 0,
    TSD_TYPE_TUNNEL,
    TSD_TYPE_DISPATCHER,
    TSD_TYPE_CAMERA,
    TSD_TYPE_DECIDER,
    TSD_TYPE_DETECTOR,
    TSD_TYPE_LAYER_COUNTER,
    TSD_TYPE_DOWNLOAD,
    TSD_TYPE_COUNT,
};

struct tsd_state {
    PyObject *exceptions[TSD_EXC_COUNT];
    PyTypeObject *types[TSD_TYPE_COUNT];
};

/* The state of the module (asserted non-NULL). */
struct tsd_state *tsd_module_state(PyObject *module);

/* The module state of one of our objects: our types are not subclassable,
 * so Py_TYPE(self) is always our heap type. */
struct tsd_state *tsd_object_state(PyObject *self);

/* The module state behind one of our types (in tp_new); NULL with an
 * exception set. */
struct tsd_state *tsd_type_state(PyTypeObject *type);

/* The end of every tp_dealloc: free the object, then drop the reference
 * that each instance of a heap type holds on its type. */
void tsd_object_free(PyObject *self);

/* ---- core results to exceptions (py/errors.c) ---------------------------- */

/* How one family of core results (one enum of native/core) becomes
 * exceptions: the table lives in py/errors.c. */
struct tsd_error_map;

extern const struct tsd_error_map tsd_evq_errors;
extern const struct tsd_error_map tsd_tun_errors;
extern const struct tsd_error_map tsd_proto_errors;
extern const struct tsd_error_map tsd_grab_errors;
extern const struct tsd_error_map tsd_decide_errors;
extern const struct tsd_error_map tsd_superv_errors;
extern const struct tsd_error_map tsd_jpg_errors;
extern const struct tsd_error_map tsd_tok_errors;
extern const struct tsd_error_map tsd_linkmsg_errors;
extern const struct tsd_error_map tsd_hostrule_errors;
extern const struct tsd_error_map tsd_farm_errors;
extern const struct tsd_error_map tsd_layers_errors;

/* The one place where a core result becomes a Python exception. reason (may
 * be NULL or empty) is the core's reterr text; without one the result's own
 * text is used. state NULL: an exception is already set. Always returns
 * NULL, so callers can `return tsd_raise(...)`. */
PyObject *tsd_raise(struct tsd_state *state, const struct tsd_error_map *map, int result,
                    const char *reason);

/* ---- heap types --------------------------------------------------------- */

/* Defines `PyType_Spec spec` for octoprint_tsd._tsd.<type_name>, whose instances
 * are object_struct: the slots every type of ours has, written once. */
#define TSD_TYPE_SPEC(spec, type_name, object_struct, doc, new_fn, dealloc_fn, methods) \
    static PyType_Slot spec##_slots[] = {                                             \
        {Py_tp_doc, doc},                                                             \
        {Py_tp_new, new_fn},                                                          \
        {Py_tp_dealloc, dealloc_fn},                                                  \
        {Py_tp_methods, methods},                                                     \
        {0, NULL},                                                                    \
    };                                                                                \
    PyType_Spec spec = {                                                              \
        .name = "octoprint_tsd._tsd." type_name,                                      \
        .basicsize = sizeof(object_struct),                                           \
        .itemsize = 0,                                                                \
        .flags = TSD_TYPE_FLAGS,                                                      \
        .slots = spec##_slots,                                                        \
    }

/* The types, one binding file each (py/<file>.c). */
extern PyType_Spec tsd_event_queue_spec; /* evq.c */
extern PyType_Spec tsd_tunnel_spec;      /* tunnel.c */
extern PyType_Spec tsd_dispatcher_spec;  /* dispatcher.c */
extern PyType_Spec tsd_camera_spec;      /* camera.c */
extern PyType_Spec tsd_decider_spec;     /* decider.c */
extern PyType_Spec tsd_detector_spec;    /* detector.c */
extern PyType_Spec tsd_layer_counter_spec; /* layers.c */
extern PyType_Spec tsd_download_spec;    /* download.c */

/* Module-level functions, by file (NULL-terminated tables). */
extern PyMethodDef tsd_annotate_functions[]; /* annotate.c */
extern PyMethodDef tsd_token_functions[];    /* token.c */
extern PyMethodDef tsd_linkmsg_functions[];  /* linkmsg.c */
extern PyMethodDef tsd_hostrule_functions[]; /* hostrule.c */
extern PyMethodDef tsd_farm_functions[];     /* farm.c */
extern PyMethodDef tsd_layers_functions[];   /* layers.c */

/* ---- shared by EventQueue and Tunnel (py/evq.c) -------------------------- */

struct evq;

/* Waits for one event with the GIL released, in slices so that signals are
 * noticed. timeout_obj: None (forever) or seconds >= 0. Returns (type,
 * bytes), None on timeout, or NULL with an exception. */
PyObject *tsd_wait_for_event(struct tsd_state *state, struct evq *queue, PyObject *timeout_obj);

#endif
