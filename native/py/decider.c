/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * _tsd.Decider: the Obico decision logic (native/core/decide.h).
 */
#include "common.h"

#include "core/decide.h"

#define PARAMS_OUT_OF_RANGE "Decider: parameter out of range (see decide.h)"

struct decider_object {
    PyObject_HEAD
    struct decide *decide;
};

static int parse_decide_params(PyObject *args, PyObject *kwargs, const char *format,
                               struct decide_params *params)
{
    static char *keywords[] = {"sensitivity", "bending_factor", "top_n", "frame_interval_s",
                               NULL};
    unsigned int top_n = params->top_n;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &params->sensitivity,
                                     &params->bending_factor, &top_n, &params->frame_interval_s))
        return -1;
    params->top_n = top_n;
    return 0;
}

static PyObject *decider_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    struct decide_params params = decide_params_default();
    struct decider_object *self;
    enum decide_result result;

    if (parse_decide_params(args, kwargs, "|ddId:Decider", &params) < 0)
        return NULL;
    self = (struct decider_object *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    result = decide_new(&params, &self->decide);
    if (result != DECIDE_OK) {
        Py_DECREF(self);
        return tsd_raise(tsd_type_state(type), &tsd_decide_errors, result, PARAMS_OUT_OF_RANGE);
    }
    return (PyObject *)self;
}

static void decider_dealloc(PyObject *self)
{
    struct decider_object *obj = (struct decider_object *)self;

    obj->decide = decide_free(obj->decide);
    tsd_object_free(self);
}

static PyObject *decider_add_frame(PyObject *self, PyObject *arg)
{
    struct decider_object *obj = (struct decider_object *)self;
    PyObject *seq = PySequence_Fast(arg, "add_frame() takes a sequence of confidences");
    double *confidences = NULL;
    struct decide_frame_result frame;
    enum decide_result result;
    Py_ssize_t n, i;
    PyObject *ret = NULL;

    if (!seq)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n > DECIDE_MAX_DETECTIONS) {
        PyErr_Format(PyExc_ValueError, "at most %u detections", DECIDE_MAX_DETECTIONS);
        goto out;
    }
    confidences = PyMem_Calloc(n ? (size_t)n : 1, sizeof(double));
    if (!confidences) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < n; i++) {
        confidences[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (confidences[i] == -1.0 && PyErr_Occurred())
            goto out;
    }
    result = decide_add_frame(obj->decide, confidences, (size_t)n, &frame);
    if (result != DECIDE_OK) {
        tsd_raise(tsd_object_state(self), &tsd_decide_errors, result,
                  "every confidence must be a number in [0, 1]");
        goto out;
    }
    ret = Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:K,s:s}", "p", frame.p, "ewm", frame.ewm,
                        "short_mean", frame.short_mean, "long_mean", frame.long_mean,
                        "adjusted", frame.adjusted, "frame", (unsigned long long)frame.frame,
                        "verdict", decide_verdict_str(frame.verdict));
out:
    PyMem_Free(confidences);
    Py_DECREF(seq);
    return ret;
}

static PyObject *decider_print_start(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    decide_print_start(((struct decider_object *)self)->decide);
    Py_RETURN_NONE;
}

static PyObject *decider_set_params(PyObject *self, PyObject *args, PyObject *kwargs)
{
    struct decider_object *obj = (struct decider_object *)self;
    struct decide_params params;
    enum decide_result result;

    decide_get_params(obj->decide, &params);
    if (parse_decide_params(args, kwargs, "|ddId:set_params", &params) < 0)
        return NULL;
    result = decide_set_params(obj->decide, &params);
    if (result != DECIDE_OK)
        return tsd_raise(tsd_object_state(self), &tsd_decide_errors, result,
                         PARAMS_OUT_OF_RANGE);
    Py_RETURN_NONE;
}

static PyObject *decider_params(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    struct decide_params params;
    struct decide_effective eff;

    decide_get_params(((struct decider_object *)self)->decide, &params);
    decide_get_effective(((struct decider_object *)self)->decide, &eff);
    return Py_BuildValue("{s:d,s:d,s:I,s:d,s:d,s:d,s:K,s:K,s:K}", "sensitivity",
                         params.sensitivity, "bending_factor", params.bending_factor, "top_n",
                         params.top_n, "frame_interval_s", params.frame_interval_s, "span",
                         eff.span, "alpha", eff.alpha, "short_window",
                         (unsigned long long)eff.short_window, "long_window",
                         (unsigned long long)eff.long_window, "grace_frames",
                         (unsigned long long)eff.grace_frames);
}

static PyObject *decider_long_term(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    double mean = 0;
    uint64_t count = 0;

    decide_get_long_term(((struct decider_object *)self)->decide, &mean, &count);
    return Py_BuildValue("(dK)", mean, (unsigned long long)count);
}

static PyObject *decider_set_long_term(PyObject *self, PyObject *args)
{
    double mean;
    unsigned long long count;
    enum decide_result result;

    if (!PyArg_ParseTuple(args, "dK:set_long_term", &mean, &count))
        return NULL;
    result = decide_set_long_term(((struct decider_object *)self)->decide, mean, count);
    if (result != DECIDE_OK)
        return tsd_raise(tsd_object_state(self), &tsd_decide_errors, result,
                         "the long-term mean must be finite and >= 0");
    Py_RETURN_NONE;
}

static PyMethodDef decider_methods[] = {
    {"add_frame", decider_add_frame, METH_O,
     "add_frame(confidences) -> dict(p, ewm, short_mean, long_mean, adjusted, frame, verdict)"},
    {"print_start", decider_print_start, METH_NOARGS,
     "A new print: reset the EWM, the short-term mean and the frame count."},
    {"set_params", (PyCFunction)(void (*)(void))decider_set_params, METH_VARARGS | METH_KEYWORDS,
     "set_params(sensitivity=, bending_factor=, top_n=, frame_interval_s=)"},
    {"params", decider_params, METH_NOARGS, "params() -> dict (with the time-scaled constants)"},
    {"long_term", decider_long_term, METH_NOARGS, "long_term() -> (mean, count)"},
    {"set_long_term", decider_set_long_term, METH_VARARGS, "set_long_term(mean, count)"},
    {NULL, NULL, 0, NULL},
};

TSD_TYPE_SPEC(tsd_decider_spec, "Decider", struct decider_object,
              "Decider(sensitivity=1.0, bending_factor=1.0, top_n=0, frame_interval_s=10.0)"
              "\n\nThe Obico decision logic (native/core/decide.h). Not thread-safe.",
              decider_new, decider_dealloc, decider_methods);
