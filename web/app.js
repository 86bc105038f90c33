// web/app.js — inferd's page: status, photos, search and people over inferd's own HTTP API.
// Plain ES module, no build step and no third-party code. Pages are hash routes
// (#/status, #/photos, #/photo/ID, #/search, #/people, #/person/ID). Every call sends the
// token when the server asked for one (kept in sessionStorage); images are fetched with it
// too and shown from blob URLs, since an <img src> cannot send a header.

const main = document.getElementById("main");
let token = sessionStorage.getItem("inferd-token") || "";
let info = null;
let timers = [];

// --- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

let tokenWait = null;

function askToken(wrong) {
  if (tokenWait) return tokenWait;
  const dlg = document.getElementById("token-dialog");
  const err = document.getElementById("token-error");
  err.hidden = !wrong;
  err.textContent = wrong ? "That token was refused." : "";
  tokenWait = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.onsubmit = (ev) => {
      ev.preventDefault();
      token = document.getElementById("token-input").value.trim();
      sessionStorage.setItem("inferd-token", token);
      dlg.close();
      tokenWait = null;
      resolve();
    };
  });
  dlg.showModal();
  document.getElementById("token-input").focus();
  return tokenWait;
}

async function call(method, path, body, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = {};
    if (token) headers["Authorization"] = "Bearer " + token;
    let payload;
    if (body instanceof Blob) {
      payload = body;
      headers["Content-Type"] = body.type || "application/octet-stream";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const r = await fetch(path, { method, headers, body: payload });
    if (r.status === 401 && attempt < 5) {
      await askToken(attempt > 0 || !!token);
      continue;
    }
    if (opts.blob && r.ok) return r.blob();
    const text = await r.text();
    let js = null;
    try { js = text ? JSON.parse(text) : null; } catch (e) { js = null; }
    if (!r.ok) {
      const er = (js && js.error) || {};
      throw new ApiError(r.status, er.code || "http_" + r.status, er.message || r.statusText);
    }
    return js;
  }
}

const get = (p) => call("GET", p);
const post = (p, b) => call("POST", p, b);
const enc = (id) => encodeURIComponent(id).replace(/%2F/g, "/");

// Thumbnails through fetch (with the token) into blob URLs, remembered a while.
const blobs = new Map();
async function imageURL(path) {
  if (blobs.has(path)) return blobs.get(path);
  const b = await call("GET", path, undefined, { blob: true });
  const u = URL.createObjectURL(b);
  blobs.set(path, u);
  if (blobs.size > 600) {
    const [k, v] = blobs.entries().next().value;
    URL.revokeObjectURL(v);
    blobs.delete(k);
  }
  return u;
}

function thumbPath(assetId, faceId) {
  return "/v1/assets/" + enc(assetId) + "/thumbnail" + (faceId ? "?face=" + faceId : "");
}

// Loads the image of every img[data-src] below `root`; a missing thumbnail shows its alt text.
function loadImages(root) {
  for (const img of root.querySelectorAll("img[data-src]")) {
    const src = img.dataset.src;
    img.removeAttribute("data-src");
    imageURL(src).then((u) => { img.src = u; }).catch(() => { img.classList.add("missing"); });
  }
}

// --- helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined)
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  loadImages(main);
}

function failure(e) {
  return h("p", { class: "error", role: "alert" },
    e instanceof ApiError ? `${e.message} (${e.code})` : "inferd did not answer: " + e.message);
}

function name(asset) {
  const p = asset.payload && asset.payload.path;
  return typeof p === "string" ? p : asset.asset_id;
}

function photoTile(a, extra) {
  return h("a", { class: "tile", href: "#/photo/" + enc(a.asset_id), "data-asset": a.asset_id },
    h("img", { alt: name(a), "data-src": thumbPath(a.asset_id), loading: "lazy" }),
    a.faces ? h("span", { class: "badge", title: "faces" }, a.faces + " ☺") : null,
    h("span", { class: "cap" }, extra !== undefined ? extra : name(a)));
}

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

// --- status -------------------------------------------------------------------------------

// Finish times (ms) of the latest jobs that ended, for the throughput chart.
let ends = [];

function drawChart(canvas) {
  const ctx = canvas.getContext("2d");
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const hgt = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.clearRect(0, 0, w, hgt);
  const now = Date.now(), span = 10 * 60 * 1000, bucket = 10000, n = span / bucket;
  const rates = new Array(n).fill(0);
  for (const t of ends) {
    const k = Math.floor((t - (now - span)) / bucket);
    if (k >= 0 && k < n) rates[k]++;
  }
  const max = Math.max(1, ...rates);
  const style = getComputedStyle(document.body);
  ctx.fillStyle = style.getPropertyValue("--accent") || "#0b5cad";
  const bw = w / n;
  rates.forEach((r, i) => {
    const bh = (r / max) * (hgt - 20 * devicePixelRatio);
    ctx.fillRect(i * bw + 1, hgt - bh, Math.max(1, bw - 2), bh);
  });
  ctx.fillStyle = style.getPropertyValue("--muted") || "#666";
  ctx.font = `${12 * devicePixelRatio}px system-ui`;
  ctx.fillText(`jobs ended per 10 s, last 10 minutes (max ${max})`, 6, 14 * devicePixelRatio);
}

async function pageStatus() {
  const cards = h("div", { class: "cards", id: "status-cards" });
  const canvas = h("canvas", { class: "chart", "aria-label": "throughput chart", role: "img" });
  const fails = h("div", { id: "failures" });
  const about = h("p", { class: "muted", id: "about" });
  show(h("h1", {}, "Status"), cards, h("h2", {}, "Throughput"), canvas,
    h("h2", {}, "Recent failures"), fails, about);
  const card = (id, label, value) =>
    h("div", { class: "card", id: "card-" + id }, h("div", { class: "n" }, value ?? "–"),
      h("div", { class: "l" }, label));
  every(2000, async () => {
    try {
      const s = await get("/health");
      cards.replaceChildren(card("queued", "queued", s.queue_size), card("running", "running", s.running),
        card("slots", "slots busy", `${s.busy} / ${s.slots}`), card("done", "done", s.done),
        card("failed", "failed", s.failed), card("uptime", "uptime", fmtDuration(s.uptime_s)));
      drawChart(canvas);
      about.textContent = `${s.role} ${s.worker_id}` + (info ? ` · inferd ${info.version}` : "");
    } catch (e) { cards.replaceChildren(failure(e)); }
  });
  every(10000, async () => {
    try { // the chart from the jobs that ended lately (their finish times)
      const [d, f] = await Promise.all([get("/v1/jobs?state=done&limit=1000"),
        get("/v1/jobs?state=failed&limit=1000")]);
      ends = [...d.jobs, ...f.jobs].map((j) => Date.parse(j.finished_at)).filter((t) => t > 0);
      drawChart(canvas);
    } catch (e) { /* the cards say what is wrong */ }
  });
  every(5000, async () => {
    try {
      const js = await get("/v1/jobs?state=failed&limit=10");
      if (!js.jobs.length) { fails.replaceChildren(h("p", { class: "muted" }, "None.")); return; }
      fails.replaceChildren(h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "asset"), h("th", {}, "reason"), h("th", {}, "when"))),
        h("tbody", {}, js.jobs.map((j) => h("tr", {},
          h("td", {}, (j.payload && j.payload.path) || j.asset_id),
          h("td", {}, j.error ? `${j.error.code}: ${j.error.message}` : ""),
          h("td", {}, new Date(j.finished_at || j.updated_at).toLocaleString()))))));
    } catch (e) { fails.replaceChildren(failure(e)); }
  });
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

// --- photos -------------------------------------------------------------------------------

const cursors = [""]; // page starts seen, for "previous"

async function pagePhotos(params) {
  const page = Math.max(0, parseInt(params.get("page") || "0", 10));
  const cursor = cursors[page] ?? "";
  show(h("h1", {}, "Photos"), h("p", { class: "muted" }, "Loading…"));
  try {
    const js = await get("/v1/assets?limit=60" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    if (js.next_cursor) cursors[page + 1] = js.next_cursor;
    const pager = h("div", { class: "pager" },
      page > 0 ? h("a", { href: "#/photos?page=" + (page - 1) }, "← Previous") : null,
      h("span", { class: "muted", id: "photo-count" },
        `${page * 60 + 1}–${page * 60 + js.assets.length} of ${js.total} photos`),
      js.next_cursor ? h("a", { href: "#/photos?page=" + (page + 1) }, "Next →") : null);
    show(h("h1", {}, "Photos"),
      js.total ? h("div", { class: "grid", id: "photo-grid" }, js.assets.map((a) => photoTile(a)))
        : h("p", {}, "No photos yet: run ", h("code", {}, "inferd index DIR"), "."),
      pager);
  } catch (e) { show(h("h1", {}, "Photos"), failure(e)); }
}

async function pagePhoto(id) {
  show(h("h1", {}, "Photo"), h("p", { class: "muted" }, "Loading…"));
  try {
    const a = await get("/v1/assets/" + enc(id));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${a.width} ${a.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    for (const f of a.faces) {
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const [x1, y1, x2, y2] = f.box;
      r.setAttribute("x", x1); r.setAttribute("y", y1);
      r.setAttribute("width", x2 - x1); r.setAttribute("height", y2 - y1);
      r.setAttribute("class", "face-box");
      svg.append(r);
    }
    const nsfw = (a.image_embeddings.find((m) => m.nsfw) || {}).nsfw;
    const facesList = h("div", { class: "grid" }, a.faces.map((f) =>
      h(f.person_id ? "a" : "div", { class: "tile", href: f.person_id ? "#/person/" + f.person_id : null },
        h("img", { alt: "face", "data-src": thumbPath(a.asset_id, f.id) }),
        h("span", { class: "cap" }, f.person_id ? "person " + f.person_id : "no person yet"))));
    const similar = h("div", { class: "grid", id: "similar" }, h("p", { class: "muted" }, "…"));
    const dups = h("div", { id: "duplicates" }, h("p", { class: "muted" }, "…"));
    show(h("h1", {}, name(a)),
      h("div", { class: "split" },
        h("div", {}, h("div", { class: "photo" },
          h("img", { alt: name(a), "data-src": thumbPath(a.asset_id), id: "photo-img" }), svg),
          h("p", { class: "muted" }, `${a.width} × ${a.height} · ${a.faces.length} faces`)),
        h("div", {},
          h("h2", {}, "Faces"), a.faces.length ? facesList : h("p", { class: "muted" }, "None found."),
          h("h2", {}, "NSFW scores"), nsfw ? h("table", {}, Object.entries(nsfw).map(([k, v]) =>
            h("tr", {}, h("td", {}, k), h("td", {}, v.toFixed(3)),
              h("td", { style: "width:40%" }, h("div", { class: "bar", style: `width:${Math.round(v * 100)}%` })))))
            : h("p", { class: "muted" }, "The image model gives none."))),
      h("h2", {}, "Near-duplicates"), dups, h("h2", {}, "Similar photos"), similar);
    try {
      const d = await get("/v1/assets/" + enc(id) + "/duplicates?limit=12");
      dups.replaceChildren(d.duplicates.length
        ? h("div", { class: "grid" }, d.duplicates.map((x) => photoTile(x, (x.score * 100).toFixed(1) + " %")))
        : h("p", { class: "muted" }, "None."));
      const s = await post("/v1/search/images", { asset_id: id, limit: 12 });
      similar.replaceChildren(...s.results.map((x) => photoTile(x, (x.score * 100).toFixed(1) + " %")));
      loadImages(main);
    } catch (e) { similar.replaceChildren(failure(e)); }
  } catch (e) { show(h("h1", {}, "Photo"), failure(e)); }
}

// --- search -------------------------------------------------------------------------------

async function pageSearch() {
  const results = h("div", { id: "results" });
  const file = h("input", { type: "file", accept: "image/*", id: "search-file" });
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop a photo here, or "), h("label", { for: "search-file" }, "pick one: "), file);
  const run = async (blob) => {
    results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      const p = await call("POST", "/v1/predict?tasks=image_embedding&vectors=1", blob);
      const emb = p.image_embedding;
      const s = await post("/v1/search/images", { vector: emb.vector, model: emb.model, limit: 24 });
      showResults(results, s.results);
    } catch (e) { results.replaceChildren(failure(e)); }
  };
  file.addEventListener("change", () => file.files[0] && run(file.files[0]));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = ev.dataTransfer.files[0];
    if (f) run(f);
  });
  let text;
  if (info && info.text_search) {
    const q = h("input", { type: "search", id: "text-query", placeholder: "a dog on a beach",
      "aria-label": "Describe a photo" });
    text = h("form", { class: "row", onsubmit: async (ev) => {
      ev.preventDefault();
      results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
      try { showResults(results, (await post("/v1/search/images", { text: q.value, limit: 24 })).results); }
      catch (e) { results.replaceChildren(failure(e)); }
    } }, q, h("button", { class: "primary", type: "submit" }, "Search"));
  } else {
    text = h("p", { class: "muted", id: "no-text" },
      "Text search needs a CLIP model: start inferd with --image-embedder set to a CLIP model " +
      "directory, or --clip-model DIR.");
  }
  show(h("h1", {}, "Search"), h("h2", {}, "By photo"), drop, h("h2", {}, "By text"), text,
    h("h2", {}, "Results"), results);
}

function showResults(el, rs) {
  el.replaceChildren(rs.length
    ? h("div", { class: "grid" }, rs.map((x) => photoTile(x, (x.score * 100).toFixed(1) + " %")))
    : h("p", { class: "muted" }, "Nothing similar."));
  loadImages(el);
}

// --- people -------------------------------------------------------------------------------

async function pagePeople() {
  show(h("h1", {}, "People"), h("p", { class: "muted" }, "Loading…"));
  try {
    const js = await get("/v1/people");
    const selected = new Set();
    const merge = h("button", { class: "primary", disabled: true, id: "merge" }, "Merge selected");
    merge.addEventListener("click", async () => {
      const ids = [...selected];
      if (ids.length < 2) return;
      try {
        await post(`/v1/people/${ids[0]}/merge`, { from: ids.slice(1) });
        location.hash = "#/person/" + ids[0];
      } catch (e) { main.append(failure(e)); }
    });
    const tiles = js.people.map((p) => {
      const box = h("input", { type: "checkbox", "aria-label": "select " + (p.name || "person " + p.id) });
      box.addEventListener("change", () => {
        box.checked ? selected.add(p.id) : selected.delete(p.id);
        merge.disabled = selected.size < 2;
      });
      return h("div", { class: "tile person", "data-person": p.id },
        h("a", { href: "#/person/" + p.id },
          h("img", { alt: p.name || "person " + p.id,
            "data-src": p.cover ? thumbPath(p.cover.asset_id, p.cover.face_id) : null }),
          h("span", { class: "cap" }, `${p.name || "Unnamed"} · ${p.face_count} faces`)), box);
    });
    show(h("h1", {}, "People"),
      js.people.length ? h("div", { class: "grid", id: "people-grid" }, tiles)
        : h("p", {}, "No people yet: they appear once a face was seen a few times."),
      js.people.length > 1 ? h("div", { class: "row" }, merge,
        h("span", { class: "muted" }, "the first selected keeps its name")) : null);
  } catch (e) { show(h("h1", {}, "People"), failure(e)); }
}

async function pagePerson(id) {
  show(h("h1", {}, "Person"), h("p", { class: "muted" }, "Loading…"));
  try {
    const p = await get("/v1/people/" + id);
    const input = h("input", { type: "text", id: "person-name", value: p.name || "",
      placeholder: "Name", "aria-label": "Name", maxlength: "200" });
    const saved = h("span", { class: "muted", role: "status", id: "saved" });
    const form = h("form", { class: "row", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await call("PATCH", "/v1/people/" + id, { name: input.value.trim() || null });
        saved.textContent = "Saved.";
        title.textContent = r.name || "Unnamed";
      } catch (e) { saved.replaceChildren(failure(e)); }
    } }, input, h("button", { class: "primary", type: "submit" }, "Rename"), saved);
    const title = h("h1", { id: "person-title" }, p.name || "Unnamed");
    show(title, form, h("p", { class: "muted" }, `${p.face_count} faces in ${p.assets.length} photos`),
      h("h2", {}, "Faces"), h("div", { class: "grid" }, p.faces.map((f) =>
        h("a", { class: "tile", href: "#/photo/" + enc(f.asset_id) },
          h("img", { alt: "face in " + f.asset_id, "data-src": thumbPath(f.asset_id, f.id) })))),
      h("h2", {}, "Photos"), h("div", { class: "grid" }, p.assets.map((a) =>
        photoTile({ asset_id: a, payload: null }))));
  } catch (e) { show(h("h1", {}, "Person"), failure(e)); }
}

// --- router -------------------------------------------------------------------------------

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const hash = location.hash || "#/status";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const pageName = parts[0] || "status";
  for (const a of document.querySelectorAll("nav a"))
    a.toggleAttribute("aria-current", a.dataset.page === pageName || a.dataset.page + "s" === pageName ||
      (pageName === "photo" && a.dataset.page === "photos") || (pageName === "person" && a.dataset.page === "people"));
  for (const a of document.querySelectorAll("nav a[aria-current]")) a.setAttribute("aria-current", "page");
  const rest = decodeURIComponent(parts.slice(1).join("/"));
  if (!info) {
    // Ask for the token before the first call that needs one, so that no request fails.
    const health = await fetch("/health").then((r) => r.json()).catch(() => ({}));
    if (health.auth && !token) await askToken(false);
    info = await get("/v1/info").catch(() => null);
  }
  if (pageName === "photos") await pagePhotos(params);
  else if (pageName === "photo") await pagePhoto(rest);
  else if (pageName === "search") await pageSearch();
  else if (pageName === "people") await pagePeople();
  else if (pageName === "person") await pagePerson(rest);
  else await pageStatus();
  main.focus();
}

window.addEventListener("hashchange", route);
route();
