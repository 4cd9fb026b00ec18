/* The native form of ingest/canonical.py's fast path: match a frame of Bybit's own ticker shape
 * and render its HSET, in one pass over the frame's bytes.
 *
 * Why C: at Bybit's maximum push rate (~20,000 frames/s) the pure-Python fast path spends ~2 us a
 * frame in the regex match and ~4 us a written hash splitting the data object at its quotes and
 * joining the command (docs/BENCHMARKS.md, issue 14). This scanner does both in well under 1 us.
 *
 * What it accepts is exactly what ingest.canonical.CANONICAL fullmatches (tests/test_ingest_scan.py
 * checks the two verdicts against each other on captures, byte edits and random frames), and what
 * it renders is exactly ingest.resp.hset_canonical's bytes. The field names, the key prefix and the
 * RESP pieces come from Python (ingest/canonical.py builds the Scanner from ingest.frames and
 * common.keys), so no contract is spelled twice; only the envelope's literals are here, as they are
 * in CANONICAL.
 *
 * Safety: the input is untrusted exchange data. Every read is checked against the buffer's end
 * before it happens (the `AT`/`LIT` helpers); the output's size is computed from the scanned
 * lengths before anything is written, and each value is bounded (30 + 1 + 30 characters, a symbol
 * 60), so nothing here can read or write outside its buffers. Anything unexpected returns None and
 * the exact decoder (ingest.frames.decode) decides the frame and names its error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_FIELDS 64
#define ID_MAX 200       /* _PLAIN_STRING: {0,200} */
#define SYMBOL_REST 59   /* _SYMBOL: one leading character, then {0,59} */
#define TS_REST 15       /* _MILLIS: [1-9][0-9]{0,15} */
#define DIGITS_MAX 30    /* PLAIN_DECIMAL: [0-9]{1,30} on either side of the point */

typedef struct {
    PyObject_HEAD
    Py_ssize_t nfields;             /* Bybit's ticker fields, "symbol" first */
    PyObject *keys[MAX_FIELDS];     /* ,"<name>":"   for fields 1.. (bytes) */
    PyObject *headers[MAX_FIELDS];  /* \r\n$<n>\r\n<name>\r\n   for every field (bytes) */
    char required[MAX_FIELDS];      /* a value must not be empty */
    PyObject *head;                 /* *<n>\r\n$4\r\nHSET\r\n */
    PyObject *prefix;               /* the option key's prefix: option: */
    PyObject *ts_header;            /* \r\n$2\r\nts\r\n */
    PyObject *recv_header;          /* \r\n$7\r\nrecv_ts\r\n */
} Scanner;

static int
is_id_char(unsigned char c)
{
    /* [\x20\x21\x23-\x5b\x5d-\x7e]: printable ASCII but the quote and the backslash */
    return c >= 0x20 && c <= 0x7e && c != 0x22 && c != 0x5c;
}

static int
is_symbol_head(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int
is_symbol_char(unsigned char c)
{
    return is_symbol_head(c) || c == '.' || c == '-';
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The literal `lit` at p[*pos], advancing past it. */
static int
literal(const char *p, Py_ssize_t n, Py_ssize_t *pos, const char *lit, Py_ssize_t len)
{
    if (len > n - *pos || memcmp(p + *pos, lit, (size_t)len) != 0) {
        return 0;
    }
    *pos += len;
    return 1;
}

#define LIT(s) literal(p, n, &pos, (s), (Py_ssize_t)(sizeof(s) - 1))
#define AT(i) ((i) < n ? (unsigned char)p[(i)] : 0)

/* PLAIN_DECIMAL at p[*pos]: -?[0-9]{1,30}(\.[0-9]{1,30})?, possessive. */
static int
decimal(const char *p, Py_ssize_t n, Py_ssize_t *pos)
{
    Py_ssize_t i = *pos, count = 0;
    if (AT(i) == '-') {
        i++;
    }
    while (count < DIGITS_MAX && is_digit(AT(i))) {
        i++;
        count++;
    }
    if (count == 0) {
        return 0;
    }
    if (AT(i) == '.') {
        i++;
        count = 0;
        while (count < DIGITS_MAX && is_digit(AT(i))) {
            i++;
            count++;
        }
        if (count == 0) {
            return 0;
        }
    }
    *pos = i;
    return 1;
}

static Py_ssize_t
decimal_width(unsigned long long v)
{
    Py_ssize_t w = 1;
    while (v >= 10) {
        v /= 10;
        w++;
    }
    return w;
}

/* The decimal digits of v at w; returns the new end. printf costs ~0.1 us a call, and a command
 * has 29 numbers: the digits by hand. */
static char *
put_digits(char *w, unsigned long long v)
{
    const Py_ssize_t width = decimal_width(v);
    for (Py_ssize_t i = width - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return w + width;
}

/* "$<len>\r\n" at w; returns the new end. */
static char *
put_length(char *w, Py_ssize_t len)
{
    *w++ = '$';
    w = put_digits(w, (unsigned long long)len);
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

/* What put_length and then len bytes of a value take: "$<len>\r\n<value>". */
static Py_ssize_t
bulk_size(Py_ssize_t len)
{
    return 3 + decimal_width((unsigned long long)len) + len;
}

static char *
put_bytes(char *w, PyObject *bytes)
{
    Py_ssize_t len = PyBytes_GET_SIZE(bytes);
    memcpy(w, PyBytes_AS_STRING(bytes), (size_t)len);
    return w + len;
}

static PyObject *
Scanner_scan(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t starts[MAX_FIELDS], ends[MAX_FIELDS];
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scan(frame, recv_ms) takes 2 arguments");
        return NULL;
    }
    if (self->head == NULL) {
        PyErr_SetString(PyExc_TypeError, "Scanner: not initialised");
        return NULL;
    }
    PyObject *frame = args[0];
    long long recv_ms = PyLong_AsLongLong(args[1]);
    if (recv_ms == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_CheckExact(frame)) {
        Py_RETURN_NONE;
    }
    const char *p = PyBytes_AS_STRING(frame);
    const Py_ssize_t n = PyBytes_GET_SIZE(frame);
    Py_ssize_t pos = 0, count;

    if (!LIT("{\"id\":\"")) {
        Py_RETURN_NONE;
    }
    for (count = 0; count < ID_MAX && is_id_char(AT(pos)); count++) {
        pos++;
    }
    if (!LIT("\",\"topic\":\"tickers.")) {
        Py_RETURN_NONE;
    }
    const Py_ssize_t symbol_start = pos;
    if (!is_symbol_head(AT(pos))) {
        Py_RETURN_NONE;
    }
    pos++;
    for (count = 0; count < SYMBOL_REST && is_symbol_char(AT(pos)); count++) {
        pos++;
    }
    const Py_ssize_t symbol_len = pos - symbol_start;
    if (!LIT("\",\"ts\":")) {
        Py_RETURN_NONE;
    }
    long long ts;
    const Py_ssize_t ts_start = pos;
    if (AT(pos) == '0') {
        ts = 0;
        pos++;
    }
    else if (is_digit(AT(pos))) {
        ts = AT(pos) - '0';
        pos++;
        for (count = 0; count < TS_REST && is_digit(AT(pos)); count++) {
            ts = ts * 10 + (AT(pos) - '0');
            pos++;
        }
    }
    else {
        Py_RETURN_NONE;
    }
    const Py_ssize_t ts_len = pos - ts_start;
    if (!LIT(",\"data\":{\"symbol\":\"")) {
        Py_RETURN_NONE;
    }
    if (symbol_len > n - pos || memcmp(p + pos, p + symbol_start, (size_t)symbol_len) != 0) {
        Py_RETURN_NONE;  /* data.symbol is the topic's symbol (CANONICAL's back-reference) */
    }
    starts[0] = pos;
    pos += symbol_len;
    ends[0] = pos;
    if (AT(pos) != '"') {
        Py_RETURN_NONE;
    }
    pos++;
    for (Py_ssize_t f = 1; f < self->nfields; f++) {
        PyObject *key = self->keys[f];
        if (!literal(p, n, &pos, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))) {
            Py_RETURN_NONE;
        }
        starts[f] = pos;
        if (!(AT(pos) == '"' && !self->required[f]) && !decimal(p, n, &pos)) {
            Py_RETURN_NONE;
        }
        ends[f] = pos;
        if (AT(pos) != '"') {
            Py_RETURN_NONE;
        }
        pos++;
    }
    if (!LIT("},\"type\":\"snapshot\"}") || pos != n) {
        Py_RETURN_NONE;
    }

    /* Matched: render HSET <prefix><symbol> <field value>... ts <ts> recv_ts <recv_ms>. */
    /* "%lld" of recv_ms: its sign, then the digits of its magnitude (LLONG_MIN's too) */
    const unsigned long long recv_abs = recv_ms < 0 ? 0ULL - (unsigned long long)recv_ms
                                                    : (unsigned long long)recv_ms;
    const Py_ssize_t recv_len = (recv_ms < 0) + decimal_width(recv_abs);
    const Py_ssize_t key_len = PyBytes_GET_SIZE(self->prefix) + symbol_len;
    Py_ssize_t size = PyBytes_GET_SIZE(self->head) + bulk_size(key_len);
    for (Py_ssize_t f = 0; f < self->nfields; f++) {
        size += PyBytes_GET_SIZE(self->headers[f]) + bulk_size(ends[f] - starts[f]);
    }
    size += PyBytes_GET_SIZE(self->ts_header) + bulk_size(ts_len);
    size += PyBytes_GET_SIZE(self->recv_header) + bulk_size(recv_len) + 2;

    PyObject *command = PyBytes_FromStringAndSize(NULL, size);
    if (command == NULL) {
        return NULL;
    }
    char *w = PyBytes_AS_STRING(command);
    w = put_bytes(w, self->head);
    w = put_length(w, key_len);
    w = put_bytes(w, self->prefix);
    memcpy(w, p + symbol_start, (size_t)symbol_len);
    w += symbol_len;
    for (Py_ssize_t f = 0; f < self->nfields; f++) {
        const Py_ssize_t len = ends[f] - starts[f];
        w = put_bytes(w, self->headers[f]);
        w = put_length(w, len);
        memcpy(w, p + starts[f], (size_t)len);
        w += len;
    }
    w = put_bytes(w, self->ts_header);
    w = put_length(w, ts_len);
    memcpy(w, p + ts_start, (size_t)ts_len);  /* no sign, no leading zero: the same as "%d" % ts */
    w += ts_len;
    w = put_bytes(w, self->recv_header);
    w = put_length(w, recv_len);
    if (recv_ms < 0) {
        *w++ = '-';
    }
    w = put_digits(w, recv_abs);
    memcpy(w, "\r\n", 2);
    w += 2;
    if (w - PyBytes_AS_STRING(command) != size) {  /* cannot happen: the sizes above are exact */
        Py_DECREF(command);
        PyErr_SetString(PyExc_SystemError, "ingest._scan: rendered size differs from computed size");
        return NULL;
    }
    PyObject *symbol = PyUnicode_DecodeASCII(p + symbol_start, symbol_len, NULL);
    if (symbol == NULL) {
        Py_DECREF(command);
        return NULL;
    }
    PyObject *ts_obj = PyLong_FromLongLong(ts);
    if (ts_obj == NULL) {
        Py_DECREF(symbol);
        Py_DECREF(command);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(ts_obj);
        Py_DECREF(symbol);
        Py_DECREF(command);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, symbol);
    PyTuple_SET_ITEM(result, 1, ts_obj);
    PyTuple_SET_ITEM(result, 2, command);
    return result;
}

static int
take_bytes(PyObject *value, const char *name, PyObject **slot)
{
    if (!PyBytes_CheckExact(value)) {
        PyErr_Format(PyExc_TypeError, "Scanner: %s must be bytes", name);
        return 0;
    }
    Py_INCREF(value);
    *slot = value;
    return 1;
}

static int
Scanner_init(Scanner *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"head", "prefix", "keys", "headers", "required", "ts_header",
                             "recv_header", NULL};
    PyObject *head, *prefix, *keys, *headers, *required, *ts_header, *recv_header;
    if (self->nfields != 0 || self->head != NULL) {
        PyErr_SetString(PyExc_TypeError, "Scanner: already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!O!O!O!:Scanner", kwlist,
                                     &PyBytes_Type, &head, &PyBytes_Type, &prefix,
                                     &PyTuple_Type, &keys, &PyTuple_Type, &headers,
                                     &PyTuple_Type, &required, &PyBytes_Type, &ts_header,
                                     &PyBytes_Type, &recv_header)) {
        return -1;
    }
    const Py_ssize_t nfields = PyTuple_GET_SIZE(headers);
    if (nfields < 1 || nfields > MAX_FIELDS || PyTuple_GET_SIZE(keys) != nfields
            || PyTuple_GET_SIZE(required) != nfields) {
        PyErr_Format(PyExc_ValueError,
                     "Scanner: keys, headers and required need the same 1 to %d fields", MAX_FIELDS);
        return -1;
    }
    for (Py_ssize_t f = 0; f < nfields; f++) {
        int flag = PyObject_IsTrue(PyTuple_GET_ITEM(required, f));
        if (flag < 0) {
            return -1;
        }
        if (!take_bytes(PyTuple_GET_ITEM(keys, f), "keys[i]", &self->keys[f])
                || !take_bytes(PyTuple_GET_ITEM(headers, f), "headers[i]", &self->headers[f])) {
            self->nfields = f + 1;  /* dealloc releases what was taken */
            return -1;
        }
        self->required[f] = (char)flag;
        self->nfields = f + 1;
    }
    Py_INCREF(head);
    self->head = head;
    Py_INCREF(prefix);
    self->prefix = prefix;
    Py_INCREF(ts_header);
    self->ts_header = ts_header;
    Py_INCREF(recv_header);
    self->recv_header = recv_header;
    return 0;
}

static void
Scanner_dealloc(Scanner *self)
{
    for (Py_ssize_t f = 0; f < self->nfields; f++) {
        Py_XDECREF(self->keys[f]);
        Py_XDECREF(self->headers[f]);
    }
    Py_XDECREF(self->head);
    Py_XDECREF(self->prefix);
    Py_XDECREF(self->ts_header);
    Py_XDECREF(self->recv_header);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))Scanner_scan, METH_FASTCALL,
     "scan(frame, recv_ms) -> (symbol, ts, hset) | None"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ingest._scan.Scanner",
    .tp_doc = "Matches a frame of Bybit's own ticker shape and renders its HSET (see ingest/canonical.py).",
    .tp_basicsize = sizeof(Scanner),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ingest._scan",
    .m_doc = "The native form of ingest.canonical's fast path (optional: the pure one decides alike).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    if (PyType_Ready(&ScannerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&scan_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(module, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
