/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.token_save/load/delete(): the token file (native/core/tok.h). The
 * file system work runs with the GIL released.
 */
#include "common.h"

#include "core/tok.h"

static PyObject *tsd_token_save(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"directory", "server", "token", "name", NULL};
    const char *directory;
    struct tok_record record = {0};
    char reason[512] = "";
    enum tok_result result;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sss|z:token_save", keywords, &directory,
                                     &record.server, &record.token, &record.name))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_save(directory, &record, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return tsd_raise(tsd_module_state(module), &tsd_tok_errors, result, reason);
    Py_RETURN_NONE;
}

static PyObject *tsd_token_load(PyObject *module, PyObject *args)
{
    const char *directory;
    struct tok_record *record = NULL;
    char reason[512] = "";
    enum tok_result result;
    PyObject *ret;

    if (!PyArg_ParseTuple(args, "s:token_load", &directory))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_load(directory, &record, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return tsd_raise(tsd_module_state(module), &tsd_tok_errors, result, reason);
    ret = Py_BuildValue("{s:s,s:s,s:z}", "server", record->server, "token", record->token,
                        "name", record->name);
    tok_record_free(record);
    return ret;
}

static PyObject *tsd_token_delete(PyObject *module, PyObject *args)
{
    const char *directory;
    char reason[512] = "";
    enum tok_result result;

    if (!PyArg_ParseTuple(args, "s:token_delete", &directory))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    result = tok_delete(directory, reason, sizeof(reason));
    Py_END_ALLOW_THREADS
    if (result != TOK_OK)
        return tsd_raise(tsd_module_state(module), &tsd_tok_errors, result, reason);
    Py_RETURN_NONE;
}

PyMethodDef tsd_token_functions[] = {
    {"token_save", (PyCFunction)(void (*)(void))tsd_token_save, METH_VARARGS | METH_KEYWORDS,
     "token_save(directory, server, token, name=None)\n\nAtomically replace the token file "
     "(mode 0600) in directory."},
    {"token_load", tsd_token_load, METH_VARARGS,
     "token_load(directory) -> dict\n\nRead and verify the token file; raises TokenError "
     "(code: not_found, corrupt, permissions, invalid, io)."},
    {"token_delete", tsd_token_delete, METH_VARARGS,
     "token_delete(directory)\n\nRemove the token file; a missing one is fine."},
    {NULL, NULL, 0, NULL},
};
