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
  now, connectionState, answeredAt, lastResubscribe = 0, trackInfo, participants, forwardedVideo, packetsByMid, remaps = null,
}) {
  if (connectionState !== "connected" || !answeredAt || now - answeredAt < SETTLE_MS) return null;
  if (now - lastResubscribe < RESUBSCRIBE_MIN_MS) return null;
  if (forwardedVideo === null) return null; // the server has not said what it forwards yet
  for (const [mid, info] of trackInfo) {
    if (info.kind !== "video") continue;
    const p = participants.get(info.participant);
    if (!p || (info.source === "camera" && p.video_muted)) continue;
    if (!forwardedVideo.has(`${info.participant}:${info.source}`)) continue;
    // A line that carried someone else before counts what it received since its re-map (RemapWatch).
    const remap = remaps?.pending.get(mid);
    if (remap) {
      if (remap.packets === null || now - remap.at < SETTLE_MS) continue;
      if ((packetsByMid.get(mid) || 0) <= remap.packets) return mid;
      continue;
    }
    if (!packetsByMid.get(mid)) return mid;
  }
  return null;
}

/** Per mid, from a getStats report of the subscribe connection: [mid -> packetsReceived, mid -> framesDecoded]. */
export function inboundByMid(report) {
  const packets = new Map();
  const frames = new Map();
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp") continue;
    packets.set(String(s.mid), s.packetsReceived || 0);
    frames.set(String(s.mid), s.framesDecoded ?? s.packetsReceived ?? 0);
  }
  return [packets, frames];
}

/**
 * Video mids re-mapped to another track: the m-line carried someone else before (a spare a leave freed and a
 * newcomer got, docs/protocol.md "Spare m-lines"; a pooled line given to a new speaker; a freed line an offer
 * reuses). Such a line's inbound counters already hold the previous track's packets and frames, and its
 * receiver holds the previous person's last picture. So, from the re-map on:
 * - the stall check judges the packets received since (`findStalledTrack` with `remaps`): the line gets
 *   SETTLE_MS from the re-map and must then have received more than at the first stats sample after it;
 * - the tile hides its video (`hidden`) until a frame decoded after that sample, instead of showing the
 *   previous person's last frame under the newcomer's name until the newcomer's first keyframe.
 * The previous track stopped at the server before the page hears of the re-map (the event goes through
 * Django), so whatever grows after the first sample is the new track's.
 */
export class RemapWatch {
  constructor() {
    this.owners = new Map(); // mid -> "participant:source" of the last video mapped there (never forgotten)
    this.pending = new Map(); // mid -> {at, packets, frames, shown}: re-mapped; packets/frames = the baseline
  }

  /**
   * Note the video mappings `listed` ([{mid, participant, source, kind}]) about to replace `trackInfo`'s (an
   * offer's `tracks`, a `forwarded_tracks`) at `now`. A mid that carried a video before counts as re-mapped
   * when it now carries another one, or carries one again after it was forgotten (a leaver's spare line).
   * Returns whether any mid was re-mapped.
   */
  map(listed, trackInfo, now) {
    let remapped = false;
    for (const t of listed) {
      if (t.kind !== "video") continue;
      const mid = String(t.mid);
      const owner = `${t.participant}:${t.source}`;
      const before = this.owners.get(mid);
      const current = trackInfo.get(mid);
      this.owners.set(mid, owner);
      if (before === undefined || (current && `${current.participant}:${current.source}` === owner)) continue;
      this.pending.set(mid, { at: now, packets: null, frames: null, shown: false });
      remapped = true;
    }
    return remapped;
  }

  /**
   * One stats sample of the subscribe connection (mid -> packetsReceived, mid -> framesDecoded): the first
   * after a re-map is its baseline (lowered if the counters restart). Returns whether a hidden mid got its first frame since (show its tile).
   */
  sample(packetsByMid, framesByMid) {
    let shown = false;
    for (const [mid, remap] of this.pending) {
      const packets = packetsByMid.get(mid) || 0;
      const frames = framesByMid.get(mid) || 0;
      if (remap.packets === null || packets < remap.packets || frames < remap.frames) {
        // The baseline; lower counters than it are a receive stream the browser recreated (an inactive line).
        remap.packets = Math.min(packets, remap.packets ?? packets);
        remap.frames = Math.min(frames, remap.frames ?? frames);
      } else if (!remap.shown && frames > remap.frames) {
        remap.shown = shown = true;
      }
    }
    return shown;
  }

  /** Whether the tile of the video on `mid` must hide it: re-mapped, and no frame decoded since. */
  hidden(mid) {
    const remap = this.pending.get(String(mid));
    return !!remap && !remap.shown;
  }

  /** Whether a re-mapped mid still waits for its first frame. */
  waiting() {
    return [...this.pending.values()].some((r) => !r.shown);
  }
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
    this.arriving = false; // the last sample saw bytes arrive since the one before
  }

  /** One sample: `bytes` received so far by the watched connection (null: none connected). Returns
   * whether to check the path now; `arriving` says whether bytes came since the previous sample. */
  sample(now, bytes) {
    this.arriving = bytes !== null && this.bytes !== null && bytes !== this.bytes;
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
