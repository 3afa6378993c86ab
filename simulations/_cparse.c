/* Byte-level parsers for trace files (see simulations/_parse.py for the contract).
 *
 * A million-row trace must load in well under a second, so rows are never touched by Python:
 * the file's bytes are parsed in place and each row is checked as it goes; the first bad row
 * stops the parse and its line offset, an error code and the column come back so the caller
 * can name `file:line: column: problem`. Numbers are parsed with the same arithmetic, in the
 * same order, as the reference model, so traces load to the same float64 values everywhere
 * (the build turns off floating-point contraction for that reason).
 */
#include "_cbuffer.h"

#include <math.h>

/* Column kinds and error codes (mirrored in _parse.py). */
enum { NUMBER, TIMESTAMP };
enum {
    OK, BAD_NUMBER, TOO_FEW_FIELDS, TOO_MANY_FIELDS, NEGATIVE, OUT_OF_ORDER, BAD_TIMESTAMP,
    BLANK_LINE, MISSING_KEY, NOT_FINITE,
};

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

static const double POW10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* 10 ** k for k >= 23 by binary powering, as the reference model computes it, so values
 * beyond the exact table round the same way everywhere (libm's pow may differ by an ulp). */
static double
pow10_big(int64_t k)
{
    if (k > 0x10000) {
        return pow(10.0, (double)k);
    }
    double r = 1.0, a = 10.0;
    while (k != 0) {
        if (k & 1) {
            r *= a;
        }
        k >>= 1;
        a *= a;
    }
    return r;
}

/* A decimal number in buf[*i:end] (blanks around it allowed); advances *i, returns an error
 * code. Up to 18 significant digits go into an exact integer mantissa, scaled once by a power
 * of ten (exact up to 1e22). */
static int
number(const uint8_t *buf, Py_ssize_t *at, Py_ssize_t end, double *out)
{
    Py_ssize_t i = *at;
    while (i < end && (buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    int neg = 0;
    if (i < end && (buf[i] == '-' || buf[i] == '+')) {
        neg = buf[i] == '-';
        i++;
    }
    int64_t mant = 0, exp10 = 0, digits = 0;
    while (i < end && IS_DIGIT(buf[i])) {
        if (digits < 18) {
            mant = mant * 10 + (buf[i] - '0');
        }
        else {
            exp10++;
        }
        digits++;
        i++;
    }
    if (i < end && buf[i] == '.') {
        i++;
        while (i < end && IS_DIGIT(buf[i])) {
            if (digits < 18) {
                mant = mant * 10 + (buf[i] - '0');
                exp10--;
            }
            digits++;
            i++;
        }
    }
    *at = i;
    if (digits == 0) {
        return BAD_NUMBER;
    }
    if (i < end && (buf[i] == 'e' || buf[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < end && (buf[i] == '-' || buf[i] == '+')) {
            eneg = buf[i] == '-';
            i++;
        }
        int64_t e = 0, edigits = 0;
        while (i < end && IS_DIGIT(buf[i])) {
            e = e * 10 + (buf[i] - '0');
            if (e > 400) {
                e = 400;
            }
            edigits++;
            i++;
        }
        *at = i;
        if (edigits == 0) {
            return BAD_NUMBER;
        }
        exp10 += eneg ? -e : e;
    }
    while (i < end && (buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    double value = (double)mant;
    if (exp10 > 0) {
        value = exp10 < 23 ? value * POW10[exp10] : value * pow10_big(exp10);
    }
    else if (exp10 < 0) {
        value = -exp10 < 23 ? value / POW10[-exp10] : value / pow10_big(-exp10);
    }
    *at = i;
    if (!isfinite(value)) { /* 1e999: an infinite time never arrives, a request never ends */
        return NOT_FINITE;
    }
    *out = neg ? -value : value;
    return OK;
}

/* n digits at i as an int, or -1. */
static int64_t
digits_at(const uint8_t *buf, Py_ssize_t i, int n, Py_ssize_t end)
{
    if (i + n > end) {
        return -1;
    }
    int64_t v = 0;
    for (int k = 0; k < n; k++) {
        uint8_t c = buf[i + k];
        if (!IS_DIGIT(c)) {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

/* Days since 1970-01-01 (Howard Hinnant's algorithm), valid for the proleptic calendar. */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = m <= 2 ? m + 9 : m - 3;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* `YYYY-MM-DD[ T]HH:MM:SS[.f...]` as seconds since the epoch (float64). */
static int
timestamp(const uint8_t *buf, Py_ssize_t *at, Py_ssize_t end, double *out)
{
    Py_ssize_t i = *at;
    while (i < end && buf[i] == ' ') {
        i++;
    }
    *at = i;
    int64_t y = digits_at(buf, i, 4, end), mo = digits_at(buf, i + 5, 2, end);
    int64_t d = digits_at(buf, i + 8, 2, end), h = digits_at(buf, i + 11, 2, end);
    int64_t mi = digits_at(buf, i + 14, 2, end), s = digits_at(buf, i + 17, 2, end);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0 || i + 19 > end) {
        return BAD_TIMESTAMP;
    }
    if (buf[i + 4] != '-' || buf[i + 7] != '-' || buf[i + 13] != ':' || buf[i + 16] != ':') {
        return BAD_TIMESTAMP;
    }
    if (!(1 <= mo && mo <= 12 && 1 <= d && d <= 31 && h < 24 && mi < 60 && s < 61)) {
        return BAD_TIMESTAMP;
    }
    i += 19;
    double frac = 0.0;
    if (i < end && buf[i] == '.') {
        i++;
        double scale = 0.1;
        while (i < end && IS_DIGIT(buf[i])) {
            frac += (double)(buf[i] - '0') * scale;
            scale *= 0.1;
            i++;
        }
    }
    while (i < end && buf[i] == ' ') {
        i++;
    }
    int64_t seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    *at = i;
    *out = (double)seconds + frac;
    return OK;
}

/* The result tuple: (rows, error, line offset from the first data line, column or key). */
static PyObject *
outcome(Py_ssize_t row, int err, Py_ssize_t line, Py_ssize_t col)
{
    return Py_BuildValue("(nini)", row, err, line, (int)col);
}

PyDoc_STRVAR(parse_csv_doc,
"parse_csv(buf, start, kinds, out)\n--\n\n"
"Parse comma-separated rows from start; returns (rows, error, line offset, column).");

static PyObject *
parse_csv(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OnOO:parse_csv", &o[0], &start, &o[1], &o[2])) {
        return NULL;
    }
    const cbuf_spec specs[3] = {
        {o[0], K_U8, 1, 0, "buf"}, {o[1], K_I64, 1, 0, "kinds"}, {o[2], K_F64, 2, 1, "out"},
    };
    Py_buffer v[3];
    if (cbuf_get_all(specs, v, 3) < 0) {
        return NULL;
    }
    const uint8_t *buf = v[0].buf;
    const int64_t *kinds = v[1].buf;
    double *out = v[2].buf;
    Py_ssize_t n = cbuf_len(&v[0]), ncols = cbuf_len(&v[1]);
    Py_ssize_t capacity = v[2].shape[0];
    if (v[2].shape[1] != ncols || ncols == 0 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "parse_csv: out must have one column per kind");
        cbuf_release(v, 3);
        return NULL;
    }
    Py_ssize_t row = 0, line = 0, i = start, blank_at = -1, c = 0;
    int err = OK;
    double prev = -1e300;
    Py_BEGIN_ALLOW_THREADS
    while (i < n) {
        const uint8_t *nl = memchr(buf + i, '\n', (size_t)(n - i));
        Py_ssize_t end = nl ? nl - buf : n;
        Py_ssize_t stop = end > i && buf[end - 1] == '\r' ? end - 1 : end;
        if (stop == i) {
            if (blank_at < 0) {
                blank_at = line;
            }
            i = end + 1;
            line++;
            continue;
        }
        if (blank_at >= 0) {
            err = BLANK_LINE;
            line = blank_at;
            c = 0;
            break;
        }
        if (row >= capacity) {
            err = -1;
            break;
        }
        double *cells = out + row * ncols;
        Py_ssize_t j = i;
        for (c = 0; c < ncols; c++) {
            double value;
            err = kinds[c] == TIMESTAMP ? timestamp(buf, &j, stop, &value)
                                        : number(buf, &j, stop, &value);
            if (err != OK) {
                break;
            }
            if (c < ncols - 1) {
                if (j >= stop || buf[j] != ',') {
                    err = j >= stop ? TOO_FEW_FIELDS : BAD_NUMBER;
                    break;
                }
                j++;
            }
            else if (j < stop) {
                err = buf[j] == ',' ? TOO_MANY_FIELDS : BAD_NUMBER;
                break;
            }
            if (value < 0 && kinds[c] == NUMBER) {
                err = NEGATIVE;
                break;
            }
            cells[c] = value;
        }
        if (err != OK) {
            break;
        }
        if (cells[0] < prev) {
            err = OUT_OF_ORDER;
            c = 0;
            break;
        }
        prev = cells[0];
        row++;
        line++;
        i = end + 1;
    }
    Py_END_ALLOW_THREADS
    cbuf_release(v, 3);
    if (err < 0) {
        PyErr_SetString(PyExc_ValueError, "parse_csv: out has fewer rows than the data");
        return NULL;
    }
    return outcome(row, err, line, err == OK ? 0 : c);
}

/* Index just past `key` (k bytes) in buf[i:end], or -1. */
static Py_ssize_t
find(const uint8_t *buf, Py_ssize_t i, Py_ssize_t end, const uint8_t *key, Py_ssize_t k)
{
    for (Py_ssize_t last = end - k; i <= last; i++) {
        if (memcmp(buf + i, key, (size_t)k) == 0) {
            return i + k;
        }
    }
    return -1;
}

PyDoc_STRVAR(parse_jsonl_doc,
"parse_jsonl(buf, keys, key_len, out)\n--\n\n"
"Pull numeric \"key\": value pairs out of flat JSON objects, one per line.\n\n"
"keys holds each quoted key padded in a 2-D uint8 array. Blank lines are skipped. Returns\n"
"(rows, error, line offset from 0, key index).");

static PyObject *
parse_jsonl(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    if (!PyArg_ParseTuple(args, "OOOO:parse_jsonl", &o[0], &o[1], &o[2], &o[3])) {
        return NULL;
    }
    const cbuf_spec specs[4] = {
        {o[0], K_U8, 1, 0, "buf"}, {o[1], K_U8, 2, 0, "keys"},
        {o[2], K_I64, 1, 0, "key_len"}, {o[3], K_F64, 2, 1, "out"},
    };
    Py_buffer v[4];
    if (cbuf_get_all(specs, v, 4) < 0) {
        return NULL;
    }
    const uint8_t *buf = v[0].buf, *keys = v[1].buf;
    const int64_t *key_len = v[2].buf;
    double *out = v[3].buf;
    Py_ssize_t n = cbuf_len(&v[0]), nkeys = cbuf_len(&v[2]), width = v[1].shape[1];
    Py_ssize_t capacity = v[3].shape[0];
    int bad_keys = v[1].shape[0] != nkeys || v[3].shape[1] != nkeys || nkeys == 0;
    for (Py_ssize_t c = 0; c < nkeys && !bad_keys; c++) {
        bad_keys = key_len[c] < 1 || key_len[c] > width;
    }
    if (bad_keys) {
        PyErr_SetString(PyExc_ValueError,
                        "parse_jsonl: keys, key_len and out's columns must agree");
        cbuf_release(v, 4);
        return NULL;
    }
    Py_ssize_t row = 0, line = 0, i = 0, c = 0;
    int err = OK;
    double prev = -1e300;
    Py_BEGIN_ALLOW_THREADS
    while (i < n) {
        const uint8_t *nl = memchr(buf + i, '\n', (size_t)(n - i));
        Py_ssize_t end = nl ? nl - buf : n;
        Py_ssize_t j = i;
        while (j < end && (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r')) {
            j++;
        }
        if (j == end) {
            i = end + 1;
            line++;
            continue;
        }
        if (row >= capacity) {
            err = -1;
            break;
        }
        double *cells = out + row * nkeys;
        for (c = 0; c < nkeys; c++) {
            Py_ssize_t p = find(buf, i, end, keys + c * width, key_len[c]);
            if (p < 0) {
                err = MISSING_KEY;
                break;
            }
            while (p < end && (buf[p] == ' ' || buf[p] == '\t')) {
                p++;
            }
            if (p >= end || buf[p] != ':') {
                err = MISSING_KEY;
                break;
            }
            p++;
            double value;
            err = number(buf, &p, end, &value);
            if (err != OK) {
                break;
            }
            if (p < end && buf[p] != ',' && buf[p] != '}' && buf[p] != '\r') {
                err = BAD_NUMBER; /* "12abc" is not the number 12 */
                break;
            }
            if (value < 0) {
                err = NEGATIVE;
                break;
            }
            cells[c] = value;
        }
        if (err != OK) {
            break;
        }
        if (cells[0] < prev) {
            err = OUT_OF_ORDER;
            c = 0;
            break;
        }
        prev = cells[0];
        row++;
        line++;
        i = end + 1;
    }
    Py_END_ALLOW_THREADS
    cbuf_release(v, 4);
    if (err < 0) {
        PyErr_SetString(PyExc_ValueError, "parse_jsonl: out has fewer rows than the data");
        return NULL;
    }
    return outcome(row, err, line, err == OK ? 0 : c);
}

PyDoc_STRVAR(count_lines_doc,
"count_lines(buf, start)\n--\n\n"
"Newlines in buf[start:]: sizes the output before parsing, without a temporary array.");

static PyObject *
count_lines(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "On:count_lines", &obj, &start)) {
        return NULL;
    }
    Py_buffer v;
    if (cbuf_get(obj, &v, K_U8, 1, 0, "buf") < 0) {
        return NULL;
    }
    const uint8_t *buf = v.buf;
    Py_ssize_t n = cbuf_len(&v), lines = 0;
    if (start < 0) {
        start = 0;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = start; i < n; i++) {
        const uint8_t *nl = memchr(buf + i, '\n', (size_t)(n - i));
        if (nl == NULL) {
            break;
        }
        i = nl - buf;
        lines++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    return PyLong_FromSsize_t(lines);
}

static PyMethodDef methods[] = {
    {"count_lines", count_lines, METH_VARARGS, count_lines_doc},
    {"parse_csv", parse_csv, METH_VARARGS, parse_csv_doc},
    {"parse_jsonl", parse_jsonl, METH_VARARGS, parse_jsonl_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "simulations._cparse",
    .m_doc = "Byte-level trace parsers, compiled (see simulations/_parse.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__cparse(void)
{
    return PyModule_Create(&module);
}
