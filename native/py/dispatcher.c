/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Dispatcher: the allow-list for server messages (native/core/proto.h).
 */
#include "common.h"

#include <stdlib.h>

#include "core/proto.h"

struct dispatcher_object {
    PyObject_HEAD
    struct proto *proto;
};

static PyObject *dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"allow_raw_gcode", NULL};
    int allow_raw_gcode = 0;
    struct proto_options options;
    struct dispatcher_object *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:Dispatcher", keywords, &allow_raw_gcode))
        return NULL;
    self = (struct dispatcher_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    options = (struct proto_options){.allow_raw_gcode = allow_raw_gcode};
    if (proto_new(&options, &self->proto) != PROTO_OK) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void dispatcher_dealloc(PyObject *self)
{
    struct dispatcher_object *obj = (struct dispatcher_object *)self;

    obj->proto = proto_free(obj->proto);
    tsd_object_free(self);
}

static PyObject *dispatcher_dispatch(PyObject *self, PyObject *args)
{
    struct dispatcher_object *obj = (struct dispatcher_object *)self;
    const char *message;
    Py_ssize_t len;
    char *actions = NULL;
    size_t actions_len = 0;
    enum proto_result result;
    PyObject *ret;

    if (!PyArg_ParseTuple(args, "y#:dispatch", &message, &len))
        return NULL;
    result = proto_dispatch(obj->proto, message, (size_t)len, &actions, &actions_len);
    if (result != PROTO_OK)
        return tsd_raise(tsd_type_state(Py_TYPE(self)), &tsd_proto_errors, result, NULL);
    ret = PyUnicode_DecodeUTF8(actions, (Py_ssize_t)actions_len, "strict");
    free(actions);
    return ret;
}

static PyObject *dispatcher_set_allow_raw_gcode(PyObject *self, PyObject *arg)
{
    struct proto_options options;
    int allow = PyObject_IsTrue(arg);

    if (allow < 0)
        return NULL;
    options = (struct proto_options){.allow_raw_gcode = allow};
    proto_set_options(((struct dispatcher_object *)self)->proto, &options);
    Py_RETURN_NONE;
}

static PyObject *dispatcher_gcode_line_is_safe(PyObject *self, PyObject *args)
{
    const char *line;
    Py_ssize_t len;

    (void)self;
    if (!PyArg_ParseTuple(args, "s#:gcode_line_is_safe", &line, &len))
        return NULL;
    return PyBool_FromLong(proto_gcode_line_is_safe(line, (size_t)len));
}

static PyMethodDef dispatcher_methods[] = {
    {"dispatch", dispatcher_dispatch, METH_VARARGS,
     "dispatch(message: bytes) -> str\n\nValidate one server message against the allow-list "
     "and return a JSON array of normalized actions."},
    {"set_allow_raw_gcode", dispatcher_set_allow_raw_gcode, METH_O,
     "Allow any G-code in passthru commands (off by default)."},
    {"gcode_line_is_safe", dispatcher_gcode_line_is_safe, METH_VARARGS,
     "gcode_line_is_safe(line) -> bool"},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_dispatcher_spec, "Dispatcher", struct dispatcher_object,
              "Dispatcher(allow_raw_gcode=False)\n\nThe allow-list for server messages.",
              dispatcher_new, dispatcher_dealloc, dispatcher_methods);
