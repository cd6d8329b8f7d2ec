// Recording (issue 6): the indicator everyone sees, the Record button of hosts and moderators.
//
// The "● REC" badge follows the snapshot's `recording_state` (late joiners see it) and the
// `recording_state` frames; Record / Stop call the REST API with the session cookie + CSRF
// token, like the join does. E2EE rooms have no button (the server refuses: recording_e2ee).

import { apiPost } from "./api.js";
import { $, config, isModerator, toast } from "./dom.js";
import { state } from "./state.js";

const RECORDING_MINUTES = 240; // the server stops a recording at this limit
const RECORDING_ACTIVE = new Set(["pending", "recording"]);

function recordingAnnounce(text) {
  const live = $("rec-live");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50); // a fresh node text is announced again
}

// `rs` is a recording_state frame or the snapshot's {recordingId, status}.
export function onRecordingState(rs, { snapshot = false } = {}) {
  if (!rs || typeof rs.status !== "string") return;
  const current = state.recording;
  const wasActive = RECORDING_ACTIVE.has(current.status);
  // A late frame about an older recording (e.g. its processing finished) must not hide the running one.
  if (!snapshot && wasActive && rs.recordingId !== current.recordingId && !RECORDING_ACTIVE.has(rs.status)) return;
  state.recording = { recordingId: rs.recordingId || null, status: rs.status, reason: rs.reason || null };
  const active = rs.status === "recording";
  if (active && (snapshot || current.status !== "recording")) recordingAnnounce("This meeting is being recorded");
  else if (!active && current.status === "recording" && !snapshot) {
    if (rs.status === "failed") {
      recordingAnnounce("Recording stopped: it failed");
      if (isModerator()) toast(`The recording failed${rs.reason ? ` (${rs.reason})` : ""}.`);
    } else {
      recordingAnnounce("Recording stopped");
    }
  }
  syncRecording();
}

export function syncRecording() {
  const status = state.recording.status;
  $("rec-badge").hidden = status !== "recording";
  $("app").dataset.recording = status;
  const button = $("btn-record");
  if (!button) return;
  button.hidden = !isModerator() || !!config.e2ee;
  const on = RECORDING_ACTIVE.has(status);
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("active", on);
  button.querySelector(".label").textContent = on ? "Stop recording" : "Record";
  button.title = on ? "Stop recording this meeting" : "Record this meeting (everyone in it is told)";
}

export async function toggleRecording() {
  const button = $("btn-record");
  if (!button || button.disabled) return;
  const stopping = RECORDING_ACTIVE.has(state.recording.status) && state.recording.recordingId;
  button.disabled = true;
  try {
    if (stopping) {
      const data = await apiPost(`/api/v1/recordings/${encodeURIComponent(state.recording.recordingId)}/stop`);
      onRecordingState({ recordingId: data.recordingId, status: data.status, reason: data.failure_reason });
      toast("Recording stopped. It will be on the Recordings page when it is processed.");
    } else {
      const data = await apiPost(`/api/v1/rooms/${config.roomId}/record`, { duration_minutes: RECORDING_MINUTES });
      onRecordingState({ recordingId: data.recordingId, status: "recording" });
    }
  } catch (err) {
    console.warn("recording", stopping ? "stop" : "start", "failed:", err.code, err.message);
    toast(`${stopping ? "Could not stop the recording" : "Could not start recording"}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}
