// The People panel (participants, host tools) and the waiting-room list.

import { $, el, isModerator } from "./dom.js";
import { initials, sortPeople } from "./layout.js";
import { syncRecording } from "./recording.js";
import { send } from "./socket.js";
import { state } from "./state.js";
import { renderTiles, togglePin } from "./tiles.js";

export function renderAll() {
  renderTiles();
  renderPeople();
  renderLobby();
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

export function renderPeople() {
  if (!state.me) return;
  const list = $("people-list");
  const everyone = sortPeople([{ ...state.me, audio_muted: state.audioMuted, hand_raised: state.handRaised }, ...state.participants.values()]);
  list.replaceChildren(...everyone.map((p) => personRow(p, p.participantId === state.me.participantId)));
  $("people-count").textContent = `(${everyone.length})`;
  const hands = everyone.filter((p) => p.hand_raised).length;
  $("hands-badge").hidden = hands === 0;
  $("hands-badge").textContent = String(hands);
  $("host-tools").hidden = !isModerator();
  $("end-room").hidden = !isModerator();
  syncRecording(); // the Record button follows the role (promote/demote)
}

export function renderLobby() {
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
