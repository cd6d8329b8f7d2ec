// The stage: one tile per participant (and per screen share), pooled audio elements, pins and the
// video_preferences the server uses for last-N and layer choice.

import { tileHint } from "./bandwidth.js";
import { $, el } from "./dom.js";
import { featuredId, initials, isAutoplayRefusal, isForwarded, togglePinned } from "./layout.js";
import { renderAll } from "./people.js";
import { send } from "./socket.js";
import { state } from "./state.js";

function makeTile(key, participantId, screen) {
  const tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.participant = participantId;
  tile.dataset.key = key;
  if (screen) tile.classList.add("screen");
  const video = tile.querySelector("video");
  if (participantId === "me") { video.muted = true; tile.classList.add("me"); }
  const pin = tile.querySelector(".pin");
  if (pin && participantId !== "me" && !screen) {
    pin.hidden = false;
    pin.addEventListener("click", () => togglePin(participantId));
  }
  state.tiles.set(key, tile);
  return tile;
}

export function togglePin(participantId) {
  state.pinned = togglePinned(state.pinned, participantId);
  renderAll();
  schedulePreferences(0);
}

// Tell the server (debounced, only when something changed) whom we pinned and which remote tiles we show how large.
export function schedulePreferences(delayMs = 300) {
  clearTimeout(state.prefsTimer);
  state.prefsTimer = setTimeout(sendPreferences, delayMs);
}

function sendPreferences() {
  if (state.phase !== "call" || !state.wsOpen || !state.pcs.subscribe) return;
  const pinned = state.pinned.filter((id) => state.participants.has(id));
  const tiles = [];
  for (const tile of state.tiles.values()) {
    const id = tile.dataset.participant;
    if (id === "me" || !state.participants.has(id) || !tile.isConnected) continue;
    tiles.push({
      participant: id,
      source: tile.classList.contains("screen") ? "screen" : "camera",
      // Device pixels: the server sends no simulcast layer taller than needed to fill this (docs/protocol.md).
      width: Math.min(8192, Math.round(tile.clientWidth * (window.devicePixelRatio || 1))),
      height: Math.min(8192, Math.round(tile.clientHeight * (window.devicePixelRatio || 1))),
    });
  }
  const frame = { type: "video_preferences", pinned, tiles: tiles.slice(0, 100) };
  const json = JSON.stringify(frame);
  if (json === state.prefsSent) return;
  state.prefsSent = json;
  send({ ...frame, ref: "video_preferences" });
}

function setTileStream(tile, tracks) {
  const video = tile.querySelector("video");
  const current = video.srcObject ? video.srcObject.getTracks() : [];
  const same = current.length === tracks.length && tracks.every((t) => current.includes(t));
  if (!same) {
    video.srcObject = tracks.length ? new MediaStream(tracks) : null;
    if (tracks.length) video.play().catch(onPlayRefused);
  }
  tile.classList.toggle("has-video", tracks.some((t) => t.kind === "video"));
}

// Only an autoplay refusal needs the user's click. An AbortError (the element's source was swapped before
// it started: a renegotiation, a re-mapped line) is routine and says nothing about sound being allowed.
function onPlayRefused(err) {
  if (isAutoplayRefusal(err)) offerSoundButton();
}

function offerSoundButton() {
  if ($("enable-sound")) return;
  const button = el("button", { type: "button", id: "enable-sound", class: "enable-sound", text: "Click to enable sound" });
  button.addEventListener("click", () => {
    for (const tile of state.tiles.values()) tile.querySelector("video").play().catch(() => {});
    for (const audio of state.pooledAudio.values()) audio.play().catch(() => {});
    button.remove();
  });
  $("call").append(button);
}

function fillTile(tile, p, { screen = false, videoOn = true } = {}) {
  const name = screen ? `${p.display_name} (screen)` : p.display_name + (tile.dataset.participant === "me" ? " (you)" : "");
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".avatar").textContent = initials(p.display_name);
  tile.setAttribute("aria-label", name);
  tile.querySelector(".flag-hand").hidden = screen || !p.hand_raised;
  tile.querySelector(".flag-muted").hidden = screen || !p.audio_muted;
  tile.classList.toggle("video-off", !screen && !videoOn);
  tile.classList.toggle("speaking", !screen && state.activeSpeaker === (tile.dataset.participant === "me" ? state.me?.participantId : tile.dataset.participant));
}

// A video the server pauses or lowers for our link (forwarded_tracks.bandwidth): an icon with a tooltip, and
// for a paused one a short label over the initials, so it never reads as "camera off".
function showBandwidthHint(tile, hint) {
  tile.dataset.bandwidth = hint ? hint.kind : "";
  const badge = tile.querySelector(".bandwidth-hint");
  badge.hidden = !hint;
  badge.title = hint?.text || "";
  badge.setAttribute("aria-label", hint?.text || "");
  badge.querySelector(".icon").className = `icon icon-bandwidth-${hint?.kind || "paused"}`;
  badge.querySelector(".bandwidth-text").textContent = hint?.kind === "paused" ? "Paused to save bandwidth" : "";
}

export function renderTiles() {
  if (state.phase !== "call" || !state.me) return;
  const grid = $("grid");
  const screenArea = $("screen-area");
  const wanted = new Set();
  const remote = state.remoteStreams || new Map();

  // me first
  const meKey = "me";
  wanted.add(meKey);
  const meTile = state.tiles.get(meKey) || makeTile(meKey, "me", false);
  const myVideo = state.local.videoTrack && (state.local.sentVideoTrack || state.local.videoTrack); // as sent: with its background effect
  setTileStream(meTile, myVideo ? [myVideo] : []);
  fillTile(meTile, { ...state.me, audio_muted: state.audioMuted, hand_raised: state.handRaised }, { videoOn: !!state.local.videoTrack });
  if (meTile.parentNode !== grid) grid.prepend(meTile);

  for (const [id, p] of state.participants) {
    wanted.add(id);
    const tile = state.tiles.get(id) || makeTile(id, id, false);
    const tracks = remote.get(id) || [];
    setTileStream(tile, tracks);
    // Not forwarded (last-N: not a recent speaker nor pinned): the avatar, as for a camera that is off.
    const forwarded = isForwarded(state.forwardedVideo, id, "camera");
    tile.dataset.forwarded = String(forwarded);
    tile.classList.toggle("pinned", state.pinned.includes(id));
    const pin = tile.querySelector(".pin");
    if (pin) {
      const pinnedNow = state.pinned.includes(id);
      pin.setAttribute("aria-pressed", String(pinnedNow));
      pin.textContent = pinnedNow ? "Unpin" : "Pin";
      pin.setAttribute("aria-label", `${pinnedNow ? "Unpin" : "Pin"} ${p.display_name}`);
    }
    fillTile(tile, p, { videoOn: forwarded && !p.video_muted && tracks.some((t) => t.kind === "video") });
    tile.classList.toggle("awaiting-frame", state.awaitingFrame.has(id)); // a re-mapped line: not their picture yet
    const hint = tileHint(state.bandwidth, id, "camera", { videoMuted: p.video_muted });
    showBandwidthHint(tile, hint);
    tile.title = hint?.text || (forwarded ? "" : "Video paused: only the most recent speakers and pinned people are shown");
    if (tile.parentNode !== grid) grid.append(tile);
  }
  // screens: mine (local preview) and others'
  if (state.sharing && state.local.screenStream) {
    const key = "me:screen";
    wanted.add(key);
    const tile = state.tiles.get(key) || makeTile(key, "me", true);
    setTileStream(tile, state.local.screenStream.getVideoTracks());
    fillTile(tile, state.me, { screen: true });
    if (tile.parentNode !== screenArea) screenArea.append(tile);
  }
  for (const [key, tracks] of remote) {
    if (!key.endsWith(":screen")) continue;
    const id = key.slice(0, -":screen".length);
    const p = state.participants.get(id);
    if (!p) continue;
    wanted.add(key);
    const tile = state.tiles.get(key) || makeTile(key, id, true);
    setTileStream(tile, tracks);
    fillTile(tile, p, { screen: true });
    tile.classList.toggle("awaiting-frame", state.awaitingFrame.has(key));
    const hint = tileHint(state.bandwidth, id, "screen");
    showBandwidthHint(tile, hint);
    tile.title = hint?.text || "";
    if (tile.parentNode !== screenArea) screenArea.append(tile);
  }
  for (const [key, tile] of state.tiles) {
    if (!wanted.has(key)) { tile.querySelector("video").srcObject = null; tile.remove(); state.tiles.delete(key); }
  }
  const screens = screenArea.children.length;
  screenArea.hidden = screens === 0;
  const stage = $("stage");
  stage.dataset.count = String(grid.children.length);
  stage.dataset.view = screens ? "screen" : state.view;
  const featured = featuredId({ pinned: state.pinned, participants: state.participants, activeSpeaker: state.activeSpeaker, meId: state.me?.participantId });
  for (const tile of grid.children) {
    const pid = tile.dataset.participant === "me" ? state.me.participantId : tile.dataset.participant;
    tile.classList.toggle("featured", state.view === "speaker" && !screens && pid === featured);
  }
  schedulePreferences(); // the layout may have changed: tile sizes for the server
}

export function removeTiles(participantId) {
  for (const key of [participantId, `${participantId}:screen`]) {
    state.tiles.get(key)?.remove();
    state.tiles.delete(key);
  }
}

/** Detach every tile's media (leaving). */
export function clearTiles() {
  for (const tile of state.tiles.values()) tile.querySelector("video").srcObject = null;
  syncPooledAudio(new Map());
}

export function setActiveSpeaker(frame) {
  state.activeSpeaker = frame.participantId;
  renderTiles();
}

// Pooled microphone lines (large rooms, docs/protocol.md forwarded_tracks): each plays from its own hidden
// <audio>, which stays put when the server re-maps the line to another talker (moving the track into that
// talker's tile would rebuild two tiles' streams mid-word). Who talks is shown from active_speaker.
export function syncPooledAudio(lines) {
  for (const [mid, audio] of state.pooledAudio) {
    if (lines.get(mid) === audio.srcObject?.getAudioTracks()[0]) continue;
    audio.srcObject = null;
    audio.remove();
    state.pooledAudio.delete(mid);
  }
  for (const [mid, track] of lines) {
    if (state.pooledAudio.has(mid)) continue;
    const audio = el("audio", { class: "pooled-audio", hidden: true, autoplay: true });
    audio.dataset.mid = mid;
    audio.srcObject = new MediaStream([track]);
    $("call").append(audio);
    state.pooledAudio.set(mid, audio);
    audio.play().catch(onPlayRefused);
  }
}
