import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    ALGORITHMS,
    choose,
    initialBalancerState,
    updatePeakEwma,
    type AlgorithmName,
    type BalancerState,
    type ShardSnapshot
} from '../../src/shared/balancing';
import { SLOT_COUNT, slotOf } from '../../src/shared/hash';

function shard(shardId: number, over: Partial<ShardSnapshot> = {}): ShardSnapshot {
    return {
        shardId,
        healthy: true,
        breakerOpen: false,
        weight: 1,
        inFlight: 0,
        ewmaLatencyMs: 10,
        resourceUsage: 0,
        region: 'eu',
        ...over
    };
}

/** A deterministic stream of 32-bit draws, cycling through `values`. */
function draws(...values: number[]): () => number {
    let i = 0;
    return () => values[i++ % values.length];
}

/** Runs `count` picks, threading the state, and returns the shard ids picked. */
function pickMany(
    algorithm: AlgorithmName,
    shards: ShardSnapshot[],
    count: number,
    state: BalancerState = initialBalancerState()
): number[] {
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
        const r = choose(algorithm, state, shards, { randomU32: draws(i * 7919, i * 104729) });
        if (!r.ok) throw new Error(r.reason);
        ids.push(r.shardId);
        state = r.state;
    }
    return ids;
}

const key = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

describe('ALGORITHMS', () => {
    it('lists the eight Candid variant names once each', () => {
        expect(new Set(ALGORITHMS).size).toBe(8);
        expect(ALGORITHMS).toContain('ResponseTimeBased');
        expect(ALGORITHMS).toContain('PowerOfTwoChoices');
    });
});

describe('updatePeakEwma', () => {
    it('replaces the average with a sample above it', () => {
        expect(updatePeakEwma(10, 50, 1, 10_000)).toBe(50);
    });

    it('decays towards a lower sample by exp(-elapsed / decay)', () => {
        expect(updatePeakEwma(50, 10, 10_000, 10_000)).toBeCloseTo(10 + 40 * Math.exp(-1), 9);
    });

    it('does not move when no time has elapsed and the sample is lower', () => {
        expect(updatePeakEwma(50, 10, 0, 10_000)).toBe(50);
    });

    it('ignores a sample that is not a finite non-negative number', () => {
        expect(updatePeakEwma(20, Number.NaN, 5, 100)).toBe(20);
        expect(updatePeakEwma(20, -1, 5, 100)).toBe(20);
    });

    it('stays between the sample and the previous average (property)', () => {
        fc.assert(
            fc.property(
                fc.double({ min: 0, max: 1e6, noNaN: true }),
                fc.double({ min: 0, max: 1e6, noNaN: true }),
                fc.double({ min: 0, max: 1e7, noNaN: true }),
                fc.double({ min: 1, max: 1e6, noNaN: true }),
                (prev, sample, elapsed, decay) => {
                    const next = updatePeakEwma(prev, sample, elapsed, decay);
                    expect(next).toBeGreaterThanOrEqual(Math.min(prev, sample) - 1e-9);
                    expect(next).toBeLessThanOrEqual(Math.max(prev, sample) + 1e-9);
                    if (sample > prev) expect(next).toBe(sample);
                }
            ),
            { numRuns: 300 }
        );
    });
});

describe('RoundRobin', () => {
    it('visits eligible shards in id order and wraps', () => {
        const shards = [shard(7), shard(2), shard(5)];
        expect(pickMany('RoundRobin', shards, 7)).toEqual([2, 5, 7, 2, 5, 7, 2]);
    });

    it('continues after the last pick when a shard drops out', () => {
        const state = { ...initialBalancerState(), rrLastShardId: 2 };
        const shards = [shard(1), shard(2), shard(3, { healthy: false }), shard(4)];
        expect(pickMany('RoundRobin', shards, 3, state)).toEqual([4, 1, 2]);
    });

    it('does not mutate the state it is given', () => {
        const state = initialBalancerState();
        choose('RoundRobin', state, [shard(1)], { randomU32: draws(0) });
        expect(state).toEqual(initialBalancerState());
    });
});

describe('WeightedRoundRobin', () => {
    it('yields a,a,b,a,c,a,a for weights 5,1,1 as NGINX documents', () => {
        const shards = [shard(1, { weight: 5 }), shard(2, { weight: 1 }), shard(3, { weight: 1 })];
        expect(pickMany('WeightedRoundRobin', shards, 7)).toEqual([1, 1, 2, 1, 3, 1, 1]);
    });

    it('picks each shard exactly weight times per cycle of total weight (property)', () => {
        fc.assert(
            fc.property(
                fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 8 }),
                (ws) => {
                    const shards = ws.map((w, i) => shard(i, { weight: w }));
                    const total = ws.reduce((a, b) => a + b, 0);
                    const ids = pickMany('WeightedRoundRobin', shards, total);
                    ws.forEach((w, i) => expect(ids.filter((id) => id === i).length).toBe(w));
                }
            ),
            { numRuns: 200 }
        );
    });

    it('keeps one state entry per shard in the snapshot and drops departed shards', () => {
        const state: BalancerState = {
            rrLastShardId: -1,
            wrrCurrent: [
                { shardId: 1, current: 0 },
                { shardId: 2, current: 0 },
                { shardId: 99, current: 42 }
            ]
        };
        const r = choose('WeightedRoundRobin', state, [shard(1), shard(2)], {
            randomU32: draws(0)
        });
        expect(r.ok && r.state.wrrCurrent.map((e) => e.shardId)).toEqual([1, 2]);
    });

    it('gives a shard that was ineligible no saved-up burst when it returns', () => {
        const state: BalancerState = {
            rrLastShardId: -1,
            wrrCurrent: [{ shardId: 2, current: 1000 }]
        };
        const shards = [shard(1), shard(2, { breakerOpen: true })];
        const r = choose('WeightedRoundRobin', state, shards, { randomU32: draws(0) });
        expect(r.ok && r.state.wrrCurrent.find((e) => e.shardId === 2)?.current).toBe(0);
    });
});

describe('LeastConnections', () => {
    it('picks the lowest in-flight per weight', () => {
        const shards = [
            shard(1, { inFlight: 5 }),
            shard(2, { inFlight: 2 }),
            shard(3, { inFlight: 3 })
        ];
        expect(pickMany('LeastConnections', shards, 1)).toEqual([2]);
    });

    it('counts weight: 7 in flight on weight 4 beats 2 in flight on weight 1', () => {
        const shards = [shard(1, { inFlight: 2, weight: 1 }), shard(2, { inFlight: 7, weight: 4 })];
        expect(pickMany('LeastConnections', shards, 1)).toEqual([2]);
    });

    it('breaks ties by the lowest shard id, whatever the snapshot order', () => {
        const shards = [
            shard(9, { inFlight: 1 }),
            shard(4, { inFlight: 1 }),
            shard(6, { inFlight: 1 })
        ];
        expect(pickMany('LeastConnections', shards, 1)).toEqual([4]);
    });
});

describe('ResourceBased', () => {
    it('picks the lowest resource usage', () => {
        const shards = [shard(1, { resourceUsage: 0.6 }), shard(2, { resourceUsage: 0.2 })];
        expect(pickMany('ResourceBased', shards, 1)).toEqual([2]);
    });

    it('divides usage by weight', () => {
        const shards = [
            shard(1, { resourceUsage: 0.3 }),
            shard(2, { resourceUsage: 0.5, weight: 2 })
        ];
        expect(pickMany('ResourceBased', shards, 1)).toEqual([2]);
    });

    it('treats a missing usage figure as full', () => {
        const shards = [shard(1, { resourceUsage: Number.NaN }), shard(2, { resourceUsage: 0.9 })];
        expect(pickMany('ResourceBased', shards, 1)).toEqual([2]);
    });

    it('breaks usage ties by load', () => {
        const shards = [
            shard(1, { resourceUsage: 0.5, inFlight: 3 }),
            shard(2, { resourceUsage: 0.5 })
        ];
        expect(pickMany('ResourceBased', shards, 1)).toEqual([2]);
    });
});

describe('two-choice algorithms', () => {
    const cost = (s: ShardSnapshot) => s.ewmaLatencyMs * (s.inFlight + 1);

    it('PowerOfTwoChoices always takes the one with fewer in flight of a pair', () => {
        fc.assert(
            fc.property(
                fc.nat(100),
                fc.nat(100),
                fc.integer({ min: 0, max: 0xffffffff }),
                fc.integer({ min: 0, max: 0xffffffff }),
                (a, b, r1, r2) => {
                    fc.pre(a !== b);
                    const shards = [shard(1, { inFlight: a }), shard(2, { inFlight: b })];
                    const r = choose('PowerOfTwoChoices', initialBalancerState(), shards, {
                        randomU32: draws(r1, r2)
                    });
                    expect(r.ok && r.shardId).toBe(a < b ? 1 : 2);
                }
            ),
            { numRuns: 300 }
        );
    });

    it('ResponseTimeBased takes the lower ewma × (inFlight + 1) of a pair', () => {
        const slowIdle = shard(1, { ewmaLatencyMs: 50, inFlight: 0 });
        const fastBusy = shard(2, { ewmaLatencyMs: 10, inFlight: 3 });
        const fastBusier = shard(3, { ewmaLatencyMs: 10, inFlight: 6 });
        for (const [a, b] of [
            [slowIdle, fastBusy],
            [slowIdle, fastBusier]
        ]) {
            const want = cost(a) < cost(b) ? a.shardId : b.shardId;
            expect(pickMany('ResponseTimeBased', [a, b], 20)).toEqual(Array(20).fill(want));
        }
        expect(cost(slowIdle)).toBeGreaterThan(cost(fastBusy));
        expect(cost(slowIdle)).toBeLessThan(cost(fastBusier));
    });

    it('ResponseTimeBased avoids a busy shard that has no latency sample yet', () => {
        const unmeasured = shard(1, { ewmaLatencyMs: 0, inFlight: 1 });
        const slow = shard(2, { ewmaLatencyMs: 900, inFlight: 40 });
        expect(pickMany('ResponseTimeBased', [unmeasured, slow], 10)).toEqual(Array(10).fill(2));
    });

    it('never picks the strictly worst shard when two or more are eligible (property)', () => {
        const snap = fc.uniqueArray(
            fc.record({
                shardId: fc.nat(50),
                inFlight: fc.nat(20),
                ewmaLatencyMs: fc.integer({ min: 1, max: 500 })
            }),
            { minLength: 2, maxLength: 10, selector: (s) => s.shardId }
        );
        fc.assert(
            fc.property(
                snap,
                fc.integer({ min: 0, max: 0xffffffff }),
                fc.integer({ min: 0, max: 0xffffffff }),
                (raw, r1, r2) => {
                    const shards = raw.map((s) => shard(s.shardId, s));
                    const cases: [AlgorithmName, (s: ShardSnapshot) => number][] = [
                        ['PowerOfTwoChoices', (s) => s.inFlight],
                        ['ResponseTimeBased', cost]
                    ];
                    for (const [algorithm, score] of cases) {
                        const r = choose(algorithm, initialBalancerState(), shards, {
                            randomU32: draws(r1, r2)
                        });
                        if (!r.ok) throw new Error(r.reason);
                        const chosen = score(shards.find((s) => s.shardId === r.shardId)!);
                        const others = shards.filter((s) => s.shardId !== r.shardId).map(score);
                        expect(chosen).toBeLessThanOrEqual(Math.max(...others));
                    }
                }
            ),
            { numRuns: 300 }
        );
    });

    it('spreads PowerOfTwoChoices over every shard when all are equal', () => {
        let seed = 1;
        const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
        const shards = [shard(1), shard(2), shard(3), shard(4)];
        const seen = new Set<number>();
        for (let i = 0; i < 200; i++) {
            const r = choose('PowerOfTwoChoices', initialBalancerState(), shards, {
                randomU32: next
            });
            if (r.ok) seen.add(r.shardId);
        }
        expect([...seen].sort()).toEqual([1, 2, 3, 4]);
    });
});

describe('ConsistentHashing', () => {
    it('routes to the owner of slotOf(key)', () => {
        const shards = [shard(0), shard(1), shard(2), shard(3)];
        const r = choose('ConsistentHashing', initialBalancerState(), shards, {
            key,
            randomU32: draws(0),
            ownerOfSlot: (slot) => slot % 4
        });
        expect(r.ok && r.shardId).toBe(slotOf(key) % 4);
    });

    it('asks the slot map for a slot in range', () => {
        const asked: number[] = [];
        choose('ConsistentHashing', initialBalancerState(), [shard(0)], {
            key,
            randomU32: draws(0),
            ownerOfSlot: (slot) => (asked.push(slot), 0)
        });
        expect(asked).toHaveLength(1);
        expect(asked[0]).toBeGreaterThanOrEqual(0);
        expect(asked[0]).toBeLessThan(SLOT_COUNT);
    });

    it('refuses rather than moving the user when the owner cannot serve', () => {
        for (const owner of [shard(0, { breakerOpen: true }), shard(0, { healthy: false })]) {
            const r = choose('ConsistentHashing', initialBalancerState(), [owner, shard(1)], {
                key,
                randomU32: draws(0),
                ownerOfSlot: () => 0
            });
            expect(r.ok).toBe(false);
            if (!r.ok) expect(r.error).toBe('NoShardAvailable');
        }
    });

    it('still routes to an owner that is being drained (weight 0)', () => {
        const r = choose('ConsistentHashing', initialBalancerState(), [shard(5, { weight: 0 })], {
            key,
            randomU32: draws(0),
            ownerOfSlot: () => 5
        });
        expect(r.ok && r.shardId).toBe(5);
    });

    it('reports a missing key, slot map or owner as NoShardAvailable', () => {
        const base = { randomU32: draws(0) };
        const s = initialBalancerState();
        expect(
            choose('ConsistentHashing', s, [shard(0)], { ...base, ownerOfSlot: () => 0 }).ok
        ).toBe(false);
        expect(choose('ConsistentHashing', s, [shard(0)], { ...base, key }).ok).toBe(false);
        expect(
            choose('ConsistentHashing', s, [shard(0)], { ...base, key, ownerOfSlot: () => 9 }).ok
        ).toBe(false);
    });
});

describe('Geographic', () => {
    it('prefers the least-loaded shard in the caller region', () => {
        const shards = [
            shard(1, { region: 'eu' }),
            shard(2, { region: 'asia', inFlight: 4 }),
            shard(3, { region: 'asia', inFlight: 1 })
        ];
        const r = choose('Geographic', initialBalancerState(), shards, {
            region: 'asia',
            randomU32: draws(0)
        });
        expect(r.ok && r.shardId).toBe(3);
    });

    it('falls back to other regions when none in the caller region can serve', () => {
        const shards = [
            shard(1, { region: 'eu', inFlight: 3 }),
            shard(2, { region: 'asia', breakerOpen: true }),
            shard(3, { region: 'us', inFlight: 1 })
        ];
        const r = choose('Geographic', initialBalancerState(), shards, {
            region: 'asia',
            randomU32: draws(0)
        });
        expect(r.ok && r.shardId).toBe(3);
    });
});

describe('every algorithm', () => {
    const snapshotArb = fc.uniqueArray(
        fc.record({
            shardId: fc.nat(40),
            healthy: fc.boolean(),
            breakerOpen: fc.boolean(),
            weight: fc.oneof(
                fc.constant(0),
                fc.integer({ min: 1, max: 10 }),
                fc.double({ min: 0.1, max: 10, noNaN: true })
            ),
            inFlight: fc.nat(30),
            ewmaLatencyMs: fc.oneof(
                fc.constant(0),
                fc.double({ min: 0.1, max: 2000, noNaN: true })
            ),
            resourceUsage: fc.double({ min: 0, max: 1, noNaN: true }),
            region: fc.constantFrom('eu', 'us', 'asia')
        }),
        { maxLength: 12, selector: (s) => s.shardId }
    );

    it('never picks an unhealthy shard or one with an open breaker (property)', () => {
        fc.assert(
            fc.property(
                snapshotArb,
                fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 2, maxLength: 2 }),
                fc.uint8Array({ minLength: 1, maxLength: 29 }),
                fc.constantFrom('eu', 'us', 'asia', undefined),
                fc.nat(40),
                (shards, rs, userKey, region, owner) => {
                    for (const algorithm of ALGORITHMS) {
                        // Several picks in a row, so stateful algorithms are checked past their first pick.
                        let state = initialBalancerState();
                        for (let i = 0; i < 5; i++) {
                            const r = choose(algorithm, state, shards, {
                                key: userKey,
                                region,
                                randomU32: draws(rs[0] + i, rs[1]),
                                ownerOfSlot: () => owner
                            });
                            if (!r.ok) {
                                expect(r.error).toBe('NoShardAvailable');
                                continue;
                            }
                            const s = shards.find((x) => x.shardId === r.shardId);
                            expect(s).toBeDefined();
                            expect(s!.healthy).toBe(true);
                            expect(s!.breakerOpen).toBe(false);
                            if (algorithm !== 'ConsistentHashing')
                                expect(s!.weight).toBeGreaterThan(0);
                            expect(r.state.wrrCurrent.length).toBeLessThanOrEqual(shards.length);
                            state = r.state;
                        }
                    }
                }
            ),
            { numRuns: 200 }
        );
    });

    it('always picks when some shard is eligible, except ConsistentHashing (property)', () => {
        fc.assert(
            fc.property(snapshotArb, fc.integer({ min: 0, max: 0xffffffff }), (shards, r1) => {
                const anyEligible = shards.some((s) => s.healthy && !s.breakerOpen && s.weight > 0);
                for (const algorithm of ALGORITHMS) {
                    if (algorithm === 'ConsistentHashing') continue;
                    const r = choose(algorithm, initialBalancerState(), shards, {
                        region: 'eu',
                        randomU32: draws(r1, r1 ^ 0x5bd1e995)
                    });
                    expect(r.ok).toBe(anyEligible);
                }
            }),
            { numRuns: 200 }
        );
    });

    it('returns NoShardAvailable on an empty snapshot', () => {
        for (const algorithm of ALGORITHMS) {
            const r = choose(algorithm, initialBalancerState(), [], {
                key,
                randomU32: draws(0),
                ownerOfSlot: () => 0
            });
            expect(r).toMatchObject({ ok: false, error: 'NoShardAvailable' });
        }
    });
});
