import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    BoundedCache,
    FrequencySketch,
    MAX_TAGS_PER_ENTRY,
    validateCacheConfig,
    type CachePolicy
} from '../../src/shared/cache';

const POLICIES: CachePolicy[] = ['lru', 'w-tinylfu'];

function cacheOf(
    policy: CachePolicy,
    max_entries = 100,
    max_bytes = 1_000_000
): BoundedCache<string> {
    return new BoundedCache<string>({ max_entries, max_bytes, policy });
}

function putOk(
    cache: BoundedCache<string>,
    key: string,
    now_ms = 0,
    size_bytes = 1,
    ttl_ms = 1_000_000,
    tags: string[] = []
): void {
    expect(cache.put(key, `v:${key}`, { size_bytes, ttl_ms, tags }, now_ms)).toEqual({ ok: true });
}

describe.each(POLICIES)('BoundedCache (%s)', (policy) => {
    it('serves a value until its TTL passes, then counts an expiration and a miss', () => {
        const cache = cacheOf(policy);
        putOk(cache, 'a', 1_000, 10, 100);
        expect(cache.get('a', 1_099)).toBe('v:a');
        expect(cache.get('a', 1_100)).toBeUndefined();
        expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, expirations: 1, entries: 0 });
    });

    it('keeps at most max_entries entries', () => {
        const cache = cacheOf(policy, 10);
        for (let i = 0; i < 100; i++) {
            putOk(cache, `k${i}`, i);
            expect(cache.size()).toBeLessThanOrEqual(10);
        }
        expect(cache.stats().evictions).toBe(90);
    });

    it('keeps total size_bytes at or under max_bytes', () => {
        const cache = cacheOf(policy, 1000, 500);
        for (let i = 0; i < 200; i++) {
            putOk(cache, `k${i % 50}`, i, 1 + ((i * 37) % 120));
            expect(cache.stats().size_bytes).toBeLessThanOrEqual(500);
        }
    });

    it('refuses an entry larger than max_bytes and invalid options without changing anything', () => {
        const cache = cacheOf(policy, 10, 100);
        putOk(cache, 'keep');
        const before = cache.stats();
        expect(cache.put('big', 'x', { size_bytes: 101, ttl_ms: 10 }, 0)).toEqual({
            ok: false,
            error: { kind: 'TooLarge', size_bytes: 101, max_bytes: 100 }
        });
        const tooManyTags = Array.from({ length: MAX_TAGS_PER_ENTRY + 1 }, (_, i) => `t${i}`);
        for (const options of [
            { size_bytes: -1, ttl_ms: 10 },
            { size_bytes: 1.5, ttl_ms: 10 },
            { size_bytes: 1, ttl_ms: 0 },
            { size_bytes: 1, ttl_ms: Number.POSITIVE_INFINITY },
            { size_bytes: 1, ttl_ms: 10, tags: tooManyTags },
            { size_bytes: 1, ttl_ms: 10, tags: [''] }
        ]) {
            const result = cache.put('bad', 'x', options, 0);
            expect(result.ok).toBe(false);
            if (!result.ok) expect(result.error.kind).toBe('InvalidInput');
        }
        expect(cache.stats()).toEqual(before);
        expect(cache.get('keep', 0)).toBe('v:keep');
    });

    it('invalidates every entry carrying a tag and nothing else', () => {
        const cache = cacheOf(policy);
        putOk(cache, 'dash:alice', 0, 1, 1000, ['user:alice', 'shard:1']);
        putOk(cache, 'loan:1', 0, 1, 1000, ['user:alice', 'shard:2']);
        putOk(cache, 'dash:bob', 0, 1, 1000, ['user:bob', 'shard:1']);
        expect(cache.invalidateTag('user:alice')).toBe(2);
        expect(cache.get('dash:alice', 1)).toBeUndefined();
        expect(cache.get('loan:1', 1)).toBeUndefined();
        expect(cache.get('dash:bob', 1)).toBe('v:dash:bob');
        expect(cache.invalidateTag('shard:1')).toBe(1);
        expect(cache.invalidateTag('shard:1')).toBe(0);
        expect(cache.stats()).toMatchObject({ invalidations: 3, entries: 0 });
    });

    it('replaces the tags of a rewritten entry', () => {
        const cache = cacheOf(policy);
        putOk(cache, 'k', 0, 1, 1000, ['shard:1']);
        putOk(cache, 'k', 0, 1, 1000, ['shard:2']);
        expect(cache.invalidateTag('shard:1')).toBe(0);
        expect(cache.get('k', 1)).toBe('v:k');
        expect(cache.invalidateTag('shard:2')).toBe(1);
    });

    it('keeps its statistics consistent', () => {
        const cache = cacheOf(policy, 5);
        let inserted = 0;
        for (let i = 0; i < 20; i++) {
            putOk(cache, `k${i}`, i, 1, 7, i % 3 === 0 ? ['t'] : []);
            inserted++;
            cache.get(`k${i - 2}`, i);
        }
        cache.invalidateTag('t');
        cache.delete('k19');
        const s = cache.stats();
        expect(s.hits + s.misses).toBe(20);
        expect(s.hit_rate).toBeCloseTo(s.hits / 20, 12);
        expect(s.entries).toBe(inserted - s.evictions - s.expirations - s.invalidations);
        expect(s.entries).toBe(cache.size());
    });

    it('sweeps expired entries within a bounded number of checks', () => {
        const cache = cacheOf(policy);
        for (let i = 0; i < 10; i++) putOk(cache, `short${i}`, 0, 1, 10);
        for (let i = 0; i < 5; i++) putOk(cache, `long${i}`, 0, 1, 1000);
        expect(cache.sweepExpired(5, 100)).toBe(0);
        expect(cache.sweepExpired(10, 4)).toBe(4);
        expect(cache.sweepExpired(10, 100)).toBe(6);
        expect(cache.stats()).toMatchObject({ entries: 5, expirations: 10 });
        expect(cache.get('long0', 10)).toBe('v:long0');
    });

    it('reports a zero hit rate before any read', () => {
        expect(cacheOf(policy).stats().hit_rate).toBe(0);
    });

    it('clears everything as invalidations', () => {
        const cache = cacheOf(policy);
        putOk(cache, 'a', 0, 3, 10, ['t']);
        putOk(cache, 'b', 0, 4);
        cache.clear();
        expect(cache.stats()).toMatchObject({ entries: 0, size_bytes: 0, invalidations: 2 });
        expect(cache.invalidateTag('t')).toBe(0);
    });

    it('never returns an expired, invalidated or stale value (property, against a reference model)', () => {
        const op = fc.oneof(
            fc.record({
                kind: fc.constant('put' as const),
                key: fc.integer({ min: 0, max: 15 }),
                size_bytes: fc.integer({ min: 0, max: 40 }),
                ttl_ms: fc.integer({ min: 1, max: 30 }),
                tags: fc.uniqueArray(fc.integer({ min: 0, max: 4 }), { maxLength: 3 })
            }),
            fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 15 }) }),
            fc.record({
                kind: fc.constant('delete' as const),
                key: fc.integer({ min: 0, max: 15 })
            }),
            fc.record({ kind: fc.constant('tag' as const), tag: fc.integer({ min: 0, max: 4 }) }),
            fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 10 }) }),
            fc.record({
                kind: fc.constant('sweep' as const),
                checks: fc.integer({ min: 0, max: 8 })
            })
        );
        fc.assert(
            fc.property(
                fc.integer({ min: 1, max: 8 }),
                fc.integer({ min: 40, max: 120 }),
                fc.array(op, { maxLength: 150 }),
                (max_entries, max_bytes, ops) => {
                    const cache = new BoundedCache<number>({ max_entries, max_bytes, policy });
                    // The model holds what a get may return: the last put, while live and not invalidated.
                    const model = new Map<
                        number,
                        { value: number; expires_at_ms: number; tags: number[] }
                    >();
                    let now_ms = 0;
                    let version = 0;
                    for (const o of ops) {
                        if (o.kind === 'put') {
                            version++;
                            const tags = o.tags.map((t) => `tag:${t}`);
                            const r = cache.put(`${o.key}`, version, { ...o, tags }, now_ms);
                            expect(r.ok).toBe(true);
                            model.set(o.key, {
                                value: version,
                                expires_at_ms: now_ms + o.ttl_ms,
                                tags: o.tags
                            });
                        } else if (o.kind === 'get') {
                            const got = cache.get(`${o.key}`, now_ms);
                            const want = model.get(o.key);
                            if (got !== undefined) {
                                expect(want).toBeDefined();
                                expect(got).toBe(want?.value);
                                expect(now_ms).toBeLessThan(want?.expires_at_ms ?? -1);
                            }
                        } else if (o.kind === 'delete') {
                            cache.delete(`${o.key}`);
                            model.delete(o.key);
                        } else if (o.kind === 'tag') {
                            cache.invalidateTag(`tag:${o.tag}`);
                            for (const [k, e] of model) if (e.tags.includes(o.tag)) model.delete(k);
                        } else if (o.kind === 'sweep') {
                            cache.sweepExpired(now_ms, o.checks);
                        } else {
                            now_ms += o.ms;
                        }
                        const s = cache.stats();
                        expect(s.entries).toBeLessThanOrEqual(max_entries);
                        expect(s.size_bytes).toBeLessThanOrEqual(max_bytes);
                        expect(s.size_bytes).toBeGreaterThanOrEqual(0);
                    }
                }
            ),
            { numRuns: 300 }
        );
    });

    it('keeps a fresh, just-written entry readable when the cache has room (property)', () => {
        fc.assert(
            fc.property(fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 100 }), (keys) => {
                const cache = new BoundedCache<number>({ max_entries: 64, max_bytes: 64, policy });
                keys.forEach((k, i) => {
                    cache.put(`${k}`, i, { size_bytes: 1, ttl_ms: 1000 }, i);
                    expect(cache.get(`${k}`, i)).toBe(i);
                });
            }),
            { numRuns: 100 }
        );
    });
});

describe('LRU policy', () => {
    it('evicts the least recently used entry', () => {
        const cache = cacheOf('lru', 3);
        putOk(cache, 'a');
        putOk(cache, 'b');
        putOk(cache, 'c');
        cache.get('a', 0);
        putOk(cache, 'd');
        expect(cache.get('b', 0)).toBeUndefined();
        expect(cache.get('a', 0)).toBe('v:a');
        expect(cache.get('c', 0)).toBe('v:c');
        expect(cache.get('d', 0)).toBe('v:d');
    });

    it('evicts several old entries to make room for a large one', () => {
        const cache = cacheOf('lru', 10, 10);
        for (const k of ['a', 'b', 'c', 'd']) putOk(cache, k, 0, 2);
        putOk(cache, 'big', 0, 6);
        expect(cache.get('a', 0)).toBeUndefined();
        expect(cache.get('b', 0)).toBeUndefined();
        expect(cache.get('c', 0)).toBe('v:c');
        expect(cache.stats()).toMatchObject({ evictions: 2, size_bytes: 10 });
    });
});

describe('W-TinyLFU policy', () => {
    function survivors(policy: CachePolicy): number {
        const cache = cacheOf(policy, 100);
        const hot = Array.from({ length: 50 }, (_, i) => `hot${i}`);
        let now_ms = 0;
        for (let round = 0; round < 10; round++) {
            for (const key of hot) {
                if (cache.get(key, now_ms++) === undefined) putOk(cache, key, now_ms);
            }
        }
        // A scan of one-hit wonders, each read once then loaded.
        for (let i = 0; i < 5_000; i++) {
            const key = `once${i}`;
            if (cache.get(key, now_ms++) === undefined) putOk(cache, key, now_ms);
        }
        return hot.filter((key) => cache.get(key, now_ms) !== undefined).length;
    }

    it('keeps frequent keys through a scan of one-hit wonders that flushes plain LRU', () => {
        expect(survivors('w-tinylfu')).toBeGreaterThanOrEqual(45);
        expect(survivors('lru')).toBe(0);
    });

    it('admits a key that becomes frequent', () => {
        const cache = cacheOf('w-tinylfu', 20);
        let now_ms = 0;
        for (let i = 0; i < 200; i++) {
            const key = `k${i}`;
            if (cache.get(key, now_ms++) === undefined) putOk(cache, key, now_ms);
        }
        for (let i = 0; i < 10; i++) {
            if (cache.get('rising', now_ms++) === undefined) putOk(cache, 'rising', now_ms);
            for (let j = 0; j < 30; j++) {
                const key = `noise${i}-${j}`;
                if (cache.get(key, now_ms++) === undefined) putOk(cache, key, now_ms);
            }
        }
        expect(cache.get('rising', now_ms)).toBe('v:rising');
    });
});

describe('FrequencySketch', () => {
    it('counts accesses up to 15', () => {
        const sketch = new FrequencySketch(1000);
        expect(sketch.frequency('a')).toBe(0);
        for (let i = 0; i < 5; i++) sketch.increment('a');
        expect(sketch.frequency('a')).toBe(5);
        for (let i = 0; i < 50; i++) sketch.increment('a');
        expect(sketch.frequency('a')).toBe(15);
    });

    it('halves its counts after 10 × capacity increments so old popularity fades', () => {
        const sketch = new FrequencySketch(16);
        for (let i = 0; i < 8; i++) sketch.increment('old');
        let previous = sketch.frequency('old');
        let drop: { from: number; to: number } | null = null;
        for (let i = 0; i < 10 * 16 && drop === null; i++) {
            sketch.increment(`x${i}`);
            const current = sketch.frequency('old');
            if (current < previous) drop = { from: previous, to: current };
            previous = current;
        }
        expect(drop).not.toBeNull();
        // The triggering increment may collide with 'old' just before every counter is halved.
        expect(drop?.to).toBeLessThanOrEqual(Math.floor(((drop?.from ?? 0) + 1) / 2));
        expect(drop?.to).toBeGreaterThanOrEqual(Math.floor((drop?.from ?? 0) / 2));
    });

    it('never underestimates a count below the halving horizon (property)', () => {
        fc.assert(
            fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 300 }), (keys) => {
                const sketch = new FrequencySketch(10_000);
                const counts = new Map<number, number>();
                for (const k of keys) {
                    sketch.increment(`${k}`);
                    counts.set(k, (counts.get(k) ?? 0) + 1);
                }
                for (const [k, n] of counts) {
                    expect(sketch.frequency(`${k}`)).toBeGreaterThanOrEqual(Math.min(15, n));
                }
            }),
            { numRuns: 100 }
        );
    });
});

describe('validateCacheConfig', () => {
    it('accepts a sane config and names the problem in a bad one', () => {
        expect(validateCacheConfig({ max_entries: 10, max_bytes: 10, policy: 'lru' })).toBeNull();
        expect(validateCacheConfig({ max_entries: 0, max_bytes: 10, policy: 'lru' })).toContain(
            'max_entries'
        );
        expect(validateCacheConfig({ max_entries: 1, max_bytes: 0.5, policy: 'lru' })).toContain(
            'max_bytes'
        );
        const badPolicy = { max_entries: 1, max_bytes: 1, policy: 'fifo' as CachePolicy };
        expect(validateCacheConfig(badPolicy)).toContain('policy');
        expect(() => new BoundedCache(badPolicy)).toThrow(RangeError);
    });
});
