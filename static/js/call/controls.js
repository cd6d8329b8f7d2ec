// Local media and the controls: pre-join preview and devices, mute/camera/screen share, the toolbar.

import { $, el, store, stored, toast } from "./dom.js";
import { effectSource, microphoneConstraints, outgoingTrack } from "./effects/index.js";
import { cameraSender, publishScreen, unpublishScreen } from "./media.js";
import { send } from "./socket.js";
import { mediaStateFields, state } from "./state.js";
import { renderTiles } from "./tiles.js";

// Settles once the pre-join getUserMedia did: "Join now" works before that (see startMedia).
let localReadyPromise = Promise.resolve();
export const localReady = () => localReadyPromise;
export function setLocalReady(promise) { localReadyPromise = promise; }

export async function acquireLocal() {
  const constraints = {
    audio: state.devices.microphone ? { deviceId: { exact: state.devices.microphone }, ...microphoneConstraints() } : microphoneConstraints(),
    video: state.devices.camera
      ? { deviceId: { exact: state.devices.camera }, width: { ideal: 1280 }, height: { ideal: 720 } }
      : { width: { ideal: 1280 }, height: { ideal: 720 } },
  };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(constraints);
  } catch (err) {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      $("join-error").textContent = "No camera available; you can join with audio only.";
    } catch {
      stream = new MediaStream();
      $("join-error").textContent = `Camera and microphone are unavailable (${err.name}). You can still join to listen and chat.`;
    }
  }
  for (const track of state.local.stream?.getTracks() || []) track.stop();
  state.local.stream = stream;
  state.local.audioTrack = stream.getAudioTracks()[0] || null;
  state.local.videoTrack = stream.getVideoTracks()[0] || null;
  if (state.local.audioTrack) state.local.audioTrack.enabled = !state.audioMuted;
  // No camera (denied, busy, or too slow to start on a loaded machine) is a camera that is off: the others are
  // told (video_muted), so they do not wait for camera packets that never come and resubscribe every 20 s.
  if (!state.local.videoTrack && !state.videoMuted) {
    state.videoMuted = true;
    syncControls();
  }
  if (state.videoMuted && state.local.videoTrack) {
    state.local.videoTrack.stop();
    stream.removeTrack(state.local.videoTrack);
    state.local.videoTrack = null;
  }
  // The background effect and noise suppression start on the new tracks before anything is sent (effects/).
  await effectSource("video", state.local.videoTrack);
  await effectSource("audio", state.local.audioTrack);
  showPreview();
  watchLevel();
  return stream;
}

export function showPreview() {
  const video = $("preview");
  const track = outgoingTrack("video"); // with its background effect, as the others see it
  if (video.srcObject?.getVideoTracks()[0] !== track) video.srcObject = track ? new MediaStream([track]) : null;
  $("preview-off").hidden = !!state.local.videoTrack;
  syncToggle($("pre-mic"), !state.audioMuted, "Microphone on (click to mute)", "Microphone off (click to unmute)");
  syncToggle($("pre-cam"), !state.videoMuted, "Camera on (click to turn off)", "Camera off (click to turn on)");
}

function syncToggle(button, on, onLabel, offLabel) {
  if (!button) return;
  button.setAttribute("aria-pressed", String(on));
  button.setAttribute("aria-label", on ? onLabel : offLabel);
  button.classList.toggle("off", !on);
}

let levelCtx = null;
function watchLevel() {
  const meter = $("mic-level");
  if (!meter || !state.local.audioTrack || !window.AudioContext) return;
  try {
    levelCtx?.close();
    levelCtx = new AudioContext();
    const analyser = levelCtx.createAnalyser();
    levelCtx.createMediaStreamSource(new MediaStream([state.local.audioTrack])).connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    const tick = () => {
      if (state.phase !== "prejoin" || !levelCtx) return;
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128) / 128);
      meter.value = state.audioMuted ? 0 : peak;
      requestAnimationFrame(tick);
    };
    tick();
  } catch { /* the meter is decoration */ }
}

/** The pre-join level meter stops (entering the call). */
export function stopLevel() {
  levelCtx?.close();
  levelCtx = null;
}

export async function fillDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  for (const [selectId, kind, key] of [["camera-select", "videoinput", "camera"], ["mic-select", "audioinput", "microphone"]]) {
    const select = $(selectId);
    if (!select) continue;
    const current = state.devices[key] || (key === "camera" ? state.local.videoTrack : state.local.audioTrack)?.getSettings().deviceId || "";
    select.replaceChildren();
    const list = devices.filter((d) => d.kind === kind);
    if (!list.length) select.append(el("option", { value: "", text: `No ${key} found` }));
    list.forEach((d, i) => select.append(el("option", { value: d.deviceId, text: d.label || `${key} ${i + 1}` })));
    if (current) select.value = current;
  }
}

export function sendMediaState() {
  send({ type: "media_state", ...mediaStateFields() });
}

export function setAudioMuted(muted) {
  state.audioMuted = muted;
  if (state.local.audioTrack) state.local.audioTrack.enabled = !muted;
  syncControls();
  if (state.phase === "call") { send({ type: "media_state", audio_muted: muted }); renderTiles(); }
  rememberToggles();
}

export async function setVideoMuted(muted) {
  state.videoMuted = muted;
  if (muted) {
    // Stop the camera (its light goes off) and stop sending video.
    const track = state.local.videoTrack;
    state.local.videoTrack = null;
    if (track) { track.stop(); state.local.stream?.removeTrack(track); }
    await cameraSender("video")?.replaceTrack(null);
    await effectSource("video", null);
  } else {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: state.devices.camera ? { deviceId: { exact: state.devices.camera } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
      });
      const track = stream.getVideoTracks()[0];
      state.local.videoTrack = track;
      state.local.stream?.addTrack(track);
      const transceiver = state.pcs.camera?.getTransceivers().find((t) => t.receiver.track?.kind === "video");
      const sent = await effectSource("video", track);
      if (transceiver) await transceiver.sender.replaceTrack(sent);
    } catch (err) {
      state.videoMuted = true;
      toast(`Camera unavailable: ${err.message}`);
    }
  }
  syncControls();
  if (state.phase === "prejoin") showPreview();
  if (state.phase === "call") { send({ type: "media_state", video_muted: state.videoMuted }); renderTiles(); }
  rememberToggles();
}

function rememberToggles() {
  const saved = stored();
  if (saved) store({ ...saved, audioMuted: state.audioMuted, videoMuted: state.videoMuted });
}

export async function startScreenShare() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (err) {
    if (err.name !== "NotAllowedError") toast(`Screen sharing failed: ${err.message}`);
    return;
  }
  state.local.screenStream = stream;
  state.sharing = true;
  stream.getVideoTracks()[0].addEventListener("ended", () => stopScreenShare());
  syncControls();
  send({ type: "media_state", screen_sharing: true });
  renderTiles();
  publishScreen();
}

export function stopScreenShare() {
  if (!state.sharing) return;
  state.sharing = false;
  for (const track of state.local.screenStream?.getTracks() || []) track.stop();
  state.local.screenStream = null;
  unpublishScreen();
  send({ type: "media_state", screen_sharing: false });
  syncControls();
  renderTiles();
}

export function syncControls() {
  const set = (id, pressed, label) => {
    const button = $(id);
    button.setAttribute("aria-pressed", String(pressed));
    button.querySelector(".label").textContent = label;
    button.classList.toggle("active", pressed);
  };
  set("btn-mic", state.audioMuted, state.audioMuted ? "Unmute" : "Mute");
  $("btn-mic").classList.toggle("off", state.audioMuted);
  set("btn-cam", state.videoMuted, state.videoMuted ? "Start video" : "Stop video");
  $("btn-cam").classList.toggle("off", state.videoMuted);
  set("btn-screen", state.sharing, state.sharing ? "Stop sharing" : "Share screen");
  set("btn-hand", state.handRaised, state.handRaised ? "Lower hand" : "Raise hand");
  set("btn-view", state.view === "speaker", state.view === "speaker" ? "Grid view" : "Speaker view");
  $("btn-screen").hidden = !navigator.mediaDevices?.getDisplayMedia;
  showPreview();
}
