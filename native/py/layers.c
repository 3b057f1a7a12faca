/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.LayerCounter and _tsd.count_layers(): the layer rule
 * (native/core/layers.h) over the lines OctoPrint sends and over a file.
 */
#include "common.h"

#include <string.h>

#include "core/layers.h"

struct layer_counter_object {
    PyObject_HEAD
    struct layer_counter counter;
};

static PyObject *layer_counter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    struct layer_counter_object *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":LayerCounter", keywords))
        return NULL;
    self = (struct layer_counter_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    layer_counter_init(&self->counter);
    return (PyObject *)self;
}

static void layer_counter_dealloc(PyObject *self)
{
    tsd_object_free(self);
}

/* Called by OctoPrint's send thread for every line: no GIL release, no
 * allocation (the line is read in place). */
static PyObject *layer_counter_feed_py(PyObject *self, PyObject *arg)
{
    struct layer_counter_object *obj = (struct layer_counter_object *)self;
    Py_ssize_t len = 0;
    const char *line;

    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "feed() needs a str");
        return NULL;
    }
    line = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!line)
        return NULL;
    return PyLong_FromLong(layer_counter_feed(&obj->counter, line, (size_t)len));
}

static PyObject *layer_counter_layer(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(((struct layer_counter_object *)self)->counter.layer);
}

static PyMethodDef layer_counter_methods[] = {
    {"feed", layer_counter_feed_py, METH_O,
     "feed(line: str) -> int\n\nOne line sent to the printer; the layer the print is on after it "
     "(0 before the first extruding move)."},
    {"layer", layer_counter_layer, METH_NOARGS, "layer() -> int\n\nThe layer now."},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_layer_counter_spec, "LayerCounter", struct layer_counter_object,
              "LayerCounter()\n\nWhich layer a print is on, from the G-code sent (layers.h): "
              "one per print.",
              layer_counter_new, layer_counter_dealloc, layer_counter_methods);

static PyObject *tsd_count_layers(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "max_bytes", NULL};
    PyObject *path_obj = NULL;
    unsigned long long max_bytes = 0;
    enum layers_result result;
    char reason[512] = "";
    long layers = 0;
    PyObject *ret = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&K:count_layers", keywords,
                                     PyUnicode_FSConverter, &path_obj, &max_bytes))
        return NULL;
    if ((size_t)PyBytes_GET_SIZE(path_obj) != strlen(PyBytes_AS_STRING(path_obj))) {
        PyErr_SetString(PyExc_ValueError, "count_layers(): the path contains a NUL character");
        goto out;
    }
    /* A large file takes a while on a Pi: OctoPrint's threads go on. */
    Py_BEGIN_ALLOW_THREADS
    result = layers_count_file(PyBytes_AS_STRING(path_obj), (uint64_t)max_bytes, &layers,
                               reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != LAYERS_OK) {
        tsd_raise(tsd_module_state(module), &tsd_layers_errors, result, reason);
        goto out;
    }
    ret = PyLong_FromLong(layers);
out:
    Py_XDECREF(path_obj);
    return ret;
}

PyMethodDef tsd_layers_functions[] = {
    {"count_layers", (PyCFunction)(void (*)(void))tsd_count_layers, METH_VARARGS | METH_KEYWORDS,
     "count_layers(path, max_bytes) -> int\n\nThe layers of a G-code file by the same rule as "
     "LayerCounter, read in bounded chunks with the GIL released. TsdError if the file cannot "
     "be read or is larger than max_bytes."},
    {NULL, NULL, 0, NULL},
};
