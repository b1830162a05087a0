// The in-browser page: the shipped ONNX generator on onnxruntime-web (vendor/, no CDN), faces,
// grids and morphs made on the visitor's device from the same seeds as the Python runtime.
import { MAX_SEED, checkSeed, latents, randn, seedClass, slerp } from "./latents.js";

const t0 = performance.now();
const FACE = 64;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let ort = null;
let backend = "wasm";
let model = null;  // { name, session, zDim, inputName, bytes, seconds, classes, weights, hasEncoder }
let menuIndex = [];  // index.json's models
let encoder = null;  // { name, session }: the inversion encoder of the model of that name, loaded on first use

function showError(message) { $("error").textContent = message; }
function clearError() { $("error").textContent = ""; }

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url} (HTTP ${r.status})`);
  return r;
}

async function gunzip(response) {  // the vendored .wasm is gzipped; any static server can serve it
  return await new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
}

async function hasWebGPU() {
  if (!navigator.gpu || params.get("backend") === "wasm") return false;
  // Only files the vendor record lists are asked for: no request the server cannot answer.
  const vendored = await fetchOk("vendor/VERSION.json").then((r) => r.json()).then(
    (v) => "ort.webgpu.bundle.min.mjs" in (v.files || {}), () => false);
  return vendored && (await navigator.gpu.requestAdapter().catch(() => null)) !== null;
}

// The menu: every model in ../models/index.json (written with the models' cards by scripts/model_card.py).
async function loadMenu() {
  const index = await (await fetchOk("../models/index.json")).json();
  menuIndex = index.models;
  const menu = $("model");
  menu.replaceChildren(...index.models.map((m) => new Option(
    `${m.name} (${m.classes.length ? "conditional, " : ""}${m.variant}, ${(m.bytes / 1e6).toFixed(1)} MB` +
    `${m.encoder ? ", your face" : ""})`, m.name)));
  return index.browser_default;
}

async function loadRuntime() {
  // WebGPU where the browser has it and its build is vendored (scripts/vendor_web.py --webgpu); WebAssembly otherwise.
  backend = (await hasWebGPU()) ? "webgpu" : "wasm";
  ort = await import(backend === "webgpu" ? "./vendor/ort.webgpu.bundle.min.mjs" : "./vendor/ort.wasm.bundle.min.mjs");
  const wasm = backend === "webgpu" ? "ort-wasm-simd-threaded.asyncify.wasm.gz" : "ort-wasm-simd-threaded.wasm.gz";
  ort.env.wasm.wasmBinary = await gunzip(await fetchOk(`vendor/${wasm}`));
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

async function loadModel(name) {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`model name ${JSON.stringify(name.slice(0, 40))} is not valid`);
  const start = performance.now();
  const bytes = new Uint8Array(await (await fetchOk(`../models/${name}.onnx`)).arrayBuffer());
  // As core/ort.py does: without QDQ handling an int8 model's weights are dequantised once, at load,
  // not on every run (onnxruntime has no integer ConvTranspose); float models are unaffected.
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [backend], extra: { session: { disable_quant_qdq: "1" } } });
  const meta = session.inputMetadata?.[0];
  const zDim = meta?.shape?.[1];
  if (!Number.isInteger(zDim)) throw new Error(`${name}.onnx does not say its z size`);
  // A conditional model takes a second input, `class`; its names and training frequencies are in its card.
  let classes = [], weights = [];
  if (session.inputNames.includes("class")) {
    const card = await (await fetchOk(`../models/${name}.json`)).json();
    classes = card.classes || [];
    weights = card.class_counts?.length === classes.length ? card.class_counts : classes.map(() => 1);
    if (!classes.length) throw new Error(`${name}.onnx takes a class but its card names no classes`);
  }
  const hasEncoder = Boolean(menuIndex.find((m) => m.name === name)?.encoder);
  model = { name, session, zDim, inputName: session.inputNames[0], bytes: bytes.length,
            seconds: (performance.now() - start) / 1000, classes, weights, hasEncoder };
  $("invert-file").disabled = !hasEncoder;
  $("invert-help").textContent = hasEncoder
    ? "A drawn face, read by the model's encoder: the nearest face the model can draw. The picture stays on this device."
    : `${name} has no encoder: choose a model whose menu entry says "your face".`;
  const menu = $("class");
  menu.replaceChildren(...["any", ...classes].map((c) => new Option(c, c)));
  $("class-label").hidden = !classes.length;
  $("status").textContent = `${name}: ${(bytes.length / 1e6).toFixed(1)} MB, z ${zDim}, on ${backend} ` +
    `(${model.seconds.toFixed(2)} s to load)` + (classes.length ? `, classes: ${classes.join(", ")}` : "");
}

// The class of each seed's face: the chosen one, or each seed's own draw ("any").
function classesFor(seeds, chosen = $("class").value) {
  if (!model.classes.length) return null;
  if (chosen !== "any") {
    const k = model.classes.indexOf(chosen);
    if (k < 0) throw new Error(`class must be one of: any, ${model.classes.join(", ")}; got ${JSON.stringify(chosen)}`);
    return seeds.map(() => k);
  }
  return seeds.map((s) => seedClass(s, model.zDim, model.weights));
}

// numpy's rint: round half to even, as core/images.py's to_uint8.
function rint(v) {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// z [n * zDim] (and n classes for a conditional model) -> n faces as RGBA bytes [n][64 * 64 * 4].
async function render(z, n, classes = null) {
  const feeds = { [model.inputName]: new ort.Tensor("float32", z, [n, model.zDim]) };
  if (model.classes.length) feeds.class = new ort.Tensor("int64", BigInt64Array.from(classes.map(BigInt)), [n]);
  const out = (await model.session.run(feeds))[model.session.outputNames[0]];
  const x = out.data;
  const plane = FACE * FACE;
  const faces = [];
  for (let k = 0; k < n; k++) {
    const rgba = new Uint8ClampedArray(plane * 4);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = Math.min(1, Math.max(-1, x[k * 3 * plane + c * plane + p]));
        rgba[p * 4 + c] = rint((v + 1) * 127.5);
      }
      rgba[p * 4 + 3] = 255;
    }
    faces.push(rgba);
  }
  return faces;
}

async function faces(seeds, psi = 1, chosen = undefined) {
  return render(latents(seeds, model.zDim, psi), seeds.length, classesFor(seeds, chosen));
}

function draw(canvas, rgba, x, y, scale) {
  canvas.hidden = false;  // no empty box before the first result
  const tile = document.createElement("canvas");
  tile.width = tile.height = FACE;
  tile.getContext("2d").putImageData(new ImageData(rgba, FACE, FACE), 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tile, x, y, FACE * scale, FACE * scale);
}

function readPsi() {
  const psi = Number($("psi").value);
  if (!(psi > 0 && psi <= 2)) throw new Error(`psi must be in (0, 2], got ${JSON.stringify($("psi").value.slice(0, 20))}`);
  return psi;
}

function readInt(id, name, lo, hi) {
  const v = Number($(id).value);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${name} must be a whole number from ${lo} to ${hi}`);
  return v;
}

function seedList(text) {
  const seeds = String(text).split(",").map((s) => checkSeed(s, "seeds"));
  if (seeds.length < 2 || seeds.length > 16) throw new Error("a morph needs 2 to 16 seeds, e.g. 3,7,11");
  return seeds;
}

async function act(fn) {
  clearError();
  try { await fn(); } catch (e) { showError(e.message); }
}

async function showFace() {
  const seed = checkSeed($("seed").value);
  const psi = readPsi();
  const start = performance.now();
  const [rgba] = await faces([seed], psi);
  draw($("face"), rgba, 0, 0, 4);
  const cls = model.classes.length ? `, class ${$("class").value}` : "";
  $("face-info").textContent = `seed ${seed}${cls}: ${(performance.now() - start).toFixed(0)} ms`;
  $("face").dataset.seed = String(seed);
  if (window.edge.coldStartMs === null) window.edge.coldStartMs = performance.now() - t0;
}

async function showGrid() {
  const start = checkSeed($("grid-start").value, "start seed");
  const rows = readInt("grid-rows", "rows", 1, 8), cols = readInt("grid-cols", "columns", 1, 8);
  if (start + rows * cols - 1 > MAX_SEED) throw new Error(`start seed too large: the grid would pass ${MAX_SEED}`);
  const seeds = Array.from({ length: rows * cols }, (_, i) => start + i);
  const t = performance.now();
  const tiles = await faces(seeds, readPsi());
  const canvas = $("grid");
  canvas.width = cols * 66 + 2; canvas.height = rows * 66 + 2;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  tiles.forEach((rgba, i) => draw(canvas, rgba, 2 + (i % cols) * 66, 2 + Math.floor(i / cols) * 66, 1));
  $("grid-info").textContent = `${seeds.length} faces in ${(performance.now() - t).toFixed(0)} ms`;
}

let morphTimer = null;
async function showMorph() {
  const seeds = seedList($("morph-seeds").value);
  const per = readInt("morph-frames", "frames per step", 2, 60);
  const psi = readPsi();
  const keys = seeds.map((s) => latents([s], model.zDim, psi));
  const z = [];
  for (let k = 0; k + 1 < keys.length; k++) {
    for (let f = 0; f < per; f++) z.push(slerp(keys[k], keys[k + 1], f / per));
  }
  z.push(keys[keys.length - 1]);
  const flat = new Float32Array(z.length * model.zDim);
  z.forEach((row, i) => flat.set(row, i * model.zDim));
  const t = performance.now();
  const first = classesFor(seeds.slice(0, 1));  // one class for the whole morph: the chosen one, or the first seed's
  const frames = await render(flat, z.length, first && z.map(() => first[0]));
  $("morph-info").textContent = `${frames.length} frames in ${(performance.now() - t).toFixed(0)} ms`;
  clearInterval(morphTimer);
  let i = 0;
  morphTimer = setInterval(() => { draw($("morph"), frames[i], 0, 0, 4); i = (i + 1) % frames.length; }, 1000 / 15);
}

// A picture as the encoder's input: centre-cropped to a square and resized to 64x64 (as
// core/pictures.py does), float32 [1, 3, 64, 64] in [-1, 1]; and its pixels, to show beside the face found.
async function pictureInput(file) {
  if (file.size > 2 * 2 ** 20) throw new Error(`the picture is ${(file.size / 2 ** 20).toFixed(1)} MiB; at most 2 MiB`);
  const bitmap = await createImageBitmap(file).catch(() => {
    throw new Error("the file is not a readable picture (PNG, JPEG, WebP, BMP or GIF)");
  });
  const side = Math.min(bitmap.width, bitmap.height);
  const tile = document.createElement("canvas");
  tile.width = tile.height = FACE;
  const ctx = tile.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, FACE, FACE);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, FACE, FACE).data;
  const plane = FACE * FACE;
  const x = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) x[c * plane + p] = rgba[p * 4 + c] / 127.5 - 1;
  }
  return { x, rgba: new Uint8ClampedArray(rgba) };
}

async function showInverted() {
  const file = $("invert-file").files[0];
  if (!file) return;
  if (!model.hasEncoder) throw new Error(`${model.name} has no encoder`);
  const t = performance.now();
  if (encoder?.name !== model.name) {
    const bytes = new Uint8Array(await (await fetchOk(`../models/${model.name}.encoder.onnx`)).arrayBuffer());
    encoder = { name: model.name, session: await ort.InferenceSession.create(bytes, { executionProviders: [backend] }) };
  }
  const { x, rgba } = await pictureInput(file);
  const out = await encoder.session.run({ image: new ort.Tensor("float32", x, [1, 3, FACE, FACE]) });
  const z = out.z.data;
  let cls = null;
  if (model.classes.length && out.class_logits) {  // the class the encoder reads: its largest logit
    const logits = Array.from(out.class_logits.data);
    cls = [logits.indexOf(Math.max(...logits))];
  }
  const [found] = await render(new Float32Array(z), 1, cls);
  const canvas = $("invert");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  draw(canvas, rgba, 0, 0, 4);
  draw(canvas, found, 264, 0, 4);
  window.edge.found = { z: Array.from(z), cls: cls && cls[0], picture: Array.from(rgba), face: Array.from(found) };
  const read = cls ? `, class read: ${model.classes[cls[0]]}` : "";
  $("invert-info").textContent = `left your picture at 64x64, right the face found${read}: ` +
    `${(performance.now() - t).toFixed(0)} ms`;
}

// Faces per second at a batch size, for bench/edge_speed.py.
async function bench(batch, seconds = 2) {
  const seeds = Array.from({ length: batch }, (_, i) => i);
  const z = latents(seeds, model.zDim);
  await render(z, batch, classesFor(seeds, "any"));  // warm-up
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await render(z, batch, classesFor(seeds, "any"));
    n += batch;
  }
  return n / ((performance.now() - start) / 1000);
}

window.edge = { randn, latents, seedClass, checkSeed, faces, bench, pictureInput, coldStartMs: null, backend: () => backend,
                model: () => model && { name: model.name, bytes: model.bytes, zDim: model.zDim, seconds: model.seconds,
                                        classes: model.classes } };
window.edge.ready = (async () => {
  try {
    const [, fallback] = await Promise.all([loadRuntime(), loadMenu()]);
    await loadModel(params.get("model") || fallback);
    $("model").value = model.name;
    await showFace();
  } catch (e) {
    showError(e.message);
    throw e;
  }
})();

$("go").addEventListener("click", () => act(showFace));
$("seed").addEventListener("keydown", (e) => { if (e.key === "Enter") act(showFace); });
$("random").addEventListener("click", () => act(async () => {
  $("seed").value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
  await showFace();
}));
$("grid-go").addEventListener("click", () => act(showGrid));
$("morph-go").addEventListener("click", () => act(showMorph));
$("invert-file").addEventListener("change", () => act(showInverted));
// A new model: its face at once, and the grid and morph of the old one cleared with a note.
function markStale() {
  clearInterval(morphTimer);
  for (const id of ["grid", "morph", "invert"]) {
    const c = $(id);
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
    c.hidden = true;
    $(`${id}-info`).textContent = "the model changed: press the button again for this model's faces";
  }
}
$("model").addEventListener("change", () => act(async () => {
  await loadModel($("model").value);
  markStale();
  await showFace();
}));
$("class").addEventListener("change", () => act(showFace));
