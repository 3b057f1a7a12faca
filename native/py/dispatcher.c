/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Dispatcher: the allow-list for server messages (native/core/proto.h).
 */
#include "common.h"

#include <stdlib.h>
#include <string.h>

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

static PyObject *dispatcher_dispatch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"message", "state", "print_id", "absolute_xyz", "absolute_e",
                               "extruders", "shared_nozzle", "heated_bed", "heated_chamber",
                               "max_tool_temp", "max_bed_temp", "max_chamber_temp", "now_ms",
                               "operational", NULL};
    static const char *const states[] = {"idle", "printing", "paused"};
    struct dispatcher_object *obj = (struct dispatcher_object *)self;
    struct proto_printer printer = {
        .print_id = -1, .absolute_xyz = 1, .absolute_e = 1, .extruders = 1,
        .max_tool_temp = PROTO_MAX_TOOL_TEMP, .max_bed_temp = PROTO_MAX_BED_TEMP,
        .max_chamber_temp = PROTO_MAX_CHAMBER_TEMP,
    };
    const char *message;
    const char *state;
    Py_ssize_t len;
    char *actions = NULL;
    size_t actions_len = 0;
    enum proto_result result;
    PyObject *ret;
    size_t i;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#s|$LppipppdddLp:dispatch", keywords,
                                     &message, &len, &state, &printer.print_id,
                                     &printer.absolute_xyz, &printer.absolute_e,
                                     &printer.extruders, &printer.shared_nozzle,
                                     &printer.heated_bed, &printer.heated_chamber,
                                     &printer.max_tool_temp, &printer.max_bed_temp,
                                     &printer.max_chamber_temp, &printer.now_ms,
                                     &printer.operational))
        return NULL;
    for (i = 0; i < sizeof(states) / sizeof(states[0]) && strcmp(state, states[i]) != 0; i++)
        ;
    if (i == sizeof(states) / sizeof(states[0])) {
        PyErr_SetString(PyExc_ValueError, "state must be idle, printing or paused");
        return NULL;
    }
    printer.state = (enum proto_printer_state)i;
    result = proto_dispatch(obj->proto, &printer, message, (size_t)len, &actions, &actions_len);
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
    {"dispatch", (PyCFunction)(void (*)(void))dispatcher_dispatch, METH_VARARGS | METH_KEYWORDS,
     "dispatch(message: bytes, state: str, *, print_id=-1, absolute_xyz=True, absolute_e=True,\n"
     "         extruders=1, shared_nozzle=False, heated_bed=False, heated_chamber=False,\n"
     "         max_tool_temp, max_bed_temp, max_chamber_temp, now_ms=0) -> str\n\n"
     "Validate one server message against the allow-list for a printer in state 'idle',\n"
     "'printing' or 'paused' (the rest describes the printer: see proto.h) and return a JSON\n"
     "array of normalized actions. The temperature limits default to the fixed ceilings."},
    {"set_allow_raw_gcode", dispatcher_set_allow_raw_gcode, METH_O,
     "Allow any G-code in passthru commands (off by default)."},
    {"gcode_line_is_safe", dispatcher_gcode_line_is_safe, METH_VARARGS,
     "gcode_line_is_safe(line) -> bool"},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_dispatcher_spec, "Dispatcher", struct dispatcher_object,
              "Dispatcher(allow_raw_gcode=False)\n\nThe allow-list for server messages.",
              dispatcher_new, dispatcher_dealloc, dispatcher_methods);
