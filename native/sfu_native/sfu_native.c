/*
 * _sfu_native: optional C fast path of the Conference media server.
 *
 * The media server forwards every publisher packet to N subscribers; per copy
 * it has to SRTP-protect the rewritten RTP packet and hand it to the kernel.
 * Done in Python that is three frames, a cffi call with argument conversion, a
 * buffer slice and socket.sendto's argument and address parsing per copy.
 * This module does protect + sendto in one C call.
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
 *       which queues and retries) and return True.
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
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* pylibsrtp's work buffer is 1500 bytes; packets are limited to 1500 - trailer. */
#define BUFFER_SIZE 1500

typedef int (*srtp_function)(void *context, void *packet, int *length);

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

/* Run libsrtp on `buffer` (holding `data`); 0 on success, -1 with an exception set. */
static int
run_srtp(srtp_function function, void *context, unsigned char *buffer, Py_ssize_t limit, PyObject *check,
         PyObject *data, int *length)
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

static void
Processor_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Processor_clear(op);
    Py_TYPE(op)->tp_free(op);
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
    .tp_dealloc = Processor_dealloc,
};

/* ------------------------------------------------------------------------ */
/* SrtpSender                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;
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
    /* Anything already queued in asyncio for this peer: the fallback keeps the order and the bound. */
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
    if (run_srtp(self->function, self->context, self->buffer, self->limit, self->check, data, &length) < 0)
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
    if (!PyCallable_Check(check) || !PyCallable_Check(queue) || !PyCallable_Check(buffered)) {
        PyErr_SetString(PyExc_TypeError, "check, queue and buffered must be callable");
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
    static char *kwlist[] = {"fallback", NULL};
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", kwlist, &fallback))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
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
    return 0;
}

static void
Sender_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Sender_clear(op);
    Py_TYPE(op)->tp_free(op);
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
    .tp_doc = "SrtpSender(fallback): callable(data: bytes) -> bool; SRTP protect + sendto in C once configured",
    .tp_vectorcall_offset = offsetof(Sender, vectorcall),
    .tp_call = Sender_call,
    .tp_new = Sender_new,
    .tp_init = Sender_init,
    .tp_traverse = Sender_traverse,
    .tp_clear = Sender_clear,
    .tp_dealloc = Sender_dealloc,
    .tp_methods = Sender_methods,
    .tp_getset = Sender_getset,
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
    if (PyType_Ready(&ProcessorType) < 0 || PyType_Ready(&SenderType) < 0)
        return NULL;
    str_fileno = PyUnicode_InternFromString("fileno");
    if (str_fileno == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BUFFER_SIZE", BUFFER_SIZE) < 0 ||
        PyModule_AddObjectRef(m, "SrtpProcessor", (PyObject *)&ProcessorType) < 0 ||
        PyModule_AddObjectRef(m, "SrtpSender", (PyObject *)&SenderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
