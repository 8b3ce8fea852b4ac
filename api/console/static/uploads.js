// edgeloop console, uploads panel: plain JS, no build step. console.js signs in and loads
// the panel (htmx); this file sends the upload (drag and drop or the file input, with a
// progress bar), shows one run's boxes at a time, runs another version and sends the
// batch's images to the labeling queue, all against /api/prediction-batches.
"use strict";

(() => {
  const TOKEN_KEY = "edgeloop.labelerToken"; // console.js's sign-in
  const $ = (id) => document.getElementById(id);
  const token = () => localStorage.getItem(TOKEN_KEY);
  let shown = null; // the run whose boxes are shown ("*": every run), kept across redraws

  function say(text, failed) {
    const status = $("action-status");
    status.className = failed ? "failed" : "";
    status.textContent = text;
  }

  async function detail(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) {
      return `${response.status} ${response.statusText}`;
    }
  }

  // --- the upload form ------------------------------------------------------------------------

  const input = $("upload-files");
  const zone = $("drop-zone");
  let chosen = [];

  function choose(files) {
    chosen = Array.from(files);
    const bytes = chosen.reduce((sum, f) => sum + f.size, 0);
    $("upload-chosen").textContent = chosen.length
      ? `${chosen.length} file${chosen.length === 1 ? "" : "s"} chosen (${(bytes / 1048576).toFixed(1)} MiB): ${chosen.map((f) => f.name).join(", ")}`
      : "";
  }

  input.addEventListener("change", () => choose(input.files));
  for (const kind of ["dragenter", "dragover"]) {
    zone.addEventListener(kind, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const kind of ["dragleave", "drop"]) {
    zone.addEventListener(kind, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files);
  });
  $("upload-model").addEventListener("change", (event) => {
    $("upload-version-label").hidden = event.target.value !== "version";
  });

  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!chosen.length) return say("Choose images or a zip first.", true);
    const form = new FormData();
    for (const file of chosen) form.append("files", file, file.name);
    const model = $("upload-model").value;
    if (model === "version") form.append("model_version", $("upload-version").value.trim());
    else form.append("alias", model);
    const progress = $("upload-progress");
    const request = new XMLHttpRequest();
    request.open("POST", "/api/prediction-batches");
    request.setRequestHeader("Authorization", `Bearer ${token()}`);
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total;
    });
    request.upload.addEventListener("load", () => say(`Uploaded; running the model on the loop host…`));
    request.addEventListener("load", () => {
      progress.hidden = true;
      $("upload-submit").disabled = false;
      let body = {};
      try {
        body = JSON.parse(request.responseText);
      } catch (_) {}
      if (request.status === 201) {
        say(`Batch ${body.batch_id}: ${body.image_count} images, ${body.runs[0].detection_count} detections by v${body.runs[0].model_version}.`);
        location.assign(`/console/uploads?batch=${body.batch_id}`); // the batch's own page
      } else {
        const text = typeof body.detail === "string" ? body.detail : request.statusText;
        say(`Upload refused (${request.status}): ${text}`, true);
      }
    });
    request.addEventListener("error", () => {
      progress.hidden = true;
      $("upload-submit").disabled = false;
      say("The upload failed: the API could not be reached.", true);
    });
    progress.value = 0;
    progress.hidden = false;
    $("upload-submit").disabled = true;
    say(`Uploading ${chosen.length} file(s)…`);
    request.send(form);
  });

  // --- one batch: which run's boxes, another run, send to the labeling queue -----------------

  function show(version) {
    shown = version;
    const grid = $("upload-grid");
    if (!grid) return;
    for (const box of grid.querySelectorAll(".box")) box.hidden = version !== "*" && box.dataset.version !== version;
    for (const count of grid.querySelectorAll(".run-count")) count.classList.toggle("dim", version !== "*" && count.dataset.version !== version);
    for (const radio of document.querySelectorAll('input[name="show-run"]')) radio.checked = radio.value === version;
  }

  function batchId() {
    const batch = $("upload-batch");
    return batch ? batch.dataset.batch : null;
  }

  async function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  document.addEventListener("change", (event) => {
    if (event.target.name === "show-run") show(event.target.value);
  });

  document.addEventListener("submit", async (event) => {
    const id = batchId();
    if (event.target.id === "run-form") {
      event.preventDefault();
      const version = $("run-version").value.trim();
      say(`Running v${version} on batch ${id}…`);
      const response = await post(`/api/prediction-batches/${id}/runs`, { model_version: version });
      if (!response.ok) return say(`Run refused (${response.status}): ${await detail(response)}`, true);
      const body = await response.json();
      const run = body.runs[body.runs.length - 1];
      say(`v${run.model_version} found ${run.detection_count} detections on batch ${id}.`);
      shown = "*";
      htmx.trigger("#panel", "refresh");
    } else if (event.target.id === "queue-batch-form") {
      event.preventDefault();
      const version = $("queue-version").value;
      const response = await post(`/api/prediction-batches/${id}/queue`, { model_version: version });
      if (!response.ok) return say(`Not queued (${response.status}): ${await detail(response)}`, true);
      const body = await response.json();
      say(`${body.item_ids.length} images of batch ${id} are in the labeling queue (camera ${body.camera_id}, pre-labels from v${body.model_version}).`);
      htmx.trigger("#panel", "refresh");
    }
  });

  document.body.addEventListener("htmx:afterSwap", () => {
    const versions = ($("upload-batch")?.dataset.versions || "").split(",").filter(Boolean);
    if (!versions.length) return;
    show(shown && (shown === "*" || versions.includes(shown)) ? shown : versions[0]);
  });
})();
