// Breakout rooms (docs/protocol.md §1 "Breakout rooms"): the panel, the banner, and moving between rooms.
//
// Moving never leaves the page or the socket: `breakout_join` / `breakout_leave` make the server switch
// what this socket speaks for and send a new room_snapshot; here the old room's media and tiles go
// (breakout_moved), and the snapshot starts media in the new room (session.js onSnapshot). The meeting's
// seat is kept by the server meanwhile. Pure rules live in breakout_logic.js.

import { canEnter, countdownText, roomsView, secondsLeft } from "./breakout_logic.js";
import { $, config, el, isModerator, toast } from "./dom.js";
import { closeAllPcs, refreshRemoteMedia } from "./media.js";
import { togglePanel } from "./panels.js";
import { renderAll } from "./people.js";
import { send } from "./socket.js";
import { state } from "./state.js";
import { removeTiles } from "./tiles.js";

state.breakouts = { status: "none", breakouts: [], ends_at: null, closes_at: null }; // the split (breakouts_state)
state.breakout = null; // the breakout this socket is in ({breakoutId, name, meetingId}), null: the main room
state.meetingId = null; // my participantId in the meeting (assignments name meeting participants)
state.meetingNames = new Map(); // meeting participantId -> display name, from the last meeting snapshot

let countdownTimer = null;

export function wireBreakouts() {
  if (!$("btn-breakouts")) return; // end-to-end encrypted meeting: no breakouts
  $("btn-breakouts").addEventListener("click", () => togglePanel("breakouts"));
  $("breakouts-open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const minutes = Number($("breakouts-minutes").value);
    send({
      type: "breakouts_open",
      count: Number($("breakouts-count").value),
      duration_minutes: minutes > 0 ? minutes : null,
      auto: $("breakouts-auto").checked,
    });
  });
  $("breakouts-broadcast-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("breakouts-broadcast").value.trim();
    if (!text) return;
    send({ type: "breakouts_broadcast", text });
    $("breakouts-broadcast").value = "";
  });
  $("breakouts-close").addEventListener("click", () => {
    const delay = Number($("breakouts-close-delay")?.value ?? 60);
    send({ type: "breakouts_close", delay_seconds: Number.isFinite(delay) ? delay : 60 });
  });
  $("breakout-return").addEventListener("click", () => send({ type: "breakout_leave" }));
}

function inMeeting(frame) {
  return frame.room?.roomId === config.roomId;
}

/** After every room_snapshot: remember the meeting's people; a reconnect into the meeting goes back in. */
export function onBreakoutSnapshot(frame) {
  if (!$("btn-breakouts")) return;
  if (inMeeting(frame)) {
    state.meetingId = frame.you.participantId;
    state.meetingNames = new Map(frame.participants.map((p) => [p.participantId, p.display_name]));
    if (state.breakout) {
      // The socket reconnected (it always rejoins the meeting): into the breakout again, if still open.
      const { breakoutId } = state.breakout;
      state.breakout = null;
      send({ type: "breakout_join", breakoutId });
    }
  }
  send({ type: "breakouts_get" });
  render();
}

function onState(frame) {
  state.breakouts = frame.breakouts;
  render();
}

function onMoved(frame) {
  state.breakout = frame.breakout;
  // The old room's media and people go; the room_snapshot that follows starts the new room's.
  closeAllPcs();
  for (const id of state.participants.keys()) removeTiles(id);
  state.participants.clear();
  state.trackInfo.clear();
  state.pinned = [];
  state.activeSpeaker = null;
  refreshRemoteMedia();
  state.lastSeq = null; // each room has its own chat: its recent history comes with the snapshot
  state.chatSeen.clear();
  $("chat-log").replaceChildren();
  renderAll();
  toast(frame.breakout ? `You are in ${frame.breakout.name}.` : "You are back in the main room.");
  render();
}

function onBroadcast(frame) {
  toast(`${frame.from} to all rooms: ${frame.text}`);
}

function onClosing(frame) {
  state.breakouts = { ...state.breakouts, status: "closing", closes_at: frame.closes_at };
  render();
}

export const BREAKOUT_FRAMES = {
  breakouts_state: onState,
  breakout_moved: onMoved,
  breakout_broadcast: onBroadcast,
  breakouts_closing: onClosing,
  breakouts_ended: () => { state.breakouts = { ...state.breakouts, status: "closed" }; render(); },
};

// --- drawing -------------------------------------------------------------------------------------------------

function names() {
  // In the meeting the live roster is current; inside a breakout, the last meeting snapshot's names.
  if (!state.breakout && state.me && state.meetingId === state.me.participantId) {
    state.meetingNames = new Map([[state.me.participantId, state.me.display_name],
      ...[...state.participants.values()].map((p) => [p.participantId, p.display_name])]);
  }
  return state.meetingNames;
}

function assignControl(person, rooms) {
  const select = el("select", { class: "breakout-pick", "aria-label": `Room for ${person.name}` });
  select.append(el("option", { value: "", text: "Main room" }));
  for (const room of rooms) select.append(el("option", { value: room.breakoutId, text: room.name }));
  select.value = rooms.find((r) => r.people.some((p) => p.id === person.id))?.breakoutId || "";
  select.addEventListener("change", () => send({ type: "breakout_assign", participantId: person.id, breakoutId: select.value || null }));
  return select;
}

function personItem(person, rooms, moderator) {
  const li = el("li", { class: "breakout-person", "data-participant": person.id },
    el("span", { text: person.name + (person.id === state.meetingId ? " (you)" : "") }));
  if (person.present) li.append(el("span", { class: "role", text: "here" }));
  if (moderator && state.breakouts.status === "open") {
    li.draggable = true;
    li.addEventListener("dragstart", (e) => e.dataTransfer.setData("text/plain", person.id));
    li.append(assignControl(person, rooms));
  }
  return li;
}

function dropTarget(node, breakoutId) {
  node.addEventListener("dragover", (e) => { e.preventDefault(); node.classList.add("drop"); });
  node.addEventListener("dragleave", () => node.classList.remove("drop"));
  node.addEventListener("drop", (e) => {
    e.preventDefault();
    node.classList.remove("drop");
    const participantId = e.dataTransfer.getData("text/plain");
    if (participantId) send({ type: "breakout_assign", participantId, breakoutId });
  });
}

function render() {
  if (!$("btn-breakouts")) return;
  const split = state.breakouts;
  const moderator = isModerator();
  const live = split.status === "open" || split.status === "closing";
  $("breakouts-open-form").hidden = !(moderator && !live && !state.breakout);
  $("breakouts-host").hidden = !(moderator && live);
  $("breakouts-status").textContent = live
    ? `${split.breakouts.length} breakout rooms ${split.status === "closing" ? "closing" : "open"}${split.ends_at ? `, timer until ${new Date(split.ends_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : ""}.`
    : moderator ? "Split the meeting into smaller rooms." : "No breakout rooms are open.";
  const { rooms, unassigned } = roomsView(live ? split : null, names());
  const list = $("breakouts-list");
  list.replaceChildren();
  for (const room of rooms) {
    const here = state.breakout?.breakoutId === room.breakoutId;
    const people = el("ul", { class: "people" }, ...room.people.map((p) => personItem(p, rooms, moderator)),
      ...room.visitors.map((p) => el("li", { class: "breakout-person visitor", text: `${p.name} (visiting)` })));
    const head = el("div", { class: "breakout-head" }, el("strong", { text: room.name }));
    if (here) head.append(el("span", { class: "role", text: "you are here" }));
    else if (canEnter(split, room.breakoutId, { meetingId: state.meetingId, moderator })) {
      const join = el("button", { type: "button", class: "small", text: "Join", "aria-label": `Join ${room.name}` });
      join.addEventListener("click", () => send({ type: "breakout_join", breakoutId: room.breakoutId }));
      head.append(join);
    }
    const li = el("li", { class: "breakout-room", "data-breakout": room.breakoutId }, head, people);
    if (moderator) dropTarget(li, room.breakoutId);
    list.append(li);
  }
  const rest = $("breakouts-unassigned");
  rest.hidden = !live || !unassigned.length;
  rest.replaceChildren(el("strong", { text: "Main room" }),
    el("ul", { class: "people" }, ...unassigned.map((p) => personItem(p, rooms, moderator))));
  if (moderator && !rest.dataset.dropWired) {
    dropTarget(rest, null);
    rest.dataset.dropWired = "1";
  }
  renderBanner();
}

function renderBanner() {
  const banner = $("breakout-banner");
  const closesIn = state.breakouts.status === "closing" ? secondsLeft(state.breakouts.closes_at, Date.now()) : null;
  banner.hidden = !state.breakout && closesIn === null;
  $("breakout-where").textContent = state.breakout ? `Breakout: ${state.breakout.name}.` : "";
  $("breakout-countdown").textContent = countdownText(closesIn);
  $("breakout-return").hidden = !state.breakout;
  clearTimeout(countdownTimer);
  if (closesIn !== null && closesIn > 0) countdownTimer = setTimeout(renderBanner, 1000);
}
