// The page to try a model.  It uses only the gateway's public API (GET /v1/models,
// POST /v1/detect) and draws the answer itself on a canvas: one detection per try, and the
// table, the picture and the JSON show the very same answer.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "d2t-api-key";
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
  "#f032e6", "#bfef45", "#469990", "#9a6324", "#800000", "#808000", "#000075"];
const SHOWN_WIDTH = 640;  // smaller images are enlarged to about this
let tagHeight = 14;  // in the image's pixels: set for each image
let answer = null;
let scoreOrder = -1;  // -1: highest score first

function headers() {
  const key = $("key").value || sessionStorage.getItem(KEY_STORE) || "";
  return key ? { "X-API-Key": key } : {};
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// The gateway's own message: its JSON {"detail": ...} (a list for a refused query option).
async function errorOf(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail
      : body.detail.map((item) => `${item.loc.join(".")}: ${item.msg}`).join("; ");
  } catch (ignored) { /* not JSON: keep the status text */ }
  return `${response.status}: ${detail}`;
}

async function loadModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-field").hidden = false;
    $("status").textContent = "This gateway wants its API key.";
    return;
  }
  if (!response.ok) {
    // The gateway lists pipelines only with Triton's admin key; its default still answers.
    $("model").replaceChildren(new Option("(the gateway's default)", ""));
    showError(`Pipelines not listed: ${await errorOf(response)}`);
    return;
  }
  const listing = await response.json();
  $("model").replaceChildren(...listing.models.map((model) => {
    const weights = model.weights === "random" ? ", RANDOM WEIGHTS" : "";
    const option = new Option(`${model.name} (${model.precision || "?"}${weights}, ${stateOf(model)})`, model.name);
    option.dataset.random = model.weights === "random" ? "1" : "";
    option.selected = model.name === listing.default_model;
    option.dataset.classes = JSON.stringify(Object.values(model.classes || {}));
    return option;
  }));
  showClasses();
  $("status").textContent = "";
}

// A pipeline's state as the model server's launcher sees it (its health), else Triton's.
function stateOf(model) {
  const health = model.health;
  if (!health) return model.state;
  if (health.state === "ready") return "ready";
  const since = new Date(health.since * 1000).toLocaleTimeString();
  return `${health.state}: ${health.model} since ${since}`;
}

function showClasses() {
  const option = $("model").selectedOptions[0];
  // A model exported from random weights answers, but its detections mean nothing.
  $("random-weights").hidden = !(option && option.dataset.random);
  const names = option && option.dataset.classes ? JSON.parse(option.dataset.classes) : [];
  $("class-names").replaceChildren(...names.map((name) => new Option(name)));
}

async function detect(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { showError("Choose an image first."); return; }
  if ($("key").value) sessionStorage.setItem(KEY_STORE, $("key").value);
  const query = new URLSearchParams({ mask_format: $("masks").value });
  if ($("model").value) query.set("model", $("model").value);
  if ($("score").value !== "") query.set("score_threshold", $("score").value);
  if ($("classes").value.trim()) query.set("classes", $("classes").value.trim());
  showError("");
  $("run").disabled = true;
  $("status").textContent = `Detecting in ${file.name} …`;
  try {
    const response = await fetch(`v1/detect?${query}`, {
      method: "POST",
      body: file,
      headers: { ...headers(), "Content-Type": file.type || "application/octet-stream" },
    });
    if (!response.ok) {
      if (response.status === 401) $("key-field").hidden = false;
      showError(await errorOf(response));
      $("result").hidden = true;
      return;
    }
    answer = await response.json();
    $("timing").textContent = timing(response.headers.get("Server-Timing"));
    await show(file);
    $("status").textContent = `Detections by ${answer.model}: ${answer.detections.length}.`;
  } catch (error) {
    showError(`The request failed: ${error.message}`);
  } finally {
    $("run").disabled = false;
  }
}

// "total;dur=812.3, triton;dur=790.1" -> "Server: 812 ms (Triton 790 ms)".
function timing(header) {
  const parts = Object.fromEntries((header || "").split(",").map((part) => {
    const [name, duration] = part.trim().split(";dur=");
    return [name, Number(duration)];
  }));
  if (!parts.total) return "";
  const triton = parts.triton ? ` (Triton ${Math.round(parts.triton)} ms)` : "";
  return `Server: ${Math.round(parts.total)} ms${triton}`;
}

async function show(file) {
  const canvas = $("picture");
  const bitmap = await createImageBitmap(file);  // EXIF orientation applied, as preprocess does
  const { width, height } = answer.image_size;
  // A small image is drawn enlarged by a whole factor (each pixel a block, as it is), so the
  // tags' text stays sharp; coordinates stay the image's own.
  const scale = Math.max(1, Math.floor(SHOWN_WIDTH / width));
  canvas.width = width * scale;
  canvas.height = height * scale;
  canvas.dataset.scale = scale;
  tagHeight = Math.max(20, Math.round(canvas.width / 32)) / scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.scale(scale, scale);
  context.drawImage(bitmap, 0, 0, width, height);
  context.imageSmoothingEnabled = true;
  (answer.segments || []).forEach((segment) => paintMask(context, segment.mask, color(segment.class_id + 3), 0.45));
  answer.detections.forEach((detection) => drawDetection(context, detection));
  (answer.segments || []).filter((segment) => !segment.is_thing).forEach((segment) => labelSegment(context, segment));
  fillTables();
  $("json").textContent = JSON.stringify(answer, null, 2);
  $("result").hidden = false;
}

function color(classId) { return COLORS[classId % COLORS.length]; }

function drawDetection(context, detection) {
  const [x1, y1, x2, y2] = detection.box;
  const stroke = color(detection.class_id);
  paintMask(context, detection.mask, stroke, 0.4);
  context.lineWidth = tagHeight / 7;
  context.strokeStyle = stroke;
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
  (detection.keypoints || []).forEach(([x, y]) => {
    context.fillStyle = stroke;
    context.beginPath();
    context.arc(x, y, tagHeight / 4, 0, 2 * Math.PI);
    context.fill();
  });
  // Above the box where there is room, as Detectron2's Visualizer puts it.
  const text = `${detection.label} ${Math.round(detection.score * 100)}%`;
  tag(context, text, x1, y1 >= tagHeight ? y1 - tagHeight : y1, stroke);
}

function tag(context, text, x, y, background) {
  const inset = tagHeight / 5;
  context.font = `${tagHeight - 2 * inset}px sans-serif`;
  const width = context.measureText(text).width + 2 * inset;
  context.fillStyle = background;
  context.fillRect(x, y, width, tagHeight);
  context.fillStyle = "#fff";
  context.fillText(text, x + inset, y + tagHeight - 1.5 * inset);
}

function labelSegment(context, segment) {
  const box = maskBox(segment.mask);
  if (box) tag(context, segment.label, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, "#57606a");
}

// A mask as the gateway sends it: COCO RLE ({size, counts}) or polygons ({size, polygons}).
function paintMask(context, mask, fill, alpha) {
  if (!mask) return;
  context.save();
  context.globalAlpha = alpha;
  context.fillStyle = fill;
  if (mask.polygons) {
    mask.polygons.forEach((polygon) => {
      context.beginPath();
      for (let i = 0; i < polygon.length; i += 2) context.lineTo(polygon[i], polygon[i + 1]);
      context.closePath();
      context.fill();
    });
  } else if (mask.counts) {
    const [height] = mask.size;
    runsOf(mask.counts).forEach(([start, length]) => {
      // Column-major runs: draw each column's part as one 1-pixel-wide rectangle.
      for (let at = start; at < start + length;) {
        const x = Math.floor(at / height), y = at % height;
        const n = Math.min(height - y, start + length - at);
        context.fillRect(x, y, 1, n);
        at += n;
      }
    });
  }
  context.restore();
}

// COCO compressed RLE counts (pycocotools' rleFrString) -> [start, length] runs of ones.
function runsOf(text) {
  const counts = [];
  for (let p = 0; p < text.length;) {
    let value = 0, shift = 0, more = true, chunk = 0;
    while (more) {
      chunk = text.charCodeAt(p++) - 48;
      value |= (chunk & 0x1f) << shift;
      more = (chunk & 0x20) !== 0;
      shift += 5;
    }
    if (chunk & 0x10) value |= -1 << shift;
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  const runs = [];
  let at = 0;
  counts.forEach((count, i) => { if (i % 2) runs.push([at, count]); at += count; });
  return runs;
}

function maskBox(mask) {
  if (!mask || !mask.counts) return null;
  const [height] = mask.size;
  let box = null;
  runsOf(mask.counts).forEach(([start, length]) => {
    const first = [Math.floor(start / height), start % height];
    const last = [Math.floor((start + length - 1) / height), (start + length - 1) % height];
    const ys = first[0] === last[0] ? [first[1], last[1]] : [0, height - 1];
    box = box ? [Math.min(box[0], first[0]), Math.min(box[1], ys[0]), Math.max(box[2], last[0]), Math.max(box[3], ys[1])]
      : [first[0], ys[0], last[0], ys[1]];
  });
  return box;
}

function cell(text, number) {
  const td = document.createElement("td");
  td.textContent = text;
  if (number) td.className = "number";
  return td;
}

function fillTables() {
  const rows = answer.detections.map((detection, index) => ({ detection, index }));
  rows.sort((a, b) => scoreOrder * (a.detection.score - b.detection.score));
  $("detections").tBodies[0].replaceChildren(...rows.map(({ detection, index }) => {
    const row = document.createElement("tr");
    row.append(cell(index + 1, true), cell(detection.label), cell(detection.score.toFixed(3), true),
      cell(detection.box.map((v) => v.toFixed(1)).join(", ")));
    return row;
  }));
  $("by-score").textContent = scoreOrder < 0 ? "score ▼" : "score ▲";
  const segments = answer.segments || [];
  $("segments").hidden = segments.length === 0;
  $("segments").tBodies[0].replaceChildren(...segments.map((segment) => {
    const row = document.createElement("tr");
    row.append(cell(segment.id, true), cell(segment.label), cell(segment.is_thing ? "yes" : "no"),
      cell(segment.score == null ? "" : segment.score.toFixed(3), true), cell(segment.area, true));
    return row;
  }));
}

async function copyJson() {
  const text = $("json").textContent;
  try {
    await navigator.clipboard.writeText(text);  // secure contexts only (https, localhost)
  } catch (ignored) {
    const range = document.createRange();
    range.selectNodeContents($("json"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("copy").textContent = "Copied";
  setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
}

function dropZone() {
  const zone = $("drop");
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) $("file").files = event.dataTransfer.files;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", detect);
  $("model").addEventListener("change", showClasses);
  $("key").addEventListener("change", loadModels);
  $("by-score").addEventListener("click", () => { scoreOrder = -scoreOrder; if (answer) fillTables(); });
  $("copy").addEventListener("click", copyJson);
  dropZone();
  loadModels().catch((error) => showError(`Cannot reach the gateway: ${error.message}`));
});
