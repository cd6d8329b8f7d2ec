// The call's state: one object, shared by the modules (no DOM here).
//
// It is also `window.conferenceCall`, the read-only diagnostics handle the browser tests use
// (tests/e2e: phase, grant, me, participants, pcs, trackInfo, subRevision, subscribeEmpty, wsOpen,
// audioPooled, local, e2ee): keep those fields.

export const PROTOCOL = 1;

export const state = {
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
  outbox: null, // chat messages not yet acknowledged (chat.js, outbox.js)
  unread: 0,
  participants: new Map(), // participantId -> public participant
  lobby: new Map(),
  tiles: new Map(), // key (participantId or participantId:screen) -> tile element
  remoteStreams: new Map(), // tile key -> remote tracks
  awaitingFrame: new Set(), // tile keys whose video line was re-mapped to them and shows no frame of theirs yet
  trackInfo: new Map(), // subscribe mid -> {participant, pc, source, kind}
  pcs: {}, // camera | screen | subscribe -> RTCPeerConnection
  subChain: Promise.resolve(),
  subQueued: 0, // steps on subChain not yet done (media.js onSubChain)
  subscribeEmpty: false,
  subRevision: 0, // revision of the newest subscribe offer applied (older ones are stale)
  subConnection: null, // the media server's name of our subscribe connection (frames of another one are stale)
  subAnsweredAt: 0,
  lastResubscribe: 0,
  refs: new Map(), // ref -> {resolve, reject}
  nextRef: 1,
  activeSpeaker: null,
  // Last-N (docs/protocol.md §1 video_preferences / forwarded_tracks): whose video the server sends us.
  forwardedVideo: null, // Set of "participantId:source" the server forwards; null = not told yet (all)
  lastN: null,
  bandwidth: null, // forwarded_tracks.bandwidth, parsed (bandwidth.js): videos paused or reduced for our link
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
  recording: { recordingId: null, status: "none", reason: null }, // the room's latest recording
  e2ee: null, // set by e2ee.js
};

/** Our media state as the `media_state` frame carries it (and the `join` frame's `media_state`, docs/protocol.md §1). */
export function mediaStateFields(s = state) {
  return { audio_muted: s.audioMuted, video_muted: s.videoMuted, screen_sharing: s.sharing };
}

/**
 * Whether the server already holds `fields` for us (`you` of a `room_snapshot`): it took them from the join
 * frame, or kept them from before a reconnect. Otherwise (a server that ignores the join frame's
 * `media_state`, or a toggle while joining) the page sends a `media_state` frame.
 */
export function mediaStateHeld(you, fields) {
  return !!you && Object.entries(fields).every(([name, value]) => you[name] === value);
}
