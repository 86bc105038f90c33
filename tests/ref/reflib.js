/*
 * tests/ref/reflib.js — what the reference runners in tests/ref share: error
 * exit, reading files out of an npm tarball in memory (so that a test reads
 * exactly the bytes whose sha256 a model manifest records), raw float32
 * files, a quiet TF.js CPU backend, and decoding photos with pure-JS decoders
 * (jpeg-js, pngjs) that share no code with inferd's libvips.
 */
'use strict';

const fs = require('fs');
const zlib = require('zlib');
const crypto = require('crypto');

function die(msg) {
    process.stderr.write(`${process.env.REF_NAME || 'ref'}: ${msg}\n`);
    process.exit(1);
}

/*
 * Reads every regular file of a gzipped (ustar/pax) tarball into a Map from
 * its path (without the leading "package/" npm puts in front) to a Buffer.
 * With `wantSha` the tarball's sha256 must match.
 */
function readTarball(file, wantSha) {
    const gz = fs.readFileSync(file);
    if (wantSha) {
        const got = crypto.createHash('sha256').update(gz).digest('hex');
        if (got !== wantSha)
            die(`${file}: sha256 ${got}, the manifest says ${wantSha}`);
    }
    const tar = zlib.gunzipSync(gz);
    const files = new Map();
    let off = 0;
    let paxPath = null;
    const str = (b, s, n) => {
        const z = b.indexOf(0, s);
        return b.toString('utf8', s, z >= 0 && z < s + n ? z : s + n);
    };
    while (off + 512 <= tar.length) {
        const h = tar.subarray(off, off + 512);
        if (h.every((x) => x === 0))
            break;
        const size = parseInt(str(h, 124, 12).trim() || '0', 8);
        const type = String.fromCharCode(h[156] || 48);
        const prefix = str(h, 345, 155);
        let name = str(h, 0, 100);
        if (prefix)
            name = `${prefix}/${name}`;
        const body = tar.subarray(off + 512, off + 512 + size);
        if (type === 'x') {
            /* pax extended header: "LEN key=value\n" records; only path matters. */
            const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
            paxPath = m ? m[1] : null;
        } else {
            if (paxPath)
                name = paxPath;
            paxPath = null;
            if (type === '0' || type === '\0')
                files.set(name.replace(/^package\//, ''), body);
        }
        off += 512 + Math.ceil(size / 512) * 512;
    }
    return {
        what: file,
        exists: (p) => files.has(p),
        isDir: (p) => [...files.keys()].some((k) => k.startsWith(`${p.replace(/\/$/, '')}/`)),
        read: (p) => {
            const b = files.get(p);
            if (!b)
                die(`${file}: no file '${p}' in the package`);
            return b;
        },
    };
}

function fileSystem() {
    return {
        what: 'file system',
        exists: (p) => fs.existsSync(p) && fs.statSync(p).isFile(),
        isDir: (p) => fs.existsSync(p) && fs.statSync(p).isDirectory(),
        read: (p) => {
            try {
                return fs.readFileSync(p);
            } catch (err) {
                return die(`${p}: ${err.message}`);
            }
        },
    };
}

/* ---- raw float32 files --------------------------------------------------- */

function readF32(file, count) {
    let b;
    try {
        b = fs.readFileSync(file);
    } catch (err) {
        return die(`${file}: ${err.message}`);
    }
    if (b.length !== count * 4)
        die(`${file}: ${b.length} bytes, want ${count * 4} (${count} float32)`);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++)
        out[i] = b.readFloatLE(i * 4);
    return out;
}

function writeF32(file, arrays) {
    const n = arrays.reduce((s, a) => s + a.length, 0);
    const b = Buffer.alloc(n * 4);
    let o = 0;
    for (const a of arrays)
        for (let i = 0; i < a.length; i++, o += 4)
            b.writeFloatLE(a[i], o);
    fs.writeFileSync(file, b);
}

/* ---- TF.js ------------------------------------------------------------------ */

/*
 * Loads @tensorflow/tfjs on its pure-JS CPU backend. The bundle greets node
 * users on stderr; that is silenced to keep the test log clean.
 */
async function loadTf() {
    const warn = console.warn;
    console.warn = () => {};
    const tf = require('@tensorflow/tfjs');
    await tf.setBackend('cpu');
    await tf.ready();
    console.warn = warn;
    tf.enableProdMode();
    return tf;
}

/* ---- photos ------------------------------------------------------------------ */

/*
 * Decodes a JPEG or PNG file into {width, height, rgb: Uint8Array (packed
 * RGB)}: jpeg-js for JPEG, pngjs for PNG (grey, palette and 16-bit PNGs come
 * out as 8-bit RGBA; alpha is flattened onto white, as inferd does). EXIF
 * orientation is not applied: callers use upright photos.
 */
function decodeImage(file) {
    const buf = fs.readFileSync(file);
    let width, height, rgba, channels;
    if (buf[0] === 0xff && buf[1] === 0xd8) {
        const jpeg = require('jpeg-js');
        const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false });
        ({ width, height } = img);
        rgba = img.data;
        channels = 3;
    } else if (buf.subarray(1, 4).toString('latin1') === 'PNG') {
        const { PNG } = require('pngjs');
        const img = PNG.sync.read(buf);
        ({ width, height } = img);
        rgba = img.data;
        channels = 4;
    } else {
        return die(`${file}: neither JPEG nor PNG`);
    }
    const rgb = new Uint8Array(width * height * 3);
    for (let p = 0; p < width * height; p++) {
        const a = channels === 4 ? rgba[p * 4 + 3] / 255 : 1;
        for (let c = 0; c < 3; c++) {
            const v = rgba[p * channels + c];
            rgb[p * 3 + c] = a === 1 ? v : Math.round(v * a + 255 * (1 - a));
        }
    }
    return { width, height, rgb };
}

module.exports = { die, readTarball, fileSystem, readF32, writeF32, loadTf, decodeImage };
