// The participant's session: REST join, waiting room, the room snapshot, roster changes, and the end
// (leave, removed, ended). The socket module calls back into here through configureSocket (main.js).

import { restJoin } from "./api.js";
import { joinRequestBody, recordWithGrant, retryWithoutToken } from "./grant.js";
import { SUBSCRIBE_FIRST_MS } from "./join_order.js";
import { forgetChat, onChatError, resumeChat } from "./chat.js";
import { $, config, setConnected, setPhase, setStatus, store, stored, toast } from "./dom.js";
import { e2ee, e2eeAnnounce, e2eeForget, e2eeSeated } from "./e2ee.js";
import { sendMediaState, setAudioMuted, setVideoMuted, stopLevel, syncControls } from "./controls.js";
import { closeAllPcs, startMedia, stopRecoveries } from "./media.js";
import { renderAll } from "./people.js";
import { onRecordingState } from "./recording.js";
import { closeSocket, openSocket, send, socketJoined } from "./socket.js";
import { mediaStateFields, mediaStateHeld, state } from "./state.js";
import { startStats, stopStats } from "./stats.js";
import { clearTiles, removeTiles } from "./tiles.js";

let joinArgs = { displayName: "", password: "" };
let joins = 0; // first snapshots so far: a call drawn late (onSnapshot) is drawn only for the newest

function rememberGrant(grant) {
  const saved = stored();
  if (saved) store(recordWithGrant(saved, grant)); // the latest rejoin_token (grant.js)
}

function joinBody(args, { rejoin = true } = {}) {
  return joinRequestBody(args, {
    audio: !!state.local.audioTrack,
    screen: !!navigator.mediaDevices?.getDisplayMedia,
    rejoinToken: rejoin ? stored()?.rejoinToken : null,
  });
}

// A refused rejoin_token (expired, revoked, another room) must not cost the join: try once without it.
async function joinWithToken(args) {
  const body = joinBody(args);
  try {
    return await restJoin(body);
  } catch (err) {
    if (!retryWithoutToken(err, body)) throw err;
    rememberGrant({});
    return restJoin(joinBody(args, { rejoin: false }));
  }
}

/** A fresh grant for a socket reconnect (socket.js). */
export async function rejoinGrant() {
  const grant = await joinWithToken(joinArgs);
  rememberGrant(grant);
  return grant;
}

export async function join(args) {
  if (config.e2ee && !e2ee.mode) return; // see main(): this browser cannot encrypt
  joinArgs = args;
  setPhase("joining");
  $("join-button").disabled = true;
  $("join-error").textContent = "";
  try {
    state.grant = await joinWithToken(args);
  } catch (err) {
    $("join-button").disabled = false;
    setPhase("prejoin");
    $("join-error").textContent = err.message;
    if (err.code === "room_password_required" || err.code === "room_password_invalid") $("room-password")?.focus();
    else if (err.code === "display_name_required") $("display-name")?.focus();
    store(null);
    return;
  }
  state.role = state.grant.role;
  store(recordWithGrant({ displayName: args.displayName, audioMuted: state.audioMuted, videoMuted: state.videoMuted, devices: state.devices }, state.grant));
  if (state.grant.status === "waiting") showWaiting();
  openSocket();
}

export function showWaiting() {
  setPhase("waiting");
  $("waiting-title").focus();
}

/** The socket is down and a rejoin is scheduled (socket.js). */
export function onReconnecting(attempt) {
  setStatus(`Reconnecting… (attempt ${attempt})`, "bad");
  $("app").classList.add("reconnecting");
}

const MEDIA_ERRORS = new Set(["media_unavailable", "media_error", "room_not_found", "publish_not_found", "subscriber_not_found"]);

export function onErrorFrame(frame) {
  console.warn("server error frame", frame.code, frame.message);
  if (frame.ref === "video_preferences") { state.prefsSent = null; return; } // e.g. someone just left: re-sent on the next render
  if (frame.ref === "unpublish") return; // a share the server had already dropped: nothing to tell the user
  if (typeof frame.ref === "string" && frame.ref.startsWith("chat:")) { onChatError(frame); return; }
  if (["session_replaced"].includes(frame.code)) return; // the close code explains it
  // Media errors of frames without a reply (an answer to a connection being replaced, an ICE candidate):
  // the connection's recovery (media.js) says what happens on the status pill; a toast each would be a storm.
  if (MEDIA_ERRORS.has(frame.code)) return;
  if (state.phase === "call") toast(frame.message || "Something went wrong.");
  else if (state.phase === "prejoin" || state.phase === "joining" || state.phase === "waiting") $("join-error").textContent = frame.message || "";
}

export function onSnapshot(frame) {
  const first = state.phase !== "call";
  socketJoined();
  $("app").classList.remove("reconnecting");
  state.me = frame.you;
  state.role = frame.you.role;
  state.participants.clear();
  for (const p of frame.participants) if (p.participantId !== frame.you.participantId) state.participants.set(p.participantId, p);
  // On a join the call is drawn only once the subscribe offer is answered (join_order.js): the phase is the
  // call's already (what media.js checks), the page shows it below.
  if (first) setPhase("call", { show: false });
  // Before anything is rendered: the subscribe request leaves now (media.js subscribeOnce), and on a join the
  // camera connection waits for its answer too (docs/benchmarks.md §4).
  const answered = startMedia({ holdMs: first ? SUBSCRIBE_FIRST_MS : 0 });
  if (config.e2ee) {
    // After a reconnect: forget (and rotate away from) anyone who left meanwhile; seat keys that waited.
    for (const id of [...e2ee.peers.keys()]) if (!state.participants.has(id)) e2eeForget(id);
    for (const id of state.participants.keys()) e2eeSeated(id);
  }
  state.lobby.clear();
  for (const p of frame.lobby || []) state.lobby.set(p.participantId, p);
  onRoomUpdated(frame.room);
  if (first) {
    const join = ++joins;
    answered.then(() => {
      if (join !== joins || state.phase !== "call") return; // left (or joined again) meanwhile
      setPhase("call");
      enterCall();
      renderAll();
    });
  }
  onRecordingState(frame.recording_state, { snapshot: true });
  setConnected();
  if (!first) renderAll();
  // Chat: history on the first join (the last 50), only what was missed after a reconnect.
  const head = frame.chat?.head_seq ?? 0;
  if (state.lastSeq === null) {
    state.lastSeq = Math.max(0, head - 50);
    if (head > 0) send({ type: "chat_sync", after_seq: state.lastSeq });
  }
  resumeChat(); // messages typed while we were away (or before a reload), in order
  if (!mediaStateHeld(frame.you, mediaStateFields())) sendMediaState(); // the join frame carried it (main.js)
  if (config.e2ee) e2eeAnnounce();
}

function enterCall() {
  stopLevel();
  $("preview").srcObject = null;
  syncControls();
  startStats();
  $("btn-mic").focus();
}

export function onRoomUpdated(settings) {
  if (!settings) return;
  state.locked = !!settings.locked;
  $("locked-badge").hidden = !state.locked;
  const lock = $("lock-room");
  lock.setAttribute("aria-pressed", String(state.locked));
  lock.textContent = state.locked ? "Unlock room" : "Lock room";
}

export function upsertParticipant(p) {
  if (!p) return;
  if (state.me && p.participantId === state.me.participantId) {
    state.me = { ...state.me, ...p };
    state.role = p.role;
    renderAll();
    return;
  }
  const known = state.participants.has(p.participantId);
  state.participants.set(p.participantId, { ...(state.participants.get(p.participantId) || {}), ...p });
  if (config.e2ee) e2eeSeated(p.participantId);
  state.lobby.delete(p.participantId);
  if (!known && state.phase === "call") announce(`${p.display_name} joined.`);
  renderAll();
}

export function removeParticipant(participantId) {
  if (config.e2ee) e2eeForget(participantId);
  state.pinned = state.pinned.filter((id) => id !== participantId);
  const p = state.participants.get(participantId);
  state.participants.delete(participantId);
  removeTiles(participantId);
  if (p && state.phase === "call") announce(`${p.display_name} left.`);
  renderAll();
}

let announceTimer = null;
function announce(text) {
  setStatus(text, "info");
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { if (state.wsOpen && state.phase === "call") setConnected(); }, 4000);
}

export function onMuteRequest(frame) {
  const by = state.participants.get(frame.by)?.display_name || "The host";
  if (frame.kind === "audio" && !state.audioMuted) {
    setAudioMuted(true);
    toast(`${by} muted you.`);
  } else if (frame.kind === "video" && !state.videoMuted) {
    setVideoMuted(true);
    toast(`${by} turned off your camera.`);
  }
}

export function finish(message, reason) {
  if (state.phase === "ended") return;
  state.leaving = true;
  store(null);
  forgetChat();
  stopStats();
  stopRecoveries();
  closeAllPcs();
  for (const track of state.local.stream?.getTracks() || []) track.stop();
  for (const track of state.local.screenStream?.getTracks() || []) track.stop();
  clearTiles();
  closeSocket(1000);
  setPhase("ended");
  $("app").dataset.reason = reason;
  $("ended-title").textContent = reason === "left" ? "You left the meeting" : reason === "removed" ? "You were removed" : "The meeting is over for you";
  $("ended-detail").textContent = message;
  $("rejoin").hidden = reason === "removed" || reason === "ended";
  $("ended-title").focus();
}

export function leave() {
  finish("You can rejoin while the meeting is still going.", "left");
}
