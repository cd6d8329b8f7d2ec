// Page helpers: the room config the template renders, element lookup and creation, the status pill,
// toasts, and the per-tab session record (sessionStorage).

import { connectedStatus } from "./bandwidth.js";
import { state } from "./state.js";

export const config = JSON.parse(document.getElementById("room-config").textContent);
export const $ = (id) => document.getElementById(id);
export const STORE_KEY = `conference:${config.roomId}`;

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "type") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return hit ? decodeURIComponent(hit.split("=")[1]) : "";
}

/** Enter `phase`; `show: false` leaves the page as it is (it is shown by a later setPhase of the same phase). */
export function setPhase(phase, { show = true } = {}) {
  state.phase = phase;
  if (!show) return;
  $("app").dataset.state = phase;
  for (const id of ["prejoin", "waiting", "call", "ended"]) $(id).hidden = id !== (phase === "joining" ? "prejoin" : phase);
  document.body.classList.toggle("in-call", phase === "call");
}

export function setStatus(text, kind = "", title = "") {
  const node = $("conn-status");
  node.textContent = text;
  node.dataset.kind = kind;
  node.title = title;
}

/** "Connected", saying so when the server reports limited or low bandwidth (forwarded_tracks.bandwidth). */
export function setConnected() {
  const { text, kind, title } = connectedStatus(state.bandwidth);
  setStatus(text, kind, title);
}

/** Refresh the pill for a new bandwidth report, unless it shows something else (a problem, an announcement). */
export function refreshConnected() {
  if (["good", "limited"].includes($("conn-status").dataset.kind)) setConnected();
}

let toastTimer = null;
export function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 5000);
}

export function store(data) {
  try {
    if (data === null) sessionStorage.removeItem(STORE_KEY);
    else sessionStorage.setItem(STORE_KEY, JSON.stringify(data));
  } catch { /* private mode: no auto-rejoin on reload */ }
}

export function stored() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null"); } catch { return null; }
}

/** Whether we host or moderate (host tools, lobby, Record button). */
export function isModerator() {
  return state.role === "host" || state.role === "moderator";
}
