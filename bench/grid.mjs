// bench/grid.mjs — the photo grid's load time in Debian's chromium: from navigation to
// the first page's thumbnails all shown, five loads, median. Run by bench/index.
//   node bench/grid.mjs URL ASSETS
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../tests/browser/package.json"));
const puppeteer = require("puppeteer-core");
const [url, n] = process.argv.slice(2);
const browser = await puppeteer.launch({ executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const times = [];
for (let i = 0; i < 6; i++) {
  const page = await browser.newPage(); // a fresh page: no blob cache carried over
  await page.setViewport({ width: 1280, height: 900 });
  const t0 = Date.now();
  await page.goto(url + "/#/photos", { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll("#photo-grid img")];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, { timeout: 60000 });
  if (i > 0) times.push(Date.now() - t0); // the first load warms the browser
  const shown = await page.$eval("#photo-count", (e) => e.textContent);
  if (i === 1) console.log(`grid: "${shown}"`);
  await page.close();
}
await browser.close();
times.sort((a, b) => a - b);
console.log(`photo grid with ${n} assets, first page (60 thumbnails) shown in ${times[2]} ms ` +
  `(median of 5; min ${times[0]}, max ${times[4]})`);
