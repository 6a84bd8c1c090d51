// k6: a mix of users-API calls against a LOCAL shardgate, checking status codes and bodies.
//
//   loadtest/k6.sh users-crud                     # PROFILE=smoke: 10 VUs, 30 s
//   PROFILE=load loadtest/k6.sh users-crud        # 100 VUs, 60 s
//   VUS=20 DURATION=2m loadtest/k6.sh users-crud  # overrides
//
// Each iteration does ONE operation, picked at random with these weights (env overrides):
//   W_CREATE=20  POST /api/v1/users/  (first_name/last_name, or "name", sometimes email etc.),
//                then reads it back by id (read-your-write: must not 404)
//   W_READ=45    GET /api/v1/users/:id, 90% an id this VU created, 10% an id nobody created (404)
//   W_UPDATE=15  PATCH /api/v1/users/:id with a new first_name
//   W_LIST=15    GET /api/v1/users/?limit=20, following X-Next-Cursor one page in 30% of them
//   W_DELETE=5   DELETE /api/v1/users/:id of one of this VU's users (204)
// Ids are `k6-<vu>-<iter>-<ms>`: unique per VU, iteration and run, so runs never collide.
//
// Thresholds (the run fails, k6 exits non-zero, when one is crossed):
//   http_req_failed rate < FAIL_RATE (0.01), checks rate > CHECK_RATE (0.99),
//   http_req_duration p(99) < P99_MS (100) overall and per operation.
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), SLEEP (seconds of
// think time per iteration, default 0: closed loop), LIMIT (page size, default 20).

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate, Counter } from 'k6/metrics';
import { BASE_URL, JSON_HEADERS, constantVusOptions, jsonBody, profile, requireHealthy } from './lib.js';

const API = `${BASE_URL}/api/v1/users/`;

const { PROFILE, VUS, DURATION } = profile({
  smoke: { vus: 10, duration: '30s' },
  load: { vus: 100, duration: '60s' },
}, 'smoke');
const P99_MS = Number(__ENV.P99_MS || 100);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.01);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const SLEEP = Number(__ENV.SLEEP || 0);
const LIMIT = parseInt(__ENV.LIMIT || 20, 10);

const W = {
  create: Number(__ENV.W_CREATE || 20),
  read: Number(__ENV.W_READ || 45),
  update: Number(__ENV.W_UPDATE || 15),
  list: Number(__ENV.W_LIST || 15),
  delete: Number(__ENV.W_DELETE || 5),
};
const W_TOTAL = W.create + W.read + W.update + W.list + W.delete;

const OPS = ['create', 'read', 'update', 'list', 'delete'];
const thresholds = {
  http_req_failed: [`rate<${FAIL_RATE}`],
  checks: [`rate>${CHECK_RATE}`],
  http_req_duration: [`p(99)<${P99_MS}`],
};
// Per-operation p99 (also makes the summary show each operation on its own line).
for (const op of OPS) {
  if (W[op] > 0 && op !== 'delete') thresholds[`http_req_duration{op:${op}}`] = [`p(99)<${P99_MS}`];
}

export const options = constantVusOptions('crud', VUS, DURATION, thresholds, '10s');

// Per-request timeout (k6's default is 60 s), so a stuck server cannot hold the run open.
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';

// Reads of this VU's own users that returned an older first_name than its last write
// (replica lag). Reported, not a threshold: DESIGN.md allows a bounded lag.
const staleReads = new Rate('stale_reads');
const created = new Counter('users_created');

// This VU's users: id -> { first: [every first_name written, latest last], updated_at }.
const mine = new Map();
const order = []; // ids in creation order, to pick from and to cap the map
const MAX_MINE = 500;

function params(op, name, extra) {
  return Object.assign({ headers: JSON_HEADERS, timeout: TIMEOUT, tags: { op, name } }, extra || {});
}

const body = jsonBody;

function isErrorBody(b) {
  return b !== null && typeof b === 'object' && typeof b.error === 'string' && typeof b.code === 'string' && b.code.length > 0;
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

export function setup() {
  const b = requireHealthy({ op: 'setup', name: 'GET /health' });
  return { shards: b.shards, mode: b.mode };
}

function create() {
  const id = `k6-${__VU}-${__ITER}-${Date.now()}`;
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
  const res = http.post(API, JSON.stringify(payload), params('create', 'POST /api/v1/users/'));
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
  if (res.status !== 201 || u === null) return;
  created.add(1);
  remember(id, first, u.updated_at);
  if (!ok) return;

  // Read your own write: the row may not be on the replica yet, the server must still find it.
  const g = http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id'));
  const gu = body(g);
  check(g, {
    'read-after-create: 200': (r) => r.status === 200,
    'read-after-create: same user': () => gu !== null && gu.id === id && gu.first_name === first && gu.last_name === last,
  });
}

function read() {
  if (order.length === 0 || Math.random() < 0.1) {
    // An id nobody created: 404 with the JSON error contract. Expected, so not a "failed" request.
    const id = `k6-missing-${__VU}-${__ITER}-${Date.now()}`;
    const res = http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id', { responseCallback: http.expectedStatuses(404) }));
    const b = body(res);
    check(res, {
      'read unknown id: 404': (r) => r.status === 404,
      'read unknown id: JSON {error, code}': () => isErrorBody(b),
    });
    return;
  }
  const id = pickMine();
  const want = mine.get(id);
  const res = http.get(`${API}${id}`, params('read', 'GET /api/v1/users/:id'));
  const u = body(res);
  check(res, {
    'read: 200': (r) => r.status === 200,
    'read: same id': () => u !== null && u.id === id,
    'read: a first_name this VU wrote': () => u !== null && want.first.includes(u.first_name),
  });
  if (u !== null && res.status === 200) staleReads.add(u.first_name !== want.first[want.first.length - 1]);
}

function update() {
  if (order.length === 0) return create();
  const id = pickMine();
  const was = mine.get(id);
  const first = `Upd${__VU}x${__ITER}`;
  const res = http.patch(`${API}${id}`, JSON.stringify({ first_name: first }), params('update', 'PATCH /api/v1/users/:id'));
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
}

// Milliseconds since the epoch of an RFC 3339 timestamp (any number of fraction digits);
// NaN when it is not one, which makes every comparison below fail.
function ts(s) {
  if (typeof s !== 'string') return NaN;
  const t = Date.parse(s);
  return isNaN(t) ? Date.parse(s.replace(/(\.\d{3})\d+/, '$1')) : t;
}

function isNewestFirst(arr) {
  for (let i = 1; i < arr.length; i++) {
    if (!(ts(arr[i - 1].created_at) >= ts(arr[i].created_at))) return false;
  }
  return true;
}

function list() {
  const res = http.get(`${API}?limit=${LIMIT}`, params('list', 'GET /api/v1/users/?limit'));
  const page = body(res);
  check(res, {
    'list: 200': (r) => r.status === 200,
    'list: a JSON array': () => Array.isArray(page),
    'list: at most limit items': () => Array.isArray(page) && page.length <= LIMIT,
    'list: items are users': () => Array.isArray(page) && page.every((u) => u && typeof u.id === 'string' && typeof u.first_name === 'string'),
    'list: newest first': () => Array.isArray(page) && isNewestFirst(page),
  });
  const cursor = res.headers['X-Next-Cursor'];
  if (!Array.isArray(page) || !cursor || Math.random() >= 0.3) return;

  const res2 = http.get(`${API}?limit=${LIMIT}&cursor=${encodeURIComponent(cursor)}`, params('list', 'GET /api/v1/users/?cursor'));
  const page2 = body(res2);
  const seen = new Set(page.map((u) => u.id));
  check(res2, {
    'list next page: 200': (r) => r.status === 200,
    'list next page: a JSON array': () => Array.isArray(page2),
    'list next page: no id from page 1': () => Array.isArray(page2) && page2.every((u) => !seen.has(u.id)),
    'list next page: older than page 1': () =>
      Array.isArray(page2) && (page2.length === 0 || page.length === 0 ||
        ts(page2[0].created_at) <= ts(page[page.length - 1].created_at)),
  });
}

function del() {
  if (order.length < 5) return create(); // keep a few to read and update
  const id = pickMine();
  const res = http.del(`${API}${id}`, null, params('delete', 'DELETE /api/v1/users/:id'));
  check(res, { 'delete: 204': (r) => r.status === 204 });
  if (res.status === 204 || res.status === 404) forget(id);
}

export default function () {
  let r = Math.random() * W_TOTAL;
  if (order.length === 0 || (r -= W.create) < 0) create();
  else if ((r -= W.read) < 0) read();
  else if ((r -= W.update) < 0) update();
  else if ((r -= W.list) < 0) list();
  else del();
  if (SLEEP > 0) sleep(SLEEP);
}
