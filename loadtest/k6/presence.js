// k6: live presence (the live user status server's API) against a LOCAL shardgate: heartbeats and status
// batches in the live user status server's Go load tester mix, with checks on every response.
//
//   loadtest/k6.sh presence                          # PROFILE=smoke: 10 VUs, 30 s (the default)
//   PROFILE=load loadtest/k6.sh presence             # 100 VUs, 60 s
//   VUS=20 DURATION=2m loadtest/k6.sh presence       # overrides
//   MODE=rate RATE=2000 DURATION=30s loadtest/k6.sh presence
//                                                    # open model: 2000 iterations/s for 30 s
//   make loadtest-presence                           # the same as the first line
//
// setup(): checks /health, picks the run tag RUN (4 random base36 chars, or RUN_TAG, so runs
// never collide), heartbeats the WARM (50) ids lp-<RUN>-0..lp-<RUN>-49 and reads them back
// with one POST /status (all must be 200 and not the zero time; aborts otherwise). Its
// tag and time go to the VUs through its return value.
// default: each iteration is ONE request, picked at random (no think time):
//   HEARTBEAT_PCT=80 (%)  POST /heartbeat {"userId":"lp-<RUN>-<n>"}, n random in 0..USERS-1:
//        200, {"success":true,"status":"ONLINE",...}
//   the rest (20%)        POST /status {"userIds":[...]}: BATCH (50) ids of the same
//        population, the first one always one of setup's WARM ids: 200, a JSON object with
//        exactly the distinct requested ids as keys, every value an RFC 3339 time (or the
//        zero time 0001-01-01T00:00:00Z = never seen); setup's id not the zero time, within
//        FRESH_S (600) s of now and not older than setup's heartbeats; an id this VU got a
//        200 heartbeat for not older than that heartbeat (read-your-writes across workers).
//
// MODE (default vus):
//   vus   constant-vus, closed loop: PROFILE smoke (10 VUs, 30 s) or load (100 VUs, 60 s);
//         VUS and DURATION override its numbers.
//   rate  constant-arrival-rate: RATE (required, a whole number) iterations/s for DURATION
//         (PROFILE's, 30 s for smoke), with PRE_VUS (RATE * P99_MS / 1000, 5..1000: enough
//         to hold RATE even if every request took P99_MS) VUs allocated up front and at
//         most MAX_VUS (twice that, 50..2000). Same mix, checks and thresholds, plus one:
//         iterations k6 could not start in time (dropped_iterations: no free VU) must stay
//         under DROP_PCT (1) % of RATE per second. Meant for a search of the highest
//         sustainable rate: exit 0 = that rate held with every threshold. k6 runs on the
//         same machine as the server and takes CPU of its own (~3/4 of a core at 2000/s).
//
// Thresholds (the run fails, k6 exits 99, when one is crossed):
//   checks rate > CHECK_RATE (0.99)
//   http_req_failed rate < FAIL_RATE (0.01); only 200 is an expected status
//   heartbeat_duration p(99) < P99_MS (100) and status_batch_duration p(99) < P99_MS:
//     custom Trends of the main phase's requests (setup's are left out)
//   dropped_iterations rate < RATE * DROP_PCT / 100 (MODE=rate only)
// Counters (reported): heartbeats, status_batches, status_ids (ids asked for).
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), USERS (10000),
// BATCH (50, at most 1000: the server's PRESENCE_MAX_BATCH), WARM (50), REQ_TIMEOUT (5s),
// RUN_TAG ([a-z0-9]{1,8}; random by default).
//
// Presence must be open (PRESENCE_AUTH_SECRET unset): with auth on, heartbeats are 401 and
// setup aborts. The ids' "last seen" keys never expire in Redis; to remove one run's:
//   redis-cli --scan --pattern '*presence:*lp-<RUN>-*' | xargs -r redis-cli del
// (teardown prints the exact tag).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, bodyText, checkRunTag, constantVusOptions, objectBody, profile, requireHealthy, runTag,
} from './lib.js';

const HEARTBEAT = `${BASE_URL}/heartbeat`;
const STATUS = `${BASE_URL}/status`;

const { PROFILE, VUS, DURATION } = profile({
  smoke: { vus: 10, duration: '30s' },
  load: { vus: 100, duration: '60s' },
}, 'smoke');
const MODE = __ENV.MODE || 'vus';
const P99_MS = Number(__ENV.P99_MS || 100);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.01);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const USERS = parseInt(__ENV.USERS || 10000, 10);
const BATCH = parseInt(__ENV.BATCH || 50, 10);
const WARM = Math.min(parseInt(__ENV.WARM || 50, 10), USERS);
const HEARTBEAT_PCT = Number(__ENV.HEARTBEAT_PCT || 80);
const FRESH_S = Number(__ENV.FRESH_S || 600);
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';
// Redis's clock (the server's "last seen") against k6's, on the same machine.
const SKEW_MS = 1000;

if (MODE !== 'vus' && MODE !== 'rate') throw new Error(`MODE=${MODE}: use vus or rate`);
if (!(USERS >= 1 && USERS <= 1000000)) throw new Error(`USERS=${USERS}: use 1..1000000`);
if (!(BATCH >= 1 && BATCH <= 1000)) throw new Error(`BATCH=${BATCH}: use 1..1000 (the server allows 1000 ids)`);
if (!(WARM >= 1)) throw new Error(`WARM=${__ENV.WARM}: use 1 or more`);
if (!(HEARTBEAT_PCT >= 0 && HEARTBEAT_PCT <= 100)) throw new Error(`HEARTBEAT_PCT=${HEARTBEAT_PCT}: a percentage`);
if (!(P99_MS > 0)) throw new Error(`P99_MS=${__ENV.P99_MS}: a positive number of ms`);
if (!(FRESH_S > 0)) throw new Error(`FRESH_S=${__ENV.FRESH_S}: a positive number of seconds`);
checkRunTag();

// Only a 200 is an answer here.
http.setResponseCallback(http.expectedStatuses(200));

const thresholds = {
  checks: [`rate>${CHECK_RATE}`],
  http_req_failed: [`rate<${FAIL_RATE}`],
  heartbeat_duration: [`p(99)<${P99_MS}`],
  status_batch_duration: [`p(99)<${P99_MS}`],
};

let RATE = 0;
let PRE_VUS = 0;
let MAX_VUS = 0;
if (MODE === 'rate') {
  RATE = Number(__ENV.RATE);
  if (!(Number.isInteger(RATE) && RATE >= 1)) throw new Error(`MODE=rate needs RATE=<iterations/s>, a whole number >= 1 (got ${__ENV.RATE})`);
  const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);
  // Up front, enough VUs to hold RATE even if every request took P99_MS (Little's law):
  // starting a VU mid-run takes long enough to drop iterations, and a VU costs ~1 MB.
  // At most twice that.
  const need = Math.ceil((RATE * P99_MS) / 1000);
  MAX_VUS = parseInt(__ENV.MAX_VUS || clamp(2 * need, 50, 2000), 10);
  PRE_VUS = parseInt(__ENV.PRE_VUS || Math.min(clamp(need, 5, 1000), MAX_VUS), 10);
  if (!(MAX_VUS >= 1 && MAX_VUS <= 5000)) throw new Error(`MAX_VUS=${MAX_VUS}: use 1..5000`);
  if (!(PRE_VUS >= 1 && PRE_VUS <= MAX_VUS)) throw new Error(`PRE_VUS=${PRE_VUS}: use 1..MAX_VUS (${MAX_VUS})`);
  const DROP_PCT = Number(__ENV.DROP_PCT || 1);
  thresholds.dropped_iterations = [`rate<${(RATE * DROP_PCT) / 100}`];
} else if (!(VUS >= 1 && VUS <= 5000)) {
  throw new Error(`VUS=${VUS}: use 1..5000`);
}

export const options = constantVusOptions('presence', VUS, DURATION, thresholds, '30s');
if (MODE === 'rate') {
  options.scenarios = {
    presence: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: '5s',
    },
  };
}

const heartbeatDuration = new Trend('heartbeat_duration', true);
const statusBatchDuration = new Trend('status_batch_duration', true);
const heartbeats = new Counter('heartbeats');
const statusBatches = new Counter('status_batches');
const statusIds = new Counter('status_ids');

const userId = (tag, n) => `lp-${tag}-${n}`;
const randomN = () => Math.floor(Math.random() * USERS);

// When this VU sent its last heartbeat of user n that got a 200 (k6 clock, ms); 0 = never.
const mine = new Float64Array(USERS);

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const ZERO_TIME = '0001-01-01T00:00:00Z';

// Milliseconds since the epoch of an RFC 3339 time (any number of fraction digits); NaN
// when it is not one.
function ts(s) {
  if (typeof s !== 'string' || !RFC3339.test(s)) return NaN;
  const t = Date.parse(s);
  return isNaN(t) ? Date.parse(s.replace(/(\.\d{3})\d+/, '$1')) : t;
}

const isZero = (s) => s === ZERO_TIME || ts(s) === ts(ZERO_TIME);

function params(op, name, extra) {
  return Object.assign({ headers: JSON_HEADERS, timeout: TIMEOUT, tags: { op, name } }, extra || {});
}

export function setup() {
  requireHealthy({ op: 'setup', name: 'GET /health' });
  const tag = runTag();
  const warmAt = Date.now();

  // Heartbeat the WARM ids, 25 at a time in parallel.
  const setupParams = params('setup', 'POST /heartbeat (setup)');
  for (let i = 0; i < WARM; i += 25) {
    const ns = [];
    for (let n = i; n < Math.min(i + 25, WARM); n++) ns.push(n);
    const res = http.batch(ns.map((n) => ['POST', HEARTBEAT, JSON.stringify({ userId: userId(tag, n) }), setupParams]));
    res.forEach((r, j) => {
      const b = objectBody(r);
      if (r.status !== 200 || !b || b.success !== true || b.status !== 'ONLINE') {
        exec.test.abort(`setup: POST /heartbeat ${userId(tag, ns[j])} answered ${r.status} ${bodyText(r)} ` +
          '(is presence deployed, and PRESENCE_AUTH_SECRET unset?)');
      }
    });
  }

  // Read them back: POST /status must exist and know them all.
  const ids = [];
  for (let n = 0; n < WARM; n++) ids.push(userId(tag, n));
  const r = http.post(STATUS, JSON.stringify({ userIds: ids }), params('setup', 'POST /status (setup)'));
  const b = objectBody(r);
  const bad = b ? ids.filter((id) => typeof b[id] !== 'string' || isZero(b[id]) || isNaN(ts(b[id]))) : ids;
  if (r.status !== 200 || bad.length > 0) {
    exec.test.abort(`setup: POST /status of the ${WARM} ids just heartbeated answered ${r.status} ${bodyText(r)}: ` +
      `${bad.length} of them missing, invalid or never seen`);
  }

  const how = MODE === 'rate'
    ? `MODE=rate ${RATE}/s for ${DURATION} (VUs ${PRE_VUS}..${MAX_VUS})`
    : `PROFILE=${PROFILE} ${VUS} VUs for ${DURATION}`;
  console.log(`presence: run tag ${tag}: users lp-${tag}-0..lp-${tag}-${USERS - 1}, ${WARM} warm; ${how}; ` +
    `${HEARTBEAT_PCT}% heartbeats, ${100 - HEARTBEAT_PCT}% status batches of ${BATCH}`);
  return { tag, warmAt };
}

function heartbeat(data) {
  const n = randomN();
  const sentAt = Date.now();
  const res = http.post(HEARTBEAT, JSON.stringify({ userId: userId(data.tag, n) }), params('heartbeat', 'POST /heartbeat'));
  heartbeatDuration.add(res.timings.duration);
  heartbeats.add(1);
  const b = objectBody(res);
  const ok = check(res, {
    'heartbeat: 200': (r) => r.status === 200,
    'heartbeat: success true, status ONLINE': () => b !== null && b.success === true && b.status === 'ONLINE',
  });
  if (ok) mine[n] = sentAt;
}

function statusBatch(data) {
  // The first id is one setup heartbeated; the rest are random (repeats allowed: the server
  // answers each distinct id once).
  const ns = [Math.floor(Math.random() * WARM)];
  while (ns.length < BATCH) ns.push(randomN());
  const ids = ns.map((n) => userId(data.tag, n));
  const distinct = new Set(ids);
  // What this VU knows: n -> the k6 time of its last 200 heartbeat (before this request).
  const known = ns.filter((n) => mine[n] > 0).map((n) => [userId(data.tag, n), mine[n]]);

  const res = http.post(STATUS, JSON.stringify({ userIds: ids }), params('status', 'POST /status'));
  statusBatchDuration.add(res.timings.duration);
  statusBatches.add(1);
  statusIds.add(ids.length);
  const b = objectBody(res);
  const now = Date.now();
  const warm = b !== null ? b[ids[0]] : undefined;
  check(res, {
    'status: 200': (r) => r.status === 200,
    'status: a JSON object': () => b !== null,
    'status: exactly the distinct requested ids as keys': () =>
      b !== null && Object.keys(b).length === distinct.size && Object.keys(b).every((k) => distinct.has(k)),
    'status: every value RFC 3339 or the zero time': () =>
      b !== null && Object.keys(b).every((k) => typeof b[k] === 'string' && (isZero(b[k]) || !isNaN(ts(b[k])))),
    "status: setup's id seen since setup, within FRESH_S of now": () =>
      typeof warm === 'string' && !isZero(warm) && Math.abs(now - ts(warm)) <= FRESH_S * 1000 && ts(warm) >= data.warmAt - SKEW_MS,
    "status: this VU's heartbeated ids not older than its heartbeat": () =>
      b !== null && known.every(([id, at]) => typeof b[id] === 'string' && !isZero(b[id]) && ts(b[id]) >= at - SKEW_MS),
  });
}

export default function (data) {
  if (Math.random() * 100 < HEARTBEAT_PCT) heartbeat(data);
  else statusBatch(data);
}

export function teardown(data) {
  if (!data || !data.tag) return;
  console.log(`presence: run tag ${data.tag}; its keys stay in Redis ("last seen" never expires). To remove them: ` +
    `redis-cli --scan --pattern '*presence:*lp-${data.tag}-*' | xargs -r redis-cli del`);
}
