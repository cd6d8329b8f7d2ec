// REST calls of the page (join grant, recording control) with the session cookie and CSRF token.

import { config, cookie } from "./dom.js";

function headers(json) {
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  const csrf = cookie("csrftoken");
  if (csrf) h["X-CSRFToken"] = csrf;
  return h;
}

async function failure(response) {
  const data = await response.json().catch(() => ({}));
  const error = new Error(data?.error?.message || `The server answered ${response.status}.`);
  error.code = data?.error?.code || "http_error";
  error.status = response.status;
  return error;
}

/** POST /api/v1/rooms/<id>/join: the join grant (or an error with code and status). */
export async function restJoin(body) {
  const response = await fetch(`/api/v1/rooms/${config.roomId}/join`, {
    method: "POST", headers: headers(true), body: JSON.stringify(body), credentials: "same-origin",
  });
  if (!response.ok) {
    const error = await failure(response);
    if (error.message.startsWith("The server answered")) error.message = `Joining failed (${response.status}).`;
    throw error;
  }
  const data = await response.json().catch(() => ({}));
  data.receivedAt = Date.now();
  return data;
}

export async function apiPost(path, body = null) {
  let response;
  try {
    response = await fetch(path, { method: "POST", headers: headers(body !== null), body: body === null ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    const error = new Error("The server cannot be reached.");
    error.code = "network_error";
    throw error;
  }
  if (!response.ok) throw await failure(response);
  return response.json().catch(() => ({}));
}
