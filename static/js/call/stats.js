// Connection quality (getStats every 2 s): the quality badge, and the samples the stall check reads.

import { $ } from "./dom.js";
import { checkSilentTracks } from "./media.js";
import { inboundByMid } from "./stall.js";
import { state } from "./state.js";

export function startStats() {
  stopStats();
  state.statsTimer = setInterval(sampleStats, 2000);
}

export function stopStats() {
  clearInterval(state.statsTimer);
  state.statsTimer = null;
}

async function sampleStats() {
  let rtt = null;
  let lost = 0;
  let received = 0;
  let fps = null;
  let packetsByMid = new Map();
  let framesByMid = new Map();
  for (const [name, pc] of Object.entries(state.pcs)) {
    let report;
    try { report = await pc.getStats(); } catch { continue; }
    if (name === "subscribe") [packetsByMid, framesByMid] = inboundByMid(report);
    for (const s of report.values()) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated && typeof s.currentRoundTripTime === "number") {
        rtt = Math.max(rtt ?? 0, s.currentRoundTripTime);
      } else if (s.type === "inbound-rtp") {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (s.kind === "video" && typeof s.framesPerSecond === "number") fps = Math.max(fps ?? 0, s.framesPerSecond);
      }
    }
  }
  const prev = state.prevStats || { lost: 0, received: 0 };
  const dLost = Math.max(0, lost - prev.lost);
  const dRecv = Math.max(0, received - prev.received);
  state.prevStats = { lost, received };
  const lossPct = dLost + dRecv ? (100 * dLost) / (dLost + dRecv) : 0;
  let level = "good";
  if (!state.wsOpen) level = "poor";
  else if ((rtt ?? 0) > 0.4 || lossPct > 8) level = "poor";
  else if ((rtt ?? 0) > 0.15 || lossPct > 2 || (fps !== null && fps < 10)) level = "fair";
  const text = `Connection ${level}: ${rtt === null ? "RTT unknown" : `RTT ${Math.round(rtt * 1000)} ms`}, loss ${lossPct.toFixed(1)}%${fps === null ? "" : `, ${Math.round(fps)} fps`}`;
  checkSilentTracks(packetsByMid, framesByMid);
  const node = $("quality");
  node.dataset.level = level;
  node.title = text;
  $("quality-text").textContent = text;
}
