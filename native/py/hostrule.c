/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.host_class() and check_server_url(): the one rule for local hosts and
 * cleartext (native/core/hostrule.h), for linking and discovery; the tunnel
 * applies it in C.
 */
#include "common.h"

#include <string.h>

#include "core/hostrule.h"

static PyObject *tsd_host_class(PyObject *module, PyObject *arg)
{
    const char *host;

    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "host_class() needs a str");
        return NULL;
    }
    host = PyUnicode_AsUTF8(arg);
    if (!host)
        return NULL;
    /* A NUL inside the text would hide the rest of it from the rule. */
    if ((Py_ssize_t)strlen(host) != PyUnicode_GET_LENGTH(arg))
        return PyUnicode_FromString(hostrule_class_str(HOSTRULE_NAME));
    return PyUnicode_FromString(hostrule_class_str(hostrule_classify(host)));
}

static PyObject *tsd_check_server_url(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"url", "allow_cleartext_lan", NULL};
    const char *url = NULL;
    Py_ssize_t url_len = 0;
    int allow_cleartext_lan = 0;
    struct hostrule_url parsed;
    enum hostrule_result result;
    char reason[384] = "";
    PyObject *port;
    PyObject *dict;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s#|p:check_server_url", keywords, &url,
                                     &url_len, &allow_cleartext_lan))
        return NULL;
    if ((size_t)url_len != strlen(url))
        return tsd_raise(tsd_module_state(module), &tsd_hostrule_errors, HOSTRULE_ERR_URL,
                         "the server URL contains a NUL character");
    result = hostrule_check_url(url, allow_cleartext_lan != 0, &parsed, reason, sizeof(reason));
    if (result != HOSTRULE_OK)
        return tsd_raise(tsd_module_state(module), &tsd_hostrule_errors, result, reason);
    if (parsed.port) {
        port = PyLong_FromLong(parsed.port);
        if (!port)
            return NULL;
    } else {
        port = Py_None;
        Py_INCREF(port);
    }
    dict = Py_BuildValue("{s:s, s:O, s:s, s:O, s:s, s:s}", "scheme", parsed.scheme, "tls",
                         parsed.tls ? Py_True : Py_False, "host", parsed.host, "port", port,
                         "path", parsed.path, "host_class", hostrule_class_str(parsed.host_class));
    Py_DECREF(port);
    return dict;
}

PyMethodDef tsd_hostrule_functions[] = {
    {"host_class", tsd_host_class, METH_O,
     "host_class(host: str) -> str\n\n\"loopback\", \"private\" (RFC 1918, fc00::/7), "
     "\"public\" (any other address) or \"name\" (not an address literal: localhost, "
     "127.1 and 0x7f000001 included). An IPv4-mapped IPv6 address counts as its IPv4 one."},
    {"check_server_url", (PyCFunction)(void (*)(void))tsd_check_server_url,
     METH_VARARGS | METH_KEYWORDS,
     "check_server_url(url, allow_cleartext_lan=False) -> dict\n\nscheme (lowercased), tls, "
     "host, port (None: the scheme's), path and host_class of an http(s) or ws(s) URL. "
     "ValueError with .code \"bad_url\", or \"insecure_url\" for cleartext to a host that is "
     "neither loopback nor, when allowed, a private LAN address."},
    {NULL, NULL, 0, NULL},
};
