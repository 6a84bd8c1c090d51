// What the k6 scripts users-crud.js, cache-read.js and sale-contention.js share (not
// sale-seed004.js, which stays the seed's own). Import it: import { ... } from './lib.js';
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

// The options of one constant-vus scenario (gracefulStop 5 s) with the shared summary
// stats and user agent; setup and teardown both get setupTeardownTimeout.
export function constantVusOptions(scenario, vus, duration, thresholds, setupTeardownTimeout) {
  return {
    scenarios: {
      [scenario]: {
        executor: 'constant-vus',
        vus,
        duration,
        gracefulStop: '5s',
      },
    },
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    userAgent: 'shardgate-k6/1.0',
    setupTimeout: setupTeardownTimeout,
    teardownTimeout: setupTeardownTimeout,
  };
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
