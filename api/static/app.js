// edgeloop labeling page: plain JS modules, no build step. This module signs in, loads items
// (the next ones prefetched), sends labels and dispatches the keys; the box editor lives in
// labeling/editor.js, the keys in labeling/keys.js, the grid review in labeling/grid.js.
"use strict";

import { $, ApiError, api, fetchBitmap, session, showMessage } from "./labeling/http.js";
import * as editor from "./labeling/editor.js";
import { editorKey, renderHelp, toggleHelp } from "./labeling/keys.js";
import * as grid from "./labeling/grid.js";

const TOKEN_KEY = "edgeloop.labelerToken";
const TOKEN_COOKIE = "edgeloop_token";
// Items fetched (and claimed) ahead of the one on screen, so the next image is drawn as soon
// as a submit is answered. `?prefetch=0` turns it off (bench/labeling_page.py's baseline).
const PREFETCH = Number(new URLSearchParams(location.search).get("prefetch") ?? 2);

const state = {
  item: null, // the queue item detail from the API
  imageError: null, // why the frame image did not load (the item cannot be labeled then)
  editing: false, // the item is one I labeled before (B): a submit replaces my label
  ahead: [], // [{promise}] resolving to {item, stamp, image, imageError} or null, in order
  posting: null, // the label POST in flight (a promise that never rejects), or null
  busy: false,
  labelThreshold: null, // reviewed labels that make a retrain due (from the API)
  // "Labels since last training" arrives with several answers (a label POST, each item,
  // the conditions) that may come back out of order: each request that carries it gets a
  // stamp when it is sent, and the count on screen is the one of the latest request sent
  // (see setCounter), so a prefetched item, fetched before the last submit, never shows
  // its older count over the submit's.
  countRequests: 0,
  countShown: 0,
};

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
  session.token = token;
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

function showOnly(id) {
  for (const section of ["workspace", "empty", "signin", "grid"]) $(section).hidden = section !== id;
}

$("token-form").addEventListener("submit", () => {
  const token = $("token-input").value.trim();
  if (!token) return;
  tokenSaved = true;
  signInNeeded = false;
  saveToken(token);
  state.ahead = []; // claimed under the previous token
  refreshCounter();
  loadNext();
});
$("token-dialog").addEventListener("close", () => {
  if (tokenSaved || (!signInNeeded && session.token)) return;
  state.item = null;
  state.ahead = [];
  showOnly("signin");
});
$("token-cancel").addEventListener("click", () => $("token-dialog").close());
$("signin-open").addEventListener("click", () => askToken());
$("change-token").addEventListener("click", () => askToken(false));

function handleError(err) {
  if (err instanceof ApiError && err.status === 401) {
    showMessage(`The token was refused: ${err.message}`, "error");
    askToken();
  } else if (err instanceof ApiError && err.status === 403) {
    showMessage(`This token may not label: ${err.message}. Sign in with a labeler token.`, "error");
    askToken();
  } else {
    showMessage(err.message || String(err), "error");
  }
}

// --- loading items ------------------------------------------------------------------------

function nextPath(exclude) {
  const query = exclude.map((id) => `exclude=${encodeURIComponent(id)}`).join("&");
  return "/api/labeling-queue/next" + (query ? `?${query}` : "");
}

// The item's frame as an ImageBitmap, or the reason it cannot be shown.
async function loadImage(item, background = false) {
  if (!item.frame_url) return { image: null, imageError: "this frame has no stored JPEG" };
  try {
    return { image: await fetchBitmap(item.frame_url, background), imageError: null };
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) throw err;
    const reason = err instanceof ApiError ? err.message : "the image could not be decoded";
    return { image: null, imageError: reason };
  }
}

// Keep PREFETCH items (and their images) fetched and claimed behind the one on screen. Each
// fetch excludes the item on screen and those ahead of it: the API hands the caller's own
// claimed item back unless it is excluded.
function topUp() {
  while (state.item && state.ahead.length < PREFETCH) {
    const before = state.ahead.slice();
    const held = [state.item.item_id];
    const promise = (async () => {
      for (const entry of before) {
        const ready = await entry.promise;
        if (!ready) return null; // the queue ran dry, or a failure: the next load asks again
        held.push(ready.item.item_id);
      }
      await state.posting; // a label in flight: the count this item brings must include it
      const stamp = countStamp();
      const item = await (await api(nextPath(held), { background: true })).json();
      if (held.includes(item.item_id)) return null;
      return { item, stamp, ...(await loadImage(item, true)) };
    })().catch(() => null);
    state.ahead.push({ promise });
  }
}

// Show the next item. `exclude`: item ids not to show again now (the one just labeled,
// skipped or taken by someone else).
async function loadNext(exclude = []) {
  if (!session.token) return askToken();
  state.busy = true;
  try {
    while (state.ahead.length) {
      const ready = await state.ahead.shift().promise;
      if (!ready) state.ahead = [];
      else if (!exclude.includes(ready.item.item_id)) return showItem(ready.item, ready);
    }
    const stamp = countStamp();
    const item = await (await api(nextPath(exclude))).json();
    showItem(item, { stamp, ...(await loadImage(item)) });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      // The queue answered (it is empty): an error banner of an earlier call is stale.
      if ($("message").classList.contains("error")) showMessage("");
      state.item = null;
      showOnly("empty");
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

// Show `n` labels since the last training, as answered to the request stamped `stamp`,
// unless the count of a request sent later is on screen already (newest request wins).
function setCounter(n, stamp) {
  if (stamp < state.countShown) return;
  state.countShown = stamp;
  $("label-count").textContent = state.labelThreshold ? `${n} / ${state.labelThreshold}` : String(n);
}

// A new item starts the keyboard afresh at the top of the item: focus never carries over
// from the buttons of the item before, where Tab-Tab-Enter would press a button (Skip) on
// an item the labeler has not looked at yet.
function resetFocus() {
  if ($("token-dialog").open) return; // the sign-in keeps its field
  $("workspace").focus({ preventScroll: true });
}

function boxesOf(item, editing) {
  if (editing) {
    const boxes = item.latest_label ? item.latest_label.boxes : [];
    return boxes.map((b) => ({ bbox: b.bbox_xyxy.slice(), className: b.class_name, confidence: null, accepted: true, drawn: false }));
  }
  return item.proposed_boxes.map((b) => ({ bbox: b.bbox_xyxy.slice(), className: b.class_name, confidence: b.confidence, accepted: true, drawn: false }));
}

function showItem(item, { image, imageError, stamp }, editing = false) {
  state.item = item;
  state.imageError = imageError;
  state.editing = editing;
  showOnly("workspace");
  $("info-item").textContent = `#${item.item_id}`;
  $("info-camera").textContent = item.camera_id;
  $("info-frame").textContent = `${item.frame_index} (${item.width}×${item.height})`;
  $("info-priority").textContent = item.priority.toFixed(2);
  $("info-status").textContent = editing
    ? `labeled by ${item.latest_label ? item.latest_label.labeler : "?"}: editing (submit replaces it)`
    : item.status + (item.skip_count ? ` (skipped ${item.skip_count}×)` : "");
  $("workspace").classList.toggle("editing", editing);
  setCounter(item.labels_since_training, stamp);
  // No image: nothing the labeler decides can be right, so only Skip is offered.
  $("frame-error").hidden = !imageError;
  $("frame-error-reason").textContent = imageError || "";
  $("submit").disabled = Boolean(imageError);
  $("no-object").disabled = Boolean(imageError);
  editor.load(item, boxesOf(item, editing), image, !imageError);
  resetFocus();
  requestAnimationFrame(() => performance.mark("edgeloop:item-drawn", { detail: { item_id: item.item_id } }));
  topUp();
}

// --- actions -------------------------------------------------------------------------------

const round1 = (v) => Math.round(v * 10) / 10;

// POST for the item on screen and show the next one. A 409 (someone else holds the item's
// claim, or it is labeled already) is a notice, not a failure: the page moves on. With
// `moveOn` and an item fetched ahead, the next item is drawn at once, while the POST is in
// flight; should the POST fail (not a 409), the item comes back as it was left.
async function send(path, json, done, moveOn = false) {
  if (!state.item || state.busy) return;
  const itemId = state.item.item_id;
  const left = { item: state.item, image: editor.ed.image, imageError: state.imageError, editing: state.editing, boxes: editor.ed.boxes };
  state.busy = true;
  const stamp = countStamp();
  const posting = api(path, { method: "POST", json }).then((response) => response.json());
  state.posting = posting.catch(() => null); // what prefetches wait for (see topUp)
  const next = moveOn && state.ahead.length ? loadNext([itemId]) : null;
  try {
    showMessage(done(await posting, stamp));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) {
      if (next) await reopen(next, left);
      state.busy = false;
      return handleError(err);
    }
    const why = /already labeled/i.test(err.message) ? "was already labeled" : "was taken by someone else";
    showMessage(`Item #${itemId} ${why}; here is the next one. (${err.message})`, "notice");
  } finally {
    if (!next) state.busy = false;
  }
  if (!next) await loadNext([itemId]);
}

// Back to an item whose label was not stored, with its boxes as they were; the item shown
// meanwhile waits in front of the prefetched ones.
async function reopen(next, left) {
  await next;
  if (state.item && state.item.item_id !== left.item.item_id && !state.editing) {
    const current = { item: state.item, image: editor.ed.image, imageError: state.imageError, stamp: 0 };
    state.ahead.unshift({ promise: Promise.resolve(current) });
  }
  showItem(left.item, { image: left.image, imageError: left.imageError, stamp: 0 }, left.editing);
  editor.ed.boxes = left.boxes;
  editor.refresh();
}

const labelable = () => Boolean(state.item) && !state.imageError;

function sendLabel(boxes) {
  const itemId = state.item.item_id;
  const edit = state.editing;
  performance.mark("edgeloop:submit", { detail: { item_id: itemId } });
  const body = boxes.length ? { boxes, edit } : { boxes: [], no_object: true, edit };
  const done = (label, stamp) => {
    setCounter(label.labels_since_training, stamp);
    const what = label.box_count ? `labeled with ${label.box_count} box${label.box_count === 1 ? "" : "es"}` : "labeled: no object";
    return `Item #${itemId} ${what}${edit ? " (your earlier label replaced)" : ""}.`;
  };
  send(`/api/labeling-queue/${itemId}/label`, body, done, true);
}

function submit() {
  if (!labelable()) return;
  const accepted = editor.ed.boxes.filter((b) => b.accepted);
  if (accepted.length === 0) {
    showMessage("No box is accepted. Press N (No object) if the frame holds nothing.", "error");
    return;
  }
  const { width, height } = state.item;
  const [x1, y1, x2, y2] = [0, 1, 2, 3];
  sendLabel(
    accepted.map((b) => ({
      bbox_xyxy: [round1(Math.max(0, b.bbox[x1])), round1(Math.max(0, b.bbox[y1])), round1(Math.min(width, b.bbox[x2])), round1(Math.min(height, b.bbox[y2]))],
      class_name: b.className,
    })),
  );
}

function noObject() {
  if (labelable()) sendLabel([]);
}

function skip() {
  if (!state.item || state.busy) return;
  const itemId = state.item.item_id;
  if (state.editing) {
    showMessage(`Item #${itemId} left as it was labeled.`); // nothing to release: S leaves the edit
    return loadNext([itemId]);
  }
  send(`/api/labeling-queue/${itemId}/skip`, undefined, () => `Item #${itemId} skipped.`);
}

// B: re-open the item I labeled last (again: the one before), as an edit. The item on
// screen, unless it is such an edit itself, waits in front of the prefetched ones.
async function back() {
  if (state.busy || !session.token) return;
  const before = state.editing && state.item.latest_label ? `?before=${state.item.latest_label.label_id}` : "";
  state.busy = true;
  try {
    const item = await (await api(`/api/labeling-queue/mine/previous${before}`)).json();
    const shown = await loadImage(item);
    if (state.item && !state.editing) {
      const current = { item: state.item, image: editor.ed.image, imageError: state.imageError, stamp: 0 };
      state.ahead.unshift({ promise: Promise.resolve(current) });
    }
    showItem(item, { ...shown, stamp: 0 }, true);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) showMessage("No earlier label of yours to re-open.", "notice");
    else handleError(err);
  } finally {
    state.busy = false;
  }
}

// P: the boxes of the camera's previous labeled frame, replacing these (Ctrl+Z undoes it).
async function copyPrevious() {
  if (!labelable()) return;
  const itemId = state.item.item_id;
  try {
    const label = await (await api(`/api/labeling-queue/${itemId}/previous-label`)).json();
    if (!state.item || state.item.item_id !== itemId) return;
    editor.replaceBoxes(label.boxes);
    showMessage(`Copied ${label.box_count} box${label.box_count === 1 ? "" : "es"} from frame ${label.frame_key} (labeled by ${label.labeler}). Ctrl+Z undoes it.`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) showMessage(err.message, "notice");
    else handleError(err);
  }
}

function openGrid() {
  showOnly("grid");
  grid.open(state.item ? state.item.class_names : null);
}

function closeGrid() {
  if (state.item) showOnly("workspace");
  else loadNext();
  resetFocus();
}

$("submit").addEventListener("click", submit);
$("no-object").addEventListener("click", noObject);
$("skip").addEventListener("click", skip);
$("frame-error-skip").addEventListener("click", skip);
$("refresh").addEventListener("click", () => loadNext());
$("open-grid").addEventListener("click", openGrid);
$("open-help").addEventListener("click", () => toggleHelp());
$("help-close").addEventListener("click", () => toggleHelp(false));
grid.onClose(closeGrid);

// Controls own Enter, Space and Tab: Enter on a focused button presses that button; only
// elsewhere does Enter submit the item. Fields own every key.
const CONTROLS = "button, input, select, textarea, a[href], [contenteditable]";
const ITEM_KEYS = { enter: submit, n: noObject, s: skip, b: back, p: copyPrevious };

document.addEventListener("keydown", (event) => {
  if ($("token-dialog").open) return;
  const target = event.target instanceof Element ? event.target : null;
  if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
  if (event.key === "?") return toggleHelp();
  if (!$("help").hidden) {
    if (event.key === "Escape") toggleHelp(false);
    return;
  }
  if (!$("grid").hidden) return grid.onKey(event);
  if (event.key.toLowerCase() === "g" && !event.ctrlKey && !event.metaKey && !event.altKey && session.token) {
    event.preventDefault();
    return openGrid(); // also from the empty queue: the grid needs no item
  }
  if ($("workspace").hidden || !state.item) return;
  const onControl = target && target.closest(CONTROLS);
  if (onControl && ["Enter", " ", "Tab"].includes(event.key)) return;
  if (editor.ed.enabled && editorKey(event)) {
    event.preventDefault();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const action = ITEM_KEYS[event.key.toLowerCase()];
  if (action) {
    event.preventDefault();
    action();
  }
});

window.addEventListener("resize", () => {
  editor.layout();
  editor.draw();
});

// --- start -------------------------------------------------------------------------------------

renderHelp();
const initial = readToken();
if (initial) {
  saveToken(initial);
  refreshCounter();
  loadNext();
} else {
  askToken();
}
