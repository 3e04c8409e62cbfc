import { BoundedCache, type CachePolicy } from '../../src/shared/cache';
import type { BenchRow, BenchSection } from './types';
import { mulberry32Unit } from '../prng';

/** Policy the router uses unless configured otherwise; its figure is `cache.zipf.hit_rate`. */
const DEFAULT_POLICY: CachePolicy = 'w-tinylfu';
const KEY_COUNT = 100_000;
const CAPACITY_ENTRIES = 10_000;
const ZIPF_S = 1.0;
const TTL_MS = 1e12; // long enough that only eviction matters here

/**
 * Zipf(1.0) over 100k keys against a 10k-entry cache: read, and on a miss load and put. Warm-up
 * requests are not counted. `ideal_static` is the probability mass of the 10k most popular keys,
 * the hit rate of a cache that knows the distribution in advance.
 */
export const run: BenchSection = async ({ seed, quick }) => {
    const warmup = quick ? 60_000 : 200_000;
    const measured = quick ? 50_000 : 1_000_000;
    const cdf = zipfCdf(KEY_COUNT, ZIPF_S);
    const keys = Array.from({ length: KEY_COUNT }, (_, i) => `loan:${i}`);

    const rates = new Map<CachePolicy, number>();
    for (const policy of ['lru', 'w-tinylfu'] as const) {
        // The same seed for both policies, so they see the same request stream.
        rates.set(policy, hitRate(policy, cdf, keys, seed, warmup, measured));
    }
    const ideal = cdf[CAPACITY_ENTRIES - 1];
    const lru = rates.get('lru') as number;
    const tinyLfu = rates.get('w-tinylfu') as number;
    const rows: BenchRow[] = [
        {
            key: 'cache.zipf.hit_rate',
            value: rates.get(DEFAULT_POLICY) as number,
            unit: 'fraction',
            target: {
                text: `≥ lru (${lru.toFixed(4)})`,
                pass: (rates.get(DEFAULT_POLICY) as number) >= lru
            }
        },
        { key: 'cache.zipf.hit_rate.lru', value: lru, unit: 'fraction' },
        { key: 'cache.zipf.hit_rate.w-tinylfu', value: tinyLfu, unit: 'fraction' },
        { key: 'cache.zipf.hit_rate.ideal_static', value: ideal, unit: 'fraction' }
    ];
    return rows;
};

function hitRate(
    policy: CachePolicy,
    cdf: Float64Array,
    keys: string[],
    seed: number,
    warmup: number,
    measured: number
): number {
    const cache = new BoundedCache<number>({
        max_entries: CAPACITY_ENTRIES,
        max_bytes: CAPACITY_ENTRIES * 64,
        policy
    });
    const random = mulberry32Unit(seed);
    let hits = 0;
    for (let i = 0; i < warmup + measured; i++) {
        const rank = sampleRank(cdf, random());
        const now_ms = i;
        if (cache.get(keys[rank], now_ms) !== undefined) {
            if (i >= warmup) hits++;
        } else {
            cache.put(keys[rank], rank, { size_bytes: 64, ttl_ms: TTL_MS }, now_ms);
        }
    }
    return hits / measured;
}

/** Cumulative Zipf probabilities: cdf[r] = P(rank ≤ r), ranks from 0. */
function zipfCdf(n: number, s: number): Float64Array {
    const cdf = new Float64Array(n);
    let sum = 0;
    for (let r = 0; r < n; r++) {
        sum += 1 / Math.pow(r + 1, s);
        cdf[r] = sum;
    }
    for (let r = 0; r < n; r++) cdf[r] /= sum;
    return cdf;
}

/** Smallest rank whose cumulative probability reaches `u` (binary search, 17 steps for 100k). */
function sampleRank(cdf: Float64Array, u: number): number {
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}
