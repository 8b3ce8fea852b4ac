// edgeloop console, dataset browser panel: plain JS, no build step. console.js signs in and
// loads the grid (htmx); this file fills the filters' choices, keeps the selection, and runs
// "add tag", "suggest tags", "send to labeling queue" and the text search.
"use strict";

(() => {
  const TOKEN_KEY = "edgeloop.labelerToken"; // console.js's sign-in
  const $ = (id) => document.getElementById(id);
  const auth = () => ({ Authorization: `Bearer ${localStorage.getItem(TOKEN_KEY)}` });

  async function call(url, options = {}) {
    const headers = Object.assign(auth(), options.headers || {});
    return fetch(url, Object.assign({}, options, { headers }));
  }

  function say(text, failed) {
    const status = $("action-status");
    status.className = failed ? "failed" : "";
    status.textContent = text;
  }

  // --- filters: choices from the store, times shown local and sent as UTC -----------------

  async function fillFacets() {
    if (!localStorage.getItem(TOKEN_KEY)) return;
    const response = await call("/api/browse/facets");
    if (!response.ok) return;
    const facets = await response.json();
    for (const select of document.querySelectorAll("select[data-facet]")) {
      if (select.dataset.filled) continue;
      for (const value of facets[select.dataset.facet] || []) {
        const option = document.createElement("option");
        option.value = option.textContent = value;
        option.selected = value === select.dataset.selected;
        select.appendChild(option);
      }
      select.dataset.filled = "1";
    }
    const tags = await call("/api/tags?limit=200");
    if (!tags.ok) return;
    const names = (await tags.json()).map((t) => t.tag);
    for (const list of [$("filter-tag-list"), $("tag-list")]) {
      if (!list) continue;
      list.textContent = "";
      for (const name of names) list.appendChild(Object.assign(document.createElement("option"), { value: name }));
    }
  }

  const pad = (n) => String(n).padStart(2, "0");
  const localInput = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  for (const input of document.querySelectorAll("input[data-utc]")) {
    const hidden = input.parentElement.querySelector(`input[name="${input.dataset.utc}"]`);
    if (hidden.value) input.value = localInput(new Date(hidden.value));
    input.addEventListener("change", () => {
      hidden.value = input.value ? new Date(input.value).toISOString() : "";
    });
  }

  // --- selection -----------------------------------------------------------------------------

  function selected() {
    return [...document.querySelectorAll("#browse-grid .browse-item")].filter((item) => item.querySelector(".pick:checked"));
  }

  function showCount() {
    const count = $("selected-count");
    if (count) count.textContent = String(selected().length);
  }

  document.addEventListener("change", (event) => {
    if (event.target.id === "select-all") {
      for (const box of document.querySelectorAll("#browse-grid .pick")) box.checked = event.target.checked;
    }
    if (event.target.matches(".pick, #select-all")) {
      for (const item of document.querySelectorAll("#browse-grid .browse-item")) {
        item.classList.toggle("selected", Boolean(item.querySelector(".pick:checked")));
      }
      showCount();
    }
  });

  async function answer(response) {
    let body = {};
    try { body = await response.json(); } catch (_) { /* empty body */ }
    if (!response.ok) say(`Refused (${response.status}): ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`, true);
    return response.ok ? body : null;
  }

  function requireSelection() {
    const items = selected();
    if (!items.length) say("Select crops first (tick them, or “select all on this page”).", true);
    return items;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id === "tag-form") {
      event.preventDefault();
      const items = requireSelection();
      if (!items.length) return;
      const tag = new FormData(form).get("tag");
      const body = await answer(await call("/api/tags", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ tag, detection_ids: items.map((i) => i.dataset.detection) }),
      }));
      if (body) { say(`Tagged ${body.tagged} crop(s) “${body.tag}”.`); refresh(); }
    } else if (form.id === "queue-form") {
      event.preventDefault();
      const items = requireSelection();
      if (!items.length) return;
      const priority = Number(new FormData(form).get("priority"));
      const frames = [...new Set(items.map((i) => i.dataset.frame))];
      const body = await answer(await call("/api/browse/queue", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ frame_keys: frames, priority }),
      }));
      if (body) {
        say(`Labeling queue: ${body.queued.length} queued, ${body.raised.length} raised to priority ${priority}, ${body.labeled.length} already labeled.`);
        refresh();
      }
    } else if (form.id === "text-search") {
      event.preventDefault();
      const query = new URLSearchParams(location.search);
      query.delete("similar_to");
      query.delete("offset");
      const text = new FormData(form).get("text");
      if (text) query.set("text", text); else query.delete("text");
      location.assign(`${location.pathname}?${query}`);
    }
  });

  document.addEventListener("click", async (event) => {
    if (event.target.id !== "suggest-tags") return;
    const items = requireSelection();
    if (!items.length) return;
    const body = await answer(await call("/api/tags/suggest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ detection_ids: items.map((i) => i.dataset.detection) }),
    }));
    if (body) {
      say(`Suggested ${body.suggested} tag(s)${body.prompts ? ` (no CLIP prompts: ${body.prompts})` : ` (${body.prompt_matches} from CLIP prompts)`}.`);
      refresh();
    }
  });

  // The grid is reloaded after an action (and by the console's live updates); the
  // selection is kept by detection id across the swap.
  let keep = new Set();
  const refresh = () => htmx.trigger("#panel", "refresh");
  document.addEventListener("htmx:beforeSwap", () => {
    keep = new Set(selected().map((i) => i.dataset.detection));
  });
  document.addEventListener("htmx:afterSwap", () => {
    for (const item of document.querySelectorAll("#browse-grid .browse-item")) {
      const box = item.querySelector(".pick");
      if (box && keep.has(item.dataset.detection)) { box.checked = true; item.classList.add("selected"); }
    }
    showCount();
    fillFacets();
  });
  fillFacets();
})();
