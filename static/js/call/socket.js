// The room socket (docs/protocol.md §1): connect, join, requests with refs, and reconnect with
// jittered backoff after anything but a terminal close. No DOM: the page registers its hooks
// (configureSocket), so this module runs under `node --test` with a fake WebSocket.

import { Backoff } from "./backoff.js";
import { dispatchFrame } from "./dispatch.js";
import { PROTOCOL, state } from "./state.js";

/** Close codes after which the client must not come back (docs/protocol.md "Close codes"), with what the user is told. */
export const TERMINAL_CLOSES = {
  4003: "You are not allowed in this room.",
  4004: "This room does not exist.",
  4005: "You joined this meeting from another tab or window.",
  4009: "You were removed from the meeting.",
  4010: "The meeting has ended.",
  4011: "The host did not let you in.",
  4013: "The meeting is full.",
};

export const REQUEST_TIMEOUT_MS = 15000;

// Socket rejoins: 0.5 s, 1 s, 2 s … capped at 10 s, ±25 %.
export const reconnectBackoff = new Backoff({ baseMs: 500, capMs: 10000 });

const hooks = {
  handlers: {}, // frame type -> handler (frames.js)
  joinFrame: () => ({}), // extra fields of the `join` frame
  rejoin: async () => state.grant, // a fresh grant for a reconnect (REST join)
  onReconnecting: () => {}, // (attempt) the socket is down, a retry is scheduled
  onTerminal: () => {}, // (message, reason) a close or rejoin refusal after which we stop
};

/** Register the page's handlers (see main.js). */
export function configureSocket(overrides) {
  Object.assign(hooks, overrides);
}

/** What a close means: "ignore" (we are leaving), "terminal" (stop), or "retry" (reconnect with backoff). */
export function closeAction(code, { leaving = false, phase = "call" } = {}) {
  if (leaving || phase === "ended") return "ignore";
  if (TERMINAL_CLOSES[code]) return "terminal";
  return "retry"; // network, server restart, heartbeat, bad/expired token: rejoin with backoff
}

/** Whether a failed REST rejoin is final (a 4xx other than 429), not an outage to wait out. */
export function rejoinRefused(err) {
  return !!err.status && err.status < 500 && err.status !== 429;
}

// A grant's token may join again while it lives (docs/protocol.md "Connecting"): a scout adopted after a network
// change joins with it at once instead of asking for a new grant first, unless it expires within this margin.
export const GRANT_MARGIN_MS = 30000;

/** Whether `grant`'s token can still join (it was received `receivedAt`, lives `token_expires_in` seconds). */
export function grantFresh(grant, now) {
  const lifeMs = Number(grant?.token_expires_in) * 1000;
  return !!grant?.token && Number.isFinite(lifeMs) && !!grant.receivedAt && now - grant.receivedAt < lifeMs - GRANT_MARGIN_MS;
}

/** Open the room socket and join on it. `existing`: an already open socket to join on (an adopted scout). */
export function openSocket(existing = null) {
  clearTimeout(state.reconnectTimer);
  const ws = existing || new WebSocket(state.grant.ws_url);
  state.ws = ws;
  const join = () => {
    state.wsOpen = true;
    ws.joined = false; // until its room_snapshot (socketJoined)
    const frame = { type: "join", token: state.grant.token, protocol: PROTOCOL, ...hooks.joinFrame() };
    if (state.lastSeq !== null) frame.last_seq = state.lastSeq;
    ws.send(JSON.stringify(frame));
  };
  ws.onopen = () => {
    ws.openedAt = Date.now();
    if (state.ws === ws) join();
  };
  ws.onmessage = (event) => {
    if (state.ws !== ws) return;
    ws.lastFrameAt = Date.now();
    if (scout?.old === ws) dropScout(); // it answered: alive, the scout is not needed
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    try { dispatchFrame(frame, { refs: state.refs, handlers: hooks.handlers }); } catch (err) { console.error("frame handling failed", frame.type, err); }
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    console.info("socket: closed", event.code, event.reason || "", "after", ws.openedAt ? Date.now() - ws.openedAt : "-", "ms open");
    if (event.code === 4005 && Date.now() < staleJoinUntil) { // our own late join, not another tab (see below)
      staleJoinUntil = 0;
      console.warn("socket: replaced by the join of a socket this page had given up - rejoining");
      socketGone(4000, { immediate: true });
      return;
    }
    socketGone(event.code);
  };
  if (existing) join();
  return ws;
}

function socketGone(code, options) {
  dropScout();
  state.wsOpen = false;
  state.ws = null;
  for (const { reject } of state.refs.values()) reject(new Error("socket closed"));
  state.refs.clear();
  onSocketClosed(code, options);
}

// A network change (a new address, another Wi-Fi) leaves the TCP connection under the socket dangling:
// no close, no error, for minutes, and every request on it times out. When the page sees a sign of one
// (nothing arriving on the media path, a media connection `disconnected` or `failed`, the browser back
// `online`, `navigator.connection` changing) it asks the server for a `pong` and, at the same moment, opens
// a second socket, the scout, over whatever path works now. The first to answer decides:
// * anything from the old socket: it is alive (a quiet room, a slow server); the scout is closed unused;
// * the scout opens (the server answered its handshake over the current path) and the old socket stays
//   silent for scoutGraceMs longer, with no earlier request of ours still unanswered on it (see
//   startScout): the old one is given up and the participant rejoins on the scout
//   (with the grant's token while it lives, else a REST rejoin first). The grace grows with the time the
//   scout took to open, so a loaded server, slow on both sockets alike, does not look like a dead path;
// * a scout that cannot connect (the sign came before the new path was usable: the browser reports the new
//   address before the route to it is in place) is tried again after SCOUT_RETRY_MS while the probe waits;
// * neither (the server is down too): the old socket is given up after PROBE_TIMEOUT_MS without a pong
//   and the rejoin goes through the usual backoff.
// A socket given up is not closed: one that was only slow stays open until the new one's join replaces it
// on the server (close 4005, seat kept), so others never see a leave; it is closed after that join.
// PROBE_TIMEOUT_MS is long enough for a loaded server (at load 28 here, pongs took over 1 s).
// A socket whose `join` is still unanswered (a rejoin the server is busy with) is not given up for a scout
// that opened sooner: like an unanswered request, only the probe's timeout decides. A socket given up with
// its join unanswered may still join on the server after its successor did (the server handles each socket's
// frames in their own order), and that late join replaces the successor, closed 4005 as if another tab had
// joined: within STALE_JOIN_MS of giving up such a socket, one 4005 is taken for that and the page rejoins
// at once instead of stopping (browser run beside a CPU hog: a rejoin on a scout, the stall check probing the
// new socket before its snapshot, a second scout adopted, then the first scout's join ended the call).
export const PROBE_TIMEOUT_MS = 4000;
export const STALE_JOIN_MS = 30000;
export const SCOUT_GRACE_MIN_MS = 150;
export const SCOUT_GRACE_MAX_MS = 2000;
export const SCOUT_RETRY_MS = [250, 500, 1000]; // a scout that could not connect, again after these (then the timeout)
let probing = null; // the socket being probed
let abandoned = null; // a socket given up, closed once its successor joined
let scout = null; // {ws, old, sentAt, openMs, timer}: the second socket of a probe (see above)
let staleJoinUntil = 0; // a socket given up with its join unanswered: a 4005 before this is our own late join

/** How long the old socket may still answer once the scout opened `openMs` after the probe. */
export function scoutGraceMs(openMs) {
  return Math.min(SCOUT_GRACE_MAX_MS, Math.max(SCOUT_GRACE_MIN_MS, Math.round(openMs)));
}

function dropScout() {
  if (!scout) return;
  const { ws } = scout;
  clearTimeout(scout.timer);
  scout = null;
  ws.onclose = ws.onerror = null;
  // Still connecting: closed once open (closing it now makes the browser log a failed connection).
  if (ws.readyState === 0) ws.onopen = () => ws.close();
  else { ws.onopen = null; ws.close(); }
}

// `queued`: refs of requests sent before the ping. The server handles a socket's frames one at a time, and
// an `offer` or `subscribe` waits for the media server (seconds when it is loaded or gone): while one of
// them is unanswered, a late pong is no sign of a dead path, and only the probe's timeout gives the socket up.
function startScout(old, sentAt, queued, retry = 0) {
  dropScout();
  let ws;
  try { ws = new WebSocket(state.grant.ws_url); } catch { return; }
  const startedAt = Date.now();
  const mine = { ws, old, sentAt, openMs: null, timer: null };
  scout = mine;
  ws.onopen = () => {
    if (scout !== mine) return;
    mine.openMs = Date.now() - startedAt; // its own handshake: the grace scales with how slow the server is
    mine.timer = setTimeout(() => {
      if (scout !== mine || old.joined === false || queued.some((ref) => state.refs.has(ref))) return;
      adoptScout(`no pong in ${Date.now() - sentAt} ms while a new socket opened in ${mine.openMs} ms`);
    }, scoutGraceMs(mine.openMs));
  };
  ws.onclose = () => {
    if (scout !== mine) return;
    clearTimeout(mine.timer);
    scout = null;
    // It could not connect: maybe not yet (see above). Again while the probe still waits; else its timeout decides.
    if (mine.openMs !== null || retry >= SCOUT_RETRY_MS.length) return;
    setTimeout(() => {
      if (!scout && probing === old && state.ws === old && !state.leaving) startScout(old, sentAt, queued, retry + 1);
    }, SCOUT_RETRY_MS[retry]);
  };
}

// The old socket is dead and the scout is open: rejoin on the scout (no new handshake to wait for).
function adoptScout(why) {
  const { ws, old } = scout;
  clearTimeout(scout.timer);
  scout = null;
  ws.onopen = ws.onclose = ws.onerror = null;
  if (state.ws !== old || state.leaving) { ws.close(); return; }
  console.warn("socket:", why, "- rejoining on the new one");
  abandon(old);
  state.wsOpen = false;
  state.ws = null;
  for (const { reject } of state.refs.values()) reject(new Error("socket closed"));
  state.refs.clear();
  reconnectBackoff.attempt += 1;
  state.reconnectAttempt = reconnectBackoff.attempt;
  hooks.onReconnecting(state.reconnectAttempt, 0);
  reconnect(ws);
}

// Given up: left open until the successor's join replaced it on the server (see above).
function abandon(ws) {
  abandoned?.close();
  abandoned = ws;
  if (ws.joined === false) staleJoinUntil = Date.now() + STALE_JOIN_MS;
}

/** The media path delivers again while the socket is probed: the network is there. The scout is closed unused
 * and only the probe's timeout can give the socket up. On a link the call overruns (a 100 kbit/s downlink its
 * audio fills), one lost TCP segment holds the pong back for a retransmission timeout (200 ms at least) while
 * a fresh socket's handshake gets through: the scout won every ~12 s and each rejoin rebuilt every
 * connection, whose start burst overran the link again (tests/e2e/test_bandwidth_ui.py, docs/benchmarks.md §2b). */
export function pathAlive() {
  if (probing && scout?.old === probing) dropScout();
}

/** Check that the socket still answers; give it up when nothing comes back (see above). */
export function probeSocket(timeoutMs = PROBE_TIMEOUT_MS) {
  const ws = state.ws;
  if (!ws || !state.wsOpen || probing === ws || state.leaving) return;
  probing = ws;
  const sentAt = Date.now();
  startScout(ws, sentAt, [...state.refs.keys()]);
  request({ type: "ping" }, timeoutMs).then(
    () => { if (probing === ws) probing = null; },
    (err) => {
      if (probing === ws) probing = null;
      if (err.code !== "timeout" || state.ws !== ws || (ws.lastFrameAt || 0) >= sentAt) return; // slow, not dead
      giveUpSocket(`no pong in ${timeoutMs} ms`);
    },
  );
}

/** Rejoin on a new socket now, leaving the current one open until the new join replaces it (see above). */
export function giveUpSocket(why) {
  const ws = state.ws;
  if (!ws || state.leaving) return;
  if (scout?.openMs != null && scout.old === ws) { adoptScout(why); return; } // one is open already
  dropScout();
  console.warn("socket:", why, "- rejoining on a new one");
  abandon(ws);
  socketGone(4000, { immediate: true }); // as after a heartbeat timeout, but no wait: it worked until now
}

/** Send a frame if the socket is open. Returns whether it was sent. */
export function send(frame) {
  if (!state.ws || !state.wsOpen) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

/** Send a frame with a fresh `ref`; resolves with the reply, rejects with an error frame (code, retryAfter), a timeout or a close. */
export function request(frame, timeoutMs = REQUEST_TIMEOUT_MS) {
  const ref = `r${state.nextRef++}`;
  return new Promise((resolve, reject) => {
    if (!state.ws || !state.wsOpen) {
      const error = new Error("socket closed");
      error.code = "socket_closed";
      reject(error);
      return;
    }
    const timer = setTimeout(() => {
      if (state.refs.delete(ref)) {
        const error = new Error(`${frame.type} timed out`);
        error.code = "timeout";
        reject(error);
      }
    }, timeoutMs);
    state.refs.set(ref, {
      resolve: (value) => { clearTimeout(timer); resolve(value); },
      reject: (error) => { clearTimeout(timer); reject(error); },
    });
    send({ ...frame, ref });
  });
}

/** The join succeeded (room_snapshot): the next outage starts the backoff from its first step. */
export function socketJoined() {
  if (state.ws) state.ws.joined = true;
  reconnectBackoff.reset();
  state.reconnectAttempt = 0;
  abandoned?.close(); // the server replaced it with this one
  abandoned = null;
}

/** `immediate`: rejoin now (a socket given up by probeSocket) instead of after the backoff delay. */
export function onSocketClosed(code, { immediate = false } = {}) {
  const action = closeAction(code, state);
  if (action === "ignore") return;
  if (action === "terminal") {
    hooks.onTerminal(TERMINAL_CLOSES[code], code === 4009 ? "removed" : code === 4010 ? "ended" : "closed");
    return;
  }
  const delay = immediate ? 0 : reconnectBackoff.next();
  if (immediate) reconnectBackoff.attempt += 1;
  state.reconnectAttempt = reconnectBackoff.attempt;
  hooks.onReconnecting(state.reconnectAttempt, delay);
  state.reconnectTimer = setTimeout(reconnect, delay);
}

/** `ready`: an open socket to join on (an adopted scout), with the current grant while its token lives. */
async function reconnect(ready = null) {
  let open = ready;
  if (open) open.onclose = () => { open = null; }; // lost before the join: a new socket after all
  const quit = () => { if (open) { open.onclose = null; open.close(); } };
  if (state.leaving || state.phase === "ended") { quit(); return; }
  try {
    if (!(open && grantFresh(state.grant, Date.now()))) state.grant = await hooks.rejoin();
  } catch (err) {
    quit();
    if (rejoinRefused(err)) {
      const removed = err.code === "removed_from_room";
      hooks.onTerminal(removed ? "You were removed from the meeting." : err.message, removed ? "removed" : "closed");
      return;
    }
    onSocketClosed(1006);
    return;
  }
  if (state.leaving || state.phase === "ended") { quit(); return; }
  openSocket(open);
}

/** Close the socket on purpose (leave, end): no reconnect follows. */
export function closeSocket(code = 1000) {
  clearTimeout(state.reconnectTimer);
  dropScout();
  if (!state.ws) return;
  const ws = state.ws;
  state.ws = null;
  state.wsOpen = false;
  ws.close(code);
}
