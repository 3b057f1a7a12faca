/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.annotate_jpeg(): the detections drawn on a frame
 * (native/core/annotate.h).
 */
#include "common.h"

#include <stdlib.h>

#include "core/annotate.h"

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
    if (result != JPG_OK) {
        tsd_raise(tsd_module_state(module), &tsd_jpg_errors, result, NULL);
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

PyMethodDef tsd_annotate_functions[] = {
    {"annotate_jpeg", tsd_annotate_jpeg, METH_VARARGS,
     "annotate_jpeg(jpeg, detections) -> bytes\n\nThe frame with each detection's box drawn "
     "(shrunk to fit 1280x960)."},
    {NULL, NULL, 0, NULL},
};
