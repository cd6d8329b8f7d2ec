// socket.js with a fake WebSocket and Node's mock timers: join frame, requests, close handling, rejoin backoff.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.closed = code; }
  // test side
  open() { this.onopen(); }
  receive(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
  drop(code = 1006) { this.onclose({ code }); }
}
globalThis.WebSocket = FakeSocket;
mock.timers.enable({ apis: ["setTimeout"] }); // for the whole file: Node 20's mock clock does not survive reset()

const { state } = await import("../../static/js/call/state.js");
const socket = await import("../../static/js/call/socket.js");

async function settle() {
  for (let j = 0; j < 10; j += 1) await Promise.resolve();
}

/** An open socket whose join was answered (its room_snapshot came: the page is in the call). */
function joinedSocket() {
  const ws = socket.openSocket();
  ws.open();
  socket.socketJoined();
  return ws;
}

/** Long after the probe: the old socket is still the page's, and the scout was closed without a frame sent. */
async function assertKeptScoutUnused(ws, scout) {
  mock.timers.tick(5000);
  await settle();
  assert.equal(state.ws, ws);
  assert.notEqual(scout.closed, null);
  assert.deepEqual(scout.sent, []);
}

/** Rejoins get a new grant; returns the list of terminal messages (the call stopped) as they come. */
function recordTerminal() {
  const terminal = [];
  socket.configureSocket({
    onReconnecting: () => {},
    onTerminal: (message) => terminal.push(message),
    rejoin: async () => ({ ws_url: "ws://new/", token: "t2" }),
  });
  return terminal;
}

function reset() {
  state.phase = "ended"; // whatever an earlier test left scheduled runs now, and does nothing
  mock.timers.tick(3_600_000);
  FakeSocket.all = [];
  Object.assign(state, { phase: "call", leaving: false, ws: null, wsOpen: false, lastSeq: null, refs: new Map(), grant: { ws_url: "ws://x/", token: "t1" } });
  socket.reconnectBackoff.reset();
}

test("the join frame carries the token, the protocol, the chat position and the hook's extra fields", () => {
  reset();
  state.lastSeq = 7;
  socket.configureSocket({ joinFrame: () => ({ rejoin_token: "rt" }) });
  const ws = socket.openSocket();
  ws.open();
  assert.deepEqual(ws.sent[0], { type: "join", token: "t1", protocol: 1, rejoin_token: "rt", last_seq: 7 });
  socket.configureSocket({ joinFrame: () => ({}) });
});

test("frames go through the handler table; a reply resolves its request", async () => {
  reset();
  const seen = [];
  socket.configureSocket({ handlers: { ping: () => seen.push("ping") } });
  const ws = socket.openSocket();
  ws.open();
  const reply = socket.request({ type: "subscribe" });
  const ref = ws.sent.at(-1).ref;
  ws.receive({ type: "ping" });
  ws.receive({ type: "offer", ref, sdp: null });
  assert.equal((await reply).sdp, null);
  assert.deepEqual(seen, ["ping"]);
});

test("a request fails at once without a socket, and on close", async () => {
  reset();
  await assert.rejects(socket.request({ type: "subscribe" }), (e) => e.code === "socket_closed");
  {
    socket.configureSocket({ onReconnecting: () => {}, rejoin: () => new Promise(() => {}) });
    const ws = socket.openSocket();
    ws.open();
    const pending = socket.request({ type: "subscribe" });
    ws.drop(1006);
    await assert.rejects(pending, /socket closed/);
    assert.equal(state.wsOpen, false);
  }
});

test("a request times out", async () => {
  reset();
  {
    const ws = socket.openSocket();
    ws.open();
    const pending = socket.request({ type: "subscribe" }, 1000);
    mock.timers.tick(1001);
    await assert.rejects(pending, (e) => e.code === "timeout");
  }
});

test("close codes: terminal ones stop, others reconnect, leaving ignores", () => {
  assert.equal(socket.closeAction(4009), "terminal");
  assert.equal(socket.closeAction(4005), "terminal");
  assert.equal(socket.closeAction(1006), "retry");
  assert.equal(socket.closeAction(4001), "retry");
  assert.equal(socket.closeAction(1006, { leaving: true }), "ignore");
  assert.equal(socket.closeAction(1006, { phase: "ended" }), "ignore");
  assert.equal(socket.rejoinRefused({ status: 403 }), true);
  assert.equal(socket.rejoinRefused({ status: 429 }), false);
  assert.equal(socket.rejoinRefused({ status: 503 }), false);
  assert.equal(socket.rejoinRefused(new TypeError("fetch failed")), false);
});

test("an outage is retried with growing delays until a rejoin works, then the backoff starts over", async () => {
  reset();
  const attempts = [];
  let down = 2;
  socket.configureSocket({
    onReconnecting: (attempt, delay) => attempts.push([attempt, delay]),
    rejoin: async () => {
      if (down-- > 0) { const e = new TypeError("fetch failed"); throw e; }
      return { ws_url: "ws://y/", token: "t2" };
    },
  });
  {
    socket.openSocket().drop(1006);
    for (let i = 0; i < 3; i += 1) {
      mock.timers.tick(20000);
      await settle();
    }
    assert.deepEqual(attempts.map(([a]) => a), [1, 2, 3]);
    assert.ok(attempts[0][1] >= 375 && attempts[0][1] <= 625);
    assert.ok(attempts[2][1] >= 1500 && attempts[2][1] <= 2500);
    const ws = FakeSocket.all.at(-1);
    assert.equal(ws.url, "ws://y/");
    socket.socketJoined();
    assert.equal(socket.reconnectBackoff.attempt, 0);
  }
});

test("a refused rejoin (removed) ends the call instead of retrying", async () => {
  reset();
  const ended = [];
  socket.configureSocket({
    onReconnecting: () => {},
    onTerminal: (message, reason) => ended.push(reason),
    rejoin: async () => { const e = new Error("no"); e.status = 403; e.code = "removed_from_room"; throw e; },
  });
  {
    socket.openSocket().drop(1006);
    mock.timers.tick(1000);
    await settle();
    assert.deepEqual(ended, ["removed"]);
  }
});

test("a socket that answers the probe is kept", async () => {
  reset();
  const ws = joinedSocket();
  socket.probeSocket(1000);
  socket.probeSocket(1000); // one probe at a time
  const pings = ws.sent.filter((f) => f.type === "ping");
  assert.equal(pings.length, 1);
  ws.receive({ type: "pong", ref: pings[0].ref });
  await settle();
  mock.timers.tick(5000);
  await settle();
  assert.equal(state.ws, ws);
  assert.equal(ws.closed, null);
});

test("a socket that does not answer the probe is given up and rejoined at once; closed after the new join", async () => {
  reset();
  const rejoins = [];
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => { rejoins.push(1); return { ws_url: "ws://new/", token: "t2" }; } });
  const ws = joinedSocket();
  const pending = socket.request({ type: "subscribe" });
  socket.probeSocket(1000);
  mock.timers.tick(1001);
  await assert.rejects(pending, /socket closed/);
  assert.equal(state.ws, null);
  assert.equal(ws.closed, null); // not closed yet: a slow socket must not make the server see a leave
  mock.timers.tick(0);
  await settle();
  assert.equal(rejoins.length, 1);
  const next = FakeSocket.all.at(-1);
  assert.equal(next.url, "ws://new/");
  ws.drop(4005); // the server replaced it: not this page's socket any more, nothing happens
  assert.equal(state.ws, next);
  socket.socketJoined();
  assert.notEqual(ws.closed, null);
});

test("a socket that is slow but not silent during the probe is kept", async () => {
  reset();
  const ws = joinedSocket();
  socket.probeSocket(1000);
  ws.receive({ type: "participant_updated", participant: null }); // something came back: alive, just slow
  mock.timers.tick(1001);
  await settle();
  assert.equal(state.ws, ws);
});

test("giving the socket up (its address is gone) rejoins at once without a probe", async () => {
  reset();
  const rejoins = [];
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => { rejoins.push(1); return { ws_url: "ws://new/", token: "t2" }; } });
  const ws = joinedSocket();
  socket.giveUpSocket("address gone");
  assert.equal(state.ws, null);
  assert.equal(ws.closed, null);
  mock.timers.tick(0);
  await settle();
  assert.equal(rejoins.length, 1);
  assert.equal(FakeSocket.all.at(-1).url, "ws://new/");
});

// The scout (a second socket opened with each probe): the first to answer decides.

test("a probe opens a scout; the old socket answering first closes it unused", async () => {
  reset();
  const ws = joinedSocket();
  socket.probeSocket(4000);
  const scout = FakeSocket.all.at(-1);
  assert.notEqual(scout, ws);
  assert.equal(scout.url, "ws://x/");
  ws.receive({ type: "pong", ref: ws.sent.at(-1).ref });
  assert.notEqual(scout.closed, null);
  scout.onopen?.(); // too late: detached
  mock.timers.tick(5000);
  await settle();
  assert.equal(state.ws, ws);
  assert.deepEqual(scout.sent, []);
});

test("an answer from the old socket within the grace after the scout opened keeps the old socket", async () => {
  reset();
  const ws = joinedSocket();
  socket.probeSocket(4000);
  const scout = FakeSocket.all.at(-1);
  mock.timers.tick(50);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MIN_MS - 10);
  ws.receive({ type: "participant_updated", participant: null });
  await assertKeptScoutUnused(ws, scout);
});

test("a silent old socket is given up once the scout is open: the join goes on the scout with the live token", async () => {
  reset();
  const rejoins = [];
  const reconnecting = [];
  socket.configureSocket({
    onReconnecting: (attempt, delay) => reconnecting.push(delay),
    rejoin: async () => { rejoins.push(1); return { ws_url: "ws://new/", token: "t2" }; },
  });
  state.grant = { ws_url: "ws://x/", token: "t1", token_expires_in: 120, receivedAt: Date.now() };
  const ws = joinedSocket();
  socket.probeSocket(4000);
  const pending = socket.request({ type: "subscribe" }); // after the ping: no reason to wait for it
  const scout = FakeSocket.all.at(-1);
  mock.timers.tick(100);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MIN_MS);
  await assert.rejects(pending, /socket closed/);
  await settle();
  assert.equal(rejoins.length, 0); // the token still lives: no REST round trip
  assert.deepEqual(reconnecting, [0]);
  assert.equal(state.ws, scout);
  assert.equal(state.wsOpen, true);
  assert.deepEqual(scout.sent[0], { type: "join", token: "t1", protocol: 1 });
  assert.equal(ws.closed, null); // not closed before the new join replaced it (no leave for the others)
  ws.drop(4005);
  assert.equal(state.ws, scout);
  socket.socketJoined();
  assert.notEqual(ws.closed, null);
  // The adopted scout is the page's socket now: its frames are handled and its close is an outage.
  const reply = socket.request({ type: "subscribe" });
  scout.receive({ type: "offer", ref: scout.sent.at(-1).ref, sdp: null });
  assert.equal((await reply).sdp, null);
});

test("with a token about to expire, the adopted scout joins after a REST rejoin", async () => {
  reset();
  const rejoins = [];
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => { rejoins.push(1); return { ws_url: "ws://x/", token: "t2" }; } });
  state.grant = { ws_url: "ws://x/", token: "t1", token_expires_in: 120, receivedAt: Date.now() - 100_000 };
  const ws = joinedSocket();
  socket.probeSocket(4000);
  const scout = FakeSocket.all.at(-1);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MAX_MS);
  await settle();
  assert.equal(rejoins.length, 1);
  assert.equal(FakeSocket.all.length, 2); // no third socket
  assert.deepEqual(scout.sent[0], { type: "join", token: "t2", protocol: 1 });
});

test("a scout that cannot connect leaves the decision to the probe's timeout (a new socket, after a rejoin)", async () => {
  reset();
  const rejoins = [];
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => { rejoins.push(1); return { ws_url: "ws://new/", token: "t2" }; } });
  const ws = joinedSocket();
  socket.probeSocket(1000);
  const scout = FakeSocket.all.at(-1);
  scout.drop(1006);
  mock.timers.tick(1001);
  await settle();
  mock.timers.tick(0);
  await settle();
  assert.equal(rejoins.length, 1);
  assert.equal(FakeSocket.all.at(-1).url, "ws://new/");
  assert.equal(state.ws, FakeSocket.all.at(-1));
});

test("a scout that cannot connect yet is tried again while the probe waits, and adopted once it opens", async () => {
  reset();
  socket.configureSocket({ onReconnecting: () => {}, rejoin: () => new Promise(() => {}) });
  state.grant = { ws_url: "ws://x/", token: "t1", token_expires_in: 120, receivedAt: Date.now() };
  const ws = joinedSocket();
  socket.probeSocket(4000);
  FakeSocket.all.at(-1).drop(1006); // the sign came before the new path was usable
  assert.equal(FakeSocket.all.length, 2);
  mock.timers.tick(socket.SCOUT_RETRY_MS[0] - 1);
  assert.equal(FakeSocket.all.length, 2);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, 3); // the second scout
  FakeSocket.all.at(-1).drop(1006);
  mock.timers.tick(socket.SCOUT_RETRY_MS[1]);
  const scout = FakeSocket.all.at(-1);
  assert.equal(FakeSocket.all.length, 4);
  mock.timers.tick(20);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MIN_MS);
  await settle();
  assert.equal(state.ws, scout); // adopted well before the probe's 4 s
  assert.deepEqual(scout.sent[0], { type: "join", token: "t1", protocol: 1 });
  assert.equal(ws.closed, null);
});

test("no scout is tried again once the old socket answered", async () => {
  reset();
  const ws = joinedSocket();
  socket.probeSocket(4000);
  FakeSocket.all.at(-1).drop(1006);
  ws.receive({ type: "pong", ref: ws.sent.at(-1).ref });
  await settle();
  mock.timers.tick(5000);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(state.ws, ws);
});

test("the probe's timeout with the scout already open adopts it", async () => {
  reset();
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => ({ ws_url: "ws://new/", token: "t2" }) });
  const ws = joinedSocket();
  socket.probeSocket(1000);
  const scout = FakeSocket.all.at(-1);
  mock.timers.tick(900);
  scout.open(); // slow to open: its grace (900 ms) outlasts the probe
  mock.timers.tick(101);
  await settle();
  mock.timers.tick(0);
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(state.ws, scout);
  assert.equal(scout.sent[0].type, "join");
});

test("media arriving while the socket is probed closes the scout unused: only the probe's timeout gives the socket up", async () => {
  // A lossy link (the call overruns it): the pong waits for a TCP retransmission while a new handshake gets through.
  reset();
  const rejoins = [];
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => { rejoins.push(1); return { ws_url: "ws://new/", token: "t2" }; } });
  let ws = joinedSocket();
  socket.probeSocket(4000);
  let scout = FakeSocket.all.at(-1);
  mock.timers.tick(20);
  scout.open();
  socket.pathAlive();
  assert.notEqual(scout.closed, null);
  mock.timers.tick(socket.SCOUT_GRACE_MAX_MS);
  await settle();
  assert.equal(state.ws, ws); // not adopted
  ws.receive({ type: "pong", ref: ws.sent.at(-1).ref });
  await assertKeptScoutUnused(ws, scout);
  assert.equal(rejoins.length, 0);
  // No pong at all: the timeout still gives the socket up (a new one, the scout having been closed).
  reset();
  ws = joinedSocket();
  socket.probeSocket(1000);
  scout = FakeSocket.all.at(-1);
  scout.open();
  socket.pathAlive();
  mock.timers.tick(1001);
  await settle();
  mock.timers.tick(0);
  await settle();
  assert.notEqual(state.ws, ws);
  assert.notEqual(state.ws, scout);
  // Without a probe it does nothing.
  reset();
  ws = joinedSocket();
  socket.pathAlive();
  assert.equal(state.ws, ws);
});

test("the old socket closing, or leaving, drops the scout", () => {
  reset();
  socket.configureSocket({ onReconnecting: () => {}, rejoin: () => new Promise(() => {}) });
  let ws = socket.openSocket();
  ws.open();
  socket.probeSocket(4000);
  let scout = FakeSocket.all.at(-1);
  ws.drop(1006);
  assert.notEqual(scout.closed, null);
  reset();
  ws = socket.openSocket();
  ws.open();
  socket.probeSocket(4000);
  scout = FakeSocket.all.at(-1);
  socket.closeSocket(1000);
  assert.notEqual(scout.closed, null);
});

test("the grace grows with the time the scout took to open, within bounds; a token lives its lifetime less a margin", () => {
  assert.equal(socket.scoutGraceMs(20), socket.SCOUT_GRACE_MIN_MS);
  assert.equal(socket.scoutGraceMs(700), 700);
  assert.equal(socket.scoutGraceMs(60_000), socket.SCOUT_GRACE_MAX_MS);
  const grant = { token: "t", token_expires_in: 120, receivedAt: 1_000 };
  assert.equal(socket.grantFresh(grant, 1_000 + 89_000), true);
  assert.equal(socket.grantFresh(grant, 1_000 + 91_000), false);
  assert.equal(socket.grantFresh({ token: "t", receivedAt: 1_000 }, 2_000), false); // lifetime unknown
  assert.equal(socket.grantFresh(null, 0), false);
});

test("a request still unanswered from before the ping (the server busy with it) leaves the decision to the probe's timeout", async () => {
  reset();
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => ({ ws_url: "ws://new/", token: "t2" }) });
  const ws = joinedSocket();
  const offer = socket.request({ type: "offer", pc: "camera", sdp: "v=0" }); // waiting for the media server
  offer.catch(() => {});
  socket.probeSocket(1000);
  const scout = FakeSocket.all.at(-1);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MAX_MS - 1100); // past the grace, before the probe's timeout
  await settle();
  assert.equal(state.ws, ws);
  assert.deepEqual(scout.sent, []);
  mock.timers.tick(200); // still nothing, even after the probe's timeout: given up, on the open scout
  await settle();
  assert.equal(state.ws, scout);
  assert.equal(FakeSocket.all.length, 2);
});

test("a socket whose join is unanswered is not given up for a scout that opened sooner: the probe's timeout decides", async () => {
  reset();
  socket.configureSocket({ onReconnecting: () => {}, rejoin: async () => ({ ws_url: "ws://new/", token: "t2" }) });
  const ws = socket.openSocket(); // a rejoin: the server is busy with its join
  ws.open();
  socket.probeSocket(1000); // e.g. the stall check, while the old media connections still receive nothing
  const scout = FakeSocket.all.at(-1);
  mock.timers.tick(10);
  scout.open();
  mock.timers.tick(socket.SCOUT_GRACE_MIN_MS + 100); // past the grace
  await settle();
  assert.equal(state.ws, ws);
  assert.deepEqual(scout.sent, []);
  ws.receive({ type: "room_snapshot" }); // the join answered: alive, the scout goes unused
  socket.socketJoined();
  await assertKeptScoutUnused(ws, scout);
});

test("a socket given up with its join unanswered may still join late: the successor's 4005 rejoins once, not ends the call", async () => {
  reset();
  const terminal = recordTerminal();
  const ws = socket.openSocket();
  ws.open(); // its join never answered (the server is slow)...
  socket.probeSocket(1000);
  mock.timers.tick(1001); // ...and silent past the probe's timeout: given up
  await settle();
  mock.timers.tick(0);
  await settle();
  const next = FakeSocket.all.at(-1);
  next.open();
  socket.socketJoined(); // the successor joined; then the old socket's join reached the server and replaced it
  assert.notEqual(ws.closed, null);
  next.drop(4005);
  mock.timers.tick(0);
  await settle();
  assert.deepEqual(terminal, []);
  const third = FakeSocket.all.at(-1);
  assert.notEqual(third, next);
  assert.equal(state.ws, third);
  third.open();
  socket.socketJoined();
  third.drop(4005); // once only: another 4005 is another tab after all
  assert.equal(terminal.length, 1);
});

test("after a socket with an answered join was given up, a 4005 is another tab: the call stops", async () => {
  reset();
  const terminal = recordTerminal();
  joinedSocket();
  socket.giveUpSocket("address gone");
  mock.timers.tick(0);
  await settle();
  const next = FakeSocket.all.at(-1);
  next.open();
  socket.socketJoined();
  next.drop(4005);
  assert.equal(terminal.length, 1);
});
