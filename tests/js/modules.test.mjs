// The call's ES modules load in a browser only if every named import exists: check them without one.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const JS = resolve(dirname(fileURLToPath(import.meta.url)), "../../static/js");
const CALL = join(JS, "call");
// The call modules and those of its subfolders (effects/), as paths relative to CALL.
const modules = readdirSync(CALL, { recursive: true }).filter((f) => f.endsWith(".js"));
// Pure logic: unit-tested here, so it may not touch the DOM or import a module that does.
const PURE = ["backoff.js", "breakout_logic.js", "bandwidth.js", "dispatch.js", "grant.js", "join_order.js", "layout.js", "stall.js", "outbox.js", "recovery.js", "state.js", "socket.js"];

function exportsOf(source) {
  const names = new Set();
  for (const m of source.matchAll(/^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)/gm)) names.add(m[1]);
  return names;
}

function importsOf(source) {
  const found = [];
  for (const m of source.matchAll(/^import\s+(?:\{([^}]*)\}|\*\s+as\s+\w+)\s+from\s+"([^"]+)";/gm)) {
    const names = (m[1] || "").split(",").map((n) => n.trim().split(/\s+as\s+/)[0]).filter(Boolean);
    found.push({ names, from: m[2] });
  }
  return found;
}

test("every named import of the call modules is exported by its module", () => {
  for (const file of modules) {
    const source = readFileSync(join(CALL, file), "utf8");
    for (const { names, from } of importsOf(source)) {
      const target = readFileSync(resolve(dirname(join(CALL, file)), from), "utf8");
      const exported = exportsOf(target);
      for (const name of names) assert.ok(exported.has(name), `${file} imports ${name} from ${from}, which does not export it`);
    }
  }
});

test("pure modules touch no DOM and import only pure modules", () => {
  for (const file of PURE.filter((f) => modules.includes(f))) {
    const source = readFileSync(join(CALL, file), "utf8").replace(/\/\/.*$/gm, "").replace(/"(?:[^"\\\n]|\\.)*"/g, '""');
    assert.doesNotMatch(source, /\b(document|window|navigator|sessionStorage|localStorage)\s*[.?[]|\bnew RTCPeerConnection\b/, file);
    for (const { from } of importsOf(readFileSync(join(CALL, file), "utf8"))) assert.ok(PURE.includes(from.replace("./", "")), `${file} imports ${from}`);
  }
});

test("user text is never rendered as HTML", () => {
  for (const file of modules) {
    const source = readFileSync(join(CALL, file), "utf8");
    for (const sink of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"]) assert.ok(!source.includes(sink), `${file}: ${sink}`);
  }
});

test("the frame table handles every frame type the old switch did", () => {
  const source = readFileSync(join(CALL, "frames.js"), "utf8");
  const body = source.slice(source.indexOf("export const FRAMES = {"));
  const handled = new Set([...body.matchAll(/^ {2}([a-z_0-9]+):/gm)].map((m) => m[1]));
  const expected = [
    "ping", "pong", "lobby_waiting", "lobby_admitted", "room_snapshot", "participant_joined", "participant_updated",
    "participant_left", "room_updated", "lobby_list", "lobby_request", "lobby_resolved", "lobby_denied", "removed",
    "room_ended", "chat_message", "chat_ack", "chat_synced", "offer", "active_speaker", "forwarded_tracks",
    "publication", "media_state", "media_reconnect", "mute_request", "reaction", "e2ee_public_key", "e2ee_key",
    "recording_state", "error",
  ];
  assert.deepEqual([...handled].sort(), [...expected].sort());
});
