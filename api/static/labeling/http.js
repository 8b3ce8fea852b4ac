// The API with the labeler's token, and the message banner.
"use strict";

const $ = (id) => document.getElementById(id);

export { $ };

export const session = { token: null };

export class ApiError extends Error {
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
export async function api(path, options = {}) {
  const { json, background, ...init } = options;
  const headers = { Authorization: `Bearer ${session.token}`, ...(init.headers || {}) };
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

// kind: "info" (green), "notice" (amber: something to know, nothing failed), "error" (red;
// cleared by the next call that succeeds).
export function showMessage(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", kind === "error" || kind === true);
  box.classList.toggle("notice", kind === "notice");
  box.hidden = !text;
}

// A frame JPEG as an ImageBitmap (throws ApiError, or a decoding error).
export async function fetchBitmap(url, background = false) {
  const blob = await (await api(url, { background })).blob();
  return createImageBitmap(blob);
}
