// The side panels (chat, people) and reaction bubbles.

import { $, el } from "./dom.js";
import { state } from "./state.js";

export function togglePanel(which) {
  const panel = $(`${which}-panel`);
  const opening = panel.hidden;
  for (const name of ["chat", "people", "breakouts"]) {
    if (!$(`${name}-panel`)) continue; // no breakout rooms in end-to-end encrypted meetings
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

export function showReaction(frame) {
  const p = frame.participantId === state.me?.participantId ? state.me : state.participants.get(frame.participantId);
  const bubble = el("div", { class: "reaction" }, el("span", { text: frame.emoji }), el("small", { text: p?.display_name || "" }));
  $("reactions").append(bubble);
  setTimeout(() => bubble.remove(), 4000);
}
