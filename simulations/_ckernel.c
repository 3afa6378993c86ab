/* The compiled FCFS core of the simulator (see simulations/kernel.py for the model).
 *
 * Every slot of every accepting instance sits in a min-heap keyed by the time it can next
 * start a request; the head of the queue starts at max(its ready time, heap top) on the
 * heap-top slot. This is C rather than a JIT so the simulator starts in milliseconds: the
 * whole `autoscaler simulate` process is dominated by start-up, not by the per-request loop.
 * The arrays belong to the Python side (simulations/fleet.py); these functions only read and
 * write them in place, with the same arithmetic, in the same order, as the reference model.
 */
#include "_cbuffer.h"

#include <math.h>

/* Indices into the int64 scalar array `ist` (mirrored in kernel.py). */
enum { Q_NEXT, HEAP_N, RQ_HEAD, RQ_COUNT, DISPATCHED, REQUEUED, N_SCALARS };

/* Restore the heap below `pos` after its key changed (the textbook sift-down: the key stops
 * above children equal to it, which decides the slot a tie goes to). */
static void
sift_down(double *heap_t, int64_t *heap_s, Py_ssize_t n, Py_ssize_t pos)
{
    double t = heap_t[pos];
    int64_t s = heap_s[pos];
    for (;;) {
        Py_ssize_t child = 2 * pos + 1;
        if (child >= n) {
            break;
        }
        Py_ssize_t right = child + 1;
        if (right < n && heap_t[right] < heap_t[child]) {
            child = right;
        }
        if (heap_t[child] >= t) {
            break;
        }
        heap_t[pos] = heap_t[child];
        heap_s[pos] = heap_s[child];
        pos = child;
    }
    heap_t[pos] = t;
    heap_s[pos] = s;
}

/* Python's modulo for a positive divisor: the result is in [0, cap). */
static inline int64_t
wrap(int64_t value, int64_t cap)
{
    int64_t r = value % cap;
    return r < 0 ? r + cap : r;
}

static int
check_ist(const Py_buffer *ist)
{
    if (cbuf_len(ist) < N_SCALARS) {
        PyErr_Format(PyExc_ValueError, "ist: expected at least %d scalars", N_SCALARS);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(rebuild_heap_doc,
"rebuild_heap(accept, ready, slots, slot_until, heap_t, heap_s, ist)\n--\n\n"
"Put every slot of every accepting instance in the heap (O(slots), at boundaries only).");

static PyObject *
rebuild_heap(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t slots;
    if (!PyArg_ParseTuple(args, "OOnOOOO:rebuild_heap", &o[0], &o[1], &slots, &o[2], &o[3],
                          &o[4], &o[5])) {
        return NULL;
    }
    const cbuf_spec specs[6] = {
        {o[0], K_I8, 1, 0, "accept"},      {o[1], K_F64, 1, 0, "ready"},
        {o[2], K_F64, 1, 0, "slot_until"}, {o[3], K_F64, 1, 1, "heap_t"},
        {o[4], K_I64, 1, 1, "heap_s"},     {o[5], K_I64, 1, 1, "ist"},
    };
    Py_buffer v[6];
    if (cbuf_get_all(specs, v, 6) < 0) {
        return NULL;
    }
    const int8_t *accept = v[0].buf;
    const double *ready = v[1].buf, *slot_until = v[2].buf;
    double *heap_t = v[3].buf;
    int64_t *heap_s = v[4].buf, *ist = v[5].buf;
    Py_ssize_t instances = cbuf_len(&v[0]);
    Py_ssize_t accepting = 0;
    for (Py_ssize_t inst = 0; inst < instances; inst++) {
        accepting += accept[inst] != 0;
    }
    if (check_ist(&v[5]) < 0 || slots < 0 || cbuf_len(&v[1]) < instances
        || cbuf_len(&v[2]) < instances * slots || cbuf_len(&v[3]) < accepting * slots
        || cbuf_len(&v[4]) < accepting * slots) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError,
                            "rebuild_heap: ready, slot_until or the heap arrays are too short");
        }
        cbuf_release(v, 6);
        return NULL;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t inst = 0; inst < instances; inst++) {
        if (accept[inst] == 0) {
            continue;
        }
        for (Py_ssize_t k = 0; k < slots; k++) {
            Py_ssize_t j = inst * slots + k;
            heap_t[n] = ready[inst] > slot_until[j] ? ready[inst] : slot_until[j];
            heap_s[n] = j;
            n++;
        }
    }
    for (Py_ssize_t pos = n / 2 - 1; pos >= 0; pos--) {
        sift_down(heap_t, heap_s, n, pos);
    }
    ist[HEAP_N] = n;
    cbuf_release(v, 6);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(advance_doc,
"advance(t_end, arrival, service, wait, done, ist, rq_id, rq_t, heap_t, heap_s, slot_until,"
" slot_req)\n--\n\n"
"Start every request that can start before t_end, in FCFS order.");

static PyObject *
advance(PyObject *self, PyObject *args)
{
    double t_end;
    PyObject *o[11];
    if (!PyArg_ParseTuple(args, "dOOOOOOOOOOO:advance", &t_end, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10])) {
        return NULL;
    }
    const cbuf_spec specs[11] = {
        {o[0], K_F64, 1, 0, "arrival"},    {o[1], K_F64, 1, 0, "service"},
        {o[2], K_F64, 1, 1, "wait"},       {o[3], K_F64, 1, 1, "done"},
        {o[4], K_I64, 1, 1, "ist"},        {o[5], K_I64, 1, 1, "rq_id"},
        {o[6], K_F64, 1, 1, "rq_t"},       {o[7], K_F64, 1, 1, "heap_t"},
        {o[8], K_I64, 1, 1, "heap_s"},     {o[9], K_F64, 1, 1, "slot_until"},
        {o[10], K_I64, 1, 1, "slot_req"},
    };
    Py_buffer v[11];
    if (cbuf_get_all(specs, v, 11) < 0) {
        return NULL;
    }
    const double *arrival = v[0].buf, *service = v[1].buf;
    double *wait = v[2].buf, *done = v[3].buf, *rq_t = v[6].buf, *heap_t = v[7].buf;
    double *slot_until = v[9].buf;
    int64_t *ist = v[4].buf, *rq_id = v[5].buf, *heap_s = v[8].buf, *slot_req = v[10].buf;
    Py_ssize_t n = cbuf_len(&v[0]);
    int64_t cap = cbuf_len(&v[5]);
    if (check_ist(&v[4]) < 0) {
        cbuf_release(v, 11);
        return NULL;
    }
    int64_t hn = ist[HEAP_N];
    if (cbuf_len(&v[1]) != n || cbuf_len(&v[2]) != n || cbuf_len(&v[3]) != n
        || cbuf_len(&v[6]) != cap || hn > cbuf_len(&v[7]) || hn > cbuf_len(&v[8])
        || cbuf_len(&v[10]) != cbuf_len(&v[9]) || (ist[RQ_COUNT] > 0 && cap == 0)) {
        PyErr_SetString(PyExc_ValueError, "advance: array lengths do not match");
        cbuf_release(v, 11);
        return NULL;
    }
    int64_t q = ist[Q_NEXT];
    Py_BEGIN_ALLOW_THREADS
    while (hn > 0) {
        int64_t rid;
        double ready;
        if (ist[RQ_COUNT] > 0) {
            rid = rq_id[ist[RQ_HEAD]];
            ready = rq_t[ist[RQ_HEAD]];
        }
        else if (q < n) {
            rid = q;
            ready = arrival[q];
        }
        else {
            break;
        }
        double top = heap_t[0];
        double start = ready > top ? ready : top;
        if (start >= t_end) {
            break;
        }
        int64_t slot = heap_s[0];
        wait[rid] += start - ready;
        double finish = start + service[rid];
        done[rid] = finish;
        slot_until[slot] = finish;
        slot_req[slot] = rid;
        heap_t[0] = finish;
        sift_down(heap_t, heap_s, hn, 0);
        ist[DISPATCHED] += 1;
        if (ist[RQ_COUNT] > 0) {
            ist[RQ_HEAD] = wrap(ist[RQ_HEAD] + 1, cap);
            ist[RQ_COUNT] -= 1;
        }
        else {
            q++;
        }
    }
    ist[Q_NEXT] = q;
    Py_END_ALLOW_THREADS
    cbuf_release(v, 11);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(in_flight_doc, "in_flight(t, slot_until, slot_req)\n--\n\nSlots serving a request at t.");

static PyObject *
in_flight(PyObject *self, PyObject *args)
{
    double t;
    PyObject *o[2];
    if (!PyArg_ParseTuple(args, "dOO:in_flight", &t, &o[0], &o[1])) {
        return NULL;
    }
    const cbuf_spec specs[2] = {
        {o[0], K_F64, 1, 0, "slot_until"}, {o[1], K_I64, 1, 0, "slot_req"},
    };
    Py_buffer v[2];
    if (cbuf_get_all(specs, v, 2) < 0) {
        return NULL;
    }
    const double *slot_until = v[0].buf;
    const int64_t *slot_req = v[1].buf;
    Py_ssize_t n = cbuf_len(&v[0]);
    if (cbuf_len(&v[1]) != n) {
        PyErr_SetString(PyExc_ValueError, "in_flight: slot_until and slot_req differ in length");
        cbuf_release(v, 2);
        return NULL;
    }
    Py_ssize_t busy = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        busy += slot_req[j] >= 0 && slot_until[j] > t;
    }
    cbuf_release(v, 2);
    return PyLong_FromSsize_t(busy);
}

PyDoc_STRVAR(preempt_doc,
"preempt(inst, t, slots, slot_until, slot_req, done, ist, rq_id, rq_t)\n--\n\n"
"Take an instance away at t: its in-flight requests go back at the head of the queue.\n\n"
"Returns how many were re-queued. They keep the wait already accrued and accrue more from t\n"
"until they start again; the partial service is lost (the work is redone).");

static PyObject *
preempt(PyObject *self, PyObject *args)
{
    Py_ssize_t inst, slots;
    double t;
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "ndnOOOOOO:preempt", &inst, &t, &slots, &o[0], &o[1], &o[2],
                          &o[3], &o[4], &o[5])) {
        return NULL;
    }
    const cbuf_spec specs[6] = {
        {o[0], K_F64, 1, 1, "slot_until"}, {o[1], K_I64, 1, 1, "slot_req"},
        {o[2], K_F64, 1, 1, "done"},       {o[3], K_I64, 1, 1, "ist"},
        {o[4], K_I64, 1, 1, "rq_id"},      {o[5], K_F64, 1, 1, "rq_t"},
    };
    Py_buffer v[6];
    if (cbuf_get_all(specs, v, 6) < 0) {
        return NULL;
    }
    double *slot_until = v[0].buf, *done = v[2].buf, *rq_t = v[5].buf;
    int64_t *slot_req = v[1].buf, *ist = v[3].buf, *rq_id = v[4].buf;
    int64_t cap = cbuf_len(&v[4]);
    if (check_ist(&v[3]) < 0) {
        cbuf_release(v, 6);
        return NULL;
    }
    if (inst < 0 || slots < 0 || (inst + 1) * slots > cbuf_len(&v[0])
        || cbuf_len(&v[1]) != cbuf_len(&v[0]) || cbuf_len(&v[5]) != cap
        || cap - ist[RQ_COUNT] < slots) {
        PyErr_SetString(PyExc_ValueError,
                        "preempt: instance out of range or the re-queue ring is too small");
        cbuf_release(v, 6);
        return NULL;
    }
    Py_ssize_t moved = 0, n_done = cbuf_len(&v[2]);
    for (Py_ssize_t k = 0; k < slots; k++) {
        Py_ssize_t j = inst * slots + k;
        int64_t rid = slot_req[j];
        if (rid >= 0 && slot_until[j] > t) {
            if (rid >= n_done) {
                PyErr_SetString(PyExc_ValueError, "preempt: a slot holds an unknown request");
                cbuf_release(v, 6);
                return NULL;
            }
            /* Head of the queue: insert before the current head. */
            ist[RQ_HEAD] = wrap(ist[RQ_HEAD] - 1, cap);
            rq_id[ist[RQ_HEAD]] = rid;
            rq_t[ist[RQ_HEAD]] = t;
            ist[RQ_COUNT] += 1;
            ist[REQUEUED] += 1;
            done[rid] = NAN;
            slot_until[j] = t;
            moved++;
        }
        slot_req[j] = -1;
    }
    cbuf_release(v, 6);
    return PyLong_FromSsize_t(moved);
}

static PyMethodDef methods[] = {
    {"rebuild_heap", rebuild_heap, METH_VARARGS, rebuild_heap_doc},
    {"advance", advance, METH_VARARGS, advance_doc},
    {"in_flight", in_flight, METH_VARARGS, in_flight_doc},
    {"preempt", preempt, METH_VARARGS, preempt_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "simulations._ckernel",
    .m_doc = "The simulator's FCFS slot heap, compiled (see simulations/kernel.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__ckernel(void)
{
    return PyModule_Create(&module);
}
