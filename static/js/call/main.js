// The call page: pre-join preview, waiting room, the call itself (docs/protocol.md §1).
//
// ES modules, no build step: templates/rooms/call.html loads this one. The page is server-rendered;
// these modules only fill it in. User-provided text (names, chat) is always inserted with textContent,
// never parsed as HTML. Module map: docs/architecture.md ("The browser client").

import { wireBreakouts } from "./breakouts.js";
import { sendChat } from "./chat.js";
import {
  acquireLocal, fillDevices, setAudioMuted, setLocalReady, setVideoMuted, startScreenShare, stopScreenShare, syncControls,
} from "./controls.js";
import { $, config, setPhase, stored, toast } from "./dom.js";
import { e2ee } from "./e2ee.js";
import { wireEffects } from "./effects/index.js";
import { FRAMES } from "./frames.js";
import { togglePanel } from "./panels.js";
import { renderAll } from "./people.js";
import { toggleRecording } from "./recording.js";
import { finish, join, leave, onReconnecting, rejoinGrant } from "./session.js";
import { closeSocket, configureSocket, probeSocket, send } from "./socket.js";
import { mediaStateFields, state } from "./state.js";
import { renderTiles, schedulePreferences } from "./tiles.js";

function wire() {
  wireEffects();
  $("pre-mic")?.addEventListener("click", () => setAudioMuted(!state.audioMuted));
  $("pre-cam")?.addEventListener("click", () => setVideoMuted(!state.videoMuted));
  $("camera-select")?.addEventListener("change", async (e) => { state.devices.camera = e.target.value; if (!state.videoMuted) await acquireLocal(); });
  $("mic-select")?.addEventListener("change", async (e) => { state.devices.microphone = e.target.value; await acquireLocal(); });
  $("join-form")?.addEventListener("submit", (e) => {
    e.preventDefault();
    const displayName = $("display-name").value.trim();
    if (!config.signedIn && !displayName) {
      $("join-error").textContent = "Please enter your name.";
      $("display-name").focus();
      return;
    }
    join({ displayName, password: $("room-password")?.value || "" });
  });
  // The template renders "Join now" disabled: until this handler exists a click would submit the form natively
  // (a page reload that looks like a join doing nothing; seen on a 300 kbit/s link, where the modules take seconds).
  if ($("join-button")) $("join-button").disabled = false;
  for (const button of document.querySelectorAll("[data-action=leave]")) button.addEventListener("click", leave);
  $("btn-mic").addEventListener("click", () => setAudioMuted(!state.audioMuted));
  $("btn-cam").addEventListener("click", () => setVideoMuted(!state.videoMuted));
  $("btn-screen").addEventListener("click", () => (state.sharing ? stopScreenShare() : startScreenShare()));
  $("btn-hand").addEventListener("click", () => {
    state.handRaised = !state.handRaised;
    send({ type: state.handRaised ? "raise_hand" : "lower_hand" });
    syncControls();
    renderAll();
  });
  $("btn-view").addEventListener("click", () => {
    state.view = state.view === "speaker" ? "grid" : "speaker";
    syncControls();
    renderTiles();
  });
  $("btn-chat").addEventListener("click", () => togglePanel("chat"));
  $("btn-people").addEventListener("click", () => togglePanel("people"));
  for (const button of document.querySelectorAll("[data-close-panel]")) {
    button.addEventListener("click", () => {
      const which = button.closest(".panel").id.replace("-panel", "");
      togglePanel(which);
      $(`btn-${which}`).focus();
    });
  }
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    sendChat(text);
    input.value = "";
  });
  $("lock-room").addEventListener("click", () => send({ type: state.locked ? "unlock_room" : "lock_room" }));
  $("lower-hands").addEventListener("click", () => send({ type: "lower_all_hands" }));
  $("end-room").addEventListener("click", () => {
    if (confirm("End the meeting for everyone?")) send({ type: "end_room" });
  });
  $("btn-record")?.addEventListener("click", toggleRecording);
  wireBreakouts();
  $("copy-link").addEventListener("click", async () => {
    const url = `${location.origin}/join/${config.roomId}`;
    try { await navigator.clipboard.writeText(url); toast("Link copied."); } catch { toast(url); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("side").hidden) {
      const which = !$("chat-panel").hidden ? "chat" : $("breakouts-panel") && !$("breakouts-panel").hidden ? "breakouts" : "people";
      togglePanel(which);
      $(`btn-${which}`).focus();
    }
  });
  window.addEventListener("resize", () => schedulePreferences(500));
  window.addEventListener("pagehide", () => { state.leaving = true; closeSocket(1000); });
  // Signs of a network change: is the socket still there? (socket.js probeSocket)
  for (const [target, type] of [[window, "online"], [navigator.connection, "change"]]) {
    target?.addEventListener?.(type, () => { console.info("socket: network", type); probeSocket(); });
  }
  navigator.mediaDevices?.addEventListener?.("devicechange", fillDevices);
}

async function main() {
  window.conferenceBoot?.loaded(); // every module arrived: static/js/boot.js forgets this tab's reloads
  configureSocket({
    handlers: FRAMES, rejoin: rejoinGrant, onReconnecting, onTerminal: finish,
    joinFrame: () => ({ media_state: mediaStateFields() }), // others see us muted / camera off from the start
  });
  wire();
  if (!$("join-form")) { setPhase("prejoin"); return; } // the room has ended
  if (config.e2ee && !e2ee.mode) {
    // Without Encoded Transform this browser would send media the server can read: it may not join.
    $("app").dataset.e2ee = "unsupported";
    $("join-button").disabled = true;
    $("join-error").textContent = "This meeting is end-to-end encrypted, and this browser cannot encrypt calls "
      + "(it lacks WebRTC Encoded Transform). You cannot join it from this browser; use a current Chrome, Edge, Safari or Firefox.";
    return;
  }
  const saved = stored();
  if (saved) {
    state.audioMuted = !!saved.audioMuted;
    state.videoMuted = !!saved.videoMuted;
    state.devices = { ...state.devices, ...(saved.devices || {}) };
    if (saved.displayName) $("display-name").value = saved.displayName;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    $("join-error").textContent = "This browser cannot use cameras here (the page needs HTTPS).";
    state.local.stream = new MediaStream();
  } else {
    const ready = acquireLocal();
    setLocalReady(ready);
    await ready;
    await fillDevices();
  }
  // A reload during a call rejoins straight away.
  if (saved && (saved.displayName || config.signedIn)) join({ displayName: saved.displayName || "", password: "" });
  else $("display-name").focus();
}

// A small handle for diagnostics (and the end-to-end tests): read-only use, please.
window.conferenceCall = state;
main();
