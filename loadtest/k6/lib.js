// What the k6 scripts users-crud.js, pagination.js, cache-read.js, sale-contention.js and
// presence.js share (not sale-seed004.js, which stays the seed's own). Import it:
// import { ... } from './lib.js';
//
// Importing it checks BASE_URL (default http://127.0.0.1:8080): only 127.0.0.1, localhost
// or [::1] are accepted; anything else throws before the test starts.

import http from 'k6/http';
import exec from 'k6/execution';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
if (!/^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?(\/.*)?$/.test(BASE_URL)) {
  throw new Error(`refusing BASE_URL=${BASE_URL}: only 127.0.0.1, localhost or [::1]`);
}

export const JSON_HEADERS = { 'Content-Type': 'application/json' };

// profile({ name: { vus, duration }, ... }, fallback): PROFILE (or the fallback) must be one
// of them; VUS and DURATION override its numbers. Returns { PROFILE, VUS, DURATION }.
export function profile(profiles, fallback) {
  const name = __ENV.PROFILE || fallback;
  if (!profiles[name]) {
    throw new Error(`unknown PROFILE=${name}; use one of ${Object.keys(profiles).join(', ')}`);
  }
  return {
    PROFILE: name,
    VUS: parseInt(__ENV.VUS || profiles[name].vus, 10),
    DURATION: __ENV.DURATION || profiles[name].duration,
  };
}

// The options of one scenario (any executor config: { executor: 'constant-vus', vus,
// duration } or { executor: 'ramping-vus', stages, ... }; gracefulStop 5 s unless given)
// with the shared summary stats and user agent; setup and teardown both get
// setupTeardownTimeout. Every request of the scenario carries the tag phase:main, so a
// threshold on `http_req_duration{phase:main}` leaves setup's and teardown's requests out.
export function scenarioOptions(scenario, executorConfig, thresholds, setupTeardownTimeout) {
  return {
    scenarios: {
      [scenario]: Object.assign({ gracefulStop: '5s', tags: { phase: 'main' } }, executorConfig),
    },
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    userAgent: 'shardgate-k6/1.0',
    setupTimeout: setupTeardownTimeout,
    teardownTimeout: setupTeardownTimeout,
  };
}

// The options of one constant-vus scenario (gracefulStop 5 s); see scenarioOptions.
export function constantVusOptions(scenario, vus, duration, thresholds, setupTeardownTimeout) {
  return scenarioOptions(scenario, { executor: 'constant-vus', vus, duration }, thresholds, setupTeardownTimeout);
}

// A k6 duration from an env value: a bare number is seconds ("120" -> "120s"); "90s",
// "2m", "1m30s", "500ms" pass through. Throws on anything else.
export function k6Duration(v, what) {
  const s = String(v).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return `${s}s`;
  if (/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return s;
  throw new Error(`${what || 'duration'}=${v}: use seconds (120) or a k6 duration (90s, 2m, 1m30s)`);
}

// Seconds in a k6 duration as k6Duration accepts it.
export function durationSeconds(v) {
  const s = k6Duration(v);
  let total = 0;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]];
  return total;
}

// Think time from an env value: "" or "0" -> none, "0.5" -> 0.5 s, "3-7" -> uniform in
// [3, 7) s. Returns a function that gives one draw in seconds (0 for none).
export function thinkTime(v, what) {
  const s = String(v === undefined || v === null ? '' : v).trim();
  if (s === '' || s === '0') return () => 0;
  let m = /^(\d+(?:\.\d+)?)$/.exec(s);
  if (m) {
    const t = Number(m[1]);
    return () => t;
  }
  m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(s);
  if (m && Number(m[1]) <= Number(m[2])) {
    const lo = Number(m[1]);
    const hi = Number(m[2]);
    return () => lo + Math.random() * (hi - lo);
  }
  throw new Error(`${what || 'SLEEP'}=${v}: use seconds (0.5) or a range (3-7)`);
}

// RUN_TAG, when set, must be [a-z0-9]{1,8} (call this in the init context).
export function checkRunTag() {
  if (__ENV.RUN_TAG && !/^[a-z0-9]{1,8}$/.test(__ENV.RUN_TAG)) {
    throw new Error(`RUN_TAG=${__ENV.RUN_TAG}: use [a-z0-9]{1,8}`);
  }
}

// 4 random base36 chars.
export function tag4() {
  const a = '0123456789abcdefghijklmnopqrstuvwxyz';
  let s = '';
  for (let i = 0; i < 4; i++) s += a[Math.floor(Math.random() * a.length)];
  return s;
}

// This run's tag: RUN_TAG, or 4 random base36 chars.
export function runTag() {
  return __ENV.RUN_TAG || tag4();
}

// The response's JSON (any value), or null when it is not JSON.
export function jsonBody(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

// The response's JSON when it is an object (not an array), else null.
export function objectBody(res) {
  const b = jsonBody(res);
  return b !== null && typeof b === 'object' && !Array.isArray(b) ? b : null;
}

// The first 200 characters of a response's body, for messages.
export function bodyText(res) {
  return String(res.body).slice(0, 200);
}

// GET /health (5 s, with these tags); aborts the test unless it is 200 {"status":"ok"}.
// Returns the body.
export function requireHealthy(tags) {
  const res = http.get(`${BASE_URL}/health`, { timeout: '5s', tags });
  const b = objectBody(res);
  if (res.status !== 200 || !b || b.status !== 'ok') {
    exec.test.abort(`shardgate is not healthy at ${BASE_URL}/health (status ${res.status}): start it with make dev`);
  }
  return b;
}
