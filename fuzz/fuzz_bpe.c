/*
 * fuzz/fuzz_bpe.c — libFuzzer target for the CLIP tokenizer on query text
 * (any bytes: invalid UTF-8, controls, HTML entities, escapes).
 *
 * The vocabulary is CLIP's real one when scripts/setup.sh testdata fetched it
 * (INFERD_FUZZ_VOCAB, else .deps/testdata/clip/bpe_simple_vocab_16e6.txt),
 * else the small fixture in tests/fixtures/clip. The checks: the row is
 * always SOT ... EOT and padding, every id is inside the vocabulary, and
 * text_encode agrees with text_tokenize on the ids that fit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "text/tokenizer.h"

static text_tokenizer *fz_tok;

static void setup(void)
{
    const char *env = getenv("INFERD_FUZZ_VOCAB");
    const char *paths[] = {env, INFERD_SRCDIR "/.deps/testdata/clip/bpe_simple_vocab_16e6.txt",
                           INFERD_SRCDIR "/tests/fixtures/clip/merges.txt"};
    err_t e;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && fz_tok == NULL; i++)
        if (paths[i] != NULL && access(paths[i], R_OK) == 0)
            FUZZ_CHECK(text_tokenizer_load(paths[i], &fz_tok, &e) == ERR_OK);
    FUZZ_CHECK(fz_tok != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_tok == NULL)
        setup();
    if (size > TEXT_MAX_QUERY_BYTES)
        return 0;
    int64_t ids[TEXT_CONTEXT_LENGTH];
    size_t ntok = 0;
    err_t e;
    int64_t sot = text_tokenizer_sot(fz_tok), eot = text_tokenizer_eot(fz_tok);
    FUZZ_CHECK(text_tokenize(fz_tok, (const char *)data, size, ids, TEXT_CONTEXT_LENGTH, 0,
                             &ntok, &e) == ERR_OK);
    FUZZ_CHECK(ntok >= 2 && ntok <= TEXT_CONTEXT_LENGTH);
    FUZZ_CHECK(ids[0] == sot && ids[ntok - 1] == eot);
    int vocab = text_tokenizer_vocab_size(fz_tok);
    for (size_t i = 0; i < TEXT_CONTEXT_LENGTH; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab && (i < ntok || ids[i] == 0));
    int64_t *all = NULL;
    size_t n = 0;
    FUZZ_CHECK(text_encode(fz_tok, (const char *)data, size, &all, &n, &e) == ERR_OK);
    size_t fit = n < TEXT_CONTEXT_LENGTH - 2 ? n : TEXT_CONTEXT_LENGTH - 2;
    FUZZ_CHECK(ntok == fit + 2 || (n > fit && ntok == TEXT_CONTEXT_LENGTH));
    for (size_t i = 0; i < fit && i + 1 < ntok - 1; i++)
        FUZZ_CHECK(ids[i + 1] == all[i]);
    free(all);
    return 0;
}
