/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Detector: runs and supervises tsd-helper (native/core/superv.h),
 * with the GIL released while it waits for the helper.
 */
#include "common.h"

#include <stdlib.h>

#include "core/superv.h"

struct detector_object {
    PyObject_HEAD
    struct superv *superv;
    int busy; /* detect()/ping()/stop() running (changed with the GIL held) */
};

static PyObject *detector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"helper_path", "config_path", "nice", "memory_limit_mb",
                               "start_timeout_ms", "deadline_ms", "backoff_min_ms",
                               "backoff_max_ms", "shared_dir", "shared_server",
                               "shared_idle_exit_s", NULL};
    struct superv_config config;
    long long memory_limit_mb = 0;
    char reason[SUPERV_REASON_SIZE] = "";
    struct detector_object *self;
    enum superv_result result;

    superv_config_init(&config);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|iLiiiizzi:Detector", keywords,
                                     &config.helper_path, &config.config_path,
                                     &config.nice_increment, &memory_limit_mb,
                                     &config.start_timeout_ms, &config.deadline_ms,
                                     &config.backoff_min_ms, &config.backoff_max_ms,
                                     &config.shared_dir, &config.shared_server_path,
                                     &config.shared_idle_exit_s))
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
        Py_DECREF(self);
        return tsd_raise(tsd_type_state(type), &tsd_superv_errors, result, reason);
    }
    return (PyObject *)self;
}

static void detector_dealloc(PyObject *self)
{
    struct detector_object *obj = (struct detector_object *)self;

    /* Waits up to 1 s for the helper to exit: do it without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    obj->superv = superv_free(obj->superv);
    Py_END_ALLOW_THREADS
    tsd_object_free(self);
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
        ret = tsd_raise(tsd_object_state(self), &tsd_superv_errors, result, json ? json : reason);
        free(json);
        return ret;
    }
    if (result != SUPERV_OK)
        return tsd_raise(tsd_object_state(self), &tsd_superv_errors, result, reason);
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
        return tsd_raise(tsd_object_state(self), &tsd_superv_errors, result, reason);
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
     "config, timeout, crashed, protocol, refused, spawn, closed, system; shared: late, "
     "insecure). The GIL is released."},
    {"ping", detector_ping, METH_NOARGS, "Start the helper when needed and wait for a pong."},
    {"stop", detector_stop, METH_NOARGS, "Stop the helper (the next call starts a new one)."},
    {"interrupt", detector_interrupt, METH_NOARGS,
     "Any thread: a running call raises HelperError('closed'), and so do later calls."},
    {"health", detector_health, METH_NOARGS, "health() -> dict"},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_detector_spec, "Detector", struct detector_object,
              "Detector(helper_path, config_path, nice=-1, memory_limit_mb=0, "
              "start_timeout_ms=0, deadline_ms=0, backoff_min_ms=0, backoff_max_ms=0, "
              "shared_dir=None, shared_server=None, shared_idle_exit_s=0)\n\n"
              "Runs and supervises tsd-helper (native/core/superv.h); 0 (nice: -1) means "
              "the default; memory_limit_mb=-1: no address-space limit. shared_dir: use "
              "the host's shared helper (tsd-helper-shared) whose socket is in that folder, "
              "starting it when needed, instead of a helper of its own.",
              detector_new, detector_dealloc, detector_methods);
