// The demo page: upload, prompt with clicks and boxes, show the K masks, download them.
"use strict";

const LEVEL_COLORS = ["#e6194b", "#f58231", "#ffe119", "#3cb44b", "#0082c8", "#911eb4"];
const DRAG_PIXELS = 5;

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const context = canvas.getContext("2d");
const state = {
  info: null, imageId: null, fileName: "image", bitmap: null,
  points: [], labels: [], box: null, drag: null,
  result: null, masks: [], level: 0, maskInput: null, maskCrop: null,
  mode: "prompt", everything: null, everythingLayers: [], everythingLevel: 1, treeSelected: null,
  everythingNames: [],
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

// POSTs a JSON request about the current image, with the page's object and part vocabularies when given.
function postImage(route, body) {
  const objects = $("objects").value.trim(), parts = $("parts").value.trim();
  const vocabulary = { ...(objects && { objects }), ...(parts && { parts }) };
  return api(`/api/images/${state.imageId}/${route}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, ...vocabulary }),
  });
}

// Distinct hues for the many masks of "segment everything" (golden-angle steps around the colour wheel).
function maskColor(id) { return `hsl(${(id * 137.508) % 360}, 85%, 55%)`; }

// A canvas of the image's size with the mask painted in one colour, translucent.
function maskLayer(mask, color) {
  const layer = document.createElement("canvas");
  layer.width = mask.width; layer.height = mask.height;
  const drawing = layer.getContext("2d");
  const pixels = new ImageData(mask.width, mask.height);
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i]) pixels.data[4 * i + 3] = 150;
  }
  drawing.putImageData(pixels, 0, 0);
  drawing.globalCompositeOperation = "source-in";
  drawing.fillStyle = color;
  drawing.fillRect(0, 0, layer.width, layer.height);
  return layer;
}

// The "segment everything" masks on show: the tree's selection, else the slider's level, largest drawn first.
function everythingShown() {
  const masks = state.everything.masks;
  if (state.treeSelected !== null) return [masks[state.treeSelected]];
  return masks.filter((m) => m.level === state.everythingLevel).sort((a, b) => b.area - a.area);
}

function drawStage() {
  if (!state.bitmap) return;
  context.drawImage(state.bitmap, 0, 0);
  state.everythingNames = [];
  if (state.mode === "everything") {
    const shown = everythingShown();
    for (const mask of shown) context.drawImage(state.everythingLayers[mask.id], 0, 0);
    drawNames(shown);
    return;
  }
  if (state.masks[state.level]) context.drawImage(state.masks[state.level].layer, 0, 0);
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

// The names of the masks on show, each at the middle of its visible pixels (at its grid click when the middle
// shows another mask), largest first; names that their mask cannot hold or that would cover another are left out.
function drawNames(shown) {
  if (!shown.some((mask) => mask.name)) return;
  const width = canvas.width, owner = new Int32Array(width * canvas.height).fill(-1);
  // Largest first, as drawn: where masks overlap, the smaller one shows.
  shown.forEach((mask, index) => decodeRle(mask.segmentation).data.forEach((v, i) => { if (v) owner[i] = index; }));
  const sums = new Float64Array(3 * shown.length);
  owner.forEach((index, i) => {
    if (index < 0) return;
    sums[3 * index] += 1; sums[3 * index + 1] += i % width; sums[3 * index + 2] += Math.floor(i / width);
  });
  const size = 13 * width / (canvas.getBoundingClientRect().width || width);
  Object.assign(context, { font: `600 ${size}px system-ui, sans-serif`, textAlign: "center",
                           textBaseline: "middle", lineWidth: size / 4, lineJoin: "round",
                           strokeStyle: "rgba(0, 0, 0, 0.85)", fillStyle: "#fff" });
  const taken = [];
  const order = shown.map((_, index) => index).sort((a, b) => sums[3 * b] - sums[3 * a]);
  for (const index of order) {
    const mask = shown[index], count = sums[3 * index];
    if (!mask.name || count < 9 * size * size) continue;
    const middle = [sums[3 * index + 1] / count, sums[3 * index + 2] / count].map(Math.floor);
    const [px, py] = owner[middle[1] * width + middle[0]] === index ? middle : mask.point_coords[0].map(Math.floor);
    if (owner[py * width + px] !== index) continue;
    // Moved in from the image's sides, so that a name is never cut.
    const half = context.measureText(mask.name).width / 2 + size / 4;
    const x = Math.min(Math.max(px, half), width - half), y = Math.min(Math.max(py, size), canvas.height - size);
    const box = [x - half, y - 0.7 * size, x + half, y + 0.7 * size];
    if (taken.some((t) => box[0] < t[2] && t[0] < box[2] && box[1] < t[3] && t[1] < box[3])) continue;
    taken.push(box);
    context.strokeText(mask.name, x, y);
    context.fillText(mask.name, x, y);
    state.everythingNames.push({ id: mask.id, name: mask.name, x, y });
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
                           maskInput: null, maskCrop: null, result: null, masks: [], mode: "prompt",
                           everything: null, treeSelected: null });
    canvas.width = uploaded.width; canvas.height = uploaded.height;
    renderMasks();
    renderTree();
    drawStage();
    $("clear").disabled = false;
    $("find").disabled = !state.info?.labels_available;
    $("run-everything").disabled = false;
    $("everything-level").disabled = true;
    $("everything-summary").textContent = "";
    setStatus(`${name}: ${uploaded.width}×${uploaded.height}. Click on it.`);
  } catch (error) {
    setStatus(`upload failed: ${error.message}`, true);
  }
}

async function predict() {
  drawStage();
  if (!state.points.length && !state.box) { state.result = null; state.masks = []; renderMasks(); return; }
  const body = { points: state.points, labels: state.labels, box: state.box, mask_input: state.maskInput,
                 crop: state.maskCrop, return_logits: true, refine_edges: $("refine-edges").checked,
                 zoom_in: $("zoom-in").checked };
  setStatus("segmenting …");
  const started = performance.now();
  try {
    const result = await postImage("predict", body);
    if (state.level === null) state.level = result.scores.indexOf(Math.max(...result.scores));
    state.result = result;
    state.masks = result.masks.map((rle, level) => (
      { rle, layer: maskLayer(decodeRle(rle), LEVEL_COLORS[level % LEVEL_COLORS.length]) }));
    state.mode = "prompt";
    renderMasks();
    drawStage();
    const note = result.labels_available ? "" : " No labels: this model's classification heads were not trained.";
    setStatus(`${result.masks.length} masks in ${Math.round(performance.now() - started)} ms.${note}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

// The masks a phrase names, ranked best first, shown like the K masks of a click; or why nothing matches.
async function findText(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !state.imageId) return;
  const body = { text, points: state.points, labels: state.labels, box: state.box };
  setStatus(`looking for “${text}” …`);
  const started = performance.now();
  try {
    const result = await postImage("text", body);
    const matches = result.matches;
    state.result = matches.length ? {
      masks: matches.map((m) => m.segmentation), scores: matches.map((m) => m.score),
      labels: matches.map((m) => m.label), areas: matches.map((m) => m.area),
      boxes: matches.map((m) => [m.bbox[0], m.bbox[1], m.bbox[0] + m.bbox[2], m.bbox[1] + m.bbox[3]]),
      titles: matches.map((m, i) => `#${i + 1} “${result.text}” · score ${m.score.toFixed(2)} · level ${m.level}`),
    } : null;
    state.masks = matches.map((m, i) => (
      { rle: m.segmentation, layer: maskLayer(decodeRle(m.segmentation), LEVEL_COLORS[i % LEVEL_COLORS.length]) }));
    Object.assign(state, { level: 0, mode: "prompt" });
    renderMasks();
    drawStage();
    const names = result.names.map((n) => `${n.vocabulary} “${n.nearest[0][0]}”`).join(" and ");
    setStatus(matches.length
      ? `${matches.length} match(es) for “${result.text}” (read as ${names}) in ${Math.round(performance.now() - started)} ms.`
      : `Nothing matches: ${result.reason}`);
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
  $("download-png").disabled = $("download-json").disabled = !(state.mode === "everything" ? state.everything : result);
  if (!result) return;
  state.level = Math.min(state.level, result.masks.length - 1);
  const total = canvas.width * canvas.height;
  result.masks.forEach((rle, level) => {
    const name = result.titles ? `#${level + 1}` : `${level + 1}`;
    select.append(new Option(`${name} (${(100 * result.areas[level] / total).toFixed(1)}%)`, level));
    const card = document.createElement("div");
    card.className = "mask-card" + (state.mode === "prompt" && level === state.level ? " selected" : "");
    card.dataset.level = level + 1;
    const thumb = document.createElement("canvas");
    const scale = 300 / Math.max(canvas.width, canvas.height);
    thumb.width = Math.round(canvas.width * scale); thumb.height = Math.round(canvas.height * scale);
    const drawing = thumb.getContext("2d");
    drawing.drawImage(state.bitmap, 0, 0, thumb.width, thumb.height);
    drawing.drawImage(state.masks[level].layer, 0, 0, thumb.width, thumb.height);
    const caption = document.createElement("div");
    if (result.titles) {
      caption.textContent = result.titles[level];
    } else {
      caption.innerHTML = `<b>level ${level + 1}</b> · IoU ${result.scores[level].toFixed(3)} · `
        + `${(100 * result.areas[level] / total).toFixed(1)}%`;
    }
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
  state.mode = "prompt";
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
  const out = document.createElement("canvas");
  out.width = canvas.width; out.height = canvas.height;
  const drawing = out.getContext("2d");
  drawing.fillStyle = "#000";
  drawing.fillRect(0, 0, out.width, out.height);
  if (state.mode === "everything") {
    // The level's masks in their colours on black, smallest on top, as on the page.
    for (const mask of everythingShown()) {
      drawing.drawImage(maskLayer(decodeRle(mask.segmentation), maskColor(mask.id)), 0, 0);
    }
    const name = state.treeSelected !== null ? `mask${state.treeSelected}` : `everything_level${state.everythingLevel}`;
    out.toBlob((blob) => download(blob, `${baseName()}_${name}.png`), "image/png");
    return;
  }
  drawing.drawImage(maskLayer(decodeRle(state.result.masks[state.level]), "#fff"), 0, 0);
  // Binary: any covered pixel becomes pure white.
  const pixels = drawing.getImageData(0, 0, out.width, out.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const v = pixels.data[i] > 0 ? 255 : 0;
    pixels.data.set([v, v, v, 255], i);
  }
  drawing.putImageData(pixels, 0, 0);
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
  if (state.mode === "everything") {
    const masks = state.everything.masks.map((m) => ({
      segmentation: m.segmentation, area: m.area,
      box: [m.bbox[0], m.bbox[1], m.bbox[0] + m.bbox[2], m.bbox[1] + m.bbox[3]],
      score: m.predicted_iou, level: m.level, label: m.label,
      extra: { mask_id: m.id, parent: m.parent, children: m.children, stability_score: m.stability_score },
    }));
    const text = JSON.stringify(cocoJson(masks), null, 2);
    download(new Blob([text], { type: "application/json" }), `${baseName()}_everything.json`);
    return;
  }
  const r = state.result;
  const masks = r.masks.map((rle, i) => ({ segmentation: rle, area: r.areas[i], box: r.boxes[i], score: r.scores[i],
                                          level: i + 1, label: r.labels[i],
                                          extra: r.titles ? { text_match: r.titles[i] } : undefined }));
  const text = JSON.stringify(cocoJson(masks), null, 2);
  download(new Blob([text], { type: "application/json" }), `${baseName()}_masks.json`);
}

async function segmentEverything() {
  const body = { points_per_side: Number($("points-per-side").value) };
  $("run-everything").disabled = true;
  setStatus(`segmenting everything with a ${body.points_per_side}×${body.points_per_side} grid …`);
  const started = performance.now();
  try {
    const result = await postImage("everything", body);
    state.everything = result;
    state.everythingLayers = result.masks.map((m) => maskLayer(decodeRle(m.segmentation), maskColor(m.id)));
    // The click prompts and their mask cards belong to the previous view: clear them.
    Object.assign(state, { mode: "everything", treeSelected: null, points: [], labels: [], box: null, result: null,
                           masks: [], maskInput: null, maskCrop: null });
    const slider = $("everything-level");
    slider.min = result.levels[0]; slider.max = result.levels[result.levels.length - 1];
    slider.disabled = false;
    setEverythingLevel(result.levels.find((l) => result.masks.some((m) => m.level === l)) ?? result.levels[0]);
    setStatus(`${result.masks.length} masks on ${result.levels.length} levels in `
      + `${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    $("run-everything").disabled = false;
  }
}

function setEverythingLevel(level) {
  Object.assign(state, { everythingLevel: level, mode: "everything", treeSelected: null });
  $("everything-level").value = level;
  $("everything-level-value").textContent = level;
  const count = state.everything.masks.filter((m) => m.level === level).length;
  $("everything-summary").textContent = `level ${level}: ${count} masks`;
  renderMasks();
  renderTree();
  drawStage();
}

// The whole/part tree: each mask under the smallest coarser-level mask that contains it.
function renderTree() {
  const tree = $("tree");
  tree.replaceChildren();
  if (!state.everything) return;
  const masks = state.everything.masks, total = canvas.width * canvas.height;
  const branch = (ids) => {
    const list = document.createElement("ul");
    for (const id of ids) {
      const mask = masks[id], item = document.createElement("li"), node = document.createElement("span");
      node.className = "node" + (mask.level === state.everythingLevel ? " at-level" : "")
        + (state.treeSelected === id ? " selected" : "");
      node.dataset.id = id;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = maskColor(id);
      node.append(swatch, `#${id} level ${mask.level} · ${(100 * mask.area / total).toFixed(1)}% · `
        + `IoU ${mask.predicted_iou.toFixed(2)}`);
      if (mask.path) {
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = mask.path;
        name.title = labelText(mask.label);
        node.append(" · ", name);
      }
      node.addEventListener("click", () => {
        Object.assign(state, { mode: "everything", treeSelected: state.treeSelected === id ? null : id });
        renderTree();
        drawStage();
      });
      item.append(node);
      if (mask.children.length) item.append(branch(mask.children));
      list.append(item);
    }
    return list;
  };
  tree.append(branch(masks.filter((m) => m.parent === null).map((m) => m.id)));
}

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
  // A click refines the level on show (its logits become the mask input); a new box starts afresh.
  if (drag.moved) {
    state.box = drag.box.map(Math.round);
    state.maskInput = null;
  } else {
    state.points.push(drag.start.map((v) => Math.round(v * 10) / 10));
    state.labels.push(drag.button === 0 ? 1 : 0);
    state.maskInput = state.mode === "prompt" && state.result?.logits ? state.result.logits[state.level] : null;
  }
  // The logits belong to the crop their answer was given on (zoom-in), which goes back with them.
  state.maskCrop = state.maskInput ? state.result.crop : null;
  // A new prompt starts at its best-scored level; a corrective click keeps the level it refines.
  if (!state.maskInput) state.level = null;
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
  Object.assign(state, { points: [], labels: [], box: null, result: null, masks: [], mode: "prompt",
                         maskInput: null, maskCrop: null });
  renderMasks();
  drawStage();
  setStatus("prompts cleared");
});
$("level").addEventListener("change", (event) => selectLevel(Number(event.target.value)));
$("run-everything").addEventListener("click", segmentEverything);
$("text-form").addEventListener("submit", findText);
$("everything-level").addEventListener("input", (event) => setEverythingLevel(Number(event.target.value)));
$("download-png").addEventListener("click", downloadPng);
$("download-json").addEventListener("click", downloadJson);
for (const id of ["objects", "parts", "refine-edges", "zoom-in"]) {
  $(id).addEventListener("change", () => { if (state.result) predict(); });
}

(async () => {
  try {
    state.info = await api("/api/info");
    $("model-info").textContent = `model ${state.info.model} · ${state.info.levels} levels`
      + (state.info.labels_available ? "" : " · labels unavailable (heads untrained)");
    $("everything-note").textContent = "Clicks on a grid over the whole image; the slider picks the level shown, "
      + "the tree nests each mask under the smallest coarser mask that contains it (click a node to show it)."
      + (state.info.labels_available ? " Each mask is named by its object, or by its part when it lies in a mask "
        + "of the same object (person > hair)." : "");
    $("points-per-side").max = state.info.limits.max_points_per_side;
    if (!state.info.labels_available) {
      $("text").disabled = true;
      $("text").placeholder = "needs a model with trained object/part heads";
    }
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, true);
  }
})();
