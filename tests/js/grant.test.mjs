import assert from "node:assert/strict";
import { test } from "node:test";
import { joinRequestBody, recordWithGrant, retryWithoutToken } from "../../static/js/call/grant.js";

test("the join body carries the rejoin token only when there is one", () => {
  assert.deepEqual(joinRequestBody({ displayName: "Ada", password: "" }, { audio: true, screen: false }), {
    display_name: "Ada", password: "", stream_capabilities: { audio: true, video: true, screen: false },
  });
  assert.equal(joinRequestBody({}, { rejoinToken: "rt1" }).rejoin_token, "rt1");
  assert.equal("rejoin_token" in joinRequestBody({}, { rejoinToken: "" }), false);
  assert.equal("rejoin_token" in joinRequestBody({}, { rejoinToken: 5 }), false);
});

test("the record keeps the latest grant's token; a grant without one removes it", () => {
  const record = { displayName: "Ada", audioMuted: true, rejoinToken: "old" };
  assert.deepEqual(recordWithGrant(record, { token: "t", rejoin_token: "new" }), { displayName: "Ada", audioMuted: true, rejoinToken: "new" });
  assert.deepEqual(recordWithGrant(record, { token: "t" }), { displayName: "Ada", audioMuted: true });
  assert.deepEqual(record.rejoinToken, "old"); // not mutated
});

test("a refused token costs one more join without it; outages and rate limits do not", () => {
  const withToken = { rejoin_token: "rt" };
  assert.equal(retryWithoutToken({ status: 403 }, withToken), true);
  assert.equal(retryWithoutToken({ status: 400 }, withToken), true);
  assert.equal(retryWithoutToken({ status: 429 }, withToken), false);
  assert.equal(retryWithoutToken({ status: 503 }, withToken), false);
  assert.equal(retryWithoutToken(new TypeError("fetch failed"), withToken), false);
  assert.equal(retryWithoutToken({ status: 403 }, {}), false);
});
