// Bandwidth hints (pure: no DOM): what the server's `forwarded_tracks.bandwidth` (docs/protocol.md §1)
// means for each remote tile and for the status pill. A video paused to save bandwidth must never look
// like a camera that is off: that tile keeps its initials but gets its own icon and tooltip.

export const PAUSED_HINT = "Video paused to save bandwidth";
export const REDUCED_HINT = "Reduced quality to save bandwidth";
const REASONS = { paused_bandwidth: "paused", reduced: "reduced" };
const STATES = new Set(["good", "limited", "low"]);

/**
 * The `bandwidth` object of a forwarded_tracks frame as {state, estimateBps, tiles: Map "participant:source" →
 * "paused" | "reduced"}. An older server sends none, or an unknown state: null (nothing to say).
 */
export function parseBandwidth(raw) {
  if (!raw || typeof raw !== "object" || !STATES.has(raw.state)) return null;
  const tiles = new Map();
  for (const t of Array.isArray(raw.tracks) ? raw.tracks : []) {
    const kind = t && REASONS[t.reason];
    if (kind && t.kind === "video") tiles.set(`${t.participant}:${t.source}`, kind);
  }
  const estimateBps = Number.isFinite(raw.estimate_bps) ? raw.estimate_bps : null;
  return { state: raw.state, estimateBps, tiles };
}

/**
 * The hint for a remote tile: {kind: "paused" | "reduced", text} or null. A camera that is off (the
 * participant's `video_muted`) has none: it shows as camera off, whatever the link.
 */
export function tileHint(bandwidth, participantId, source, { videoMuted = false } = {}) {
  if (!bandwidth || videoMuted) return null;
  const kind = bandwidth.tiles.get(`${participantId}:${source}`);
  if (kind === "paused") return { kind, text: PAUSED_HINT };
  if (kind === "reduced") return { kind, text: REDUCED_HINT };
  return null;
}

function formatRate(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}

/** The status pill while connected: {text, kind, title} from the link's state (kind "good" or "limited"). */
export function connectedStatus(bandwidth) {
  const state = bandwidth?.state || "good";
  const estimate = bandwidth?.estimateBps;
  const title = estimate === null || estimate === undefined ? "" : `Estimated bandwidth: ${formatRate(estimate)}`;
  if (state === "low") return { text: "Connected · low bandwidth", kind: "limited", title: `${title}${title ? ". " : ""}Some videos are paused to save bandwidth` };
  if (state === "limited") return { text: "Connected · limited bandwidth", kind: "limited", title: `${title}${title ? ". " : ""}Some videos are shown at reduced quality` };
  return { text: "Connected", kind: "good", title };
}
