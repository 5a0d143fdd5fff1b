// medseg viewer: plain JavaScript + canvas, no build step, nothing external.
// Slices come from the server as PNGs (image: windowed grey; label layers: grey = label value);
// this script colours the label layers, draws three linked planes with the spacing's true
// aspect ratio and sends edits as operations (the server holds the working copy).
"use strict";

const PLANES = ["axial", "coronal", "sagittal"];
const PALETTE = [[0, 0, 0], [230, 60, 60], [60, 200, 90], [70, 120, 255], [240, 220, 60],
  [60, 220, 230], [220, 80, 220], [255, 150, 50], [150, 100, 255]];
const DIFF_COLOURS = [[0, 0, 0], [255, 90, 40], [40, 190, 255]]; // 1 false positive, 2 false negative
const token = document.querySelector('meta[name="medseg-token"]').content;
const state = {
  session: null, cases: [], caseId: null, meta: null, index: {}, tool: "navigate",
  layers: new Set(["edit"]), style: "fill", opacity: 0.4, window: null,
  raw: {}, seq: {}, stroke: null, loads: 0,
};
const $ = (sel) => document.querySelector(sel);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Medseg-Token": token },
  };
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

function say(text) { $("#message").textContent = text; }
const caseUrl = (suffix) => `/api/cases/${encodeURIComponent(state.caseId)}/${suffix}`;

// ---------------------------------------------------------------- case list

async function loadCases() {
  const data = await (await api(`/api/cases?sort=${$("#sort").value}`)).json();
  state.cases = data.cases;
  const body = $("#cases tbody");
  body.replaceChildren();
  for (const row of state.cases) {
    const tr = document.createElement("tr");
    tr.dataset.id = row.id;
    const status = row.problem ? "problem" : row.status;
    const cells = [row.id, status, fmt(row.dice, 3), fmt(row.hd95, 1)];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    tr.children[1].className = `status-${status}`;
    if (row.problem) tr.title = row.problem;
    if (row.id === state.caseId) tr.classList.add("current");
    tr.addEventListener("click", () => openCase(row.id));
    body.append(tr);
  }
}

function fmt(value, digits) { return value === null || value === undefined ? "-" : value.toFixed(digits); }

async function openCase(caseId) {
  state.caseId = caseId;
  try {
    state.meta = await (await api(caseUrl("meta"))).json();
  } catch (err) { say(err.message); return; }
  const meta = state.meta;
  for (const plane of PLANES) state.index[plane] = Math.floor(meta.planes[plane].count / 2);
  state.raw = {};
  const select = $("#window");
  select.replaceChildren(...meta.windows.map((w) => new Option(w.replace(/_/g, " "), w)));
  select.value = state.window && meta.windows.includes(state.window) ? state.window : meta.default_window;
  for (const box of document.querySelectorAll("#overlays input")) {
    box.disabled = !meta.layers.includes(box.dataset.layer);
  }
  say(meta.problem ? `problem: ${meta.problem}` : `${caseId}: Dice ${fmt(meta.metrics.dice, 3)}, HD95 ${fmt(meta.metrics.hd95, 1)} mm`);
  document.querySelectorAll("#cases tr").forEach((tr) => tr.classList.toggle("current", tr.dataset.id === caseId));
  updateButtons();
  await Promise.all(PLANES.map((p) => loadPlane(p)));
}

// ---------------------------------------------------------------- slices

function decode(blob) {
  return createImageBitmap(blob).then((bitmap) => {
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  });
}

function visibleLayers() {
  return ["image", ...[...state.layers].filter((l) => state.meta.layers.includes(l))];
}

async function loadPlane(plane, layers) {
  const seq = (state.seq[plane] || 0) + 1;
  state.seq[plane] = seq;
  const index = state.index[plane];
  const wanted = layers || visibleLayers();
  const win = encodeURIComponent($("#window").value);
  const results = await Promise.all(wanted.map(async (layer) => {
    const response = await api(caseUrl(`slice?plane=${plane}&index=${index}&layer=${layer}&window=${win}`));
    return [layer, await decode(await response.blob())];
  })).catch((err) => { say(err.message); return null; });
  if (!results || state.seq[plane] !== seq) return;
  const raw = state.raw[plane] && state.raw[plane].index === index ? state.raw[plane] : { index };
  for (const [layer, data] of results) raw[layer] = data;
  state.raw[plane] = raw;
  state.loads += 1;
  draw(plane);
}

function colourLayer(data, layer) {
  const out = new ImageData(data.width, data.height);
  const colours = layer === "diff" ? DIFF_COLOURS : PALETTE;
  const alpha = Math.round(255 * state.opacity);
  const w = data.width, h = data.height, src = data.data, dst = out.data;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x, v = src[4 * i];
      if (!v) continue;
      if (state.style === "contour" && layer !== "uncertainty") {
        const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          src[4 * (i - 1)] !== v || src[4 * (i + 1)] !== v || src[4 * (i - w)] !== v || src[4 * (i + w)] !== v;
        if (!edge) continue;
      }
      if (layer === "uncertainty") { // heat: transparent yellow (low) to opaque red (high)
        dst[4 * i] = 255; dst[4 * i + 1] = 255 - v; dst[4 * i + 2] = 0;
        dst[4 * i + 3] = Math.round(v * state.opacity * 1.5);
        continue;
      }
      const c = colours[v % colours.length];
      dst[4 * i] = c[0]; dst[4 * i + 1] = c[1]; dst[4 * i + 2] = c[2];
      dst[4 * i + 3] = state.style === "contour" ? 255 : alpha;
    }
  }
  return out;
}

// the slice of one layer on a canvas of its own size, coloured; kept until the slice,
// the overlay style or the opacity changes
function layerCanvas(raw, layer) {
  const key = layer === "image" ? "image" : `${state.style}|${state.opacity}`;
  raw.canvases = raw.canvases || {};
  const cached = raw.canvases[layer];
  if (cached && cached.key === key && cached.data === raw[layer]) return cached.canvas;
  const pixels = layer === "image" ? raw.image : colourLayer(raw[layer], layer);
  const canvas = document.createElement("canvas");
  canvas.width = pixels.width; canvas.height = pixels.height;
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  raw.canvases[layer] = { key, data: raw[layer], canvas };
  return canvas;
}

function viewSize(plane) {
  const p = state.meta.planes[plane];
  const views = $("#views");
  const boxW = Math.max(100, views.clientWidth / 3 - 12), boxH = Math.max(100, views.clientHeight - 30);
  const widthMm = p.cols * p.col_mm, heightMm = p.rows * p.row_mm;
  const scale = Math.min(boxW / widthMm, boxH / heightMm);
  return [Math.round(widthMm * scale), Math.round(heightMm * scale)];
}

function draw(plane) {
  const raw = state.raw[plane];
  const canvas = document.querySelector(`canvas[data-plane="${plane}"]`);
  if (!raw || !raw.image) return;
  const [w, h] = viewSize(plane);
  canvas.width = w; canvas.height = h;
  canvas.dataset.index = raw.index;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const layers = ["image", ...visibleLayers().slice(1)];
  for (const layer of layers) {
    if (raw[layer]) ctx.drawImage(layerCanvas(raw, layer), 0, 0, w, h);
  }
  drawCrosshair(plane, ctx, w, h);
  const p = state.meta.planes[plane];
  canvas.parentElement.querySelector("figcaption").textContent = `${plane} ${raw.index + 1} / ${p.count}`;
}

function crosshairPixel(plane) {
  const nz = state.meta.shape[0], i = state.index;
  if (plane === "axial") return [i.coronal, i.sagittal];
  if (plane === "coronal") return [nz - 1 - i.axial, i.sagittal];
  return [nz - 1 - i.axial, i.coronal];
}

function drawCrosshair(plane, ctx, w, h) {
  const p = state.meta.planes[plane];
  const [row, col] = crosshairPixel(plane);
  const y = (row + 0.5) * h / p.rows, x = (col + 0.5) * w / p.cols;
  ctx.strokeStyle = "rgba(255, 255, 0, 0.5)"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
}

function goto(plane, index) {
  const count = state.meta.planes[plane].count;
  state.index[plane] = Math.max(0, Math.min(count - 1, index));
  const others = PLANES.filter((p) => p !== plane);
  others.forEach((p) => draw(p));
  return loadPlane(plane);
}

// ---------------------------------------------------------------- mouse and keys

function pixelOf(canvas, event) {
  const p = state.meta.planes[canvas.dataset.plane];
  const rect = canvas.getBoundingClientRect();
  const col = (event.clientX - rect.left) / rect.width * p.cols - 0.5;
  const row = (event.clientY - rect.top) / rect.height * p.rows - 0.5;
  return [row, col];
}

// brush strokes are centred on voxel centres
function snap(point) { return [Math.round(point[0]), Math.round(point[1])]; }

function moveCrosshair(plane, row, col) {
  const nz = state.meta.shape[0], r = Math.round(row), c = Math.round(col);
  const set = (p, v) => { state.index[p] = Math.max(0, Math.min(state.meta.planes[p].count - 1, v)); };
  if (plane === "axial") { set("coronal", r); set("sagittal", c); }
  if (plane === "coronal") { set("axial", nz - 1 - r); set("sagittal", c); }
  if (plane === "sagittal") { set("axial", nz - 1 - r); set("coronal", c); }
  PLANES.filter((p) => p !== plane).forEach((p) => loadPlane(p));
  draw(plane);
}

async function sendEdit(body, reloadAll) {
  try {
    const answer = await (await api(caseUrl("edit"), body)).json();
    state.meta.edit = answer.edit;
    updateButtons();
    await Promise.all(PLANES.map((p) => loadPlane(p, state.layers.has("edit") ? ["edit"] : [])));
    return answer;
  } catch (err) { say(err.message); return null; }
}

function setupCanvas(canvas) {
  const plane = canvas.dataset.plane;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (state.meta) goto(plane, state.index[plane] + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  canvas.addEventListener("mouseenter", () => { state.hover = plane; });
  canvas.addEventListener("mousedown", (event) => {
    if (!state.meta) return;
    const [row, col] = pixelOf(canvas, event);
    if (state.tool === "navigate") { moveCrosshair(plane, row, col); return; }
    state.stroke = { plane, points: [snap([row, col])] };
  });
  canvas.addEventListener("mousemove", (event) => {
    if (state.stroke && state.stroke.plane === plane && (state.tool === "brush" || state.tool === "eraser")) {
      const point = snap(pixelOf(canvas, event)), last = state.stroke.points[state.stroke.points.length - 1];
      if (point[0] !== last[0] || point[1] !== last[1]) state.stroke.points.push(point);
    }
  });
  canvas.addEventListener("mouseup", (event) => finishStroke(plane, pixelOf(canvas, event)));
}

function finishStroke(plane, last) {
  const stroke = state.stroke;
  state.stroke = null;
  if (!stroke || stroke.plane !== plane) return;
  const label = Number($("#label").value), index = state.index[plane];
  if (state.tool === "brush" || state.tool === "eraser") {
    sendEdit({ op: state.tool, plane, index, points: stroke.points.slice(0, 2000),
      radius_mm: Number($("#radius").value), label });
  } else if (state.tool === "positive" || state.tool === "negative") {
    sendPrompt({ plane, index, label, points: [last], point_labels: [state.tool === "positive" ? 1 : 0] });
  } else if (state.tool === "box") {
    const [r0, c0] = stroke.points[0];
    sendPrompt({ plane, index, label, box: [Math.min(r0, last[0]), Math.min(c0, last[1]),
      Math.max(r0, last[0]), Math.max(c0, last[1])] });
  }
}

async function sendPrompt(body) {
  try {
    const answer = await (await api(caseUrl("prompt"), body)).json();
    state.meta.edit = answer.edit;
    updateButtons();
    await Promise.all(PLANES.map((p) => loadPlane(p)));
  } catch (err) { say(err.message); }
}

async function save() {
  try {
    const answer = await (await api(caseUrl("save"), { base_version: state.meta.edit.base_version })).json();
    state.meta.edit = answer.edit;
    say(`saved ${answer.file}`);
    await loadCases();
  } catch (err) { say(err.message); }
}

async function accept() {
  try {
    await api(caseUrl("accept"), {});
    await loadCases();
    const rows = state.cases.filter((r) => !r.problem);
    const at = rows.findIndex((r) => r.id === state.caseId);
    const next = rows.slice(at + 1).concat(rows.slice(0, at)).find((r) => r.status === "unreviewed");
    say(next ? `accepted ${state.caseId}` : "every case reviewed");
    if (next) await openCase(next.id);
  } catch (err) { say(err.message); }
}

function updateButtons() {
  const readOnly = state.session.read_only;
  const edit = state.meta ? state.meta.edit : {};
  $("#undo").disabled = readOnly || !edit.can_undo;
  $("#redo").disabled = readOnly || !edit.can_redo;
  for (const id of ["#save", "#accept", "#fill_holes", "#keep_largest"]) $(id).disabled = readOnly;
  document.querySelectorAll('#tools button[data-tool="brush"], #tools button[data-tool="eraser"]')
    .forEach((b) => { b.disabled = readOnly; });
}

function setTool(tool) {
  state.tool = tool;
  document.querySelectorAll("button[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
}

function setupControls() {
  PLANES.forEach((p) => setupCanvas(document.querySelector(`canvas[data-plane="${p}"]`)));
  document.addEventListener("mouseup", () => { state.stroke = null; });
  document.querySelectorAll("button[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("#sort").addEventListener("change", loadCases);
  $("#window").addEventListener("change", () => { state.window = $("#window").value; PLANES.forEach((p) => loadPlane(p)); });
  $("#style").addEventListener("change", () => { state.style = $("#style").value; PLANES.forEach(draw); });
  $("#opacity").addEventListener("input", () => { state.opacity = $("#opacity").value / 100; PLANES.forEach(draw); });
  document.querySelectorAll("#overlays input").forEach((box) => box.addEventListener("change", () => {
    if (box.checked) state.layers.add(box.dataset.layer); else state.layers.delete(box.dataset.layer);
    PLANES.forEach((p) => loadPlane(p));
  }));
  $("#undo").addEventListener("click", () => sendEdit({ op: "undo" }));
  $("#redo").addEventListener("click", () => sendEdit({ op: "redo" }));
  $("#fill_holes").addEventListener("click", () => sendEdit({ op: "fill_holes", label: Number($("#label").value) }));
  $("#keep_largest").addEventListener("click", () => sendEdit({ op: "keep_largest", label: Number($("#label").value) }));
  $("#save").addEventListener("click", save);
  $("#accept").addEventListener("click", accept);
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => PLANES.forEach(draw));
}

function onKey(event) {
  if (!state.meta || event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  const plane = state.hover || "axial";
  const ctrl = event.ctrlKey || event.metaKey;
  const steps = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 };
  if (event.key in steps) { event.preventDefault(); goto(plane, state.index[plane] + steps[event.key]); }
  else if (ctrl && event.key === "z") { event.preventDefault(); sendEdit({ op: "undo" }); }
  else if (ctrl && event.key === "y") { event.preventDefault(); sendEdit({ op: "redo" }); }
  else if (ctrl && event.key === "s") { event.preventDefault(); save(); }
  else if (!ctrl && event.key === "a") accept();
  else if (!ctrl && event.key === "b") setTool("brush");
  else if (!ctrl && event.key === "e") setTool("eraser");
  else if (!ctrl && event.key === "n") setTool("navigate");
}

async function start() {
  state.session = await (await api("/api/session")).json();
  $("#who").textContent = `${state.session.user}${state.session.read_only ? " (read-only)" : ""}`;
  const labels = Object.entries(state.session.labels).filter(([, v]) => v !== 0);
  $("#label").replaceChildren(...labels.map(([name, v]) => new Option(`${v} ${name}`, v)));
  if (!state.session.prompt) {
    document.querySelectorAll("button.prompt").forEach((b) => {
      b.disabled = true;
      b.title = "Needs a promptable model: start medseg view with --prompt-model RUN";
    });
  }
  setupControls();
  await loadCases();
  const first = state.cases.find((r) => !r.problem);
  if (first) await openCase(first.id);
}

// For scripts and tests: the decoded slice shown in a plane, and navigation that resolves when drawn.
window.medsegViewer = {
  state,
  goto,
  openCase,
  pixels(plane, layer) {
    const raw = state.raw[plane];
    if (!raw || !raw[layer]) return null;
    const d = raw[layer].data, out = new Array(d.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = d[4 * i];
    return { index: raw.index, width: raw[layer].width, height: raw[layer].height, values: out };
  },
};
document.addEventListener("DOMContentLoaded", () => { start().catch((err) => say(err.message)); });
