import { describe, expect, it } from 'vitest';

import { formatTable, SECTIONS } from '../../bench/core';

describe('core benchmark (quick smoke run)', () => {
    it('every section returns finite, uniquely keyed figures and the table prints them', async () => {
        const keys = new Set<string>();
        for (const [name, section] of Object.entries(SECTIONS)) {
            const rows = await section({ seed: 7, quick: true });
            expect(rows.length, name).toBeGreaterThan(0);
            for (const row of rows) {
                expect(Number.isFinite(row.value), row.key).toBe(true);
                expect(row.key.startsWith(`${name}.`), row.key).toBe(true);
                expect(keys.has(row.key), `duplicate ${row.key}`).toBe(false);
                keys.add(row.key);
            }
            expect(formatTable(rows)).toContain(rows[0].key);
        }
        for (const key of [
            'placement.n10.max_over_mean',
            'placement.n100.max_over_mean',
            'placement.n100.moved_over_ideal',
            'placement.lookup_ns',
            'balancing.slow_backend.p99_ms.ResponseTimeBased',
            'cache.zipf.hit_rate'
        ]) {
            expect(keys.has(key), key).toBe(true);
        }
    }, 60_000);
});
