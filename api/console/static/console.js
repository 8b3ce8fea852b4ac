// edgeloop console: plain JS, no build step. htmx loads and refreshes the panel fragment;
// this file signs in, sends the token, runs admin actions and draws the uPlot charts.
"use strict";

const TOKEN_KEY = "edgeloop.labelerToken"; // shared with the labeling page: one sign-in
const TOKEN_COOKIE = "edgeloop_token"; // lets plain links (reports, thumbnails) work; GET only
const body = document.body;
const PANEL = body.dataset.panel;
const DATA_URL = body.dataset.dataUrl;
const REFRESH_MS = Number(body.dataset.refreshS || 5) * 1000;
const COLORS = ["#1f5fbf", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

const $ = (id) => document.getElementById(id);

function token() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    saveToken(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

function saveToken(value) {
  localStorage.setItem(TOKEN_KEY, value);
  document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(value)}; path=/; SameSite=Strict`;
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  document.cookie = `${TOKEN_COOKIE}=; path=/; max-age=0; SameSite=Strict`;
  askToken();
}

function askToken(message) {
  $("token-error").textContent = message || "";
  $("token-input").value = "";
  if (!$("token-dialog").open) $("token-dialog").showModal();
}

async function api(url, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token()}` }, options.headers || {});
  const response = await fetch(url, Object.assign({}, options, { headers }));
  if (response.status === 401) askToken("That token was not accepted.");
  return response;
}

async function whoami() {
  if (!token()) {
    $("panel").innerHTML = '<p class="muted">Sign in to see this panel.</p>';
    return askToken();
  }
  const response = await api("/console/api/me");
  if (!response.ok) return;
  const me = await response.json();
  $("whoami").textContent = `${me.name} (${me.role})`;
  $("whoami").dataset.role = me.role;
}

$("token-form").addEventListener("submit", async () => {
  const value = $("token-input").value.trim();
  if (!value) return;
  saveToken(value);
  await whoami();
  htmx.trigger("#panel", "refresh");
  refreshCharts();
  startLive();
  refreshBanner();
});
$("sign-out").addEventListener("click", signOut);

// Every htmx request carries the token; none is sent before there is one (the panel loads
// when the sign-in saves it), so a fresh sign-in logs no 401. A 401 asks for a token.
document.addEventListener("htmx:configRequest", (event) => {
  const value = token();
  if (!value) {
    event.preventDefault();
    return;
  }
  event.detail.headers.Authorization = `Bearer ${value}`;
});
document.addEventListener("htmx:responseError", (event) => {
  if (event.detail.xhr.status === 401) askToken("Sign in to see this panel.");
});

// A filter left at "all" is left out of the query (an empty camera_id is not a camera).
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.filters");
  if (!form) return;
  event.preventDefault();
  const query = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value !== "") query.append(key, value);
  location.assign(`${location.pathname}?${query}`);
});

// --- admin actions: forms with data-url post their fields as JSON ------------------------

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.admin-action");
  if (!form) return;
  event.preventDefault();
  const payload = {};
  for (const [key, value] of new FormData(form)) if (value !== "") payload[key] = value;
  const status = $("action-status");
  status.className = "";
  status.textContent = "Working…";
  const response = await api(form.dataset.url, {
    method: form.dataset.method || "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  let answer = {};
  try { answer = await response.json(); } catch (_) { /* empty body */ }
  if (response.ok) {
    status.textContent = `Done (${response.status}): ${describe(answer)}`;
  } else {
    status.className = "failed";
    status.textContent = `Refused (${response.status}): ${typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail)}`;
  }
  htmx.trigger("#panel", "refresh");
});

function describe(answer) {
  if (answer.alert_id) return `alert ${answer.alert_id} ${answer.status} by ${answer.acknowledged_by}`;
  if (answer.production_version) return `production is now v${answer.production_version}`;
  if (answer.dagster_run_id) return `Dagster run ${answer.dagster_run_id} launched`;
  return JSON.stringify(answer);
}

// --- charts --------------------------------------------------------------------------------

const charts = {};

function chart(id, options, data) {
  const el = $(id);
  if (!el) return;
  const width = Math.max(el.clientWidth, 300);
  const existing = charts[id];
  if (existing && existing.series.length === options.series.length) {
    existing.setData(data);
    return;
  }
  if (existing) existing.destroy();
  el.textContent = "";
  charts[id] = new uPlot(Object.assign({ width, height: 220 }, options), data, el);
}

// The time axis's range: the points' own span, padded. For a single timestamp uPlot 1.6.32
// adds 86400 / ms to it, which with Unix seconds is 1000 days (one drift report in 7 days
// drew 2027 to 2029): so read the span from the data (x sorted), and pad at least half an
// hour each side, so one point or a few close ones sit in a readable window.
const MIN_PAD_S = 1800;
function timeRange(u, min, max) {
  const xs = (u.data && u.data[0]) || [];
  if (xs.length) [min, max] = [xs[0], xs[xs.length - 1]];
  if (min == null || max == null) {
    const now = Date.now() / 1000;
    return [now - 2 * MIN_PAD_S, now];
  }
  const pad = Math.max((max - min) * 0.05, MIN_PAD_S);
  return [min - pad, max + pad];
}

// Align several per-camera series on one sorted x axis (null where a camera has no bucket).
function align(seriesList, key) {
  const xs = [...new Set(seriesList.flatMap((s) => s.t))].sort((a, b) => a - b);
  const ys = seriesList.map((s) => {
    const at = new Map(s.t.map((t, i) => [t, s[key][i]]));
    return xs.map((t) => (at.has(t) ? at.get(t) : null));
  });
  return [xs, ...ys];
}

function fillCameras(cameras) {
  const select = $("camera-select");
  if (!select || select.dataset.filled) return;
  for (const camera of cameras) {
    const option = document.createElement("option");
    option.value = option.textContent = camera;
    option.selected = camera === select.dataset.selected;
    select.appendChild(option);
  }
  select.dataset.filled = "1";
}

// The analytics charts' time axis is the range asked for (since -> until), whatever the data.
let analyticsWindow = null;
const analyticsRange = () => analyticsWindow;

function drawAnalytics(data) {
  fillCameras(data.cameras);
  analyticsWindow = [Date.parse(data.since) / 1000, Date.parse(data.until) / 1000];
  const lines = data.series.map((s, i) => ({ label: s.camera_id, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false }));
  chart("chart-rate", { series: [{}, ...lines], scales: { x: { time: true, range: analyticsRange } }, axes: [{}, { label: "detections/min" }] }, align(data.series, "detections_per_min"));
  const shares = data.series.flatMap((s, i) => [
    { label: `${s.camera_id} defect`, stroke: COLORS[i % COLORS.length], width: 2 },
    { label: `${s.camera_id} uncertain`, stroke: COLORS[i % COLORS.length], dash: [6, 4], width: 1.5 },
  ]);
  const defect = align(data.series, "defect_rate");
  const uncertain = align(data.series, "uncertain_share");
  const shareData = [defect[0]];
  for (let i = 0; i < data.series.length; i++) shareData.push(defect[i + 1], uncertain[i + 1]);
  chart("chart-shares", { series: [{}, ...shares], scales: { x: { time: true, range: analyticsRange }, y: { range: [0, 1] } }, axes: [{}, { label: "share" }] }, shareData);
  const centers = data.confidence_histogram.map((_, i) => (data.confidence_edges[i] + data.confidence_edges[i + 1]) / 2);
  chart(
    "chart-confidence",
    {
      scales: { x: { time: false, range: [0, 1] } },
      axes: [{ label: "confidence" }, { label: "detections" }],
      series: [{}, { label: "detections", fill: "rgba(31,95,191,0.35)", stroke: COLORS[0], paths: uPlot.paths.bars({ size: [0.9, 60] }) }],
    },
    [centers, data.confidence_histogram],
  );
}

// A horizontal threshold line drawn on the chart's canvas.
function thresholdPlugin(value, color) {
  return {
    hooks: {
      draw: (u) => {
        const y = u.valToPos(value, "y", true);
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = color;
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
        ctx.restore();
      },
    },
  };
}

// Vertical dashed lines at the production alias's moves (promotions, rollbacks), labelled
// with the version: a drift change that lines up with one came with the new model.
function promotionsPlugin(promotions) {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = ctx.fillStyle = "#6941c6";
        ctx.setLineDash([4, 3]);
        ctx.font = `${11 * devicePixelRatio}px system-ui`;
        for (const move of promotions) {
          const x = u.valToPos(move.t, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(`v${move.version}`, x + 3, u.bbox.top + 12 * devicePixelRatio);
        }
        ctx.restore();
      },
    },
  };
}

function drawDrift(data) {
  fillCameras(data.cameras.map((c) => c.camera_id));
  const root = $("drift-charts");
  for (const camera of data.cameras) {
    const shareId = `drift-share-${camera.camera_id}`;
    const pId = `drift-p-${camera.camera_id}`;
    if (!$(shareId)) {
      root.insertAdjacentHTML(
        "beforeend",
        `<figure><figcaption>${camera.camera_id}: drift share (threshold ${data.drift_share_threshold})</figcaption><div class="chart" id="${shareId}"></div></figure>` +
          `<figure><figcaption>${camera.camera_id}: p-value per feature (threshold ${data.p_value_threshold}, log scale; below 1e-6 drawn at 1e-6)</figcaption><div class="chart" id="${pId}"></div></figure>`,
      );
    }
    const t = camera.points.map((p) => p.t);
    chart(
      shareId,
      {
        series: [{}, { label: "drift share", stroke: COLORS[1], width: 2, points: { show: true } }],
        scales: { x: { time: true, range: timeRange }, y: { range: [0, 1] } },
        plugins: [thresholdPlugin(data.drift_share_threshold, "#b42318"), promotionsPlugin(data.promotions || [])],
      },
      [t, camera.points.map((p) => p.drift_share)],
    );
    const floor = 1e-6; // p = 0 cannot sit on a log axis
    chart(
      pId,
      {
        series: [{}, ...data.features.map((f, i) => ({ label: f, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: true } }))],
        scales: { x: { time: true, range: timeRange }, y: { distr: 3, range: [floor, 1] } },
        axes: [{}, { values: (u, values) => values.map((v) => (v == null ? "" : v >= 0.01 ? String(v) : v.toExponential(0))) }],
        plugins: [thresholdPlugin(data.p_value_threshold, "#b42318")],
      },
      [t, ...data.features.map((f) => camera.points.map((p) => (f in p.p_values ? Math.max(p.p_values[f], floor) : null)))],
    );
  }
}

async function refreshCharts() {
  const draw = { analytics: drawAnalytics, drift: drawDrift, inspections: (d) => fillCameras(d.cameras) }[PANEL];
  if (!draw || !token()) return;
  const response = await api(DATA_URL);
  if (response.ok) draw(await response.json());
}

// The cookie (plain links: thumbnails, reports) ends with the browser session while the
// saved token stays: set it again, so a returning user's images load without a 401.
if (token()) saveToken(token());
// A token link opened on the page already showing (only the #token=… part differs) is no
// reload: take the new token and redraw the panel for it (the live page does not poll).
window.addEventListener("hashchange", () => {
  if (!/token=/.test(location.hash)) return;
  token();
  whoami();
  refreshAll();
});
whoami();
refreshCharts();
// --- live updates: server-sent events (api/console/live.py) ------------------------------
// While the stream is open, a "change" event that names this panel refreshes it (and its
// charts) at once, and the 5 s poll pauses (the panel's hx-trigger: [!window.edgeloopLive]);
// when the stream fails the poll takes over again until EventSource reconnects.
window.edgeloopLive = false;
let liveSource = null;
let liveEvents = 0;
let liveVersion = null; // the server's marker digest last seen: a reconnect compares it

function refreshAll() {
  htmx.trigger("#panel", "refresh");
  refreshCharts();
  refreshBanner();
}

function setLive(on) {
  window.edgeloopLive = on;
  const status = $("live-status");
  if (!status) return;
  status.textContent = on ? "live" : "polling";
  status.classList.toggle("on", on);
}

function startLive() {
  if (liveSource || !token() || typeof EventSource === "undefined") return;
  liveSource = new EventSource("/console/events"); // the token cookie signs it in
  liveSource.addEventListener("open", () => setLive(true));
  liveSource.addEventListener("error", () => {
    setLive(false);
    if (liveSource.readyState === EventSource.CLOSED) liveSource = null; // refused: poll
  });
  // Each stream lasts seconds (the server ends it so it never delays a shutdown); what
  // changed while the page reconnected shows as a new version in the next "hello".
  liveSource.addEventListener("hello", (event) => {
    const version = JSON.parse(event.data).version;
    if (liveVersion && version && version !== liveVersion) refreshAll();
    if (version) liveVersion = version;
  });
  liveSource.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    if (change.version) liveVersion = change.version;
    body.dataset.liveEvents = String(++liveEvents);
    body.dataset.livePanels = change.panels.join(",");
    if (change.panels.includes(PANEL)) {
      htmx.trigger("#panel", "refresh");
      refreshCharts();
    }
    if (change.panels.includes("alerts")) refreshBanner();
  });
}

// The banner over every panel: how many alerts are open (hidden when none).
async function refreshBanner() {
  const banner = $("alerts-banner");
  if (!banner || !token()) return;
  const response = await api("/api/alerts?status=open&limit=1");
  if (!response.ok) return;
  const count = (await response.json()).open_count;
  banner.hidden = count === 0;
  banner.textContent = `${count} open drift alert${count === 1 ? "" : "s"}: acknowledge on the alerts panel`;
}

startLive();
refreshBanner();
setInterval(() => {
  if (window.edgeloopLive) return;
  refreshBanner();
  if (PANEL === "analytics" || PANEL === "drift") refreshCharts();
}, REFRESH_MS);
