// k6: the flash sale under contention (the Flash Sale API) against a LOCAL shardgate: many buyers,
// few items. Every item can be sold only once ever, so every run uses fresh item ids.
//
//   PROFILE=load loadtest/k6.sh sale-contention      # 200 VUs, 60 s (also the default without PROFILE)
//   PROFILE=smoke loadtest/k6.sh sale-contention     # 20 VUs, 15 s
//   VUS=50 DURATION=30s ITEMS=20 loadtest/k6.sh sale-contention
//
// (k6.sh's banner prints "PROFILE=smoke" when PROFILE is unset; this script's default is
// the 200-VU load profile all the same. Set PROFILE to make the banner right.)
//
// setup(): checks /health and that POST /checkout exists (no parameters: a 400 JSON error,
// not the router's ROUTE_NOT_FOUND / METHOD_NOT_ALLOWED), picks the run tag (4 random
// base36 chars, or RUN_TAG) and reads GET /status once.
// default: each iteration, closed loop (no think time), user u<tag>-<vu> (one user per VU):
//   POST /checkout?user_id=u<tag>-<vu>&id=c<tag>-<n>, n a random one of 0..ITEMS-1
//     200: {"message":"success","code":"<32 hex>"}, then at once
//       POST /purchase?code=<code>: 200 {"message":"success","user":<user>,"item":<item>}
//       and, for REPEAT_PCT (10) % of the codes, the same purchase again: the same 200 body
//     4xx: a refusal, {"error":"<message>","code":"<STABLE_CODE>"}, counted by code
//     5xx: a failure (counted in sale_5xx, which must stay 0)
// teardown(): GET /status again: every field there and a number; the purchased_goods this
// run added (after - before) must be <= ITEMS (in a fresh sale that is purchased_goods
// itself; when the hourly sale rolled over during the run, the new sale's purchased_goods).
//
// Thresholds (the run fails, k6 exits 99, when one is crossed):
//   http_req_failed rate < FAIL_RATE (0.001); 200, 400, 404, 409 and 429 are expected
//     statuses (a refusal is an answer, not a failure)
//   sale_5xx count <= MAX_5XX (0): no 5xx at all
//   checks rate > CHECK_RATE (0.99)
//   purchases_first count <= ITEMS: first purchases (200s of a code we had not bought
//     before); more than ITEMS means some item was sold twice
// Counters (reported): checkouts_ok, checkout_refused (tag code), checkout_refused_item_sold,
// _item_reserved, _sold_out, _user_limit, _other (any other code), purchases_first,
// purchases_repeat, purchase_failed. p(99) of each request kind (tag op) is reported, not a
// threshold (P99_MS sets one when given).
// Other env: BASE_URL (default http://127.0.0.1:8080; localhost only), ITEMS (50),
// REPEAT_PCT (10), REQ_TIMEOUT (5s), RUN_TAG ([a-z0-9]{1,8}; random by default).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { BASE_URL, bodyText, checkRunTag, constantVusOptions, objectBody, profile, requireHealthy, runTag } from './lib.js';


const { PROFILE, VUS, DURATION } = profile({
  smoke: { vus: 20, duration: '15s' },
  load: { vus: 200, duration: '60s' },
}, 'load');
const ITEMS = parseInt(__ENV.ITEMS || 50, 10);
const REPEAT_PCT = Number(__ENV.REPEAT_PCT || 10);
const FAIL_RATE = Number(__ENV.FAIL_RATE || 0.001);
const CHECK_RATE = Number(__ENV.CHECK_RATE || 0.99);
const MAX_5XX = parseInt(__ENV.MAX_5XX || 0, 10);
const TIMEOUT = __ENV.REQ_TIMEOUT || '5s';
if (!(VUS >= 1 && VUS <= 5000)) throw new Error(`VUS=${VUS}: use 1..5000`);
if (!(ITEMS >= 1 && ITEMS <= 100000)) throw new Error(`ITEMS=${ITEMS}: use 1..100000`);
if (!(REPEAT_PCT >= 0 && REPEAT_PCT <= 100)) throw new Error(`REPEAT_PCT=${REPEAT_PCT}: a percentage`);
checkRunTag();

// Refusals and malformed requests are answers of the contract, not failures.
http.setResponseCallback(http.expectedStatuses(200, 400, 404, 409, 429));

const thresholds = {
  http_req_failed: [`rate<${FAIL_RATE}`],
  sale_5xx: [`count<=${MAX_5XX}`],
  checks: [`rate>${CHECK_RATE}`],
  purchases_first: [`count<=${ITEMS}`],
};
// One line per request kind in the summary; a p99 threshold only when P99_MS is set.
for (const op of ['checkout', 'purchase', 'purchase_repeat']) {
  thresholds[`http_req_duration{op:${op}}`] = __ENV.P99_MS ? [`p(99)<${Number(__ENV.P99_MS)}`] : [];
}

export const options = constantVusOptions('buyers', VUS, DURATION, thresholds, '60s');

const checkoutsOk = new Counter('checkouts_ok');
const refused = new Counter('checkout_refused'); // tag code: the refusal's stable code
const REFUSAL_COUNTERS = {
  ITEM_SOLD: new Counter('checkout_refused_item_sold'),
  ITEM_RESERVED: new Counter('checkout_refused_item_reserved'),
  SOLD_OUT: new Counter('checkout_refused_sold_out'),
  USER_LIMIT: new Counter('checkout_refused_user_limit'),
};
const refusedOther = new Counter('checkout_refused_other');
const purchasesFirst = new Counter('purchases_first');
const purchasesRepeat = new Counter('purchases_repeat');
const purchaseFailed = new Counter('purchase_failed');
const sale5xx = new Counter('sale_5xx');

const STATUS_FIELDS = ['seconds_remaining', 'successful_checkouts', 'failed_checkouts',
  'successful_purchases', 'failed_purchases', 'scheduled_goods', 'purchased_goods'];
const CODE_RE = /^[0-9a-f]{32}$/;

const body = objectBody;

function isRefusal(res, b) {
  return res.status >= 400 && res.status < 500 && b !== null &&
    typeof b.error === 'string' && b.error.length > 0 &&
    typeof b.code === 'string' && b.code.length > 0;
}

// The refusal counter of a stable code; USER_LIMIT also covers e.g. USER_LIMIT_REACHED.
function refusalCounter(code) {
  if (REFUSAL_COUNTERS[code]) return REFUSAL_COUNTERS[code];
  if (code.startsWith('USER_LIMIT')) return REFUSAL_COUNTERS.USER_LIMIT;
  return refusedOther;
}

function sameJson(a, b) {
  if (a === null || b === null) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

function getStatus(phase) {
  const res = http.get(`${BASE_URL}/status`, { timeout: TIMEOUT, tags: { phase, name: 'GET /status' } });
  const b = body(res);
  const ok = check(res, {
    [`status (${phase}): 200`]: (r) => r.status === 200,
    [`status (${phase}): every counter a number >= 0`]: () =>
      b !== null && STATUS_FIELDS.every((f) => typeof b[f] === 'number' && b[f] >= 0),
    [`status (${phase}): sale_status active or completed`]: () =>
      b !== null && (b.sale_status === 'active' || b.sale_status === 'completed'),
  });
  return ok ? b : null;
}

export function setup() {
  requireHealthy({ phase: 'setup', name: 'GET /health' });
  // Does the endpoint exist? Without parameters it must be a 400 JSON error, not the
  // router's 404 ROUTE_NOT_FOUND or 405 METHOD_NOT_ALLOWED.
  const probe = http.post(`${BASE_URL}/checkout`, null, { timeout: '5s', tags: { phase: 'setup', name: 'POST /checkout (probe)' } });
  const pb = body(probe);
  if (probe.status !== 400 || !pb || typeof pb.error !== 'string') {
    exec.test.abort(`POST /checkout without parameters answered ${probe.status} ${bodyText(probe)}, ` +
      'not a 400 JSON error: the flash-sale endpoints are not there yet');
  }
  const tag = runTag();
  const before = getStatus('setup');
  console.log(`sale-contention: run tag ${tag}: items c${tag}-0..c${tag}-${ITEMS - 1}, users u${tag}-1..u${tag}-${VUS}`);
  return { tag, before };
}

export default function (data) {
  const user = `u${data.tag}-${exec.vu.idInTest}`;
  const item = `c${data.tag}-${Math.floor(Math.random() * ITEMS)}`;

  const res = http.post(`${BASE_URL}/checkout?user_id=${user}&id=${item}`, null,
    { timeout: TIMEOUT, tags: { op: 'checkout', name: 'POST /checkout' } });
  const b = body(res);
  if (res.status >= 500) sale5xx.add(1, { op: 'checkout' });
  check(res, {
    'checkout: 200 or a 4xx refusal, never 5xx': (r) => r.status === 200 || (r.status >= 400 && r.status < 500),
  });

  if (res.status >= 500) return; // counted above; not a refusal to check the body of
  if (res.status !== 200) {
    const ok = check(res, {
      'checkout: a refusal is JSON {"error", "code"}': (r) => isRefusal(r, b),
    });
    if (ok) {
      refused.add(1, { code: b.code });
      refusalCounter(b.code).add(1);
    }
    return;
  }

  const hold = check(res, {
    'checkout: 200 says "success"': () => b !== null && b.message === 'success',
    'checkout: 200 carries a 32-hex code': () => b !== null && typeof b.code === 'string' && CODE_RE.test(b.code),
  });
  if (!hold) return;
  checkoutsOk.add(1);

  const code = b.code;
  const pr = http.post(`${BASE_URL}/purchase?code=${code}`, null,
    { timeout: TIMEOUT, tags: { op: 'purchase', name: 'POST /purchase' } });
  const pb = body(pr);
  if (pr.status >= 500) sale5xx.add(1, { op: 'purchase' });
  const bought = check(pr, {
    'purchase: our code is 200': (r) => r.status === 200,
    'purchase: "success", our user and item': () =>
      pb !== null && pb.message === 'success' && String(pb.user) === user && String(pb.item) === item,
  });
  if (!bought) {
    purchaseFailed.add(1);
    return;
  }
  purchasesFirst.add(1);

  if (Math.random() * 100 < REPEAT_PCT) {
    const rr = http.post(`${BASE_URL}/purchase?code=${code}`, null,
      { timeout: TIMEOUT, tags: { op: 'purchase_repeat', name: 'POST /purchase (repeat)' } });
    if (rr.status >= 500) sale5xx.add(1, { op: 'purchase_repeat' });
    purchasesRepeat.add(1);
    check(rr, {
      'purchase repeat: 200 again': (r) => r.status === 200,
      'purchase repeat: the same body': (r) => r.body === pr.body || sameJson(body(r), pb),
    });
  }
}

export function teardown(data) {
  const after = getStatus('teardown');
  if (after === null) return;
  const before = data.before;
  // A new hourly sale began during the run when seconds_remaining went up: then only the
  // new sale's own counters are ours (and maybe others').
  const rolled = before === null || after.seconds_remaining > before.seconds_remaining;
  const added = rolled ? after.purchased_goods : after.purchased_goods - before.purchased_goods;
  console.log(`sale-contention: /status after: ${JSON.stringify(after)}; purchased_goods ` +
    `${rolled ? 'in the new sale' : 'added by this run'}: ${added} (ITEMS=${ITEMS})`);
  check(after, {
    'status (teardown): purchased_goods added <= ITEMS': () => added <= ITEMS,
  });
}
