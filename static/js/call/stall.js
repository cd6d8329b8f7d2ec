// The subscribe stall check's decision (pure: no DOM, unit-tested with `node --test`).
//
// A negotiated track that never delivers a packet while the server says it forwards it means the
// subscribe connection is stuck: the caller asks for a fresh one, at most every RESUBSCRIBE_MIN_MS.
//
// Only video counts. Audio silence is normally the server's choice: it forwards only the 3 loudest
// microphones and none below −60 dBov (docs/protocol.md "Large rooms: last-N"), and `forwarded_tracks`
// lists audio m-lines that are attached, not whether packets flow, so a quiet or digitally silent
// microphone must never look like a broken connection (issue 16: 3–4 resubscribes a minute). A video
// counts only once the server listed it in `forwarded_tracks` (not paused by last-N or for bandwidth) and
// its camera is not off; the connection itself is watched by its state (media.js).

export const SETTLE_MS = 8000; // after an answer, m-lines get a while to start
export const RESUBSCRIBE_MIN_MS = 20000;

/**
 * The first mid that should carry packets and has none, or null.
 * `packetsByMid`: mid -> packetsReceived of the subscribe connection's inbound-rtp stats.
 */
export function findStalledTrack({
  now, connectionState, answeredAt, lastResubscribe = 0, trackInfo, participants, forwardedVideo, packetsByMid,
}) {
  if (connectionState !== "connected" || !answeredAt || now - answeredAt < SETTLE_MS) return null;
  if (now - lastResubscribe < RESUBSCRIBE_MIN_MS) return null;
  if (forwardedVideo === null) return null; // the server has not said what it forwards yet
  for (const [mid, info] of trackInfo) {
    if (info.kind !== "video") continue;
    const p = participants.get(info.participant);
    if (!p || (info.source === "camera" && p.video_muted)) continue;
    if (!forwardedVideo.has(`${info.participant}:${info.source}`)) continue;
    if (!packetsByMid.get(mid)) return mid;
  }
  return null;
}

/**
 * Whether a `forwarded_tracks` frame maps a video onto a mid the client did not know (a spare m-line the
 * server negotiated ahead and now gives to someone who joined or started sharing, docs/protocol.md
 * "Spare m-lines"): its first packet is a keyframe request away, so the stall check gives it SETTLE_MS, as
 * after an answer. A re-map of a known mid (large rooms, on a speaker change) does not count: that line
 * has received packets before.
 */
export function mapsNewVideo(trackInfo, listed) {
  return listed.some((t) => t.kind === "video" && !trackInfo.has(String(t.mid)));
}

// The network path: a network change (a new address, another Wi-Fi) silences every connection at once,
// and the browser's ICE says `disconnected` only ~5 s later. Sampling the bytes a connected connection
// received (getStats `transport`) every PATH_SAMPLE_MS, a path silent for PATH_SILENT_MS is worth
// a check of the socket (socket.js probeSocket: one ping and a scout socket; a socket that answers is kept),
// at most every PATH_CHECK_MIN_MS. It is only a reason to ask: a quiet room (nothing forwarded) costs a ping
// and a WebSocket handshake, no rebuild. A call delivers audio every 20 ms and video 15–30 times a second,
// so 0.6 s of nothing is already unusual, and the whole recovery must fit in 3 s (issue 16).
//
// Only while a video should be arriving: a forwarded camera that is not off (or a screen share). Audio
// alone is no sign: the server forwards no microphone below −60 dBov, so a room of muted or quiet people
// sends nothing by design, as does a room where the others have left (a breakout move). A check then
// was a needless probe every 5 s, and on a busy server, whose pong waited behind the room events of
// those moves while a fresh scout socket opened at once, a needless rejoin that lost a request sent
// meanwhile (a breakout Join click, 2026-12-07). Without an expected video, a network change is still
// seen by the browser's own signs (socket close, `online`, `navigator.connection`, ICE).
export const PATH_SAMPLE_MS = 200;
export const PATH_SILENT_MS = 600;
export const PATH_CHECK_MIN_MS = 5000;

export class PathWatch {
  constructor() {
    this.bytes = null;
    this.changedAt = 0;
    this.checkedAt = -Infinity;
  }

  /** One sample: `bytes` received so far by the watched connection (null: none connected). Returns
   * whether to check the path now. */
  sample(now, bytes) {
    if (bytes === null || this.bytes === null || bytes !== this.bytes) {
      this.bytes = bytes;
      this.changedAt = now;
      return false;
    }
    if (now - this.changedAt < PATH_SILENT_MS || now - this.checkedAt < PATH_CHECK_MIN_MS) return false;
    this.checkedAt = now;
    return true;
  }
}

/** Whether the subscribe connection should be receiving video now (the path watch's precondition). */
export function mediaExpected({ trackInfo, participants, forwardedVideo }) {
  if (forwardedVideo === null) return false; // the server has not said what it forwards yet
  for (const info of trackInfo.values()) {
    if (info.kind !== "video" || !forwardedVideo.has(`${info.participant}:${info.source}`)) continue;
    const p = participants.get(info.participant);
    if (p && !(info.source === "camera" && p.video_muted)) return true;
  }
  return false;
}
