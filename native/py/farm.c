/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.farm_load(): the farm provisioning file (native/core/farm.h) as the
 * settings it sets for one instance. The file is read and checked in C; the
 * shim (octoprint_tsd/farm.py) only compares and saves settings.
 */
#include "common.h"

#include <string.h>

#include "core/farm.h"
#include "core/proto.h"

static PyObject *calls_list(uint32_t calls)
{
    PyObject *list = PyList_New(0);
    const char *name;

    for (size_t i = 0; list && (name = proto_passthru_call(i)) != NULL; i++) {
        PyObject *item;

        if (i >= 32 || !(calls & (UINT32_C(1) << i)))
            continue;
        item = PyUnicode_FromString(name);
        if (!item || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(item);
    }
    return list;
}

static PyObject *value_object(enum farm_setting setting, const struct farm_value *value)
{
    switch (farm_setting_kind(setting)) {
    case FARM_KIND_TEXT:
        return PyUnicode_FromString(value->text);
    case FARM_KIND_BOOL:
        return PyBool_FromLong(value->flag);
    case FARM_KIND_NUMBER:
        if (setting == FARM_FRAME_INTERVAL)
            return PyLong_FromLong((long)value->number);
        return PyFloat_FromDouble(value->number);
    case FARM_KIND_CALLS:
        return calls_list(value->calls);
    }
    Py_RETURN_NONE;
}

/* {"settings": {setting: value}, "places": {setting: "section.key, line L column C"},
 *  "printers": [name, ...], "instance_known": bool} */
static PyObject *farm_document(const struct farm *farm, const char *instance)
{
    struct farm_policy policy;
    bool known = farm_resolve(farm, instance, &policy);
    PyObject *settings = PyDict_New();
    PyObject *places = PyDict_New();
    PyObject *printers = PyList_New(0);
    PyObject *result = NULL;

    if (!settings || !places || !printers)
        goto out;
    for (int i = 0; i < FARM_SETTING_MAX; i++) {
        const struct farm_value *value = &policy.values[i];
        PyObject *item;
        int failed;

        if (!value->set)
            continue;
        item = value_object((enum farm_setting)i, value);
        if (!item)
            goto out;
        failed = PyDict_SetItemString(settings, farm_setting_name((enum farm_setting)i), item);
        Py_DECREF(item);
        if (failed < 0)
            goto out;
        item = PyUnicode_FromFormat("%s, line %lu column %lu",
                                    farm_setting_path((enum farm_setting)i), value->line,
                                    value->column);
        if (!item)
            goto out;
        failed = PyDict_SetItemString(places, farm_setting_name((enum farm_setting)i), item);
        Py_DECREF(item);
        if (failed < 0)
            goto out;
    }
    for (size_t i = 0; i < farm_printer_count(farm); i++) {
        PyObject *name = PyUnicode_FromString(farm_printer_name(farm, i));
        int failed = name ? PyList_Append(printers, name) : -1;

        Py_XDECREF(name);
        if (failed < 0)
            goto out;
    }
    result = Py_BuildValue("{s:O, s:O, s:O, s:O}", "settings", settings, "places", places,
                           "printers", printers, "instance_known", known ? Py_True : Py_False);

out:
    Py_XDECREF(settings);
    Py_XDECREF(places);
    Py_XDECREF(printers);
    return result;
}

static PyObject *tsd_farm_load(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "instance", NULL};
    PyObject *path_bytes = NULL;
    const char *instance = NULL;
    Py_ssize_t instance_len = 0;
    struct farm *farm = NULL;
    char reason[768] = "";
    enum farm_result result;
    PyObject *document = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|z#:farm_load", keywords,
                                     PyUnicode_FSConverter, &path_bytes, &instance,
                                     &instance_len))
        return NULL;
    if (instance && (size_t)instance_len != strlen(instance)) {
        PyErr_SetString(PyExc_ValueError, "the instance name contains a NUL character");
        goto out;
    }
    Py_BEGIN_ALLOW_THREADS
    result = farm_load(PyBytes_AS_STRING(path_bytes), &farm, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != FARM_OK) {
        tsd_raise(tsd_module_state(module), &tsd_farm_errors, result, reason);
        goto out;
    }
    document = farm_document(farm, instance);

out:
    farm_free(farm);
    Py_XDECREF(path_bytes);
    return document;
}

PyMethodDef tsd_farm_functions[] = {
    {"farm_load", (PyCFunction)(void (*)(void))tsd_farm_load, METH_VARARGS | METH_KEYWORDS,
     "farm_load(path, instance=None) -> dict\n\nReads and checks a farm provisioning file "
     "(native/core/farm.h) and returns the settings it sets for the instance called "
     "instance (the farm's, with that printer's overrides): {\"settings\": {name: value}, "
     "\"places\": {name: where the file sets it}, \"printers\": [names], \"instance_known\": "
     "bool}. ValueError with .code \"io\", \"syntax\" or \"field\" and the file, line and "
     "column for a file that is refused; nothing of a refused file is returned."},
    {NULL, NULL, 0, NULL},
};
