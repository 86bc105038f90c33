/*
 * text/tokenizer.h — the CLIP byte-level BPE tokenizer, for text queries.
 *
 * This is a pure algorithm module (no ONNX Runtime, no daemon state): it turns
 * a UTF-8 query into the fixed-length token id row a CLIP text encoder takes,
 * with the semantics of OpenAI CLIP's `simple_tokenizer.py` as OpenCLIP uses
 * it (`open_clip.tokenize`):
 *
 *   0. ftfy.fix_text's character fixes (ftfy 6.x defaults, the order
 *      fix_and_explain uses, repeated until nothing changes), before the
 *      HTML unescape as basic_clean does:
 *        - unescape_html: &#?[0-9A-Za-z]{1,24}; references, for the names
 *          step 1 knows and numeric ones, so "&#8217;" is fixed too; not in a
 *          '\n'-ended segment with a '<', nor in any after it (as ftfy);
 *        - fix_c1_controls: U+0080-009F read as Windows-1252 (the five
 *          undefined bytes stay);
 *        - fix_latin_ligatures: ftfy's whole table (Ĳ ĳ ŉ Ǆ-ǌ Ǳ-ǳ, U+FB00-FB06);
 *        - fix_character_width: U+3000 to ' ', every U+FF01-FFEF to its
 *          NFKC form (full-width ASCII and symbols, half-width katakana,
 *          voiced marks and Hangul, which NFC below then composes);
 *        - uncurl_quotes: U+02BC and U+2018-201B to ', U+201C-201F to ";
 *        - fix_line_breaks (CRLF, CR, U+2028/2029/0085 to LF);
 *        - remove_terminal_escapes (ESC [ (\d|;)* letter);
 *        - remove_control_chars: U+0000-0008, 000B, 000E-001F, 007F,
 *          206A-206F, FEFF, FFF9-FFFC;
 *        - NFC normalisation (utf8proc's data, checked against Python's
 *          unicodedata): a decomposed "é" becomes one code point, Hangul
 *          jamo compose, composition exclusions such as U+0958 decompose.
 *      Not done, as it is a heuristic: fix_encoding (mojibake repair such
 *      as "cafÃ©" -> "café", and what it does to C1 characters before
 *      fix_c1_controls sees them); fix_surrogates has nothing to do on
 *      UTF-8 input;
 *   1. cleanup: a small HTML-unescape, applied twice like basic_clean:
 *      &amp; &lt; &gt; &quot; (also upper-case) &apos; &nbsp;, each with its
 *      ';', and numeric references as html.unescape reads them (&#NN or
 *      &#xHH, ';' optional, any number of digits; U+FFFD for 0, surrogates
 *      and past U+10FFFF; but references to U+0080-009F are not mapped
 *      through cp1252, nor those to controls and noncharacters dropped);
 *      invalid UTF-8 bytes replaced by U+FFFD; leading/trailing
 *      str.isspace() characters stripped (\s plus U+001C-001F), every \s
 *      run collapsed to one space; then lower-cased as str.lower() does
 *      (see below);
 *   2. pre-tokenisation by CLIP's pattern
 *        <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      with a hand-written UTF-8 scanner instead of a regex engine;
 *   3. each piece's bytes mapped through GPT-2's bytes_to_unicode table, the
 *      last symbol given the "</w>" suffix, merged by BPE (lowest merge rank
 *      first, all non-overlapping occurrences left to right), and looked up in
 *      the vocabulary;
 *   4. framed as <|startoftext|> ids... <|endoftext|>, truncated to the
 *      context length keeping <|endoftext|> as the last id (OpenCLIP's
 *      `tokens = tokens[:context_length]; tokens[-1] = eot_token`; HF
 *      tokenizers with truncation give the same row for CLIP) and padded
 *      with `pad_id`: 0 in OpenCLIP; infer/clip.c passes the id of
 *      tokenizer_config.json's "pad_token" when the model directory has one
 *      (HF tokenizers / Immich pad that way).
 *
 * Unicode character data comes from utf8proc (Debian's libutf8proc, Unicode
 * 15 in 2.8): \p{L} is general category L*, \p{N} is N*, as in the regex
 * module; lower-casing is Python's str.lower(): the simple lower-case
 * mapping (utf8proc_tolower), plus SpecialCasing's one unconditional
 * expansion (U+0130 İ -> i + U+0307) and the final sigma (Σ -> ς after a
 * cased letter and before none, skipping case-ignorable characters both
 * ways, as CPython decides it); NFC as above. Whitespace (\s) is the regex
 * module's \s, Unicode White_Space, listed in bpe.c. For every code point
 * assigned in Python 3.11's Unicode 14 these agree with Python (categories,
 * lower(), final sigma, and NFC of every character and of random sequences
 * of combining marks, checked when this was written); characters assigned
 * since (Unicode 15) follow utf8proc, as a newer Python would. Every byte
 * has a vocabulary entry, so nothing is ever "unknown". tests/tokenizer/
 * clip_js_diff.c checks all of this on the real vocabulary against an
 * independent implementation and lists the known differences.
 *
 * Vocabulary files accepted by text_tokenizer_load():
 *   - OpenCLIP/OpenAI `bpe_simple_vocab_16e6.txt.gz` (or the same file not
 *     compressed): a header line and merge lines "a b"; the vocabulary is
 *     derived as CLIP does (256 byte symbols, the same with "</w>", one per
 *     merge, then <|startoftext|>, <|endoftext|>). At most 48894 merges are
 *     read (49152 - 256 - 2), as CLIP does.
 *   - a HF tokenizers `tokenizer.json` (Immich's textual/tokenizer.json):
 *     model.vocab {token: id} and model.merges ["a b", ...] or [["a","b"],...].
 *   - a directory: tokenizer.json, else vocab.json + merges.txt, else
 *     bpe_simple_vocab_16e6.txt.gz, looked up in that order.
 *
 * No cache: OpenCLIP memoises BPE per word, but a query has a handful of
 * words and merging one costs microseconds; a shared cache would need a lock
 * on every query for no measurable gain.
 *
 * Threading: a text_tokenizer is immutable after loading; any number of
 * threads may call text_tokenize on the same one.
 */
#ifndef INFERD_TEXT_TOKENIZER_H
#define INFERD_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define TEXT_CONTEXT_LENGTH 77           /* CLIP's context length */
#define TEXT_MAX_QUERY_BYTES (64u << 10) /* longer queries fail with ERR_TOOBIG */
#define TEXT_MAX_VOCAB_BYTES (64u << 20) /* limit on a vocabulary file, uncompressed */
#define TEXT_SIMPLE_MAX_MERGES (49152 - 256 - 2)

typedef struct text_tokenizer text_tokenizer;

/*
 * Loads a tokenizer from `path`: a directory or one of the files listed in
 * the header comment (told apart by name: *.json is tokenizer.json, *.gz is
 * gzip, anything else the simple merges format). On success `*out` is owned
 * by the caller (text_tokenizer_free). Fails with ERR_NOENT naming the path
 * when nothing usable exists, ERR_FORMAT with file:line for a malformed
 * file, ERR_TOOBIG past TEXT_MAX_VOCAB_BYTES, ERR_FORMAT when the vocabulary
 * lacks a byte symbol, "<|startoftext|>" or "<|endoftext|>".
 */
int text_tokenizer_load(const char *path, text_tokenizer **out, err_t *e);

/*
 * Loads from a vocab.json ({token: id}) and a merges.txt (optional
 * "#version" first line, then "a b" per line). Same errors as above.
 */
int text_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                     text_tokenizer **out, err_t *e);

/* Releases the tokenizer. NULL is a no-op. */
void text_tokenizer_free(text_tokenizer *t);

/* Number of ids: one more than the largest id in the vocabulary. */
int text_tokenizer_vocab_size(const text_tokenizer *t);

/* Number of merges (ranks 0..n-1). */
int text_tokenizer_merge_count(const text_tokenizer *t);

/* Id of "<|startoftext|>" / "<|endoftext|>". */
int64_t text_tokenizer_sot(const text_tokenizer *t);
int64_t text_tokenizer_eot(const text_tokenizer *t);

/*
 * The vocabulary string of `id` (UTF-8, byte symbols in their
 * bytes_to_unicode form, "</w>" kept), or NULL when no token has that id.
 * Lives as long as `t`.
 */
const char *text_tokenizer_token(const text_tokenizer *t, int64_t id);

/* The id of the vocabulary string `tok`, or -1. */
int64_t text_tokenizer_id(const text_tokenizer *t, const char *tok);

/*
 * Tokenises `text` (`len` bytes of UTF-8, need not be NUL-terminated) into
 * exactly `ctx` ids: SOT, the BPE ids, EOT, then `pad_id` up to `ctx`.
 * When the ids do not fit, the row is cut to `ctx` and its last id set to
 * EOT. `*ntok` (may be NULL) receives the number of ids before padding
 * (<= ctx). `ctx` must be >= 2. Fails with ERR_INVAL for a bad ctx,
 * ERR_TOOBIG when `len` > TEXT_MAX_QUERY_BYTES. Thread-safe.
 */
int text_tokenize(const text_tokenizer *t, const char *text, size_t len, int64_t *ids, size_t ctx,
                  int64_t pad_id, size_t *ntok, err_t *e);

/*
 * The BPE ids of `text` without SOT/EOT and without a length limit.
 * `*ids` is malloc'd (caller frees; NULL when `*n` is 0). Same errors as
 * text_tokenize. Thread-safe.
 */
int text_encode(const text_tokenizer *t, const char *text, size_t len, int64_t **ids, size_t *n,
                err_t *e);

/*
 * The symbol GPT-2's bytes_to_unicode gives byte `b`, as UTF-8 into `out`
 * (at least 3 bytes); returns its length. Byte b has vocabulary id
 * text_byte_rank(b) in CLIP's derived vocabulary.
 */
int text_byte_symbol(uint8_t b, char out[4]);
int text_byte_rank(uint8_t b);

#endif
