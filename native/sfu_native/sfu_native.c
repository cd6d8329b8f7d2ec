/*
 * _sfu_native: optional C fast path of the Conference media server.
 *
 * The media server forwards every publisher packet to N subscribers; per copy
 * it has to SRTP-protect the rewritten RTP packet and hand it to the kernel.
 * Done in Python that is three frames, a cffi call with argument conversion, a
 * buffer slice and socket.sendto's argument and address parsing per copy.
 * This module does protect + sendto in one C call, and the header rewrite +
 * fan-out that precedes it in one C call per publisher packet.
 *
 * It knows nothing about aiortc or pylibsrtp: media_server/aiortc_hooks.py
 * (which owns every private access) hands it the libsrtp function pointer and
 * srtp_t context taken from pylibsrtp's cffi binding, the socket, and the
 * conditions ("guards") under which the fast path is valid. Whenever a guard
 * does not hold, the Python fallback given at construction does the work, so
 * behaviour is the Python path's by construction.
 *
 * Types:
 *   SrtpProcessor(function, context, keepalive, limit, check)
 *       callable(data: bytes) -> bytes: like pylibsrtp.Session.protect /
 *       unprotect ("packet is too long" ValueError above `limit`, `check(rc)`
 *       called with libsrtp's error code, which raises pylibsrtp.Error).
 *   SrtpSender(fallback)
 *       callable(data: bytes) -> bool. Until configure() and while any guard
 *       fails it returns fallback(data). Otherwise: protect into its own
 *       buffer, sendto(2) on the socket's descriptor; if the kernel refuses
 *       the datagram, queue(packet, address) (asyncio's transport.sendto,
 *       which queues and retries) and return True. Guards: `guards`
 *       (object, attribute, expected) and `items` (dict, key, expected) must
 *       hold by identity (items are the cheaper check: no attribute lookup),
 *       the socket's descriptor must be unchanged and `buffered()` (if not
 *       None) must be 0.
 *       With `sequence` (a TransportSequence) the C path stamps the
 *       transport-wide sequence number into its copy before protecting.
 *   TransportSequence(*, id, next_seq, clock)
 *       one subscribe connection's transport-wide sequence numbers (see below).
 *   DownstreamCore, Fanout(downstream_type, history_mask, sr_batch)
 *       the steady state of media_server.forwarder.Downstream.forward for all
 *       downstreams of one publisher packet in one call (see below).
 *   recv_nowait(sock) -> (data, address) | None
 *       one non-blocking recvfrom without an exception when nothing is queued
 *       (the receive drain asks once more per wake-up; BlockingIOError per
 *       wake-up was ~1 us of Python).
 *
 * Not thread-safe (like the rest of the media server: one event loop thread);
 * every call holds the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* pylibsrtp's work buffer is 1500 bytes; packets are limited to 1500 - trailer. */
#define BUFFER_SIZE 1500

typedef int (*srtp_function)(void *context, void *packet, int *length);

/* tp_dealloc of the module's GC types that cannot be subclassed (all but DownstreamCore): untrack, then
   the type's own tp_clear drops every reference, then free. */
static void
final_gc_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    (void)Py_TYPE(op)->tp_clear(op);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *str_fileno;

static int
parse_pointer(PyObject *value, void **out, const char *what)
{
    unsigned long long raw = PyLong_AsUnsignedLongLong(value);
    if (raw == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (raw == 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be NULL", what);
        return -1;
    }
    *out = (void *)(uintptr_t)raw;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* TransportSequence                                                         */
/* ------------------------------------------------------------------------ */

/*
 * The transport-wide sequence number of one subscribe connection
 * (media_server.twcc.TransportSequence is the Python reference). A packet
 * whose extension block starts with the element `id` of two bytes (the
 * forwarder reserves it, first, when transport-cc was negotiated) gets the
 * next number written there when it is sent, and (seq, size, send time,
 * probe cluster) is recorded in a ring for the estimator (drain()).
 */
#define TSEQ_RING 2048

typedef struct {
    PyObject_HEAD
    int id;          /* extension ID 1..14, 0: stamp nothing */
    unsigned next;   /* next sequence number (16 bits) */
    long cluster;    /* probe cluster of the packets sent now, -1: none */
    PyObject *clock; /* None (CLOCK_MONOTONIC) or a callable (tests) */
    unsigned long long dropped;
    unsigned head, count;
    uint16_t seqs[TSEQ_RING];
    uint32_t sizes[TSEQ_RING];
    int32_t clusters[TSEQ_RING];
    double times[TSEQ_RING];
} TSeq;

static PyTypeObject TSeqType;

/* The send time: CLOCK_MONOTONIC (= time.monotonic()) or the test clock; -1 with an exception set. */
static int
tseq_now(TSeq *t, double *out)
{
    if (t->clock == NULL || t->clock == Py_None) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        *out = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        return 0;
    }
    PyObject *v = PyObject_CallNoArgs(t->clock);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* Stamp `p` (n bytes of plaintext RTP) in place if it carries the slot; 1 stamped, 0 not, -1 exception. */
static int
tseq_stamp(TSeq *t, unsigned char *p, Py_ssize_t n)
{
    if (!t->id || n < 20 || (p[0] & 0x1F) != 0x10 || p[12] != 0xBE || p[13] != 0xDE || p[16] != ((t->id << 4) | 1))
        return 0;
    double now;
    if (tseq_now(t, &now) < 0)
        return -1;
    unsigned seq = t->next & 0xFFFF;
    p[17] = (unsigned char)(seq >> 8);
    p[18] = (unsigned char)seq;
    t->next = (seq + 1) & 0xFFFF;
    unsigned slot = (t->head + t->count) % TSEQ_RING;
    if (t->count == TSEQ_RING) { /* nobody drained for a long time: forget the oldest */
        t->head = (t->head + 1) % TSEQ_RING;
        t->dropped++;
    } else {
        t->count++;
    }
    t->seqs[slot] = (uint16_t)seq;
    t->sizes[slot] = (uint32_t)n;
    t->clusters[slot] = (int32_t)t->cluster;
    t->times[slot] = now;
    return 1;
}

static PyObject *
TSeq_stamp(PyObject *op, PyObject *data)
{
    TSeq *t = (TSeq *)op;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(data);
    if (!t->id || n < 20 || (in[0] & 0x1F) != 0x10 || in[12] != 0xBE || in[13] != 0xDE || in[16] != ((t->id << 4) | 1))
        return Py_NewRef(data);
    PyObject *out = PyBytes_FromStringAndSize((const char *)in, n);
    if (out == NULL)
        return NULL;
    if (tseq_stamp(t, (unsigned char *)PyBytes_AS_STRING(out), n) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *
TSeq_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    TSeq *t = (TSeq *)op;
    PyObject *list = PyList_New(t->count);
    if (list == NULL)
        return NULL;
    for (unsigned i = 0; i < t->count; i++) {
        unsigned slot = (t->head + i) % TSEQ_RING;
        PyObject *item = Py_BuildValue("(IIdi)", (unsigned)t->seqs[slot], (unsigned)t->sizes[slot], t->times[slot],
                                       (int)t->clusters[slot]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    t->head = t->count = 0;
    return list;
}

static PyObject *
TSeq_get_id(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((TSeq *)op)->id);
}

static int
TSeq_set_id(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    long v = value == NULL ? -1 : PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > 14) {
        PyErr_SetString(PyExc_ValueError, "id must be 0..14");
        return -1;
    }
    ((TSeq *)op)->id = (int)v;
    return 0;
}

static PyObject *
TSeq_get_next(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(((TSeq *)op)->next);
}

static int
TSeq_set_next(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    long v = value == NULL ? -1 : PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    ((TSeq *)op)->next = (unsigned)(v & 0xFFFF);
    return 0;
}

static PyObject *
TSeq_get_cluster(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((TSeq *)op)->cluster);
}

static int
TSeq_set_cluster(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    long v = value == NULL ? -1 : PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < -1 || v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "cluster must be -1 or a non-negative int32");
        return -1;
    }
    ((TSeq *)op)->cluster = v;
    return 0;
}

static PyObject *
TSeq_get_dropped(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(((TSeq *)op)->dropped);
}

static PyObject *
TSeq_get_pending(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(((TSeq *)op)->count);
}

static PyObject *
TSeq_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    TSeq *t = (TSeq *)type->tp_alloc(type, 0);
    if (t != NULL) {
        t->cluster = -1;
        t->clock = Py_NewRef(Py_None);
    }
    return (PyObject *)t;
}

static int
TSeq_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"id", "next_seq", "clock", NULL};
    int id = 0;
    unsigned long next = 1;
    PyObject *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$ikO", kwlist, &id, &next, &clock))
        return -1;
    if (id < 0 || id > 14) {
        PyErr_SetString(PyExc_ValueError, "id must be 0..14");
        return -1;
    }
    TSeq *t = (TSeq *)op;
    t->id = id;
    t->next = (unsigned)(next & 0xFFFF);
    Py_XSETREF(t->clock, Py_NewRef(clock));
    return 0;
}

static int
TSeq_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(((TSeq *)op)->clock);
    return 0;
}

static int
TSeq_clear(PyObject *op)
{
    Py_CLEAR(((TSeq *)op)->clock);
    return 0;
}

static PyMethodDef TSeq_methods[] = {
    {"stamp", TSeq_stamp, METH_O, "stamp(packet) -> packet with the next sequence number in its slot (or as it was)"},
    {"drain", TSeq_drain, METH_NOARGS, "drain() -> [(seq, size, send_time, cluster)] recorded since the last drain"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef TSeq_members[] = {
    {"clock", T_OBJECT_EX, offsetof(TSeq, clock), 0, "None (CLOCK_MONOTONIC) or a callable (tests)"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef TSeq_getset[] = {
    {"id", TSeq_get_id, TSeq_set_id, "transport-wide-cc extension ID (0: stamp nothing)", NULL},
    {"next_seq", TSeq_get_next, TSeq_set_next, "the next sequence number", NULL},
    {"cluster", TSeq_get_cluster, TSeq_set_cluster, "probe cluster recorded with the packets sent now (-1: none)",
     NULL},
    {"dropped", TSeq_get_dropped, NULL, "records lost because nobody drained the ring", NULL},
    {"pending", TSeq_get_pending, NULL, "records waiting for drain()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TSeqType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.TransportSequence",
    .tp_basicsize = sizeof(TSeq),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "TransportSequence(*, id=0, next_seq=1, clock=None): transport-wide sequence numbers of one connection",
    .tp_new = TSeq_new,
    .tp_init = TSeq_init,
    .tp_traverse = TSeq_traverse,
    .tp_clear = TSeq_clear,
    .tp_dealloc = final_gc_dealloc,
    .tp_methods = TSeq_methods,
    .tp_members = TSeq_members,
    .tp_getset = TSeq_getset,
};

/* Run libsrtp on `buffer` (holding `data`); 0 on success, -1 with an exception set. */
static int
run_srtp_stamped(srtp_function function, void *context, unsigned char *buffer, Py_ssize_t limit, PyObject *check,
                 PyObject *data, int *length, PyObject *sequence);

static int
run_srtp(srtp_function function, void *context, unsigned char *buffer, Py_ssize_t limit, PyObject *check,
         PyObject *data, int *length)
{
    return run_srtp_stamped(function, context, buffer, limit, check, data, length, NULL);
}

/* run_srtp, with the transport-wide sequence number of `sequence` (a TransportSequence, or NULL) stamped into
   the buffer's copy before protecting it. */
static int
run_srtp_stamped(srtp_function function, void *context, unsigned char *buffer, Py_ssize_t limit, PyObject *check,
                 PyObject *data, int *length, PyObject *sequence)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n > limit) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return -1;
    }
    memcpy(buffer, PyBytes_AS_STRING(data), (size_t)n);
    if (sequence != NULL && tseq_stamp((TSeq *)sequence, buffer, n) < 0)
        return -1;
    *length = (int)n;
    int rc = function(context, buffer, length);
    if (rc) {
        PyObject *code = PyLong_FromLong(rc);
        if (code == NULL)
            return -1;
        PyObject *result = PyObject_CallOneArg(check, code);
        Py_DECREF(code);
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* SrtpProcessor                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    srtp_function function;
    void *context;
    Py_ssize_t limit;
    PyObject *keepalive;
    PyObject *check;
    unsigned char buffer[BUFFER_SIZE];
} Processor;

static PyObject *
Processor_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Processor *self = (Processor *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "SrtpProcessor takes exactly one positional argument");
        return NULL;
    }
    int length;
    if (run_srtp(self->function, self->context, self->buffer, self->limit, self->check, args[0], &length) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)self->buffer, length);
}

static int
Processor_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Processor *self = (Processor *)op;
    static char *kwlist[] = {"function", "context", "keepalive", "limit", "check", NULL};
    PyObject *function, *context, *keepalive, *check;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOnO", kwlist, &function, &context, &keepalive, &limit, &check))
        return -1;
    void *f, *c;
    if (parse_pointer(function, &f, "function") < 0 || parse_pointer(context, &c, "context") < 0)
        return -1;
    if (limit < 0 || limit > BUFFER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "limit out of range");
        return -1;
    }
    if (!PyCallable_Check(check)) {
        PyErr_SetString(PyExc_TypeError, "check must be callable");
        return -1;
    }
    self->function = (srtp_function)f;
    self->context = c;
    self->limit = limit;
    Py_INCREF(keepalive);
    Py_XSETREF(self->keepalive, keepalive);
    Py_INCREF(check);
    Py_XSETREF(self->check, check);
    self->vectorcall = Processor_vectorcall;
    return 0;
}

static int
Processor_traverse(PyObject *op, visitproc visit, void *arg)
{
    Processor *self = (Processor *)op;
    Py_VISIT(self->keepalive);
    Py_VISIT(self->check);
    return 0;
}

static int
Processor_clear(PyObject *op)
{
    Processor *self = (Processor *)op;
    Py_CLEAR(self->keepalive);
    Py_CLEAR(self->check);
    return 0;
}

static PyObject *
Processor_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Processor *self = (Processor *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = Processor_vectorcall;
    return (PyObject *)self;
}

static PyObject *
Processor_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Processor *self = (Processor *)op;
    if (self->function == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SrtpProcessor is not initialised");
        return NULL;
    }
    return PyVectorcall_Call(op, args, kwargs);
}

static PyTypeObject ProcessorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.SrtpProcessor",
    .tp_basicsize = sizeof(Processor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "SrtpProcessor(function, context, keepalive, limit, check): callable(data: bytes) -> bytes",
    .tp_vectorcall_offset = offsetof(Processor, vectorcall),
    .tp_call = Processor_call,
    .tp_new = Processor_new,
    .tp_init = Processor_init,
    .tp_traverse = Processor_traverse,
    .tp_clear = Processor_clear,
    .tp_dealloc = final_gc_dealloc,
};

/* ------------------------------------------------------------------------ */
/* SrtpSender                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;
    PyObject *sequence; /* TransportSequence | NULL: stamps what the C path sends */
    int configured;
    srtp_function function;
    void *context;
    Py_ssize_t limit;
    PyObject *keepalive;
    PyObject *check;
    PyObject *sock;
    PyObject *address;
    PyObject *queue;
    PyObject *buffered;
    PyObject *guards; /* tuple of (object, attribute name, expected object) */
    PyObject *items;  /* tuple of (dict, key, expected object) */
    int fd;
    struct sockaddr_storage sa;
    socklen_t salen;
    unsigned long long native_packets;
    unsigned char buffer[BUFFER_SIZE];
} Sender;

static void
Sender_drop(Sender *self)
{
    self->configured = 0;
    Py_CLEAR(self->keepalive);
    Py_CLEAR(self->check);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->address);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->buffered);
    Py_CLEAR(self->guards);
    Py_CLEAR(self->items);
}

/* 1: the fast path is valid; 0: use the fallback; -1: exception. */
static int
Sender_guards_hold(Sender *self)
{
    Py_ssize_t n = PyTuple_GET_SIZE(self->guards);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *guard = PyTuple_GET_ITEM(self->guards, i);
        PyObject *value = PyObject_GetAttr(PyTuple_GET_ITEM(guard, 0), PyTuple_GET_ITEM(guard, 1));
        if (value == NULL)
            return -1;
        int same = value == PyTuple_GET_ITEM(guard, 2);
        Py_DECREF(value);
        if (!same)
            return 0;
    }
    n = PyTuple_GET_SIZE(self->items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *guard = PyTuple_GET_ITEM(self->items, i);
        PyObject *value = PyDict_GetItemWithError(PyTuple_GET_ITEM(guard, 0), PyTuple_GET_ITEM(guard, 1));
        if (value == NULL && PyErr_Occurred())
            return -1;
        if (value != PyTuple_GET_ITEM(guard, 2))
            return 0;
    }
    /* The socket must still be the one whose descriptor we cached (a closed
       socket's number can be reused by another socket). */
    PyObject *fd = PyObject_CallMethodNoArgs(self->sock, str_fileno);
    if (fd == NULL)
        return -1;
    long current = PyLong_AsLong(fd);
    Py_DECREF(fd);
    if (current == -1 && PyErr_Occurred())
        return -1;
    if (current != self->fd)
        return 0;
    /* Anything already queued in asyncio for this peer: the fallback keeps the order and the bound.
       (buffered None: an `items` guard on the transport's _buffer_size does that, without a Python call.) */
    if (self->buffered == Py_None)
        return 1;
    PyObject *size = PyObject_CallNoArgs(self->buffered);
    if (size == NULL)
        return -1;
    int busy = PyObject_IsTrue(size);
    Py_DECREF(size);
    if (busy < 0)
        return -1;
    return !busy;
}

static PyObject *
Sender_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Sender *self = (Sender *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "SrtpSender takes exactly one positional argument");
        return NULL;
    }
    PyObject *data = args[0];
    if (!self->configured)
        return PyObject_CallOneArg(self->fallback, data);
    int ok = Sender_guards_hold(self);
    if (ok < 0)
        return NULL;
    if (!ok)
        return PyObject_CallOneArg(self->fallback, data);
    int length;
    if (run_srtp_stamped(self->function, self->context, self->buffer, self->limit, self->check, data, &length,
                         self->sequence) < 0)
        return NULL;
    ssize_t sent = sendto(self->fd, self->buffer, (size_t)length, MSG_DONTWAIT, (struct sockaddr *)&self->sa,
                          self->salen);
    if (sent < 0) {
        /* EAGAIN (or an error): asyncio queues and retries, or reports the error as usual. */
        PyObject *packet = PyBytes_FromStringAndSize((const char *)self->buffer, length);
        if (packet == NULL)
            return NULL;
        PyObject *result = PyObject_CallFunctionObjArgs(self->queue, packet, self->address, NULL);
        Py_DECREF(packet);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
        Py_RETURN_TRUE;
    }
    self->native_packets++;
    Py_RETURN_TRUE;
}

static PyObject *
Sender_configure(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Sender *self = (Sender *)op;
    static char *kwlist[] = {"function", "context", "keepalive", "limit",    "check", "sock",
                             "address",  "queue",   "buffered",  "guards",   "items", NULL};
    PyObject *function, *context, *keepalive, *check, *sock, *address, *queue, *buffered, *guards, *items;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOnOOOOOO!O!", kwlist, &function, &context, &keepalive,
                                     &limit, &check, &sock, &address, &queue, &buffered, &PyTuple_Type, &guards,
                                     &PyTuple_Type, &items))
        return NULL;
    Sender_drop(self); /* a failed configure leaves no stale fast path behind */
    void *f, *c;
    if (parse_pointer(function, &f, "function") < 0 || parse_pointer(context, &c, "context") < 0)
        return NULL;
    if (limit < 0 || limit > BUFFER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "limit out of range");
        return NULL;
    }
    if (!PyCallable_Check(check) || !PyCallable_Check(queue) || (buffered != Py_None && !PyCallable_Check(buffered))) {
        PyErr_SetString(PyExc_TypeError, "check and queue must be callable, buffered callable or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(guards); i++) {
        PyObject *g = PyTuple_GET_ITEM(guards, i);
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(g, 1))) {
            PyErr_SetString(PyExc_TypeError, "guards must be (object, attribute name, expected) tuples");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(items); i++) {
        PyObject *g = PyTuple_GET_ITEM(items, i);
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3 || !PyDict_Check(PyTuple_GET_ITEM(g, 0))) {
            PyErr_SetString(PyExc_TypeError, "items must be (dict, key, expected) tuples");
            return NULL;
        }
    }
    /* Destination: a numeric (host, port, ...) address, as asyncio's sendto gets it. */
    if (!PyTuple_Check(address) || PyTuple_GET_SIZE(address) < 2 || !PyUnicode_Check(PyTuple_GET_ITEM(address, 0)) ||
        !PyLong_Check(PyTuple_GET_ITEM(address, 1))) {
        PyErr_SetString(PyExc_TypeError, "address must be a (host: str, port: int, ...) tuple");
        return NULL;
    }
    PyObject *host = PyTuple_GET_ITEM(address, 0);
    long port = PyLong_AsLong(PyTuple_GET_ITEM(address, 1));
    if (port == -1 && PyErr_Occurred())
        return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return NULL;
    }
    const char *host_utf8 = PyUnicode_AsUTF8(host);
    if (host_utf8 == NULL)
        return NULL;
    struct addrinfo hints, *resolved = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof(service), "%ld", port);
    int gai = getaddrinfo(host_utf8, service, &hints, &resolved);
    if (gai != 0 || resolved == NULL) {
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s (%s)", host_utf8, gai_strerror(gai));
        return NULL;
    }
    if (resolved->ai_addrlen > sizeof(self->sa)) {
        freeaddrinfo(resolved);
        PyErr_SetString(PyExc_ValueError, "address too long");
        return NULL;
    }
    PyObject *fd_object = PyObject_CallMethodNoArgs(sock, str_fileno);
    if (fd_object == NULL) {
        freeaddrinfo(resolved);
        return NULL;
    }
    long fd = PyLong_AsLong(fd_object);
    Py_DECREF(fd_object);
    if (fd < 0) {
        freeaddrinfo(resolved);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "socket is closed");
        return NULL;
    }
    int domain = 0;
    socklen_t domain_len = sizeof(domain);
    if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_len) < 0 || domain != resolved->ai_family) {
        freeaddrinfo(resolved);
        PyErr_SetString(PyExc_ValueError, "address family does not match the socket");
        return NULL;
    }
    memcpy(&self->sa, resolved->ai_addr, resolved->ai_addrlen);
    self->salen = resolved->ai_addrlen;
    freeaddrinfo(resolved);
    self->fd = (int)fd;
    self->function = (srtp_function)f;
    self->context = c;
    self->limit = limit;
#define KEEP(field, value) (Py_INCREF(value), self->field = (value))
    KEEP(keepalive, keepalive);
    KEEP(check, check);
    KEEP(sock, sock);
    KEEP(address, address);
    KEEP(queue, queue);
    KEEP(buffered, buffered);
    KEEP(guards, guards);
    KEEP(items, items);
#undef KEEP
    self->configured = 1;
    Py_RETURN_NONE;
}

static PyObject *
Sender_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Sender_drop((Sender *)op);
    Py_RETURN_NONE;
}

static PyObject *
Sender_get_configured(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((Sender *)op)->configured);
}

static PyObject *
Sender_get_native_packets(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(((Sender *)op)->native_packets);
}

static int
Sender_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Sender *self = (Sender *)op;
    static char *kwlist[] = {"fallback", "sequence", NULL};
    PyObject *fallback, *sequence = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$O", kwlist, &fallback, &sequence))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    if (sequence != Py_None && !PyObject_TypeCheck(sequence, &TSeqType)) {
        PyErr_SetString(PyExc_TypeError, "sequence must be a TransportSequence or None");
        return -1;
    }
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->sequence, sequence == Py_None ? NULL : Py_NewRef(sequence));
    Sender_drop(self);
    return 0;
}

static PyObject *
Sender_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Sender *self = (Sender *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = Sender_vectorcall;
        self->fd = -1;
    }
    return (PyObject *)self;
}

static PyObject *
Sender_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    if (((Sender *)op)->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SrtpSender is not initialised");
        return NULL;
    }
    return PyVectorcall_Call(op, args, kwargs);
}

static int
Sender_traverse(PyObject *op, visitproc visit, void *arg)
{
    Sender *self = (Sender *)op;
    Py_VISIT(self->fallback);
    Py_VISIT(self->sequence);
    Py_VISIT(self->keepalive);
    Py_VISIT(self->check);
    Py_VISIT(self->sock);
    Py_VISIT(self->address);
    Py_VISIT(self->queue);
    Py_VISIT(self->buffered);
    Py_VISIT(self->guards);
    Py_VISIT(self->items);
    return 0;
}

static int
Sender_clear(PyObject *op)
{
    Sender *self = (Sender *)op;
    Sender_drop(self);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->sequence);
    return 0;
}

static PyMethodDef Sender_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Sender_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(*, function, context, keepalive, limit, check, sock, address, queue, buffered, guards, items)"},
    {"reset", Sender_reset, METH_NOARGS, "Forget the fast path: every call goes to the fallback."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sender_getset[] = {
    {"configured", Sender_get_configured, NULL, "True once configure() succeeded (until reset())", NULL},
    {"native_packets", Sender_get_native_packets, NULL, "packets sent by the C path", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.SrtpSender",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "SrtpSender(fallback, *, sequence=None): callable(data: bytes) -> bool; SRTP protect + sendto in C "
              "once configured (stamping `sequence`'s transport-wide sequence number)",
    .tp_vectorcall_offset = offsetof(Sender, vectorcall),
    .tp_call = Sender_call,
    .tp_new = Sender_new,
    .tp_init = Sender_init,
    .tp_traverse = Sender_traverse,
    .tp_clear = Sender_clear,
    .tp_dealloc = final_gc_dealloc,
    .tp_methods = Sender_methods,
    .tp_getset = Sender_getset,
};

/* ------------------------------------------------------------------------ */
/* DownstreamCore + Fanout                                                   */
/* ------------------------------------------------------------------------ */

/*
 * DownstreamCore: base class of media_server.forwarder.Downstream when this
 * module is loaded. It only stores the fields the forwarding hot path
 * touches (Python code reads and writes them as ordinary attributes); the
 * Python subclass keeps all the behaviour.
 *
 * Fanout(downstream_type, history_mask, sr_batch): the steady-state part of
 * Downstream.forward for every downstream of one publisher packet, in one
 * call:
 *
 *   fanout(downstreams, key, marker, seq, ts, payload, keyframe, clock_rate, now, make_ext, audio_level)
 *
 * For each downstream, in order: its header-extension block is taken from a
 * per-call cache keyed by `d.ext_key` (built by make_ext(ext_key,
 * audio_level) on a miss, as Forwarder.on_rtp does). A downstream in the
 * steady state (exact type `downstream_type`, ready, payload type known for
 * `key`, no rebase pending, not thinning; VP8 picture-ID deltas are applied
 * here) gets the rewritten packet built, stored in its NACK history, sent
 * with d.send, and its counters / last_* / SR batching updated exactly as
 * Downstream.forward does. Any other downstream gets
 * d.forward(key, marker, seq, ts, ext, payload, keyframe, clock_rate, now):
 * the Python method stays the reference, and every rare state (rebase,
 * keyframe gating, thinning, unknown codec, not ready) is handled there.
 */

typedef struct {
    PyObject_HEAD
    PyObject *ready;        /* bool */
    PyObject *needs_rebase; /* bool */
    PyObject *thinning;     /* bool (_thinning) */
    PyObject *vp8_deltas;   /* (picture ID delta, TL0PICIDX delta) | None */
    PyObject *pt_by_codec;  /* dict[str, int] */
    PyObject *ext_key;      /* tuple */
    PyObject *history_seq;  /* list[int] */
    PyObject *history;      /* list[bytes] */
    PyObject *send;         /* callable(bytes) -> bool */
    PyObject *on_sent;      /* callable(ts, octets, packets) | None */
    PyObject *last_time;    /* float */
    PyObject *waiting_keyframe, *temporal_up; /* bool: the forwarder looks for a keyframe for this downstream */
    /* ints (objects, not C integers: the Python path then reads and writes them at slot speed) */
    PyObject *seq_offset, *ts_offset, *ssrc, *last_seq, *last_ts;
    PyObject *packets_sent, *packets_dropped, *unreported_octets, *unreported_packets;
} Core;

#define CORE_OBJECTS(X)                                                                                                \
    X(ready) X(needs_rebase) X(thinning) X(vp8_deltas) X(pt_by_codec) X(ext_key) X(history_seq) X(history) X(send)      \
        X(on_sent) X(last_time) X(waiting_keyframe) X(temporal_up) X(seq_offset) X(ts_offset) X(ssrc) X(last_seq) X(last_ts) X(packets_sent)             \
            X(packets_dropped) X(unreported_octets) X(unreported_packets)

static int
Core_traverse(PyObject *op, visitproc visit, void *arg)
{
    Core *self = (Core *)op;
#define VISIT(f) Py_VISIT(self->f);
    CORE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int
Core_clear(PyObject *op)
{
    Core *self = (Core *)op;
#define CLEAR(f) Py_CLEAR(self->f);
    CORE_OBJECTS(CLEAR)
#undef CLEAR
    return 0;
}

static void
Core_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    Core_clear(op);
    type->tp_free(op);
}

#define OBJ_MEMBER(name, field) {name, T_OBJECT_EX, offsetof(Core, field), 0, NULL}
#define INT_MEMBER(name, field) OBJ_MEMBER(name, field)
static PyMemberDef Core_members[] = {
    OBJ_MEMBER("ready", ready),
    OBJ_MEMBER("needs_rebase", needs_rebase),
    OBJ_MEMBER("_thinning", thinning),
    OBJ_MEMBER("vp8_deltas", vp8_deltas),
    OBJ_MEMBER("pt_by_codec", pt_by_codec),
    OBJ_MEMBER("ext_key", ext_key),
    OBJ_MEMBER("history_seq", history_seq),
    OBJ_MEMBER("history", history),
    OBJ_MEMBER("send", send),
    OBJ_MEMBER("on_sent", on_sent),
    OBJ_MEMBER("last_time", last_time),
    OBJ_MEMBER("waiting_keyframe", waiting_keyframe),
    OBJ_MEMBER("temporal_up", temporal_up),
    INT_MEMBER("seq_offset", seq_offset),
    INT_MEMBER("ts_offset", ts_offset),
    INT_MEMBER("ssrc", ssrc),
    INT_MEMBER("last_seq", last_seq),
    INT_MEMBER("last_ts", last_ts),
    INT_MEMBER("packets_sent", packets_sent),
    INT_MEMBER("packets_dropped", packets_dropped),
    INT_MEMBER("_unreported_octets", unreported_octets),
    INT_MEMBER("_unreported_packets", unreported_packets),
    {NULL, 0, 0, 0, NULL},
};
#undef OBJ_MEMBER
#undef INT_MEMBER

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.DownstreamCore",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Storage of the forwarding hot path's Downstream fields (base class of forwarder.Downstream)",
    .tp_new = PyType_GenericNew,
    .tp_traverse = Core_traverse,
    .tp_clear = Core_clear,
    .tp_dealloc = Core_dealloc,
    .tp_members = Core_members,
};

static PyObject *str_forward;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *downstream_type;
    unsigned long history_mask;
    long long sr_batch;
    unsigned long long native_packets;
} Fanout;

/* An exact int in [0, limit], or -1 (missing, another type, out of range: the caller falls back). */
static long long
int_field(PyObject *value, long long limit)
{
    if (value == NULL || !PyLong_CheckExact(value))
        return -1;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || v < 0 || v > limit)
        return -1;
    return v;
}

/* *field += delta for an int field; -1 with an exception set. */
static int
add_to_field(PyObject **field, long long delta)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(*field, &overflow);
    PyObject *sum;
    if (!overflow && v != -1 && v < LLONG_MAX - delta) {
        sum = PyLong_FromLongLong(v + delta);
    } else {
        if (PyErr_Occurred())
            return -1;
        PyObject *d = PyLong_FromLongLong(delta);
        if (d == NULL)
            return -1;
        sum = PyNumber_Add(*field, d);
        Py_DECREF(d);
    }
    if (sum == NULL)
        return -1;
    Py_XSETREF(*field, sum);
    return 0;
}

/* Where the VP8 picture ID / TL0PICIDX bytes are (as rtputil.vp8_descriptor_ids reads them). */
static void
vp8_rewrite(unsigned char *p, Py_ssize_t n, long long pid_delta, long long tl0_delta)
{
    if (n < 3 || !(p[0] & 0x80))
        return;
    unsigned char x = p[1];
    Py_ssize_t i = 2;
    if (x & 0x80) {
        if (p[2] & 0x80) {
            if (n < 4)
                return;
            long long moved = ((((long long)(p[2] & 0x7F) << 8) | p[3]) + pid_delta) & 0x7FFF;
            p[2] = (unsigned char)(0x80 | (moved >> 8));
            p[3] = (unsigned char)(moved & 0xFF);
            i = 4;
        } else {
            p[2] = (unsigned char)((p[2] + pid_delta) & 0x7F);
            i = 3;
        }
    }
    if ((x & 0x40) && n > i)
        p[i] = (unsigned char)((p[i] + tl0_delta) & 0xFF);
}

/* 1: sent through the steady-state path; 0: not steady (the caller runs d.forward); -1: exception. */
static int
Fanout_steady(Fanout *self, Core *d, PyObject *key, unsigned marker, unsigned long seq, unsigned long ts,
              PyObject *ext, PyObject *payload, PyObject *now)
{
    if (d->ready != Py_True || d->needs_rebase != Py_False || d->thinning != Py_False || d->vp8_deltas == NULL ||
        d->pt_by_codec == NULL || !PyDict_CheckExact(d->pt_by_codec) || d->history_seq == NULL ||
        d->history == NULL || !PyList_CheckExact(d->history_seq) || !PyList_CheckExact(d->history) ||
        PyList_GET_SIZE(d->history_seq) <= (Py_ssize_t)self->history_mask ||
        PyList_GET_SIZE(d->history) <= (Py_ssize_t)self->history_mask || d->send == NULL || d->on_sent == NULL ||
        d->packets_sent == NULL || d->packets_dropped == NULL || d->unreported_octets == NULL ||
        d->unreported_packets == NULL)
        return 0;
    long long seq_offset = int_field(d->seq_offset, 0xFFFF), ts_offset = int_field(d->ts_offset, 0xFFFFFFFFLL);
    long long ssrc_value = int_field(d->ssrc, 0xFFFFFFFFLL), last_seq = int_field(d->last_seq, 0xFFFF);
    long long unreported_octets = int_field(d->unreported_octets, LLONG_MAX / 2);
    long long unreported_packets = int_field(d->unreported_packets, LLONG_MAX / 2);
    if (seq_offset < 0 || ts_offset < 0 || ssrc_value < 0 || last_seq < 0 || unreported_octets < 0 ||
        unreported_packets < 0 || !PyLong_CheckExact(d->packets_sent) || !PyLong_CheckExact(d->packets_dropped))
        return 0;
    long long pid_delta = 0, tl0_delta = 0;
    int rewrite = d->vp8_deltas != Py_None;
    if (rewrite) {
        PyObject *deltas = d->vp8_deltas;
        if (!PyTuple_CheckExact(deltas) || PyTuple_GET_SIZE(deltas) != 2 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(deltas, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(deltas, 1)))
            return 0;
        int o1, o2;
        pid_delta = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(deltas, 0), &o1);
        tl0_delta = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(deltas, 1), &o2);
        if (o1 || o2)
            return 0;
    }
    PyObject *pt_obj = PyDict_GetItemWithError(d->pt_by_codec, key);
    if (pt_obj == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(pt_obj))
        return 0;
    long pt = PyLong_AsLong(pt_obj);
    if (pt < 0 || pt > 127)
        return PyErr_Occurred() ? -1 : 0;

    /* Header + extensions + (rewritten) payload: Downstream.forward's `data`. */
    Py_ssize_t ext_len = PyBytes_GET_SIZE(ext), payload_len = PyBytes_GET_SIZE(payload);
    unsigned long oseq = (seq + (unsigned long)seq_offset) & 0xFFFF;
    unsigned long ots = (unsigned long)((ts + (unsigned long long)ts_offset) & 0xFFFFFFFFULL);
    unsigned long long ssrc = (unsigned long long)ssrc_value;
    PyObject *data = PyBytes_FromStringAndSize(NULL, 12 + ext_len + payload_len);
    if (data == NULL)
        return -1;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    out[0] = ext_len ? 0x90 : 0x80;
    out[1] = (unsigned char)((marker << 7) | (unsigned)pt);
    out[2] = (unsigned char)(oseq >> 8);
    out[3] = (unsigned char)oseq;
    out[4] = (unsigned char)(ots >> 24);
    out[5] = (unsigned char)(ots >> 16);
    out[6] = (unsigned char)(ots >> 8);
    out[7] = (unsigned char)ots;
    out[8] = (unsigned char)(ssrc >> 24);
    out[9] = (unsigned char)(ssrc >> 16);
    out[10] = (unsigned char)(ssrc >> 8);
    out[11] = (unsigned char)ssrc;
    memcpy(out + 12, PyBytes_AS_STRING(ext), (size_t)ext_len);
    unsigned char *body = out + 12 + ext_len;
    memcpy(body, PyBytes_AS_STRING(payload), (size_t)payload_len);
    if (rewrite)
        vp8_rewrite(body, payload_len, pid_delta, tl0_delta);

    /* NACK history slot, then send (the history keeps the packet whatever send says, as in Python). */
    PyObject *oseq_obj = PyLong_FromUnsignedLong(oseq);
    if (oseq_obj == NULL) {
        Py_DECREF(data);
        return -1;
    }
    Py_ssize_t slot = (Py_ssize_t)(oseq & self->history_mask);
    PyList_SetItem(d->history_seq, slot, Py_NewRef(oseq_obj));
    PyList_SetItem(d->history, slot, Py_NewRef(data));
    PyObject *send = Py_NewRef(d->send); /* the call may replace d.send */
    PyObject *sent = PyObject_CallOneArg(send, data);
    Py_DECREF(send);
    Py_DECREF(data);
    int ok = sent == NULL ? -1 : PyObject_IsTrue(sent);
    Py_XDECREF(sent);
    /* self.packets_sent += 1 (or packets_dropped: not connected yet, or the subscriber is not draining) */
    if (ok < 0 || add_to_field(ok ? &d->packets_sent : &d->packets_dropped, 1) < 0) {
        Py_DECREF(oseq_obj);
        return -1;
    }
    PyObject *ots_obj = PyLong_FromUnsignedLong(ots);
    if (ots_obj == NULL) {
        Py_DECREF(oseq_obj);
        return -1;
    }
    if (((oseq - (unsigned long)last_seq) & 0xFFFF) < 0x8000) {
        Py_XSETREF(d->last_seq, Py_NewRef(oseq_obj));
        Py_XSETREF(d->last_ts, Py_NewRef(ots_obj));
        Py_XSETREF(d->last_time, Py_NewRef(now));
    }
    Py_DECREF(oseq_obj);
    /* SR bookkeeping is batched (see Downstream.forward). */
    unreported_octets += payload_len;
    unreported_packets += 1;
    PyObject *octets = PyLong_FromLongLong(unreported_octets), *packets = PyLong_FromLongLong(unreported_packets);
    if (octets == NULL || packets == NULL) {
        Py_XDECREF(octets);
        Py_XDECREF(packets);
        Py_DECREF(ots_obj);
        return -1;
    }
    Py_XSETREF(d->unreported_octets, octets);
    Py_XSETREF(d->unreported_packets, packets);
    if (unreported_packets >= self->sr_batch && d->on_sent != Py_None) {
        PyObject *on_sent = Py_NewRef(d->on_sent);
        PyObject *call[3] = {ots_obj, octets, packets};
        Py_INCREF(octets);
        Py_INCREF(packets);
        PyObject *r = PyObject_Vectorcall(on_sent, call, 3, NULL);
        Py_DECREF(octets);
        Py_DECREF(packets);
        Py_DECREF(on_sent);
        if (r == NULL) {
            Py_DECREF(ots_obj);
            return -1;
        }
        Py_DECREF(r);
        PyObject *zero = PyLong_FromLong(0);
        Py_XSETREF(d->unreported_octets, Py_NewRef(zero));
        Py_XSETREF(d->unreported_packets, zero);
    }
    Py_DECREF(ots_obj);
    self->native_packets++;
    return 1;
}

#define EXT_CACHE 4
#define NTP_EPOCH 2208988800.0

/* What the C extension-block builder needs (Forwarder._extensions' inputs), for the receive path. */
typedef struct {
    int level; /* RFC 6464 level 0..127, or -1: the packet carries none */
    int vad;
    int is_video;
    double wall;     /* time.time() for abs-send-time */
    PyObject *owner; /* the Forwarder: owner._extensions(ids, audio_level) for IDs the C builder does not take */
} ExtSpec;

static PyObject *str_extensions;

/* Forwarder._extensions(ids, audio_level) in C: RFC 8285 one-byte elements, padded (rtputil.one_byte_extensions). */
static PyObject *
build_ext(PyObject *ids, const ExtSpec *spec)
{
    /* (audio level, abs-send-time[, transport-wide-cc]) IDs; the 2-tuple is an older forwarder.py's key */
    long a = -1, b = -1, c = -1;
    Py_ssize_t size = PyTuple_CheckExact(ids) ? PyTuple_GET_SIZE(ids) : 0;
    if ((size == 2 || size == 3) && PyLong_CheckExact(PyTuple_GET_ITEM(ids, 0)) &&
        PyLong_CheckExact(PyTuple_GET_ITEM(ids, 1)) && (size == 2 || PyLong_CheckExact(PyTuple_GET_ITEM(ids, 2)))) {
        a = PyLong_AsLong(PyTuple_GET_ITEM(ids, 0));
        b = PyLong_AsLong(PyTuple_GET_ITEM(ids, 1));
        c = size == 3 ? PyLong_AsLong(PyTuple_GET_ITEM(ids, 2)) : 0;
        if (PyErr_Occurred())
            PyErr_Clear(), a = b = c = -1;
    }
    if (a < 0 || a > 14 || b < 0 || b > 14 || c < 0 || c > 14) {
        PyObject *level = spec->level < 0 ? Py_NewRef(Py_None)
                                          : Py_BuildValue("(Oi)", spec->vad ? Py_True : Py_False, spec->level);
        if (level == NULL)
            return NULL;
        PyObject *r = PyObject_CallMethodObjArgs(spec->owner, str_extensions, ids, level, NULL);
        Py_DECREF(level);
        return r;
    }
    unsigned char out[20];
    int n = 4;
    if (c) { /* the transport-wide sequence number's slot, first (filled in by the send path) */
        out[n++] = (unsigned char)((c << 4) | 1);
        out[n++] = 0;
        out[n++] = 0;
    }
    if (a && spec->level >= 0) {
        out[n++] = (unsigned char)(a << 4);
        out[n++] = (unsigned char)((spec->vad ? 0x80 : 0) | (spec->level & 0x7F));
    }
    if (b && spec->is_video) {
        long long ast = (long long)((spec->wall + NTP_EPOCH) * 262144.0) & 0xFFFFFF;
        out[n++] = (unsigned char)((b << 4) | 2);
        out[n++] = (unsigned char)(ast >> 16);
        out[n++] = (unsigned char)(ast >> 8);
        out[n++] = (unsigned char)ast;
    }
    if (n == 4)
        return PyBytes_FromStringAndSize(NULL, 0);
    while (n % 4)
        out[n++] = 0;
    out[0] = 0xBE;
    out[1] = 0xDE;
    out[2] = (unsigned char)(((n - 4) / 4) >> 8);
    out[3] = (unsigned char)((n - 4) / 4);
    return PyBytes_FromStringAndSize((const char *)out, n);
}

/* The fan-out of one packet. `args` as Fanout's call (args[9] = make_ext, args[10] = audio_level); with
   make_ext NULL the blocks come from build_ext(spec). */
static PyObject *
fanout_run(Fanout *self, PyObject *const *args, const ExtSpec *spec)
{
    PyObject *downstreams = args[0], *key = args[1], *payload = args[5], *make_ext = args[9];
    if (!PyList_CheckExact(downstreams) || !PyBytes_CheckExact(payload)) {
        PyErr_SetString(PyExc_TypeError, "downstreams must be a list and payload bytes");
        return NULL;
    }
    unsigned long marker = PyLong_AsUnsignedLong(args[2]);
    unsigned long seq = PyLong_AsUnsignedLong(args[3]);
    unsigned long ts = PyLong_AsUnsignedLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (marker > 1 || seq > 0xFFFF || ts > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "marker, seq or ts out of range");
        return NULL;
    }
    /* ext_key -> extension block, built at most once per distinct key per packet (as in Forwarder.on_rtp). */
    PyObject *cache_keys[EXT_CACHE], *cache_exts[EXT_CACHE];
    int cached = 0;
    PyObject *overflow = NULL; /* a dict when more than EXT_CACHE distinct keys show up */
    Py_INCREF(downstreams); /* a send may replace the forwarder's list; we iterate this one, like Python */
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(downstreams); i++) {
        PyObject *d = Py_NewRef(PyList_GET_ITEM(downstreams, i));
        int exact = (PyObject *)Py_TYPE(d) == self->downstream_type;
        PyObject *ids = exact && ((Core *)d)->ext_key != NULL ? Py_NewRef(((Core *)d)->ext_key)
                                                              : PyObject_GetAttrString(d, "ext_key");
        PyObject *ext = NULL;
        int rc = -1;
        if (ids == NULL)
            goto next;
        for (int k = 0; k < cached && ext == NULL; k++) {
            int same = cache_keys[k] == ids ? 1 : PyObject_RichCompareBool(cache_keys[k], ids, Py_EQ);
            if (same < 0)
                goto next;
            if (same)
                ext = Py_NewRef(cache_exts[k]);
        }
        if (ext == NULL && overflow != NULL) {
            ext = PyDict_GetItemWithError(overflow, ids);
            if (ext == NULL && PyErr_Occurred())
                goto next;
            Py_XINCREF(ext);
        }
        if (ext == NULL) {
            ext = make_ext != NULL ? PyObject_CallFunctionObjArgs(make_ext, ids, args[10], NULL) : build_ext(ids, spec);
            if (ext == NULL)
                goto next;
            if (cached < EXT_CACHE) {
                cache_keys[cached] = Py_NewRef(ids);
                cache_exts[cached] = Py_NewRef(ext);
                cached++;
            } else {
                if (overflow == NULL && (overflow = PyDict_New()) == NULL)
                    goto next;
                if (PyDict_SetItem(overflow, ids, ext) < 0)
                    goto next;
            }
        }
        rc = exact && PyBytes_CheckExact(ext)
                 ? Fanout_steady(self, (Core *)d, key, (unsigned)marker, seq, ts, ext, payload, args[8])
                 : 0;
        if (rc == 0) {
            PyObject *call[10] = {d, key, args[2], args[3], args[4], ext, payload, args[6], args[7], args[8]};
            PyObject *r = PyObject_VectorcallMethod(str_forward, call, 10 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            rc = r == NULL ? -1 : 1;
            Py_XDECREF(r);
        }
    next:
        Py_XDECREF(ext);
        Py_XDECREF(ids);
        Py_DECREF(d);
        if (rc < 0)
            goto out;
    }
    result = Py_NewRef(Py_None);
out:
    for (int k = 0; k < cached; k++) {
        Py_DECREF(cache_keys[k]);
        Py_DECREF(cache_exts[k]);
    }
    Py_XDECREF(overflow);
    Py_DECREF(downstreams);
    return result;
}

static PyObject *
Fanout_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 11 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError,
                        "Fanout takes 11 positional arguments: downstreams, key, marker, seq, ts, payload, keyframe, "
                        "clock_rate, now, make_ext, audio_level");
        return NULL;
    }
    return fanout_run((Fanout *)op, args, NULL);
}

static int
Fanout_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Fanout *self = (Fanout *)op;
    static char *kwlist[] = {"downstream_type", "history_mask", "sr_batch", NULL};
    PyObject *type;
    unsigned long mask;
    long long sr_batch;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!kL", kwlist, &PyType_Type, &type, &mask, &sr_batch))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)type, &CoreType)) {
        PyErr_SetString(PyExc_TypeError, "downstream_type must be a subclass of DownstreamCore");
        return -1;
    }
    Py_INCREF(type);
    Py_XSETREF(self->downstream_type, type);
    self->history_mask = mask;
    self->sr_batch = sr_batch;
    self->vectorcall = Fanout_vectorcall;
    return 0;
}

static PyObject *
Fanout_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Fanout *self = (Fanout *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = Fanout_vectorcall;
    return (PyObject *)self;
}

static PyObject *
Fanout_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    if (((Fanout *)op)->downstream_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Fanout is not initialised");
        return NULL;
    }
    return PyVectorcall_Call(op, args, kwargs);
}

static int
Fanout_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(((Fanout *)op)->downstream_type);
    return 0;
}

static int
Fanout_clear(PyObject *op)
{
    Py_CLEAR(((Fanout *)op)->downstream_type);
    return 0;
}

static PyObject *
Fanout_get_native_packets(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(((Fanout *)op)->native_packets);
}

static PyGetSetDef Fanout_getset[] = {
    {"native_packets", Fanout_get_native_packets, NULL, "copies built and sent by the C steady-state path", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FanoutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.Fanout",
    .tp_basicsize = sizeof(Fanout),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Fanout(downstream_type, history_mask, sr_batch): callable(downstreams, key, marker, seq, ts, payload, "
              "keyframe, clock_rate, now, make_ext, audio_level) -> None",
    .tp_vectorcall_offset = offsetof(Fanout, vectorcall),
    .tp_call = Fanout_call,
    .tp_new = Fanout_new,
    .tp_init = Fanout_init,
    .tp_traverse = Fanout_traverse,
    .tp_clear = Fanout_clear,
    .tp_dealloc = final_gc_dealloc,
    .tp_getset = Fanout_getset,
};

/* ------------------------------------------------------------------------ */
/* RtpReceive                                                                */
/* ------------------------------------------------------------------------ */

/*
 * RtpReceive(): the steady state of a publisher's SRTP RTP datagram, from the
 * datagram callback to the kernel, in one call (aiortc_hooks.install_fast_receive
 * and ForwardingReceiver.handle_rtp + Forwarder.on_rtp are the reference):
 *
 *   rx(data) -> True | False | bytes
 *
 * False: nothing done (not configured, a guard fails, not SRTP RTP): the
 * caller's Python path handles the datagram. Otherwise the transport's
 * receive counters are incremented and the datagram unprotected; True: done
 * (forwarded, or dropped because unprotect failed, as the Python path drops
 * it); bytes: the plaintext RTP packet, which the caller's Python path
 * parses, routes and handles (a packet outside the steady state: new or
 * unregistered SSRC, RTX, CSRCs, padding, an unusual extension, a forwarder
 * with sinks or a pending switch, a downstream waiting for a keyframe, a
 * video forwarder's every 64th packet, ...). The decision is taken before any
 * state is changed, so each packet is handled entirely by one path.
 *
 * rx.streams (dict, filled by ForwardingReceiver) maps a media SSRC to
 *   (receiver, payload_type, vars(hook), vars(stats), vars(nack) | None, vars(forwarder), forwarder,
 *    estimate | None, send_nack, guard_dict, guard_key, guard_value)
 * and rx.configure(...) gives the SRTP session, the guards ((dict, key,
 * expected) items that must hold by identity), the transport's
 * counter dict and the RTP router's tables; rx.set_extension_ids(ids) the
 * header extension IDs of the transport (aiortc's HeaderExtensionsMap order:
 * mid, repaired RID, RID, abs-send-time, toffset, audio level, transport-cc).
 * The state that Python reads stays in the Python objects (stats, NACK
 * generator, ForwardingReceiver, Forwarder: their instance dicts are written
 * here), so aiortc's RTCP reports and the media server see the same values.
 */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int configured;
    srtp_function function;
    void *context;
    Py_ssize_t limit;
    PyObject *keepalive, *check, *guards;
    PyObject *counters, *packets_key, *bytes_key;
    PyObject *ssrc_table, *pt_table;
    PyObject *streams;
    PyObject *wall_clock, *monotonic_clock;
    int ext_ids[7];
    unsigned long long native_packets;
    unsigned char buffer[BUFFER_SIZE];
} Receive;

enum { EXT_MID, EXT_RRID, EXT_RID, EXT_ABS, EXT_TOFFSET, EXT_LEVEL, EXT_TCC };

static PyObject *s_packets, *s_media_ssrc, *s_base_seq, *s_max_seq, *s_cycles, *s_packets_received, *s_clockrate,
    *s_jitter_q4, *s_last_arrival, *s_last_timestamp, *s_missing, *s_packets_in, *s_octets_in, *s_keys, *s_sinks,
    *s_pending, *s_downstreams, *s_audible, *s_on_audio_level, *s_kind, *s_fanout, *s_probe, *s_take_pending,
    *s_video, *s_pli_unanswered;

static int
uint16_gt(long a, long b)
{
    return (a < b && b - a > 0x8000) || (a > b && a - b < 0x8000);
}

static int
clock_now(PyObject *clock, clockid_t id, double *out)
{
    if (clock != NULL && clock != Py_None) {
        PyObject *r = PyObject_CallNoArgs(clock);
        if (r == NULL)
            return -1;
        double v = PyFloat_AsDouble(r);
        Py_DECREF(r);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        *out = v;
        return 0;
    }
    struct timespec t;
    clock_gettime(id, &t);
    /* as CPython's time.time() / time.monotonic(): nanoseconds as a double, / 1e9 */
    long long ns = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
    *out = ns % 1000000000LL == 0 ? (double)(ns / 1000000000LL) : (double)ns / 1e9;
    return 0;
}

/* An exact int value of d[key] (1) or 0 when missing / not an int / out of long long. -1: exception. */
static int
dict_ll(PyObject *d, PyObject *key, long long *out)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    return !overflow;
}

static int
dict_set_ll(PyObject *d, PyObject *key, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* d[key] += delta for an int that may have grown past long long (counters). */
static int
dict_add(PyObject *d, PyObject *key, long long delta)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    Py_INCREF(v);
    PyObject *field = v;
    int rc = add_to_field(&field, delta);
    if (rc == 0)
        rc = PyDict_SetItem(d, key, field);
    Py_DECREF(field);
    return rc;
}

/* Every (dict, key, expected): dict[key] is expected. 1 / 0 / -1 (exception). */
static int
items_hold(PyObject *items)
{
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *guard = PyTuple_GET_ITEM(items, i);
        PyObject *value = PyDict_GetItemWithError(PyTuple_GET_ITEM(guard, 0), PyTuple_GET_ITEM(guard, 1));
        if (value == NULL && PyErr_Occurred())
            return -1;
        if (value != PyTuple_GET_ITEM(guard, 2))
            return 0;
    }
    return 1;
}

/* 1 if the forwarder looks for a keyframe for d (waiting_keyframe or temporal_up), 0 if not, -1 exception. */
static int
wants_keyframe(PyObject *d)
{
    if (PyObject_TypeCheck(d, &CoreType)) {
        Core *c = (Core *)d;
        if (c->waiting_keyframe != NULL && c->temporal_up != NULL)
            return (PyObject_IsTrue(c->waiting_keyframe) || PyObject_IsTrue(c->temporal_up)) ? 1 : 0;
    }
    PyObject *v = PyObject_GetAttrString(d, "waiting_keyframe");
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (t)
        return t;
    v = PyObject_GetAttrString(d, "temporal_up");
    if (v == NULL)
        return -1;
    t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

#define ENTRY_SIZE 12
#define FALLBACK 0

/* The packet in self->buffer[0:n]: 1 handled, 0 not in the steady state (nothing changed), -1 exception. */
static int
Receive_process(Receive *self, Py_ssize_t n)
{
    const unsigned char *p = self->buffer;
    if (n < 12 || (p[0] >> 6) != 2 || (p[0] & 0x20) || (p[0] & 0x0F))
        return FALLBACK; /* version, padding, CSRCs: aiortc's parser */
    unsigned marker = p[1] >> 7, pt = p[1] & 0x7F;
    unsigned long seq = ((unsigned long)p[2] << 8) | p[3];
    unsigned long ts = ((unsigned long)p[4] << 24) | ((unsigned long)p[5] << 16) | ((unsigned long)p[6] << 8) | p[7];
    unsigned long ssrc = ((unsigned long)p[8] << 24) | ((unsigned long)p[9] << 16) | ((unsigned long)p[10] << 8) | p[11];
    Py_ssize_t pos = 12;
    int level = -1, vad = 0;
    long long abs_send_time = -1;
    if (p[0] & 0x10) {
        if (n < pos + 4)
            return FALLBACK;
        unsigned profile = ((unsigned)p[pos] << 8) | p[pos + 1];
        Py_ssize_t end = pos + 4 + 4 * (((Py_ssize_t)p[pos + 2] << 8) | p[pos + 3]);
        if (profile != 0xBEDE || end > n)
            return FALLBACK;
        pos += 4;
        while (pos < end) {
            if (p[pos] == 0) {
                pos++;
                continue;
            }
            int id = p[pos] >> 4, len = (p[pos] & 0x0F) + 1;
            pos++;
            if (pos + len > end)
                return FALLBACK;
            const unsigned char *v = p + pos;
            pos += len;
            /* aiortc's HeaderExtensionsMap.get: first matching ID wins; a value it cannot decode is its business */
            if (id == self->ext_ids[EXT_MID] || id == self->ext_ids[EXT_RRID] || id == self->ext_ids[EXT_RID]) {
                for (int k = 0; k < len; k++)
                    if (v[k] > 0x7F)
                        return FALLBACK;
            } else if (id == self->ext_ids[EXT_ABS]) {
                if (len != 3)
                    return FALLBACK;
                abs_send_time = ((long long)v[0] << 16) | (v[1] << 8) | v[2];
            } else if (id == self->ext_ids[EXT_TOFFSET]) {
                if (len != 3)
                    return FALLBACK;
            } else if (id == self->ext_ids[EXT_LEVEL]) {
                if (len != 1)
                    return FALLBACK;
                vad = (v[0] & 0x80) != 0;
                level = v[0] & 0x7F;
            } else if (id == self->ext_ids[EXT_TCC]) {
                if (len != 2)
                    return FALLBACK;
            }
        }
        pos = end;
    }
    Py_ssize_t payload_len = n - pos;

    /* The registered stream and every condition of the steady state, before anything changes. */
    int rc = -1;
    PyObject *ssrc_obj = PyLong_FromUnsignedLong(ssrc), *pt_obj = NULL, *payload = NULL, *downstreams = NULL;
    PyObject *seq_obj = NULL, *ts_obj = NULL, *now_obj = NULL, *level_obj = NULL; /* level_obj: the marker */
    PyObject *info = NULL, *fanout = NULL; /* strong references once the packet is ours */
    if (ssrc_obj == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(self->streams, ssrc_obj);
    if (entry == NULL || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != ENTRY_SIZE) {
        rc = PyErr_Occurred() ? -1 : FALLBACK;
        goto done;
    }
    Py_INCREF(entry);
    PyObject *receiver = PyTuple_GET_ITEM(entry, 0), *hook = PyTuple_GET_ITEM(entry, 2),
             *stats = PyTuple_GET_ITEM(entry, 3), *nack = PyTuple_GET_ITEM(entry, 4), *fwd = PyTuple_GET_ITEM(entry, 5),
             *forwarder = PyTuple_GET_ITEM(entry, 6), *estimate = PyTuple_GET_ITEM(entry, 7),
             *send_nack = PyTuple_GET_ITEM(entry, 8);
    rc = FALLBACK;
    if (!PyLong_CheckExact(PyTuple_GET_ITEM(entry, 1)) || PyLong_AsLong(PyTuple_GET_ITEM(entry, 1)) != (long)pt ||
        !PyDict_CheckExact(hook) || !PyDict_CheckExact(stats) || !PyDict_CheckExact(fwd) ||
        (nack != Py_None && !PyDict_CheckExact(nack)) || !PyDict_CheckExact(PyTuple_GET_ITEM(entry, 9)))
        goto release;
    /* aiortc's RtpRouter.route_rtp: the SSRC's receiver, which must also be registered for the payload type */
    pt_obj = PyLong_FromUnsignedLong(pt);
    if (pt_obj == NULL)
        goto error;
    PyObject *routed = PyDict_GetItemWithError(self->ssrc_table, ssrc_obj);
    if (routed != receiver)
        goto check_error;
    PyObject *pt_receivers = PyDict_GetItemWithError(self->pt_table, pt_obj);
    if (pt_receivers == NULL || !PyAnySet_Check(pt_receivers))
        goto check_error;
    int in = PySet_Contains(pt_receivers, receiver);
    if (in <= 0) {
        rc = in < 0 ? -1 : FALLBACK;
        goto release;
    }
    PyObject *handler = PyDict_GetItemWithError(PyTuple_GET_ITEM(entry, 9), PyTuple_GET_ITEM(entry, 10));
    if (handler != PyTuple_GET_ITEM(entry, 11))
        goto check_error;
    /* StreamStatistics.add's inputs */
    long long max_seq, cycles, received, clockrate, jitter_q4, last_arrival, last_timestamp, nack_max = 0;
    int ok;
#define NEED(d, k, out)                                                                                                \
    if ((ok = dict_ll(d, k, out)) <= 0) {                                                                              \
        rc = ok < 0 ? -1 : FALLBACK;                                                                                   \
        goto release;                                                                                                  \
    }
    NEED(stats, s_max_seq, &max_seq)
    NEED(stats, s_cycles, &cycles)
    NEED(stats, s_packets_received, &received)
    NEED(stats, s_clockrate, &clockrate)
    NEED(stats, s_jitter_q4, &jitter_q4)
    NEED(stats, s_last_arrival, &last_arrival)
    NEED(stats, s_last_timestamp, &last_timestamp)
    long long dummy;
    NEED(stats, s_base_seq, &dummy)
    NEED(hook, s_packets, &dummy)
    PyObject *missing = NULL;
    if (nack != Py_None) {
        NEED(nack, s_max_seq, &nack_max)
        missing = PyDict_GetItemWithError(nack, s_missing);
        if (missing == NULL || !PySet_CheckExact(missing))
            goto check_error;
    }
    /* Forwarder.on_rtp's steady state */
    PyObject *info_b = NULL, *fanout_b = NULL, *on_audio_level = NULL; /* borrowed */
    int is_video = 0;
    long long packets_in = 0;
    if (payload_len > 0) {
        PyObject *sinks = PyDict_GetItemWithError(fwd, s_sinks), *pending = PyDict_GetItemWithError(fwd, s_pending);
        PyObject *keys = PyDict_GetItemWithError(fwd, s_keys), *kind = PyDict_GetItemWithError(fwd, s_kind);
        fanout_b = PyDict_GetItemWithError(fwd, s_fanout);
        on_audio_level = PyDict_GetItemWithError(fwd, s_on_audio_level);
        PyObject *ds = PyDict_GetItemWithError(fwd, s_downstreams);
        if (sinks == NULL || pending == NULL || keys == NULL || kind == NULL || fanout_b == NULL ||
            on_audio_level == NULL || ds == NULL || !PyList_CheckExact(sinks) || PyList_GET_SIZE(sinks) ||
            !PyList_CheckExact(pending) || PyList_GET_SIZE(pending) || !PyDict_CheckExact(keys) ||
            Py_TYPE(fanout_b) != &FanoutType || !PyList_CheckExact(ds) || !PyUnicode_Check(kind))
            goto check_error;
        NEED(fwd, s_packets_in, &packets_in)
        NEED(fwd, s_octets_in, &dummy)
        info_b = PyDict_GetItemWithError(keys, pt_obj);
        if (info_b == NULL || !PyTuple_CheckExact(info_b) || PyTuple_GET_SIZE(info_b) != 3 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(info_b, 1)) || !PyLong_CheckExact(PyTuple_GET_ITEM(info_b, 2)))
            goto check_error;
        is_video = PyUnicode_Compare(kind, s_video) == 0;
        if (is_video) {
            /* the temporal-layer sample, an audio-level callback or a keyframe search: Python */
            if (!((packets_in + 1) & 63) || on_audio_level != Py_None)
                goto release;
            /* a PLI is waiting for its keyframe: Python notices the keyframe (Forwarder.request_keyframe) */
            PyObject *unanswered = PyDict_GetItemWithError(fwd, s_pli_unanswered);
            if (unanswered == NULL && PyErr_Occurred())
                goto check_error;
            if (unanswered != NULL && unanswered != Py_False)
                goto release;
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ds); i++) {
                int w = wants_keyframe(PyList_GET_ITEM(ds, i));
                if (w) {
                    rc = w < 0 ? -1 : FALLBACK;
                    goto release;
                }
            }
        }
    }
#undef NEED
    info = Py_XNewRef(info_b); /* the callbacks below run Python code */
    fanout = Py_XNewRef(fanout_b);

    /* From here on the packet is ours: ForwardingReceiver.handle_rtp, then Forwarder.on_rtp. */
    double wall;
    if (clock_now(self->wall_clock, CLOCK_REALTIME, &wall) < 0)
        goto error;
    if (estimate != Py_None && abs_send_time >= 0) {
        PyObject *r = PyObject_CallFunction(estimate, "LLnO", abs_send_time, (long long)((wall + NTP_EPOCH) * 1000),
                                            payload_len, ssrc_obj);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
    }
    /* StreamStatistics.add */
    int in_order = uint16_gt((long)seq, (long)max_seq);
    received += 1;
    if (dict_set_ll(stats, s_packets_received, received) < 0)
        goto error;
    if (in_order) {
        long long arrival = (long long)(wall * (double)clockrate);
        if ((long long)seq < max_seq && dict_set_ll(stats, s_cycles, cycles + (1 << 16)) < 0)
            goto error;
        if (dict_set_ll(stats, s_max_seq, (long long)seq) < 0)
            goto error;
        if ((long long)ts != last_timestamp && received > 1) {
            long long diff = (arrival - last_arrival) - ((long long)ts - last_timestamp);
            if (diff < 0)
                diff = -diff;
            jitter_q4 += diff - ((jitter_q4 + 8) >> 4);
            if (dict_set_ll(stats, s_jitter_q4, jitter_q4) < 0)
                goto error;
        }
        if (dict_set_ll(stats, s_last_arrival, arrival) < 0 || dict_set_ll(stats, s_last_timestamp, (long long)ts) < 0)
            goto error;
    }
    /* media_ssrc, packets, NackGenerator.add */
    if (PyDict_SetItem(hook, s_media_ssrc, ssrc_obj) < 0 || dict_add(hook, s_packets, 1) < 0)
        goto error;
    int missed = 0;
    if (missing != NULL) {
        if (uint16_gt((long)seq, (long)nack_max)) {
            for (long s = (nack_max + 1) & 0xFFFF; uint16_gt((long)seq, s); s = (s + 1) & 0xFFFF) {
                PyObject *o = PyLong_FromLong(s);
                if (o == NULL || PySet_Add(missing, o) < 0) {
                    Py_XDECREF(o);
                    goto error;
                }
                Py_DECREF(o);
                missed = 1;
            }
            nack_max = (long long)seq;
            if (dict_set_ll(nack, s_max_seq, nack_max) < 0)
                goto error;
        } else {
            seq_obj = PyLong_FromUnsignedLong(seq);
            if (seq_obj == NULL || PySet_Discard(missing, seq_obj) < 0)
                goto error;
            Py_CLEAR(seq_obj);
        }
        if (PySet_GET_SIZE(missing)) { /* NackGenerator.truncate */
            long min_seq = (long)((nack_max - 128) & 0xFFFF);
            PyObject *copy = PySequence_List(missing);
            if (copy == NULL)
                goto error;
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy); i++) {
                PyObject *o = PyList_GET_ITEM(copy, i);
                long s = PyLong_AsLong(o);
                if (s == -1 && PyErr_Occurred()) {
                    Py_DECREF(copy);
                    goto error;
                }
                if (uint16_gt(min_seq, s) && PySet_Discard(missing, o) < 0) {
                    Py_DECREF(copy);
                    goto error;
                }
            }
            Py_DECREF(copy);
        }
    }
    if (missed) {
        PyObject *r = PyObject_CallNoArgs(send_nack);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
    }
    self->native_packets++;
    rc = 1;
    if (payload_len == 0)
        goto release;

    /* Forwarder.on_rtp */
    if (dict_set_ll(fwd, s_packets_in, packets_in + 1) < 0)
        goto error_info;
    if (level >= 0 && on_audio_level != Py_None) {
        PyObject *cb = Py_NewRef(on_audio_level), *r = PyObject_CallFunction(cb, "i", level);
        Py_DECREF(cb);
        if (r == NULL)
            goto error_info;
        Py_DECREF(r);
    }
    /* (sinks were empty; the callback above does not add any) */
    if (dict_add(fwd, s_octets_in, payload_len) < 0)
        goto error_info;
    PyObject *pending = PyDict_GetItemWithError(fwd, s_pending);
    if (pending == NULL)
        goto error_info_key;
    int pending_true = PyObject_IsTrue(pending);
    if (pending_true < 0)
        goto error_info;
    if (pending_true) { /* only after the audio-level callback (audio): every audio packet is a valid start */
        PyObject *r = PyObject_CallMethodNoArgs(forwarder, s_take_pending);
        if (r == NULL)
            goto error_info;
        Py_DECREF(r);
    }
    downstreams = PyDict_GetItemWithError(fwd, s_downstreams);
    if (downstreams == NULL)
        goto error_info_key;
    Py_INCREF(downstreams);
    int any = PyObject_IsTrue(downstreams);
    if (any < 0)
        goto error_info;
    if (any && level >= 0) {
        PyObject *audible = PyDict_GetItemWithError(fwd, s_audible);
        if (audible == NULL)
            goto error_info_key;
        any = PyObject_IsTrue(audible);
        if (any < 0)
            goto error_info;
    }
    if (!any)
        goto done_info;
    int keyframe = 0;
    if (!is_video) { /* is_keyframe_start of a non-video codec is True: only asked when a downstream waits */
        for (Py_ssize_t i = 0; PyList_Check(downstreams) && i < PyList_GET_SIZE(downstreams); i++) {
            int w = wants_keyframe(PyList_GET_ITEM(downstreams, i));
            if (w < 0)
                goto error_info;
            if (w) {
                const char *mime = PyUnicode_AsUTF8(PyTuple_GET_ITEM(info, 1));
                if (mime == NULL)
                    goto error_info;
                keyframe = strncasecmp(mime, "video/", 6) != 0;
                break;
            }
        }
    }
    double now;
    if (clock_now(self->monotonic_clock, CLOCK_MONOTONIC, &now) < 0)
        goto error_info;
    payload = PyBytes_FromStringAndSize((const char *)self->buffer + pos, payload_len);
    seq_obj = PyLong_FromUnsignedLong(seq);
    ts_obj = PyLong_FromUnsignedLong(ts);
    now_obj = PyFloat_FromDouble(now);
    if (payload == NULL || seq_obj == NULL || ts_obj == NULL || now_obj == NULL)
        goto error_info;
    level_obj = PyLong_FromLong(marker); /* (packet.marker) */
    if (level_obj == NULL)
        goto error_info;
    PyObject *args[11] = {downstreams, PyTuple_GET_ITEM(info, 0), level_obj,
                          seq_obj,     ts_obj,                    payload,
                          keyframe ? Py_True : Py_False,          PyTuple_GET_ITEM(info, 2),
                          now_obj,     NULL,                      NULL};
    ExtSpec spec = {level, vad, is_video, wall, forwarder};
    PyObject *r = fanout_run((Fanout *)fanout, args, &spec);
    if (r == NULL)
        goto error_info;
    Py_DECREF(r);
    PyObject *probe = PyObject_GetAttr(forwarder, s_probe); /* bench instrumentation (Forwarder.probe) */
    if (probe == NULL)
        goto error_info;
    if (probe != Py_None) {
        r = PyObject_CallOneArg(probe, payload);
        if (r == NULL) {
            Py_DECREF(probe);
            goto error_info;
        }
        Py_DECREF(r);
    }
    Py_DECREF(probe);
done_info:
    goto release;
error_info_key:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_KeyError, "forwarder state");
error_info:
    goto error;
check_error:
    rc = PyErr_Occurred() ? -1 : FALLBACK;
    goto release;
error:
    rc = -1;
release:
    Py_DECREF(entry);
done:
    Py_XDECREF(info);
    Py_XDECREF(fanout);
    Py_DECREF(ssrc_obj);
    Py_XDECREF(pt_obj);
    Py_XDECREF(payload);
    Py_XDECREF(downstreams);
    Py_XDECREF(seq_obj);
    Py_XDECREF(ts_obj);
    Py_XDECREF(now_obj);
    Py_XDECREF(level_obj);
    return rc;
}

static PyObject *
Receive_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Receive *self = (Receive *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "RtpReceive takes exactly one positional argument");
        return NULL;
    }
    PyObject *data = args[0];
    if (!self->configured || !PyBytes_CheckExact(data))
        Py_RETURN_FALSE;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    if (n < 12 || p[0] < 128 || p[0] > 191 || (p[1] > 191 && p[1] < 209))
        Py_RETURN_FALSE; /* not SRTP RTP (DTLS, SRTCP, ...) */
    int ok = items_hold(self->guards);
    if (ok < 0)
        return NULL;
    if (!ok)
        Py_RETURN_FALSE;
    if (dict_add(self->counters, self->packets_key, 1) < 0 || dict_add(self->counters, self->bytes_key, n) < 0)
        return NULL;
    if (n > self->limit)
        Py_RETURN_TRUE; /* pylibsrtp: "packet is too long" (ValueError), which the Python path drops */
    memcpy(self->buffer, p, (size_t)n);
    int length = (int)n;
    if (self->function(self->context, self->buffer, &length))
        Py_RETURN_TRUE; /* replayed, not authentic, ...: dropped, as the Python path drops pylibsrtp.Error */
    int rc = Receive_process(self, length);
    if (rc < 0)
        return NULL;
    if (rc)
        Py_RETURN_TRUE;
    return PyBytes_FromStringAndSize((const char *)self->buffer, length);
}

static void
Receive_drop(Receive *self)
{
    self->configured = 0;
    Py_CLEAR(self->keepalive);
    Py_CLEAR(self->check);
    Py_CLEAR(self->guards);
    Py_CLEAR(self->counters);
    Py_CLEAR(self->packets_key);
    Py_CLEAR(self->bytes_key);
    Py_CLEAR(self->ssrc_table);
    Py_CLEAR(self->pt_table);
}

static PyObject *
Receive_configure(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Receive *self = (Receive *)op;
    static char *kwlist[] = {"function",   "context",  "keepalive", "limit",      "check",
                             "items",      "counters", "packets_key", "bytes_key", "ssrc_table",
                             "payload_type_table", NULL};
    PyObject *function, *context, *keepalive, *check, *guards, *counters, *packets_key, *bytes_key, *ssrc_table,
        *pt_table;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOnOO!O!UUO!O!", kwlist, &function, &context, &keepalive,
                                     &limit, &check, &PyTuple_Type, &guards, &PyDict_Type, &counters, &packets_key,
                                     &bytes_key, &PyDict_Type, &ssrc_table, &PyDict_Type, &pt_table))
        return NULL;
    Receive_drop(self);
    void *f, *c;
    if (parse_pointer(function, &f, "function") < 0 || parse_pointer(context, &c, "context") < 0)
        return NULL;
    if (limit < 0 || limit > BUFFER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "limit out of range");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(guards); i++) {
        PyObject *g = PyTuple_GET_ITEM(guards, i);
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3 || !PyDict_Check(PyTuple_GET_ITEM(g, 0))) {
            PyErr_SetString(PyExc_TypeError, "items must be (dict, key, expected) tuples");
            return NULL;
        }
    }
    self->function = (srtp_function)f;
    self->context = c;
    self->limit = limit;
#define KEEP(field, value) (Py_INCREF(value), self->field = (value))
    KEEP(keepalive, keepalive);
    KEEP(check, check);
    KEEP(guards, guards);
    KEEP(counters, counters);
    KEEP(packets_key, packets_key);
    KEEP(bytes_key, bytes_key);
    KEEP(ssrc_table, ssrc_table);
    KEEP(pt_table, pt_table);
#undef KEEP
    self->configured = 1;
    Py_RETURN_NONE;
}

static PyObject *
Receive_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Receive_drop((Receive *)op);
    Py_RETURN_NONE;
}

static PyObject *
Receive_set_extension_ids(PyObject *op, PyObject *ids)
{
    Receive *self = (Receive *)op;
    if (!PyTuple_Check(ids) || PyTuple_GET_SIZE(ids) != 7) {
        PyErr_SetString(PyExc_TypeError, "ids must be a tuple of 7 (int | None)");
        return NULL;
    }
    int values[7];
    for (int i = 0; i < 7; i++) {
        PyObject *v = PyTuple_GET_ITEM(ids, i);
        long id = v == Py_None ? -1 : PyLong_AsLong(v);
        if (id == -1 && PyErr_Occurred())
            return NULL;
        values[i] = id >= 1 && id <= 15 ? (int)id : -1; /* -1 never matches a one-byte element's ID (1..15) */
    }
    memcpy(self->ext_ids, values, sizeof(values));
    Py_RETURN_NONE;
}

static PyObject *
Receive_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Receive *self = (Receive *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = Receive_vectorcall;
    for (int i = 0; i < 7; i++)
        self->ext_ids[i] = -1;
    self->streams = PyDict_New();
    self->wall_clock = Py_NewRef(Py_None);
    self->monotonic_clock = Py_NewRef(Py_None);
    if (self->streams == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Receive_traverse(PyObject *op, visitproc visit, void *arg)
{
    Receive *self = (Receive *)op;
    Py_VISIT(self->keepalive);
    Py_VISIT(self->check);
    Py_VISIT(self->guards);
    Py_VISIT(self->counters);
    Py_VISIT(self->ssrc_table);
    Py_VISIT(self->pt_table);
    Py_VISIT(self->streams);
    Py_VISIT(self->wall_clock);
    Py_VISIT(self->monotonic_clock);
    return 0;
}

static int
Receive_clear(PyObject *op)
{
    Receive *self = (Receive *)op;
    Receive_drop(self);
    Py_CLEAR(self->streams);
    Py_CLEAR(self->wall_clock);
    Py_CLEAR(self->monotonic_clock);
    return 0;
}

static PyObject *
Receive_get_configured(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((Receive *)op)->configured);
}

static PyObject *
Receive_get_native_packets(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(((Receive *)op)->native_packets);
}

static PyMethodDef Receive_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Receive_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(*, function, context, keepalive, limit, check, items, counters, packets_key, bytes_key, "
     "ssrc_table, payload_type_table)"},
    {"reset", Receive_reset, METH_NOARGS, "Forget the session: every call returns False."},
    {"set_extension_ids", Receive_set_extension_ids, METH_O,
     "set_extension_ids((mid, rrid, rid, abs_send_time, toffset, audio_level, transport_cc))"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Receive_members[] = {
    {"streams", T_OBJECT_EX, offsetof(Receive, streams), READONLY, "media SSRC -> steady-state entry"},
    {"wall_clock", T_OBJECT_EX, offsetof(Receive, wall_clock), 0, "None (time.time) or a callable (tests)"},
    {"monotonic_clock", T_OBJECT_EX, offsetof(Receive, monotonic_clock), 0,
     "None (time.monotonic) or a callable (tests)"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Receive_getset[] = {
    {"configured", Receive_get_configured, NULL, "True once configure() succeeded (until reset())", NULL},
    {"native_packets", Receive_get_native_packets, NULL, "packets handled in C (forwarded or not)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *
Receive_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(op, args, kwargs);
}

static PyTypeObject ReceiveType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sfu_native.RtpReceive",
    .tp_basicsize = sizeof(Receive),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "RtpReceive(): callable(datagram: bytes) -> True | False | bytes (see sfu_native.c)",
    .tp_vectorcall_offset = offsetof(Receive, vectorcall),
    .tp_call = Receive_call,
    .tp_new = Receive_new,
    .tp_traverse = Receive_traverse,
    .tp_clear = Receive_clear,
    .tp_dealloc = final_gc_dealloc,
    .tp_methods = Receive_methods,
    .tp_members = Receive_members,
    .tp_getset = Receive_getset,
};

/* ------------------------------------------------------------------------ */
/* recv_nowait                                                               */
/* ------------------------------------------------------------------------ */

#include <arpa/inet.h>
#include <netinet/in.h>

#define RECV_SIZE 2048

/* The address as Python's socket.recvfrom returns it. */
static PyObject *
make_address(const struct sockaddr_storage *sa)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo), v6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *
recv_nowait(PyObject *Py_UNUSED(module), PyObject *sock)
{
    PyObject *fd_object = PyObject_CallMethodNoArgs(sock, str_fileno);
    if (fd_object == NULL)
        return NULL;
    long fd = PyLong_AsLong(fd_object);
    Py_DECREF(fd_object);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0)
        Py_RETURN_NONE; /* closed */
    unsigned char buffer[RECV_SIZE];
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    ssize_t n = recvfrom((int)fd, buffer, sizeof(buffer), MSG_DONTWAIT, (struct sockaddr *)&sa, &salen);
    if (n < 0)
        Py_RETURN_NONE; /* EAGAIN (nothing queued) or an error: left to asyncio's next read */
    PyObject *data = PyBytes_FromStringAndSize((const char *)buffer, n);
    if (data == NULL)
        return NULL;
    PyObject *address;
    if (n > 0 && buffer[0] > 127 && buffer[0] < 192) {
        address = Py_NewRef(Py_None); /* RTP/RTCP (RFC 7983): the media path never looks at the address */
    } else {
        address = make_address(&sa);
        if (address == NULL) {
            Py_DECREF(data);
            return NULL;
        }
    }
    PyObject *result = PyTuple_Pack(2, data, address);
    Py_DECREF(data);
    Py_DECREF(address);
    return result;
}

static PyMethodDef module_methods[] = {
    {"recv_nowait", recv_nowait, METH_O,
     "recv_nowait(sock) -> (data, address) | None: one recvfrom(2048, MSG_DONTWAIT) on sock's descriptor;\n"
     "None when nothing is queued, on an error or when sock is closed (no exception); address is None for\n"
     "RTP/RTCP (first byte 128..191), else as socket.recvfrom returns it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = module_methods,
    .m_name = "_sfu_native",
    .m_doc = "Optional C fast path of the Conference media server (see media_server/aiortc_hooks.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__sfu_native(void)
{
    if (PyType_Ready(&ProcessorType) < 0 || PyType_Ready(&SenderType) < 0 || PyType_Ready(&TSeqType) < 0)
        return NULL;
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&FanoutType) < 0 || PyType_Ready(&ReceiveType) < 0)
        return NULL;
#define INTERN(var, text)                                                                                              \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                              \
        return NULL;
    INTERN(str_extensions, "_extensions")
    INTERN(s_packets, "packets")
    INTERN(s_media_ssrc, "media_ssrc")
    INTERN(s_base_seq, "base_seq")
    INTERN(s_max_seq, "max_seq")
    INTERN(s_cycles, "cycles")
    INTERN(s_packets_received, "packets_received")
    INTERN(s_clockrate, "_clockrate")
    INTERN(s_jitter_q4, "_jitter_q4")
    INTERN(s_last_arrival, "_last_arrival")
    INTERN(s_last_timestamp, "_last_timestamp")
    INTERN(s_missing, "missing")
    INTERN(s_packets_in, "packets_in")
    INTERN(s_octets_in, "octets_in")
    INTERN(s_keys, "_keys")
    INTERN(s_sinks, "sinks")
    INTERN(s_pending, "pending")
    INTERN(s_downstreams, "downstreams")
    INTERN(s_audible, "audible")
    INTERN(s_on_audio_level, "on_audio_level")
    INTERN(s_kind, "kind")
    INTERN(s_fanout, "_fanout")
    INTERN(s_probe, "probe")
    INTERN(s_take_pending, "_take_pending")
    INTERN(s_video, "video")
    INTERN(s_pli_unanswered, "_pli_unanswered")
#undef INTERN
    str_fileno = PyUnicode_InternFromString("fileno");
    str_forward = PyUnicode_InternFromString("forward");
    if (str_fileno == NULL || str_forward == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BUFFER_SIZE", BUFFER_SIZE) < 0 ||
        PyModule_AddObjectRef(m, "SrtpProcessor", (PyObject *)&ProcessorType) < 0 ||
        PyModule_AddObjectRef(m, "SrtpSender", (PyObject *)&SenderType) < 0 ||
        PyModule_AddObjectRef(m, "TransportSequence", (PyObject *)&TSeqType) < 0 ||
        PyModule_AddObjectRef(m, "DownstreamCore", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(m, "Fanout", (PyObject *)&FanoutType) < 0 ||
        PyModule_AddObjectRef(m, "RtpReceive", (PyObject *)&ReceiveType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
