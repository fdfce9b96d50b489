// The demo page: upload, prompt with clicks and boxes, show the K masks, download them.
"use strict";

const COLORS = [[230, 25, 75], [245, 130, 48], [255, 225, 25], [60, 180, 75], [0, 130, 200], [145, 30, 180]];
const DRAG_PIXELS = 5;

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const context = canvas.getContext("2d");
const state = {
  info: null, imageId: null, fileName: "image", bitmap: null,
  points: [], labels: [], box: null, drag: null,
  result: null, masks: [], level: 0, everything: null, everythingMasks: [],
};

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function color(level, alpha) {
  const [r, g, b] = COLORS[level % COLORS.length];
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

// A canvas of the image's size with the mask painted in the level's colour.
function maskLayer(mask, level) {
  const layer = document.createElement("canvas");
  layer.width = mask.width; layer.height = mask.height;
  const pixels = new ImageData(mask.width, mask.height);
  const [r, g, b] = COLORS[level % COLORS.length];
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i]) pixels.data.set([r, g, b, 140], 4 * i);
  }
  layer.getContext("2d").putImageData(pixels, 0, 0);
  return layer;
}

function drawStage() {
  if (!state.bitmap) return;
  context.drawImage(state.bitmap, 0, 0);
  const shown = state.everything ? state.everythingMasks : (state.masks[state.level] ? [state.masks[state.level]] : []);
  for (const item of shown) context.drawImage(item.layer, 0, 0);
  const radius = Math.max(4, canvas.width / 120);
  state.points.forEach(([x, y], i) => {
    context.beginPath();
    context.arc(x, y, radius, 0, 2 * Math.PI);
    context.fillStyle = state.labels[i] ? "#2ecc40" : "#ff4136";
    context.fill();
    context.lineWidth = 2; context.strokeStyle = "#fff"; context.stroke();
  });
  const box = state.drag && state.drag.moved ? state.drag.box : state.box;
  if (box) {
    context.lineWidth = Math.max(2, canvas.width / 300);
    context.strokeStyle = "#1f6feb";
    context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
}

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  return [Math.min(Math.max(x, 0), canvas.width - 1), Math.min(Math.max(y, 0), canvas.height - 1)];
}

async function loadImage(blob, name) {
  setStatus(`uploading ${name} …`);
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const uploaded = await api("/api/images", { method: "POST", body: form });
    state.bitmap = await createImageBitmap(blob);
    Object.assign(state, { imageId: uploaded.image_id, fileName: name, points: [], labels: [], box: null,
                           result: null, masks: [], everything: null, everythingMasks: [] });
    canvas.width = uploaded.width; canvas.height = uploaded.height;
    renderMasks();
    renderTree();
    drawStage();
    $("clear").disabled = false;
    $("run-everything").disabled = !state.info.everything_available;
    setStatus(`${name}: ${uploaded.width}×${uploaded.height}. Click on it.`);
  } catch (error) {
    setStatus(`upload failed: ${error.message}`, true);
  }
}

async function predict() {
  drawStage();
  if (!state.points.length && !state.box) { state.result = null; state.masks = []; renderMasks(); return; }
  const body = { points: state.points, labels: state.labels, box: state.box };
  const objects = $("objects").value.trim(), parts = $("parts").value.trim();
  if (objects) body.objects = objects;
  if (parts) body.parts = parts;
  setStatus("segmenting …");
  const started = performance.now();
  try {
    const result = await api(`/api/images/${state.imageId}/predict`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    state.result = result;
    state.masks = result.masks.map((rle, level) => ({ rle, layer: maskLayer(decodeRle(rle), level) }));
    state.everything = null;
    renderMasks();
    drawStage();
    const note = result.labels_available ? "" : " No labels: this model's classification heads were not trained.";
    setStatus(`${result.masks.length} masks in ${Math.round(performance.now() - started)} ms.${note}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function labelText(label) {
  if (!label) return "no label";
  return `${label.object} ${label.object_score.toFixed(2)} / ${label.part} ${label.part_score.toFixed(2)}`;
}

function renderMasks() {
  const container = $("masks");
  container.replaceChildren();
  const select = $("level");
  select.replaceChildren();
  const result = state.result;
  $("download-png").disabled = $("download-json").disabled = !result;
  if (!result) return;
  state.level = Math.min(state.level, result.masks.length - 1);
  const total = canvas.width * canvas.height;
  result.masks.forEach((rle, level) => {
    select.append(new Option(`${level + 1} (${(100 * result.areas[level] / total).toFixed(1)}%)`, level));
    const card = document.createElement("div");
    card.className = "mask-card" + (level === state.level ? " selected" : "");
    card.dataset.level = level + 1;
    const thumb = document.createElement("canvas");
    const scale = 300 / Math.max(canvas.width, canvas.height);
    thumb.width = Math.round(canvas.width * scale); thumb.height = Math.round(canvas.height * scale);
    const drawing = thumb.getContext("2d");
    drawing.drawImage(state.bitmap, 0, 0, thumb.width, thumb.height);
    drawing.drawImage(state.masks[level].layer, 0, 0, thumb.width, thumb.height);
    const caption = document.createElement("div");
    caption.innerHTML = `<b>level ${level + 1}</b> · IoU ${result.scores[level].toFixed(3)} · `
      + `${(100 * result.areas[level] / total).toFixed(1)}%`;
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = labelText(result.labels[level]);
    card.append(thumb, caption, label);
    card.addEventListener("click", () => selectLevel(level));
    container.append(card);
  });
  select.value = state.level;
}

function selectLevel(level) {
  state.level = level;
  state.everything = null;
  renderMasks();
  drawStage();
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function baseName() { return state.fileName.replace(/\.[^.]*$/, ""); }

function downloadPng() {
  const mask = decodeRle(state.result.masks[state.level]);
  const out = document.createElement("canvas");
  out.width = mask.width; out.height = mask.height;
  const pixels = new ImageData(mask.width, mask.height);
  for (let i = 0; i < mask.data.length; i++) {
    const v = mask.data[i] ? 255 : 0;
    pixels.data.set([v, v, v, 255], 4 * i);
  }
  out.getContext("2d").putImageData(pixels, 0, 0);
  out.toBlob((blob) => download(blob, `${baseName()}_level${state.level + 1}.png`), "image/png");
}

// COCO results format: one annotation per mask, with the level, score and label alongside.
function cocoJson(masks) {
  const image = { id: 1, file_name: state.fileName, width: canvas.width, height: canvas.height };
  const annotations = masks.map((m, i) => ({
    id: i + 1, image_id: 1, category_id: 1, segmentation: m.segmentation, area: m.area,
    bbox: [m.box[0], m.box[1], m.box[2] - m.box[0], m.box[3] - m.box[1]], score: m.score, level: m.level,
    label: m.label ?? null, ...(m.extra || {}),
  }));
  return { images: [image], annotations, categories: [{ id: 1, name: "object" }],
           prompts: { points: state.points, labels: state.labels, box: state.box } };
}

function downloadJson() {
  const r = state.result;
  const masks = r.masks.map((rle, i) => ({ segmentation: rle, area: r.areas[i], box: r.boxes[i], score: r.scores[i],
                                          level: i + 1, label: r.labels[i] }));
  const text = JSON.stringify(cocoJson(masks), null, 2);
  download(new Blob([text], { type: "application/json" }), `${baseName()}_masks.json`);
}

function renderTree() { /* filled in by segment-everything support */ }

canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("mousedown", (event) => {
  if (!state.imageId || (event.button !== 0 && event.button !== 2)) return;
  state.drag = { start: imagePoint(event), button: event.button, moved: false, box: null };
});
canvas.addEventListener("mousemove", (event) => {
  const drag = state.drag;
  if (!drag || drag.button !== 0) return;
  const [x, y] = imagePoint(event), [x0, y0] = drag.start;
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  if (Math.hypot(x - x0, y - y0) > DRAG_PIXELS * scale) drag.moved = true;
  drag.box = [Math.min(x, x0), Math.min(y, y0), Math.max(x, x0) + 1, Math.max(y, y0) + 1];
  drawStage();
});
canvas.addEventListener("mouseup", (event) => {
  const drag = state.drag;
  state.drag = null;
  if (!drag) return;
  if (drag.moved) {
    state.box = drag.box.map(Math.round);
  } else {
    state.points.push(drag.start.map((v) => Math.round(v * 10) / 10));
    state.labels.push(drag.button === 0 ? 1 : 0);
  }
  predict();
});

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) loadImage(file, file.name);
  event.target.value = "";
});
$("example").addEventListener("click", async () => {
  const response = await fetch("/api/example");
  loadImage(await response.blob(), "example.jpg");
});
$("clear").addEventListener("click", () => {
  Object.assign(state, { points: [], labels: [], box: null, result: null, masks: [] });
  renderMasks();
  drawStage();
  setStatus("prompts cleared");
});
$("level").addEventListener("change", (event) => selectLevel(Number(event.target.value)));
$("download-png").addEventListener("click", downloadPng);
$("download-json").addEventListener("click", downloadJson);
for (const id of ["objects", "parts"]) $(id).addEventListener("change", () => { if (state.result) predict(); });

(async () => {
  try {
    state.info = await api("/api/info");
    $("model-info").textContent = `model ${state.info.model} · ${state.info.levels} levels`
      + (state.info.labels_available ? "" : " · labels unavailable (heads untrained)");
    $("everything-note").textContent = state.info.everything_available ? ""
      : "Not available on this server.";
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, true);
  }
})();
