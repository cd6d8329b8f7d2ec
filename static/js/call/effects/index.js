// Background effects and noise suppression: the pickers (pre-join and in call), the two pipelines
// (pipeline.js) and the one place where the tracks they output replace what the camera connection sends
// (RTCRtpSender.replaceTrack: no renegotiation). docs/architecture.md "Background effects and noise suppression".

import { $, el, toast } from "../dom.js";
import { cameraSender } from "../media.js";
import { state } from "../state.js";
import { renderTiles } from "../tiles.js";
import { startNoiseSuppression, rnnoiseSupported } from "./audio.js";
import { EffectPipeline } from "./pipeline.js";
import { audioProcessing, loadEffects, NOISE_MODES, saveEffects, VIDEO_EFFECTS } from "./settings.js";
import { startVideoEffect } from "./video.js";

const storage = (() => { try { return window.localStorage; } catch { return null; } })();
export const effects = { settings: loadEffects(storage), video: null, audio: null };
state.effects = effects; // diagnostics (window.conferenceCall.effects)

function videoSupported() {
  return !!(window.WebAssembly && (window.OffscreenCanvas || document.createElement("canvas").captureStream));
}

async function sendTrack(kind, track) {
  const sender = cameraSender(kind) || state.pcs.camera?.getTransceivers().find((t) => t.receiver.track?.kind === kind)?.sender;
  if (sender && sender.track !== track) await sender.replaceTrack(track).catch((err) => console.warn("effects: replaceTrack", err));
}

effects.video = new EffectPipeline({
  start: startVideoEffect,
  onOutput: (track) => {
    state.local.sentVideoTrack = track;
    showPreviewTrack(track);
    if (state.phase === "call") renderTiles();
    sendTrack("video", track);
  },
  onError: (err) => {
    console.warn("effects: background effect unavailable", err);
    toast("The background effect is unavailable in this browser.");
    choose("video", "off");
  },
});

effects.audio = new EffectPipeline({
  start: (source) => startNoiseSuppression(source),
  onOutput: (track) => {
    state.local.sentAudioTrack = track;
    sendTrack("audio", track);
  },
  onError: (err) => {
    console.warn("effects: RNNoise unavailable", err);
    toast("RNNoise noise suppression is unavailable; using the browser's.");
    choose("noise", "browser");
  },
});

const pipelineEffect = { video: () => effects.settings.video, audio: () => (effects.settings.noise === "rnnoise" ? "rnnoise" : "off") };

/** The track to send for `kind`: the effect's output for the current camera/microphone track, or that track. */
export function outgoingTrack(kind) {
  const raw = kind === "video" ? state.local.videoTrack : state.local.audioTrack;
  const pipeline = kind === "video" ? effects.video : effects.audio;
  return raw && pipeline.source === raw && pipeline.output ? pipeline.output : raw;
}

/** The camera or microphone track changed (or went away): run the effect on the new one. Resolves with the track to send. */
export async function effectSource(kind, track) {
  const pipeline = kind === "video" ? effects.video : effects.audio;
  return pipeline.use(track, pipelineEffect[kind]());
}

/** getUserMedia audio constraints the noise setting asks for (merged into the microphone's). */
export function microphoneConstraints() {
  return audioProcessing(effects.settings.noise);
}

function showPreviewTrack(track) {
  const preview = $("preview");
  if (!preview || state.phase !== "prejoin") return;
  const current = preview.srcObject?.getVideoTracks()[0] || null;
  if (current !== track) preview.srcObject = track ? new MediaStream([track]) : null;
}

// The microphone is opened again when the browser's own suppression is switched: Chromium applies audio
// processing constraints when a track is opened, not to a live track.
async function reopenMicrophone() {
  const old = state.local.audioTrack;
  if (!old || !navigator.mediaDevices?.getUserMedia) return;
  const constraints = { ...microphoneConstraints() };
  if (state.devices.microphone) constraints.deviceId = { exact: state.devices.microphone };
  let track;
  try {
    track = (await navigator.mediaDevices.getUserMedia({ audio: constraints })).getAudioTracks()[0];
  } catch (err) {
    toast(`Microphone unavailable: ${err.message}`);
    return;
  }
  track.enabled = old.enabled;
  state.local.audioTrack = track;
  state.local.stream?.removeTrack(old);
  state.local.stream?.addTrack(track);
  await sendTrack("audio", await effectSource("audio", track));
  old.stop();
}

async function choose(what, value) {
  const before = effects.settings;
  effects.settings = saveEffects(storage, { ...before, [what]: value });
  syncPickers();
  if (what === "video") {
    await effects.video.use(state.local.videoTrack, effects.settings.video);
  } else if (before.noise !== effects.settings.noise) {
    const browserChanged = audioProcessing(before.noise).noiseSuppression !== microphoneConstraints().noiseSuppression;
    await effects.audio.use(state.local.audioTrack, pipelineEffect.audio());
    if (browserChanged) await reopenMicrophone();
  }
}

function syncPickers() {
  for (const select of document.querySelectorAll("[data-effect-picker]")) {
    const what = select.dataset.effectPicker;
    const value = effects.settings[what];
    if (select.value !== value) select.value = value;
    select.closest("label, .effect-field")?.setAttribute("data-effect", value);
  }
}

function fill(select, options) {
  select.replaceChildren(...options.map((o) => el("option", { value: o.value, text: o.label })));
}

/** Fill and wire the pickers (pre-join and in call); called once by main.js. */
export function wireEffects() {
  for (const select of document.querySelectorAll("[data-effect-picker]")) {
    const what = select.dataset.effectPicker;
    if (what === "video") {
      fill(select, VIDEO_EFFECTS);
      select.disabled = !videoSupported();
    } else {
      fill(select, NOISE_MODES.filter((m) => m.value !== "rnnoise" || rnnoiseSupported()));
    }
    select.addEventListener("change", () => choose(what, select.value));
  }
  const button = $("btn-effects");
  const menu = $("effects-menu");
  button?.addEventListener("click", () => {
    menu.hidden = !menu.hidden;
    button.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("select")?.focus();
  });
  menu?.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.stopPropagation(); menu.hidden = true; button.setAttribute("aria-expanded", "false"); button.focus(); }
  });
  if (!rnnoiseSupported() && effects.settings.noise === "rnnoise") effects.settings = { ...effects.settings, noise: "browser" };
  if (!videoSupported()) effects.settings = { ...effects.settings, video: "off" };
  syncPickers();
}
