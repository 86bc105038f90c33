#!/usr/bin/env node
/*
 * tests/ref/nsfw_ref.js — nsfwjs's own classify() on photos: the reference
 * for inferd's mobilenet-v2-mid NSFW scores, end to end.
 *
 * nsfwjs (from tests/ref/node_modules, the version package-lock.json pins)
 * loads its bundled MobileNetV2Mid graph model and classifies a tensor the
 * way it does in a browser: pixels / 255, stretched to 224x224 with
 * tf.image.resizeBilinear (alignCorners true), one run, softmax scores. The
 * photos are decoded with jpeg-js / pngjs (reflib.decodeImage), which share
 * no code with inferd's libvips.
 *
 * With --input FILE@Nx224x224x3 the given RGB pixels (raw float32 0..255,
 * HWC) are classified instead of decoded photos: 224x224 inputs skip
 * nsfwjs's resize, so this checks the model and normalisation alone.
 *
 * Usage: node nsfw_ref.js PHOTO...  |  node nsfw_ref.js --input FILE@Nx224x224x3
 * Prints one JSON line per photo (or input): {"path", "scores": {class: p}}.
 */
'use strict';

process.env.REF_NAME = 'nsfw_ref';
const { die, readF32, loadTf, decodeImage } = require('./reflib');

async function main() {
    const args = process.argv.slice(2);
    if (args.length === 0)
        die('usage: nsfw_ref.js PHOTO... | --input FILE@Nx224x224x3');
    const tf = await loadTf();
    const info = console.info;
    console.info = () => {}; /* nsfwjs advertises its docs on load */
    const nsfwjs = require('nsfwjs');
    const model = await nsfwjs.load('MobileNetV2Mid', { size: 224 });
    console.info = info;

    const inputs = [];
    if (args[0] === '--input') {
        const v = args[1] || '';
        const at = v.lastIndexOf('@');
        const dims = at > 0 ? v.slice(at + 1).split('x').map(Number) : [];
        if (dims.length !== 4 || dims[1] !== 224 || dims[2] !== 224 || dims[3] !== 3)
            die(`--input wants FILE@Nx224x224x3, got '${v}'`);
        const per = 224 * 224 * 3;
        const data = readF32(v.slice(0, at), dims[0] * per);
        for (let i = 0; i < dims[0]; i++)
            inputs.push({ path: `${v.slice(0, at)}#${i}`,
                          t: tf.tensor3d(data.subarray(i * per, (i + 1) * per), [224, 224, 3]) });
    } else {
        for (const p of args) {
            const img = decodeImage(p);
            inputs.push({ path: p, t: tf.tensor3d(img.rgb, [img.height, img.width, 3], 'int32') });
        }
    }
    for (const { path, t } of inputs) {
        const preds = await model.classify(t, 5);
        t.dispose();
        const scores = {};
        for (const p of preds)
            scores[p.className.toLowerCase()] = p.probability;
        process.stdout.write(`${JSON.stringify({ path, scores })}\n`);
    }
}

main().catch((err) => die(err && err.stack ? err.stack : String(err)));
