// The call page: pre-join preview, waiting room, the call itself (docs/protocol.md §1).
//
// One ES module, no build step. The page (templates/rooms/call.html) is
// server-rendered; this module only fills it in. User-provided text (names,
// chat) is always inserted with textContent, never parsed as HTML.
//
// Media: one publish RTCPeerConnection per source ("camera" = camera + mic,
// "screen"), one subscribe connection whose offers come from the server
// (revisioned renegotiation); incoming tracks are mapped to participants by
// transceiver mid using the `tracks` list of each offer.

import * as e2eeCrypto from "./e2ee-crypto.js";

const config = JSON.parse(document.getElementById("room-config").textContent);
const $ = (id) => document.getElementById(id);
const PROTOCOL = 1;
const TERMINAL_CLOSES = {
  4003: "You are not allowed in this room.",
  4004: "This room does not exist.",
  4005: "You joined this meeting from another tab or window.",
  4009: "You were removed from the meeting.",
  4010: "The meeting has ended.",
  4011: "The host did not let you in.",
  4013: "The meeting is full.",
};
const STORE_KEY = `conference:${config.roomId}`;

// ---------------------------------------------------------------------------
// state

const state = {
  phase: "prejoin", // prejoin | joining | waiting | call | ended
  grant: null,
  me: null, // my participant (public shape)
  role: "participant",
  ws: null,
  wsOpen: false,
  reconnectAttempt: 0,
  reconnectTimer: null,
  lastSeq: null, // highest chat seq seen
  chatSeen: new Set(), // message ids shown
  unread: 0,
  participants: new Map(), // participantId -> public participant
  lobby: new Map(),
  tiles: new Map(), // key (participantId or participantId:screen) -> tile element
  trackInfo: new Map(), // subscribe mid -> {participant, pc, source, kind}
  pcs: {}, // camera | screen | subscribe -> RTCPeerConnection
  subChain: Promise.resolve(),
  subscribeEmpty: false,
  subRevision: 0, // revision of the newest subscribe offer applied (older ones are stale)
  refs: new Map(), // ref -> {resolve, reject}
  nextRef: 1,
  activeSpeaker: null,
  // Last-N (docs/protocol.md §1 video_preferences / forwarded_tracks): whose video the server sends us.
  forwardedVideo: null, // Set of "participantId:source" the server forwards; null = not told yet (all)
  lastN: null,
  audioPooled: false, // our microphone m-lines are a pool the server re-maps to whoever talks (forwarded_tracks)
  pooledAudio: new Map(), // mid -> hidden <audio> playing that pooled line (never moved between tiles)
  pinned: [], // participantIds, at most 4, pinned first
  prefsSent: null, // JSON of the last video_preferences sent (re-sent only when it changes)
  prefsTimer: null,
  view: "grid",
  locked: false,
  handRaised: false,
  audioMuted: false,
  videoMuted: false,
  sharing: false,
  local: { stream: null, audioTrack: null, videoTrack: null, screenStream: null },
  devices: { camera: "", microphone: "" },
  statsTimer: null,
  prevStats: null,
  leaving: false,
  leaving: false,
  recording: { recordingId: null, status: "none", reason: null }, // the room's latest recording
};

// ---------------------------------------------------------------------------
// small helpers

function el(tag, props = {}, ...children) {
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

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return hit ? decodeURIComponent(hit.split("=")[1]) : "";
}

function setPhase(phase) {
  state.phase = phase;
  $("app").dataset.state = phase;
  for (const id of ["prejoin", "waiting", "call", "ended"]) $(id).hidden = id !== (phase === "joining" ? "prejoin" : phase);
  document.body.classList.toggle("in-call", phase === "call");
}

function setStatus(text, kind = "") {
  const node = $("conn-status");
  node.textContent = text;
  node.dataset.kind = kind;
}

let toastTimer = null;
function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 5000);
}

function store(data) {
  try {
    if (data === null) sessionStorage.removeItem(STORE_KEY);
    else sessionStorage.setItem(STORE_KEY, JSON.stringify(data));
  } catch { /* private mode: no auto-rejoin on reload */ }
}

function stored() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null"); } catch { return null; }
}

function initials(name) {
  return (name || "?").trim().split(/\s+/).slice(0, 2).map((w) => w[0] || "").join("").toUpperCase() || "?";
}

function waitIceGathering(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

// ---------------------------------------------------------------------------
// pre-join: preview and devices

async function acquireLocal() {
  const constraints = {
    audio: state.devices.microphone ? { deviceId: { exact: state.devices.microphone } } : true,
    video: state.devices.camera
      ? { deviceId: { exact: state.devices.camera }, width: { ideal: 1280 }, height: { ideal: 720 } }
      : { width: { ideal: 1280 }, height: { ideal: 720 } },
  };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(constraints);
  } catch (err) {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      $("join-error").textContent = "No camera available; you can join with audio only.";
    } catch {
      stream = new MediaStream();
      $("join-error").textContent = `Camera and microphone are unavailable (${err.name}). You can still join to listen and chat.`;
    }
  }
  for (const track of state.local.stream?.getTracks() || []) track.stop();
  state.local.stream = stream;
  state.local.audioTrack = stream.getAudioTracks()[0] || null;
  state.local.videoTrack = stream.getVideoTracks()[0] || null;
  if (state.local.audioTrack) state.local.audioTrack.enabled = !state.audioMuted;
  // No camera (denied, busy, or too slow to start on a loaded machine) is a camera that is off: the others are
  // told (video_muted), so they do not wait for camera packets that never come and resubscribe every 20 s.
  if (!state.local.videoTrack && !state.videoMuted) {
    state.videoMuted = true;
    syncControls();
  }
  if (state.videoMuted && state.local.videoTrack) {
    state.local.videoTrack.stop();
    stream.removeTrack(state.local.videoTrack);
    state.local.videoTrack = null;
  }
  showPreview();
  watchLevel();
  return stream;
}

function showPreview() {
  const video = $("preview");
  video.srcObject = state.local.videoTrack ? new MediaStream([state.local.videoTrack]) : null;
  $("preview-off").hidden = !!state.local.videoTrack;
  syncToggle($("pre-mic"), !state.audioMuted, "Microphone on (click to mute)", "Microphone off (click to unmute)");
  syncToggle($("pre-cam"), !state.videoMuted, "Camera on (click to turn off)", "Camera off (click to turn on)");
}

function syncToggle(button, on, onLabel, offLabel) {
  if (!button) return;
  button.setAttribute("aria-pressed", String(on));
  button.setAttribute("aria-label", on ? onLabel : offLabel);
  button.classList.toggle("off", !on);
}

let levelCtx = null;
function watchLevel() {
  const meter = $("mic-level");
  if (!meter || !state.local.audioTrack || !window.AudioContext) return;
  try {
    levelCtx?.close();
    levelCtx = new AudioContext();
    const analyser = levelCtx.createAnalyser();
    levelCtx.createMediaStreamSource(new MediaStream([state.local.audioTrack])).connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    const tick = () => {
      if (state.phase !== "prejoin" || !levelCtx) return;
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128) / 128);
      meter.value = state.audioMuted ? 0 : peak;
      requestAnimationFrame(tick);
    };
    tick();
  } catch { /* the meter is decoration */ }
}

async function fillDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  for (const [selectId, kind, key] of [["camera-select", "videoinput", "camera"], ["mic-select", "audioinput", "microphone"]]) {
    const select = $(selectId);
    if (!select) continue;
    const current = state.devices[key] || (key === "camera" ? state.local.videoTrack : state.local.audioTrack)?.getSettings().deviceId || "";
    select.replaceChildren();
    const list = devices.filter((d) => d.kind === kind);
    if (!list.length) select.append(el("option", { value: "", text: `No ${key} found` }));
    list.forEach((d, i) => select.append(el("option", { value: d.deviceId, text: d.label || `${key} ${i + 1}` })));
    if (current) select.value = current;
  }
}

// ---------------------------------------------------------------------------
// joining: REST grant, then the socket

async function restJoin({ displayName, password }) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const csrf = cookie("csrftoken");
  if (csrf) headers["X-CSRFToken"] = csrf;
  const body = {
    display_name: displayName || "",
    password: password || "",
    stream_capabilities: { audio: !!state.local.audioTrack, video: true, screen: !!navigator.mediaDevices?.getDisplayMedia },
  };
  const response = await fetch(`/api/v1/rooms/${config.roomId}/join`, {
    method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data?.error?.message || `Joining failed (${response.status}).`);
    error.code = data?.error?.code || "http_error";
    error.status = response.status;
    throw error;
  }
  data.receivedAt = Date.now();
  return data;
}

let joinArgs = { displayName: "", password: "" };
// Settles once the pre-join getUserMedia did: "Join now" works before that (see startMedia).
let localReady = Promise.resolve();

async function join(args) {
  if (config.e2ee && !e2ee.mode) return; // see main(): this browser cannot encrypt
  joinArgs = args;
  setPhase("joining");
  $("join-button").disabled = true;
  $("join-error").textContent = "";
  try {
    state.grant = await restJoin(args);
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
  store({ displayName: args.displayName, audioMuted: state.audioMuted, videoMuted: state.videoMuted, devices: state.devices });
  if (state.grant.status === "waiting") showWaiting();
  openSocket();
}

function showWaiting() {
  setPhase("waiting");
  $("waiting-title").focus();
}

function openSocket() {
  clearTimeout(state.reconnectTimer);
  const ws = new WebSocket(state.grant.ws_url);
  state.ws = ws;
  ws.onopen = () => {
    state.wsOpen = true;
    const frame = { type: "join", token: state.grant.token, protocol: PROTOCOL };
    if (state.lastSeq !== null) frame.last_seq = state.lastSeq;
    ws.send(JSON.stringify(frame));
  };
  ws.onmessage = (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    try { onFrame(frame); } catch (err) { console.error("frame handling failed", frame.type, err); }
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    state.wsOpen = false;
    state.ws = null;
    for (const { reject } of state.refs.values()) reject(new Error("socket closed"));
    state.refs.clear();
    onSocketClosed(event.code);
  };
}

function send(frame) {
  if (state.ws && state.wsOpen) state.ws.send(JSON.stringify(frame));
}

function request(frame, timeoutMs = 15000) {
  const ref = `r${state.nextRef++}`;
  return new Promise((resolve, reject) => {
    state.refs.set(ref, { resolve, reject });
    send({ ...frame, ref });
    setTimeout(() => {
      if (state.refs.delete(ref)) reject(new Error(`${frame.type} timed out`));
    }, timeoutMs);
  });
}

function onSocketClosed(code) {
  if (state.leaving || state.phase === "ended") return;
  if (TERMINAL_CLOSES[code]) {
    finish(TERMINAL_CLOSES[code], code === 4009 ? "removed" : code === 4010 ? "ended" : "closed");
    return;
  }
  // Anything else (network, server restart, heartbeat, bad/expired token): rejoin with backoff.
  const delay = Math.min(10000, 500 * 2 ** state.reconnectAttempt) * (0.75 + Math.random() * 0.5);
  state.reconnectAttempt += 1;
  setStatus(`Reconnecting… (attempt ${state.reconnectAttempt})`, "bad");
  $("app").classList.add("reconnecting");
  state.reconnectTimer = setTimeout(reconnect, delay);
}

async function reconnect() {
  if (state.leaving || state.phase === "ended") return;
  try {
    state.grant = await restJoin(joinArgs);
  } catch (err) {
    if (err.status && err.status < 500 && err.status !== 429) {
      const message = err.code === "removed_from_room" ? "You were removed from the meeting." : err.message;
      finish(message, err.code === "removed_from_room" ? "removed" : "closed");
      return;
    }
    onSocketClosed(1006);
    return;
  }
  openSocket();
}

// ---------------------------------------------------------------------------
// server frames

function onFrame(frame) {
  if (frame.ref !== undefined && state.refs.has(frame.ref)) {
    const pending = state.refs.get(frame.ref);
    state.refs.delete(frame.ref);
    if (frame.type === "error") {
      const error = new Error(frame.message);
      error.code = frame.code;
      pending.reject(error);
    } else {
      pending.resolve(frame);
    }
    if (frame.type === "error" || frame.type === "answer" || frame.type === "offer") return;
  }
  switch (frame.type) {
    case "ping": send({ type: "pong" }); break;
    case "pong": break;
    case "lobby_waiting": showWaiting(); break;
    case "lobby_admitted": toast("You were admitted."); break;
    case "room_snapshot": onSnapshot(frame); break;
    case "participant_joined": upsertParticipant(frame.participant); break;
    case "participant_updated": upsertParticipant(frame.participant); break;
    case "participant_left": removeParticipant(frame.participantId); break;
    case "room_updated": onRoomUpdated(frame.settings); break;
    case "lobby_list": state.lobby = new Map(frame.lobby.map((p) => [p.participantId, p])); renderLobby(); break;
    case "lobby_request": state.lobby.set(frame.participant.participantId, frame.participant); renderLobby(); toast(`${frame.participant.display_name} is waiting to join.`); break;
    case "lobby_resolved": state.lobby.delete(frame.participantId); renderLobby(); break;
    case "lobby_denied": finish("The host did not let you in.", "denied"); break;
    case "removed": finish("You were removed from the meeting.", "removed"); break;
    case "room_ended": finish("The host ended the meeting for everyone.", "ended"); break;
    case "chat_message": addChat(frame.message); break;
    case "chat_ack": onChatAck(frame); break;
    case "chat_synced": if (typeof frame.up_to === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, frame.up_to); break;
    case "offer": if (frame.pc === "subscribe") queueSubscribeOffer(frame); break;
    case "active_speaker": setActiveSpeaker(frame.participantId); break;
    case "forwarded_tracks": onForwardedTracks(frame); break;
    case "publication": onPublication(frame); break;
    case "media_state": onPeerState(frame); break;
    case "media_reconnect": onMediaReconnect(frame); break;
    case "mute_request": onMuteRequest(frame); break;
    case "reaction": showReaction(frame); break;
    case "e2ee_public_key": e2eeOnPublicKey(frame).catch((err) => console.error("e2ee public key", err)); break;
    case "e2ee_key": e2eeOnKey(frame).catch((err) => console.error("e2ee key", err)); break;
    case "recording_state": onRecordingState(frame); break;
    case "error": onErrorFrame(frame); break;
    default: break; // newer servers may send frames this client does not know
  }
}

function onErrorFrame(frame) {
  console.warn("server error frame", frame.code, frame.message);
  if (frame.ref === "video_preferences") { state.prefsSent = null; return; } // e.g. someone just left: re-sent on the next render
  if (["session_replaced"].includes(frame.code)) return; // the close code explains it
  if (state.phase === "call") toast(frame.message || "Something went wrong.");
  else if (state.phase === "prejoin" || state.phase === "joining" || state.phase === "waiting") $("join-error").textContent = frame.message || "";
}

function onSnapshot(frame) {
  const first = state.phase !== "call";
  state.reconnectAttempt = 0;
  $("app").classList.remove("reconnecting");
  state.me = frame.you;
  state.role = frame.you.role;
  state.participants.clear();
  for (const p of frame.participants) if (p.participantId !== frame.you.participantId) state.participants.set(p.participantId, p);
  if (config.e2ee) {
    // After a reconnect: forget (and rotate away from) anyone who left meanwhile; seat keys that waited.
    for (const id of [...e2ee.peers.keys()]) if (!state.participants.has(id)) e2eeForget(id);
    for (const id of state.participants.keys()) e2eeSeated(id);
  }
  state.lobby.clear();
  for (const p of frame.lobby || []) state.lobby.set(p.participantId, p);
  onRoomUpdated(frame.room);
  if (first) enterCall();
  onRecordingState(frame.recording_state, { snapshot: true });
  setStatus("Connected", "good");
  renderAll();
  // Chat: history on the first join (the last 50), only what was missed after a reconnect.
  const head = frame.chat?.head_seq ?? 0;
  if (state.lastSeq === null) {
    state.lastSeq = Math.max(0, head - 50);
    if (head > 0) send({ type: "chat_sync", after_seq: state.lastSeq });
  }
  sendMediaState();
  if (config.e2ee) e2eeAnnounce();
  startMedia();
}

function enterCall() {
  setPhase("call");
  levelCtx?.close();
  levelCtx = null;
  $("preview").srcObject = null;
  syncControls();
  startStats();
  $("btn-mic").focus();
}

function onRoomUpdated(settings) {
  if (!settings) return;
  state.locked = !!settings.locked;
  $("locked-badge").hidden = !state.locked;
  const lock = $("lock-room");
  lock.setAttribute("aria-pressed", String(state.locked));
  lock.textContent = state.locked ? "Unlock room" : "Lock room";
}

function upsertParticipant(p) {
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

function removeParticipant(participantId) {
  if (config.e2ee) e2eeForget(participantId);
  state.pinned = state.pinned.filter((id) => id !== participantId);
  const p = state.participants.get(participantId);
  state.participants.delete(participantId);
  for (const key of [participantId, `${participantId}:screen`]) {
    state.tiles.get(key)?.remove();
    state.tiles.delete(key);
  }
  if (p && state.phase === "call") announce(`${p.display_name} left.`);
  renderAll();
}

function announce(text) {
  setStatus(text, "info");
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => { if (state.wsOpen && state.phase === "call") setStatus("Connected", "good"); }, 4000);
}

function onPublication(frame) {
  if (state.me && frame.participantId === state.me.participantId) return;
  // Nothing to do: with nothing to receive yet the server replies to `subscribe` with `sdp: null`
  // and pushes the first real `offer` itself when a track appears (docs/protocol.md §1).
}

function onPeerState(frame) {
  if (frame.state === "failed" && state.phase === "call") {
    setStatus("Media connection lost; reconnecting…", "bad");
    if (frame.pc === "subscribe") subscribe();
    else if (frame.pc === "camera") publishCamera();
    else if (frame.pc === "screen" && state.sharing) publishScreen();
  }
}

// The media node hosting the room died (docs/protocol.md §1): drop every peer connection and publish and
// subscribe again, on this page. The server has placed the room on a live node.
function onMediaReconnect() {
  if (state.phase !== "call") return;
  setStatus("Media server lost; reconnecting media…", "bad");
  for (const name of Object.keys(state.pcs)) closePc(name);
  state.trackInfo.clear();
  refreshRemoteMedia();
  startMedia();
}

function onMuteRequest(frame) {
  const by = state.participants.get(frame.by)?.display_name || "The host";
  if (frame.kind === "audio" && !state.audioMuted) {
    setAudioMuted(true);
    toast(`${by} muted you.`);
  } else if (frame.kind === "video" && !state.videoMuted) {
    setVideoMuted(true);
    toast(`${by} turned off your camera.`);
  }
}

function finish(message, reason) {
  if (state.phase === "ended") return;
  state.leaving = true;
  store(null);
  clearTimeout(state.reconnectTimer);
  stopStats();
  for (const name of Object.keys(state.pcs)) closePc(name);
  for (const track of state.local.stream?.getTracks() || []) track.stop();
  for (const track of state.local.screenStream?.getTracks() || []) track.stop();
  for (const tile of state.tiles.values()) tile.querySelector("video").srcObject = null;
  syncPooledAudio(new Map());
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    ws.close(1000);
  }
  setPhase("ended");
  $("app").dataset.reason = reason;
  $("ended-title").textContent = reason === "left" ? "You left the meeting" : reason === "removed" ? "You were removed" : "The meeting is over for you";
  $("ended-detail").textContent = message;
  $("rejoin").hidden = reason === "removed" || reason === "ended";
  $("ended-title").focus();
}

// ---------------------------------------------------------------------------
// publishing

function closePc(name) {
  const pc = state.pcs[name];
  if (!pc) return;
  delete state.pcs[name];
  pc.onconnectionstatechange = null;
  pc.ontrack = null;
  pc.close();
}

function newPc(name) {
  closePc(name);
  const pcConfig = { iceServers: state.grant?.ice_servers || [] };
  if (config.e2ee && e2ee.mode === "streams") pcConfig.encodedInsertableStreams = true;
  const pc = new RTCPeerConnection(pcConfig);
  state.pcs[name] = pc;
  pc.onconnectionstatechange = () => {
    if (state.pcs[name] !== pc) return;
    if (pc.connectionState === "failed") {
      setStatus("Media connection lost; reconnecting…", "bad");
      setTimeout(() => {
        if (state.pcs[name] !== pc || state.phase !== "call") return;
        if (name === "subscribe") subscribe();
        else if (name === "camera") publishCamera();
        else if (name === "screen") publishScreen();
      }, 500);
    } else if (pc.connectionState === "disconnected") {
      setStatus("Media interrupted…", "warn");
    } else if (pc.connectionState === "connected" && state.wsOpen) {
      setStatus("Connected", "good");
    }
  };
  return pc;
}

async function negotiatePublish(name, pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitIceGathering(pc);
  const answer = await request({ type: "offer", pc: name, sdp: pc.localDescription.sdp });
  if (state.pcs[name] !== pc) return;
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
}

// Simulcast: three VP8 encodings of the camera, lowest first (the media server relies on that order and
// forwards each subscriber the one its bandwidth and tile allow; see docs/protocol.md "Media behaviour").
const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 64_000, maxFramerate: 15 }, // its base temporal layer (~26 kbit/s) + audio fit 100 kbit/s
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

async function keepResolution(sender) {
  // Under CPU load Chromium would scale every layer down; the layers already give the
  // smaller sizes, so keep each layer's resolution and let the frame rate give instead.
  try {
    const params = sender.getParameters();
    if (!params.encodings?.length) return;
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch (err) {
    console.info("degradationPreference not applied:", err.message);
  }
}

async function publishCamera() {
  const pc = newPc("camera");
  const stream = state.local.stream || new MediaStream();
  // Always offer both m-lines, so turning the camera on later is a replaceTrack, not a renegotiation.
  const video = pc.addTransceiver(state.local.videoTrack || "video", {
    direction: "sendonly", streams: [stream], sendEncodings: CAMERA_LAYERS.map((l) => ({ ...l })),
  });
  const audio = pc.addTransceiver(state.local.audioTrack || "audio", { direction: "sendonly", streams: [stream] });
  preferVp8(video); // simulcast layers are switched by the media server for VP8 (docs/protocol.md)
  if (config.e2ee) { e2eeSender(video, "video"); e2eeSender(audio, "audio"); }
  try {
    await negotiatePublish("camera", pc);
    if (state.pcs.camera === pc) await keepResolution(video.sender);
  } catch (err) {
    if (state.pcs.camera === pc) toast(`Could not send your camera: ${err.message}`);
  }
}

async function publishScreen() {
  const track = state.local.screenStream?.getVideoTracks()[0];
  if (!track) return;
  const pc = newPc("screen");
  const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.local.screenStream] });
  if (config.e2ee) e2eeSender(transceiver, "video");
  try {
    await negotiatePublish("screen", pc);
  } catch (err) {
    if (state.pcs.screen === pc) {
      toast(`Could not share your screen: ${err.message}`);
      stopScreenShare();
    }
  }
}

function cameraSender(kind) {
  return state.pcs.camera?.getTransceivers().find((t) => t.sender && (t.sender.track?.kind === kind || t.receiver.track?.kind === kind))?.sender || null;
}

async function startMedia() {
  if (config.e2ee) await e2eeReady(); // nothing is published before there is a key to encrypt it with
  // Joined before the camera/microphone were open: publishing now would negotiate senders without tracks
  // (nothing ever sent, nothing forwarded to anyone).
  await localReady.catch(() => {});
  publishCamera();
  if (state.sharing) publishScreen();
  subscribe();
}

// ---------------------------------------------------------------------------
// subscribing (server-driven renegotiation)

function subscribe() {
  state.subscribeEmpty = false;
  state.subChain = state.subChain.then(async () => {
    if (state.phase !== "call") return;
    let offer;
    try {
      offer = await request({ type: "subscribe" });
    } catch (err) {
      toast(`Could not receive media: ${err.message}`);
      return;
    }
    newPc("subscribe").ontrack = (event) => {
      if (config.e2ee) e2eeReceiver(event.receiver);
      refreshRemoteMedia();
    };
    state.forwardedVideo = null; // a new subscribe connection: the server tells us again
    state.audioPooled = false;
    state.prefsSent = null; // ... and needs our pins and tiles again
    schedulePreferences();
    // The reply to our own `subscribe` is the new baseline (the server's revisions restart after a rejoin).
    if (typeof offer.revision === "number") state.subRevision = offer.revision - 1;
    await applySubscribeOffer(offer);
  }).catch((err) => console.error("subscribe failed", err)); // a failed step must not skip the next offers
}

function queueSubscribeOffer(frame) {
  state.subChain = state.subChain.then(() => applySubscribeOffer(frame)).catch((err) => console.error("subscribe offer failed", err));
}

async function applySubscribeOffer(frame) {
  const pc = state.pcs.subscribe;
  if (!pc) return;
  // An offer for a subscribe connection we already replaced (it crossed our `subscribe`) is stale.
  if (typeof frame.revision === "number") {
    if (frame.revision <= state.subRevision) return;
    state.subRevision = frame.revision;
  }
  if (!frame.sdp || !/^m=/m.test(frame.sdp)) {
    state.subscribeEmpty = true; // nothing to receive yet: the server offers when there is (never answer this)
    state.trackInfo.clear();
    refreshRemoteMedia();
    return;
  }
  // No silence check while an offer is being applied: trackInfo already lists its new m-lines, which
  // cannot have packets before the answer reaches the server (checkSilentTracks).
  state.subAnsweredAt = 0;
  await pc.setRemoteDescription({ type: "offer", sdp: frame.sdp });
  if (config.e2ee) for (const receiver of pc.getReceivers()) e2eeReceiver(receiver);
  state.trackInfo = new Map((frame.tracks || []).map((t) => [String(t.mid), t]));
  await pc.setLocalDescription(await pc.createAnswer());
  await waitIceGathering(pc);
  if (state.pcs.subscribe !== pc) return;
  send({ type: "answer", pc: "subscribe", sdp: pc.localDescription.sdp, revision: frame.revision });
  state.subAnsweredAt = Date.now();
  refreshRemoteMedia();
}

// Rebuild each participant's camera and screen streams from the subscribe transceivers.
function refreshRemoteMedia() {
  const pc = state.pcs.subscribe;
  const streams = new Map(); // key -> tracks
  const pooled = new Map(); // mid -> track of a pooled microphone line
  for (const transceiver of pc ? pc.getTransceivers() : []) {
    const info = state.trackInfo.get(String(transceiver.mid));
    if (!info || transceiver.currentDirection === "inactive" || transceiver.stopped) continue;
    if (state.audioPooled && info.kind === "audio" && info.source === "microphone") {
      pooled.set(String(transceiver.mid), transceiver.receiver.track);
      continue;
    }
    const key = info.source === "screen" || info.source === "screen_audio" ? `${info.participant}:screen` : info.participant;
    if (!streams.has(key)) streams.set(key, []);
    streams.get(key).push(transceiver.receiver.track);
  }
  state.remoteStreams = streams;
  syncPooledAudio(pooled);
  renderTiles();
}

// Pooled microphone lines (large rooms, docs/protocol.md forwarded_tracks): each plays from its own hidden
// <audio>, which stays put when the server re-maps the line to another talker (moving the track into that
// talker's tile would rebuild two tiles' streams mid-word). Who talks is shown from active_speaker.
function syncPooledAudio(lines) {
  for (const [mid, audio] of state.pooledAudio) {
    if (lines.get(mid) === audio.srcObject?.getAudioTracks()[0]) continue;
    audio.srcObject = null;
    audio.remove();
    state.pooledAudio.delete(mid);
  }
  for (const [mid, track] of lines) {
    if (state.pooledAudio.has(mid)) continue;
    const audio = el("audio", { class: "pooled-audio", hidden: true, autoplay: true });
    audio.dataset.mid = mid;
    audio.srcObject = new MediaStream([track]);
    $("call").append(audio);
    state.pooledAudio.set(mid, audio);
    audio.play().catch(() => offerSoundButton());
  }
}

// ---------------------------------------------------------------------------
// local controls

function sendMediaState() {
  send({ type: "media_state", audio_muted: state.audioMuted, video_muted: state.videoMuted, screen_sharing: state.sharing });
}

function setAudioMuted(muted) {
  state.audioMuted = muted;
  if (state.local.audioTrack) state.local.audioTrack.enabled = !muted;
  syncControls();
  if (state.phase === "call") { send({ type: "media_state", audio_muted: muted }); renderTiles(); }
  rememberToggles();
}

async function setVideoMuted(muted) {
  state.videoMuted = muted;
  if (muted) {
    // Stop the camera (its light goes off) and stop sending video.
    const track = state.local.videoTrack;
    state.local.videoTrack = null;
    if (track) { track.stop(); state.local.stream?.removeTrack(track); }
    await cameraSender("video")?.replaceTrack(null);
  } else {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: state.devices.camera ? { deviceId: { exact: state.devices.camera } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
      });
      const track = stream.getVideoTracks()[0];
      state.local.videoTrack = track;
      state.local.stream?.addTrack(track);
      const transceiver = state.pcs.camera?.getTransceivers().find((t) => t.receiver.track?.kind === "video");
      if (transceiver) await transceiver.sender.replaceTrack(track);
    } catch (err) {
      state.videoMuted = true;
      toast(`Camera unavailable: ${err.message}`);
    }
  }
  syncControls();
  if (state.phase === "prejoin") showPreview();
  if (state.phase === "call") { send({ type: "media_state", video_muted: state.videoMuted }); renderTiles(); }
  rememberToggles();
}

function rememberToggles() {
  const saved = stored();
  if (saved) store({ ...saved, audioMuted: state.audioMuted, videoMuted: state.videoMuted });
}

async function startScreenShare() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (err) {
    if (err.name !== "NotAllowedError") toast(`Screen sharing failed: ${err.message}`);
    return;
  }
  state.local.screenStream = stream;
  state.sharing = true;
  stream.getVideoTracks()[0].addEventListener("ended", () => stopScreenShare());
  syncControls();
  send({ type: "media_state", screen_sharing: true });
  renderTiles();
  await publishScreen();
}

function stopScreenShare() {
  if (!state.sharing) return;
  state.sharing = false;
  for (const track of state.local.screenStream?.getTracks() || []) track.stop();
  state.local.screenStream = null;
  closePc("screen");
  send({ type: "unpublish", pc: "screen" });
  send({ type: "media_state", screen_sharing: false });
  syncControls();
  renderTiles();
}

function syncControls() {
  const set = (id, pressed, label) => {
    const button = $(id);
    button.setAttribute("aria-pressed", String(pressed));
    button.querySelector(".label").textContent = label;
    button.classList.toggle("active", pressed);
  };
  set("btn-mic", state.audioMuted, state.audioMuted ? "Unmute" : "Mute");
  $("btn-mic").classList.toggle("off", state.audioMuted);
  set("btn-cam", state.videoMuted, state.videoMuted ? "Start video" : "Stop video");
  $("btn-cam").classList.toggle("off", state.videoMuted);
  set("btn-screen", state.sharing, state.sharing ? "Stop sharing" : "Share screen");
  set("btn-hand", state.handRaised, state.handRaised ? "Lower hand" : "Raise hand");
  set("btn-view", state.view === "speaker", state.view === "speaker" ? "Grid view" : "Speaker view");
  $("btn-screen").hidden = !navigator.mediaDevices?.getDisplayMedia;
  showPreview();
}

function leave() {
  finish("You can rejoin while the meeting is still going.", "left");
}

// ---------------------------------------------------------------------------
// rendering: tiles

function makeTile(key, participantId, screen) {
  const tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.participant = participantId;
  tile.dataset.key = key;
  if (screen) tile.classList.add("screen");
  const video = tile.querySelector("video");
  if (participantId === "me") { video.muted = true; tile.classList.add("me"); }
  const pin = tile.querySelector(".pin");
  if (pin && participantId !== "me" && !screen) {
    pin.hidden = false;
    pin.addEventListener("click", () => togglePin(participantId));
  }
  state.tiles.set(key, tile);
  return tile;
}

// ---------------------------------------------------------------------------
// last-N: pins, visible tiles, what the server forwards

function isForwarded(participantId, source) {
  return state.forwardedVideo === null || state.forwardedVideo.has(`${participantId}:${source}`);
}

// In large rooms the server re-maps a few video m-lines to whoever is selected: the mids listed here
// may now carry someone else. Applied after any subscribe offer queued before it (same order as sent).
function onForwardedTracks(frame) {
  state.subChain = state.subChain.then(() => {
    for (const t of [...(frame.video || []), ...(frame.audio || [])]) state.trackInfo.set(String(t.mid), t);
    state.forwardedVideo = new Set((frame.video || []).map((t) => `${t.participant}:${t.source}`));
    state.lastN = frame.last_n ?? null;
    state.audioPooled = frame.audio_pooled === true;
    refreshRemoteMedia();
  }).catch((err) => console.error("forwarded tracks failed", err));
}

function togglePin(participantId) {
  if (state.pinned.includes(participantId)) state.pinned = state.pinned.filter((id) => id !== participantId);
  else state.pinned = [participantId, ...state.pinned].slice(0, 4); // the server takes at most 4
  renderAll();
  schedulePreferences(0);
}

// Tell the server (debounced, only when something changed) whom we pinned and which remote tiles we show how large.
function schedulePreferences(delayMs = 300) {
  clearTimeout(state.prefsTimer);
  state.prefsTimer = setTimeout(sendPreferences, delayMs);
}

function sendPreferences() {
  if (state.phase !== "call" || !state.wsOpen || !state.pcs.subscribe) return;
  const pinned = state.pinned.filter((id) => state.participants.has(id));
  const tiles = [];
  for (const tile of state.tiles.values()) {
    const id = tile.dataset.participant;
    if (id === "me" || !state.participants.has(id) || !tile.isConnected) continue;
    tiles.push({
      participant: id,
      source: tile.classList.contains("screen") ? "screen" : "camera",
      // Device pixels: the server sends no simulcast layer taller than needed to fill this (docs/protocol.md).
      width: Math.min(8192, Math.round(tile.clientWidth * (window.devicePixelRatio || 1))),
      height: Math.min(8192, Math.round(tile.clientHeight * (window.devicePixelRatio || 1))),
    });
  }
  const frame = { type: "video_preferences", pinned, tiles: tiles.slice(0, 100) };
  const json = JSON.stringify(frame);
  if (json === state.prefsSent) return;
  state.prefsSent = json;
  send({ ...frame, ref: "video_preferences" });
}

function setTileStream(tile, tracks) {
  const video = tile.querySelector("video");
  const current = video.srcObject ? video.srcObject.getTracks() : [];
  const same = current.length === tracks.length && tracks.every((t) => current.includes(t));
  if (!same) {
    video.srcObject = tracks.length ? new MediaStream(tracks) : null;
    if (tracks.length) video.play().catch(() => offerSoundButton());
  }
  tile.classList.toggle("has-video", tracks.some((t) => t.kind === "video"));
}

function offerSoundButton() {
  if ($("enable-sound")) return;
  const button = el("button", { type: "button", id: "enable-sound", class: "enable-sound", text: "Click to enable sound" });
  button.addEventListener("click", () => {
    for (const tile of state.tiles.values()) tile.querySelector("video").play().catch(() => {});
    for (const audio of state.pooledAudio.values()) audio.play().catch(() => {});
    button.remove();
  });
  $("call").append(button);
}

function fillTile(tile, p, { screen = false, videoOn = true } = {}) {
  const name = screen ? `${p.display_name} (screen)` : p.display_name + (tile.dataset.participant === "me" ? " (you)" : "");
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".avatar").textContent = initials(p.display_name);
  tile.setAttribute("aria-label", name);
  tile.querySelector(".flag-hand").hidden = screen || !p.hand_raised;
  tile.querySelector(".flag-muted").hidden = screen || !p.audio_muted;
  tile.classList.toggle("video-off", !screen && !videoOn);
  tile.classList.toggle("speaking", !screen && state.activeSpeaker === (tile.dataset.participant === "me" ? state.me?.participantId : tile.dataset.participant));
}

function renderTiles() {
  if (state.phase !== "call" || !state.me) return;
  const grid = $("grid");
  const screenArea = $("screen-area");
  const wanted = new Set();
  const remote = state.remoteStreams || new Map();

  // me first
  const meKey = "me";
  wanted.add(meKey);
  const meTile = state.tiles.get(meKey) || makeTile(meKey, "me", false);
  setTileStream(meTile, state.local.videoTrack ? [state.local.videoTrack] : []);
  fillTile(meTile, { ...state.me, audio_muted: state.audioMuted, hand_raised: state.handRaised }, { videoOn: !!state.local.videoTrack });
  if (meTile.parentNode !== grid) grid.prepend(meTile);

  for (const [id, p] of state.participants) {
    wanted.add(id);
    const tile = state.tiles.get(id) || makeTile(id, id, false);
    const tracks = remote.get(id) || [];
    setTileStream(tile, tracks);
    // Not forwarded (last-N: not a recent speaker nor pinned): the avatar, as for a camera that is off.
    const forwarded = isForwarded(id, "camera");
    tile.dataset.forwarded = String(forwarded);
    tile.classList.toggle("pinned", state.pinned.includes(id));
    const pin = tile.querySelector(".pin");
    if (pin) {
      const pinnedNow = state.pinned.includes(id);
      pin.setAttribute("aria-pressed", String(pinnedNow));
      pin.textContent = pinnedNow ? "Unpin" : "Pin";
      pin.setAttribute("aria-label", `${pinnedNow ? "Unpin" : "Pin"} ${p.display_name}`);
    }
    fillTile(tile, p, { videoOn: forwarded && !p.video_muted && tracks.some((t) => t.kind === "video") });
    tile.title = forwarded ? "" : "Video paused: only the most recent speakers and pinned people are shown";
    if (tile.parentNode !== grid) grid.append(tile);
  }
  // screens: mine (local preview) and others'
  if (state.sharing && state.local.screenStream) {
    const key = "me:screen";
    wanted.add(key);
    const tile = state.tiles.get(key) || makeTile(key, "me", true);
    setTileStream(tile, state.local.screenStream.getVideoTracks());
    fillTile(tile, state.me, { screen: true });
    if (tile.parentNode !== screenArea) screenArea.append(tile);
  }
  for (const [key, tracks] of remote) {
    if (!key.endsWith(":screen")) continue;
    const id = key.slice(0, -":screen".length);
    const p = state.participants.get(id);
    if (!p) continue;
    wanted.add(key);
    const tile = state.tiles.get(key) || makeTile(key, id, true);
    setTileStream(tile, tracks);
    fillTile(tile, p, { screen: true });
    if (tile.parentNode !== screenArea) screenArea.append(tile);
  }
  for (const [key, tile] of state.tiles) {
    if (!wanted.has(key)) { tile.querySelector("video").srcObject = null; tile.remove(); state.tiles.delete(key); }
  }
  const screens = screenArea.children.length;
  screenArea.hidden = screens === 0;
  const stage = $("stage");
  stage.dataset.count = String(grid.children.length);
  stage.dataset.view = screens ? "screen" : state.view;
  for (const tile of grid.children) {
    const pid = tile.dataset.participant === "me" ? state.me.participantId : tile.dataset.participant;
    tile.classList.toggle("featured", state.view === "speaker" && !screens && pid === featuredId());
  }
  schedulePreferences(); // the layout may have changed: tile sizes for the server
}

function featuredId() {
  const pinned = state.pinned.find((id) => state.participants.has(id));
  if (pinned) return pinned;
  if (state.activeSpeaker && (state.participants.has(state.activeSpeaker) || state.activeSpeaker === state.me?.participantId)) return state.activeSpeaker;
  return state.participants.keys().next().value || state.me?.participantId;
}

function setActiveSpeaker(participantId) {
  state.activeSpeaker = participantId;
  renderTiles();
}

// ---------------------------------------------------------------------------
// rendering: people panel

function renderAll() {
  renderTiles();
  renderPeople();
  renderLobby();
}

function isModerator() {
  return state.role === "host" || state.role === "moderator";
}

function personRow(p, isMe) {
  const li = el("li", { class: "person", "data-participant": p.participantId });
  const who = el("div", { class: "who" },
    el("span", { class: "avatar small", "aria-hidden": "true", text: initials(p.display_name) }),
    el("span", { class: "person-name", text: p.display_name + (isMe ? " (you)" : "") }),
  );
  if (p.role === "host" || p.role === "moderator") who.append(el("span", { class: "role", text: p.role }));
  if (p.is_guest) who.append(el("span", { class: "role guest", text: "guest" }));
  const flags = el("span", { class: "person-flags" });
  if (p.hand_raised) flags.append(el("span", { class: "hand", title: "Hand raised", text: "✋" }), el("span", { class: "sr-only", text: "hand raised" }));
  if (p.audio_muted) flags.append(el("span", { class: "muted-flag", text: "muted" }));
  if (p.video_muted) flags.append(el("span", { class: "muted-flag", text: "camera off" }));
  if (p.screen_sharing) flags.append(el("span", { class: "muted-flag", text: "sharing" }));
  li.append(who, flags);
  if (!isMe) {
    const pinnedNow = state.pinned.includes(p.participantId);
    const pin = el("button", {
      type: "button", class: "secondary small pin-person", text: pinnedNow ? "Unpin" : "Pin",
      "aria-pressed": String(pinnedNow), "aria-label": `${pinnedNow ? "Unpin" : "Pin"} ${p.display_name}`,
    });
    pin.addEventListener("click", () => togglePin(p.participantId));
    li.append(pin);
  }
  if (!isMe && isModerator() && p.role !== "host") {
    const tools = el("div", { class: "person-tools" });
    const button = (label, action, cls = "secondary") => {
      const b = el("button", { type: "button", class: `${cls} small`, text: label, "aria-label": `${label} ${p.display_name}` });
      b.addEventListener("click", action);
      tools.append(b);
    };
    if (!p.audio_muted) button("Mute", () => send({ type: "mute_participant", participantId: p.participantId, kind: "audio" }));
    if (!p.is_guest) {
      if (p.role === "moderator") button("Demote", () => send({ type: "promote", participantId: p.participantId, role: "participant" }));
      else button("Make moderator", () => send({ type: "promote", participantId: p.participantId, role: "moderator" }));
    }
    button("Remove", () => {
      if (confirm(`Remove ${p.display_name} from the meeting?`)) send({ type: "remove_participant", participantId: p.participantId });
    }, "danger");
    li.append(tools);
  }
  return li;
}

function renderPeople() {
  if (!state.me) return;
  const list = $("people-list");
  const everyone = [{ ...state.me, audio_muted: state.audioMuted, hand_raised: state.handRaised }, ...state.participants.values()];
  // raised hands first, in the order they were raised
  everyone.sort((a, b) => (a.hand_raised === b.hand_raised ? 0 : a.hand_raised ? -1 : 1) || String(a.hand_raised_at || "").localeCompare(String(b.hand_raised_at || "")));
  list.replaceChildren(...everyone.map((p) => personRow(p, p.participantId === state.me.participantId)));
  $("people-count").textContent = `(${everyone.length})`;
  const hands = everyone.filter((p) => p.hand_raised).length;
  $("hands-badge").hidden = hands === 0;
  $("hands-badge").textContent = String(hands);
  $("host-tools").hidden = !isModerator();
  $("end-room").hidden = !isModerator();
  syncRecording(); // the Record button follows the role (promote/demote)
}

function renderLobby() {
  const section = $("lobby");
  section.hidden = !isModerator() || state.lobby.size === 0;
  const list = $("lobby-list");
  list.replaceChildren(...[...state.lobby.values()].map((p) => {
    const li = el("li", { class: "person", "data-participant": p.participantId },
      el("div", { class: "who" }, el("span", { class: "person-name", text: p.display_name })));
    const tools = el("div", { class: "person-tools" });
    const admit = el("button", { type: "button", class: "small", text: "Admit", "aria-label": `Admit ${p.display_name}` });
    admit.addEventListener("click", () => send({ type: "lobby_admit", participantId: p.participantId }));
    const deny = el("button", { type: "button", class: "danger small", text: "Deny", "aria-label": `Deny ${p.display_name}` });
    deny.addEventListener("click", () => send({ type: "lobby_deny", participantId: p.participantId }));
    tools.append(admit, deny);
    li.append(tools);
    return li;
  }));
  if (isModerator() && state.lobby.size) {
    $("hands-badge").hidden = false;
    $("hands-badge").textContent = String(state.lobby.size);
  }
}

// ---------------------------------------------------------------------------
// chat

function addChat(message, pending = false) {
  if (!message) return;
  if (message.id && state.chatSeen.has(message.id)) return;
  if (message.id) state.chatSeen.add(message.id);
  if (typeof message.seq === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, message.seq);
  const mine = state.me && message.sender === state.me.participantId;
  const time = message.created_at ? new Date(message.created_at) : new Date();
  const li = el("li", { class: `chat-msg${mine ? " mine" : ""}${pending ? " pending" : ""}` },
    el("div", { class: "chat-meta" },
      el("span", { class: "chat-sender", text: mine ? "You" : message.sender_name || "Someone" }),
      message.to ? el("span", { class: "chat-private", text: "(private)" }) : null,
      el("time", { dateTime: time.toISOString(), text: time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }),
    ),
    el("p", { class: "chat-text", text: message.text }),
  );
  if (typeof message.seq === "number") li.dataset.seq = String(message.seq);
  if (message.client_id) li.dataset.clientId = message.client_id;
  // keep the log ordered by seq (history can arrive after live messages)
  const log = $("chat-log");
  const before = typeof message.seq === "number"
    ? [...log.children].find((c) => c.dataset.seq && Number(c.dataset.seq) > message.seq)
    : null;
  log.insertBefore(li, before || null);
  log.scrollTop = log.scrollHeight;
  if (!mine && $("chat-panel").hidden && !pending) {
    state.unread += 1;
    $("unread").hidden = false;
    $("unread").textContent = String(state.unread);
    $("btn-chat").setAttribute("aria-label", `Chat, ${state.unread} unread`);
  }
}

function onChatAck(frame) {
  const li = [...$("chat-log").children].find((c) => c.dataset.clientId === frame.client_id);
  if (frame.id) state.chatSeen.add(frame.id);
  if (typeof frame.seq === "number") state.lastSeq = Math.max(state.lastSeq ?? 0, frame.seq);
  if (li) { li.classList.remove("pending"); li.dataset.seq = String(frame.seq); }
}

function sendChat(text) {
  const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random())).slice(0, 36);
  addChat({ sender: state.me.participantId, sender_name: state.me.display_name, text, client_id: clientId }, true);
  send({ type: "chat_send", text, client_id: clientId });
}

// ---------------------------------------------------------------------------
// panels, reactions

function togglePanel(which) {
  const panel = $(`${which}-panel`);
  const opening = panel.hidden;
  for (const name of ["chat", "people"]) {
    $(`${name}-panel`).hidden = !(opening && name === which);
    $(`btn-${name}`).setAttribute("aria-expanded", String(opening && name === which));
    $(`btn-${name}`).classList.toggle("active", opening && name === which);
  }
  $("side").hidden = !opening;
  $("call").classList.toggle("side-open", opening);
  if (opening && which === "chat") {
    state.unread = 0;
    $("unread").hidden = true;
    $("btn-chat").removeAttribute("aria-label");
    $("chat-input").focus();
  }
}

function showReaction(frame) {
  const p = frame.participantId === state.me?.participantId ? state.me : state.participants.get(frame.participantId);
  const bubble = el("div", { class: "reaction" }, el("span", { text: frame.emoji }), el("small", { text: p?.display_name || "" }));
  $("reactions").append(bubble);
  setTimeout(() => bubble.remove(), 4000);
}

// ---------------------------------------------------------------------------
// connection quality (getStats)

function startStats() {
  stopStats();
  state.statsTimer = setInterval(sampleStats, 2000);
}

function stopStats() {
  clearInterval(state.statsTimer);
  state.statsTimer = null;
}

async function sampleStats() {
  let rtt = null;
  let lost = 0;
  let received = 0;
  let fps = null;
  const packetsByMid = new Map();
  for (const [name, pc] of Object.entries(state.pcs)) {
    let report;
    try { report = await pc.getStats(); } catch { continue; }
    for (const s of report.values()) {
      if (name === "subscribe" && s.type === "inbound-rtp") packetsByMid.set(String(s.mid), s.packetsReceived || 0);
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated && typeof s.currentRoundTripTime === "number") {
        rtt = Math.max(rtt ?? 0, s.currentRoundTripTime);
      } else if (s.type === "inbound-rtp") {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (s.kind === "video" && typeof s.framesPerSecond === "number") fps = Math.max(fps ?? 0, s.framesPerSecond);
      }
    }
  }
  const prev = state.prevStats || { lost: 0, received: 0 };
  const dLost = Math.max(0, lost - prev.lost);
  const dRecv = Math.max(0, received - prev.received);
  state.prevStats = { lost, received };
  const lossPct = dLost + dRecv ? (100 * dLost) / (dLost + dRecv) : 0;
  let level = "good";
  if (!state.wsOpen) level = "poor";
  else if ((rtt ?? 0) > 0.4 || lossPct > 8) level = "poor";
  else if ((rtt ?? 0) > 0.15 || lossPct > 2 || (fps !== null && fps < 10)) level = "fair";
  const text = `Connection ${level}: ${rtt === null ? "RTT unknown" : `RTT ${Math.round(rtt * 1000)} ms`}, loss ${lossPct.toFixed(1)}%${fps === null ? "" : `, ${Math.round(fps)} fps`}`;
  checkSilentTracks(packetsByMid);
  const node = $("quality");
  node.dataset.level = level;
  node.title = text;
  $("quality-text").textContent = text;
}

// A negotiated track that never delivers a packet (while its sender should be sending) means the
// subscribe connection is stuck: ask for a fresh one, at most every 20 s.
function checkSilentTracks(packetsByMid) {
  const pc = state.pcs.subscribe;
  if (!pc || pc.connectionState !== "connected" || !state.subAnsweredAt || Date.now() - state.subAnsweredAt < 8000) return;
  if (Date.now() - (state.lastResubscribe || 0) < 20000) return;
  for (const [mid, info] of state.trackInfo) {
    const p = state.participants.get(info.participant);
    if (!p || (info.kind === "video" && info.source === "camera" && p.video_muted)) continue;
    // Silence the server chose: a muted microphone (its silence is not forwarded), pooled microphone lines
    // (they follow whoever talks), and videos last-N does not forward to us.
    if (info.kind === "audio" && (p.audio_muted || state.audioPooled)) continue;
    if (info.kind === "video" && !isForwarded(info.participant, info.source)) continue;
    if (!packetsByMid.get(mid)) {
      console.warn("no packets on subscribe mid", mid, "from", info.participant, info.source, "- resubscribing");
      state.lastResubscribe = Date.now();
      subscribe();
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// recording (issue 6): the indicator everyone sees, the Record button of hosts and moderators
//
// The "● REC" badge follows the snapshot's `recording_state` (late joiners see it) and the
// `recording_state` frames; Record / Stop call the REST API with the session cookie + CSRF
// token, like the join does. E2EE rooms have no button (the server refuses: recording_e2ee).

const RECORDING_MINUTES = 240; // the server stops a recording at this limit
const RECORDING_ACTIVE = new Set(["pending", "recording"]);

async function apiPost(path, body = null) {
  const headers = { Accept: "application/json" };
  if (body !== null) headers["Content-Type"] = "application/json";
  const csrf = cookie("csrftoken");
  if (csrf) headers["X-CSRFToken"] = csrf;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: body === null ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    const error = new Error("The server cannot be reached.");
    error.code = "network_error";
    throw error;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data?.error?.message || `The server answered ${response.status}.`);
    error.code = data?.error?.code || "http_error";
    error.status = response.status;
    throw error;
  }
  return data;
}

function recordingAnnounce(text) {
  const live = $("rec-live");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50); // a fresh node text is announced again
}

// `rs` is a recording_state frame or the snapshot's {recordingId, status}.
function onRecordingState(rs, { snapshot = false } = {}) {
  if (!rs || typeof rs.status !== "string") return;
  const current = state.recording;
  const wasActive = RECORDING_ACTIVE.has(current.status);
  // A late frame about an older recording (e.g. its processing finished) must not hide the running one.
  if (!snapshot && wasActive && rs.recordingId !== current.recordingId && !RECORDING_ACTIVE.has(rs.status)) return;
  state.recording = { recordingId: rs.recordingId || null, status: rs.status, reason: rs.reason || null };
  const active = rs.status === "recording";
  if (active && (snapshot || current.status !== "recording")) recordingAnnounce("This meeting is being recorded");
  else if (!active && current.status === "recording" && !snapshot) {
    if (rs.status === "failed") {
      recordingAnnounce("Recording stopped: it failed");
      if (isModerator()) toast(`The recording failed${rs.reason ? ` (${rs.reason})` : ""}.`);
    } else {
      recordingAnnounce("Recording stopped");
    }
  }
  syncRecording();
}

function syncRecording() {
  const status = state.recording.status;
  $("rec-badge").hidden = status !== "recording";
  $("app").dataset.recording = status;
  const button = $("btn-record");
  if (!button) return;
  button.hidden = !isModerator() || !!config.e2ee;
  const on = RECORDING_ACTIVE.has(status);
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("active", on);
  button.querySelector(".label").textContent = on ? "Stop recording" : "Record";
  button.title = on ? "Stop recording this meeting" : "Record this meeting (everyone in it is told)";
}

async function toggleRecording() {
  const button = $("btn-record");
  if (!button || button.disabled) return;
  const stopping = RECORDING_ACTIVE.has(state.recording.status) && state.recording.recordingId;
  button.disabled = true;
  try {
    if (stopping) {
      const data = await apiPost(`/api/v1/recordings/${encodeURIComponent(state.recording.recordingId)}/stop`);
      onRecordingState({ recordingId: data.recordingId, status: data.status, reason: data.failure_reason });
      toast("Recording stopped. It will be on the Recordings page when it is processed.");
    } else {
      const data = await apiPost(`/api/v1/rooms/${config.roomId}/record`, { duration_minutes: RECORDING_MINUTES });
      onRecordingState({ recordingId: data.recordingId, status: "recording" });
    }
  } catch (err) {
    console.warn("recording", stopping ? "stop" : "start", "failed:", err.code, err.message);
    toast(`${stopping ? "Could not stop the recording" : "Could not start recording"}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// end-to-end encryption (rooms created with e2ee; docs/security.md)
//
// Every encoded frame is encrypted in a worker (e2ee-worker.js) with this page's
// media key before it is packetized, and decrypted with the sender's key after
// it is received; the media server forwards ciphertext. Keys: each page has an
// ECDH P-256 identity; it broadcasts the public half (`e2ee_public_key`), and
// sends its media key to each peer wrapped with the ECDH-derived key it shares
// with that peer (`e2ee_key`, relayed by the server to that peer only). When
// someone leaves, every remaining sender makes a new media key, sends it to
// the others, and switches to it: the leaver cannot decrypt what follows.

const E2EE_SWITCH_DELAY_MS = 1000; // let peers unwrap a new key before frames use it

function e2eeSupport() {
  if (!window.crypto?.subtle || !window.Worker) return null;
  if (window.RTCRtpScriptTransform) return "script";
  if (window.RTCRtpSender?.prototype?.createEncodedStreams) return "streams";
  return null;
}

const e2ee = {
  mode: config.e2ee ? e2eeSupport() : null, // script | streams | null
  worker: null,
  identity: null, // {keyPair, publicRaw}
  sendKey: null, // {id, raw}: the key peers are given
  activeKeyId: null, // the key id the worker encrypts with
  rotations: 0,
  peers: new Map(), // participantId -> {publicKey (base64), wrapKey}
  pending: new Map(), // participantId -> e2ee_key frames that arrived before its public key
  unseated: new Map(), // participantId -> e2ee_public_key that arrived before the participant did
  received: new Map(), // key id -> {participant, raw}: keys peers gave us
  stats: {},
  ready: null,
};
state.e2ee = e2ee;

function e2eeReady() {
  if (!e2ee.ready) {
    e2ee.ready = (async () => {
      e2ee.worker = new Worker(new URL("./e2ee-worker.js", import.meta.url), { type: "module", name: "e2ee" });
      e2ee.worker.onmessage = ({ data }) => {
        if (data.type === "sendKeyActive") e2ee.activeKeyId = data.id;
        else if (data.type === "stats") e2ee.stats = data.stats;
      };
      e2ee.identity = await e2eeCrypto.newIdentity();
      e2ee.sendKey = e2eeCrypto.newMediaKey();
      e2ee.worker.postMessage({ type: "setSendKey", id: e2ee.sendKey.id, raw: e2ee.sendKey.raw });
    })();
  }
  return e2ee.ready;
}

async function e2eeAnnounce() {
  await e2eeReady();
  send({ type: "e2ee_public_key", public_key: e2eeCrypto.toBase64(e2ee.identity.publicRaw) });
}

async function e2eeOnPublicKey(frame) {
  if (!config.e2ee) return;
  await e2eeReady();
  const from = frame.from;
  if (!state.participants.has(from)) {
    // Keys go only to people shown in the call: hold it until their participant_joined arrives.
    e2ee.unseated.set(from, frame);
    return;
  }
  const known = e2ee.peers.get(from);
  if (!known || known.publicKey !== frame.public_key) {
    const wrapKey = await e2eeCrypto.sharedWrapKey(e2ee.identity.keyPair.privateKey, e2eeCrypto.fromBase64(frame.public_key), config.roomId);
    e2ee.peers.set(from, { publicKey: frame.public_key, wrapKey });
  }
  // A broadcast comes from someone (re)joining: tell them who I am. A directed one is such a reply: no echo.
  if (!frame.to) send({ type: "e2ee_public_key", public_key: e2eeCrypto.toBase64(e2ee.identity.publicRaw), to: from });
  await e2eeGiveKey(from, e2ee.sendKey);
  for (const waiting of e2ee.pending.get(from) || []) await e2eeOnKey(waiting);
  e2ee.pending.delete(from);
}

async function e2eeGiveKey(participantId, key) {
  const peer = e2ee.peers.get(participantId);
  if (!peer || !state.me) return;
  const { wrapped, iv } = await e2eeCrypto.wrapMediaKey(peer.wrapKey, key.raw, { from: state.me.participantId, to: participantId, keyId: key.id });
  send({ type: "e2ee_key", to: participantId, key_id: key.id, wrapped_key: e2eeCrypto.toBase64(wrapped), iv: e2eeCrypto.toBase64(iv) });
}

async function e2eeOnKey(frame) {
  if (!config.e2ee) return;
  await e2eeReady();
  const peer = e2ee.peers.get(frame.from);
  if (!peer) {
    if (!e2ee.pending.has(frame.from)) e2ee.pending.set(frame.from, []);
    e2ee.pending.get(frame.from).push(frame);
    return;
  }
  let raw;
  try {
    raw = await e2eeCrypto.unwrapMediaKey(peer.wrapKey, e2eeCrypto.fromBase64(frame.wrapped_key), e2eeCrypto.fromBase64(frame.iv),
      { from: frame.from, to: state.me.participantId, keyId: frame.key_id });
  } catch {
    console.warn("e2ee: a key from", frame.from, "does not unwrap; ignored");
    return;
  }
  e2ee.received.set(frame.key_id, { participant: frame.from, raw });
  e2ee.worker.postMessage({ type: "addKey", id: frame.key_id, raw, participant: frame.from });
}

function e2eeSeated(participantId) {
  const frame = e2ee.unseated.get(participantId);
  if (!frame) return;
  e2ee.unseated.delete(participantId);
  e2eeOnPublicKey(frame).catch((err) => console.error("e2ee public key", err));
}

function e2eeForget(participantId) {
  e2ee.unseated.delete(participantId);
  e2ee.peers.delete(participantId);
  e2ee.pending.delete(participantId);
  for (const [id, entry] of e2ee.received) if (entry.participant === participantId) e2ee.received.delete(id);
  e2ee.worker?.postMessage({ type: "forgetParticipant", participant: participantId });
  clearTimeout(e2eeForget.timer);
  e2eeForget.timer = setTimeout(() => e2eeRotate().catch((err) => console.error("e2ee rotation", err)), 100);
}

// A new media key: given to everyone still here first, used for frames a moment later.
async function e2eeRotate() {
  await e2eeReady();
  const key = e2eeCrypto.newMediaKey(e2ee.sendKey.id);
  e2ee.sendKey = key; // peers who introduce themselves from now on get this one
  e2ee.rotations += 1;
  await Promise.all([...e2ee.peers.keys()].map((id) => e2eeGiveKey(id, key)));
  setTimeout(() => {
    if (e2ee.sendKey === key) e2ee.worker.postMessage({ type: "setSendKey", id: key.id, raw: key.raw });
  }, E2EE_SWITCH_DELAY_MS);
}

function preferVp8(transceiver) {
  // The clear header sizes are VP8's: keep H.264 (and others) out of encrypted rooms.
  const caps = window.RTCRtpReceiver?.getCapabilities?.("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const codecs = caps.codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
  if (codecs.some((c) => /vp8/i.test(c.mimeType))) transceiver.setCodecPreferences(codecs);
}

function e2eeAttach(endpoint, options) {
  if (endpoint.e2eeAttached) return;
  endpoint.e2eeAttached = true;
  if (e2ee.mode === "script") {
    endpoint.transform = new RTCRtpScriptTransform(e2ee.worker, options);
  } else {
    const { readable, writable } = endpoint.createEncodedStreams();
    e2ee.worker.postMessage({ type: "streams", readable, writable, options }, [readable, writable]);
  }
}

function e2eeSender(transceiver, kind) {
  if (kind === "video") preferVp8(transceiver);
  e2eeAttach(transceiver.sender, { operation: "encrypt", kind });
}

function e2eeReceiver(receiver) {
  if (!receiver.track) return;
  e2eeAttach(receiver, { operation: "decrypt", kind: receiver.track.kind });
}

// ---------------------------------------------------------------------------
// wiring

function wire() {
  $("pre-mic")?.addEventListener("click", () => setAudioMuted(!state.audioMuted));
  $("pre-cam")?.addEventListener("click", () => setVideoMuted(!state.videoMuted));
  $("camera-select")?.addEventListener("change", async (e) => { state.devices.camera = e.target.value; if (!state.videoMuted) await acquireLocal(); });
  $("mic-select")?.addEventListener("change", async (e) => { state.devices.microphone = e.target.value; await acquireLocal(); });
  $("join-form")?.addEventListener("submit", (e) => {
    e.preventDefault();
    const displayName = $("display-name").value.trim();
    if (!config.signedIn && !displayName) {
      $("join-error").textContent = "Please enter your name.";
      $("display-name").focus();
      return;
    }
    join({ displayName, password: $("room-password")?.value || "" });
  });
  for (const button of document.querySelectorAll("[data-action=leave]")) button.addEventListener("click", leave);
  $("btn-mic").addEventListener("click", () => setAudioMuted(!state.audioMuted));
  $("btn-cam").addEventListener("click", () => setVideoMuted(!state.videoMuted));
  $("btn-screen").addEventListener("click", () => (state.sharing ? stopScreenShare() : startScreenShare()));
  $("btn-hand").addEventListener("click", () => {
    state.handRaised = !state.handRaised;
    send({ type: state.handRaised ? "raise_hand" : "lower_hand" });
    syncControls();
    renderAll();
  });
  $("btn-view").addEventListener("click", () => {
    state.view = state.view === "speaker" ? "grid" : "speaker";
    syncControls();
    renderTiles();
  });
  $("btn-chat").addEventListener("click", () => togglePanel("chat"));
  $("btn-people").addEventListener("click", () => togglePanel("people"));
  for (const button of document.querySelectorAll("[data-close-panel]")) {
    button.addEventListener("click", () => {
      const which = button.closest(".panel").id.replace("-panel", "");
      togglePanel(which);
      $(`btn-${which}`).focus();
    });
  }
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    sendChat(text);
    input.value = "";
  });
  $("lock-room").addEventListener("click", () => send({ type: state.locked ? "unlock_room" : "lock_room" }));
  $("lower-hands").addEventListener("click", () => send({ type: "lower_all_hands" }));
  $("end-room").addEventListener("click", () => {
    if (confirm("End the meeting for everyone?")) send({ type: "end_room" });
  });
  $("btn-record")?.addEventListener("click", toggleRecording);
  $("copy-link").addEventListener("click", async () => {
    const url = `${location.origin}/join/${config.roomId}`;
    try { await navigator.clipboard.writeText(url); toast("Link copied."); } catch { toast(url); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("side").hidden) {
      const which = !$("chat-panel").hidden ? "chat" : "people";
      togglePanel(which);
      $(`btn-${which}`).focus();
    }
  });
  window.addEventListener("resize", () => schedulePreferences(500));
  window.addEventListener("pagehide", () => { state.leaving = true; state.ws?.close(1000); });
  navigator.mediaDevices?.addEventListener?.("devicechange", fillDevices);
}

async function main() {
  wire();
  if (!$("join-form")) { setPhase("prejoin"); return; } // the room has ended
  if (config.e2ee && !e2ee.mode) {
    // Without Encoded Transform this browser would send media the server can read: it may not join.
    $("app").dataset.e2ee = "unsupported";
    $("join-button").disabled = true;
    $("join-error").textContent = "This meeting is end-to-end encrypted, and this browser cannot encrypt calls "
      + "(it lacks WebRTC Encoded Transform). You cannot join it from this browser; use a current Chrome, Edge, Safari or Firefox.";
    return;
  }
  const saved = stored();
  if (saved) {
    state.audioMuted = !!saved.audioMuted;
    state.videoMuted = !!saved.videoMuted;
    state.devices = { ...state.devices, ...(saved.devices || {}) };
    if (saved.displayName) $("display-name").value = saved.displayName;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    $("join-error").textContent = "This browser cannot use cameras here (the page needs HTTPS).";
    state.local.stream = new MediaStream();
  } else {
    localReady = acquireLocal();
    await localReady;
    await fillDevices();
  }
  // A reload during a call rejoins straight away.
  if (saved && (saved.displayName || config.signedIn)) join({ displayName: saved.displayName || "", password: "" });
  else $("display-name").focus();
}

// A small handle for diagnostics (and the end-to-end tests): read-only use, please.
window.conferenceCall = state;
main();
