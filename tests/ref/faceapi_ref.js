#!/usr/bin/env node
/*
 * tests/ref/faceapi_ref.js — face-api's face recognition net, run by face-api
 * itself (@vladmandic/face-api's node build on @tensorflow/tfjs's pure-JS CPU
 * backend): the reference for inferd's dlib-resnet model.
 *
 * The weights are read from the face-api npm tarball in memory (checked by
 * sha256 when --sha256 is given), decoded by tf.io.decodeWeights and handed
 * to faceRecognitionNet.loadFromWeightMap, so nothing depends on files
 * installed beside this script but the code.
 *
 * Two modes:
 *
 *   descriptors --input FILE@Nx150x150x3 --output OUT
 *       N face crops as raw little-endian float32 RGB in 0..255 (HWC),
 *       through computeFaceDescriptor (its own mean subtraction and /255).
 *       Conversion parity: inferd feeds the same pixels to ONNX Runtime.
 *
 *   faces --image PHOTO --boxes x,y,w,h[;x,y,w,h...] --output OUT
 *       face-api's own pipeline on a photo: decoded with jpeg-js / pngjs
 *       (reflib.decodeImage), each box cut with extractFaceTensors (clipped
 *       to the image, floored to whole pixels), then computeFaceDescriptor,
 *       which pads the cut to a square (centred, black) and resizes it to
 *       150x150 with tf.image.resizeBilinear. End-to-end parity: inferd runs
 *       its whole path on the same photo and boxes.
 *
 * Common: --tarball PKG.tgz [--sha256 HEX]. OUT receives N x 128 float32
 * descriptors (raw, not normalised). Prints one JSON line {"faceapi", "tfjs",
 * "backend", "ms", "n"}; exits 1 with a message on stderr on any error.
 */
'use strict';

process.env.REF_NAME = 'faceapi_ref';
const { die, readTarball, readF32, writeF32, loadTf, decodeImage } = require('./reflib');

const MANIFEST = 'model/face_recognition_model-weights_manifest.json';
const SIZE = 150;

function parseArgs(argv) {
    const a = { mode: argv[0] };
    if (a.mode !== 'descriptors' && a.mode !== 'faces')
        die('first argument: descriptors or faces');
    for (let i = 1; i < argv.length; i++) {
        const k = argv[i];
        if (i + 1 >= argv.length)
            die(`${k} needs a value`);
        const v = argv[++i];
        if (k === '--tarball')
            a.tarball = v;
        else if (k === '--sha256')
            a.sha256 = v.toLowerCase();
        else if (k === '--input') {
            const at = v.lastIndexOf('@');
            const dims = at > 0 ? v.slice(at + 1).split('x').map(Number) : [];
            if (dims.length !== 4 || dims.some((d) => !Number.isInteger(d) || d <= 0) ||
                dims[1] !== SIZE || dims[2] !== SIZE || dims[3] !== 3)
                die(`--input wants FILE@Nx${SIZE}x${SIZE}x3, got '${v}'`);
            a.input = { file: v.slice(0, at), n: dims[0] };
        } else if (k === '--image')
            a.image = v;
        else if (k === '--boxes') {
            a.boxes = v.split(';').map((b) => b.split(',').map(Number));
            if (a.boxes.some((b) => b.length !== 4 || b.some((x) => !Number.isFinite(x))))
                die(`--boxes wants x,y,w,h[;...], got '${v}'`);
        } else if (k === '--output')
            a.output = v;
        else
            die(`unknown argument '${k}'`);
    }
    if (!a.tarball || !a.output)
        die('--tarball and --output are required');
    if (a.mode === 'descriptors' && !a.input)
        die('descriptors needs --input');
    if (a.mode === 'faces' && (!a.image || !a.boxes))
        die('faces needs --image and --boxes');
    return a;
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const src = readTarball(args.tarball, args.sha256);
    const tf = await loadTf();
    const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
    await faceapi.tf.setBackend('cpu');

    const groups = JSON.parse(src.read(MANIFEST).toString('utf8'));
    const specs = [];
    const shards = [];
    for (const g of groups) {
        specs.push(...g.weights);
        for (const p of g.paths)
            shards.push(src.read(`model/${p}`));
    }
    const all = Buffer.concat(shards);
    const weightMap = tf.io.decodeWeights(all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
                                          specs);
    const net = faceapi.nets.faceRecognitionNet;
    net.loadFromWeightMap(weightMap);

    const t0 = Date.now();
    const out = [];
    if (args.mode === 'descriptors') {
        const per = SIZE * SIZE * 3;
        const data = readF32(args.input.file, args.input.n * per);
        for (let i = 0; i < args.input.n; i++) {
            const t = tf.tensor3d(data.subarray(i * per, (i + 1) * per), [SIZE, SIZE, 3], 'float32');
            out.push(await net.computeFaceDescriptor(t));
            t.dispose();
        }
    } else {
        const img = decodeImage(args.image);
        const it = tf.tensor3d(img.rgb, [img.height, img.width, 3], 'int32');
        const rects = args.boxes.map(([x, y, w, h]) => new faceapi.Rect(x, y, w, h));
        const cuts = await faceapi.extractFaceTensors(it, rects);
        if (cuts.length !== rects.length)
            die(`${args.image}: ${rects.length} boxes, face-api cut ${cuts.length}`);
        for (const c of cuts) {
            out.push(await net.computeFaceDescriptor(c));
            c.dispose();
        }
        it.dispose();
    }
    const ms = Date.now() - t0;
    writeF32(args.output, out);
    process.stdout.write(`${JSON.stringify({
        faceapi: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend(), ms, n: out.length,
    })}\n`);
}

main().catch((err) => die(err && err.stack ? err.stack : String(err)));
