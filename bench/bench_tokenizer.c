/*
 * bench/bench_tokenizer.c — CLIP tokenizer speed (src/text/bpe.c): how long
 * text_tokenize takes per query on the real vocabulary.
 *
 *   bench_tokenizer [--vocab PATH] [--corpus FILE] [--queries N] [--passes P]
 *
 * The queries are the strings of tests/tokenizer/corpus.json (the
 * differential test's corpus: ASCII captions, punctuation, entities, Latin,
 * Greek, Cyrillic, CJK, Thai, emoji, a few long texts), cycled to N queries
 * (default 5000), which are all tokenised P times (default 5); the best
 * pass counts, in CPU time of the calling thread. Also timed apart: the ASCII-only queries and the
 * others, since the Unicode work only concerns the latter. Prints one line per set: queries, best
 * pass in ms, microseconds per query, and a checksum of the ids (to compare two builds' outputs).
 * Not a test; the vocabulary is scripts/setup.sh testdata's copy unless --vocab says otherwise.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/tokenizer.h"

/* Thread CPU time: on a shared machine, wall time mostly measures the
 * neighbours; this thread's CPU time does not count time spent waiting. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* Tokenises q[0..n) `passes` times; prints and returns the best pass's seconds. */
static double run(const text_tokenizer *t, const char *what, const char **q, size_t n,
                  int passes)
{
    if (n == 0)
        return 0;
    double best = 1e30;
    int64_t ids[TEXT_CONTEXT_LENGTH], sum = 0;
    for (int p = 0; p < passes; p++) {
        sum = 0;
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            err_t e;
            if (text_tokenize(t, q[i], strlen(q[i]), ids, TEXT_CONTEXT_LENGTH, 0, NULL, &e) !=
                ERR_OK) {
                fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
                exit(1);
            }
            sum += ids[1] + ids[2];
        }
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    printf("%-10s queries %6zu  best pass %8.2f ms CPU  %7.2f us/query  (checksum %lld)\n", what, n,
           best * 1e3, best * 1e6 / (double)n, (long long)sum);
    return best;
}

int main(int argc, char **argv)
{
    const char *vocab = INFERD_TESTDATA "/clip/bpe_simple_vocab_16e6.txt";
    const char *corpus = INFERD_SRCDIR "/tests/tokenizer/corpus.json";
    size_t nq = 5000;
    int passes = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--vocab") == 0)
            vocab = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--corpus") == 0)
            corpus = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--queries") == 0)
            nq = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--passes") == 0)
            passes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_tokenizer [--vocab PATH] [--corpus FILE] "
                            "[--queries N] [--passes P]\n");
            return 2;
        }
    }
    text_tokenizer *t;
    err_t e;
    if (text_tokenizer_load(vocab, &t, &e) != ERR_OK) {
        fprintf(stderr, "bench_tokenizer: %s (run scripts/setup.sh testdata)\n", e.msg);
        return 1;
    }
    json_error_t je;
    json_t *root = json_load_file(corpus, 0, &je);
    if (!json_is_array(root) || json_array_size(root) == 0 || nq == 0 || passes < 1) {
        fprintf(stderr, "bench_tokenizer: %s:%d: %s\n", corpus, je.line,
                root ? "need a non-empty array, N >= 1, P >= 1" : je.text);
        return 1;
    }
    size_t nc = json_array_size(root);
    const char **all = calloc(nq, sizeof *all), **ascii = calloc(nq, sizeof *ascii),
               **other = calloc(nq, sizeof *other);
    size_t na = 0, no = 0;
    for (size_t i = 0; i < nq; i++) {
        json_t *it = json_array_get(root, i % nc);
        const char *s = json_is_string(it) ? json_string_value(it)
                                           : json_string_value(json_object_get(it, "text"));
        all[i] = s ? s : "";
        if (is_ascii(all[i]))
            ascii[na++] = all[i];
        else
            other[no++] = all[i];
    }
    printf("bench_tokenizer: %s, %zu corpus strings cycled to %zu queries, best of %d passes\n",
           vocab, nc, nq, passes);
    run(t, "all", all, nq, passes);
    run(t, "ascii", ascii, na, passes);
    run(t, "non-ascii", other, no, passes);
    free(all);
    free(ascii);
    free(other);
    json_decref(root);
    text_tokenizer_free(t);
    return 0;
}
