import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { SLOT_COUNT } from '../../src/shared/hash';
import {
    LOAN_REBALANCE_EPSILON,
    planLoanRebalance,
    planRebalance,
    slotLoadsFromCounts,
    MAX_REBALANCE_MOVES,
    type RebalanceInput,
    type RebalancePlan
} from '../../src/shared/rebalance';
import { createSlotMap, type SlotMap } from '../../src/shared/slot_map';
import { mulberry32Unit } from '../../bench/prng';

function plan(input: RebalanceInput): RebalancePlan {
    const result = planRebalance(input);
    if (!result.ok) throw new Error(`unexpected error ${JSON.stringify(result.error)}`);
    return result.value;
}

function shardLoads(
    loads: ArrayLike<number>,
    owners: ArrayLike<number>,
    shardIds: number[]
): Map<number, number> {
    const perShard = new Map(shardIds.map((id) => [id, 0]));
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        perShard.set(owners[slot], (perShard.get(owners[slot]) ?? 0) + loads[slot]);
    }
    return perShard;
}

function maxLoad(perShard: Map<number, number>): number {
    return Math.max(...perShard.values());
}

/** Applies a plan's moves after checking each starts at the current owner. */
function apply(owners: ArrayLike<number>, planned: RebalancePlan): Uint32Array {
    const next = Uint32Array.from(owners);
    for (const move of planned.moves) {
        if (next[move.slot] !== move.from)
            throw new Error(`move of slot ${move.slot} from a non-owner`);
        next[move.slot] = move.to;
    }
    return next;
}

/** Random loads in 0..maxLoad and owners drawn with a skew towards the first shards. */
function scenario(seed: number, n: number, maxSlotLoad: number, skew: number) {
    const next = mulberry32Unit(seed);
    const shardIds = Array.from({ length: n }, (_, i) => 100 + i);
    const slotLoads = new Float64Array(SLOT_COUNT);
    const owners = new Uint32Array(SLOT_COUNT);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        slotLoads[slot] = Math.floor(next() * (maxSlotLoad + 1));
        owners[slot] = shardIds[Math.floor(next() ** skew * n)];
    }
    return { slotLoads, owners, shardIds };
}

describe('planRebalance', () => {
    it('plans nothing when shards are already balanced', () => {
        const map = createSlotMap([1, 2, 3, 4]);
        if (!map.ok) throw new Error('map');
        const slotLoads = new Float64Array(SLOT_COUNT).fill(10);
        const result = plan({
            slotLoads,
            owners: map.value.owners,
            shardIds: [1, 2, 3, 4],
            epsilon: 0.01,
            maxMoves: 100
        });
        expect(result.moves).toEqual([]);
        expect(result.balanced).toBe(true);
        expect(result.max_over_mean_before).toBeLessThanOrEqual(1.01);
    });

    it('plans nothing when there is no load at all', () => {
        const owners = new Uint32Array(SLOT_COUNT).fill(1);
        const result = plan({
            slotLoads: new Float64Array(SLOT_COUNT),
            owners,
            shardIds: [1, 2],
            epsilon: 0,
            maxMoves: 10
        });
        expect(result).toEqual({
            moves: [],
            max_over_mean_before: 1,
            max_over_mean_after: 1,
            balanced: true
        });
    });

    it('fills a new empty shard from the heavy ones until max/mean is within 1 + epsilon', () => {
        const map = createSlotMap([1, 2, 3]);
        if (!map.ok) throw new Error('map');
        const slotLoads = new Float64Array(SLOT_COUNT).fill(3);
        const result = plan({
            slotLoads,
            owners: map.value.owners,
            shardIds: [1, 2, 3, 4],
            epsilon: 0.02,
            maxMoves: SLOT_COUNT
        });
        expect(result.max_over_mean_before).toBeCloseTo(4 / 3, 3);
        expect(result.balanced).toBe(true);
        expect(result.max_over_mean_after).toBeLessThanOrEqual(1.02);
        expect(result.moves.every((m) => m.to === 4)).toBe(true);
        // Equal slots: each old shard must shed down to floor(1.02 * 4096) slots, and no further.
        const cap = Math.floor(1.02 * 4096);
        const fewest = [5462, 5461, 5461].reduce((sum, count) => sum + count - cap, 0);
        expect(result.moves).toHaveLength(fewest);
    });

    it('stops at maxMoves and says the bound was not reached', () => {
        const owners = new Uint32Array(SLOT_COUNT).fill(1);
        const slotLoads = new Float64Array(SLOT_COUNT).fill(1);
        const result = plan({ slotLoads, owners, shardIds: [1, 2], epsilon: 0.01, maxMoves: 3 });
        expect(result.moves).toHaveLength(3);
        expect(result.balanced).toBe(false);
        expect(result.max_over_mean_after).toBeCloseTo((SLOT_COUNT - 3) / (SLOT_COUNT / 2), 9);
    });

    it('does not move a single hot slot that would only make its new shard the hottest', () => {
        const owners = new Uint32Array(SLOT_COUNT).fill(1);
        owners.fill(2, 8192);
        const slotLoads = new Float64Array(SLOT_COUNT);
        slotLoads[5] = 1000;
        const result = plan({ slotLoads, owners, shardIds: [1, 2], epsilon: 0.1, maxMoves: 100 });
        expect(result.moves).toEqual([]);
        expect(result.balanced).toBe(false);
        expect(result.max_over_mean_after).toBe(2);
    });

    it('skips a move that gains less than half the moved slot, preferring light slots', () => {
        const owners = new Uint32Array(SLOT_COUNT).fill(1);
        owners.fill(2, 8192);
        const slotLoads = new Float64Array(SLOT_COUNT);
        // Shard 1: slot 0 carries 7, slots 1 and 2 carry 0.5 each; shard 2 carries nothing.
        // Moving slot 0 would cut the max by only 1 (< 7/2), so the planner moves the light slots.
        slotLoads[0] = 7;
        slotLoads[1] = 0.5;
        slotLoads[2] = 0.5;
        const result = plan({ slotLoads, owners, shardIds: [1, 2], epsilon: 0, maxMoves: 100 });
        expect(result.moves.map((m) => m.slot).sort()).toEqual([1, 2]);
        expect(result.max_over_mean_after).toBe(7 / 4);
    });

    it('rejects malformed input with a typed error', () => {
        const owners = new Uint32Array(SLOT_COUNT).fill(1);
        const slotLoads = new Float64Array(SLOT_COUNT);
        const base = { slotLoads, owners, shardIds: [1, 2], epsilon: 0.1, maxMoves: 10 };
        const bad: [Partial<RebalanceInput>, string][] = [
            [{ slotLoads: new Float64Array(3) }, 'slotLoads'],
            [{ slotLoads: new Float64Array(SLOT_COUNT).fill(-1) }, 'slotLoads'],
            [{ slotLoads: new Float64Array(SLOT_COUNT).fill(NaN) }, 'slotLoads'],
            [{ owners: new Uint32Array(5) }, 'owners'],
            [{ shardIds: [] }, 'shardIds'],
            [{ shardIds: [1, 1] }, 'shardIds'],
            [{ epsilon: -0.1 }, 'epsilon'],
            [{ epsilon: Infinity }, 'epsilon'],
            [{ maxMoves: -1 }, 'maxMoves'],
            [{ maxMoves: 1.5 }, 'maxMoves'],
            [{ maxMoves: MAX_REBALANCE_MOVES + 1 }, 'maxMoves']
        ];
        for (const [patch, field] of bad) {
            expect(planRebalance({ ...base, ...patch })).toMatchObject({
                ok: false,
                error: { kind: 'InvalidInput', field }
            });
        }
        expect(planRebalance({ ...base, shardIds: [2] })).toEqual({
            ok: false,
            error: { kind: 'UnknownOwner', slot: 0, shard_id: 1 }
        });
    });

    it('reaches the bound whenever slots are fine-grained relative to epsilon', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 0, max: 2 ** 31 }),
                fc.integer({ min: 2, max: 20 }),
                fc.double({ min: 0.01, max: 0.3, noNaN: true }),
                fc.integer({ min: 1, max: 4 }),
                (seed, n, epsilon, skew) => {
                    // Slot loads <= 20 and mean >= 16384*10/20: every positive slot is a full-gain move.
                    const { slotLoads, owners, shardIds } = scenario(seed, n, 20, skew);
                    const result = plan({
                        slotLoads,
                        owners,
                        shardIds,
                        epsilon,
                        maxMoves: MAX_REBALANCE_MOVES
                    });
                    const after = shardLoads(slotLoads, apply(owners, result), shardIds);
                    const mean = [...after.values()].reduce((a, b) => a + b, 0) / n;
                    expect(result.balanced).toBe(true);
                    expect(maxLoad(after) / mean).toBeLessThanOrEqual(1 + epsilon + 1e-9);
                }
            ),
            { numRuns: 25 }
        );
    });

    it('never raises the max load, moves each slot at most once, and respects maxMoves', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 0, max: 2 ** 31 }),
                fc.integer({ min: 1, max: 12 }),
                fc.integer({ min: 0, max: 5000 }),
                fc.integer({ min: 1, max: 6 }),
                fc.double({ min: 0, max: 1, noNaN: true }),
                fc.integer({ min: 0, max: 300 }),
                (seed, n, maxSlotLoad, skew, epsilon, maxMoves) => {
                    const { slotLoads, owners, shardIds } = scenario(seed, n, maxSlotLoad, skew);
                    // A few hot slots make some moves infeasible.
                    slotLoads[seed % SLOT_COUNT] = maxSlotLoad * 1000;
                    const before = shardLoads(slotLoads, owners, shardIds);
                    const result = plan({ slotLoads, owners, shardIds, epsilon, maxMoves });
                    const after = shardLoads(slotLoads, apply(owners, result), shardIds);
                    expect(maxLoad(after)).toBeLessThanOrEqual(maxLoad(before) + 1e-6);
                    expect(result.moves.length).toBeLessThanOrEqual(maxMoves);
                    const slots = result.moves.map((m) => m.slot);
                    expect(new Set(slots).size).toBe(slots.length);
                    expect(
                        result.moves.every((m) => m.from !== m.to && shardIds.includes(m.to))
                    ).toBe(true);
                    const mean = [...after.values()].reduce((a, b) => a + b, 0) / n;
                    if (mean > 0)
                        expect(result.max_over_mean_after).toBeCloseTo(maxLoad(after) / mean, 6);
                }
            ),
            { numRuns: 40 }
        );
    });
});

describe("rebalance by loans (the factory's rebalance_shards)", () => {
    function halves(): SlotMap {
        const map = createSlotMap([1, 2]);
        if (!map.ok) throw new Error('map');
        return map.value;
    }

    it("trusts a slot count only from the slot's owner", () => {
        const map = halves();
        const ownedBy1 = map.owners.indexOf(1);
        const ownedBy2 = map.owners.indexOf(2);
        const loads = slotLoadsFromCounts(
            map,
            new Map([
                // Shard 1 still holds loans of a slot shard 2 now owns (deletion pending).
                [
                    1,
                    [
                        { slot: ownedBy1, count: 7n },
                        { slot: ownedBy2, count: 99n }
                    ]
                ],
                [
                    2,
                    [
                        { slot: ownedBy2, count: 3n },
                        { slot: SLOT_COUNT + 5, count: 1n }
                    ]
                ]
            ])
        );
        expect(loads[ownedBy1]).toBe(7);
        expect(loads[ownedBy2]).toBe(3);
        expect(loads.reduce((a, b) => a + b, 0)).toBe(10);
    });

    it('moves loaded slots off the shard holding every loan although slot counts are even', () => {
        const map = halves();
        const loads = new Float64Array(SLOT_COUNT);
        const heavy: number[] = [];
        for (let slot = 0; slot < SLOT_COUNT && heavy.length < 8; slot += 1_001) {
            if (map.owners[slot] === 1) heavy.push(slot);
        }
        for (const slot of heavy) loads[slot] = 10;
        const plan = planLoanRebalance(map, [1, 2], [], loads, 64);
        if ('error' in plan) throw new Error(plan.error);
        expect(plan.moves).toHaveLength(4);
        expect(plan.moves.every((m) => m.from === 1 && m.to === 2 && heavy.includes(m.slot))).toBe(
            true
        );
        expect(plan.reason).toBe('loans max/mean 2.000 -> 1.000 with 4 slot moves');
    });

    it("leaves pinned (read-only) shards' slots where they are and out of the mean", () => {
        const map = createSlotMap([1, 2, 3]);
        if (!map.ok) throw new Error('map');
        const loads = new Float64Array(SLOT_COUNT).fill(0);
        for (let slot = 0; slot < SLOT_COUNT; slot++) {
            loads[slot] = map.value.owners[slot] === 1 ? 2 : map.value.owners[slot] === 3 ? 50 : 0;
        }
        const plan = planLoanRebalance(map.value, [1, 2], [3], loads, SLOT_COUNT);
        if ('error' in plan) throw new Error(plan.error);
        expect(plan.moves.length).toBeGreaterThan(0);
        expect(plan.moves.every((m) => m.from === 1 && m.to === 2)).toBe(true);
        // Without pinning shard 3, its slots belong to nobody the planner knows.
        expect(planLoanRebalance(map.value, [1, 2], [], loads, 10)).toEqual({
            error: expect.stringMatching(/owned by unknown shard 3/)
        });
        expect(planLoanRebalance(map.value, [1, 2], [2], loads, 10)).toEqual({
            error: expect.stringMatching(/pinnedShardIds/)
        });
    });

    it('never raises the heaviest writable shard and stays within the move bound (property)', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 0, max: 2 ** 31 }),
                fc.integer({ min: 2, max: 8 }),
                fc.integer({ min: 0, max: 64 }),
                (seed, n, maxMoves) => {
                    const next = mulberry32Unit(seed);
                    const ids = Array.from({ length: n }, (_, i) => i + 1);
                    const map = createSlotMap(ids);
                    if (!map.ok) throw new Error('map');
                    const loads = new Float64Array(SLOT_COUNT);
                    for (let slot = 0; slot < SLOT_COUNT; slot++) {
                        loads[slot] = next() < 0.05 ? Math.floor(next() * 100) : 0;
                    }
                    const pinned = [n];
                    const writable = ids.slice(0, n - 1);
                    const plan = planLoanRebalance(map.value, writable, pinned, loads, maxMoves);
                    if ('error' in plan) throw new Error(plan.error);
                    expect(plan.moves.length).toBeLessThanOrEqual(maxMoves);
                    const before = shardLoads(loads, map.value.owners, ids);
                    const after = shardLoads(
                        loads,
                        apply(map.value.owners, {
                            ...plan,
                            max_over_mean_before: 0,
                            max_over_mean_after: 0,
                            balanced: false
                        }),
                        ids
                    );
                    const maxOf = (m: Map<number, number>) =>
                        Math.max(...writable.map((id) => m.get(id) ?? 0));
                    expect(maxOf(after)).toBeLessThanOrEqual(maxOf(before) + 1e-9);
                    expect(after.get(n)).toBe(before.get(n));
                    expect(plan.moves.every((m) => m.from !== n && m.to !== n)).toBe(true);
                }
            ),
            { numRuns: 40 }
        );
        expect(LOAN_REBALANCE_EPSILON).toBe(0.05);
    });
});
