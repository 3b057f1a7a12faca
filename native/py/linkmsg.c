/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.parse_unlinked_response() and parse_verify_response(): the server's
 * linking answers, bounded and normalized by native/core/linkmsg.h.
 */
#include "common.h"

#include <string.h>

#include "core/linkmsg.h"

/* Sets a dict item from a C string; returns -1 with an exception set. */
static int dict_set_str(PyObject *dict, const char *key, const char *value)
{
    PyObject *item;
    int rc;

    if (!value)
        return PyDict_SetItemString(dict, key, Py_None);
    item = PyUnicode_FromString(value);
    if (!item)
        return -1;
    rc = PyDict_SetItemString(dict, key, item);
    Py_DECREF(item);
    return rc;
}

static int dict_set_size(PyObject *dict, const char *key, size_t value)
{
    PyObject *item = PyLong_FromSize_t(value);
    int rc;

    if (!item)
        return -1;
    rc = PyDict_SetItemString(dict, key, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *unlinked_to_dict(const struct linkmsg_unlinked *parsed)
{
    PyObject *dict = PyDict_New();
    PyObject *list = NULL;

    if (!dict)
        return NULL;
    list = PyList_New(0);
    if (!list || PyDict_SetItemString(dict, "messages", list) < 0)
        goto fail;
    for (size_t i = 0; i < parsed->n_messages; i++) {
        const struct linkmsg_message *m = &parsed->messages[i];
        PyObject *entry = PyDict_New();

        if (!entry)
            goto fail;
        if (dict_set_str(entry, "device_id", m->device_id) < 0 ||
            dict_set_str(entry, "type", m->type) < 0 ||
            dict_set_str(entry, "code", m->code) < 0 ||
            dict_set_str(entry, "secret", m->has_secret ? m->secret : NULL) < 0 ||
            PyList_Append(list, entry) < 0) {
            Py_DECREF(entry);
            goto fail;
        }
        Py_DECREF(entry);
    }
    if (dict_set_size(dict, "invalid", parsed->invalid) < 0 ||
        dict_set_size(dict, "ignored", parsed->ignored) < 0 ||
        dict_set_size(dict, "dropped", parsed->dropped) < 0 ||
        dict_set_str(dict, "one_time_passcode",
                     parsed->has_passcode ? parsed->one_time_passcode : NULL) < 0 ||
        dict_set_str(dict, "one_time_passlink", parsed->one_time_passlink) < 0 ||
        dict_set_str(dict, "verification_code", parsed->verification_code) < 0)
        goto fail;
    Py_DECREF(list);
    return dict;
fail:
    Py_XDECREF(list);
    Py_DECREF(dict);
    return NULL;
}

static PyObject *tsd_parse_unlinked_response(PyObject *module, PyObject *arg)
{
    struct linkmsg_unlinked *parsed;
    enum linkmsg_result result;
    Py_buffer view;
    PyObject *dict;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    parsed = PyMem_Calloc(1, sizeof(*parsed));
    if (!parsed) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    result = linkmsg_parse_unlinked(view.buf, (size_t)view.len, parsed);
    PyBuffer_Release(&view);
    if (result != LINKMSG_OK) {
        PyMem_Free(parsed);
        return tsd_raise(tsd_module_state(module), &tsd_linkmsg_errors, result, NULL);
    }
    dict = unlinked_to_dict(parsed);
    explicit_bzero(parsed, sizeof(*parsed));
    PyMem_Free(parsed);
    return dict;
}

static PyObject *tsd_parse_verify_response(PyObject *module, PyObject *arg)
{
    struct linkmsg_verify parsed;
    enum linkmsg_result result;
    Py_buffer view;
    PyObject *dict;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    result = linkmsg_parse_verify(view.buf, (size_t)view.len, &parsed);
    PyBuffer_Release(&view);
    if (result != LINKMSG_OK)
        return tsd_raise(tsd_module_state(module), &tsd_linkmsg_errors, result, NULL);
    dict = PyDict_New();
    if (dict && (dict_set_str(dict, "token", parsed.token) < 0 ||
                 dict_set_str(dict, "name", parsed.has_name ? parsed.name : NULL) < 0))
        Py_CLEAR(dict);
    explicit_bzero(&parsed, sizeof(parsed));
    return dict;
}

PyMethodDef tsd_linkmsg_functions[] = {
    {"parse_unlinked_response", tsd_parse_unlinked_response, METH_O,
     "parse_unlinked_response(body: bytes) -> dict\n\nThe server's /unlinked/ answer, bounded and "
     "normalized: messages (device_id, type, code, secret), invalid, ignored, dropped, "
     "one_time_passcode, one_time_passlink, verification_code. ValueError with the reason."},
    {"parse_verify_response", tsd_parse_verify_response, METH_O,
     "parse_verify_response(body: bytes) -> dict\n\nThe server's /verify/ answer: token and "
     "name. ValueError with the reason."},
    {NULL, NULL, 0, NULL},
};
