#!/usr/bin/env node
/*
 * tests/ref/tfjs_ref.js — runs an original TF.js graph model with the pure-JS
 * CPU backend of @tensorflow/tfjs: the reference that inferd's converted ONNX
 * models are checked against (tests/models/parity.c).
 *
 * Nothing touches the network. The model is read from local files and handed
 * to tf.loadGraphModel() through tf.io.fromMemory(). It may be
 *   - a model.json with its binary weight shards beside it,
 *   - nsfwjs' packaging: model.min.js (a JS module exporting the model.json
 *     object) with shards <path>.min.js exporting base64 strings,
 *   - a directory holding either of the above,
 *   - any of these inside an npm tarball (--tarball), read in memory without
 *     unpacking, so the test reads exactly the bytes whose sha256 the model
 *     manifest records.
 *
 * Inputs and outputs are raw little-endian float32 files, batch first. The
 * batch is run in chunks of --chunk images (tfjs keeps every activation of a
 * run alive, so one huge batch costs memory and gains nothing on the CPU
 * backend); output chunks are concatenated along axis 0.
 *
 * Usage:
 *   node tfjs_ref.js [--tarball PKG.tgz] [--sha256 HEX] --model PATH
 *        --input NAME=FILE@DIMS ... --output NODE=FILE ... [--chunk N] [--list]
 *
 *   DIMS   e.g. 12x112x112x3
 *   NODE   a graph node name ("Identity", "Identity:0"); a leading '*' means
 *          the one node whose name ends with the rest
 *          ("*feature_vector/SpatialSqueeze"); ambiguous or missing is an error.
 *   --list prints the model's nodes (name, op) and exits.
 *
 * Prints one JSON line on stdout: {"tfjs", "backend", "ms", "outputs":
 * [{"node", "file", "shape"}]}. Exits 1 with a message on stderr on any error.
 */
'use strict';

const path = require('path');

process.env.REF_NAME = 'tfjs_ref';
const { die, readTarball, fileSystem, readF32, writeF32, loadTf } = require('./reflib');

function parseArgs(argv) {
    const a = { inputs: [], outputs: [], chunk: 8, list: false };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        const val = () => {
            if (i + 1 >= argv.length)
                die(`${k} needs a value`);
            return argv[++i];
        };
        if (k === '--tarball')
            a.tarball = val();
        else if (k === '--sha256')
            a.sha256 = val().toLowerCase();
        else if (k === '--model')
            a.model = val();
        else if (k === '--chunk')
            a.chunk = parseInt(val(), 10);
        else if (k === '--list')
            a.list = true;
        else if (k === '--input') {
            const v = val();
            const eq = v.indexOf('=');
            const at = v.lastIndexOf('@');
            if (eq <= 0 || at < eq)
                die(`--input wants NAME=FILE@DIMS, got '${v}'`);
            const dims = v.slice(at + 1).split('x').map(Number);
            if (dims.length === 0 || dims.some((d) => !Number.isInteger(d) || d <= 0))
                die(`bad dims in '${v}'`);
            a.inputs.push({ name: v.slice(0, eq), file: v.slice(eq + 1, at), dims });
        } else if (k === '--output') {
            const v = val();
            const eq = v.indexOf('=');
            if (eq <= 0 || eq === v.length - 1)
                die(`--output wants NODE=FILE, got '${v}'`);
            a.outputs.push({ node: v.slice(0, eq), file: v.slice(eq + 1) });
        } else
            die(`unknown argument '${k}'`);
    }
    if (!a.model)
        die('--model is required');
    if (!(a.chunk > 0))
        die('--chunk must be a positive integer');
    if (!a.list && (a.inputs.length === 0 || a.outputs.length === 0))
        die('need at least one --input and one --output');
    return a;
}

/*
 * Evaluates one of nsfwjs' .min.js files (a browserify UMD bundle) as a
 * CommonJS module and returns its export. From a tarball the source is
 * compiled with Module._compile, as require() would do for a file.
 */
function loadJsModule(src, p) {
    if (src.what === 'file system')
        return require(path.resolve(p));
    const Module = require('module');
    const m = new Module(p, null);
    m.filename = p;
    m.paths = [];
    m._compile(src.read(p).toString('utf8'), p);
    return m.exports;
}

/* Returns tf.io ModelArtifacts for the model at `p` in `src`. */
function loadArtifacts(src, p) {
    let modelPath = p.replace(/\/$/, '');
    if (src.isDir(modelPath)) {
        if (src.exists(`${modelPath}/model.json`))
            modelPath = `${modelPath}/model.json`;
        else if (src.exists(`${modelPath}/model.min.js`))
            modelPath = `${modelPath}/model.min.js`;
        else
            die(`${p}: neither model.json nor model.min.js in this directory`);
    }
    const dir = path.posix.dirname(modelPath);
    const minjs = modelPath.endsWith('.min.js');
    const json = minjs ? loadJsModule(src, modelPath)
                       : JSON.parse(src.read(modelPath).toString('utf8'));
    if (!json || !json.modelTopology || !Array.isArray(json.weightsManifest))
        die(`${modelPath}: not a TF.js graph model`);

    const specs = [];
    const shards = [];
    for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const shard of group.paths) {
            const sp = `${dir}/${shard}`;
            if (minjs) {
                const b64 = loadJsModule(src, `${sp}.min.js`);
                if (typeof b64 !== 'string')
                    die(`${sp}.min.js does not export a base64 string`);
                shards.push(Buffer.from(b64, 'base64'));
            } else
                shards.push(src.read(sp));
        }
    }
    const all = Buffer.concat(shards);
    return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
    };
}

/* Resolves "*suffix" output names against the graph's node names. */
function resolveNode(names, want) {
    if (!want.startsWith('*'))
        return want;
    const suffix = want.slice(1);
    const hits = names.filter((n) => n === suffix || n.endsWith(`/${suffix}`));
    if (hits.length !== 1)
        die(`'${want}' matches ${hits.length} nodes${hits.length ? `: ${hits.slice(0, 5).join(', ')}` : ''}`);
    return hits[0];
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const src = args.tarball ? readTarball(args.tarball, args.sha256) : fileSystem();
    const artifacts = loadArtifacts(src, args.model);
    const nodes = artifacts.modelTopology.node || [];
    if (args.list) {
        for (const n of nodes)
            process.stdout.write(`${n.name}\t${n.op}\n`);
        return;
    }

    const tf = await loadTf();

    const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
    const names = nodes.map((n) => n.name);
    const outNodes = args.outputs.map((o) => resolveNode(names, o.node));

    const batch = args.inputs[0].dims[0];
    const inputs = args.inputs.map((inp) => {
        if (inp.dims[0] !== batch)
            die('all inputs must have the same batch size');
        const count = inp.dims.reduce((p, d) => p * d, 1);
        return { ...inp, data: readF32(inp.file, count), per: count / batch };
    });

    const t0 = Date.now();
    const chunks = outNodes.map(() => []);
    const shapes = outNodes.map(() => null);
    for (let b0 = 0; b0 < batch; b0 += args.chunk) {
        const n = Math.min(args.chunk, batch - b0);
        const feed = {};
        for (const inp of inputs)
            feed[inp.name] = tf.tensor(inp.data.subarray(b0 * inp.per, (b0 + n) * inp.per),
                                       [n, ...inp.dims.slice(1)], 'float32');
        let res = model.execute(feed, outNodes);
        if (!Array.isArray(res))
            res = [res];
        res.forEach((t, i) => {
            const f = t.dtype === 'float32' ? t : t.cast('float32');
            chunks[i].push(f.dataSync().slice());
            if (!shapes[i])
                shapes[i] = [batch, ...t.shape.slice(1)];
            else if (t.shape.slice(1).join('x') !== shapes[i].slice(1).join('x'))
                die(`${outNodes[i]}: shape changed between chunks`);
            if (f !== t)
                f.dispose();
            t.dispose();
        });
        Object.values(feed).forEach((t) => t.dispose());
    }
    const ms = Date.now() - t0;

    args.outputs.forEach((o, i) => writeF32(o.file, chunks[i]));
    model.dispose();
    process.stdout.write(`${JSON.stringify({
        tfjs: tf.version.tfjs,
        backend: tf.getBackend(),
        ms,
        outputs: outNodes.map((node, i) => ({ node, file: args.outputs[i].file, shape: shapes[i] })),
    })}\n`);
}

main().catch((err) => die(err && err.stack ? err.stack : String(err)));
