import http from 'k6/http';
import { check, sleep } from 'k6';

// Configurable
const NUM_ITEMS = 500;

export let options = {
    stages: [
        { duration: '10s', target: 10 },  // ramp up
        { duration: '30s', target: 10 },  // stay at 10 users
        { duration: '10s', target: 0 },   // ramp down
    ],
};

const BASE_URL = 'http://localhost:8080';
const ITEMS = Array.from({ length: NUM_ITEMS }, (_, i) => `item${i + 1}`);

export default function () {
    const userId = `user${__VU}-${__ITER}`;

    // Compute unique item per iteration
    const itemIndex = (__VU - 1) * 100 + __ITER; // 100 iterations per VU
    if (itemIndex >= ITEMS.length) return; // No more items to process

    const itemId = ITEMS[itemIndex];

    const checkoutRes = http.post(`${BASE_URL}/checkout?user_id=${userId}&id=${itemId}`);

    check(checkoutRes, {
        'checkout: status is 200': (r) => r.status === 200,
        'checkout: has reservation code': (r) => r.json('code') !== undefined,
    });

    const reservationCode = checkoutRes.json('code');

    sleep(Math.random() * 2);

    const purchaseRes = http.post(`${BASE_URL}/purchase?code=${reservationCode}`);

    check(purchaseRes, {
        'purchase: status is 200': (r) => r.status === 200,
        'purchase: message is success': (r) => r.json('message') === 'success',
    });

    sleep(Math.random() * 2);

    if (__ITER % 5 === 0) {
        const statusRes = http.get(`${BASE_URL}/status`);

        check(statusRes, {
            'status: status is 200': (r) => r.status === 200,
            'status: has sale_status field': (r) => r.json('sale_status') !== undefined,
        });
    }

    sleep(Math.random() * 1);
}
