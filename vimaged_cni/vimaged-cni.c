/*
 * vimaged-cni, compiled: the CNI plugin as a dumb pipe to vimaged (the cni_exec contract,
 * docs/protocol.md and docs/cni.md). It hands its environment and stdin to the daemon in one
 * request and writes what the daemon answers; all CNI logic runs in the daemon. The Python
 * client (vimaged_cni) behaves the same, byte for byte; this one exists because a
 * Python start is 8-13 ms of every exec (docs/design.md, "Why a compiled CNI client").
 *
 * C99, POSIX.1-2008 and the sockets API only, so that it builds with Linux's gcc and FreeBSD's
 * clang and base libc alike: cc -std=c99 -O2 vimaged-cni.c -o vimaged-cni
 *
 * VIMAGED_CNI_TIMEOUT (seconds) replaces the 120 s deadline: for the tests only.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef DEFAULT_SOCKET /* -DDEFAULT_SOCKET='"/path"' elsewhere (the tests, another run dir) */
#define DEFAULT_SOCKET "/var/run/vimaged.sock"
#endif
#define LATEST "1.1.0"
#define MAX_STDIN 262144  /* the contract: code 7 above it */
#define MAX_ENVIRON 65536 /* the contract: code 4 above it */
#define MAX_FRAME (1UL << 20) /* docs/protocol.md, MAX_FRAME */
#define MAX_DEPTH 512     /* nesting the scanner follows; deeper is "not JSON" */
#define PROTOCOL "1"      /* vimaged.protocol.PROTOCOL_VERSION */

/* The spec's error codes (vimaged_cni/spec.py) */
enum {
    INVALID_ENVIRONMENT = 4,
    INVALID_CONFIG = 7,
    TRY_AGAIN_LATER = 11,
    PLUGIN_NOT_AVAILABLE = 50,
    DAEMON_REFUSED = 100,
    DAEMON_PROTOCOL = 101
};

static const char *version = LATEST; /* cniVersion of every JSON we write */
static int status_verb;              /* CNI_COMMAND=STATUS: "unreachable" is 50, not 11 */
static double timeout = 120.0;

/* ---- growing buffers ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap))) {
            fputs("vimaged-cni: out of memory\n", stderr);
            exit(1);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return; /* nobody reads our stdout: nothing else to tell */
        p += k;
        n -= (size_t)k;
    }
}

/* ---- JSON: a strict scanner (RFC 8259 plus the NaN/Infinity that Python's json takes) ---- */

struct span {
    const char *p;
    size_t n;
};

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* UTF-8 of cp; a lone surrogate (which Python's json accepts) as its 3-byte form, so that
 * escape() writes it back as Python would; *lone is set then. */
static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * The string at p (its opening quote): checked, and decoded into out (when not NULL; it has
 * room for the raw length) with *n its length and *lone set for a lone surrogate. Returns the
 * end of the string or NULL. Raw bytes must be strict UTF-8, as Python decodes stdin first.
 */
static const char *string(const char *p, const char *e, char *out, size_t *n, int *lone)
{
    size_t o = 0;
    char tmp[4];
    for (p++; p < e; ) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            if (n)
                *n = o;
            return p + 1;
        }
        if (c < 0x20)
            return NULL; /* a control character must be escaped (strict mode) */
        if (c == '\\') {
            unsigned cp, lo;
            if (++p >= e)
                return NULL;
            switch (*p++) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (e - p < 4 || !hex4(p, &cp))
                    return NULL;
                p += 4;
                /* a high surrogate and a low one make one code point (RFC 8259 section 7) */
                if (cp >= 0xD800 && cp < 0xDC00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u'
                    && hex4(p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else if (cp >= 0xD800 && cp < 0xE000 && lone) {
                    *lone = 1;
                }
                break;
            default:
                return NULL;
            }
            size_t k = utf8(cp, tmp);
            if (out)
                memcpy(out + o, tmp, k);
            o += k;
            continue;
        }
        size_t k = 1;
        if (c >= 0x80) { /* strict UTF-8: no overlong forms, surrogates or > U+10FFFF */
            unsigned cp;
            if (c >= 0xC2 && c <= 0xDF)
                k = 2, cp = c & 0x1Fu;
            else if (c >= 0xE0 && c <= 0xEF)
                k = 3, cp = c & 0x0Fu;
            else if (c >= 0xF0 && c <= 0xF4)
                k = 4, cp = c & 0x07u;
            else
                return NULL;
            if ((size_t)(e - p) < k)
                return NULL;
            for (size_t i = 1; i < k; i++) {
                if (((unsigned char)p[i] & 0xC0) != 0x80)
                    return NULL;
                cp = cp << 6 | ((unsigned char)p[i] & 0x3Fu);
            }
            if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000)))
                || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
                return NULL;
        }
        if (out)
            memcpy(out + o, p, k);
        o += k;
        p += k;
    }
    return NULL;
}

static const char *literal(const char *p, const char *e, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const char *digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *number(const char *p, const char *e)
{
    if (p < e && *p == '-') {
        if (literal(p, e, "-Infinity"))
            return p + 9;
        p++;
    }
    if (p < e && *p == '0')
        p++;
    else if (!(p = digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = digits(p, e)))
            return NULL;
    }
    return p;
}

static const char *value(const char *p, const char *e, int depth, const char *key,
                         struct span *found);

/* An object or array at p; at the top (key not NULL) the last member named key is found,
 * as Python's json keeps the last of duplicate names. */
static const char *container(const char *p, const char *e, int depth, const char *key,
                             struct span *found)
{
    char close = *p == '{' ? '}' : ']';
    if (depth >= MAX_DEPTH)
        return NULL;
    p = ws(p + 1, e);
    if (p < e && *p == close)
        return p + 1;
    for (;;) {
        int match = 0;
        if (close == '}') {
            char name[16];
            size_t n;
            const char *s = p;
            if (p >= e || *p != '"' || !(p = string(p, e, NULL, &n, NULL)))
                return NULL;
            if (key && n < sizeof name && (size_t)(p - s) < sizeof name) {
                string(s, e, name, &n, NULL);
                match = n == strlen(key) && memcmp(name, key, n) == 0;
            }
            p = ws(p, e);
            if (p >= e || *p != ':')
                return NULL;
            p = ws(p + 1, e);
        }
        const char *start = p;
        if (!(p = value(p, e, depth + 1, NULL, NULL)))
            return NULL;
        if (match) {
            found->p = start;
            found->n = (size_t)(p - start);
        }
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == close ? p + 1 : NULL;
    }
}

static const char *value(const char *p, const char *e, int depth, const char *key,
                         struct span *found)
{
    if (p >= e)
        return NULL;
    switch (*p) {
    case '"': return string(p, e, NULL, NULL, NULL);
    case '{':
    case '[': return container(p, e, depth, key, found);
    case 't': return literal(p, e, "true");
    case 'f': return literal(p, e, "false");
    case 'n': return literal(p, e, "null");
    case 'N': return literal(p, e, "NaN");
    case 'I': return literal(p, e, "Infinity");
    default: return number(p, e);
    }
}

/* The top-level member key of the JSON object doc: 1 and its value's text, 0 when the object
 * has none, -1 when doc is no JSON object. */
static int find(const struct buf *doc, const char *key, struct span *found)
{
    const char *e = doc->p + doc->len, *p = ws(doc->p, e);
    found->p = NULL;
    if (p >= e || *p != '{')
        return -1;
    p = value(p, e, 0, key, found);
    if (!p || ws(p, e) != e)
        return -1;
    return found->p != NULL;
}

/* The top-level string member key, decoded (NUL-terminated, malloc'd): NULL when there is none,
 * it is no string, or it holds a NUL or lone surrogate (when plain is set). */
static char *find_string(const struct buf *doc, const char *key, size_t *n, int plain)
{
    struct span v;
    int lone = 0;
    char *out;
    if (find(doc, key, &v) != 1 || *v.p != '"' || !(out = malloc(v.n + 1)))
        return NULL;
    string(v.p, v.p + v.n, out, n, &lone);
    out[*n] = '\0';
    if (plain && (lone || memchr(out, '\0', *n))) {
        free(out);
        return NULL;
    }
    return out;
}

/* The top-level member key as an integer 0..255, else -1. */
static int find_small_int(const struct buf *doc, const char *key)
{
    struct span v;
    int out = 0;
    if (find(doc, key, &v) != 1 || v.n < 1 || v.n > 3)
        return -1;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9' || (i == 0 && v.p[i] == '0' && v.n > 1))
            return -1;
        out = out * 10 + (v.p[i] - '0');
    }
    return out <= 255 ? out : -1;
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii): the same escapes, lower-case
 * hex, a code point above U+FFFF as a surrogate pair, DEL escaped too. */
static void escape(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    put(b, "\"", 1);
    for (size_t i = 0; i < n; ) {
        unsigned cp = p[i], k = 1;
        if (cp >= 0xC0 && cp < 0xE0 && i + 1 < n)
            cp = (cp & 0x1Fu) << 6 | (p[i + 1] & 0x3Fu), k = 2;
        else if (cp >= 0xE0 && cp < 0xF0 && i + 2 < n)
            cp = (cp & 0x0Fu) << 12 | (p[i + 1] & 0x3Fu) << 6 | (p[i + 2] & 0x3Fu), k = 3;
        else if (cp >= 0xF0 && i + 3 < n)
            cp = (cp & 0x07u) << 18 | (p[i + 1] & 0x3Fu) << 12 | (p[i + 2] & 0x3Fu) << 6
                 | (p[i + 3] & 0x3Fu), k = 4;
        else if (cp >= 0x80)
            cp = 0xFFFD; /* not reached: every string we write is UTF-8 */
        i += k;
        const char *short_ = NULL;
        switch (cp) {
        case '"': short_ = "\\\""; break;
        case '\\': short_ = "\\\\"; break;
        case '\n': short_ = "\\n"; break;
        case '\r': short_ = "\\r"; break;
        case '\t': short_ = "\\t"; break;
        case '\b': short_ = "\\b"; break;
        case '\f': short_ = "\\f"; break;
        }
        if (short_) {
            puts_(b, short_);
        } else if (cp >= 0x20 && cp < 0x7F) {
            char c = (char)cp;
            put(b, &c, 1);
        } else {
            unsigned units[2] = {cp, 0}, count = 1;
            if (cp >= 0x10000) {
                units[0] = 0xD800 + ((cp - 0x10000) >> 10);
                units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
                count = 2;
            }
            for (unsigned u = 0; u < count; u++) {
                char x[6] = {'\\', 'u', hex[units[u] >> 12 & 15], hex[units[u] >> 8 & 15],
                             hex[units[u] >> 4 & 15], hex[units[u] & 15]};
                put(b, x, 6);
            }
        }
    }
    put(b, "\"", 1);
}

/* ---- base64 (RFC 4648, standard alphabet, with padding) ------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64encode(struct buf *b, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0)
                     | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {B64[v >> 18], B64[v >> 12 & 63], i + 1 < n ? B64[v >> 6 & 63] : '=',
                     i + 2 < n ? B64[v & 63] : '='};
        put(b, q, 4);
    }
}

/* Strict: whole quads, the alphabet only, '=' only as the last one or two. 0 when bad. */
static int b64decode(struct buf *b, const char *s, size_t n)
{
    if (n % 4)
        return 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0, pad = 0;
        for (size_t j = 0; j < 4; j++) {
            const char *c = s[i + j] ? strchr(B64, s[i + j]) : NULL;
            if (s[i + j] == '=' && i + 4 == n && j >= 2 && (j == 3 || s[i + 3] == '=')) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!c || pad)
                return 0;
            v = v << 6 | (unsigned)(c - B64);
        }
        unsigned char out[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8),
                                (unsigned char)v};
        put(b, out, 3 - pad);
    }
    return 1;
}

/* ---- the spec's error JSON, and the end -------------------------------------------------- */

/* {"cniVersion": V, "code": C, "msg": M, "details": D} and exit 1, as json.dumps spaces it;
 * no details when there are none, as spec.CniError.result. */
static void fail_n(int code, const char *msg, size_t msg_n, const char *details, size_t det_n)
{
    struct buf b = {0};
    char num[16];
    puts_(&b, "{\"cniVersion\": ");
    escape(&b, version, strlen(version));
    snprintf(num, sizeof num, "%d", code);
    puts_(&b, ", \"code\": ");
    puts_(&b, num);
    puts_(&b, ", \"msg\": ");
    escape(&b, msg, msg_n);
    if (det_n) {
        puts_(&b, ", \"details\": ");
        escape(&b, details, det_n);
    }
    puts_(&b, "}\n");
    write_all(1, b.p, b.len);
    exit(1);
}

static void fail(int code, const char *msg, const char *details)
{
    fail_n(code, msg, strlen(msg), details, details ? strlen(details) : 0);
}

/* The message made of the strings after details, up to a NULL, whatever their length. */
static void failcat(int code, const char *details, ...)
{
    struct buf msg = {0};
    va_list ap;
    va_start(ap, details);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        puts_(&msg, s);
    va_end(ap);
    fail_n(code, msg.p, msg.len, details, strlen(details));
}

static int retry_code(void) { return status_verb ? PLUGIN_NOT_AVAILABLE : TRY_AGAIN_LATER; }

static const char *path; /* the control socket */

static void unreachable(int err)
{
    failcat(retry_code(), "is vimaged running?", "cannot reach vimaged at ", path, ": ",
            strerror(err), (char *)NULL);
}

static void closed_early(void)
{
    fail(retry_code(), "vimaged closed the connection", "is vimaged running?");
}

static void timed_out(void)
{
    char msg[64];
    snprintf(msg, sizeof msg, "vimaged did not answer within %g s", timeout);
    fail(retry_code(), msg, "is vimaged running?");
}

/* A socket error mid-exchange. The daemon's close reaches us as EOF, EPIPE or ECONNRESET
 * depending on who was first; all three are "closed", so the answer does not depend on it. */
static void lost(int err)
{
    if (err == EPIPE || err == ECONNRESET)
        closed_early();
    failcat(retry_code(), "is vimaged running?", "lost vimaged: ", strerror(err), (char *)NULL);
}

/* ---- the connection: one deadline for all of it, poll() with the time left -------------- */

static double deadline;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Wait until fd is ready for events; dies at the deadline. */
static void wait_for(int fd, short events)
{
    for (;;) {
        double left = deadline - now();
        if (left <= 0)
            timed_out();
        struct pollfd p = {fd, events, 0};
        int ms = left > INT_MAX / 1000 ? INT_MAX : (int)(left * 1000) + 1;
        int n = poll(&p, 1, ms);
        if (n > 0)
            return;
        if (n < 0 && errno != EINTR)
            lost(errno);
    }
}

static int connect_to(void)
{
    struct sockaddr_un sa;
    int fd;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        unreachable(ENAMETOOLONG);
    memcpy(sa.sun_path, path, strlen(path));
    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
        unreachable(errno);
    for (;;) {
        /* Linux waits in connect while the listen queue is full, up to SO_SNDTIMEO (then
         * EAGAIN); FreeBSD refuses at once (ECONNREFUSED). */
        double left = deadline - now();
        struct timeval tv;
        if (left <= 0)
            timed_out();
        tv.tv_sec = (time_t)left;
        tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EISCONN)
            break;
        if (errno == EINTR)
            continue; /* an AF_UNIX connect is not left in progress: try again */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)
            timed_out();
        if (errno == EACCES || errno == EPERM)
            failcat(DAEMON_PROTOCOL, "run as root or in vimaged_group", "no permission to use ",
                    path, (char *)NULL);
        unreachable(errno);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        lost(errno);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL); /* EPIPE, not SIGPIPE */
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                wait_for(fd, POLLOUT);
            else if (errno != EINTR)
                lost(errno);
            continue;
        }
        p += k;
        n -= (size_t)k;
    }
}

static void recv_exactly(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k == 0)
            closed_early(); /* before a complete frame: hello, reply or a truncated one */
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                wait_for(fd, POLLIN);
            else if (errno != EINTR)
                lost(errno);
            continue;
        }
        p += k;
        n -= (size_t)k;
    }
}

/* One frame: a 4-byte big-endian length, refused above MAX_FRAME before reading the body. */
static void receive(int fd, struct buf *body)
{
    unsigned char h[4];
    unsigned long n;
    recv_exactly(fd, (char *)h, 4);
    n = (unsigned long)h[0] << 24 | (unsigned long)h[1] << 16 | (unsigned long)h[2] << 8 | h[3];
    if (n > MAX_FRAME) {
        char msg[64];
        snprintf(msg, sizeof msg, "vimaged sent a frame of %lu bytes", n);
        fail(DAEMON_PROTOCOL, msg, NULL);
    }
    body->len = 0;
    put(body, "", 0); /* at least one byte allocated */
    while (body->len < n) { /* the body, in chunks: memory only as it arrives */
        char chunk[16384];
        size_t k = n - body->len < sizeof chunk ? n - body->len : sizeof chunk;
        recv_exactly(fd, chunk, k);
        put(body, chunk, k);
    }
    if (find(body, "reply", &(struct span){0}) < 0)
        fail(DAEMON_PROTOCOL, "vimaged sent no JSON object", NULL);
}

/* An error reply (in place of the hello or of the result): the spec's error JSON, details
 * its code or CODE (ERRNO_NAME); busy and shutting_down mean "try again later". */
static void error_reply(const struct buf *body)
{
    size_t code_n, msg_n, name_n;
    char *code = find_string(body, "code", &code_n, 0);
    char *message = find_string(body, "message", &msg_n, 0);
    char *errno_name = find_string(body, "errno_name", &name_n, 0);
    struct buf d = {0};
    if (!code || !message)
        fail(DAEMON_PROTOCOL, "vimaged sent an error without code or message", NULL);
    put(&d, code, code_n);
    if (errno_name) {
        puts_(&d, " (");
        put(&d, errno_name, name_n);
        puts_(&d, ")");
    }
    fail_n(strcmp(code, "busy") && strcmp(code, "shutting_down") ? DAEMON_REFUSED : retry_code(),
           message, msg_n, d.p, d.len);
}

static char *reply_tag(const struct buf *body)
{
    size_t n;
    char *tag = find_string(body, "reply", &n, 1);
    if (tag && strcmp(tag, "error") == 0)
        error_reply(body);
    return tag;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(void)
{
    struct buf in = {0}, env = {0}, req = {0}, body = {0}, out = {0};
    const char *command = getenv("CNI_COMMAND"), *t = getenv("VIMAGED_CNI_TIMEOUT");
    char chunk[16384], *tag, *s;
    size_t n;
    int fd, code;

    if (t && strtod(t, NULL) > 0 && strtod(t, NULL) < 1e6)
        timeout = strtod(t, NULL);
    /* stdin, bounded: one byte more than allowed says it is too large */
    while (in.len <= MAX_STDIN) {
        ssize_t k = read(0, chunk, sizeof chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        put(&in, chunk, (size_t)k);
    }
    put(&in, "", 0);
    /* cniVersion of our own JSON: stdin's when we support it (an oversized stdin: the latest) */
    if (in.len <= MAX_STDIN && (s = find_string(&in, "cniVersion", &n, 1))) {
        if (strcmp(s, "1.0.0") == 0)
            version = "1.0.0";
        free(s);
    }
    /* VERSION needs no daemon: runtimes ask while it may be down */
    if (command && strcmp(command, "VERSION") == 0) {
        puts_(&out, "{\"cniVersion\": ");
        escape(&out, version, strlen(version));
        puts_(&out, ", \"supportedVersions\": [\"1.0.0\", \"1.1.0\"]}\n");
        write_all(1, out.p, out.len);
        return 0;
    }
    status_verb = command && strcmp(command, "STATUS") == 0;
    if (in.len > MAX_STDIN)
        fail(INVALID_CONFIG, "network configuration over 262144 bytes", NULL);
    /* the environment as /proc/PID/environ lays it out: NAME=VALUE NUL, the first of
     * duplicate names only (what getenv and Python's os.environ see), entries without '='
     * left out (os.environ leaves them out too) */
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '='), *name = *e;
        int dup = 0;
        if (!eq)
            continue;
        for (char **f = environ; f < e && !dup; f++)
            dup = strchr(*f, '=') && strncmp(*f, name, (size_t)(eq - name) + 1) == 0;
        if (!dup)
            put(&env, *e, strlen(*e) + 1);
        if (env.len > MAX_ENVIRON)
            fail(INVALID_ENVIRONMENT, "environment over 65536 bytes", NULL);
    }
    /* the socket: stdin's top-level "socket" (the daemon reports a stdin it cannot decode) */
    path = find_string(&in, "socket", &n, 1);
    if (!path)
        path = DEFAULT_SOCKET;

    puts_(&req, "....{\"op\":\"cni_exec\",\"environ\":\"");
    b64encode(&req, (const unsigned char *)env.p, env.len);
    puts_(&req, "\",\"stdin\":\"");
    b64encode(&req, (const unsigned char *)in.p, in.len);
    puts_(&req, "\"}");
    n = req.len - 4; /* far below MAX_FRAME, by the two limits above */
    req.p[0] = (char)(n >> 24), req.p[1] = (char)(n >> 16), req.p[2] = (char)(n >> 8);
    req.p[3] = (char)n;

    deadline = now() + timeout;
    fd = connect_to();
    receive(fd, &body); /* the daemon speaks first: hello, or an error (busy) */
    tag = reply_tag(&body);
    if (!tag || strcmp(tag, "hello") != 0)
        fail(DAEMON_PROTOCOL, "vimaged sent no hello", NULL);
    {
        struct span v;
        if (find(&body, "protocol", &v) != 1 || v.n != 1 || *v.p != PROTOCOL[0]) {
            char msg[96];
            snprintf(msg, sizeof msg, "vimaged speaks protocol %.*s",
                     v.p ? (int)(v.n > 40 ? 40 : v.n) : 7, v.p ? v.p : "unknown");
            fail(DAEMON_PROTOCOL, msg, NULL);
        }
    }
    send_all(fd, req.p, req.len);
    receive(fd, &body);
    tag = reply_tag(&body);
    if (!tag || strcmp(tag, "cni_result") != 0)
        fail(DAEMON_PROTOCOL, "unexpected reply from vimaged", NULL);
    code = find_small_int(&body, "exit");
    s = find_string(&body, "stdout", &n, 1);
    if (code < 0 || !s || !b64decode(&out, s, n))
        fail(DAEMON_PROTOCOL, "vimaged sent a malformed cni_result", NULL);
    write_all(1, out.p, out.len);
    return code;
}
