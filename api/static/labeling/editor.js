// The box editor of one item: boxes as xyxy pixels of the original frame (what the API
// stores); the canvas shows the frame scaled to fit, and `ed.scale` converts between the
// two. Every change goes through `change()`, which keeps the item's undo history.
"use strict";

import { $ } from "./http.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const MIN_BOX_PX = 4; // smallest box drawn by dragging, in canvas px
const HANDLE_PX = 6; // how near an edge (canvas px) a drag resizes instead of moving
const MIN_SIDE = 1; // smallest box side, frame px (the API refuses thinner boxes)

const canvas = $("frame");
const ctx = canvas.getContext("2d");

export const ed = {
  item: null, // {width, height, class_names}
  image: null, // ImageBitmap of the frame, or null
  scale: 1, // canvas px per frame px
  boxes: [], // {bbox: [x1, y1, x2, y2] frame px, className, confidence|null, accepted, drawn}
  selected: -1,
  hover: -1,
  past: [], // snapshots before each change (undo)
  future: [], // snapshots undone (redo)
  drag: null, // mouse gesture in progress (see onMouseDown)
  lastClass: null,
  enabled: false, // false while the frame did not load (nothing can be labeled)
};

const snapshot = () => JSON.stringify({ boxes: ed.boxes, selected: ed.selected });
function restore(text) {
  const { boxes, selected } = JSON.parse(text);
  ed.boxes = boxes;
  ed.selected = selected;
}

// A new item: its boxes, an empty history, nothing selected.
export function load(item, boxes, image, enabled) {
  Object.assign(ed, { item, boxes, image, enabled, selected: -1, hover: -1, past: [], future: [], drag: null });
  layout();
  refresh();
}

export function refresh() {
  renderBoxList();
  draw();
}

// Apply `fn` to the boxes as one undoable step.
export function change(fn) {
  const before = snapshot();
  fn();
  if (snapshot() === before) return;
  ed.past.push(before);
  ed.future = [];
  refresh();
}

// Undo (a step from `past` to `future`) or redo (the reverse); false when there is none.
function step(from, to) {
  if (!from.length) return false;
  to.push(snapshot());
  restore(from.pop());
  refresh();
  return true;
}

export const undo = () => step(ed.past, ed.future);
export const redo = () => step(ed.future, ed.past);

// --- editing the selected box (keys) --------------------------------------------------------

export function select(i) {
  ed.selected = i >= 0 && i < ed.boxes.length ? i : -1;
  refresh();
  const row = ed.selected >= 0 && $("boxes").children[ed.selected];
  if (row) row.scrollIntoView({ block: "nearest" });
}

const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

// Move the selected box by (dx, dy) frame px, kept inside the frame.
export function nudge(dx, dy) {
  const box = ed.boxes[ed.selected];
  if (!box) return;
  change(() => {
    const [x1, y1, x2, y2] = box.bbox;
    const mx = clamp(dx, -x1, ed.item.width - x2);
    const my = clamp(dy, -y1, ed.item.height - y2);
    box.bbox = [x1 + mx, y1 + my, x2 + mx, y2 + my];
  });
}

// Move the selected box's edges by `d` = [dx1, dy1, dx2, dy2] frame px, inside the frame and
// at least MIN_SIDE wide and high.
export function resize(d) {
  const box = ed.boxes[ed.selected];
  if (box) change(() => (box.bbox = resized(box.bbox, d)));
}

function resized([x1, y1, x2, y2], [dx1, dy1, dx2, dy2]) {
  const { width, height } = ed.item;
  const nx1 = clamp(x1 + dx1, 0, x2 + dx2 - MIN_SIDE);
  const ny1 = clamp(y1 + dy1, 0, y2 + dy2 - MIN_SIDE);
  return [nx1, ny1, clamp(x2 + dx2, nx1 + MIN_SIDE, width), clamp(y2 + dy2, ny1 + MIN_SIDE, height)];
}

// The next (step 1) or previous (step -1) class for the selected box.
export function cycleClass(step) {
  const box = ed.boxes[ed.selected];
  if (!box) return;
  const names = ed.item.class_names;
  setClass(ed.selected, names[(names.indexOf(box.className) + step + names.length) % names.length]);
}

export function setClass(i, name) {
  const box = ed.boxes[i];
  change(() => {
    box.className = name;
    box.accepted = true;
  });
  ed.lastClass = name;
}

// Accept or reject box i; a rejected box drawn by hand is simply removed.
export function setAccepted(i, accepted) {
  const box = ed.boxes[i];
  if (!box) return;
  change(() => {
    if (box.drawn && !accepted) {
      ed.boxes.splice(i, 1);
      ed.selected = Math.min(ed.selected, ed.boxes.length - 1);
    } else {
      box.accepted = accepted;
    }
  });
}

// A new box (a fifth of the frame, centred), selected, for the keyboard to place.
export function addBox() {
  const { width, height, class_names } = ed.item;
  const [w, h] = [Math.max(MIN_SIDE, Math.round(width / 5)), Math.max(MIN_SIDE, Math.round(height / 5))];
  const [x, y] = [Math.round((width - w) / 2), Math.round((height - h) / 2)];
  addDrawn([x, y, x + w, y + h], ed.lastClass || class_names[0]);
}

function addDrawn(bbox, className) {
  change(() => {
    ed.boxes.push({ bbox, className, confidence: null, accepted: true, drawn: true });
    ed.selected = ed.boxes.length - 1;
  });
}

// Replace the boxes with `bboxes` ({bbox_xyxy, class_name} of another frame), clipped to
// this frame, as one undoable step.
export function replaceBoxes(boxes) {
  const { width, height } = ed.item;
  change(() => {
    ed.boxes = boxes
      .map((b) => ({
        bbox: resized(b.bbox_xyxy.map(Number), [0, 0, 0, 0]),
        className: b.class_name,
        confidence: null,
        accepted: true,
        drawn: true,
      }))
      .filter((b) => b.bbox[2] <= width && b.bbox[3] <= height); // not wholly outside
    ed.selected = -1;
  });
}

// --- drawing -------------------------------------------------------------------------------

export function classColor(className, names) {
  const i = names ? names.indexOf(className) : -1;
  return COLORS[(i < 0 ? COLORS.length - 1 : i) % COLORS.length];
}

// One scale for both axes (boxes stay true to the frame); the frame fits the stage's width
// and three quarters of the window's height, and a strip of any aspect ratio (a 100000x1
// panorama) still gets a canvas of at least 1 px each way.
export function layout() {
  if (!ed.item) return;
  const availableWidth = $("stage").clientWidth || 960;
  const availableHeight = Math.max(200, Math.round(window.innerHeight * 0.75));
  ed.scale = Math.min(1.5, availableWidth / ed.item.width, availableHeight / ed.item.height);
  canvas.width = Math.max(1, Math.round(ed.item.width * ed.scale));
  canvas.height = Math.max(1, Math.round(ed.item.height * ed.scale));
}

export function draw() {
  const s = ed.scale;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (ed.image) ctx.drawImage(ed.image, 0, 0, canvas.width, canvas.height);
  ctx.font = "13px system-ui, sans-serif";
  ctx.textBaseline = "bottom";
  ed.boxes.forEach((box, i) => {
    const [x1, y1, x2, y2] = box.bbox.map((v) => v * s);
    const color = box.accepted ? classColor(box.className, ed.item.class_names) : "#9aa0a6";
    const selected = i === ed.selected;
    ctx.lineWidth = selected || i === ed.hover ? 4 : 2;
    ctx.strokeStyle = color;
    ctx.setLineDash(box.accepted ? [] : [6, 4]);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.setLineDash([]);
    if (selected) {
      ctx.fillStyle = "white";
      for (const [hx, hy] of [[x1, y1], [x2, y1], [x1, y2], [x2, y2], [(x1 + x2) / 2, y1], [(x1 + x2) / 2, y2], [x1, (y1 + y2) / 2], [x2, (y1 + y2) / 2]]) {
        ctx.fillRect(hx - 3, hy - 3, 6, 6);
        ctx.strokeRect(hx - 3, hy - 3, 6, 6);
      }
    }
    const text = `${i + 1} ${box.className}${box.confidence == null ? "" : " " + box.confidence.toFixed(2)}`;
    const w = ctx.measureText(text).width + 6;
    const ty = y1 > 18 ? y1 : y1 + 18;
    ctx.fillStyle = color;
    ctx.fillRect(x1, ty - 17, w, 17);
    ctx.fillStyle = "white";
    ctx.fillText(text, x1 + 3, ty - 2);
  });
  const drag = ed.drag;
  if (drag && drag.mode === "draw") {
    ctx.strokeStyle = "#ffd60a";
    ctx.lineWidth = 2;
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(Math.min(drag.x0, drag.x1), Math.min(drag.y0, drag.y1), Math.abs(drag.x1 - drag.x0), Math.abs(drag.y1 - drag.y0));
    ctx.setLineDash([]);
  }
}

function option(value, text, selected) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = text;
  el.selected = selected;
  return el;
}

function renderBoxList() {
  const list = $("boxes");
  list.replaceChildren();
  if (ed.boxes.length === 0) {
    const li = document.createElement("li");
    li.textContent = "No boxes. Drag on the image (or press D) to add one, or press N for no object.";
    li.style.display = "block";
    list.append(li);
    return;
  }
  const names = ed.item.class_names;
  ed.boxes.forEach((box, i) => {
    const li = document.createElement("li");
    li.className = (box.accepted ? "" : "rejected") + (i === ed.selected ? " selected" : "");
    li.dataset.index = String(i);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classColor(box.className, names);
    const number = document.createElement("span");
    number.textContent = `${i + 1}`;
    const select = document.createElement("select");
    select.setAttribute("aria-label", `class of box ${i + 1}`);
    for (const name of names) select.append(option(name, name, name === box.className));
    if (!names.includes(box.className)) select.append(option(box.className, `${box.className} (unknown)`, true));
    select.addEventListener("change", () => {
      setClass(i, select.value);
      select.blur(); // give the keyboard shortcuts back
    });
    const conf = document.createElement("span");
    conf.className = "conf";
    conf.textContent = box.confidence == null ? "new" : box.confidence.toFixed(2);
    const toggle = document.createElement("span");
    toggle.className = "toggle";
    toggle.append(choiceButton(i, true, "✓", "accept this box (A)"), choiceButton(i, false, "✗", "reject this box: not an object (X)"));
    li.append(swatch, number, select, conf, toggle);
    li.addEventListener("mouseenter", () => setHover(i));
    li.addEventListener("mouseleave", () => setHover(-1));
    list.append(li);
  });
}

function choiceButton(i, accepted, mark, title) {
  const button = document.createElement("button");
  button.type = "button";
  const name = accepted ? "accept" : "reject";
  button.className = name + (ed.boxes[i].accepted === accepted ? " on" : "");
  button.textContent = mark;
  button.title = title;
  button.setAttribute("aria-label", `${name} box ${i + 1}`);
  button.addEventListener("click", () => {
    setAccepted(i, accepted);
    // Keyboard users stay on the button they pressed (the list was rebuilt under them).
    const again = $("boxes").querySelector(`[aria-label="${name} box ${i + 1}"]`);
    if (again) again.focus();
  });
  return button;
}

function setHover(i) {
  ed.hover = i;
  for (const li of $("boxes").children) li.classList.toggle("hover", li.dataset.index === String(i));
  draw();
}

// --- the mouse: click selects, drag moves, drag on an edge or corner resizes, drag on the
// frame outside every box draws a new one --------------------------------------------------

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return { x: ((event.clientX - rect.left) * canvas.width) / rect.width, y: ((event.clientY - rect.top) * canvas.height) / rect.height };
}

// What a press at canvas point p grabs: {index, edges: [left, top, right, bottom] moved}.
function hit(p) {
  const order = ed.boxes.map((_, i) => i).reverse();
  if (ed.selected >= 0) order.unshift(ed.selected); // the selected box's handles come first
  for (const i of order) {
    const [x1, y1, x2, y2] = ed.boxes[i].bbox.map((v) => v * ed.scale);
    if (p.x < x1 - HANDLE_PX || p.x > x2 + HANDLE_PX || p.y < y1 - HANDLE_PX || p.y > y2 + HANDLE_PX) continue;
    const edges = [Math.abs(p.x - x1) <= HANDLE_PX, Math.abs(p.y - y1) <= HANDLE_PX, Math.abs(p.x - x2) <= HANDLE_PX, Math.abs(p.y - y2) <= HANDLE_PX];
    if (edges.some(Boolean)) return { index: i, edges };
    if (p.x > x1 && p.x < x2 && p.y > y1 && p.y < y2) return { index: i, edges: null };
  }
  return null;
}

function cursorFor(grab) {
  if (!grab) return "crosshair";
  if (!grab.edges) return "move";
  const [l, t, r, b] = grab.edges;
  if ((l && t) || (r && b)) return "nwse-resize";
  if ((r && t) || (l && b)) return "nesw-resize";
  return l || r ? "ew-resize" : "ns-resize";
}

canvas.addEventListener("mousedown", (event) => {
  if (!ed.item || !ed.enabled) return;
  const p = canvasPoint(event);
  const grab = hit(p);
  if (!grab) {
    ed.drag = { mode: "draw", x0: p.x, y0: p.y, x1: p.x, y1: p.y };
    return;
  }
  ed.selected = grab.index;
  ed.drag = { mode: grab.edges ? "resize" : "move", grab, p0: p, before: snapshot(), bbox0: ed.boxes[grab.index].bbox.slice() };
  refresh();
});

canvas.addEventListener("mousemove", (event) => {
  const p = canvasPoint(event);
  const drag = ed.drag;
  if (!drag) {
    if (ed.item) canvas.style.cursor = cursorFor(hit(p));
    return;
  }
  if (drag.mode === "draw") {
    Object.assign(drag, { x1: p.x, y1: p.y });
  } else {
    const box = ed.boxes[drag.grab.index];
    const [dx, dy] = [(p.x - drag.p0.x) / ed.scale, (p.y - drag.p0.y) / ed.scale];
    const [x1, y1, x2, y2] = drag.bbox0;
    if (drag.mode === "move") {
      const mx = clamp(dx, -x1, ed.item.width - x2);
      const my = clamp(dy, -y1, ed.item.height - y2);
      box.bbox = [x1 + mx, y1 + my, x2 + mx, y2 + my];
    } else {
      const [l, t, r, b] = drag.grab.edges;
      box.bbox = resized(drag.bbox0, [l ? dx : 0, t ? dy : 0, r ? dx : 0, b ? dy : 0]);
    }
  }
  draw();
});

window.addEventListener("mouseup", () => {
  const drag = ed.drag;
  ed.drag = null;
  if (!drag || !ed.item) return;
  if (drag.mode !== "draw") {
    if (snapshot() !== drag.before) {
      ed.past.push(drag.before); // the whole gesture is one undo step
      ed.future = [];
    }
    refresh();
    return;
  }
  if (Math.abs(drag.x1 - drag.x0) < MIN_BOX_PX || Math.abs(drag.y1 - drag.y0) < MIN_BOX_PX) {
    select(-1);
    return;
  }
  const s = ed.scale;
  const cx = (v) => clamp(v / s, 0, ed.item.width);
  const cy = (v) => clamp(v / s, 0, ed.item.height);
  addDrawn(
    [cx(Math.min(drag.x0, drag.x1)), cy(Math.min(drag.y0, drag.y1)), cx(Math.max(drag.x0, drag.x1)), cy(Math.max(drag.y0, drag.y1))],
    ed.lastClass || ed.item.class_names[0],
  );
});
