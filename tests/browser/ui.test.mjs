// tests/browser/ui.test.mjs — inferd's web page in a real browser (Debian's chromium,
// headless, driven by puppeteer-core): a real `inferd serve` with a token, a folder of
// the test photos indexed by the real `inferd index`, then every page. Checks: the token
// is asked once; status counts the jobs; the photo grid shows every photo with a loaded
// thumbnail; a photo page draws one box per stored face; a search by an uploaded photo
// returns its near-duplicate first; people (after indexing ../shared/data/faces-dev when
// it is there) are listed and a rename survives a reload; the layout fits a phone; the
// keyboard reaches the navigation; no console error, page error or failed request
// anywhere. Screenshots of each page go to $INFERD_TEST_OUT (default ./browser-out).
//
//   INFERD_BIN=build/inferd INFERD_MODELS_DIR=var/models INFERD_TESTDATA=.deps/testdata \
//     node tests/browser/ui.test.mjs
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const bin = process.env.INFERD_BIN || path.join(repo, "build/inferd");
const models = process.env.INFERD_MODELS_DIR || path.join(repo, "var/models");
const testdata = process.env.INFERD_TESTDATA || path.join(repo, ".deps/testdata");
const facesDev = process.env.INFERD_FACES_DEV || path.resolve(repo, "../shared/data/faces-dev");
const outDir = path.resolve(process.env.INFERD_TEST_OUT || "browser-out");
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";

let puppeteer;
try {
  puppeteer = (await import("puppeteer-core")).default;
} catch (e) {
  console.error("puppeteer-core missing: run scripts/setup.sh browser");
  process.exit(1);
}
if (!fs.existsSync(chromium)) {
  console.error(`${chromium} missing: run scripts/setup.sh deps (Debian's chromium)`);
  process.exit(1);
}

const t0 = Date.now();
const log = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(fn, what, timeoutMs = 60000, every = 250) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(every);
  }
}
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "inferd-browser-"));
const media = path.join(tmp, "media");
const photos = path.join(media, "photos");
fs.mkdirSync(photos, { recursive: true });
fs.mkdirSync(outDir, { recursive: true });
const faceapi = path.join(testdata, "faceapi");
const samples = [1, 2, 3, 4, 5, 6].map((i) => path.join(faceapi, `sample${i}.jpg`));
// sample1 is indexed only as a near-duplicate (scaled, recompressed); the search uploads
// the original and must find that copy first.
for (const s of samples.slice(1)) fs.copyFileSync(s, path.join(photos, path.basename(s)));
execFileSync("convert", [samples[0], "-resize", "85%", "-quality", "80",
  path.join(photos, "sample1-copy.jpg")]);
let nPhotos = 6;
const withPeople = fs.existsSync(facesDev);
if (withPeople) {
  const dst = path.join(media, "faces-dev");
  fs.cpSync(facesDev, dst, { recursive: true, filter: (f) => !path.basename(f).startsWith(".") });
  const imgs = execFileSync("find", [dst, "-type", "f", "(", "-iname", "*.jpg", "-o",
    "-iname", "*.jpeg", "-o", "-iname", "*.png", ")"]).toString().trim().split("\n").filter(Boolean);
  nPhotos += imgs.length;
  log(`faces-dev: ${imgs.length} photos copied`);
} else {
  log(`${facesDev} absent (../shared is not checked out): the people checks see no people`);
}
const token = "browser-test-token-" + process.pid;
const tokenFile = path.join(tmp, "token");
fs.writeFileSync(tokenFile, token + "\n", { mode: 0o600 });

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("INFERD_")));
const daemon = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(tmp, "data"),
  "--models-dir", models, "--media-root", media, "--token-file", tokenFile, "--slots", "2",
  "--people-min-faces", "2"], { env, stdio: ["ignore", fs.openSync(path.join(outDir, "inferd.log"), "w"), "inherit"] });
let browser;
const cleanup = async () => {
  if (browser) await browser.close().catch(() => {});
  daemon.kill("SIGTERM");
};
process.on("exit", () => daemon.kill("SIGKILL"));

async function api(method, p, body) {
  const r = await fetch(base + p, { method, headers: { Authorization: "Bearer " + token,
    "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  const js = await r.json().catch(() => null);
  check(r.ok, `${method} ${p} -> ${r.status} ${JSON.stringify(js)}`);
  return js;
}

try {
  await until(async () => (await fetch(base + "/ready", { headers: { Authorization: "Bearer " + token } })
    .then((r) => r.ok).catch(() => false)), "inferd /ready");
  log("inferd ready");

  // Index with the real command; it follows the jobs to their end.
  const idx = execFileSync(bin, ["index", "--url", base, "--token-file", tokenFile, "--state",
    path.join(tmp, "state.tsv"), media], { env, timeout: 600000 }).toString();
  log(idx.trim());
  check(idx.includes(`${nPhotos} image files found`) && idx.includes(`${nPhotos} done`),
    `index summary: ${idx}`);
  const assets = (await api("GET", "/v1/assets?limit=1000")).assets;
  check(assets.length === nPhotos, `assets stored: ${assets.length}`);
  // Clustering passes run after the jobs end: wait until they stop changing the people.
  let last = null;
  const people = await until(async () => {
    const p = (await api("GET", "/v1/people")).people;
    const key = JSON.stringify(p.map((x) => [x.id, x.face_count]));
    const stable = key === last;
    last = key;
    return stable ? p : null;
  }, "the people to settle", 90000, 3000);
  log(`${people.length} people`);
  check(!withPeople || people.length >= 2, "faces-dev indexed, yet fewer than 2 people");

  browser = await puppeteer.launch({ executablePath: chromium, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`); });
  const shot = (name) => page.screenshot({ path: path.join(outDir, name + ".png"), fullPage: true });

  // Status, behind the token dialog.
  const tLoad = Date.now();
  await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#token-dialog[open]");
  await page.type("#token-input", token);
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("#card-done .n")?.textContent === String(n),
    { timeout: 20000 }, nPhotos);
  const failedShown = await page.$eval("#card-failed .n", (e) => e.textContent);
  check(failedShown === "0", "status shows failed " + failedShown);
  await page.waitForSelector("#failures p");
  log(`status page up in ${Date.now() - tLoad} ms`);
  await shot("status");

  // Keyboard: Tab from the top reaches the brand, then the navigation.
  await page.focus("body");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.getAttribute("href"));
  check(focused === "#/status", "second Tab lands on the navigation: " + focused);

  // Photos: every photo, with its thumbnail loaded.
  const tGrid = Date.now();
  await page.goto(base + "/#/photos");
  await page.waitForSelector("#photo-grid");
  await page.waitForFunction(() => [...document.querySelectorAll("#photo-grid img")]
    .every((i) => i.complete && i.naturalWidth > 0), { timeout: 20000 });
  log(`photo grid of ${nPhotos} with thumbnails in ${Date.now() - tGrid} ms`);
  const tiles = await page.$$eval("#photo-grid .tile", (ts) => ts.map((t) => t.dataset.asset));
  check(tiles.length === Math.min(60, nPhotos), `grid tiles ${tiles.length}`);
  const countText = await page.$eval("#photo-count", (e) => e.textContent);
  check(countText.includes(`of ${nPhotos} photos`), "photo count: " + countText);
  await shot("photos");

  // A photo page: one box per stored face.
  const withFaces = assets.filter((a) => a.faces > 1).sort((a, b) => b.faces - a.faces)[0];
  check(withFaces, "a photo with faces");
  await page.click(`#photo-grid .tile[data-asset="${withFaces.asset_id}"]`).catch(async () => {
    await page.goto(base + "/#/photo/" + withFaces.asset_id);
  });
  await page.waitForSelector("#photo-img");
  await page.waitForFunction(() => document.querySelector("#photo-img").naturalWidth > 0);
  const boxes = await page.$$eval("rect.face-box", (r) => r.length);
  check(boxes === withFaces.faces, `face boxes drawn ${boxes}, stored ${withFaces.faces}`);
  await page.waitForSelector("#similar .tile");
  log(`photo ${withFaces.asset_id}: ${boxes} face boxes`);
  await shot("photo");

  // Search by an uploaded photo: its near-duplicate first.
  await page.goto(base + "/#/search");
  await page.waitForSelector("#search-file");
  const input = await page.$("#search-file");
  await input.uploadFile(samples[0]);
  await page.waitForSelector("#results .tile", { timeout: 30000 });
  const first = await page.$eval("#results .tile", (t) => t.dataset.asset);
  check(first === "photos/sample1-copy.jpg", "first search result: " + first);
  const noText = await page.$("#no-text");
  check(noText, "without a CLIP model the page says text search is unavailable");
  await page.waitForFunction(() => [...document.querySelectorAll("#results img")]
    .every((i) => i.complete && i.naturalWidth > 0));
  await shot("search");

  // People.
  await page.goto(base + "/#/people");
  if (people.length > 0) {
    await page.waitForSelector("#people-grid");
    const n = await page.$$eval("#people-grid .tile", (t) => t.length);
    check(n === people.length, `people listed ${n} of ${people.length}`);
    await page.waitForFunction(() => [...document.querySelectorAll("#people-grid img")]
      .every((i) => i.complete && i.naturalWidth > 0));
    await shot("people");
    let pid = people[0].id;
    if (people.length >= 2) {
      // Merge the two smallest people through the page: the first selected keeps its id.
      const [pa, pb] = people.slice(-2);
      await page.click(`.tile[data-person="${pa.id}"] input[type=checkbox]`);
      await page.click(`.tile[data-person="${pb.id}"] input[type=checkbox]`);
      await page.click("#merge");
      await page.waitForFunction((id) => location.hash === "#/person/" + id, {}, pa.id);
      const merged = await api("GET", "/v1/people/" + pa.id);
      check(merged.face_count === pa.face_count + pb.face_count,
        `merged person has ${merged.face_count} faces, expected ${pa.face_count + pb.face_count}`);
      const left = (await api("GET", "/v1/people")).people;
      check(left.length === people.length - 1 && !left.some((p) => p.id === pb.id),
        "merge removed the other");
      pid = pa.id;
    }
    await page.goto(base + "/#/person/" + pid);
    await page.waitForSelector("#person-name");
    await page.$eval("#person-name", (e) => { e.value = ""; });
    await page.type("#person-name", "Ada Browser");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.querySelector("#saved")?.textContent === "Saved.");
    await page.reload({ waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.querySelector("#person-title")?.textContent === "Ada Browser");
    const stored = await api("GET", "/v1/people/" + pid);
    check(stored.name === "Ada Browser", "rename stored: " + stored.name);
    await shot("person");
  } else {
    await page.waitForFunction(() => [...document.querySelectorAll("main p")]
      .some((p) => p.textContent.startsWith("No people yet")));
    await shot("people");
  }

  // A phone: nothing wider than the screen.
  await page.setViewport({ width: 390, height: 844, isMobile: true, deviceScaleFactor: 2 });
  await page.goto(base + "/#/photos");
  await page.waitForSelector("#photo-grid");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the photo grid is ${overflow} px wider than a phone`);
  await shot("photos-phone");

  check(problems.length === 0, "browser problems:\n  " + problems.join("\n  "));
  log(`PASS: screenshots in ${outDir}`);
  await cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.error("FAIL: " + (e.stack || e));
  await cleanup();
  console.error("kept " + tmp);
  process.exit(1);
}
