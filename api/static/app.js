// edgeloop labeling page: plain JS, no build step.
// Boxes are kept as xyxy pixels of the original frame (what the API stores); the canvas
// shows the frame scaled to fit, and `scale` converts between the two.
"use strict";

const TOKEN_KEY = "edgeloop.labelerToken";
const TOKEN_COOKIE = "edgeloop_token";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const MIN_BOX_PX = 4; // smallest box drawn by dragging, in canvas px

const $ = (id) => document.getElementById(id);
const canvas = $("frame");
const ctx = canvas.getContext("2d");

const state = {
  token: null,
  item: null, // the queue item detail from the API
  image: null, // ImageBitmap of the frame
  scale: 1, // canvas px per frame px
  boxes: [], // {bbox: [x1, y1, x2, y2] frame px, className, confidence|null, accepted, drawn}
  hover: -1,
  drag: null, // {x0, y0, x1, y1} canvas px while drawing a box
  imageError: null, // why the frame image did not load (the item cannot be labeled then)
  prefetch: null, // {forId, promise}: the item after `forId`, fetched ahead (see prefetchNext)
  busy: false,
  lastClass: null,
  labelThreshold: null, // reviewed labels that make a retrain due (from the API)
  // "Labels since last training" arrives with several answers (a label POST, each item,
  // the conditions) that may come back out of order: each request that carries it gets a
  // stamp when it is sent, and the count on screen is the one of the latest request sent
  // (see setCounter), so a prefetched item, fetched before the last submit, never shows
  // its older count over the submit's.
  countRequests: 0, // stamps handed out so far
  countShown: 0, // stamp of the count on screen
};

// A stamp for a request that will carry the label count (call it just before sending).
function countStamp() {
  state.countRequests += 1;
  return state.countRequests;
}

// --- token -------------------------------------------------------------------------------

function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

function saveToken(token) {
  state.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  // Lets plain links (drift reports under /reports) open in this browser; GET only.
  document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}

// The dialog closes on Escape, Cancel or a saved token. Closed without a token that works,
// the page shows a sign-in prompt (never a blank page); with one, it carries on as it was.
let signInNeeded = false;
let tokenSaved = false;

function askToken(needed = true) {
  signInNeeded = signInNeeded || needed;
  tokenSaved = false;
  $("token-input").value = "";
  $("signin").hidden = true;
  if (!$("token-dialog").open) $("token-dialog").showModal();
}

function showSignIn() {
  state.item = null;
  state.prefetch = null;
  $("workspace").hidden = true;
  $("empty").hidden = true;
  $("signin").hidden = false;
}

$("token-form").addEventListener("submit", () => {
  const token = $("token-input").value.trim();
  if (!token) return;
  tokenSaved = true;
  signInNeeded = false;
  saveToken(token);
  state.prefetch = null; // claimed under the previous token
  refreshCounter();
  loadNext();
});
$("token-dialog").addEventListener("close", () => {
  if (!tokenSaved && (signInNeeded || !state.token)) showSignIn();
});
$("token-cancel").addEventListener("click", () => $("token-dialog").close());
$("signin-open").addEventListener("click", () => askToken());
$("change-token").addEventListener("click", () => askToken(false));

// --- API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function describeDetail(detail) {
  if (Array.isArray(detail)) {
    // FastAPI's 422 body: [{loc: [...], msg: "..."}]
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("\n");
  }
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

// Calls the API with the token. A success clears an error banner left by an earlier call
// (unless `background`: prefetches and the counter never touch what the user sees).
async function api(path, options = {}) {
  const { json, background, ...init } = options;
  const headers = { Authorization: `Bearer ${state.token}`, ...(init.headers || {}) };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.detail !== undefined) message = describeDetail(body.detail);
    } catch (_) {
      /* not JSON */
    }
    throw new ApiError(response.status, message);
  }
  if (!background && $("message").classList.contains("error")) showMessage("");
  return response;
}

// --- messages ------------------------------------------------------------------------------

// kind: "info" (green), "notice" (amber: something to know, nothing failed), "error" (red;
// cleared by the next call that succeeds).
function showMessage(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", kind === "error" || kind === true);
  box.classList.toggle("notice", kind === "notice");
  box.hidden = !text;
}

function handleError(err) {
  if (err instanceof ApiError && err.status === 401) {
    showMessage(`The token was refused: ${err.message}`, "error");
    askToken();
    return;
  }
  if (err instanceof ApiError && err.status === 403) {
    showMessage(`This token may not label: ${err.message}. Sign in with a labeler token.`, "error");
    askToken();
    return;
  }
  showMessage(err.message || String(err), "error");
}

// --- loading an item ------------------------------------------------------------------------

function nextPath(exclude) {
  const query = exclude.map((id) => `exclude=${encodeURIComponent(id)}`).join("&");
  return "/api/labeling-queue/next" + (query ? `?${query}` : "");
}

// The item's frame as an ImageBitmap, or the reason it cannot be shown.
async function loadImage(item, background = false) {
  if (!item.frame_url) return { image: null, imageError: "this frame has no stored JPEG" };
  try {
    const blob = await (await api(item.frame_url, { background })).blob();
    return { image: await createImageBitmap(blob), imageError: null };
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) throw err;
    const reason = err instanceof ApiError ? err.message : "the image could not be decoded";
    return { image: null, imageError: reason };
  }
}

// Fetch (and claim) the item after the one on screen while the user works on it: the
// API returns the caller's own claimed item again unless it is excluded.
function prefetchNext(currentId) {
  const promise = (async () => {
    try {
      const stamp = countStamp();
      const response = await api(nextPath([currentId]), { background: true });
      const item = await response.json();
      if (item.item_id === currentId) return null;
      return { item, stamp, ...(await loadImage(item, true)) };
    } catch (_) {
      return null; // nothing queued, or any failure: the next load asks again
    }
  })();
  state.prefetch = { forId: currentId, promise };
}

// Show the next item. `exclude`: item ids not to show again now (the one just labeled,
// skipped or taken by someone else).
async function loadNext(exclude = []) {
  if (!state.token) return askToken();
  state.busy = true;
  try {
    const prefetched = state.prefetch;
    state.prefetch = null;
    if (prefetched && (state.item === null || prefetched.forId === state.item.item_id)) {
      const ready = await prefetched.promise;
      if (ready && !exclude.includes(ready.item.item_id)) {
        showItem(ready.item, ready);
        return;
      }
    }
    const stamp = countStamp();
    const response = await api(nextPath(exclude));
    const item = await response.json();
    showItem(item, { stamp, ...(await loadImage(item)) });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      // The queue answered (it is empty): an error banner of an earlier call is stale.
      if ($("message").classList.contains("error")) showMessage("");
      state.item = null;
      $("workspace").hidden = true;
      $("signin").hidden = true;
      $("empty").hidden = false;
      refreshCounter();
    } else {
      handleError(err);
    }
  } finally {
    state.busy = false;
  }
}

async function refreshCounter() {
  try {
    const stamp = countStamp();
    const conditions = await (await api("/api/retraining/conditions", { background: true })).json();
    state.labelThreshold = conditions.label_threshold;
    setCounter(conditions.labels_since_training, stamp);
  } catch (_) {
    /* the counter is informative only */
  }
}

// Show `n` labels since the last training, as answered to the request stamped `stamp`
// (countStamp), unless the count of a request sent later is on screen already. (The
// count may go down, after a training run, so the newest request wins, not the largest.)
function setCounter(n, stamp) {
  if (stamp < state.countShown) return;
  state.countShown = stamp;
  $("label-count").textContent = state.labelThreshold ? `${n} / ${state.labelThreshold}` : String(n);
}

// A new item starts the keyboard afresh at the top of the item: focus never carries over
// from the buttons of the item before, where Tab-Tab-Enter would press a button (Skip) on
// an item the labeler has not looked at yet. (Blurring alone is not enough: the browser
// goes on tabbing from the element that last had focus.)
function resetFocus() {
  if ($("token-dialog").open) return; // the sign-in keeps its field
  $("workspace").focus({ preventScroll: true });
}

function showItem(item, { image, imageError, stamp }) {
  state.item = item;
  state.boxes = item.proposed_boxes.map((b) => ({
    bbox: b.bbox_xyxy.slice(),
    className: b.class_name,
    confidence: b.confidence,
    accepted: true,
    drawn: false,
  }));
  state.image = image;
  state.imageError = imageError;
  $("empty").hidden = true;
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("info-item").textContent = `#${item.item_id}`;
  $("info-camera").textContent = item.camera_id;
  $("info-frame").textContent = `${item.frame_index} (${item.width}×${item.height})`;
  $("info-priority").textContent = item.priority.toFixed(2);
  $("info-status").textContent =
    item.status + (item.skip_count ? ` (skipped ${item.skip_count}×)` : "");
  setCounter(item.labels_since_training, stamp);
  // No image: nothing the labeler decides can be right, so only Skip is offered.
  $("frame-error").hidden = !imageError;
  $("frame-error-reason").textContent = imageError || "";
  $("submit").disabled = Boolean(imageError);
  $("no-object").disabled = Boolean(imageError);
  layoutCanvas();
  renderBoxList();
  draw();
  resetFocus();
  prefetchNext(item.item_id);
}

// --- drawing -------------------------------------------------------------------------------

function classColor(className) {
  const i = state.item ? state.item.class_names.indexOf(className) : -1;
  return COLORS[(i < 0 ? COLORS.length - 1 : i) % COLORS.length];
}

function layoutCanvas() {
  // One scale for both axes (boxes stay true to the frame); the frame fits the stage's
  // width and three quarters of the window's height, and a strip of any aspect ratio
  // (a 100000x1 panorama) still gets a canvas of at least 1 px each way.
  const item = state.item;
  const availableWidth = $("stage").clientWidth || 960;
  const availableHeight = Math.max(200, Math.round(window.innerHeight * 0.75));
  state.scale = Math.min(1.5, availableWidth / item.width, availableHeight / item.height);
  canvas.width = Math.max(1, Math.round(item.width * state.scale));
  canvas.height = Math.max(1, Math.round(item.height * state.scale));
}

function draw() {
  const s = state.scale;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  ctx.font = "13px system-ui, sans-serif";
  ctx.textBaseline = "bottom";
  state.boxes.forEach((box, i) => {
    const [x1, y1, x2, y2] = box.bbox.map((v) => v * s);
    const color = box.accepted ? classColor(box.className) : "#9aa0a6";
    ctx.lineWidth = i === state.hover ? 4 : 2;
    ctx.strokeStyle = color;
    ctx.setLineDash(box.accepted ? [] : [6, 4]);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.setLineDash([]);
    const text = `${i + 1} ${box.className}${box.confidence == null ? "" : " " + box.confidence.toFixed(2)}`;
    const w = ctx.measureText(text).width + 6;
    const ty = y1 > 18 ? y1 : y1 + 18;
    ctx.fillStyle = color;
    ctx.fillRect(x1, ty - 17, w, 17);
    ctx.fillStyle = "white";
    ctx.fillText(text, x1 + 3, ty - 2);
  });
  if (state.drag) {
    const { x0, y0, x1, y1 } = state.drag;
    ctx.strokeStyle = "#ffd60a";
    ctx.lineWidth = 2;
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }
}

function renderBoxList() {
  const list = $("boxes");
  list.replaceChildren();
  if (state.boxes.length === 0) {
    const li = document.createElement("li");
    li.textContent = "No boxes. Drag on the image to add one, or press N for no object.";
    li.style.display = "block";
    list.append(li);
    return;
  }
  state.boxes.forEach((box, i) => {
    const li = document.createElement("li");
    li.className = box.accepted ? "" : "rejected";
    li.dataset.index = String(i);

    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classColor(box.className);

    const number = document.createElement("span");
    number.textContent = `${i + 1}`;

    const select = document.createElement("select");
    select.setAttribute("aria-label", `class of box ${i + 1}`);
    for (const name of state.item.class_names) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      option.selected = name === box.className;
      select.append(option);
    }
    if (!state.item.class_names.includes(box.className)) {
      const option = document.createElement("option");
      option.value = box.className;
      option.textContent = `${box.className} (unknown)`;
      option.selected = true;
      select.append(option);
    }
    select.addEventListener("change", () => {
      box.className = select.value;
      box.accepted = true;
      state.lastClass = select.value;
      select.blur(); // give the keyboard shortcuts back
      renderBoxList();
      draw();
    });

    const conf = document.createElement("span");
    conf.className = "conf";
    conf.textContent = box.confidence == null ? "new" : box.confidence.toFixed(2);

    const toggle = document.createElement("span");
    toggle.className = "toggle";
    const choice = (accepted, mark, title) => {
      const button = document.createElement("button");
      button.type = "button";
      const name = accepted ? "accept" : "reject";
      button.className = name + (box.accepted === accepted ? " on" : "");
      button.textContent = mark;
      button.title = title;
      button.setAttribute("aria-label", `${name} box ${i + 1}`);
      button.addEventListener("click", () => setAccepted(i, accepted));
      return button;
    };
    toggle.append(
      choice(true, "✓", "accept this box"),
      choice(false, "✗", "reject this box (not an object)"),
    );

    li.append(swatch, number, select, conf, toggle);
    li.addEventListener("mouseenter", () => setHover(i));
    li.addEventListener("mouseleave", () => setHover(-1));
    list.append(li);
  });
}

function setAccepted(i, accepted) {
  const box = state.boxes[i];
  const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
  if (box.drawn && !accepted) {
    state.boxes.splice(i, 1); // a box drawn by hand is simply removed
  } else {
    box.accepted = accepted;
  }
  renderBoxList();
  draw();
  // Keyboard users stay on the button they pressed (the list was rebuilt under them).
  const again = focused && $("boxes").querySelector(`[aria-label="${focused}"]`);
  if (again) again.focus();
}

function setHover(i) {
  state.hover = i;
  for (const li of $("boxes").children) li.classList.toggle("hover", li.dataset.index === String(i));
  draw();
}

// --- drawing a new box by dragging ---------------------------------------------------------

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * canvas.width) / rect.width,
    y: ((event.clientY - rect.top) * canvas.height) / rect.height,
  };
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.item || state.imageError) return;
  const p = canvasPoint(event);
  state.drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
});
canvas.addEventListener("mousemove", (event) => {
  if (!state.drag) return;
  const p = canvasPoint(event);
  state.drag.x1 = p.x;
  state.drag.y1 = p.y;
  draw();
});
window.addEventListener("mouseup", () => {
  const drag = state.drag;
  state.drag = null;
  if (!drag || !state.item) return;
  if (Math.abs(drag.x1 - drag.x0) < MIN_BOX_PX || Math.abs(drag.y1 - drag.y0) < MIN_BOX_PX) {
    draw();
    return;
  }
  const s = state.scale;
  const clampX = (v) => Math.max(0, Math.min(state.item.width, v / s));
  const clampY = (v) => Math.max(0, Math.min(state.item.height, v / s));
  state.boxes.push({
    bbox: [
      clampX(Math.min(drag.x0, drag.x1)),
      clampY(Math.min(drag.y0, drag.y1)),
      clampX(Math.max(drag.x0, drag.x1)),
      clampY(Math.max(drag.y0, drag.y1)),
    ],
    className: state.lastClass || state.item.class_names[0],
    confidence: null,
    accepted: true,
    drawn: true,
  });
  renderBoxList();
  draw();
});

// --- actions ---------------------------------------------------------------------------------

function round1(v) {
  return Math.round(v * 10) / 10;
}

// POST for the item on screen, then show the next one. A 409 (someone else holds the
// item's claim, or it is labeled already) is a notice, not a failure: the page moves on.
// `done(body, stamp)` says what happened; `stamp` is the request's countStamp.
async function send(path, json, done) {
  if (!state.item || state.busy) return;
  const itemId = state.item.item_id;
  state.busy = true;
  try {
    const stamp = countStamp();
    const response = await api(path, { method: "POST", json });
    const body = await response.json();
    showMessage(done(body, stamp));
  } catch (err) {
    state.busy = false;
    if (!(err instanceof ApiError && err.status === 409)) return handleError(err);
    const why = /already labeled/i.test(err.message)
      ? "was already labeled"
      : "was taken by someone else";
    showMessage(`Item #${itemId} ${why}; here is the next one. (${err.message})`, "notice");
  } finally {
    state.busy = false;
  }
  await loadNext([itemId]);
}

// True when the item on screen may be labeled (its image showed).
function labelable() {
  return Boolean(state.item) && !state.imageError;
}

function submit() {
  if (!labelable()) return;
  const accepted = state.boxes.filter((b) => b.accepted);
  if (accepted.length === 0) {
    showMessage("No box is accepted. Press N (No object) if the frame holds nothing.", "error");
    return;
  }
  const { width, height } = state.item;
  const boxes = accepted.map((b) => ({
    bbox_xyxy: [
      round1(Math.max(0, b.bbox[0])),
      round1(Math.max(0, b.bbox[1])),
      round1(Math.min(width, b.bbox[2])),
      round1(Math.min(height, b.bbox[3])),
    ],
    class_name: b.className,
  }));
  const itemId = state.item.item_id;
  send(`/api/labeling-queue/${itemId}/label`, { boxes, no_object: false }, (label, stamp) => {
    setCounter(label.labels_since_training, stamp);
    return `Item #${itemId} labeled with ${label.box_count} box${label.box_count === 1 ? "" : "es"}.`;
  });
}

function noObject() {
  if (!labelable()) return;
  const itemId = state.item.item_id;
  send(`/api/labeling-queue/${itemId}/label`, { boxes: [], no_object: true }, (label, stamp) => {
    setCounter(label.labels_since_training, stamp);
    return `Item #${itemId} labeled: no object.`;
  });
}

function skip() {
  if (!state.item) return;
  const itemId = state.item.item_id;
  send(`/api/labeling-queue/${itemId}/skip`, undefined, () => `Item #${itemId} skipped.`);
}

$("submit").addEventListener("click", submit);
$("no-object").addEventListener("click", noObject);
$("skip").addEventListener("click", skip);
$("frame-error-skip").addEventListener("click", skip);
$("refresh").addEventListener("click", () => loadNext());

// Controls own their keys: Enter on a focused button presses that button, in a field it
// belongs to the field; only elsewhere does Enter submit the item.
const CONTROLS = "button, input, select, textarea, a[href], [contenteditable], #boxes";

document.addEventListener("keydown", (event) => {
  if ($("token-dialog").open) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target instanceof Element ? event.target : null;
  if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
  if (event.key === "Enter") {
    if (target && target.closest(CONTROLS)) return;
    event.preventDefault();
    submit();
  } else if (event.key === "n" || event.key === "N") {
    noObject();
  } else if (event.key === "s" || event.key === "S") {
    skip();
  }
});

window.addEventListener("resize", () => {
  if (!state.item) return;
  layoutCanvas();
  draw();
});

// --- start -------------------------------------------------------------------------------------

const initial = readToken();
if (initial) {
  saveToken(initial);
  refreshCounter();
  loadNext();
} else {
  askToken();
}
