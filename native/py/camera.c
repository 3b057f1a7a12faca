/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Camera: JPEG frames from a webcam (native/core/grab.h), one GET per
 * frame or one kept MJPEG stream, with the GIL released while waiting;
 * close() from any thread stops either.
 */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/monotime.h"
#include "core/grab.h"

#define CAMERA_SLICE_MS 200

struct camera_object {
    PyObject_HEAD
    struct grab_config config; /* strings below are owned */
    char *url;
    char *ca_file;
    int stream_mode;
    int busy;                  /* a grab() is running (changed with the GIL held) */
    /* The grab session -- the stream, kept between grabs, or a snapshot's,
     * only while its grab() runs -- has one owner: the thread in grab() (or,
     * when none runs, the thread holding the GIL). Only the owner opens,
     * polls, runs, reads and closes it; other threads never touch the session
     * itself. lock guards the pointer (for close(), which interrupts from any
     * thread) and the published counters, which stats() reads. */
    pthread_mutex_t lock;
    struct grab_stream *session;
    struct grab_stream_stats published; /* copied by the owner after each poll */
    uint64_t sessions;                  /* stream sessions opened */
    atomic_bool nudged;
    atomic_bool stopped;
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
    if (result != GRAB_OK)
        return tsd_raise(tsd_type_state(type), &tsd_grab_errors, result, reason);
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

/* Owner only: copies the stream's counters to where stats() reads them. */
static void camera_publish_stats(struct camera_object *obj)
{
    struct grab_stream_stats stats;

    grab_stream_get_stats(obj->session, &stats);
    pthread_mutex_lock(&obj->lock);
    obj->published = stats;
    pthread_mutex_unlock(&obj->lock);
}

/* Owner only: a newly opened session becomes the one close() interrupts. A
 * close() that came first stops it now: either close() finds the pointer
 * under the lock, or this finds the stop flag close() set before. A
 * stream's counters start afresh with it. */
static void camera_attach_session(struct camera_object *obj, struct grab_stream *session)
{
    struct grab_stream_stats fresh;

    if (obj->stream_mode)
        grab_stream_get_stats(session, &fresh);
    pthread_mutex_lock(&obj->lock);
    obj->session = session;
    if (obj->stream_mode) {
        /* The count and the counters change together: a reader never sees
         * the new session's number with the old session's counters. */
        obj->sessions++;
        obj->published = fresh;
    }
    pthread_mutex_unlock(&obj->lock);
    if (atomic_load(&obj->stopped))
        grab_stream_interrupt(session);
}

/* Owner only: ends the session; a stream's last counters stay published. */
static void camera_drop_session(struct camera_object *obj)
{
    struct grab_stream *session = obj->session;

    if (!session)
        return;
    if (obj->stream_mode)
        camera_publish_stats(obj);
    pthread_mutex_lock(&obj->lock);
    obj->session = NULL;
    pthread_mutex_unlock(&obj->lock);
    grab_stream_close(session);
}

static void camera_dealloc(PyObject *self)
{
    struct camera_object *obj = (struct camera_object *)self;

    camera_drop_session(obj);
    pthread_mutex_destroy(&obj->lock);
    free(obj->url);
    free(obj->ca_file);
    tsd_object_free(self);
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
    double until_ms = now_ms_precise() + wait_ms;

    if (!obj->session) {
        struct grab_stream *stream = NULL;

        result = grab_stream_open(&obj->config, &stream, reason, reason_len);
        if (result != GRAB_OK)
            goto out;
        camera_attach_session(obj, stream);
    }
    for (;;) {
        double left_ms = until_ms - now_ms_precise();
        int slice = CAMERA_SLICE_MS;

        if (left_ms > 0 && left_ms < slice)
            slice = (int)left_ms + 1;
        result = grab_stream_poll(obj->session, slice, reason, reason_len);
        if (result == GRAB_OK && grab_stream_take_frame(obj->session, &frame) == GRAB_OK) {
            grab_frame_free(newest);
            newest = frame;
            frame = NULL;
        } else if (result != GRAB_OK && result != GRAB_NO_FRAME) {
            goto out;
        }
        camera_publish_stats(obj);
        if (newest && (now_ms_precise() >= until_ms || atomic_exchange(&obj->nudged, false)))
            break;
    }
    result = GRAB_OK;
out:
    if (result == GRAB_OK) {
        *ret_frame = newest;
        newest = NULL;
    } else if (obj->session) {
        camera_drop_session(obj); /* the session ended: the next grab reconnects */
    }
    grab_frame_free(newest);
    return result;
}

/* Snapshot mode: one GET in a session of its own, which close() can stop
 * (sec09 in docs/security.md); total_timeout_ms bounds it. */
static enum grab_result camera_snapshot_frame(struct camera_object *obj,
                                              struct grab_frame **ret_frame, char *reason,
                                              size_t reason_len)
{
    struct grab_stream *session = NULL;
    enum grab_result result;

    result = grab_snapshot_open(&obj->config, &session, reason, reason_len);
    if (result != GRAB_OK)
        return result;
    camera_attach_session(obj, session);
    result = grab_snapshot_run(session, ret_frame, reason, reason_len);
    camera_drop_session(obj);
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
        return tsd_raise(tsd_object_state(self), &tsd_grab_errors, GRAB_ERR_INTERRUPTED,
                         "camera closed");
    obj->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    if (obj->stream_mode) {
        result = camera_stream_frame(obj, wait_ms, &frame, reason, sizeof(reason));
    } else {
        result = camera_snapshot_frame(obj, &frame, reason, sizeof(reason));
    }
    Py_END_ALLOW_THREADS
    obj->busy = 0;
    if (result != GRAB_OK)
        return tsd_raise(tsd_object_state(self), &tsd_grab_errors, result, reason);
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
    if (obj->session)
        grab_stream_interrupt(obj->session);
    pthread_mutex_unlock(&obj->lock);
    if (!obj->busy)
        camera_drop_session(obj);
    Py_RETURN_NONE;
}

static PyObject *camera_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct camera_object *obj = (struct camera_object *)self;
    struct grab_stream_stats stats;
    uint64_t sessions;

    /* The published copy only: the session belongs to the grabbing thread. */
    pthread_mutex_lock(&obj->lock);
    stats = obj->published;
    sessions = obj->sessions;
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
                         "sessions", (unsigned long long)sessions);
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

TSD_TYPE_SPEC(tsd_camera_spec, "Camera", struct camera_object,
              "Camera(url, ca_file=None, stream=False, connect_timeout_ms=0, "
              "read_timeout_ms=0, total_timeout_ms=0, frame_timeout_ms=0, max_frame=0)\n\n"
              "JPEG frames from a webcam's snapshot URL or MJPEG stream (0: defaults).",
              camera_new, camera_dealloc, camera_methods);
