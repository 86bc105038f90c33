/*
 * text/bpe.c — CLIP's byte-level BPE tokenizer (interface and semantics in
 * tokenizer.h).
 *
 * Layout: a string->int open-addressing table serves both the vocabulary
 * (token -> id) and the merge ranks ("a b" -> rank); an id->token array
 * serves decoding. Text is handled as an array of code points from cleanup
 * to pre-tokenisation, and each piece goes back to UTF-8 bytes for BPE,
 * because BPE works on bytes while the pattern classes work on characters.
 * BPE per piece is the textbook quadratic loop (find the lowest-ranked
 * adjacent pair, merge every occurrence, repeat); pieces longer than
 * BPE_MAX_PIECE bytes are merged in chunks of that size so that one huge
 * "word" cannot make a query cost seconds (CLIP itself has no such cap; no
 * real query comes near it).
 *
 * Unicode character data (general categories, lower-case mappings,
 * canonical and compatibility decompositions, composition) comes from
 * utf8proc's tables through its per-code-point functions; nothing it
 * allocates is kept (NFC works on our own xmalloc'd buffers). White_Space
 * and the few Case_Ignorable/Cased code points that are not a matter of
 * category or mapping are listed here, as utf8proc has no such properties.
 */
#include "text/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

#include "util/xalloc.h"

#define BPE_MAX_PIECE 1024
#define TEXT_MAX_ID (1 << 24)
#define SOT_STR "<|startoftext|>"
#define EOT_STR "<|endoftext|>"
#define EOW_STR "</w>"

/* ---- string -> int table ------------------------------------------------ */

typedef struct {
    char **keys; /* owned */
    int *vals;
    size_t cap; /* power of two */
    size_t n;
} strmap;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void strmap_free(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Slot of key (s, n): its own slot when present, else the empty one to use. */
static size_t strmap_slot(const strmap *m, const char *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & (m->cap - 1);
    while (m->keys[i] != NULL) {
        if (strlen(m->keys[i]) == n && memcmp(m->keys[i], s, n) == 0)
            return i;
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

static void strmap_grow(strmap *m)
{
    strmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->keys = xcalloc(m->cap, sizeof *m->keys);
    m->vals = xcalloc(m->cap, sizeof *m->vals);
    for (size_t i = 0; i < old.cap; i++) {
        if (old.keys[i] == NULL)
            continue;
        size_t j = strmap_slot(m, old.keys[i], strlen(old.keys[i]));
        m->keys[j] = old.keys[i];
        m->vals[j] = old.vals[i];
    }
    free(old.keys);
    free(old.vals);
}

/* Inserts key (s, n) -> v unless present; returns 1 when inserted. */
static int strmap_put(strmap *m, const char *s, size_t n, int v)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m);
    size_t i = strmap_slot(m, s, n);
    if (m->keys[i] != NULL)
        return 0;
    char *k = xmalloc(n + 1);
    memcpy(k, s, n);
    k[n] = '\0';
    m->keys[i] = k;
    m->vals[i] = v;
    m->n++;
    return 1;
}

/* Value of key (s, n), or -1. */
static int strmap_get(const strmap *m, const char *s, size_t n)
{
    if (m->cap == 0)
        return -1;
    size_t i = strmap_slot(m, s, n);
    return m->keys[i] != NULL ? m->vals[i] : -1;
}

/* ---- the tokenizer object ------------------------------------------------ */

struct text_tokenizer {
    strmap vocab;  /* token -> id */
    strmap merges; /* "a b" -> rank */
    char **by_id;  /* id -> token, borrowed from vocab.keys; NULL gaps */
    int nids;      /* one past the largest id */
    int nmerges;
    int sot, eot;
    int byte_id[256]; /* id of each byte symbol, and with "</w>" */
    int byte_eow_id[256];
};

/* ---- GPT-2 bytes_to_unicode -------------------------------------------- */

static int byte_printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* Code point that bytes_to_unicode maps byte b to. */
static unsigned byte_cp(unsigned b)
{
    if (byte_printable(b))
        return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!byte_printable(c))
            n++;
    return 256 + n;
}

static int utf8_put(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int text_byte_symbol(uint8_t b, char out[4])
{
    return utf8_put(byte_cp(b), out);
}

int text_byte_rank(uint8_t b)
{
    int r = 0;
    if (byte_printable(b)) {
        for (unsigned c = 0; c < b; c++)
            r += byte_printable(c);
        return r;
    }
    for (unsigned c = 0; c < 256; c++)
        r += byte_printable(c);
    for (unsigned c = 0; c < b; c++)
        r += !byte_printable(c);
    return r;
}

/* ---- loading ------------------------------------------------------------- */

/* Reads `path` whole (through zlib, so gzip is undone when present). */
static int read_file(const char *path, char **buf, size_t *len, err_t *e)
{
    *buf = NULL;
    *len = 0;
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        return err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", path,
                       errno ? strerror(errno) : "cannot open");
    size_t cap = 1 << 16, n = 0;
    char *b = xmalloc(cap + 1);
    int rc = ERR_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= TEXT_MAX_VOCAB_BYTES) {
                rc = err_set(e, ERR_TOOBIG, "%s: larger than %u bytes", path,
                             (unsigned)TEXT_MAX_VOCAB_BYTES);
                break;
            }
            cap *= 2;
            b = xrealloc(b, cap + 1);
        }
        int got = gzread(f, b + n, (unsigned)(cap - n));
        if (got < 0) {
            int zerr;
            rc = err_set(e, ERR_FORMAT, "%s: %s", path, gzerror(f, &zerr));
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    gzclose(f);
    if (rc != ERR_OK) {
        free(b);
        return rc;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return ERR_OK;
}

static int add_token(text_tokenizer *t, const char *s, size_t n, int id)
{
    if (id < 0 || id >= TEXT_MAX_ID) /* ids size the id->token array */
        return 0;
    strmap_put(&t->vocab, s, n, id);
    if (id + 1 > t->nids)
        t->nids = id + 1;
    return 1;
}

/* Adds merge "a b" of length n with the next rank. Returns 0 when malformed. */
static int add_merge(text_tokenizer *t, const char *s, size_t n)
{
    const char *sp = memchr(s, ' ', n);
    if (sp == NULL || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
        return 0;
    if (strmap_put(&t->merges, s, n, t->nmerges))
        t->nmerges++;
    return 1;
}

/* Fills by_id, byte ids and specials; checks that every byte symbol exists. */
static int finish(text_tokenizer *t, const char *what, err_t *e)
{
    t->by_id = xcalloc((size_t)t->nids + 1, sizeof *t->by_id);
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] != NULL)
            t->by_id[t->vocab.vals[i]] = t->vocab.keys[i];
    for (unsigned b = 0; b < 256; b++) {
        char sym[16];
        int n = text_byte_symbol((uint8_t)b, sym);
        t->byte_id[b] = strmap_get(&t->vocab, sym, (size_t)n);
        memcpy(sym + n, EOW_STR, sizeof EOW_STR);
        t->byte_eow_id[b] = strmap_get(&t->vocab, sym, strlen(sym));
        if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0)
            return err_set(e, ERR_FORMAT, "%s: vocabulary lacks the symbol of byte 0x%02x", what,
                           b);
    }
    t->sot = strmap_get(&t->vocab, SOT_STR, strlen(SOT_STR));
    t->eot = strmap_get(&t->vocab, EOT_STR, strlen(EOT_STR));
    if (t->sot < 0 || t->eot < 0)
        return err_set(e, ERR_FORMAT, "%s: vocabulary lacks %s", what,
                       t->sot < 0 ? SOT_STR : EOT_STR);
    return ERR_OK;
}

/* OpenAI's simple format: header line, then merges; the vocabulary is derived. */
static int load_simple(text_tokenizer *t, const char *path, err_t *e)
{
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, e);
    if (rc != ERR_OK)
        return rc;
    int id = 0;
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned r = 0; r < 256; r++) {
            unsigned b = 0;
            while (text_byte_rank((uint8_t)b) != (int)r)
                b++;
            char sym[16];
            int n = text_byte_symbol((uint8_t)b, sym);
            if (pass == 1) {
                memcpy(sym + n, EOW_STR, 4);
                n += 4;
            }
            add_token(t, sym, (size_t)n, id++);
        }
    }
    char *p = buf, *end = buf + len;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end; /* skip the header line */
    int line = 2;
    char joined[512];
    while (p < end && t->nmerges < TEXT_SIMPLE_MAX_MERGES) {
        nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n == 0) {
            p = eol + 1;
            line++;
            continue;
        }
        if (n >= sizeof joined || !add_merge(t, p, n)) {
            rc = err_set(e, ERR_FORMAT, "%s:%d: not a merge \"a b\"", path, line);
            goto out;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (p[i] != ' ')
                joined[k++] = p[i];
        add_token(t, joined, k, id++);
        p = eol + 1;
        line++;
    }
    add_token(t, SOT_STR, strlen(SOT_STR), id++);
    add_token(t, EOT_STR, strlen(EOT_STR), id++);
    rc = finish(t, path, e);
out:
    free(buf);
    return rc;
}

/* Adds every entry of a {token: id} object. */
static int load_vocab_obj(text_tokenizer *t, json_t *obj, const char *what, err_t *e)
{
    if (!json_is_object(obj))
        return err_set(e, ERR_FORMAT, "%s: vocab is not an object", what);
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_integer(v) || !add_token(t, k, strlen(k), (int)json_integer_value(v)))
            return err_set(e, ERR_FORMAT, "%s: vocab entry \"%s\" has no valid id", what, k);
    }
    return ERR_OK;
}

static json_t *load_json(const char *path, err_t *e, int *rc)
{
    char *buf;
    size_t len;
    *rc = read_file(path, &buf, &len, e);
    if (*rc != ERR_OK)
        return NULL;
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    free(buf);
    if (root == NULL)
        *rc = err_set(e, ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    return root;
}

/* HF tokenizers' tokenizer.json: model.vocab, model.merges, added_tokens. */
static int load_hf_json(text_tokenizer *t, const char *path, err_t *e)
{
    int rc;
    json_t *root = load_json(path, e, &rc);
    if (root == NULL)
        return rc;
    json_t *model = json_object_get(root, "model");
    json_t *merges = json_object_get(model, "merges");
    if ((rc = load_vocab_obj(t, json_object_get(model, "vocab"), path, e)) != ERR_OK)
        goto out;
    if (!json_is_array(merges)) {
        rc = err_set(e, ERR_FORMAT, "%s: model.merges is not an array", path);
        goto out;
    }
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m)
    {
        char pair[512];
        int ok = 0;
        if (json_is_string(m)) {
            ok = snprintf(pair, sizeof pair, "%s", json_string_value(m)) < (int)sizeof pair;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            ok = snprintf(pair, sizeof pair, "%s %s", json_string_value(json_array_get(m, 0)),
                          json_string_value(json_array_get(m, 1))) < (int)sizeof pair;
        }
        if (!ok || !add_merge(t, pair, strlen(pair))) {
            rc = err_set(e, ERR_FORMAT, "%s: model.merges[%zu] is not a merge \"a b\"", path, i);
            goto out;
        }
    }
    json_t *added = json_object_get(root, "added_tokens");
    json_t *a;
    json_array_foreach(added, i, a)
    {
        json_t *c = json_object_get(a, "content"), *id = json_object_get(a, "id");
        if (json_is_string(c) && json_is_integer(id))
            add_token(t, json_string_value(c), strlen(json_string_value(c)),
                      (int)json_integer_value(id));
    }
    rc = finish(t, path, e);
out:
    json_decref(root);
    return rc;
}

static int load_merges_txt(text_tokenizer *t, const char *path, err_t *e)
{
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, e);
    if (rc != ERR_OK)
        return rc;
    char *p = buf, *end = buf + len;
    int line = 1;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > 0 && !(line == 1 && p[0] == '#') && !add_merge(t, p, n)) {
            rc = err_set(e, ERR_FORMAT, "%s:%d: not a merge \"a b\"", path, line);
            break;
        }
        p = eol + 1;
        line++;
    }
    free(buf);
    return rc;
}

int text_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                     text_tokenizer **out, err_t *e)
{
    *out = NULL;
    text_tokenizer *t = xcalloc(1, sizeof *t);
    int rc;
    json_t *root = load_json(vocab_json, e, &rc);
    if (root == NULL)
        goto out;
    rc = load_vocab_obj(t, root, vocab_json, e);
    json_decref(root);
    if (rc == ERR_OK)
        rc = load_merges_txt(t, merges_txt, e);
    if (rc == ERR_OK)
        rc = finish(t, vocab_json, e);
out:
    if (rc == ERR_OK)
        *out = t;
    else
        text_tokenizer_free(t);
    return rc;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int text_tokenizer_load(const char *path, text_tokenizer **out, err_t *e)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(e, ERR_NOENT, "tokenizer %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/tokenizer.json", path);
        if (exists(a))
            return text_tokenizer_load(a, out, e);
        snprintf(a, sizeof a, "%s/vocab.json", path);
        snprintf(b, sizeof b, "%s/merges.txt", path);
        if (exists(a) && exists(b))
            return text_tokenizer_load_vocab_merges(a, b, out, e);
        snprintf(a, sizeof a, "%s/bpe_simple_vocab_16e6.txt.gz", path);
        if (exists(a))
            return text_tokenizer_load(a, out, e);
        return err_set(e, ERR_NOENT,
                       "%s: no tokenizer.json, vocab.json + merges.txt or "
                       "bpe_simple_vocab_16e6.txt.gz",
                       path);
    }
    text_tokenizer *t = xcalloc(1, sizeof *t);
    int rc = ends_with(path, ".json") ? load_hf_json(t, path, e) : load_simple(t, path, e);
    if (rc == ERR_OK)
        *out = t;
    else
        text_tokenizer_free(t);
    return rc;
}

void text_tokenizer_free(text_tokenizer *t)
{
    if (t == NULL)
        return;
    strmap_free(&t->vocab);
    strmap_free(&t->merges);
    free(t->by_id);
    free(t);
}

int text_tokenizer_vocab_size(const text_tokenizer *t)
{
    return t->nids;
}

int text_tokenizer_merge_count(const text_tokenizer *t)
{
    return t->nmerges;
}

int64_t text_tokenizer_sot(const text_tokenizer *t)
{
    return t->sot;
}

int64_t text_tokenizer_eot(const text_tokenizer *t)
{
    return t->eot;
}

const char *text_tokenizer_token(const text_tokenizer *t, int64_t id)
{
    return id >= 0 && id < t->nids ? t->by_id[id] : NULL;
}

int64_t text_tokenizer_id(const text_tokenizer *t, const char *tok)
{
    return strmap_get(&t->vocab, tok, strlen(tok));
}

/* ---- Unicode character data (utf8proc; see tokenizer.h) ------------------ */

/*
 * \s of the `regex` module that simple_tokenizer.py imports as `re` (used by
 * whitespace_clean and the pattern): Unicode White_Space, a property
 * utf8proc does not expose (it is not a general category), so listed here.
 * Python's own str.isspace(), which strip() uses, also counts U+001C-001F;
 * see cp_strip_space().
 */
static int cp_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* str.isspace(): what basic_clean's and whitespace_clean's strip() remove. */
static int cp_strip_space(uint32_t c)
{
    return cp_space(c) || (c >= 0x1C && c <= 0x1F);
}

/* \p{N}: general category Nd, Nl or No. */
static int cp_number(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* \p{L}: general category Lu, Ll, Lt, Lm or Lo. */
static int cp_letter(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

/*
 * Python's str.lower() of c into out[0..); returns how many code points (1
 * or 2). That is the simple lower-case mapping (utf8proc_tolower) except for
 * SpecialCasing's one unconditional lower-case expansion, İ -> i + U+0307;
 * the conditional final sigma is clean_text's (final_sigma()), and Python
 * ignores SpecialCasing's language-specific rules, as this does.
 */
static int cp_lower(uint32_t c, uint32_t *out)
{
    if (c < 0x80) {
        out[0] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    return 1;
}

/*
 * Unicode's Case_Ignorable: general category Mn, Me, Cf, Lm or Sk, or
 * Word_Break MidLetter, MidNumLet or Single_Quote (the code points listed;
 * Word_Break is not in utf8proc).
 */
static int cp_case_ignorable(uint32_t c)
{
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
        return 1;
    }
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

/*
 * Unicode's Cased (Lowercase, Uppercase or Lt): category Lu, Ll or Lt, or a
 * character with a case mapping (the Roman numerals and circled letters of
 * Other_Lowercase/Other_Uppercase), or one of the few others in those two
 * properties that have no mapping and are not case-ignorable (ª º and the
 * squared and negative squared/circled Latin capitals). The remaining ones
 * are modifier letters (Lm) or marks: case-ignorable, which final_sigma()
 * skips before asking whether a character is cased.
 */
static int cp_cased(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
        return 1;
    if (utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
        utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c)
        return 1;
    return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) ||
           (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

/*
 * Whether the capital sigma cp[i] lower-cases to final ς: CPython's
 * handle_capital_sigma over the cleaned text cp[lo..hi): a cased letter
 * before it and none after it, skipping case-ignorable characters both ways
 * ("ΟΔΟΣ" -> "οδος", "ΣΑ" -> "σα").
 */
static int final_sigma(const uint32_t *cp, size_t lo, size_t hi, size_t i)
{
    size_t j = i;
    while (j > lo && cp_case_ignorable(cp[j - 1]))
        j--;
    if (j == lo || !cp_cased(cp[j - 1]))
        return 0;
    j = i + 1;
    while (j < hi && cp_case_ignorable(cp[j]))
        j++;
    return j == hi || !cp_cased(cp[j]);
}

/*
 * Unicode NFC of cp[0..n), which it frees; returns a new malloc'd array and
 * its length in *n_out. Text below U+0300 is NFC already (no character there
 * decomposes to anything NFC keeps decomposed, nor composes with a
 * following one), so it comes back as it is. Otherwise: each character's
 * canonical decomposition (utf8proc_decompose_char), canonical ordering of
 * combining marks, then utf8proc's composition (UTF8PROC_STABLE, as its
 * utf8proc_NFC).
 */
static uint32_t *nfc(uint32_t *cp, size_t n, size_t *n_out)
{
    size_t i = 0;
    while (i < n && cp[i] < 0x300)
        i++;
    if (i == n) {
        *n_out = n;
        return cp;
    }
    size_t cap = 2 * n + 8, k = 0;
    utf8proc_int32_t *d = xmalloc(cap * sizeof *d);
    for (i = 0; i < n; i++) {
        utf8proc_int32_t one[8]; /* canonical decompositions are at most 4 long */
        utf8proc_ssize_t m =
            utf8proc_decompose_char((utf8proc_int32_t)cp[i], one, 8, UTF8PROC_DECOMPOSE, NULL);
        if (m < 1 || m > 8) { /* not for a valid code point, which cp[i] is */
            one[0] = (utf8proc_int32_t)cp[i];
            m = 1;
        }
        if (k + (size_t)m > cap) {
            cap = 2 * cap + (size_t)m;
            d = xrealloc(d, cap * sizeof *d);
        }
        memcpy(d + k, one, (size_t)m * sizeof *one);
        k += (size_t)m;
    }
    free(cp);
    /* Canonical ordering: a stable sort of each run of non-starters by class. */
    for (size_t p = 0; p + 1 < k;) {
        int c1 = utf8proc_get_property(d[p])->combining_class;
        int c2 = utf8proc_get_property(d[p + 1])->combining_class;
        if (c2 > 0 && c1 > c2) {
            utf8proc_int32_t t = d[p];
            d[p] = d[p + 1];
            d[p + 1] = t;
            p = p > 0 ? p - 1 : p + 1;
        } else {
            p++;
        }
    }
    utf8proc_ssize_t m =
        utf8proc_normalize_utf32(d, (utf8proc_ssize_t)k, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (m >= 0)
        k = (size_t)m;
    *n_out = k;
    return (uint32_t *)d;
}

/* Decodes UTF-8 into code points; invalid or overlong sequences become U+FFFD. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *out)
{
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp = 0xFFFD;
        size_t len = 1;
        if (c < 0x80) {
            cp = c;
        } else if (c >= 0xC2 && c <= 0xF4) {
            size_t need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
            uint32_t v = c & (0x3F >> need);
            size_t j = 1;
            while (j <= need && i + j < n && (s[i + j] & 0xC0) == 0x80) {
                v = (v << 6) | (s[i + j] & 0x3F);
                j++;
            }
            if (j == need + 1) {
                static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
                if (v >= min[need] && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF))
                    cp = v;
                len = j;
            } else {
                len = j; /* a truncated sequence counts as one bad character */
            }
        }
        out[k++] = cp;
        i += len;
    }
    return k;
}

/* ---- cleanup ------------------------------------------------------------ */

static const struct {
    const char *name;
    uint32_t cp;
} html_names[] = {
    {"amp;", '&'},   {"lt;", '<'},  {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''},
    {"nbsp;", 0xA0}, {"AMP;", '&'}, {"LT;", '<'}, {"GT;", '>'},   {"QUOT;", '"'},
};

/* One pass of HTML unescaping over cp[0..n) in place; returns the new length. */
static size_t html_unescape(uint32_t *cp, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cp[i] != '&') {
            cp[k++] = cp[i];
            continue;
        }
        size_t used = 0;
        uint32_t v = 0;
        for (size_t h = 0; h < sizeof html_names / sizeof html_names[0] && !used; h++) {
            size_t L = strlen(html_names[h].name), j = 0;
            while (j < L && i + 1 + j < n && cp[i + 1 + j] == (uint32_t)html_names[h].name[j])
                j++;
            if (j == L) {
                used = L;
                v = html_names[h].cp;
            }
        }
        /* Numeric, as html.unescape reads it: any number of digits, ';' optional. */
        if (!used && i + 2 < n && cp[i + 1] == '#') {
            int hex = cp[i + 2] == 'x' || cp[i + 2] == 'X';
            size_t j = i + 2 + (size_t)hex;
            uint32_t num = 0;
            size_t digits = 0;
            for (; j < n; j++, digits++) {
                uint32_t d = cp[j];
                int dv = d >= '0' && d <= '9'          ? (int)(d - '0')
                         : hex && d >= 'a' && d <= 'f' ? (int)(d - 'a' + 10)
                         : hex && d >= 'A' && d <= 'F' ? (int)(d - 'A' + 10)
                                                       : -1;
                if (dv < 0)
                    break;
                num = num * (hex ? 16 : 10) + (uint32_t)dv;
                if (num > 0x10FFFF)
                    num = 0x110000; /* out of range whatever follows; no overflow */
            }
            if (digits > 0) {
                used = j - i - 1 + (j < n && cp[j] == ';');
                v = (num == 0 || num > 0x10FFFF || (num >= 0xD800 && num <= 0xDFFF)) ? 0xFFFD : num;
            }
        }
        cp[k++] = used ? v : '&';
        i += used;
    }
    return k;
}

/* ---- ftfy.fix_text, the deterministic part --------------------------------
 *
 * basic_clean runs ftfy.fix_text(text) before html.unescape. ftfy 6.x with
 * its default TextFixerConfig does, per '\n'-ended segment and repeated until
 * the segment stops changing: unescape_html ("auto"), fix_encoding (mojibake
 * repair by badness heuristics), then fix_c1_controls, fix_latin_ligatures,
 * fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates,
 * remove_terminal_escapes, remove_control_chars, and NFC. All but
 * fix_encoding are done here, in that order: the character mappings from
 * ftfy's own tables, read off ftfy 6.3.1 (ftfy/__init__.py, ftfy/fixes.py,
 * ftfy/chardata.py), what needs Unicode data (the NFKC forms of
 * fix_character_width, \d, NFC) through utf8proc. fix_encoding, a heuristic,
 * is not (tokenizer.h). fix_surrogates has nothing to do: surrogates cannot
 * arrive in valid UTF-8 and utf8_decode() has already made invalid bytes
 * U+FFFD.
 */

/* fix_c1_controls: U+0080-009F read as the Windows-1252 byte, "sloppily":
 * the five bytes cp1252 leaves undefined stay what they were. */
static const uint16_t c1_cp1252[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

/* fix_latin_ligatures: ftfy's LIGATURES table, all of it. Ligatures of other
 * scripts and ones often written on purpose (æ, œ) are left alone, as ftfy
 * leaves them. */
static const struct {
    uint32_t cp;
    uint32_t to[3]; /* 0-terminated when shorter */
} ligatures[] = {
    {0x0132, {'I', 'J'}},      {0x0133, {'i', 'j'}},      {0x0149, {0x02BC, 'n'}},
    {0x01C4, {'D', 0x017D}},   {0x01C5, {'D', 0x017E}},   {0x01C6, {'d', 0x017E}},
    {0x01C7, {'L', 'J'}},      {0x01C8, {'L', 'j'}},      {0x01C9, {'l', 'j'}},
    {0x01CA, {'N', 'J'}},      {0x01CB, {'N', 'j'}},      {0x01CC, {'n', 'j'}},
    {0x01F1, {'D', 'Z'}},      {0x01F2, {'D', 'z'}},      {0x01F3, {'d', 'z'}},
    {0xFB00, {'f', 'f'}},      {0xFB01, {'f', 'i'}},      {0xFB02, {'f', 'l'}},
    {0xFB03, {'f', 'f', 'i'}}, {0xFB04, {'f', 'f', 'l'}}, {0xFB05, {0x017F, 't'}},
    {0xFB06, {'s', 't'}},
};

/*
 * fix_character_width: ftfy maps U+3000 to ' ' and every U+FF01-FFEF whose
 * NFKC form differs to that form (full-width ASCII and symbols, half-width
 * katakana, voiced sound marks and Hangul). NFKC of one of these is its
 * compatibility decomposition (utf8proc), which is one code point but for
 * U+FFE3 (SPACE + COMBINING MACRON) and already composed; the voiced marks
 * U+FF9E-FF9F and half-width Hangul become combining marks and conjoining
 * jamo that the round's NFC then composes with their neighbours, as in ftfy
 * ("ｶﾞ" -> "ガ"). Writes 1 or 2 code points to `out` (room for 2); returns
 * how many.
 */
static size_t ftfy_width(uint32_t c, uint32_t *out)
{
    out[0] = c;
    if (c == 0x3000) {
        out[0] = ' ';
        return 1;
    }
    if (c < 0xFF01 || c > 0xFFEF)
        return 1;
    if (c <= 0xFF5E) {
        out[0] = c - 0xFEE0;
        return 1;
    }
    utf8proc_int32_t d[4];
    utf8proc_ssize_t m = utf8proc_decompose_char((utf8proc_int32_t)c, d, 4,
                                                 UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, NULL);
    if (m < 1 || m > 2) /* no such character in the range */
        return 1;
    for (utf8proc_ssize_t i = 0; i < m; i++)
        out[i] = (uint32_t)d[i];
    return (size_t)m;
}

/* uncurl_quotes: ftfy's SINGLE_QUOTE_RE [\u02bc\u2018-\u201b] and
 * DOUBLE_QUOTE_RE [\u201c-\u201f]. Primes, guillemets and the full-width
 * quotes (already ASCII by now) are not in them. */
static uint32_t ftfy_quote(uint32_t c)
{
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B))
        return '\'';
    if (c >= 0x201C && c <= 0x201F)
        return '"';
    return c;
}

/* remove_control_chars: ftfy 6.x's CONTROL_CHARS. Tab, LF, FF, CR, the C1
 * range, joiners, bidi controls, musical controls and tag characters stay. */
static int ftfy_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static int is_alnum_ascii(uint32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * ftfy's unescape_html over in[0..n) into out: each match of
 * &#?[0-9A-Za-z]{1,24}; is replaced when it is a name in html_names (the
 * same short list html_unescape() knows; ftfy knows every HTML5 name) or a
 * numeric reference html.unescape reads whole (decimal, or x/X and hex, then
 * the ';'). As ftfy does, a reference whose result is ';' itself is left
 * alone. Returns the output length (<= n).
 */
static size_t ftfy_unescape(const uint32_t *in, size_t n, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        out[k] = in[i];
        if (in[i] != '&')
            goto keep;
        size_t b = i + 1 + (i + 1 < n && in[i + 1] == '#'), e = b;
        while (e < n && e - b < 25 && is_alnum_ascii(in[e]))
            e++;
        if (e == b || e - b > 24 || e >= n || in[e] != ';')
            goto keep;
        uint32_t v = 0;
        int found = 0;
        if (b == i + 1) {
            for (size_t h = 0; h < sizeof html_names / sizeof html_names[0] && !found; h++) {
                const char *nm = html_names[h].name;
                size_t L = strlen(nm) - 1, j = 0; /* without its ';' */
                while (j < L && b + j < e && in[b + j] == (uint32_t)nm[j])
                    j++;
                if (j == L && b + L == e) {
                    found = 1;
                    v = html_names[h].cp;
                }
            }
        } else {
            int hex = in[b] == 'x' || in[b] == 'X';
            size_t j = b + (size_t)hex;
            uint32_t num = 0;
            for (; j < e; j++) {
                uint32_t d = in[j];
                int dv = d >= '0' && d <= '9'          ? (int)(d - '0')
                         : hex && d >= 'a' && d <= 'f' ? (int)(d - 'a' + 10)
                         : hex && d >= 'A' && d <= 'F' ? (int)(d - 'A' + 10)
                                                       : -1;
                if (dv < 0)
                    break;
                num = num * (hex ? 16 : 10) + (uint32_t)dv;
                if (num > 0x10FFFF)
                    num = 0x110000;
            }
            if (j == e && j > b + (size_t)hex) {
                v = (num == 0 || num > 0x10FFFF || (num >= 0xD800 && num <= 0xDFFF)) ? 0xFFFD : num;
                found = v != ';';
            }
        }
        if (found) {
            out[k] = v;
            i = e;
        }
    keep:
        k++;
    }
    return k;
}

/*
 * One round of ftfy's fixers over in[0..n), into a new malloc'd array (room
 * for 3n: a ligature is at most three letters, a width form two code points)
 * whose length goes to *n_out.
 * `unescape` says whether unescape_html applies (see ftfy_fix()).
 */
static uint32_t *ftfy_round(const uint32_t *in, size_t n, int unescape, size_t *n_out)
{
    uint32_t *a = xmalloc((3 * n + 1) * sizeof *a), *b = xmalloc((3 * n + 1) * sizeof *b);
    size_t na = n;
    if (unescape)
        na = ftfy_unescape(in, n, a);
    else
        memcpy(a, in, n * sizeof *in);
    /* C1 controls, ligatures, width, quotes: each character's result goes
     * through the later maps, which is what the fixers one after another do. */
    size_t nb = 0;
    for (size_t i = 0; i < na; i++) {
        uint32_t c = a[i], lig[3] = {c, 0, 0};
        if (c >= 0x80 && c <= 0x9F)
            lig[0] = c = c1_cp1252[c - 0x80];
        for (size_t l = 0; l < sizeof ligatures / sizeof ligatures[0]; l++)
            if (ligatures[l].cp == c)
                memcpy(lig, ligatures[l].to, sizeof lig);
        for (size_t l = 0; l < 3 && (l == 0 || lig[l] != 0); l++) {
            uint32_t w[2];
            size_t nw = ftfy_width(lig[l], w);
            for (size_t j = 0; j < nw; j++)
                b[nb++] = ftfy_quote(w[j]);
        }
    }
    /* fix_line_breaks: CRLF, CR, U+2028, U+2029, U+0085 become LF. */
    na = 0;
    for (size_t i = 0; i < nb; i++) {
        uint32_t c = b[i];
        if (c == '\r' && i + 1 < nb && b[i + 1] == '\n')
            continue;
        a[na++] = (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) ? '\n' : c;
    }
    /* remove_terminal_escapes: ESC '[' (\d|;)* [A-Za-z], Python's \d being
     * any decimal digit (category Nd). */
    nb = 0;
    for (size_t i = 0; i < na; i++) {
        if (a[i] == 0x1B && i + 1 < na && a[i + 1] == '[') {
            size_t j = i + 2;
            while (j < na && (a[j] == ';' || (a[j] >= '0' && a[j] <= '9') ||
                              (a[j] >= 0x80 &&
                               utf8proc_category((utf8proc_int32_t)a[j]) == UTF8PROC_CATEGORY_ND)))
                j++;
            if (j < na && ((a[j] >= 'a' && a[j] <= 'z') || (a[j] >= 'A' && a[j] <= 'Z'))) {
                i = j;
                continue;
            }
        }
        b[nb++] = a[i];
    }
    /* remove_control_chars */
    na = 0;
    for (size_t i = 0; i < nb; i++)
        if (!ftfy_control(b[i]))
            a[na++] = b[i];
    free(b);
    /* normalization: NFC */
    return nfc(a, na, n_out);
}

/*
 * ftfy.fix_text's character fixers over cp[0..n), which it frees; returns a
 * new malloc'd array and its length in *n_out.
 *
 * fix_text works on '\n'-ended segments and turns unescape_html off for a
 * segment containing '<' and, since it keeps the changed config, for every
 * later segment too. None of the fixers here reaches across a '\n', so the
 * text is two runs: up to the start of the first segment with a '<', with
 * unescaping, and the rest without. Each run is fixed until a round changes
 * nothing, as fix_and_explain loops. That ends: after the first round the
 * text holds nothing the maps change (NFC makes none of the characters they
 * map) and NFC is idempotent, so a later round changes something only
 * through unescaping, which shortens the text. NFC per run is NFC per
 * segment: nothing composes or reorders across a '\n'.
 */
static uint32_t *ftfy_fix(uint32_t *cp, size_t n, size_t *n_out)
{
    size_t split = n;
    for (size_t i = 0; i < n; i++)
        if (cp[i] == '<') {
            split = i;
            while (split > 0 && cp[split - 1] != '\n')
                split--;
            break;
        }
    uint32_t *run[2] = {NULL, NULL};
    size_t len[2];
    for (int r = 0; r < 2; r++) {
        const uint32_t *src = r == 0 ? cp : cp + split;
        size_t sn = r == 0 ? split : n - split;
        run[r] = xmalloc((sn + 1) * sizeof *run[r]);
        memcpy(run[r], src, sn * sizeof *src);
        len[r] = sn;
        for (;;) {
            size_t m;
            uint32_t *next = ftfy_round(run[r], len[r], r == 0, &m);
            int same = m == len[r] && memcmp(next, run[r], m * sizeof *next) == 0;
            free(run[r]);
            run[r] = next;
            len[r] = m;
            if (same)
                break;
        }
    }
    free(cp);
    uint32_t *out = xmalloc((len[0] + len[1] + 1) * sizeof *out);
    memcpy(out, run[0], len[0] * sizeof *out);
    memcpy(out + len[0], run[1], len[1] * sizeof *out);
    free(run[0]);
    free(run[1]);
    *n_out = len[0] + len[1];
    return out;
}

/*
 * Cleans text into a malloc'd code point array as basic_clean,
 * whitespace_clean and lower() do: ftfy's character fixes, unescape twice,
 * strip (str.isspace), collapse each \s run to one space, lower-case.
 * Lower-casing can grow the text (İ), so the output has room for twice the
 * input.
 */
static uint32_t *clean_text(const char *text, size_t len, size_t *n_out)
{
    uint32_t *cp = xmalloc((len + 1) * sizeof *cp);
    size_t n = utf8_decode((const unsigned char *)text, len, cp);
    cp = ftfy_fix(cp, n, &n);
    n = html_unescape(cp, n);
    n = html_unescape(cp, n);
    size_t lo = 0, hi = n;
    while (lo < hi && cp_strip_space(cp[lo]))
        lo++;
    while (hi > lo && cp_strip_space(cp[hi - 1]))
        hi--;
    uint32_t *out = xmalloc((2 * (hi - lo) + 1) * sizeof *out);
    size_t k = 0;
    for (size_t i = lo; i < hi; i++) {
        if (cp_space(cp[i])) {
            if (!cp_space(cp[i - 1])) /* cp[lo] is not a space, so i > lo */
                out[k++] = ' ';
            continue;
        }
        if (cp[i] == 0x3A3) /* capital sigma: its lower case depends on the context */
            out[k++] = final_sigma(cp, lo, hi, i) ? 0x3C2 : 0x3C3;
        else
            k += (size_t)cp_lower(cp[i], out + k);
    }
    free(cp);
    *n_out = k;
    return out;
}

/* ---- BPE ------------------------------------------------------------------ */

typedef struct {
    int64_t *v;
    size_t n, cap;
} idvec;

static void idvec_push(idvec *iv, int64_t id)
{
    if (iv->n == iv->cap) {
        iv->cap = iv->cap ? iv->cap * 2 : 32;
        iv->v = xrealloc(iv->v, iv->cap * sizeof *iv->v);
    }
    iv->v[iv->n++] = id;
}

/* Pushes the ids of symbol `s`; a symbol absent from the vocabulary (possible
 * only with a hand-made tokenizer.json) falls back to its byte symbols. */
static void push_symbol(const text_tokenizer *t, const char *s, idvec *out)
{
    int id = strmap_get(&t->vocab, s, strlen(s));
    if (id >= 0) {
        idvec_push(out, id);
        return;
    }
    size_t n = strlen(s);
    int eow = ends_with(s, EOW_STR);
    if (eow)
        n -= 4;
    /* Map each symbol code point back to its byte. */
    uint32_t cps[BPE_MAX_PIECE + 8];
    size_t k = utf8_decode((const unsigned char *)s, n, cps);
    for (size_t i = 0; i < k; i++) {
        int b = 0;
        while (b < 256 && byte_cp((unsigned)b) != cps[i])
            b++;
        if (b == 256)
            continue;
        idvec_push(out, (eow && i + 1 == k) ? t->byte_eow_id[b] : t->byte_id[b]);
    }
}

/* BPE-merges the bytes w[0..n) (one pre-token, n <= BPE_MAX_PIECE); `eow`
 * marks the last symbol with "</w>". Appends the ids to `out`. */
static void bpe_word(const text_tokenizer *t, const unsigned char *w, size_t n, int eow, idvec *out)
{
    char **sym = xmalloc(n * sizeof *sym);
    size_t k = n;
    for (size_t i = 0; i < n; i++) {
        char buf[16];
        int L = text_byte_symbol(w[i], buf);
        if (eow && i + 1 == n) {
            memcpy(buf + L, EOW_STR, 5);
            L += 4;
        }
        buf[L] = '\0';
        sym[i] = xstrdup(buf);
    }
    char *key = NULL;
    size_t keycap = 0;
    while (k > 1) {
        int best = INT_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            size_t a = strlen(sym[i]), b = strlen(sym[i + 1]);
            if (a + b + 2 > keycap) {
                keycap = (a + b + 2) * 2;
                key = xrealloc(key, keycap);
            }
            memcpy(key, sym[i], a);
            key[a] = ' ';
            memcpy(key + a + 1, sym[i + 1], b);
            int r = strmap_get(&t->merges, key, a + b + 1);
            if (r >= 0 && r < best) {
                best = r;
                bi = i;
            }
        }
        if (best == INT_MAX)
            break;
        /* Merge every non-overlapping occurrence of the pair, left to right. */
        char *first = xstrdup(sym[bi]), *second = xstrdup(sym[bi + 1]);
        size_t j = 0;
        for (size_t i = 0; i < k; i++) {
            if (i + 1 < k && strcmp(sym[i], first) == 0 && strcmp(sym[i + 1], second) == 0) {
                size_t a = strlen(sym[i]), b = strlen(sym[i + 1]);
                char *m = xmalloc(a + b + 1);
                memcpy(m, sym[i], a);
                memcpy(m + a, sym[i + 1], b + 1);
                free(sym[i]);
                free(sym[i + 1]);
                sym[j++] = m;
                i++;
            } else {
                sym[j++] = sym[i];
            }
        }
        k = j;
        free(first);
        free(second);
    }
    for (size_t i = 0; i < k; i++) {
        push_symbol(t, sym[i], out);
        free(sym[i]);
    }
    free(key);
    free(sym);
}

/* Encodes one pre-token cp[0..n) to UTF-8 and BPEs it (in chunks if long). */
static void bpe_piece(const text_tokenizer *t, const uint32_t *cp, size_t n, idvec *out)
{
    unsigned char *bytes = xmalloc(n * 4 + 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)utf8_put(cp[i], (char *)bytes + len);
    for (size_t off = 0; off < len; off += BPE_MAX_PIECE) {
        size_t m = len - off < BPE_MAX_PIECE ? len - off : BPE_MAX_PIECE;
        bpe_word(t, bytes + off, m, off + m == len, out);
    }
    free(bytes);
}

static int match_ascii(const uint32_t *cp, size_t n, size_t i, const char *s)
{
    size_t L = strlen(s);
    if (i + L > n)
        return 0;
    for (size_t j = 0; j < L; j++)
        if (cp[i + j] != (uint32_t)(unsigned char)s[j])
            return 0;
    return 1;
}

/* Pre-tokenises and BPEs `text`, stopping once `out` holds `limit` ids. */
static int encode(const text_tokenizer *t, const char *text, size_t len, size_t limit, idvec *out,
                  err_t *e)
{
    if (len > TEXT_MAX_QUERY_BYTES)
        return err_set(e, ERR_TOOBIG, "text of %zu bytes exceeds %u", len,
                       (unsigned)TEXT_MAX_QUERY_BYTES);
    size_t n;
    uint32_t *cp = clean_text(text, len, &n);
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < n && out->n < limit) {
        if (match_ascii(cp, n, i, SOT_STR)) {
            idvec_push(out, t->sot);
            i += strlen(SOT_STR);
            continue;
        }
        if (match_ascii(cp, n, i, EOT_STR)) {
            idvec_push(out, t->eot);
            i += strlen(EOT_STR);
            continue;
        }
        size_t j = i;
        for (size_t c = 0; c < sizeof contractions / sizeof contractions[0] && j == i; c++)
            if (match_ascii(cp, n, i, contractions[c]))
                j = i + strlen(contractions[c]);
        if (j == i) {
            if (cp_space(cp[i])) {
                i++;
                continue;
            }
            if (cp_letter(cp[i])) {
                while (j < n && cp_letter(cp[j]))
                    j++;
            } else if (cp_number(cp[i])) {
                j = i + 1;
            } else {
                while (j < n && !cp_space(cp[j]) && !cp_letter(cp[j]) && !cp_number(cp[j]))
                    j++;
            }
        }
        bpe_piece(t, cp + i, j - i, out);
        i = j;
    }
    free(cp);
    return ERR_OK;
}

int text_encode(const text_tokenizer *t, const char *text, size_t len, int64_t **ids, size_t *n,
                err_t *e)
{
    idvec iv = {0};
    *ids = NULL;
    *n = 0;
    int rc = encode(t, text, len, SIZE_MAX, &iv, e);
    if (rc != ERR_OK) {
        free(iv.v);
        return rc;
    }
    *ids = iv.v;
    *n = iv.n;
    return ERR_OK;
}

int text_tokenize(const text_tokenizer *t, const char *text, size_t len, int64_t *ids, size_t ctx,
                  int64_t pad_id, size_t *ntok, err_t *e)
{
    if (ctx < 2)
        return err_set(e, ERR_INVAL, "context length %zu < 2", ctx);
    idvec iv = {0};
    idvec_push(&iv, t->sot);
    /* Collecting ctx ids is enough: the row keeps at most ctx - 1 of them. */
    int rc = encode(t, text, len, ctx, &iv, e);
    if (rc != ERR_OK) {
        free(iv.v);
        return rc;
    }
    size_t used = iv.n + 1 <= ctx ? iv.n + 1 : ctx;
    memcpy(ids, iv.v, (used - 1) * sizeof *ids);
    ids[used - 1] = t->eot;
    for (size_t i = used; i < ctx; i++)
        ids[i] = pad_id;
    if (ntok != NULL)
        *ntok = used;
    free(iv.v);
    return ERR_OK;
}
