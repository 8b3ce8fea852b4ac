// Grid review: a page of crops of one class (or one camera), least confident first. Each
// crop is right unless flipped to "wrong" (no object: dropped) or "wrong class" (relabeled to
// the class chosen in "wrong class →"); one submit stores them all (POST /api/review/grid:
// one reviewed label per frame, see api/routes/review.py). The source "audit sample" shows
// the audit's confident crops and its frames with no detection, whole: each is right
// (nothing there) unless flipped to "missed object", which sends it to the labeling queue.
"use strict";

import { $, api, fetchBitmap, showMessage } from "./http.js";
import { classColor } from "./editor.js";

const TILE_PX = 150;
const PAGE = 48;
const MARK = { ok: "✓", wrong: "✗ wrong", wrong_class: "↻ wrong class", missed: "✗ missed object" };
const FRAME_OK = "✓ nothing missed";
// Click cycles: a crop right → wrong → wrong class → right; a frame right ↔ missed.
const NEXT = { ok: "wrong", wrong: "wrong_class", wrong_class: "ok" };
const NEXT_FRAME = { ok: "missed", missed: "ok" };

const g = { crops: [], verdicts: [], cursor: 0, classNames: [], bitmaps: new Map(), close: () => {}, busy: false, loads: 0 };

export function onClose(fn) {
  g.close = fn;
}

function fillSelect(select, names, first) {
  select.replaceChildren(...first.map(([v, t]) => new Option(t, v)), ...names.map((n) => new Option(n, n)));
}

// Show the grid; `classNames` (the item's, when one is on screen) preset the class filter.
export function open(classNames) {
  if (classNames && !g.classNames.length) setClasses(classNames, classNames[0]);
  load();
}

function setClasses(names, chosen) {
  g.classNames = names;
  fillSelect($("grid-class"), names, [["", "any class"]]);
  $("grid-class").value = chosen;
  fillSelect($("grid-target"), names, []);
  pickTarget();
}

// The class wrong-class crops become: the first one other than the grid's class.
function pickTarget() {
  const shown = $("grid-class").value;
  $("grid-target").value = g.classNames.find((n) => n !== shown) || g.classNames[0] || "";
}

// A wrong-class crop's new class: the one chosen, or the first other class when the crop
// already has the chosen one (a grid of any class).
function targetFor(crop) {
  const chosen = $("grid-target").value;
  return chosen !== crop.class_name ? chosen : g.classNames.find((n) => n !== crop.class_name) || chosen;
}

async function load() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if ($("grid-class").value) params.set("class_name", $("grid-class").value);
  if ($("grid-camera").value.trim()) params.set("camera_id", $("grid-camera").value.trim());
  if ($("grid-min").value) params.set("min_confidence", $("grid-min").value);
  params.set("source", $("grid-source").value);
  const seq = ++g.loads; // a filter changed while a page was loading: only the last one counts
  try {
    const body = await (await api(`/api/review/grid?${params}`)).json();
    if (seq !== g.loads) return;
    if (!g.classNames.length) setClasses(body.class_names, "");
    g.crops = [...body.crops, ...body.frames.map((f) => ({ ...f, whole: true }))];
    g.verdicts = g.crops.map(() => "ok");
    g.cursor = 0;
    render();
  } catch (err) {
    showMessage(err.message || String(err), "error");
  }
  $("grid").focus({ preventScroll: true });
}

function bitmap(url) {
  if (!g.bitmaps.has(url)) g.bitmaps.set(url, fetchBitmap(url).catch(() => null));
  return g.bitmaps.get(url);
}

function render() {
  const tiles = $("grid-tiles");
  tiles.replaceChildren();
  $("grid-empty").hidden = g.crops.length > 0;
  $("grid-submit").disabled = g.crops.length === 0;
  g.crops.forEach((crop, i) => {
    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.index = String(i);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = TILE_PX;
    const caption = document.createElement("figcaption");
    tile.append(canvas, caption);
    tile.addEventListener("click", () => {
      g.cursor = i;
      setVerdict(i, (crop.whole ? NEXT_FRAME : NEXT)[g.verdicts[i]]);
    });
    tiles.append(tile);
    drawCrop(canvas, crop);
  });
  paint();
}

// The box with a margin of half its size each way, scaled to fit the tile, outlined.
async function drawCrop(canvas, crop) {
  const image = await bitmap(crop.frame_url);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, TILE_PX, TILE_PX);
  if (!image) return;
  if (crop.whole) {
    // A frame with no detection: all of it, letterboxed into the tile.
    const k = TILE_PX / Math.max(crop.width, crop.height);
    const [w, h] = [crop.width * k, crop.height * k];
    ctx.drawImage(image, 0, 0, crop.width, crop.height, (TILE_PX - w) / 2, (TILE_PX - h) / 2, w, h);
    return;
  }
  const [x1, y1, x2, y2] = crop.bbox_xyxy;
  const side = Math.max(x2 - x1, y2 - y1) * 1.5 + 8;
  const [cx, cy] = [(x1 + x2) / 2, (y1 + y2) / 2];
  const [sx, sy] = [cx - side / 2, cy - side / 2];
  const k = TILE_PX / side;
  ctx.drawImage(image, sx, sy, side, side, 0, 0, TILE_PX, TILE_PX);
  ctx.strokeStyle = classColor(crop.class_name, g.classNames);
  ctx.lineWidth = 2;
  ctx.strokeRect((x1 - sx) * k, (y1 - sy) * k, (x2 - x1) * k, (y2 - y1) * k);
}

// Each tile's verdict and the cursor, without redrawing the crops.
function paint() {
  for (const tile of $("grid-tiles").children) {
    const i = Number(tile.dataset.index);
    const crop = g.crops[i];
    const verdict = g.verdicts[i];
    tile.className = `tile ${verdict}` + (crop.whole ? " whole" : "") + (i === g.cursor ? " cursor" : "");
    const what = crop.whole ? `${crop.camera_id} frame, no detection` : `${crop.class_name} ${crop.confidence.toFixed(2)}`;
    tile.setAttribute("aria-label", `${crop.whole ? "frame" : "crop"} ${i + 1}: ${what}, ${verdict}`);
    const now = verdict === "wrong_class" ? ` → ${targetFor(crop)}` : "";
    const mark = crop.whole && verdict === "ok" ? FRAME_OK : MARK[verdict];
    const audit = crop.audit ? " · audit" : "";
    tile.lastChild.textContent = `${i + 1}. ${what}${audit}\n${mark}${now}`;
  }
  const wrong = g.verdicts.filter((v) => v !== "ok").length;
  const tiles = g.crops.some((c) => c.whole) ? "tiles" : "crops";
  $("grid-summary").textContent = `${g.crops.length} ${tiles}, ${g.crops.length - wrong} right, ${wrong} flipped`;
}

function setVerdict(i, verdict) {
  if (i < 0 || i >= g.crops.length) return;
  g.verdicts[i] = verdict;
  paint();
}

function columns() {
  const tiles = [...$("grid-tiles").children];
  return Math.max(1, tiles.filter((t) => t.offsetTop === tiles[0].offsetTop).length);
}

async function submit() {
  if (g.busy || !g.crops.length) return;
  const reviews = [];
  const frames = [];
  g.crops.forEach((c, i) => {
    if (c.whole) return frames.push({ frame_key: c.frame_key, verdict: g.verdicts[i] });
    const verdict = g.verdicts[i] === "wrong_class" && targetFor(c) === c.class_name ? "ok" : g.verdicts[i];
    const review = { frame_key: c.frame_key, detection_id: c.detection_id, verdict };
    reviews.push(verdict === "wrong_class" ? { ...review, class_name: targetFor(c) } : review);
  });
  g.busy = true;
  try {
    const body = await (await api("/api/review/grid", { method: "POST", json: { reviews, frames } })).json();
    const flipped = [...reviews, ...frames].filter((r) => r.verdict !== "ok").length;
    const refused = body.refused.length ? ` ${body.refused.length} frame(s) refused (labeled or claimed meanwhile).` : "";
    const queued = body.queued.length ? ` ${body.queued.length} frame(s) with a missed object sent to the labeling queue.` : "";
    const tiles = frames.length ? "tiles" : "crops";
    showMessage(`Grid: ${reviews.length + frames.length} ${tiles} reviewed, ${flipped} flipped; ${body.labeled.length} frame${body.labeled.length === 1 ? "" : "s"} labeled.${queued}${refused}`, refused ? "notice" : "info");
    $("label-count").textContent = $("label-count").textContent.replace(/^\d+/, String(body.labels_since_training));
    await load();
  } catch (err) {
    showMessage(err.message || String(err), "error");
  } finally {
    g.busy = false;
  }
}

$("grid-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
$("grid-class").addEventListener("change", pickTarget);
// The audit sample is reviewed whole: its frames with no detection have no class to filter by.
$("grid-source").addEventListener("change", () => {
  if ($("grid-source").value === "audit") $("grid-class").value = "";
  pickTarget();
  load();
});
$("grid-target").addEventListener("change", paint);
$("grid-submit").addEventListener("click", submit);
$("grid-close").addEventListener("click", () => g.close());

const MOVES = { ArrowLeft: () => -1, ArrowRight: () => 1, ArrowUp: () => -columns(), ArrowDown: () => columns() };

// The grid's keys (the page's dispatcher hands them over while the grid is shown; see the
// `?` overlay): arrows move the cursor, X / Space flips the crop to wrong (a whole frame to
// missed object), C to wrong class,
// A back to right, T picks the next class for wrong-class crops, Enter submits, G / Esc leaves.
export function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const onButton = event.target instanceof Element && event.target.closest("button");
  if (onButton && (key === "Enter" || key === " ")) return;
  const i = g.cursor;
  if (MOVES[key]) g.cursor = Math.max(0, Math.min(g.crops.length - 1, i + MOVES[key]()));
  else if ((key === "x" || key === " ") && g.crops[i]?.whole) setVerdict(i, g.verdicts[i] === "missed" ? "ok" : "missed");
  else if (key === "x" || key === " ") setVerdict(i, g.verdicts[i] === "wrong" ? "ok" : "wrong");
  else if (key === "c" && g.crops[i]?.whole) return;
  else if (key === "c") setVerdict(i, g.verdicts[i] === "wrong_class" ? "ok" : "wrong_class");
  else if (key === "a") setVerdict(i, "ok");
  else if (key === "t") {
    const names = g.classNames;
    $("grid-target").value = names[(names.indexOf($("grid-target").value) + 1) % names.length];
  } else if (key === "Enter") submit();
  else if (key === "g" || key === "Escape") return g.close();
  else return;
  event.preventDefault();
  paint();
  const tile = $("grid-tiles").children[g.cursor];
  if (tile) tile.scrollIntoView({ block: "nearest" });
}
