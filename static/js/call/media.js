// Media connections: one publish RTCPeerConnection per source ("camera" = camera + mic, "screen"),
// one subscribe connection whose offers come from the server (revisioned renegotiation); incoming
// tracks are mapped to participants by transceiver mid using the `tracks` list of each offer
// (docs/protocol.md §1).

import { parseBandwidth } from "./bandwidth.js";
import { config, refreshConnected, setConnected, setStatus } from "./dom.js";
import { e2ee, e2eeReady, e2eeReceiver, e2eeSender, preferVp8 } from "./e2ee.js";
import { applyForwardedTracks, forgetParticipantTracks, groupRemoteTracks, isStaleForwarded, tileKey } from "./layout.js";
import { pathAlive, probeSocket, request, send } from "./socket.js";
import { Recovery, recoveryMessage } from "./recovery.js";
import { settledWithin } from "./join_order.js";
import {
  findStalledTrack, inboundByMid, mapsNewVideo, mediaExpected, PATH_SAMPLE_MS, PATH_SILENT_MS, PathWatch, RemapWatch,
  SETTLE_MS,
} from "./stall.js";
import { state } from "./state.js";
import { localReady } from "./controls.js";
import { outgoingTrack } from "./effects/index.js";
import { renderTiles, schedulePreferences, syncPooledAudio } from "./tiles.js";

function waitIceGathering(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

/** Forget connection `name` (its teardown is not reported) and return it, open, or null. */
export function detachPc(name) {
  const pc = state.pcs[name];
  if (!pc) return null;
  delete state.pcs[name];
  pc.onconnectionstatechange = null;
  pc.ontrack = null;
  clearTimeout(pc.connectTimer);
  clearTimeout(pc.disconnectTimer);
  return pc;
}

export function closePc(name) {
  detachPc(name)?.close();
}

export function closeAllPcs() {
  for (const name of Object.keys(state.pcs)) closePc(name);
}

// A connection that stays `disconnected` this long is rebuilt (a network change: aiortc has no ICE restart).
export const DISCONNECTED_GRACE_MS = 2000;
// A negotiated connection that is not `connected` after this long is rebuilt.
export const CONNECT_TIMEOUT_MS = 10000;

// One retry loop per connection (recovery.js): camera, screen, subscribe.
const recoveries = {};
const RUNS = { camera: (attempt) => publishCameraOnce(attempt), screen: (attempt) => publishScreenOnce(attempt), subscribe: (attempt) => subscribeOnce(attempt) };
let mediaTrouble = false; // the status pill shows a media problem (cleared when every connection is back)

export function recovery(name) {
  if (!recoveries[name]) recoveries[name] = new Recovery({ name, run: RUNS[name], onState: syncMediaStatus });
  return recoveries[name];
}

/** (Re)build connection `name` now; `reset`: a new outage, or a live media node (media_reconnect). */
export function restartMedia(name, { reset = false } = {}) {
  if (state.phase !== "call") return;
  recovery(name).start({ reset });
}

/** Stop retrying every connection (leaving). */
export function stopRecoveries() {
  for (const r of Object.values(recoveries)) r.stop();
  clearInterval(pathTimer);
  pathTimer = null;
}

// The path watch (stall.js): all connections silent asks whether the socket is still there, long before
// ICE says `disconnected` (a network change kills both; a dead socket is rejoined, and its room_snapshot
// rebuilds every connection).
const pathWatch = new PathWatch();
let pathTimer = null;

async function samplePath() {
  // The subscribe connection carries what the server forwards; nothing to judge while it should be quiet.
  const pc = state.pcs.subscribe;
  let bytes = null;
  if (pc?.connectionState === "connected" && mediaExpected(state)) {
    try {
      for (const s of (await pc.getStats()).values()) if (s.type === "transport") bytes = (bytes ?? 0) + (s.bytesReceived || 0);
    } catch { bytes = null; }
  }
  if (pathWatch.sample(Date.now(), bytes)) {
    console.info("media: nothing received for", PATH_SILENT_MS, "ms - checking the socket");
    probeSocket();
  } else if (pathWatch.arriving) {
    pathAlive(); // media arrives: whatever the socket's probe says, the path is there
  }
}

function syncMediaStatus() {
  if (!state.wsOpen || state.phase !== "call") return; // the socket's own status comes first
  const troubled = Object.values(recoveries).find((r) => r.active && r.failures > 0);
  if (troubled) {
    mediaTrouble = true;
    setStatus(recoveryMessage(troubled.lastError), "bad");
  } else if (mediaTrouble && !Object.values(recoveries).some((r) => r.active)) {
    mediaTrouble = false;
    setConnected();
  }
}

function connectionError(name, what) {
  const error = new Error(`${name} connection ${what}`);
  error.code = `connection_${what}`;
  return error;
}

// The connection failed, or never connected, or stayed disconnected: a new one (same socket, no leave/join).
function connectionLost(name, pc, what) {
  if (state.pcs[name] !== pc || state.phase !== "call") return;
  console.warn("media:", name, "connection", what, "- rebuilding");
  recovery(name).fail(connectionError(name, what), pc.recoveryAttempt);
}

/** Rebuild `pc` unless it is connected within CONNECT_TIMEOUT_MS (after its offer/answer). */
function watchConnect(name, pc) {
  clearTimeout(pc.connectTimer);
  if (pc.connectionState === "connected") return;
  pc.connectTimer = setTimeout(() => {
    if (pc.connectionState !== "connected") connectionLost(name, pc, "timeout");
  }, CONNECT_TIMEOUT_MS);
}

function newPc(name, attempt) {
  closePc(name);
  const pcConfig = { iceServers: state.grant?.ice_servers || [] };
  if (config.e2ee && e2ee.mode === "streams") pcConfig.encodedInsertableStreams = true;
  const pc = new RTCPeerConnection(pcConfig);
  pc.recoveryAttempt = attempt;
  state.pcs[name] = pc;
  pc.onconnectionstatechange = () => {
    if (state.pcs[name] !== pc) return;
    const now = pc.connectionState;
    console.info("media:", name, "connection", now);
    if (now !== "disconnected") clearTimeout(pc.disconnectTimer);
    // A network change kills the socket's TCP connection too, silently: check it (socket.js).
    if (now === "failed" || now === "disconnected") probeSocket();
    if (now === "failed") {
      connectionLost(name, pc, "failed");
    } else if (now === "disconnected") {
      if (!mediaTrouble) setStatus("Media interrupted…", "warn");
      clearTimeout(pc.disconnectTimer);
      pc.disconnectTimer = setTimeout(() => {
        if (pc.connectionState === "disconnected") connectionLost(name, pc, "disconnected");
      }, DISCONNECTED_GRACE_MS);
    } else if (now === "connected") {
      clearTimeout(pc.connectTimer);
      recovery(name).ok(pc.recoveryAttempt);
      // Proof that the path works again (UDP back after an outage): a connection lost to it stops waiting out
      // its backoff (up to 5 s) and is rebuilt now.
      for (const other of Object.values(recoveries)) if (other.hurry()) console.info("media:", other.name, "retried at once: the path works again");
      if (state.wsOpen && !mediaTrouble) setConnected();
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
// Every layer names its frame rate: Chromium adapts the capture to the highest `maxFramerate` given, so the
// thin layer's 15 alone held all three at 15 fps (a 30 fps camera was sent at 15 everywhere).
const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 64_000, maxFramerate: 15 }, // its base temporal layer (~26 kbit/s) + audio fit 100 kbit/s
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000, maxFramerate: 30 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, maxFramerate: 30 },
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

// One attempt at the camera connection: negotiation errors (media_unavailable, timeouts) reject.
async function publishCameraOnce(attempt) {
  const pc = newPc("camera", attempt);
  const stream = state.local.stream || new MediaStream();
  // Always offer both m-lines, so turning the camera on later is a replaceTrack, not a renegotiation.
  const video = pc.addTransceiver(outgoingTrack("video") || "video", { // with its background effect (effects/)
    direction: "sendonly", streams: [stream], sendEncodings: CAMERA_LAYERS.map((l) => ({ ...l })),
  });
  const audio = pc.addTransceiver(outgoingTrack("audio") || "audio", { direction: "sendonly", streams: [stream] });
  preferVp8(video); // simulcast layers are switched by the media server for VP8 (docs/protocol.md)
  if (config.e2ee) { e2eeSender(video, "video"); e2eeSender(audio, "audio"); }
  await negotiatePublish("camera", pc);
  if (state.pcs.camera !== pc) return;
  watchConnect("camera", pc);
  await keepResolution(video.sender);
}

async function publishScreenOnce(attempt) {
  const track = state.local.screenStream?.getVideoTracks()[0];
  if (!track || !state.sharing) return;
  const pc = newPc("screen", attempt);
  const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.local.screenStream] });
  if (config.e2ee) e2eeSender(transceiver, "video");
  await negotiatePublish("screen", pc);
  if (state.pcs.screen === pc) watchConnect("screen", pc);
}

export function publishScreen() {
  restartMedia("screen", { reset: true });
}

/** Stop publishing the screen: the server is told first, so the connection's teardown is no failure to anyone. */
export function unpublishScreen() {
  recovery("screen").stop();
  const pc = detachPc("screen");
  // No reply on success; an error (e.g. the share never reached the server) is expected and ignored.
  send({ type: "unpublish", pc: "screen", ref: "unpublish" });
  if (pc) setTimeout(() => pc.close(), 1000); // after the server dropped it: no `failed` to report
}

/** The camera connection's sender of `kind` ("audio" | "video"), or null. */
export function cameraSender(kind) {
  return state.pcs.camera?.getTransceivers().find((t) => t.sender && (t.sender.track?.kind === kind || t.receiver.track?.kind === kind))?.sender || null;
}

/**
 * Every connection, from scratch (a room snapshot, a media_reconnect): the subscribe one first (subscribeOnce).
 * `holdMs` (a join: session.js onSnapshot): the camera connection is set up only once the subscribe offer is
 * answered (or that attempt failed), at most `holdMs` later (join_order.js). Returns a promise of that moment
 * (at once without `holdMs`, and in E2EE rooms, whose subscribe connection comes after the key).
 */
export function startMedia({ holdMs = 0 } = {}) {
  subscribing = null;
  if (!config.e2ee) restartMedia("subscribe", { reset: true });
  const answered = holdMs && !config.e2ee && subscribing ? settledWithin(subscribing, holdMs) : Promise.resolve();
  startPublishing(answered);
  return answered;
}

async function startPublishing(answered) {
  if (config.e2ee) await e2eeReady(); // nothing is published before there is a key to encrypt it with
  // Joined before the camera/microphone were open: publishing now would negotiate senders without tracks
  // (nothing ever sent, nothing forwarded to anyone).
  await localReady().catch(() => {});
  await answered;
  if (!pathTimer) pathTimer = setInterval(samplePath, PATH_SAMPLE_MS);
  restartMedia("camera", { reset: true });
  if (state.sharing) restartMedia("screen", { reset: true });
  if (config.e2ee) restartMedia("subscribe", { reset: true });
}

// ---------------------------------------------------------------------------
// subscribing (server-driven renegotiation)

/** A fresh subscribe connection (a stuck one, or after an outage). */
export function subscribe() {
  restartMedia("subscribe");
}

// The newest subscribe attempt (subscribeOnce): settles once its offer is answered, or the attempt failed.
let subscribing = null;

/** Run `work` on the offer chain (subscribe offers, their answers and forwarded_tracks, in order). */
function onSubChain(work) {
  state.subQueued += 1;
  const step = state.subChain.then(work).finally(() => { state.subQueued -= 1; });
  state.subChain = step.catch(() => {}); // a failed step must not skip the next ones
  return step;
}

// One attempt at the subscribe connection, on the offer chain. With the chain idle (a join: the first
// snapshot, a media_reconnect) the `subscribe` request leaves at once, synchronously: its offer is the first
// thing a joiner waits for (to see anyone), so it goes before the page renders the call and before the camera
// connection is set up (startMedia, onSnapshot). Otherwise it leaves once the steps before it ran, so that an
// answer they still send reaches the server before the connection it answers is replaced. The request failing
// rejects (retried); an offer the browser refuses does not (the server's next re-offer repairs it, and the
// connect watchdog rebuilds a connection that never connects).
function subscribeOnce(attempt) {
  state.subscribeEmpty = false;
  const early = state.subQueued === 0 && state.phase === "call" ? request({ type: "subscribe" }) : null;
  early?.catch(() => {}); // handled in the step below, not an unhandled rejection
  subscribing = onSubChain(async () => {
    if (state.phase !== "call") return;
    const offer = await (early || request({ type: "subscribe" }));
    const pc = newPc("subscribe", attempt);
    // The tiles are not rebuilt here: tracks fire during setRemoteDescription, before the offer's `tracks` are
    // in trackInfo and before the answer (without which nothing flows); applySubscribeOffer rebuilds them once
    // the answer is sent, and the page's main thread is not spent on it between the offer and the answer.
    if (config.e2ee) pc.ontrack = (event) => e2eeReceiver(event.receiver);
    state.forwardedVideo = null; // a new subscribe connection: the server tells us again
    remaps = new RemapWatch(); // ... whose mids mean other lines
    state.bandwidth = null;
    state.audioPooled = false;
    state.prefsSent = null; // ... and needs our pins and tiles again
    schedulePreferences();
    // The reply to our own `subscribe` is the new baseline (the server's revisions restart after a rejoin), and
    // names the connection its offers and forwarded_tracks belong to (an older server does not).
    if (typeof offer.revision === "number") state.subRevision = offer.revision - 1;
    state.subConnection = typeof offer.connection === "string" ? offer.connection : null;
    try {
      await applySubscribeOffer(offer);
    } catch (err) {
      console.error("subscribe failed", err); // the server's next re-offer (or the connect watchdog) repairs it
    }
    if (state.subscribeEmpty && state.pcs.subscribe === pc) recovery("subscribe").ok(attempt); // nothing to receive yet
  });
  return subscribing;
}

export function queueSubscribeOffer(frame) {
  if (frame.pc !== "subscribe") return;
  onSubChain(() => applySubscribeOffer(frame)).catch((err) => console.error("subscribe offer failed", err));
}

async function applySubscribeOffer(frame) {
  const pc = state.pcs.subscribe;
  if (!pc) return;
  // An offer for a subscribe connection we already replaced (it crossed our `subscribe`) is stale.
  if (typeof frame.connection === "string" && typeof state.subConnection === "string" && frame.connection !== state.subConnection) return;
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
  const remapped = remaps.map(frame.tracks || [], state.trackInfo, Date.now()); // a freed line reused
  state.trackInfo = new Map((frame.tracks || []).map((t) => [String(t.mid), t]));
  if (remapped) watchRemaps();
  await pc.setLocalDescription(await pc.createAnswer());
  await waitIceGathering(pc);
  if (state.pcs.subscribe !== pc) return;
  send({ type: "answer", pc: "subscribe", sdp: pc.localDescription.sdp, revision: frame.revision });
  state.subAnsweredAt = Date.now();
  watchConnect("subscribe", pc);
  refreshRemoteMedia();
}

/** Rebuild each participant's camera and screen streams from the subscribe transceivers. */
export function refreshRemoteMedia() {
  const pc = state.pcs.subscribe;
  const transceivers = (pc ? pc.getTransceivers() : []).map((t) => ({
    mid: t.mid, currentDirection: t.currentDirection, stopped: t.stopped, track: t.receiver.track,
  }));
  const { streams, pooled } = groupRemoteTracks(transceivers, state.trackInfo, state.audioPooled);
  state.remoteStreams = streams;
  state.awaitingFrame = new Set([...state.trackInfo].filter(([mid]) => remaps.hidden(mid)).map(([, info]) => tileKey(info)));
  syncPooledAudio(pooled);
  renderTiles();
}

// In large rooms the server re-maps a few video m-lines to whoever is selected, and in any room it maps
// someone new onto a spare m-line (one no offer listed): the mids listed here may now carry someone else
// or carry someone at all. Applied after any subscribe offer queued before it (same order as sent).
export function onForwardedTracks(frame) {
  onSubChain(() => {
    if (isStaleForwarded(frame, state.subRevision, state.subConnection)) return; // an older subscribe connection's mids
    const listed = [...(frame.video || []), ...(frame.audio || [])];
    // A spare m-line given to a new video: no packet yet, as just after an answer (the stall check waits).
    if (state.subAnsweredAt && mapsNewVideo(state.trackInfo, listed)) state.subAnsweredAt = Date.now();
    // A line that carried someone else: hidden until its first new frame, judged by the stall check from now.
    const remapped = remaps.map(listed, state.trackInfo, Date.now());
    applyForwardedTracks(state.trackInfo, frame);
    if (remapped) watchRemaps();
    state.forwardedVideo = new Set((frame.video || []).map((t) => `${t.participant}:${t.source}`));
    state.lastN = frame.last_n ?? null;
    state.audioPooled = frame.audio_pooled === true;
    state.bandwidth = parseBandwidth(frame.bandwidth);
    refreshConnected();
    refreshRemoteMedia();
  }).catch((err) => console.error("forwarded tracks failed", err));
}

/**
 * Someone left (`participant_left`): forget the subscribe mids mapped to them, in order with the offers and
 * forwarded_tracks queued before (a later mapping of the same mid, e.g. to someone who joins, stands).
 */
export function forgetParticipantMedia(participantId) {
  onSubChain(() => {
    forgetParticipantTracks(state.trackInfo, participantId, state.audioPooled);
    refreshRemoteMedia();
  }).catch((err) => console.error("forget participant media failed", err));
}

/** The server's view of one of our connections (`media_state` frame): its `failed` rebuilds a healthy-looking one. */
export function onPeerState(frame) {
  if (frame.state !== "failed" || state.phase !== "call" || !state.pcs[frame.pc]) return;
  if (frame.pc === "screen" && !state.sharing) return; // a share we stopped
  const r = recovery(frame.pc);
  if (r.active) return; // already being rebuilt
  console.warn("media: the server reports", frame.pc, "failed", frame.reason || "");
  r.fail(connectionError(frame.pc, "failed"));
}

// The media node hosting the room died, or a media node registered while the room waited for one
// (docs/protocol.md §1): drop every peer connection and publish and subscribe again at once, on this page,
// with a fresh backoff. Sent again for each new chance, so a retry already waiting is cut short.
export function onMediaReconnect() {
  if (state.phase !== "call") return;
  mediaTrouble = true;
  setStatus("Media server lost; reconnecting media…", "bad");
  closeAllPcs();
  state.trackInfo.clear();
  refreshRemoteMedia();
  startMedia();
}

// Re-mapped video mids (stall.js RemapWatch) of the current subscribe connection.
let remaps = new RemapWatch();
let remapTimer = null;
let remapUntil = 0;
export const REMAP_SAMPLE_MS = 150; // while a re-mapped tile waits for its first frame (at most SETTLE_MS)

// Sample the re-mapped mids every REMAP_SAMPLE_MS (the stats timer's 2 s would hide a flowing video that long):
// at once for the baseline, then until each shows a frame, for at most SETTLE_MS (then the stats timer goes on).
function watchRemaps() {
  remapUntil = Date.now() + SETTLE_MS;
  if (remapTimer) return;
  const pc = state.pcs.subscribe;
  const watch = remaps;
  const tick = async () => {
    remapTimer = null;
    if (state.pcs.subscribe !== pc || remaps !== watch || !pc) return;
    let report;
    try { report = await pc.getStats(); } catch { return; }
    if (state.pcs.subscribe !== pc || remaps !== watch) return;
    if (watch.sample(...inboundByMid(report))) refreshRemoteMedia();
    if (watch.waiting() && Date.now() < remapUntil) remapTimer = setTimeout(tick, REMAP_SAMPLE_MS);
  };
  remapTimer = setTimeout(tick, 0);
}

/** The stall check, on each stats sample: resubscribe when a track that should flow never did. */
export function checkSilentTracks(packetsByMid, framesByMid = new Map()) {
  const pc = state.pcs.subscribe;
  if (!pc) return;
  if (remaps.sample(packetsByMid, framesByMid)) refreshRemoteMedia();
  const mid = findStalledTrack({
    now: Date.now(),
    connectionState: pc.connectionState,
    answeredAt: state.subAnsweredAt,
    lastResubscribe: state.lastResubscribe,
    trackInfo: state.trackInfo,
    participants: state.participants,
    forwardedVideo: state.forwardedVideo,
    packetsByMid,
    remaps,
  });
  if (mid === null) return;
  const info = state.trackInfo.get(mid);
  console.warn("no packets on subscribe mid", mid, "from", info.participant, info.source, "- resubscribing");
  state.lastResubscribe = Date.now();
  subscribe();
}
