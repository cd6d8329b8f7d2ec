// Tile and people-list decisions (pure: no DOM, unit-tested with `node --test`).

/** Whether the server forwards `participantId`'s `source` video to us (null: not told yet, so all). */
export function isForwarded(forwardedVideo, participantId, source) {
  return forwardedVideo === null || forwardedVideo.has(`${participantId}:${source}`);
}

/** The tile key a subscribe track belongs to: the participant, or `<participant>:screen` for a share. */
export function tileKey(info) {
  return info.source === "screen" || info.source === "screen_audio" ? `${info.participant}:screen` : info.participant;
}

/**
 * Group the subscribe connection's live transceivers into tile streams and pooled microphone lines.
 * `transceivers`: [{mid, currentDirection, stopped, track}]. Returns {streams: key -> tracks, pooled: mid -> track}.
 */
export function groupRemoteTracks(transceivers, trackInfo, audioPooled) {
  const streams = new Map();
  const pooled = new Map();
  for (const t of transceivers) {
    const info = trackInfo.get(String(t.mid));
    if (!info || t.currentDirection === "inactive" || t.stopped) continue;
    if (audioPooled && info.kind === "audio" && info.source === "microphone") {
      pooled.set(String(t.mid), t.track);
      continue;
    }
    const key = tileKey(info);
    if (!streams.has(key)) streams.set(key, []);
    streams.get(key).push(t.track);
  }
  return { streams, pooled };
}

/**
 * Apply a `forwarded_tracks` frame to the subscribe connection's mid -> track map: each listed mid now carries
 * the listed track (a spare m-line given to someone, a re-mapped line), and each mid in `spare` carries
 * nobody (a line a leave freed, docs/protocol.md "Spare m-lines"): its old mapping must go, or the leaver's
 * silent stream stays attributed to them.
 */
export function applyForwardedTracks(trackInfo, frame) {
  for (const mid of Array.isArray(frame.spare) ? frame.spare : []) trackInfo.delete(String(mid));
  for (const t of [...(frame.video || []), ...(frame.audio || [])]) trackInfo.set(String(t.mid), t);
}

/**
 * Whether a `forwarded_tracks` frame belongs to a subscribe connection older than the offer applied last
 * (`subRevision`): the reply to our `subscribe` does not wait for the events the old connection's server sent
 * before it, and that connection's mids mean other lines. A frame that names another connection than ours
 * (`connection`, `subConnection`; an older server names none) is stale whatever its revision: revisions
 * restart with a new participant record at the media server (a rejoin after a leave, another media node), so
 * a late frame of the old connection can carry a revision above ours.
 */
export function isStaleForwarded(frame, subRevision, subConnection = null) {
  if (typeof frame.connection === "string" && typeof subConnection === "string" && frame.connection !== subConnection) return true;
  return typeof frame.revision === "number" && frame.revision < subRevision;
}

/**
 * Forget the mids mapped to someone who left (`participant_left`): nothing stays attributed to them, even
 * where the server keeps their lines negotiated as spares. Pooled microphone lines are kept: the server
 * re-maps them to another talker without telling (their listed participant is a snapshot).
 */
export function forgetParticipantTracks(trackInfo, participantId, audioPooled) {
  for (const [mid, info] of trackInfo) {
    if (info.participant !== participantId) continue;
    if (audioPooled && info.kind === "audio" && info.source === "microphone") continue;
    trackInfo.delete(mid);
  }
}

/** Who fills the large tile in speaker view: the first pinned person present, else the active speaker, else the first other. */
export function featuredId({ pinned, participants, activeSpeaker, meId }) {
  const pin = pinned.find((id) => participants.has(id));
  if (pin) return pin;
  if (activeSpeaker && (participants.has(activeSpeaker) || activeSpeaker === meId)) return activeSpeaker;
  return participants.keys().next().value || meId;
}

/** Pin or unpin: newest pin first, at most 4 (the server takes at most 4). */
export function togglePinned(pinned, participantId) {
  if (pinned.includes(participantId)) return pinned.filter((id) => id !== participantId);
  return [participantId, ...pinned].slice(0, 4);
}

/** The people list order: raised hands first, in the order they were raised; otherwise as given. */
export function sortPeople(people) {
  return [...people].sort((a, b) => (a.hand_raised === b.hand_raised ? 0 : a.hand_raised ? -1 : 1)
    || String(a.hand_raised_at || "").localeCompare(String(b.hand_raised_at || "")));
}

/** Initials for an avatar ("Ada Lovelace" → "AL"). */
export function initials(name) {
  return (name || "?").trim().split(/\s+/).slice(0, 2).map((w) => w[0] || "").join("").toUpperCase() || "?";
}

/** Whether a rejected `play()` is an autoplay refusal (the user must click), not a routine AbortError of a swapped source. */
export function isAutoplayRefusal(err) {
  return err?.name === "NotAllowedError";
}
