/* marketdata.collector._fastframes: the collector's fast path from exchange trade frames (JSON text)
 * to protobuf wire bytes, without building a Python object per trade.
 *
 * Each function scans the frame once and writes, for every trade, the TradeBatch.trades field
 * (key 0x12, varint length, the serialized marketdata.v1.Trade) exactly as
 * `length_delimited(0x12, Trade(...).SerializeToString())` of the Python parsers would. It accepts
 * only the simple, fully valid case and returns None for anything else (a malformed or unusual
 * frame, an escape in a string it copies, a duplicate key it uses): the Python parsers
 * (bybit.py / binance.py) stay the reference, handle those frames and give the errors that name
 * the field. Being stricter than the Python parser is always safe; accepting a frame the Python
 * parser refuses, or encoding it differently, never is (tests/collector/test_fastframes.py). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Nesting bound for skipped values: frames are at most 3 deep; deeper ones are declined. */
#define MAX_DEPTH 64
/* Skipped numbers with more integer digits or a longer exponent are declined: orjson refuses a
 * number whose double is infinite, and within these bounds none is (10^(200+99) < DBL_MAX). */
#define MAX_INT_DIGITS 200
#define MAX_EXP_DIGITS 2

#define DECLINE (-1)
#define TRADE_KEY 0x12 /* TradeBatch.trades, length-delimited */
#define SIDE_BUY 1
#define SIDE_SELL 2
#define SOURCE_WEBSOCKET 1

typedef unsigned char uchar;

/* The scanners of the per-row loop: inlined, a call each would cost as much as their work. */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

typedef struct {
    const uchar *p;
    const uchar *end;
} Cursor;

/* A JSON value of a key the parser uses, as found (ABSENT until the key is seen). */
enum { ABSENT = 0, V_STRING, V_INT, V_TRUE, V_FALSE, V_NULL, V_OTHER };

typedef struct {
    int type;
    int escaped; /* V_STRING holding a backslash escape: its bytes are not its text */
    const uchar *s;
    size_t n;
    int64_t i; /* V_INT: a plain JSON integer within int64 */
} Slot;

/* ---- output buffer ------------------------------------------------------------------------- */

typedef struct {
    uchar *buf;
    size_t len;
    size_t cap;
    int no_memory;
} Buffer;

static int
buffer_init(Buffer *b, size_t cap)
{
    b->len = 0;
    b->cap = cap < 256 ? 256 : cap;
    b->no_memory = 0;
    b->buf = PyMem_Malloc(b->cap);
    if (b->buf == NULL) {
        b->no_memory = 1;
        return DECLINE;
    }
    return 0;
}

static int
buffer_reserve(Buffer *b, size_t extra)
{
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap * 2;
    if (cap < b->len + extra) {
        cap = b->len + extra;
    }
    uchar *grown = PyMem_Realloc(b->buf, cap);
    if (grown == NULL) {
        b->no_memory = 1;
        return DECLINE;
    }
    b->buf = grown;
    b->cap = cap;
    return 0;
}

/* ---- JSON scanning ----------------------------------------------------------------------------
 * Every scanner returns 0 and advances the cursor, or DECLINE; none touches Python objects. */

static inline void
skip_ws(Cursor *c)
{
    const uchar *p = c->p;
    while (p < c->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    c->p = p;
}

/* The next non-whitespace byte, or 0 at the end (0 is never valid there anyway). */
static inline uchar
peek(Cursor *c)
{
    skip_ws(c);
    return c->p < c->end ? *c->p : 0;
}

static inline int
is_digit(uchar ch)
{
    return ch >= '0' && ch <= '9';
}

static int
hex4(const uchar *p, const uchar *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4) {
        return DECLINE;
    }
    for (int k = 0; k < 4; k++) {
        uchar ch = p[k];
        v <<= 4;
        if (is_digit(ch)) {
            v |= (unsigned)(ch - '0');
        }
        else if (ch >= 'a' && ch <= 'f') {
            v |= (unsigned)(ch - 'a' + 10);
        }
        else if (ch >= 'A' && ch <= 'F') {
            v |= (unsigned)(ch - 'A' + 10);
        }
        else {
            return DECLINE;
        }
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence of a non-ASCII lead byte at p (no overlongs, no
 * surrogates, nothing above U+10FFFF: what orjson accepts), or 0. */
static int
utf8_length(const uchar *p, const uchar *end)
{
    uchar c0 = p[0];
    ptrdiff_t room = end - p;
    uchar lo = 0x80, hi = 0xBF;
    int n;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        n = 2;
    }
    else if (c0 >= 0xE0 && c0 <= 0xEF) {
        n = 3;
        if (c0 == 0xE0) {
            lo = 0xA0;
        }
        else if (c0 == 0xED) {
            hi = 0x9F;
        }
    }
    else if (c0 >= 0xF0 && c0 <= 0xF4) {
        n = 4;
        if (c0 == 0xF0) {
            lo = 0x90;
        }
        else if (c0 == 0xF4) {
            hi = 0x8F;
        }
    }
    else {
        return 0;
    }
    if (room < n || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (int k = 2; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/* A string byte that needs no look: printable ASCII but '"' and '\\'. */
static inline int
is_plain(uchar ch)
{
    return ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\';
}

/* The first byte from p on that is not plain (or end). Eight bytes at a time where the byte order
 * allows: the lowest flagged byte of each test below is exact (a borrow only runs upwards from a
 * byte that is flagged itself). */
static inline const uchar *
plain_run_end(const uchar *p, const uchar *end)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
        uint64_t flagged = (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)
                            | ((x - ones * 0x20) & ~x) | x)
                           & highs;
        if (flagged) {
            return p + (__builtin_ctzll(flagged) >> 3);
        }
        p += 8;
    }
#endif
    while (p < end && is_plain(*p)) {
        p++;
    }
    return p;
}

/* A string at c->p (which is '"'): its raw bytes between the quotes, and whether they hold an
 * escape. Validates escapes (surrogates only in pairs), control bytes and UTF-8. */
HOT int
scan_string(Cursor *c, const uchar **s, size_t *n, int *escaped)
{
    const uchar *p = c->p + 1, *end = c->end, *start = p;
    int esc = 0;
    for (;;) {
        p = plain_run_end(p, end);
        if (p >= end) {
            return DECLINE;
        }
        uchar ch = *p;
        if (ch == '"') {
            break;
        }
        if (ch == '\\') {
            esc = 1;
            if (++p >= end) {
                return DECLINE;
            }
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p++;
                continue;
            case 'u': {
                unsigned cp, low;
                if (hex4(p + 1, end, &cp) < 0) {
                    return DECLINE;
                }
                p += 5;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return DECLINE;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &low) < 0
                        || low < 0xDC00 || low > 0xDFFF) {
                        return DECLINE;
                    }
                    p += 6;
                }
                continue;
            }
            default:
                return DECLINE;
            }
        }
        if (ch < 0x20) {
            return DECLINE;
        }
        int k = utf8_length(p, end);
        if (k == 0) {
            return DECLINE;
        }
        p += k;
    }
    *s = start;
    *n = (size_t)(p - start);
    *escaped = esc;
    c->p = p + 1;
    return 0;
}

/* A number at c->p. *is_int64 tells whether it is a plain JSON integer (no fraction, no exponent,
 * not -0) within int64, then *value holds it. */
HOT int
scan_number(Cursor *c, int *is_int64, int64_t *value)
{
    const uchar *p = c->p, *end = c->end;
    int negative = 0, plain = 1;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    const uchar *digits = p;
    uint64_t u = 0; /* the first 19 digits: below 2^64 */
    if (p < end && *p == '0') {
        p++;
    }
    else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p)) {
            if (p - digits < 19) {
                u = u * 10 + (uint64_t)(*p - '0');
            }
            p++;
        }
    }
    else {
        return DECLINE;
    }
    size_t ndigits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        const uchar *fraction = ++p;
        while (p < end && is_digit(*p)) {
            p++;
        }
        if (p == fraction) {
            return DECLINE;
        }
        plain = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        const uchar *exponent = p;
        while (p < end && is_digit(*p)) {
            p++;
        }
        if (p == exponent || p - exponent > MAX_EXP_DIGITS) {
            return DECLINE;
        }
        plain = 0;
    }
    if (ndigits > MAX_INT_DIGITS) {
        return DECLINE;
    }
    c->p = p;
    *is_int64 = 0;
    if (!plain || ndigits > 19 || (negative && ndigits == 1 && digits[0] == '0')) {
        return 0;
    }
    if (!negative && u <= (uint64_t)INT64_MAX) {
        *value = (int64_t)u;
        *is_int64 = 1;
    }
    else if (negative && u <= (uint64_t)INT64_MAX + 1) {
        *value = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
        *is_int64 = 1;
    }
    return 0;
}

static int
scan_literal(Cursor *c, const char *word, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) {
        return DECLINE;
    }
    c->p += n;
    return 0;
}

static int skip_value(Cursor *c, int depth);

/* The rest of an object or array after its opening byte, each member checked and skipped. */
static int
skip_container(Cursor *c, int depth, uchar close)
{
    const uchar *s;
    size_t n;
    int escaped;
    if (depth > MAX_DEPTH) {
        return DECLINE;
    }
    c->p++;
    if (peek(c) == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (peek(c) != '"' || scan_string(c, &s, &n, &escaped) < 0 || peek(c) != ':') {
                return DECLINE;
            }
            c->p++;
        }
        if (skip_value(c, depth) < 0) {
            return DECLINE;
        }
        uchar next = peek(c);
        c->p++;
        if (next == close) {
            return 0;
        }
        if (next != ',') {
            return DECLINE;
        }
    }
}

/* Any JSON value at the next non-whitespace byte, checked as orjson would and skipped; `depth`
 * counts the containers around it. */
static int
skip_value(Cursor *c, int depth)
{
    const uchar *s;
    size_t n;
    int escaped, is_int;
    int64_t value;
    switch (peek(c)) {
    case '"':
        return scan_string(c, &s, &n, &escaped);
    case '{':
        return skip_container(c, depth + 1, '}');
    case '[':
        return skip_container(c, depth + 1, ']');
    case 't':
        return scan_literal(c, "true", 4);
    case 'f':
        return scan_literal(c, "false", 5);
    case 'n':
        return scan_literal(c, "null", 4);
    default:
        return scan_number(c, &is_int, &value);
    }
}

/* The value of a used key into its slot; a second value for the same key declines (orjson would
 * keep the last, and a frame with duplicate keys is not the simple case). */
HOT int
scan_slot(Cursor *c, Slot *slot, int depth)
{
    int is_int;
    if (slot->type != ABSENT) {
        return DECLINE;
    }
    switch (peek(c)) {
    case '"':
        slot->type = V_STRING;
        return scan_string(c, &slot->s, &slot->n, &slot->escaped);
    case 't':
        slot->type = V_TRUE;
        return scan_literal(c, "true", 4);
    case 'f':
        slot->type = V_FALSE;
        return scan_literal(c, "false", 5);
    case 'n':
        slot->type = V_NULL;
        return scan_literal(c, "null", 4);
    case '{':
    case '[':
        slot->type = V_OTHER;
        return skip_value(c, depth);
    default:
        if (scan_number(c, &is_int, &slot->i) < 0) {
            return DECLINE;
        }
        slot->type = is_int ? V_INT : V_OTHER;
        return 0;
    }
}

/* The next member's key (escape-free: an escaped key could spell a used one) and the ':' after it. */
HOT int
scan_key(Cursor *c, const uchar **key, size_t *n)
{
    int escaped;
    if (peek(c) != '"' || scan_string(c, key, n, &escaped) < 0 || escaped || peek(c) != ':') {
        return DECLINE;
    }
    c->p++;
    return 0;
}

/* After a member: 1 if another follows (',' consumed), 0 at the closing byte (consumed). */
HOT int
next_member(Cursor *c, uchar close)
{
    uchar next = peek(c);
    c->p++;
    if (next == ',') {
        return 1;
    }
    return next == close ? 0 : DECLINE;
}

static inline int
key_is(const uchar *key, size_t n, const char *word, size_t len)
{
    return n == len && memcmp(key, word, len) == 0;
}

/* ---- field checks ------------------------------------------------------------------------------ */

static inline int
plain_string(const Slot *slot)
{
    return slot->type == V_STRING && !slot->escaped;
}

/* frames.py _DECIMAL: [0-9]{1,30}(\.[0-9]{1,30})? */
static int
is_decimal(const Slot *slot)
{
    const uchar *s = slot->s;
    size_t n = slot->n, k = 0;
    if (!plain_string(slot)) {
        return 0;
    }
    while (k < n && is_digit(s[k])) {
        k++;
    }
    if (k == 0 || k > 30) {
        return 0;
    }
    if (k == n) {
        return 1;
    }
    if (s[k] != '.') {
        return 0;
    }
    size_t fraction = ++k;
    while (k < n && is_digit(s[k])) {
        k++;
    }
    return k == n && k > fraction && k - fraction <= 30;
}

/* An optional string field (Bybit L, Binance X): absent or null is empty; else a plain string. */
static int
optional_text(const Slot *slot, const uchar **s, size_t *n)
{
    *s = NULL;
    *n = 0;
    if (slot->type == ABSENT || slot->type == V_NULL) {
        return 0;
    }
    if (!plain_string(slot)) {
        return DECLINE;
    }
    *s = slot->s;
    *n = slot->n;
    return 0;
}

/* ---- Trade encoding (field-number order, proto3 defaults omitted, as upb serializes) ------------ */

typedef struct {
    const uchar *trade_id;
    size_t trade_id_n;
    const uchar *price;
    size_t price_n;
    const uchar *size;
    size_t size_n;
    int side;
    int64_t exchange_time_ms;
    int64_t receive_time_ns;
    int64_t event_time_ms;
    const uchar *execution_type;
    size_t execution_type_n;
    int block_trade;
    int rpi;
    int64_t cross_sequence;
    const uchar *tick_direction;
    size_t tick_direction_n;
    int aggregated;
} TradeFields;

static inline size_t
varint_length(uint64_t v)
{
#if defined(__GNUC__)
    /* 7 bits a byte: from the index of the highest set bit, without a loop */
    return (size_t)(((63 - __builtin_clzll(v | 1)) * 9 + 73) / 64);
#else
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
#endif
}

static inline uchar *
put_varint(uchar *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (uchar)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    *o++ = (uchar)v;
    return o;
}

/* int64 fields are varints of the two's complement: a negative one takes 10 bytes. */
static inline size_t
int_field_length(int64_t v)
{
    return v ? 1 + varint_length((uint64_t)v) : 0;
}

static inline size_t
text_field_length(size_t n)
{
    return n ? 1 + varint_length(n) + n : 0;
}

static inline uchar *
put_int_field(uchar *o, uchar key, int64_t v)
{
    if (v) {
        *o++ = key;
        o = put_varint(o, (uint64_t)v);
    }
    return o;
}

static inline uchar *
put_text_field(uchar *o, uchar key, const uchar *s, size_t n)
{
    if (n) {
        *o++ = key;
        o = put_varint(o, n);
        memcpy(o, s, n);
        o += n;
    }
    return o;
}

static inline uchar *
put_flag(uchar *o, uchar key, int on)
{
    if (on) {
        *o++ = key;
        *o++ = 1;
    }
    return o;
}

static size_t
trade_length(const TradeFields *t)
{
    return text_field_length(t->trade_id_n) + text_field_length(t->price_n) + text_field_length(t->size_n)
           + 2 /* side */ + int_field_length(t->exchange_time_ms) + int_field_length(t->receive_time_ns)
           + int_field_length(t->event_time_ms) + 2 /* source */
           + text_field_length(t->execution_type_n) + (t->block_trade ? 2 : 0) + (t->rpi ? 2 : 0)
           + int_field_length(t->cross_sequence) + text_field_length(t->tick_direction_n)
           + (t->aggregated ? 2 : 0);
}

/* Appends the framed trade (0x12, length, Trade); returns the offset of its 0x12 or DECLINE when
 * memory ran out (b->no_memory). */
static Py_ssize_t
append_trade(Buffer *b, const TradeFields *t)
{
    size_t body = trade_length(t);
    if (buffer_reserve(b, 1 + varint_length(body) + body) < 0) {
        return DECLINE;
    }
    size_t offset = b->len;
    uchar *o = b->buf + offset;
    *o++ = TRADE_KEY;
    o = put_varint(o, body);
    o = put_text_field(o, 0x0A, t->trade_id, t->trade_id_n);
    o = put_text_field(o, 0x12, t->price, t->price_n);
    o = put_text_field(o, 0x1A, t->size, t->size_n);
    *o++ = 0x20;
    *o++ = (uchar)t->side;
    o = put_int_field(o, 0x28, t->exchange_time_ms);
    o = put_int_field(o, 0x30, t->receive_time_ns);
    o = put_int_field(o, 0x38, t->event_time_ms);
    *o++ = 0x40;
    *o++ = SOURCE_WEBSOCKET;
    o = put_text_field(o, 0x4A, t->execution_type, t->execution_type_n);
    o = put_flag(o, 0x50, t->block_trade);
    o = put_flag(o, 0x58, t->rpi);
    o = put_int_field(o, 0x60, t->cross_sequence);
    o = put_text_field(o, 0x6A, t->tick_direction, t->tick_direction_n);
    o = put_flag(o, 0x70, t->aggregated);
    b->len = (size_t)(o - b->buf);
    return (Py_ssize_t)offset;
}

/* ---- arguments --------------------------------------------------------------------------------- */

/* 1 with the frame's UTF-8 bytes, 0 to decline (a str that has no UTF-8 form, e.g. a lone
 * surrogate: orjson refuses it too), -1 with TypeError set. */
static int
frame_text(PyObject *text, const uchar **s, size_t *n)
{
    if (PyBytes_Check(text)) {
        *s = (const uchar *)PyBytes_AS_STRING(text);
        *n = (size_t)PyBytes_GET_SIZE(text);
        return 1;
    }
    if (PyUnicode_Check(text)) {
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
        if (utf8 == NULL) {
            PyErr_Clear();
            return 0;
        }
        *s = (const uchar *)utf8;
        *n = (size_t)size;
        return 1;
    }
    PyErr_Format(PyExc_TypeError, "text must be bytes or str, not %.100s", Py_TYPE(text)->tp_name);
    return -1;
}

/* (text, receive_ns) -> 1 with both unpacked, 0 to decline, -1 with an exception set. */
static int
frame_args(const char *name, PyObject *const *args, Py_ssize_t nargs, const uchar **s, size_t *n,
           int64_t *receive_ns)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return -1;
    }
    if (!PyLong_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "receive_ns must be int, not %.100s", Py_TYPE(args[1])->tp_name);
        return -1;
    }
    long long ns = PyLong_AsLongLong(args[1]);
    if (ns == -1 && PyErr_Occurred()) {
        return -1; /* OverflowError: no int64 field can carry it */
    }
    *receive_ns = (int64_t)ns;
    return frame_text(args[0], s, n);
}

static PyObject *
no_memory_or_none(const Buffer *b)
{
    if (b->no_memory) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

/* ---- Bybit publicTrade ------------------------------------------------------------------------- */

enum { R_T, R_S, R_V, R_P, R_L, R_I, R_BT, R_RPI, R_SEQ, ROW_KEYS };

static int
row_key(const uchar *k, size_t n)
{
    if (n == 1) {
        switch (k[0]) {
        case 'T': return R_T;
        case 'S': return R_S;
        case 'v': return R_V;
        case 'p': return R_P;
        case 'L': return R_L;
        case 'i': return R_I;
        default: return -1;
        }
    }
    if (key_is(k, n, "BT", 2)) {
        return R_BT;
    }
    if (key_is(k, n, "RPI", 3)) {
        return R_RPI;
    }
    if (key_is(k, n, "seq", 3)) {
        return R_SEQ;
    }
    return -1;
}

typedef struct {
    int64_t receive_ns;
    int64_t event_ms;
    Buffer wire;
    Buffer ids; /* (start, length) of each row's `i` in the text */
    size_t count;
    int64_t last_time_ms;
    Py_ssize_t last_offset;
} BybitRun;

/* One publicTrade row object (c->p at '{') checked and appended. */
static int
bybit_row(Cursor *c, BybitRun *run, const uchar *text)
{
    Slot f[ROW_KEYS];
    TradeFields t;
    const uchar *key;
    size_t n;
    int more;
    for (int k = 0; k < ROW_KEYS; k++) {
        f[k].type = ABSENT;
    }
    c->p++;
    if (peek(c) == '}') {
        return DECLINE; /* no fields */
    }
    do {
        if (scan_key(c, &key, &n) < 0) {
            return DECLINE;
        }
        int slot = row_key(key, n);
        if ((slot >= 0 ? scan_slot(c, &f[slot], 3) : skip_value(c, 3)) < 0) {
            return DECLINE;
        }
    } while ((more = next_member(c, '}')) == 1);
    if (more != 0) {
        return DECLINE;
    }
    if (!plain_string(&f[R_S]) || f[R_S].n < 3) {
        return DECLINE;
    }
    if (key_is(f[R_S].s, f[R_S].n, "Buy", 3)) {
        t.side = SIDE_BUY;
    }
    else if (key_is(f[R_S].s, f[R_S].n, "Sell", 4)) {
        t.side = SIDE_SELL;
    }
    else {
        return DECLINE;
    }
    if (!plain_string(&f[R_I]) || f[R_I].n == 0 || !is_decimal(&f[R_P]) || !is_decimal(&f[R_V])
        || f[R_T].type != V_INT || (f[R_SEQ].type != ABSENT && f[R_SEQ].type != V_INT)
        || optional_text(&f[R_L], &t.tick_direction, &t.tick_direction_n) < 0) {
        return DECLINE;
    }
    t.trade_id = f[R_I].s;
    t.trade_id_n = f[R_I].n;
    t.price = f[R_P].s;
    t.price_n = f[R_P].n;
    t.size = f[R_V].s;
    t.size_n = f[R_V].n;
    t.exchange_time_ms = f[R_T].i;
    t.receive_time_ns = run->receive_ns;
    t.event_time_ms = run->event_ms;
    t.execution_type = NULL;
    t.execution_type_n = 0;
    t.block_trade = f[R_BT].type == V_TRUE; /* Python: get("BT") is True */
    t.rpi = f[R_RPI].type == V_TRUE;
    t.cross_sequence = f[R_SEQ].type == V_INT ? f[R_SEQ].i : 0;
    t.aggregated = 0;
    Py_ssize_t offset = append_trade(&run->wire, &t);
    if (offset < 0 || buffer_reserve(&run->ids, 2 * sizeof(size_t)) < 0) {
        return DECLINE;
    }
    size_t span[2] = {(size_t)(f[R_I].s - text), f[R_I].n};
    memcpy(run->ids.buf + run->ids.len, span, sizeof span);
    run->ids.len += sizeof span;
    run->count++;
    run->last_time_ms = t.exchange_time_ms;
    run->last_offset = offset;
    return 0;
}

/* The `data` array (c->p at its '[') of rows. */
static int
bybit_rows(Cursor *c, BybitRun *run, const uchar *text)
{
    if (peek(c) != '[') {
        return DECLINE;
    }
    c->p++;
    if (peek(c) == ']') {
        return DECLINE; /* no trades: nothing for the fast path */
    }
    int more;
    do {
        if (peek(c) != '{' || bybit_row(c, run, text) < 0) {
            return DECLINE;
        }
    } while ((more = next_member(c, ']')) == 1);
    return more;
}

static int
bybit_frame(const uchar *text, size_t size, BybitRun *run, Slot *topic)
{
    Cursor c = {text, text + size};
    Slot ts = {0};
    const uchar *key, *deferred = NULL;
    size_t n;
    int data_seen = 0, more;
    if (peek(&c) != '{') {
        return DECLINE;
    }
    c.p++;
    if (peek(&c) == '}') {
        return DECLINE;
    }
    do {
        if (scan_key(&c, &key, &n) < 0) {
            return DECLINE;
        }
        if (key_is(key, n, "topic", 5)) {
            if (scan_slot(&c, topic, 1) < 0) {
                return DECLINE;
            }
        }
        else if (key_is(key, n, "ts", 2)) {
            if (scan_slot(&c, &ts, 1) < 0 || ts.type != V_INT) {
                return DECLINE;
            }
            run->event_ms = ts.i;
        }
        else if (key_is(key, n, "data", 4)) {
            if (data_seen) {
                return DECLINE;
            }
            data_seen = 1;
            if (ts.type == V_INT) {
                if (bybit_rows(&c, run, text) < 0) {
                    return DECLINE;
                }
            }
            else {
                /* `ts` comes later (or never): check the rows now, encode them once it is known */
                deferred = c.p;
                if (skip_value(&c, 1) < 0) {
                    return DECLINE;
                }
            }
        }
        else if (skip_value(&c, 1) < 0) {
            return DECLINE;
        }
    } while ((more = next_member(&c, '}')) == 1);
    if (more != 0 || peek(&c) != 0 || c.p != c.end) {
        return DECLINE;
    }
    if (!plain_string(topic) || ts.type != V_INT || !data_seen) {
        return DECLINE;
    }
    if (deferred != NULL) {
        Cursor rows = {deferred, text + size};
        if (bybit_rows(&rows, run, text) < 0) {
            return DECLINE;
        }
    }
    return 0;
}

/* A tuple of the n objects (references stolen), made as soon as one is NULL: then NULL, with the
 * made ones released (callers build the items in order and stop at the first failure). */
static PyObject *
tuple_of(PyObject **items, Py_ssize_t n)
{
    PyObject *tuple = NULL;
    Py_ssize_t made = 0;
    while (made < n && items[made] != NULL) {
        made++;
    }
    if (made == n) {
        tuple = PyTuple_New(n);
    }
    for (Py_ssize_t k = 0; k < made; k++) {
        if (tuple != NULL) {
            PyTuple_SET_ITEM(tuple, k, items[k]);
        }
        else {
            Py_DECREF(items[k]);
        }
    }
    return tuple;
}

static PyObject *
id_list(const uchar *text, const BybitRun *run)
{
    const size_t *spans = (const size_t *)run->ids.buf;
    PyObject *ids = PyList_New((Py_ssize_t)run->count);
    for (size_t k = 0; ids != NULL && k < run->count; k++) {
        const char *start = (const char *)text + spans[2 * k];
        PyObject *id = PyUnicode_DecodeUTF8(start, (Py_ssize_t)spans[2 * k + 1], NULL);
        if (id == NULL) {
            Py_CLEAR(ids);
            break;
        }
        PyList_SET_ITEM(ids, (Py_ssize_t)k, id);
    }
    return ids;
}

static PyObject *
bybit_result(const uchar *text, const BybitRun *run, const Slot *topic)
{
    /* each made only if the one before was: no C API call with an exception pending */
    PyObject *items[5] = {NULL};
    (void)((items[0] = PyUnicode_DecodeUTF8((const char *)topic->s, (Py_ssize_t)topic->n, NULL))
           && (items[1] = PyBytes_FromStringAndSize((const char *)run->wire.buf, (Py_ssize_t)run->wire.len))
           && (items[2] = id_list(text, run)) && (items[3] = PyLong_FromLongLong(run->last_time_ms))
           && (items[4] = PyLong_FromSsize_t(run->last_offset)));
    return tuple_of(items, 5);
}

PyDoc_STRVAR(bybit_trades_doc,
"bybit_trades(text, receive_ns, /)\n--\n\n"
"A Bybit v5 publicTrade push as (topic, wire, ids, last_time_ms, last_offset), or None when\n"
"the frame is anything but the simple, fully valid case (the Python parser handles it then).");

static PyObject *
bybit_trades(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const uchar *text;
    size_t size;
    BybitRun run;
    Slot topic = {0};
    PyObject *result;
    int got = frame_args("bybit_trades", args, nargs, &text, &size, &run.receive_ns);
    if (got <= 0) {
        return got < 0 ? NULL : Py_NewRef(Py_None);
    }
    run.event_ms = 0;
    run.count = 0;
    run.last_time_ms = 0;
    run.last_offset = 0;
    /* ~100 wire bytes for ~170 text bytes per row: the text length rarely needs a second buffer */
    if (buffer_init(&run.wire, size) < 0 || buffer_init(&run.ids, 16 * sizeof(size_t)) < 0) {
        PyMem_Free(run.wire.buf);
        return PyErr_NoMemory();
    }
    if (bybit_frame(text, size, &run, &topic) < 0) {
        result = no_memory_or_none(run.wire.no_memory ? &run.wire : &run.ids);
    }
    else {
        result = bybit_result(text, &run, &topic);
    }
    PyMem_Free(run.wire.buf);
    PyMem_Free(run.ids.buf);
    return result;
}

/* ---- Binance trade / aggTrade ------------------------------------------------------------------ */

enum { B_E, B_EVENT_TIME, B_S, B_T, B_A, B_P, B_Q, B_TIME, B_M, B_X, PAYLOAD_KEYS };

static int
payload_key(const uchar *k, size_t n)
{
    if (n != 1) {
        return -1;
    }
    switch (k[0]) {
    case 'e': return B_E;
    case 'E': return B_EVENT_TIME;
    case 's': return B_S;
    case 't': return B_T;
    case 'a': return B_A;
    case 'p': return B_P;
    case 'q': return B_Q;
    case 'T': return B_TIME;
    case 'm': return B_M;
    case 'X': return B_X;
    default: return -1;
    }
}

/* An object's members (c->p at '{') into the payload slots; with `inner` non-NULL (the top level)
 * a "data" object goes into `inner` instead. */
static int
binance_object(Cursor *c, Slot *f, Slot *inner, int *data_seen, int depth)
{
    const uchar *key;
    size_t n;
    int more;
    c->p++;
    if (peek(c) == '}') {
        return DECLINE;
    }
    do {
        if (scan_key(c, &key, &n) < 0) {
            return DECLINE;
        }
        int slot = payload_key(key, n);
        if (slot >= 0) {
            if (scan_slot(c, &f[slot], depth) < 0) {
                return DECLINE;
            }
        }
        else if (inner != NULL && key_is(key, n, "data", 4)) {
            if (*data_seen || peek(c) != '{' || binance_object(c, inner, NULL, NULL, depth + 1) < 0) {
                return DECLINE;
            }
            *data_seen = 1;
        }
        else if (skip_value(c, depth) < 0) {
            return DECLINE;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

/* Decimal text of an int64 into buf (20 bytes); returns its length. */
static size_t
int64_text(int64_t v, uchar *buf)
{
    uchar digits[20];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (uchar)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        buf[k++] = '-';
    }
    while (n) {
        buf[k++] = digits[--n];
    }
    return k;
}

PyDoc_STRVAR(binance_trade_doc,
"binance_trade(text, receive_ns, /)\n--\n\n"
"A Binance trade or aggTrade event (combined-stream or raw) as (symbol, wire, [trade_id], time_ms, 0),\n"
"the shape of bybit_trades, or None when the frame is anything but the simple, fully valid case.");

static PyObject *
binance_trade(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const uchar *text;
    size_t size;
    int64_t receive_ns;
    Slot top[PAYLOAD_KEYS], inner[PAYLOAD_KEYS];
    int data_seen = 0;
    TradeFields t;
    uchar id_text[20];
    int got = frame_args("binance_trade", args, nargs, &text, &size, &receive_ns);
    if (got <= 0) {
        return got < 0 ? NULL : Py_NewRef(Py_None);
    }
    for (int k = 0; k < PAYLOAD_KEYS; k++) {
        top[k].type = inner[k].type = ABSENT;
    }
    Cursor c = {text, text + size};
    if (peek(&c) != '{' || binance_object(&c, top, inner, &data_seen, 1) != 0 || peek(&c) != 0
        || c.p != c.end) {
        Py_RETURN_NONE;
    }
    const Slot *f = data_seen ? inner : top;
    const Slot *e = &f[B_E];
    if (!plain_string(e)) {
        Py_RETURN_NONE;
    }
    if (key_is(e->s, e->n, "trade", 5)) {
        t.aggregated = 0;
    }
    else if (key_is(e->s, e->n, "aggTrade", 8)) {
        t.aggregated = 1;
    }
    else {
        Py_RETURN_NONE;
    }
    const Slot *id = &f[t.aggregated ? B_A : B_T];
    if (!plain_string(&f[B_S]) || id->type != V_INT || f[B_TIME].type != V_INT
        || (f[B_EVENT_TIME].type != ABSENT && f[B_EVENT_TIME].type != V_INT) || !is_decimal(&f[B_P])
        || !is_decimal(&f[B_Q]) || (f[B_M].type != V_TRUE && f[B_M].type != V_FALSE)
        || optional_text(&f[B_X], &t.execution_type, &t.execution_type_n) < 0) {
        Py_RETURN_NONE;
    }
    t.trade_id = id_text;
    t.trade_id_n = int64_text(id->i, id_text);
    t.price = f[B_P].s;
    t.price_n = f[B_P].n;
    t.size = f[B_Q].s;
    t.size_n = f[B_Q].n;
    t.side = f[B_M].type == V_TRUE ? SIDE_SELL : SIDE_BUY; /* m: buyer is maker, so the taker sold */
    t.exchange_time_ms = f[B_TIME].i;
    t.receive_time_ns = receive_ns;
    t.event_time_ms = f[B_EVENT_TIME].type == V_INT ? f[B_EVENT_TIME].i : 0;
    t.block_trade = 0;
    t.rpi = 0;
    t.cross_sequence = 0;
    t.tick_direction = NULL;
    t.tick_direction_n = 0;
    /* one trade: a stack buffer unless its strings are long */
    uchar wire[512];
    Buffer b = {wire, 0, sizeof wire, 0};
    if (1 + 10 + trade_length(&t) > sizeof wire) {
        if (buffer_init(&b, 1 + 10 + trade_length(&t)) < 0) {
            return PyErr_NoMemory();
        }
    }
    append_trade(&b, &t);
    /* the same shape as bybit_trades: (symbol, wire, [trade id], time, last offset 0) */
    PyObject *items[5] = {NULL};
    (void)((items[0] = PyUnicode_DecodeUTF8((const char *)f[B_S].s, (Py_ssize_t)f[B_S].n, NULL))
           && (items[1] = PyBytes_FromStringAndSize((const char *)b.buf, (Py_ssize_t)b.len))
           && (items[2] = PyList_New(1)) && (items[3] = PyLong_FromLongLong(f[B_TIME].i))
           && (items[4] = PyLong_FromLong(0)));
    PyObject *trade_id = items[4] != NULL ? PyLong_FromLongLong(id->i) : NULL;
    if (trade_id != NULL) {
        PyList_SET_ITEM(items[2], 0, trade_id);
    }
    else {
        for (int k = 0; k < 5; k++) {
            Py_XDECREF(items[k]);
            items[k] = NULL;
        }
    }
    PyObject *result = tuple_of(items, 5);
    if (b.buf != wire) {
        PyMem_Free(b.buf);
    }
    return result;
}

/* ---- wire_offset ------------------------------------------------------------------------------- */

PyDoc_STRVAR(wire_offset_doc,
"wire_offset(wire, n, /)\n--\n\n"
"Byte offset of the n-th (0-based) framed entry (0x12, varint length, bytes) of `wire`; n equal to\n"
"the number of entries gives len(wire). ValueError if the wire is malformed or n is out of range.");

static PyObject *
wire_offset(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "wire_offset() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyLong_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "n must be int, not %.100s", Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    Py_ssize_t wanted = PyLong_AsSsize_t(args[1]);
    if (wanted == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        wanted = -1; /* reported as out of range below */
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL; /* TypeError: not bytes-like */
    }
    const uchar *p = view.buf;
    size_t size = (size_t)view.len, at = 0;
    Py_ssize_t entry = 0, found = -1;
    const char *problem = NULL;
    /* The whole wire is checked, so that a run is never cut inside a corrupt entry. */
    while (at < size) {
        if (entry == wanted) {
            found = (Py_ssize_t)at;
        }
        if (p[at] != TRADE_KEY) {
            problem = "entry does not start with the 0x12 key";
            break;
        }
        uint64_t length = 0;
        size_t k = at + 1;
        int shift = 0;
        for (;;) {
            if (k >= size || shift > 63) {
                problem = k >= size ? "entry length is cut off" : "entry length varint is too long";
                break;
            }
            uchar byte = p[k++];
            length |= (uint64_t)(byte & 0x7F) << shift;
            if (!(byte & 0x80)) {
                break;
            }
            shift += 7;
        }
        if (problem != NULL) {
            break;
        }
        if (length > size - k) {
            problem = "entry is longer than the rest of the wire";
            break;
        }
        at = k + (size_t)length;
        entry++;
    }
    PyBuffer_Release(&view);
    if (problem != NULL) {
        PyErr_Format(PyExc_ValueError, "malformed wire at entry %zd (byte %zu): %s", entry, at, problem);
        return NULL;
    }
    if (wanted == entry) {
        found = (Py_ssize_t)size;
    }
    if (wanted < 0 || found < 0) {
        PyErr_Format(PyExc_ValueError, "entry %R out of range: the wire has %zd entries", args[1], entry);
        return NULL;
    }
    return PyLong_FromSsize_t(found);
}

/* ---- module ------------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"bybit_trades", (PyCFunction)(void (*)(void))bybit_trades, METH_FASTCALL, bybit_trades_doc},
    {"binance_trade", (PyCFunction)(void (*)(void))binance_trade, METH_FASTCALL, binance_trade_doc},
    {"wire_offset", (PyCFunction)(void (*)(void))wire_offset, METH_FASTCALL, wire_offset_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "marketdata.collector._fastframes",
    .m_doc = "Exchange trade frames (JSON text) straight to TradeBatch.trades wire bytes; None declines.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__fastframes(void)
{
    return PyModuleDef_Init(&module_def);
}
