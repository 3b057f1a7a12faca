/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "common.h"

struct tsd_state *tsd_module_state(PyObject *module)
{
    void *state = PyModule_GetState(module);
    assert(state != NULL);
    return (struct tsd_state *)state;
}

struct tsd_state *tsd_object_state(PyObject *self)
{
    void *state = PyType_GetModuleState(Py_TYPE(self));
    assert(state != NULL);
    return (struct tsd_state *)state;
}

struct tsd_state *tsd_type_state(PyTypeObject *type)
{
    PyObject *module = PyType_GetModule(type);

    return module ? tsd_module_state(module) : NULL;
}

void tsd_object_free(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);

    type->tp_free(self);
    Py_DECREF(type);
}
