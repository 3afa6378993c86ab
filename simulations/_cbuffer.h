/* Typed access to numpy arrays through the buffer protocol, shared by the C extensions.
 *
 * The extensions take numpy arrays without a build-time numpy dependency: each argument is
 * requested as a C-contiguous buffer with its format, and the element type is checked here so
 * a float64 array passed where int64 is expected is a TypeError naming the argument, never a
 * silent reinterpretation of its bytes.
 */
#ifndef SIMULATIONS_CBUFFER_H
#define SIMULATIONS_CBUFFER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Element kinds; the letters are struct-module format codes. */
#define K_F64 'd'
#define K_I64 'q'
#define K_I8 'b'
#define K_U8 'B'

/* Whether a buffer format string describes one native-order element of kind `kind`. */
static int
cbuf_format_ok(const char *format, Py_ssize_t itemsize, char kind)
{
    if (format == NULL) {
        format = "B";
    }
    if (*format == '@' || *format == '=') {
        format++;
    }
#if PY_LITTLE_ENDIAN
    else if (*format == '<') {
        format++;
    }
#else
    else if (*format == '>' || *format == '!') {
        format++;
    }
#endif
    if (format[0] == '\0' || format[1] != '\0') {
        return 0;
    }
    switch (kind) {
    case K_F64:
        return format[0] == 'd' && itemsize == 8;
    case K_I64:
        return (format[0] == 'q' || format[0] == 'l') && itemsize == 8;
    case K_I8:
        return format[0] == 'b' && itemsize == 1;
    case K_U8:
        return (format[0] == 'B' || format[0] == 'b' || format[0] == 'c') && itemsize == 1;
    }
    return 0;
}

/* Get a C-contiguous buffer of `kind` with `ndim` dimensions; on failure set a TypeError
 * naming `name` and return -1 (the view is then not held). */
static int
cbuf_get(PyObject *obj, Py_buffer *view, char kind, int ndim, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %s%s array, got %.80s", name,
                     writable ? "writable " : "",
                     kind == K_F64 ? "float64" : kind == K_I64 ? "int64"
                     : kind == K_I8 ? "int8" : "uint8",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!cbuf_format_ok(view->format, view->itemsize, kind) || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %d-D %s array, got format %s with %d-D",
                     name, ndim,
                     kind == K_F64 ? "float64" : kind == K_I64 ? "int64"
                     : kind == K_I8 ? "int8" : "uint8",
                     view->format ? view->format : "B", view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Elements along the first dimension. */
static inline Py_ssize_t
cbuf_len(const Py_buffer *view)
{
    return view->ndim == 0 ? 1 : view->shape[0];
}

/* Release the first `n` of an array of views. */
static void
cbuf_release(Py_buffer *views, int n)
{
    for (int k = 0; k < n; k++) {
        PyBuffer_Release(&views[k]);
    }
}

/* One array argument: the object, its expected kind and rank, and its name for errors. */
typedef struct {
    PyObject *obj;
    char kind;
    int ndim;
    int writable;
    const char *name;
} cbuf_spec;

/* Get every view in `specs`; on failure release the ones already held and return -1. */
static int
cbuf_get_all(const cbuf_spec *specs, Py_buffer *views, int n)
{
    for (int k = 0; k < n; k++) {
        const cbuf_spec *s = &specs[k];
        if (cbuf_get(s->obj, &views[k], s->kind, s->ndim, s->writable, s->name) < 0) {
            cbuf_release(views, k);
            return -1;
        }
    }
    return 0;
}

#endif
