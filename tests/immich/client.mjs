// tests/immich/client.mjs — an Immich-shaped client of inferd's --immich-listen API.
//
// It builds every request the way Immich's server does
// (server/src/repositories/machine-learning.repository.ts): node's fetch and
// FormData, URLs made with new URL('/predict', base), "entries" as
// JSON.stringify(config), the image as new Blob([bytes]) with no file name or
// type, /ping with AbortSignal.timeout(2000). Each answer is read the way
// Immich reads it (response.json(), then the task's key: a string holding a
// JSON array, faces with boundingBox/embedding/score, imageHeight/imageWidth)
// and checked against what inferd's own API computes for the same photo, and
// against values derived by hand where the models allow (see the config).
//
// Usage: node client.mjs CONFIG.json     (written by tests/e2e/22-immich-ml.py)
//   {"immich": URL, "api": URL, "busy": URL (a 1-slot server with a tiny wait),
//    "clip": NAME, "faces": NAME, "faceDim": N, "minScore": S,
//    "images": [{"path", "width", "height"}], "text": ["..."],
//    "pack": {"immich": URL, "name": NAME, "image": PATH, "faces": [{"box": [x1,y1,x2,y2],
//             "score": S}]}  (optional: a generated detector with faces known in advance)}
// Exits 0 when every check passes; prints one line per check.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

const cfg = JSON.parse(await readFile(process.argv[2], 'utf8'));
let checks = 0;
function ok(what) {
  checks++;
  console.log(`ok ${checks} - ${what}`);
}

// What Immich's getFormData does.
async function formData(payload, config) {
  const fd = new FormData();
  fd.append('entries', JSON.stringify(config));
  if ('imagePath' in payload) {
    const buf = await readFile(payload.imagePath);
    fd.append('image', new Blob([new Uint8Array(buf)]));
  } else if ('text' in payload) {
    fd.append('text', payload.text);
  }
  return fd;
}

// What Immich's predict does for one URL: POST, then response.json() on a 2xx.
async function predict(base, payload, config) {
  const res = await fetch(new URL('/predict', base), { method: 'POST', body: await formData(payload, config) });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

const visual = (name) => ({ clip: { visual: { modelName: name } } });
const textual = (name) => ({ clip: { textual: { modelName: name, options: { language: 'en' } } } });
const faces = (name, minScore) => ({
  'facial-recognition': { detection: { modelName: name, options: { minScore } }, recognition: { modelName: name } },
});

function parseVector(s, what) {
  assert.equal(typeof s, 'string', `${what}: Immich reads a string`);
  const v = JSON.parse(s);
  assert.ok(Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x)), `${what}: array of numbers`);
  return v;
}
const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
const norm = (a) => Math.sqrt(dot(a, a));
function closeArrays(a, b, tol, what) {
  assert.equal(a.length, b.length, `${what}: length`);
  const worst = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
  assert.ok(worst <= tol, `${what}: max difference ${worst} > ${tol}`);
}

async function inferdPredict(imagePath, tasks) {
  const buf = await readFile(imagePath);
  const res = await fetch(new URL(`/v1/predict?tasks=${tasks}&vectors=1`, cfg.api), {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: buf,
  });
  assert.equal(res.status, 200, `inferd /v1/predict ${imagePath}`);
  return res.json();
}

// --- health, as Immich's availability check does it ---
{
  const res = await fetch(new URL('/ping', cfg.immich), { signal: AbortSignal.timeout(2000) });
  assert.ok(res.ok);
  assert.equal(await res.text(), 'pong');
  ok('GET /ping answers pong within 2 s');
  const root = await (await fetch(new URL('/', cfg.immich))).json();
  assert.deepEqual(root, { message: 'Immich ML' });
  ok('GET / answers {"message": "Immich ML"}');
}

// --- clip visual and facial recognition on real photos ---
const imageVectors = [];
for (const img of cfg.images) {
  const { status, body } = await predict(cfg.immich, { imagePath: img.path }, visual(cfg.clip));
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(Object.keys(body).sort(), ['clip', 'imageHeight', 'imageWidth']);
  assert.equal(body.imageWidth, img.width);
  assert.equal(body.imageHeight, img.height);
  const v = parseVector(body.clip, 'clip');
  const own = await inferdPredict(img.path, 'image_embedding');
  closeArrays(v, own.image_embedding.vector, 1e-6, 'clip visual = inferd image embedding');
  assert.ok(Math.abs(norm(v) - 1) < 1e-4, 'unit length');
  imageVectors.push(v);
  ok(`clip visual ${img.path.split('/').pop()}: ${v.length}-D, ${img.width}x${img.height}, equals /v1/predict`);

  const r = await predict(cfg.immich, { imagePath: img.path }, faces(cfg.faces, cfg.minScore));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(Object.keys(r.body).sort(), ['facial-recognition', 'imageHeight', 'imageWidth']);
  const got = r.body['facial-recognition'];
  assert.ok(Array.isArray(got));
  const want = (await inferdPredict(img.path, 'faces')).faces;
  assert.equal(got.length, want.length, 'as many faces as /v1/predict finds');
  got.forEach((f, i) => {
    assert.deepEqual(Object.keys(f).sort(), ['boundingBox', 'embedding', 'score']);
    const b = f.boundingBox;
    for (const k of ['x1', 'y1', 'x2', 'y2']) assert.ok(Number.isInteger(b[k]), `${k} is a whole number`);
    const w = want[i];
    // /v1/predict gives boxes to 0.1 px: the whole-pixel box is within 0.55 px of it.
    [b.x1, b.y1, b.x2, b.y2].forEach((x, k) => assert.ok(Math.abs(x - w.box[k]) <= 0.55, `box ${x} vs ${w.box[k]}`));
    assert.ok(Math.abs(f.score - w.score) <= 1e-4 && f.score >= cfg.minScore, 'score');
    const e = parseVector(f.embedding, 'face embedding');
    assert.equal(e.length, 512, "zero-padded to Immich's 512");
    closeArrays(e.slice(0, cfg.faceDim), w.embedding.vector, 1e-6, 'face embedding = inferd face embedding');
    assert.ok(e.slice(cfg.faceDim).every((x) => x === 0), 'padding is zeros');
  });
  ok(`facial-recognition ${img.path.split('/').pop()}: ${got.length} faces, boxes, scores and padded embeddings as /v1/predict`);
  if (got.length >= 2) {
    const [a, b] = got.map((f) => parseVector(f.embedding, 'e'));
    const [wa, wb] = want.slice(0, 2).map((w) => w.embedding.vector);
    assert.ok(Math.abs(dot(a, b) - dot(wa, wb)) < 1e-5, 'padding keeps cosine similarity');
    ok('zero padding keeps the cosine similarity of two faces');
  }
}

// minScore filters: a stricter threshold never finds more faces.
{
  const img = cfg.images[0].path;
  const loose = (await predict(cfg.immich, { imagePath: img }, faces(cfg.faces, cfg.minScore))).body['facial-recognition'];
  const strict = (await predict(cfg.immich, { imagePath: img }, faces(cfg.faces, 0.999))).body['facial-recognition'];
  assert.ok(strict.length <= loose.length && strict.every((f) => f.score >= 0.999));
  ok(`minScore 0.999 keeps ${strict.length} of ${loose.length} faces, all above it`);
}

// --- clip textual: its vectors score images as inferd's own text search does ---
for (const text of cfg.text) {
  const { status, body } = await predict(cfg.immich, { text }, textual(cfg.clip));
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(Object.keys(body), ['clip']);
  const t = parseVector(body.clip, 'clip textual');
  assert.equal(t.length, imageVectors[0].length);
  assert.ok(Math.abs(norm(t) - 1) < 1e-4);
  const again = parseVector((await predict(cfg.immich, { text }, textual(cfg.clip))).body.clip, 'again');
  assert.deepEqual(again, t);
  const res = await fetch(new URL('/v1/search/images', cfg.api), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text, limit: cfg.images.length }),
  });
  const hits = (await res.json()).results;
  assert.equal(hits.length, cfg.images.length);
  for (const h of hits) {
    const i = cfg.images.findIndex((im) => im.asset_id === h.asset_id);
    assert.ok(i >= 0, h.asset_id);
    assert.ok(Math.abs(dot(t, imageVectors[i]) - h.score) < 1e-4, `score of ${h.asset_id}`);
  }
  ok(`clip textual "${text}": ${t.length}-D, scores every image as /v1/search/images does`);
}
{
  const a = parseVector((await predict(cfg.immich, { text: cfg.text[0] }, textual(cfg.clip))).body.clip, 'a');
  const b = parseVector((await predict(cfg.immich, { text: cfg.text[1] }, textual(cfg.clip))).body.clip, 'b');
  assert.ok(dot(a, b) < 0.99999, 'different texts, different vectors');
  ok('different texts give different vectors');
}

// --- a generated detector whose faces are known in advance ---
if (cfg.pack) {
  const p = cfg.pack;
  for (const [minScore, want] of [[p.minScore, p.faces], [0.9, p.strict]]) {
    const r = await predict(p.immich, { imagePath: p.image }, faces(p.name, minScore));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.imageWidth, 1000);
    assert.equal(r.body.imageHeight, 750);
    const got = r.body['facial-recognition'];
    assert.equal(got.length, want.length, `faces: ${JSON.stringify(got.map((f) => f.boundingBox))}`);
    got.forEach((f, i) => {
      const b = f.boundingBox;
      assert.deepEqual([b.x1, b.y1, b.x2, b.y2], want[i].box, `face ${i} box`);
      assert.ok(Math.abs(f.score - want[i].score) < 1e-4, `face ${i} score ${f.score}`);
      const e = parseVector(f.embedding, 'e');
      assert.equal(e.length, 512, 'ArcFace: 512-D, no padding');
      assert.ok(Math.abs(norm(e) - 1) < 1e-4);
    });
    ok(`${p.name}, minScore ${minScore}: ${got.length} faces at the boxes computed by hand ${JSON.stringify(want.map((f) => f.box))}`);
  }
}

// --- errors Immich can meet, each with a clear detail ---
async function refused(payload, config, status, pattern, what) {
  const { status: st, body } = await predict(cfg.immich, payload, config);
  assert.equal(st, status, `${what}: ${JSON.stringify(body)}`);
  assert.match(body.detail, pattern, what);
  ok(`${what}: ${st} ${body.detail}`);
}
const img0 = { imagePath: cfg.images[0].path };
await refused(img0, { ocr: { detection: { modelName: 'PP-OCRv5_mobile', options: { minScore: 0.5 } }, recognition: { modelName: 'PP-OCRv5_mobile', options: { minScore: 0.5 } } } }, 422, /OCR/, 'ocr');
await refused(img0, visual('ViT-B-32__openai'), 422, /not loaded.*runs/, 'a CLIP model that is not loaded');
await refused(img0, faces('buffalo_l_other', 0.7), 422, /not loaded/, 'a face model that is not loaded');
await refused({ text: 'x' }, visual(cfg.clip), 422, /needs an image/, 'visual without an image');
await refused(img0, textual(cfg.clip), 422, /text/, 'textual with an image');
{
  const fd = new FormData();
  fd.append('entries', JSON.stringify(visual(cfg.clip)));
  const res = await fetch(new URL('/predict', cfg.immich), { method: 'POST', body: fd });
  assert.equal(res.status, 400);
  assert.match((await res.json()).detail, /Either image or text/);
  ok('no image and no text: 400');
  const bad = new FormData();
  bad.append('entries', '{"clip": ');
  bad.append('text', 'x');
  const r2 = await fetch(new URL('/predict', cfg.immich), { method: 'POST', body: bad });
  assert.equal(r2.status, 422);
  ok('entries that are not JSON: 422');
  const corrupt = new FormData();
  corrupt.append('entries', JSON.stringify(visual(cfg.clip)));
  corrupt.append('image', new Blob([new Uint8Array([0xff, 0xd8, 0xff, 0, 1, 2, 3])]));
  const r3 = await fetch(new URL('/predict', cfg.immich), { method: 'POST', body: corrupt });
  assert.equal(r3.status, 422);
  ok(`a corrupt image: 422 ${(await r3.json()).detail.slice(0, 60)}`);
}

// --- many requests at once: they wait for a slot instead of failing ---
{
  const n = 6;
  const started = Date.now();
  const all = await Promise.all(
    Array.from({ length: n }, (_, i) => predict(cfg.immich, { imagePath: cfg.images[i % cfg.images.length].path }, faces(cfg.faces, cfg.minScore))),
  );
  assert.ok(all.every((r) => r.status === 200), JSON.stringify(all.map((r) => r.status)));
  ok(`${n} requests at once on ${cfg.slots} slots: all 200 in ${Date.now() - started} ms`);
  // ...and /ping keeps answering while they run.
  const runs = Array.from({ length: 4 }, () => predict(cfg.immich, img0, faces(cfg.faces, cfg.minScore)));
  const t0 = Date.now();
  const res = await fetch(new URL('/ping', cfg.immich), { signal: AbortSignal.timeout(2000) });
  const pingMs = Date.now() - t0;
  assert.ok(res.ok);
  await Promise.all(runs);
  ok(`/ping answered in ${pingMs} ms while every slot was busy`);
}
if (cfg.busy) {
  const all = await Promise.all(
    Array.from({ length: 4 }, () => predict(cfg.busy, img0, faces(cfg.faces, cfg.minScore))),
  );
  const statuses = all.map((r) => r.status);
  assert.ok(statuses.includes(200) && statuses.includes(503), JSON.stringify(statuses));
  const busy = all.find((r) => r.status === 503).body;
  assert.match(busy.detail, /slot/);
  ok(`past --immich-wait-ms: ${JSON.stringify(statuses)}, 503 says "${busy.detail}"`);
}
console.log(`all ${checks} checks passed`);
