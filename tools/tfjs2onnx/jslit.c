/*
 * tools/tfjs2onnx/jslit.c — reading models that ship as JavaScript.
 *
 * nsfwjs wraps its model.json and weight shards in browserify bundles: the
 * model is an object literal with unquoted keys and minified numbers, the
 * shards are base64 strings. Running them under node would work but makes the
 * converter depend on a JS engine and trust the package's code; instead this
 * file converts the one literal to JSON with a small recursive-descent
 * rewriter and decodes base64 itself. Also here: float16 to float32.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "t2o.h"
#include "util/xalloc.h"

#define JS_MAX_DEPTH 128

typedef struct {
    const char *s;
    size_t len, pos;
    char *out;
    size_t olen, ocap;
    err_t *e;
} jsconv;

static void out_reserve(jsconv *c, size_t n)
{
    if (c->olen + n + 1 <= c->ocap)
        return;
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + n + 1)
        cap *= 2;
    c->out = xrealloc(c->out, cap);
    c->ocap = cap;
}

static void out_ch(jsconv *c, char ch)
{
    out_reserve(c, 1);
    c->out[c->olen++] = ch;
}

static void out_str(jsconv *c, const char *s, size_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->olen, s, n);
    c->olen += n;
}

static int peek(const jsconv *c)
{
    return c->pos < c->len ? (unsigned char)c->s[c->pos] : -1;
}

/* Skips whitespace and JS comments. */
static void skip_ws(jsconv *c)
{
    for (;;) {
        while (c->pos < c->len && isspace((unsigned char)c->s[c->pos]))
            c->pos++;
        if (c->pos + 1 < c->len && c->s[c->pos] == '/' && c->s[c->pos + 1] == '/') {
            while (c->pos < c->len && c->s[c->pos] != '\n')
                c->pos++;
        } else if (c->pos + 1 < c->len && c->s[c->pos] == '/' && c->s[c->pos + 1] == '*') {
            const char *end = NULL;
            if (c->pos + 2 < c->len) {
                for (size_t i = c->pos + 2; i + 1 < c->len; i++)
                    if (c->s[i] == '*' && c->s[i + 1] == '/') {
                        end = c->s + i;
                        break;
                    }
            }
            c->pos = end ? (size_t)(end - c->s) + 2 : c->len;
        } else {
            return;
        }
    }
}

static int fail(jsconv *c, const char *what)
{
    return err_set(c->e, ERR_FORMAT, "js literal: %s at byte %zu", what, c->pos);
}

static int is_ident_start(int ch)
{
    return ch == '_' || ch == '$' || (ch >= 0 && isalpha(ch));
}

static int is_ident_char(int ch)
{
    return is_ident_start(ch) || (ch >= 0 && isdigit(ch));
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Copies a '...' or "..." literal as a JSON string. */
static int conv_string(jsconv *c)
{
    char q = c->s[c->pos++];
    out_ch(c, '"');
    while (c->pos < c->len) {
        unsigned char ch = (unsigned char)c->s[c->pos++];
        if (ch == (unsigned char)q) {
            out_ch(c, '"');
            return ERR_OK;
        }
        if (ch == '\\') {
            if (c->pos >= c->len)
                break;
            char esc = c->s[c->pos++];
            char buf[16];
            switch (esc) {
            case '\'':
                out_ch(c, '\'');
                break;
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                out_ch(c, '\\');
                out_ch(c, esc);
                break;
            case 'u':
                out_str(c, "\\u", 2);
                break;
            case 'x': {
                if (c->pos + 2 > c->len)
                    return fail(c, "short \\x escape");
                int hi = hexval(c->s[c->pos]), lo = hexval(c->s[c->pos + 1]);
                if (hi < 0 || lo < 0)
                    return fail(c, "bad \\x escape");
                c->pos += 2;
                snprintf(buf, sizeof buf, "\\u%04x", hi * 16 + lo);
                out_str(c, buf, 6);
                break;
            }
            case '0':
                out_str(c, "\\u0000", 6);
                break;
            case '\n':
                break; /* line continuation */
            default:
                out_ch(c, esc);
                break;
            }
            continue;
        }
        if (ch == '"') {
            out_str(c, "\\\"", 2);
        } else if (ch < 0x20) {
            char buf[16];
            snprintf(buf, sizeof buf, "\\u%04x", ch);
            out_str(c, buf, 6);
        } else {
            out_ch(c, (char)ch);
        }
    }
    return fail(c, "unterminated string");
}

/* Rewrites a JS number (".5", "-.1", "5.", "1e-3", "+2") in JSON form. */
static int conv_number(jsconv *c)
{
    if (peek(c) == '-') {
        out_ch(c, '-');
        c->pos++;
    } else if (peek(c) == '+') {
        c->pos++;
    }
    size_t start = c->pos;
    while (c->pos < c->len && isdigit((unsigned char)c->s[c->pos]))
        c->pos++;
    size_t nint = c->pos - start;
    if (nint == 0) {
        out_ch(c, '0');
    } else {
        /* JSON forbids leading zeros: drop all but the last. */
        size_t skip = 0;
        while (skip + 1 < nint && c->s[start + skip] == '0')
            skip++;
        out_str(c, c->s + start + skip, nint - skip);
    }
    size_t nfrac = 0;
    if (peek(c) == '.') {
        c->pos++;
        size_t fs = c->pos;
        while (c->pos < c->len && isdigit((unsigned char)c->s[c->pos]))
            c->pos++;
        nfrac = c->pos - fs;
        if (nfrac > 0) {
            out_ch(c, '.');
            out_str(c, c->s + fs, nfrac);
        }
    }
    if (nint == 0 && nfrac == 0)
        return fail(c, "bad number");
    if (peek(c) == 'e' || peek(c) == 'E') {
        c->pos++;
        out_ch(c, 'e');
        if (peek(c) == '-' || peek(c) == '+')
            out_ch(c, c->s[c->pos++]);
        size_t es = c->pos;
        while (c->pos < c->len && isdigit((unsigned char)c->s[c->pos]))
            c->pos++;
        if (c->pos == es)
            return fail(c, "bad exponent");
        out_str(c, c->s + es, c->pos - es);
    }
    if (is_ident_char(peek(c)))
        return fail(c, "unsupported number form");
    return ERR_OK;
}

static int match_word(jsconv *c, const char *w)
{
    size_t n = strlen(w);
    if (c->pos + n > c->len || memcmp(c->s + c->pos, w, n) != 0)
        return 0;
    if (c->pos + n < c->len && is_ident_char((unsigned char)c->s[c->pos + n]))
        return 0;
    c->pos += n;
    return 1;
}

static int conv_value(jsconv *c, int depth);

static int conv_key(jsconv *c)
{
    int ch = peek(c);
    if (ch == '"' || ch == '\'')
        return conv_string(c);
    if (is_ident_start(ch) || (ch >= 0 && isdigit(ch))) {
        size_t st = c->pos;
        while (is_ident_char(peek(c)))
            c->pos++;
        out_ch(c, '"');
        out_str(c, c->s + st, c->pos - st);
        out_ch(c, '"');
        return ERR_OK;
    }
    return fail(c, "expected a key");
}

static int conv_container(jsconv *c, int depth, char open, char close)
{
    int rc;
    c->pos++;
    out_ch(c, open);
    int first = 1;
    for (;;) {
        skip_ws(c);
        if (peek(c) == close) {
            c->pos++;
            out_ch(c, close);
            return ERR_OK;
        }
        if (!first) {
            if (peek(c) != ',')
                return fail(c, open == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
            c->pos++;
            skip_ws(c);
            if (peek(c) == close)
                continue; /* trailing comma */
            out_ch(c, ',');
        }
        first = 0;
        if (open == '{') {
            if ((rc = conv_key(c)))
                return rc;
            skip_ws(c);
            if (peek(c) != ':')
                return fail(c, "expected ':'");
            c->pos++;
            out_ch(c, ':');
        }
        if ((rc = conv_value(c, depth + 1)))
            return rc;
    }
}

static int conv_value(jsconv *c, int depth)
{
    if (depth > JS_MAX_DEPTH)
        return fail(c, "nesting too deep");
    skip_ws(c);
    int ch = peek(c);
    if (ch == '{')
        return conv_container(c, depth, '{', '}');
    if (ch == '[')
        return conv_container(c, depth, '[', ']');
    if (ch == '"' || ch == '\'')
        return conv_string(c);
    if (ch == '!') {
        c->pos++;
        skip_ws(c);
        if (peek(c) == '0') {
            c->pos++;
            out_str(c, "true", 4);
            return ERR_OK;
        }
        if (peek(c) == '1') {
            c->pos++;
            out_str(c, "false", 5);
            return ERR_OK;
        }
        return fail(c, "unsupported '!' expression");
    }
    if (ch == '-' || ch == '+' || ch == '.' || (ch >= 0 && isdigit(ch)))
        return conv_number(c);
    if (match_word(c, "true")) {
        out_str(c, "true", 4);
        return ERR_OK;
    }
    if (match_word(c, "false")) {
        out_str(c, "false", 5);
        return ERR_OK;
    }
    if (match_word(c, "null") || match_word(c, "undefined")) {
        out_str(c, "null", 4);
        return ERR_OK;
    }
    if (match_word(c, "void")) {
        skip_ws(c);
        if (peek(c) == '0') {
            c->pos++;
            out_str(c, "null", 4);
            return ERR_OK;
        }
    }
    return fail(c, "unsupported expression");
}

int t2o_js_to_json(const char *src, size_t len, size_t *consumed, char **json, err_t *e)
{
    jsconv c = {.s = src, .len = len, .e = e};
    int rc = conv_value(&c, 0);
    if (rc) {
        free(c.out);
        return rc;
    }
    out_reserve(&c, 0);
    c.out[c.olen] = '\0';
    *json = c.out;
    if (consumed)
        *consumed = c.pos;
    return ERR_OK;
}

int t2o_js_find_export(const char *src, size_t len, size_t *off, err_t *e)
{
    static const char key[] = "exports";
    size_t kl = sizeof key - 1;
    for (size_t i = 0; i + kl < len; i++) {
        if (memcmp(src + i, key, kl) != 0)
            continue;
        size_t p = i + kl;
        while (p < len && isspace((unsigned char)src[p]))
            p++;
        /* `exports=` but not `exports==` / `exports===`. */
        if (p < len && src[p] == '=' && (p + 1 >= len || src[p + 1] != '=')) {
            p++;
            while (p < len && isspace((unsigned char)src[p]))
                p++;
            /* Skip `module.exports=t()` and the like: we want a literal. */
            if (p < len && strchr("{[\"'", src[p])) {
                *off = p;
                return ERR_OK;
            }
        }
    }
    return err_set(e, ERR_FORMAT, "no 'exports=' assignment of a literal in JavaScript wrapper");
}

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

int t2o_base64_decode(const char *src, size_t len, uint8_t **out, size_t *outlen, err_t *e)
{
    uint8_t *buf = malloc(len / 4 * 3 + 3);
    if (!buf)
        return err_set(e, ERR_NOMEM, "base64: cannot allocate %zu bytes", len / 4 * 3 + 3);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (isspace(ch))
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        int v = b64val(ch);
        if (v < 0 || pad) {
            free(buf);
            return err_set(e, ERR_FORMAT, "base64: invalid character 0x%02x at offset %zu", ch,
                           i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6) {
        free(buf);
        return err_set(e, ERR_FORMAT, "base64: dangling character at end");
    }
    *out = buf;
    *outlen = n;
    return ERR_OK;
}

float t2o_f16_to_f32(uint16_t h)
{
    int sign = (h >> 15) & 1;
    int exp = (h >> 10) & 0x1f;
    int man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24); /* zero or subnormal: man * 2^-24 */
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), exp - 25);
    return sign ? -v : v;
}
