// The labeling page's keys: one table, which both the `?` overlay and the handler read.
"use strict";

import { $ } from "./http.js";
import * as editor from "./editor.js";

const { ed } = editor;

// [keys as shown, what they do, group]. The README's "Labeling" section lists the same.
export const KEYS = [
  ["Enter", "submit the item (the accepted boxes)", "item"],
  ["N", "no object: the frame holds nothing", "item"],
  ["S", "skip the item", "item"],
  ["B", "back to my previous item: re-open the label I sent, to correct it (B again: the one before)", "item"],
  ["P", "copy the boxes of the camera's previous labeled frame onto this one", "item"],
  ["Ctrl+Z", "undo (within the item)", "item"],
  ["Ctrl+Shift+Z, Ctrl+Y", "redo", "item"],
  ["G", "open the grid review: crops of one class, each right unless flipped", "item"],
  ["?", "show or hide these keys", "item"],
  ["Tab, Shift+Tab", "select the next / previous box (past the last box, Tab moves on to the buttons)", "box"],
  ["1 – 9", "select box 1 – 9", "box"],
  ["Esc", "select no box (or close this help)", "box"],
  ["Arrows", "move the selected box 1 px (Shift: 10 px)", "box"],
  ["Alt+→ / Alt+←", "wider / narrower: move the right edge 1 px (Shift: 10 px)", "box"],
  ["Alt+↓ / Alt+↑", "taller / shorter: move the bottom edge 1 px (Shift: 10 px)", "box"],
  ["] / [", "grow / shrink the box 1 px on every side (Shift: 10 px)", "box"],
  ["C, Shift+C", "next / previous class for the selected box", "box"],
  ["X, Delete, Backspace", "reject the selected box (not an object; one drawn here is removed)", "box"],
  ["A", "accept the selected box", "box"],
  ["D", "add a box (centred, selected: place it with the keys above)", "box"],
  ["Arrows", "move between crops", "grid"],
  ["X, Space", "flip the crop to wrong (not an object), or back (click: right → wrong → wrong class); on a whole frame (audit sample): missed object", "grid"],
  ["C", "flip the crop to wrong class (relabeled to the class in “wrong class →”), or back", "grid"],
  ["A", "the crop is right", "grid"],
  ["T", "next class for wrong-class crops", "grid"],
  ["Enter", "submit the page: one label per frame", "grid"],
  ["G, Esc", "back to labeling", "grid"],
];

const GROUPS = { item: "The item", box: "The selected box", grid: "Grid review" };

export function renderHelp() {
  const table = $("help-keys");
  table.replaceChildren();
  let group = null;
  for (const [keys, what, g] of KEYS) {
    if (g !== group) {
      group = g;
      const head = document.createElement("th");
      head.colSpan = 2;
      head.textContent = GROUPS[g];
      table.insertRow().append(head);
    }
    const row = table.insertRow();
    const k = row.insertCell();
    for (const [n, key] of keys.split(/, | \/ /).entries()) {
      if (n) k.append(" ");
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.append(kbd);
    }
    row.insertCell().textContent = what;
  }
}

export function toggleHelp(show = $("help").hidden) {
  $("help").hidden = !show;
}

const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

// The box keys (the ones with the "box" group above, and undo/redo); true when `event` was
// one of them. Enter/Space/Tab on a focused control belong to that control (the caller checks).
export function editorKey(event) {
  const key = event.key;
  const step = event.shiftKey ? 10 : 1;
  if (event.ctrlKey || event.metaKey) {
    const k = key.toLowerCase();
    if (k === "z") return event.shiftKey ? editor.redo() || true : editor.undo() || true;
    if (k === "y") return editor.redo() || true;
    return false;
  }
  if (key === "Tab") {
    const next = ed.selected + (event.shiftKey ? -1 : 1);
    const from = ed.selected < 0 && event.shiftKey ? ed.boxes.length - 1 : next;
    if (from < 0 || from >= ed.boxes.length) {
      editor.select(-1); // let the browser move focus on, to the buttons: no keyboard trap
      return false;
    }
    editor.select(from);
    return true;
  }
  if (/^[1-9]$/.test(key) && !event.altKey) {
    editor.select(Number(key) - 1);
    return true;
  }
  if (key === "Escape") {
    editor.select(-1);
    return true;
  }
  const arrow = ARROWS[key];
  if (arrow) {
    const [dx, dy] = arrow.map((v) => v * step);
    if (event.altKey) editor.resize([0, 0, dx, dy]);
    else editor.nudge(dx, dy);
    return true;
  }
  if (event.code === "BracketRight" || event.code === "BracketLeft") {
    const d = event.code === "BracketRight" ? step : -step;
    editor.resize([-d, -d, d, d]);
    return true;
  }
  if (event.altKey) return false;
  const lower = key.toLowerCase();
  if (lower === "c") editor.cycleClass(event.shiftKey ? -1 : 1);
  else if (lower === "x" || key === "Delete" || key === "Backspace") editor.setAccepted(ed.selected, false);
  else if (lower === "a") editor.setAccepted(ed.selected, true);
  else if (lower === "d") editor.addBox();
  else return false;
  return true;
}
