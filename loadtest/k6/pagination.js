// k6: deep keyset pagination of GET /api/v1/users/ against a LOCAL shardgate.
//
//   PROFILE=load loadtest/k6.sh pagination        # 10 VUs, 60 s (also the default without PROFILE)
//   PROFILE=smoke loadtest/k6.sh pagination       # 2 VUs, 15 s
//   VUS=4 DURATION=30s PAGES=100 loadtest/k6.sh pagination
//   MODE=offset loadtest/k6.sh pagination         # the Messenger Clone API's OFFSET paging, for comparison
//
// setup(): checks /health, then creates SEED_USERS (default PAGES x LIMIT = 5,000) users
// `kp-<tag>-<n>` through POST /api/v1/users/ (50 at a time), so the walk has that depth
// even on an empty database (tag: 4 random base36 chars, or RUN_TAG).
// default: each iteration is one walk from the newest user: GET /api/v1/users/?limit=LIMIT,
// then ?limit=LIMIT&cursor=<X-Next-Cursor of the page before>, for PAGES (50) pages or until
// the end (no X-Next-Cursor). Checks on every page: 200; a JSON array of at most LIMIT users;
// X-Next-Cursor present exactly when the page is full, and of the form <micros>.<id of the
// page's last user>; newest first, strictly, in (created_at, id) order, within the page AND
// against the last user of the page before; no id seen earlier in the walk. After the walk:
// it reached PAGES pages, or ended properly (a short page, or an empty one, without cursor).
// Users written by others during the walk are newer than the cursor and never show up in
// later pages, so these checks hold while other load runs.
// teardown(): deletes every user setup() created (KEEP=1 keeps them).
//
// Depth: each page's latency goes to the Trend page_duration tagged depth (the page number's
// bucket: 001-005, 006-015, 016-030, 031-050, 051-100, 101+), and each walk adds the ratio
// mean(latency in the deepest bucket it reached) / mean(latency of pages 1-5) to the Trend
// depth_ratio. With keyset paging a deep page costs what the first one costs, so the ratio
// stays near 1; with OFFSET paging every shard reads offset + limit rows and it grows with
// depth.
//
// Thresholds (the run fails, k6 exits 99, when one is crossed):
//   http_req_failed rate < FAIL_RATE (0.01); checks rate > CHECK_RATE (0.99);
//   page_duration{depth:<bucket>} p(95) < P95_MS (50) for every bucket the walk reaches;
//   depth_ratio med < DEPTH_RATIO (1.5): latency does not grow with depth.
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), LIMIT (page size,
// 100), PAGES (50), SEED_USERS, MODE (cursor, or offset: `offset=(page-1)*LIMIT`, the
// server allows offset <= 10000), REQ_TIMEOUT (5s), RUN_TAG ([a-z0-9]{1,8}), KEEP=1.

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, bodyText, checkRunTag, constantVusOptions, jsonBody, profile, requireHealthy, runTag,
} from './lib.js';

const API = `${BASE_URL}/api/v1/users/`;

const { PROFILE, VUS, DURATION } = profile({
  smoke: { vus: 2, duration: '15s' },
  load: { vus: 10, duration: '60s' },
}, 'load');
const LIMIT = parseInt(__ENV.LIMIT || 100, 10);
const PAGES = parseInt(__ENV.PAGES || 50, 10);
const SEED_USERS = parseInt(__ENV.SEED_USERS || PAGES * LIMIT, 10);
const MODE = __ENV.MODE || 'cursor';
const P95_MS = Number(__ENV.P95_MS || 50);
const DEPTH_RATIO = Number(__ENV.DEPTH_RATIO || 1.5);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.01);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';
const KEEP = __ENV.KEEP === '1';
if (!(LIMIT >= 1 && LIMIT <= 100)) throw new Error(`LIMIT=${LIMIT}: use 1..100 (the server's maximum)`);
if (!(PAGES >= 2 && PAGES <= 10000)) throw new Error(`PAGES=${PAGES}: use 2..10000`);
if (!(SEED_USERS >= 0 && SEED_USERS <= 100000)) throw new Error(`SEED_USERS=${SEED_USERS}: use 0..100000`);
if (MODE !== 'cursor' && MODE !== 'offset') throw new Error(`MODE=${MODE}: cursor or offset`);
if (MODE === 'offset' && (PAGES - 1) * LIMIT > 10000) {
  throw new Error(`MODE=offset: (PAGES-1) x LIMIT = ${(PAGES - 1) * LIMIT} is over the server's offset limit (10000)`);
}
checkRunTag();

// Page number -> depth bucket.
const BUCKETS = [[1, 5], [6, 15], [16, 30], [31, 50], [51, 100], [101, Infinity]];
const label = ([lo, hi]) => (hi === Infinity ? `${String(lo).padStart(3, '0')}+` : `${String(lo).padStart(3, '0')}-${String(hi).padStart(3, '0')}`);
function bucketOf(page) {
  return BUCKETS.findIndex(([lo, hi]) => page >= lo && page <= hi);
}

const thresholds = {
  http_req_failed: [`rate<${FAIL_RATE}`],
  checks: [`rate>${CHECK_RATE}`],
  depth_ratio: [`med<${DEPTH_RATIO}`],
  // One line per page kind in the summary (no bound).
  'http_req_duration{op:first}': [],
  'http_req_duration{op:next}': [],
};
for (const b of BUCKETS) {
  if (b[0] <= PAGES) thresholds[`page_duration{depth:${label(b)}}`] = [`p(95)<${P95_MS}`];
}

export const options = constantVusOptions('walkers', VUS, DURATION, thresholds, '300s');

const pageDuration = new Trend('page_duration', true);
const depthRatio = new Trend('depth_ratio');
const pagesWalked = new Counter('pages_walked');
const rowsSeen = new Counter('rows_seen');

const body = jsonBody;
const userId = (tag, n) => `kp-${tag}-${n}`;

function isUser(u) {
  return u !== null && typeof u === 'object' && typeof u.id === 'string' && typeof u.first_name === 'string' &&
    typeof u.created_at === 'string' && typeof u.updated_at === 'string';
}

// a strictly older than b in the list order (created_at desc, id desc). The server's
// timestamps are fixed width (RFC 3339, microseconds, "Z"): they compare as strings.
function older(a, b) {
  return a.created_at < b.created_at || (a.created_at === b.created_at && a.id < b.id);
}

export function setup() {
  requireHealthy({ phase: 'setup', name: 'GET /health' });
  const tag = runTag();
  const ids = [];
  const postParams = {
    headers: JSON_HEADERS,
    timeout: TIMEOUT,
    tags: { phase: 'setup', name: 'POST /api/v1/users/ (seed)' },
    responseCallback: http.expectedStatuses(201, 409),
  };
  for (let i = 0; i < SEED_USERS; i += 50) {
    const reqs = [];
    for (let n = i + 1; n <= Math.min(i + 50, SEED_USERS); n++) {
      reqs.push(['POST', API, JSON.stringify({ id: userId(tag, n), first_name: 'Page', last_name: `K6 ${n}` }), postParams]);
    }
    http.batch(reqs).forEach((r, j) => {
      // 409: someone else's row with that id; leave it alone (not deleted).
      if (r.status === 201) ids.push(i + j + 1);
      else if (r.status !== 409) console.warn(`setup: create ${userId(tag, i + j + 1)}: HTTP ${r.status} ${bodyText(r)}`);
    });
  }
  check(ids, { 'setup: created at least 99% of the seed users': (c) => c.length >= SEED_USERS * 0.99 });
  if (SEED_USERS > 0 && ids.length === 0) exec.test.abort('setup: could not create any user (see the warnings above)');
  console.log(`setup: tag ${tag}, ${ids.length}/${SEED_USERS} users kp-${tag}-* created; ` +
    `PROFILE=${PROFILE} ${VUS} VUs for ${DURATION}, MODE=${MODE}, ${PAGES} pages of ${LIMIT}`);
  return { tag, ids };
}

export default function () {
  const seen = new Set();
  let prev = null; // the last user of the page before
  let cursor = null;
  const sums = BUCKETS.map(() => 0);
  const counts = BUCKETS.map(() => 0);
  let page = 1;
  let ended = false; // the list said "no more"
  let broken = false; // a page failed; the walk stops

  for (; page <= PAGES; page++) {
    const b = bucketOf(page);
    const depth = label(BUCKETS[b]);
    let url = `${API}?limit=${LIMIT}`;
    if (MODE === 'offset') url += `&offset=${(page - 1) * LIMIT}`;
    else if (page > 1) url += `&cursor=${encodeURIComponent(cursor)}`;
    const res = http.get(url, {
      timeout: TIMEOUT,
      tags: { op: page === 1 ? 'first' : 'next', depth, name: `GET /api/v1/users/?limit&${MODE === 'offset' ? 'offset' : 'cursor'}` },
    });
    const items = body(res);
    const ok200 = res.status === 200 && Array.isArray(items);
    const next = res.headers['X-Next-Cursor'];
    const full = ok200 && items.length === LIMIT;
    const last = ok200 && items.length > 0 ? items[items.length - 1] : null;
    const valid = ok200 && items.every(isUser);
    check(res, {
      'page: 200': (r) => r.status === 200,
      'page: a JSON array of users': () => valid,
      'page: at most limit items': () => ok200 && items.length <= LIMIT,
      'page: X-Next-Cursor exactly when the page is full': () => ok200 && full === Boolean(next),
      'page: cursor is <micros>.<id of the last user>': () =>
        !next || (last !== null && typeof last.id === 'string' && next === `${next.split('.')[0]}.${last.id}` && /^-?\d+$/.test(next.split('.')[0])),
      'page: newest first (within and across pages)': () => {
        if (!valid) return false;
        let p = prev;
        for (const u of items) {
          if (p !== null && !older(u, p)) return false;
          p = u;
        }
        return true;
      },
      'page: no id seen earlier in the walk': () => valid && items.every((u) => !seen.has(u.id)),
    });
    pageDuration.add(res.timings.duration, { depth });
    pagesWalked.add(1);
    sums[b] += res.timings.duration;
    counts[b] += 1;
    if (!valid) {
      broken = true;
      break;
    }
    rowsSeen.add(items.length);
    for (const u of items) seen.add(u.id);
    if (last !== null) prev = last;
    if (MODE === 'offset' ? items.length < LIMIT : !next) {
      ended = true;
      break;
    }
    cursor = next;
  }

  if (!broken) {
    check(page, {
      'walk: reached PAGES pages, or the end of the list': () => ended || page > PAGES,
    });
  }
  // Deepest bucket reached (with at least one page) against pages 1-5.
  let deep = -1;
  for (let i = BUCKETS.length - 1; i > 0; i--) {
    if (counts[i] > 0) {
      deep = i;
      break;
    }
  }
  if (deep > 0 && counts[0] > 0) depthRatio.add((sums[deep] / counts[deep]) / (sums[0] / counts[0]));
}

export function teardown(data) {
  if (!data || !data.ids) return;
  if (KEEP) {
    console.log(`teardown: KEEP=1, the users kp-${data.tag}-* stay`);
    return;
  }
  let gone = 0;
  for (let i = 0; i < data.ids.length; i += 50) {
    const chunk = data.ids.slice(i, i + 50);
    const res = http.batch(chunk.map((n) => ['DELETE', `${API}${userId(data.tag, n)}`, null,
      { timeout: TIMEOUT, tags: { phase: 'teardown', name: 'DELETE /api/v1/users/:id' }, responseCallback: http.expectedStatuses(204, 404) }]));
    for (const r of res) if (r.status === 204 || r.status === 404) gone++;
  }
  check(gone, { 'teardown: every created user deleted': (g) => g === data.ids.length });
  console.log(`teardown: ${gone}/${data.ids.length} users kp-${data.tag}-* deleted`);
}
