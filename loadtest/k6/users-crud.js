// k6: the users API (/api/v1/users) against a LOCAL shardgate, checking status codes and
// bodies. The Messenger Clone API's load profiles and mixes in one script.
//
//   loadtest/k6.sh users-crud                              # PROFILE=smoke: 10 VUs, 30 s
//   PROFILE=load loadtest/k6.sh users-crud                 # 100 VUs, 60 s
//   PROFILE=custom USERS=300 DURATION=120 loadtest/k6.sh users-crud
//   PROFILE=read VUS=20 DURATION=2m loadtest/k6.sh users-crud   # overrides
//
// PROFILE (the load shape, and the default MIX and think time):
//   smoke   constant 10 VUs for 30 s                      mix default
//   load    constant 100 VUs for 60 s                     mix default
//   custom  constant USERS VUs (default 10) for DURATION (seconds or a k6 duration; 30 s)
//   crud    constant 50 VUs for 60 s                      mix flow (full CRUD per iteration)
//   read    constant 100 VUs for 60 s                     mix read
//   write   constant 100 VUs for 60 s                     mix write
//   stress  constant 500 VUs for 120 s, think 0.5 s      mix default (~1,000 it/s offered:
//           this 2-core machine's ceiling)
//   soak    constant 100 VUs for 5 min, think 0.5 s      mix default (moderate, ~200 it/s)
//   spike   ramping: 10 VUs for 10 s, up to 1,000 in 5 s (RAMP), held 30 s, down to 10 in
//           5 s, 10 for 10 s (60 s in all), think 1 s    mix default
//   10k     ramping: 0 up to 10,000 VUs in 30 s (RAMP), held 50 s (80 s in all); each
//           iteration is followed by 8-16 s of think time (~820 iterations/s, ~1,200 req/s
//           at the peak: what this 2-core machine carries with k6's 10,000 VUs on it; at
//           the seed's ~2,100 req/s, SLEEP=3-7, it saturates)    mix read
// VUS (or USERS) overrides the VUs (the peak for spike and 10k), DURATION the time (the hold
// for spike and 10k), RAMP the ramp of spike and 10k, SLEEP the think time ("0.5" or "3-7").
//
// MIX (what each iteration sends; the profile's by default):
//   default  ONE operation per iteration, at random with weights (each W_* env overrides):
//            W_CREATE=20 W_READ=45 W_UPDATE=15 W_LIST=15 W_DELETE=5   (60% reads)
//   read     W_CREATE=10 W_READ=65 W_UPDATE=7 W_LIST=15 W_DELETE=3    (80% reads / 20% writes)
//   write    W_CREATE=40 W_READ=10 W_UPDATE=30 W_LIST=5 W_DELETE=15,
//            READBACK=10: ~80% of the requests are writes (85% of the iterations)
//   flow     every iteration is one user's whole life: create, read it back, PATCH, PUT,
//            strong read (sees the PUT), one list page, DELETE, strong read (404), DELETE
//            again (404)
// The operations of the weighted mixes:
//   create  POST /api/v1/users/ (first_name/last_name, or "name", half of them with email,
//           deeplink, promo_message), then, for READBACK % of them (100; write mix 10),
//           reads it back by id (read-your-write: must not 404)
//   read    GET /api/v1/users/:id, 90% an id this VU created, 10% an id nobody created (404)
//   update  PATCH /api/v1/users/:id with a new first_name
//   list    GET /api/v1/users/?limit=LIMIT, following X-Next-Cursor one page in 30% of them
//   delete  DELETE /api/v1/users/:id of one of this VU's users (204)
// Ids are `k6-<tag>-<vu>-<iter>`; tag is RUN_TAG or 4 random base36 chars picked by setup().
//
// teardown() deletes every user of this run that is still there: it walks the list from the
// newest user back to the start of the run (users are listed newest first) and DELETEs each
// id that starts with `k6-<tag>-`, then walks once more to make sure none is left (KEEP=1
// keeps them). Counters users_created and teardown_deleted say how many.
//
// Thresholds (the run fails, k6 exits 99, when one is crossed):
//   http_req_failed rate < FAIL_RATE (0.01), checks rate > CHECK_RATE (0.99),
//   http_req_duration p(99) < P99_MS over the main phase (setup and teardown left out) and
//   per operation (tag op). P99_MS defaults to 100 ms; 500 ms for stress and spike (this
//   is a 2-core machine that runs k6 and the cluster too).
// Why think time in stress, spike, soak and 10k: they model users, and with a closed loop
// and no think time latency is just VUs / throughput (Little's law): 500 VUs at ~1,400
// req/s is ~350 ms of queueing in k6 and the server, past the 300 ms deadline of a lookup
// by id (504 REQUEST_TIMEOUT). SLEEP=0 gives that closed loop back.
//   soak also gets one p(99) < P99_MS threshold per minute (trend soak_req_duration, tag
//   minute), so drift over time shows line by line in the summary.
// Reported, not thresholds: stale_reads (a read of a VU's own user that returned an older
// first_name than its last write: replica lag, which allows within a bound),
// cache_hits (share of 200 reads by id answered with X-Cache: hit), http_reqs per op (the
// realised mix).
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), LIMIT (page size, 20),
// READBACK, REQ_TIMEOUT (5s), RUN_TAG ([a-z0-9]{1,8}), KEEP=1.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate, Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, checkRunTag, durationSeconds, jsonBody, k6Duration, requireHealthy, runTag,
  scenarioOptions, thinkTime,
} from './lib.js';

const API = `${BASE_URL}/api/v1/users/`;

const PROFILES = {
  smoke: { vus: 10, duration: '30s' },
  load: { vus: 100, duration: '60s' },
  custom: { vus: 10, duration: '30s' },
  crud: { vus: 50, duration: '60s', mix: 'flow' },
  read: { vus: 100, duration: '60s', mix: 'read' },
  write: { vus: 100, duration: '60s', mix: 'write' },
  stress: { vus: 500, duration: '120s', sleep: '0.5', p99: 500 },
  soak: { vus: 100, duration: '5m', sleep: '0.5', perMinute: true },
  spike: { vus: 1000, duration: '30s', ramp: '5s', base: 10, sleep: '1', p99: 500 },
  '10k': { vus: 10000, duration: '50s', ramp: '30s', sleep: '8-16', mix: 'read' },
};
const MIXES = {
  default: { create: 20, read: 45, update: 15, list: 15, delete: 5 },
  read: { create: 10, read: 65, update: 7, list: 15, delete: 3 },
  write: { create: 40, read: 10, update: 30, list: 5, delete: 15 },
  flow: null,
};
const READBACKS = { default: 100, read: 100, write: 10, flow: 100 };

const PROFILE = __ENV.PROFILE || 'smoke';
const P = PROFILES[PROFILE];
if (!P) throw new Error(`unknown PROFILE=${PROFILE}; use one of ${Object.keys(PROFILES).join(', ')}`);
const VUS = parseInt(__ENV.VUS || __ENV.USERS || P.vus, 10);
const DURATION = k6Duration(__ENV.DURATION || P.duration, 'DURATION');
const RAMP = P.ramp ? k6Duration(__ENV.RAMP || P.ramp, 'RAMP') : null;
const MIX = __ENV.MIX || P.mix || 'default';
if (!(MIX in MIXES)) throw new Error(`unknown MIX=${MIX}; use one of ${Object.keys(MIXES).join(', ')}`);
if (!(VUS >= 1 && VUS <= 20000)) throw new Error(`VUS=${VUS}: use 1..20000`);
const P99_MS = Number(__ENV.P99_MS || P.p99 || 100);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.01);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const SLEEP_SPEC = __ENV.SLEEP !== undefined ? __ENV.SLEEP : (P.sleep || '0');
const think = thinkTime(SLEEP_SPEC, 'SLEEP');
const LIMIT = parseInt(__ENV.LIMIT || 20, 10);
if (!(LIMIT >= 1 && LIMIT <= 100)) throw new Error(`LIMIT=${LIMIT}: use 1..100`);
const KEEP = __ENV.KEEP === '1';
// Percent of creates read back at once (the flow mix always reads back).
const READBACK = MIX === 'flow' ? 100 : Number(__ENV.READBACK !== undefined ? __ENV.READBACK : READBACKS[MIX]);
if (!(READBACK >= 0 && READBACK <= 100)) throw new Error(`READBACK=${__ENV.READBACK}: a percentage`);
// Per-request timeout (k6's default is 60 s), so a stuck server cannot hold the run open.
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';
checkRunTag();

// Weights: the mix's, each overridable by W_* (ignored by the flow mix).
const W = {};
if (MIXES[MIX]) {
  for (const op of Object.keys(MIXES[MIX])) {
    const v = __ENV[`W_${op.toUpperCase()}`];
    W[op] = Number(v !== undefined ? v : MIXES[MIX][op]);
    if (!(W[op] >= 0)) throw new Error(`W_${op.toUpperCase()}=${v}: a number >= 0`);
  }
}
const W_TOTAL = Object.values(W).reduce((a, b) => a + b, 0);
if (MIXES[MIX] && !(W_TOTAL > 0)) throw new Error('the W_* weights add up to 0');

// The load shape.
function executor() {
  if (PROFILE === 'spike') {
    const base = Math.min(P.base, VUS);
    return {
      executor: 'ramping-vus',
      startVUs: base,
      stages: [
        { duration: '10s', target: base },
        { duration: RAMP, target: VUS },
        { duration: DURATION, target: VUS },
        { duration: RAMP, target: base },
        { duration: '10s', target: base },
      ],
      gracefulRampDown: '5s',
    };
  }
  if (PROFILE === '10k') {
    return {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: RAMP, target: VUS },
        { duration: DURATION, target: VUS },
      ],
      gracefulRampDown: '5s',
    };
  }
  return { executor: 'constant-vus', vus: VUS, duration: DURATION };
}

const OPS = ['create', 'read', 'update', 'list', 'delete'];
const thresholds = {
  http_req_failed: [`rate<${FAIL_RATE}`],
  checks: [`rate>${CHECK_RATE}`],
  'http_req_duration{phase:main}': [`p(99)<${P99_MS}`],
};
// Per-operation p99 (also makes the summary show each operation on its own line), and the
// request count per operation (the realised mix; no bound).
for (const op of OPS) {
  if (MIX === 'flow' || W[op] > 0) {
    thresholds[`http_req_duration{op:${op}}`] = [`p(99)<${P99_MS}`];
    thresholds[`http_reqs{op:${op}}`] = [];
  }
}
// soak: one line (and one bound) per minute.
const MINUTES = P.perMinute ? Math.max(1, Math.ceil(durationSeconds(DURATION) / 60)) : 0;
for (let m = 1; m <= MINUTES; m++) thresholds[`soak_req_duration{minute:${m}}`] = [`p(99)<${P99_MS}`];

// Teardown may walk and delete tens of thousands of users after a long run.
export const options = scenarioOptions('users', executor(), thresholds, '300s');

const staleReads = new Rate('stale_reads');
const cacheHits = new Rate('cache_hits');
const created = new Counter('users_created');
const teardownDeleted = new Counter('teardown_deleted');
const soakTrend = MINUTES ? new Trend('soak_req_duration', true) : null;

// This VU's users: id -> { first: [every first_name written, latest last], updated_at }.
const mine = new Map();
const order = []; // ids in creation order, to pick from and to cap the map
const MAX_MINE = 500;

// The run's tag (from setup), set at the first iteration of each VU.
let TAG = null;
let T0 = 0; // ms, the start of the main phase, for the soak's minute buckets

function params(op, name, extra) {
  return Object.assign({ headers: JSON_HEADERS, timeout: TIMEOUT, tags: { op, name } }, extra || {});
}

// Every main-phase request goes through here: soak records it in its minute's trend.
function sent(res) {
  if (soakTrend) {
    const minute = Math.min(MINUTES, Math.floor((Date.now() - T0) / 60000) + 1);
    soakTrend.add(res.timings.duration, { minute: String(minute) });
  }
  return res;
}

const body = jsonBody;
const EXPECT_404 = http.expectedStatuses(404);

function isErrorBody(b) {
  return b !== null && typeof b === 'object' && typeof b.error === 'string' && typeof b.code === 'string' && b.code.length > 0;
}

function isUser(u) {
  return u !== null && typeof u === 'object' && typeof u.id === 'string' && typeof u.first_name === 'string' &&
    typeof u.last_name === 'string' && typeof u.name === 'string' && typeof u.created_at === 'string' &&
    typeof u.updated_at === 'string';
}

function pickMine() {
  return order[Math.floor(Math.random() * order.length)];
}

function forget(id) {
  mine.delete(id);
  const i = order.indexOf(id);
  if (i >= 0) order.splice(i, 1);
}

function remember(id, first, updatedAt) {
  mine.set(id, { first: [first], updated_at: updatedAt });
  order.push(id);
  if (order.length > MAX_MINE) mine.delete(order.shift());
}

// Milliseconds since the epoch of an RFC 3339 timestamp (any number of fraction digits);
// NaN when it is not one, which makes every comparison below fail.
function ts(s) {
  if (typeof s !== 'string') return NaN;
  const t = Date.parse(s);
  return isNaN(t) ? Date.parse(s.replace(/(\.\d{3})\d+/, '$1')) : t;
}

// (created_at, id) of a is after (newer than) or equal to b's. The server's timestamps are
// fixed width (microseconds, "Z"), so they compare as strings; ids compare bytewise.
function notOlder(a, b) {
  return a.created_at > b.created_at || (a.created_at === b.created_at && a.id >= b.id);
}

function isNewestFirst(arr) {
  for (let i = 1; i < arr.length; i++) if (!notOlder(arr[i - 1], arr[i])) return false;
  return true;
}

export function setup() {
  const b = requireHealthy({ op: 'setup', name: 'GET /health' });
  const tag = runTag();
  console.log(`setup: tag ${tag}, PROFILE=${PROFILE} MIX=${MIX} ` +
    (PROFILE === 'spike' || PROFILE === '10k' ? `peak ${VUS} VUs (ramp ${RAMP}, hold ${DURATION})` : `${VUS} VUs for ${DURATION}`) +
    `, think ${SLEEP_SPEC || 0} s, p99 bound ${P99_MS} ms, ids k6-${tag}-*`);
  return { tag, shards: b.shards, startedMs: Date.now() };
}

function newId() {
  return `k6-${TAG}-${__VU}-${__ITER}`;
}

function create() {
  const id = newId();
  const n = `${__VU}x${__ITER}`;
  const useName = Math.random() < 0.2;
  const payload = useName
    ? { id, name: `Ada${n} Lovelace ${n}` } // split at the first space
    : { id, first_name: `First${n}`, last_name: `Last${n}` };
  const first = useName ? `Ada${n}` : `First${n}`;
  const last = useName ? `Lovelace ${n}` : `Last${n}`;
  if (Math.random() < 0.5) {
    payload.email = `${id}@example.com`;
    payload.deeplink = `app://users/${id}`;
    payload.promo_message = 'k6 says hi';
  }
  const res = sent(http.post(API, JSON.stringify(payload), params('create', 'POST /api/v1/users/')));
  const u = body(res);
  const ok = check(res, {
    'create: 201': (r) => r.status === 201,
    'create: id echoed': () => u !== null && u.id === id,
    'create: first_name/last_name': () => u !== null && u.first_name === first && u.last_name === last,
    'create: name = first + " " + last': () => u !== null && u.name === `${first} ${last}`,
    'create: optional fields echoed': () =>
      u !== null && (payload.email === undefined || (u.email === payload.email && u.deeplink === payload.deeplink && u.promo_message === payload.promo_message)),
    'create: created_at/updated_at set': () => u !== null && !isNaN(ts(u.created_at)) && !isNaN(ts(u.updated_at)),
  });
  if (res.status !== 201 || u === null) return null;
  created.add(1);
  remember(id, first, u.updated_at);
  if (!ok) return null;
  const out = { id, first, last, payload, user: u };
  if (READBACK < 100 && Math.random() * 100 >= READBACK) return out;

  // Read your own write: the row may not be on the replica yet, the server must still find it.
  const g = sent(http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id')));
  const gu = body(g);
  check(g, {
    'read-after-create: 200': (r) => r.status === 200,
    'read-after-create: same user': () => gu !== null && gu.id === id && gu.first_name === first && gu.last_name === last,
  });
  return out;
}

function read() {
  if (order.length === 0 || Math.random() < 0.1) {
    // An id nobody created: 404 with the JSON error contract. Expected, so not a "failed" request.
    const id = `k6-${TAG}-missing-${__VU}-${__ITER}`;
    const res = sent(http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id', { responseCallback: EXPECT_404 })));
    const b = body(res);
    check(res, {
      'read unknown id: 404': (r) => r.status === 404,
      'read unknown id: JSON {error, code USER_NOT_FOUND}': () => isErrorBody(b) && b.code === 'USER_NOT_FOUND',
    });
    return;
  }
  const id = pickMine();
  const want = mine.get(id);
  const res = sent(http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id')));
  const u = body(res);
  check(res, {
    'read: 200': (r) => r.status === 200,
    'read: same id': () => u !== null && u.id === id,
    'read: a first_name this VU wrote': () => u !== null && want.first.includes(u.first_name),
  });
  if (u !== null && res.status === 200) {
    staleReads.add(u.first_name !== want.first[want.first.length - 1]);
    cacheHits.add(res.headers['X-Cache'] === 'hit');
  }
}

function update() {
  if (order.length === 0) return create();
  const id = pickMine();
  const was = mine.get(id);
  const first = `Upd${__VU}x${__ITER}`;
  const res = sent(http.patch(`${API}${id}`, JSON.stringify({ first_name: first }), params('update', 'PATCH /api/v1/users/:id')));
  const u = body(res);
  check(res, {
    'update: 200': (r) => r.status === 200,
    'update: new first_name returned': () => u !== null && u.id === id && u.first_name === first,
    'update: updated_at changed': () => u !== null && typeof u.updated_at === 'string' && u.updated_at !== was.updated_at,
    'update: updated_at not before created_at': () => u !== null && ts(u.updated_at) >= ts(u.created_at),
  });
  if (res.status === 200 && u !== null) {
    was.first.push(first);
    was.updated_at = u.updated_at;
  }
  return null;
}

function list() {
  const res = sent(http.get(`${API}?limit=${LIMIT}`, params('list', 'GET /api/v1/users/?limit')));
  const page = body(res);
  check(res, {
    'list: 200': (r) => r.status === 200,
    'list: a JSON array': () => Array.isArray(page),
    'list: at most limit items': () => Array.isArray(page) && page.length <= LIMIT,
    'list: items are users': () => Array.isArray(page) && page.every(isUser),
    'list: newest first': () => Array.isArray(page) && page.every(isUser) && isNewestFirst(page),
  });
  const cursor = res.headers['X-Next-Cursor'];
  if (!Array.isArray(page) || !cursor || Math.random() >= 0.3) return;

  const res2 = sent(http.get(`${API}?limit=${LIMIT}&cursor=${encodeURIComponent(cursor)}`, params('list', 'GET /api/v1/users/?cursor')));
  const page2 = body(res2);
  const seen = new Set(page.map((u) => u.id));
  check(res2, {
    'list next page: 200': (r) => r.status === 200,
    'list next page: a JSON array': () => Array.isArray(page2),
    'list next page: no id from page 1': () => Array.isArray(page2) && page2.every((u) => !seen.has(u.id)),
    'list next page: older than page 1': () =>
      Array.isArray(page2) && page2.every(isUser) && page.every(isUser) &&
      (page2.length === 0 || page.length === 0 || notOlder(page[page.length - 1], page2[0])),
  });
}

function del() {
  if (order.length < 5) return create(); // keep a few to read and update
  const id = pickMine();
  const res = sent(http.del(`${API}${id}`, null, params('delete', 'DELETE /api/v1/users/:id')));
  check(res, { 'delete: 204': (r) => r.status === 204 });
  if (res.status === 204 || res.status === 404) forget(id);
  return null;
}

// MIX=flow: one user's whole life in one iteration.
function flow() {
  const c = create(); // POST, then GET (read your own write)
  if (c === null) return;
  const { id } = c;
  forget(id); // this flow deletes it; keep the VU's map for the weighted mixes only

  // PATCH one field: only it changes.
  const first = `Flow${__VU}x${__ITER}`;
  const p = sent(http.patch(`${API}${id}`, JSON.stringify({ first_name: first }), params('update', 'PATCH /api/v1/users/:id')));
  const pu = body(p);
  check(p, {
    'flow patch: 200': (r) => r.status === 200,
    'flow patch: first_name changed, last_name kept': () => pu !== null && pu.id === id && pu.first_name === first && pu.last_name === c.last,
    'flow patch: updated_at moved forward': () => pu !== null && typeof pu.updated_at === 'string' && pu.updated_at > c.user.updated_at,
  });

  // PUT is partial too (: the seed's PUT erased omitted fields).
  const put = { name: `Put${__VU} Flow ${__ITER}`, promo_message: `put ${__ITER}` };
  const q = sent(http.put(`${API}${id}`, JSON.stringify(put), params('update', 'PUT /api/v1/users/:id')));
  const qu = body(q);
  check(q, {
    'flow put: 200': (r) => r.status === 200,
    'flow put: name split, promo_message set': () =>
      qu !== null && qu.first_name === `Put${__VU}` && qu.last_name === `Flow ${__ITER}` && qu.promo_message === put.promo_message,
    'flow put: omitted fields kept': () =>
      qu !== null && qu.email === (c.payload.email === undefined ? null : c.payload.email) &&
      qu.deeplink === (c.payload.deeplink === undefined ? null : c.payload.deeplink) && qu.created_at === c.user.created_at,
    'flow put: updated_at moved forward': () => qu !== null && pu !== null && qu.updated_at > pu.updated_at,
  });

  // A strong read goes to the primary: it must see the PUT.
  const s = sent(http.get(`${API}${id}?consistency=strong`, params('read', 'GET /api/v1/users/:id?consistency=strong')));
  const su = body(s);
  check(s, {
    'flow strong read: 200': (r) => r.status === 200,
    'flow strong read: sees the PUT': () => su !== null && qu !== null && su.name === qu.name && su.updated_at === qu.updated_at,
  });

  const l = sent(http.get(`${API}?limit=${LIMIT}`, params('list', 'GET /api/v1/users/?limit')));
  const page = body(l);
  check(l, {
    'flow list: 200, an array of at most limit users': (r) => r.status === 200 && Array.isArray(page) && page.length <= LIMIT && page.every(isUser),
    'flow list: newest first': () => Array.isArray(page) && page.every(isUser) && isNewestFirst(page),
  });

  const d = sent(http.del(`${API}${id}`, null, params('delete', 'DELETE /api/v1/users/:id')));
  check(d, {
    'flow delete: 204': (r) => r.status === 204,
    'flow delete: no body': (r) => !r.body || r.body.length === 0,
  });

  const g = sent(http.get(`${API}${id}?consistency=strong`, params('read', 'GET /api/v1/users/:id?consistency=strong (deleted)', { responseCallback: EXPECT_404 })));
  const gb = body(g);
  check(g, { 'flow read after delete: 404 USER_NOT_FOUND': (r) => r.status === 404 && isErrorBody(gb) && gb.code === 'USER_NOT_FOUND' });

  const d2 = sent(http.del(`${API}${id}`, null, params('delete', 'DELETE /api/v1/users/:id (again)', { responseCallback: EXPECT_404 })));
  const d2b = body(d2);
  check(d2, { 'flow delete again: 404 USER_NOT_FOUND': (r) => r.status === 404 && isErrorBody(d2b) && d2b.code === 'USER_NOT_FOUND' });
}

export default function (data) {
  if (TAG === null) {
    TAG = data.tag;
    T0 = data.startedMs;
  }
  if (MIX === 'flow') {
    flow();
  } else {
    let r = Math.random() * W_TOTAL;
    if (order.length === 0 || (r -= W.create) < 0) create();
    else if ((r -= W.read) < 0) read();
    else if ((r -= W.update) < 0) update();
    else if ((r -= W.list) < 0) list();
    else del();
  }
  const t = think();
  if (t > 0) sleep(t);
}

// This run's users still in the list: walks newest first from the head back to the start
// of the run (5 s of margin), collecting ids with this run's prefix.
function runUsers(data) {
  const prefix = `k6-${data.tag}-`;
  const since = data.startedMs - 5000;
  const ids = [];
  let cursor = '';
  let pages = 0;
  for (;;) {
    const res = http.get(`${API}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      { timeout: '30s', tags: { op: 'teardown', name: 'GET /api/v1/users/ (teardown)' } });
    pages++;
    const page = body(res);
    if (res.status !== 200 || !Array.isArray(page)) {
      console.warn(`teardown: list page ${pages}: HTTP ${res.status}; some users k6-${data.tag}-* may be left`);
      return { ids, pages, complete: false };
    }
    for (const u of page) {
      if (!isUser(u)) continue;
      if (ts(u.created_at) < since) return { ids, pages, complete: true };
      if (u.id.startsWith(prefix)) ids.push(u.id);
    }
    cursor = res.headers['X-Next-Cursor'];
    if (!cursor) return { ids, pages, complete: true };
  }
}

function deleteAll(ids) {
  let gone = 0;
  for (let i = 0; i < ids.length; i += 50) {
    const chunk = ids.slice(i, i + 50);
    const res = http.batch(chunk.map((id) => ['DELETE', `${API}${id}`, null,
      { timeout: '30s', tags: { op: 'teardown', name: 'DELETE /api/v1/users/:id (teardown)' }, responseCallback: http.expectedStatuses(204, 404) }]));
    for (const r of res) {
      if (r.status === 204) gone++;
      else if (r.status !== 404) console.warn(`teardown: DELETE: HTTP ${r.status}`);
    }
  }
  return gone;
}

export function teardown(data) {
  if (!data || !data.tag) return;
  if (KEEP) {
    console.log(`teardown: KEEP=1, the users k6-${data.tag}-* stay`);
    return;
  }
  // Lists read the replicas; give them the lag bound (1 s) to replay the last writes.
  sleep(1.5);
  const t0 = Date.now();
  const first = runUsers(data);
  const gone = deleteAll(first.ids);
  teardownDeleted.add(gone);
  sleep(1.5);
  const again = runUsers(data);
  const late = deleteAll(again.ids); // rows the replicas had not shown the first time
  teardownDeleted.add(late);
  check(again, { 'teardown: no user of this run left': (a) => a.complete && a.ids.length === late });
  console.log(`teardown: ${gone + late} users k6-${data.tag}-* deleted (${first.pages}+${again.pages} list pages, ` +
    `${late} found on the second walk) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
