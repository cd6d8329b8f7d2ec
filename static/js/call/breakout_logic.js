// Breakout rooms, the pure part (no DOM, no socket): what the panel shows and who may go where.
// Unit-tested with node --test (tests/js/breakouts.test.mjs).

/** Whole seconds until `closesAt` (an ISO time) at `nowMs`, never negative; null without a countdown. */
export function secondsLeft(closesAt, nowMs) {
  if (!closesAt) return null;
  const at = Date.parse(closesAt);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** The countdown line ("Returning to the main room in 42 s"). */
export function countdownText(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds > 0 ? `Returning to the main room in ${seconds} s` : "Returning to the main room…";
}

/** The breakout `participantId` (a meeting participant) is assigned to, or null. */
export function assignedRoom(split, participantId) {
  for (const room of split?.breakouts || []) if (room.assigned.includes(participantId)) return room.breakoutId;
  return null;
}

/** Whether the person may move into `breakoutId`: moderators visit any open room, others only their own. */
export function canEnter(split, breakoutId, { meetingId, moderator }) {
  if (split?.status !== "open") return false;
  if (!(split.breakouts || []).some((room) => room.breakoutId === breakoutId)) return false;
  return moderator || assignedRoom(split, meetingId) === breakoutId;
}

/**
 * The panel's rooms: each breakout with its people (name, here now?), then the meeting's people assigned
 * nowhere. `names`: Map meeting participantId → display name (people not known by name are listed by ID).
 */
export function roomsView(split, names) {
  const placed = new Set();
  const rooms = (split?.breakouts || []).map((room) => ({
    breakoutId: room.breakoutId,
    name: room.name,
    people: room.assigned.map((id) => {
      placed.add(id);
      return { id, name: names.get(id) || id, present: room.present.includes(id) };
    }),
    visitors: room.present.filter((id) => !room.assigned.includes(id)).map((id) => ({ id, name: names.get(id) || id })),
  }));
  const unassigned = [...names.keys()].filter((id) => !placed.has(id)).map((id) => ({ id, name: names.get(id) }));
  return { rooms, unassigned };
}
