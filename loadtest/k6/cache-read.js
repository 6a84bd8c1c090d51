// k6: the read-through cache (GET /v1/users?user_id=ID) against a LOCAL shardgate.
// hotcold-user-api's `wrk -t4 -c128 -d60s` with checks on every response.
//
//   loadtest/k6.sh cache-read                       # 128 VUs, 60 s (PROFILE=load, the default here)
//   PROFILE=smoke loadtest/k6.sh cache-read         # 10 VUs, 15 s
//   VUS=64 DURATION=2m loadtest/k6.sh cache-read    # overrides
//
// (k6.sh's banner prints "PROFILE=smoke" when PROFILE is unset; this script's default is
// the 128-VU load profile all the same. Set PROFILE to make the banner right.)
//
// setup(): checks /health and that the endpoint exists, creates USERS (200) users through
// POST /api/v1/users/ with ids `kc-<tag>-<n>` (tag: 4 random base36 chars; short ids, as
// hotcold-user-api's were), then reads each one once so it is in the cache.
// default: each iteration is ONE GET /v1/users?user_id=..., closed loop (no think time):
//   ~98%  a random id of that set: 200, message "ok:redis", cache_hit true, the same
//         user_id, deeplink and promo_message as created, metadata.version "v1"
//   W_MISSING=1 (%)  an id nobody created (half of them exactly 64 chars long): 404 "not found"
//   W_INVALID=1 (%)  an invalid id (65 chars, or with a '!'): 400 "invalid user_id"
// teardown(): DELETE /api/v1/users/<id> for every user setup() created.
//
// Thresholds (the run fails, k6 exits 99, when one is crossed):
//   http_req_failed rate < FAIL_RATE (0.01); 400 and 404 are expected statuses
//     (http.setResponseCallback(http.expectedStatuses(200, 400, 404))), except that a
//     read of a cached user must be 200
//   checks rate > CHECK_RATE (0.99)
//   http_req_duration p(99) < P99_MS (50) for the reads (setup's POSTs are left out), and
//     per kind of read (tag op: hit, missing, invalid)
//   cache_hit_rate rate > HIT_RATE (0.99): the share of reads of a warmed user that said
//     "ok:redis" (an "ok:postgres" there is a cache miss)
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), USERS (200),
// REQ_TIMEOUT (5s), RUN_TAG (the tag, [a-z0-9]{1,8}; random by default).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Rate, Counter } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, bodyText, checkRunTag, constantVusOptions, objectBody, profile, requireHealthy, runTag,
} from './lib.js';

const API = `${BASE_URL}/api/v1/users/`;
const READ = `${BASE_URL}/v1/users?user_id=`;

const { PROFILE, VUS, DURATION } = profile({
  smoke: { vus: 10, duration: '15s' },
  load: { vus: 128, duration: '60s' },
}, 'load');
const P99_MS = Number(__ENV.P99_MS || 50);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.01);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const HIT_RATE = Number(__ENV.HIT_RATE || 0.99);
const USERS = parseInt(__ENV.USERS || 200, 10);
const W_MISSING = Number(__ENV.W_MISSING || 1); // percent of iterations
const W_INVALID = Number(__ENV.W_INVALID || 1); // percent of iterations
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';
if (!(USERS >= 1 && USERS <= 99999)) throw new Error(`USERS=${USERS}: use 1..99999`);
if (!(W_MISSING >= 0 && W_INVALID >= 0 && W_MISSING + W_INVALID <= 100)) {
  throw new Error(`W_MISSING=${W_MISSING} W_INVALID=${W_INVALID}: percentages, 100 at most together`);
}
checkRunTag();

// The endpoint's id rule: the users API's (hotcold-user-api allowed 20 characters).
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

// Every status that is an answer of the contract; a read of a cached user narrows it to 200.
http.setResponseCallback(http.expectedStatuses(200, 400, 404));
const ONLY_200 = http.expectedStatuses(200);

const OPS = ['hit', 'missing', 'invalid'];
const thresholds = {
  http_req_failed: [`rate<${FAIL_RATE}`],
  checks: [`rate>${CHECK_RATE}`],
  'http_req_duration{phase:read}': [`p(99)<${P99_MS}`],
  cache_hit_rate: [`rate>${HIT_RATE}`],
};
// Per kind of read (also makes the summary show each one on its own line).
for (const op of OPS) thresholds[`http_req_duration{op:${op}}`] = [`p(99)<${P99_MS}`];

export const options = constantVusOptions('reads', VUS, DURATION, thresholds, '120s');

// Reads of a warmed user that were cache hits ("ok:redis"); "ok:postgres" adds a false.
const cacheHitRate = new Rate('cache_hit_rate');
const reads = new Counter('cache_reads');

const body = objectBody;

function hasMetadata(b) {
  return b !== null && b.metadata !== null && typeof b.metadata === 'object' &&
    b.metadata.version === 'v1' && typeof b.metadata.timestamp === 'string' && b.metadata.timestamp.length > 0;
}

const userId = (tag, n) => `kc-${tag}-${n}`;
const deeplinkOf = (n) => `myapp://x/${n}`;
const promoOf = (n) => `k6 cache ${n}`;

function readParams(op, extra) {
  return Object.assign({ timeout: TIMEOUT, tags: { op, phase: 'read', name: `GET /v1/users?user_id (${op})` } }, extra || {});
}

export function setup() {
  requireHealthy({ phase: 'setup', name: 'GET /health' });
  const tag = runTag();

  // Does the endpoint exist? An id nobody has: 404 with the contract's body, not the
  // router's {"error", "code": "ROUTE_NOT_FOUND"}.
  const probe = http.get(`${READ}kc-${tag}-probe`, { timeout: '5s', tags: { phase: 'setup', name: 'GET /v1/users (probe)' } });
  const pb = body(probe);
  if (!pb || pb.code !== 404 || pb.message !== 'not found') {
    exec.test.abort(`GET /v1/users?user_id=... does not answer as the cache endpoint should ` +
      `(status ${probe.status}, body ${bodyText(probe)}): is it implemented and deployed?`);
  }

  const created = [];
  const postParams = {
    headers: JSON_HEADERS,
    timeout: TIMEOUT,
    tags: { phase: 'setup', name: 'POST /api/v1/users/' },
    responseCallback: http.expectedStatuses(201, 409),
  };
  for (let n = 1; n <= USERS; n++) {
    const id = userId(tag, n);
    if (!ID_RE.test(id)) exec.test.abort(`generated id ${id} does not match ${ID_RE}`);
    const payload = { id, first_name: 'Cache', last_name: `K6 ${n}`, deeplink: deeplinkOf(n), promo_message: promoOf(n) };
    const r = http.post(API, JSON.stringify(payload), postParams);
    // 409: someone else's row with that id; leave it alone (not read, not deleted).
    if (r.status === 201) created.push(n);
    else if (r.status !== 409) console.warn(`setup: create ${id}: HTTP ${r.status} ${bodyText(r)}`);
  }
  check(created, { 'setup: created at least 90% of the users': (c) => c.length >= USERS * 0.9 });
  if (created.length === 0) exec.test.abort('setup: could not create any user (see the warnings above)');

  // Warm: one read each puts it in the cache (the first read of a user is "ok:postgres";
  // "ok:redis" is fine too). Batches of 20 in parallel.
  let warmed = 0;
  for (let i = 0; i < created.length; i += 20) {
    const chunk = created.slice(i, i + 20);
    const res = http.batch(chunk.map((n) => ['GET', `${READ}${userId(tag, n)}`, null,
      { timeout: TIMEOUT, tags: { phase: 'setup', name: 'GET /v1/users (warm)' } }]));
    res.forEach((r, j) => {
      const b = body(r);
      if (r.status === 200 && b && (b.message === 'ok:postgres' || b.message === 'ok:redis')) warmed++;
      else console.warn(`setup: warm ${userId(tag, chunk[j])}: HTTP ${r.status} ${bodyText(r)}`);
    });
  }
  check(warmed, { 'setup: every created user warmed (200)': (w) => w === created.length });
  console.log(`setup: tag ${tag}, ${created.length}/${USERS} users created, ${warmed} warmed; ` +
    `PROFILE=${PROFILE} ${VUS} VUs for ${DURATION}, missing ${W_MISSING}%, invalid ${W_INVALID}%`);
  return { tag, ids: created };
}

function readHit(data) {
  const n = data.ids[Math.floor(Math.random() * data.ids.length)];
  const id = userId(data.tag, n);
  const res = http.get(`${READ}${id}`, readParams('hit', { responseCallback: ONLY_200 }));
  const b = body(res);
  reads.add(1, { op: 'hit' });
  check(res, {
    'hit: 200': (r) => r.status === 200,
    'hit: code 200': () => b !== null && b.code === 200,
    'hit: message ok:redis': () => b !== null && b.message === 'ok:redis',
    'hit: cache_hit true': () => b !== null && b.cache_hit === true,
    'hit: same user_id': () => b !== null && b.user_id === id,
    'hit: deeplink and promo_message as created': () => b !== null && b.deeplink === deeplinkOf(n) && b.promo_message === promoOf(n),
    'hit: metadata.version v1, timestamp': () => hasMetadata(b),
  });
  if (res.status === 200 && b !== null) cacheHitRate.add(b.message === 'ok:redis');
}

function readMissing(data) {
  // Never one of setup's ids (those are digits after the tag). Half of them exactly 64
  // characters: the longest valid id must still be a 404, not a 400.
  let id = `kc-${data.tag}-m${Math.floor(Math.random() * 1e6)}`;
  if (Math.random() < 0.5) id = (id + 'z'.repeat(64)).slice(0, 64);
  const res = http.get(`${READ}${id}`, readParams('missing'));
  const b = body(res);
  reads.add(1, { op: 'missing' });
  check(res, {
    'missing: 404': (r) => r.status === 404,
    'missing: code 404, message "not found"': () => b !== null && b.code === 404 && b.message === 'not found',
    'missing: metadata.version v1': () => hasMetadata(b),
  });
}

function readInvalid(data) {
  // 65 characters of valid ones, or a character outside [A-Za-z0-9_-].
  const id = Math.random() < 0.5 ? (`kc-${data.tag}-` + 'y'.repeat(65)).slice(0, 65) : `kc-${data.tag}-bad!`;
  const res = http.get(`${READ}${encodeURIComponent(id)}`, readParams('invalid'));
  const b = body(res);
  reads.add(1, { op: 'invalid' });
  check(res, {
    'invalid: 400': (r) => r.status === 400,
    'invalid: code 400, message "invalid user_id"': () => b !== null && b.code === 400 && b.message === 'invalid user_id',
    'invalid: cache_hit false': () => b !== null && b.cache_hit === false,
    'invalid: metadata.version v1': () => hasMetadata(b),
  });
}

export default function (data) {
  const r = Math.random() * 100;
  if (r < W_MISSING) readMissing(data);
  else if (r < W_MISSING + W_INVALID) readInvalid(data);
  else readHit(data);
}

export function teardown(data) {
  if (!data || !data.ids) return;
  let gone = 0;
  for (let i = 0; i < data.ids.length; i += 20) {
    const chunk = data.ids.slice(i, i + 20);
    const res = http.batch(chunk.map((n) => ['DELETE', `${API}${userId(data.tag, n)}`, null,
      { timeout: TIMEOUT, tags: { phase: 'teardown', name: 'DELETE /api/v1/users/:id' }, responseCallback: http.expectedStatuses(204, 404) }]));
    for (const r of res) if (r.status === 204 || r.status === 404) gone++;
  }
  check(gone, { 'teardown: every created user deleted': (g) => g === data.ids.length });
  console.log(`teardown: ${gone}/${data.ids.length} users kc-${data.tag}-* deleted`);
}
