import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { SLOT_COUNT, slotOf } from '../../src/shared/hash';
import {
    addShard,
    assignSlots,
    assignSpan,
    checkTransition,
    createSlotMap,
    fromRanges,
    ownerOf,
    removeShard,
    shardIdsOf,
    shardOfKey,
    slotCounts,
    slotsOf,
    toRanges,
    validateSlotMap,
    type SlotMap,
    type SlotMapResult
} from '../../src/shared/slot_map';

function unwrap<T>(result: SlotMapResult<T>): T {
    if (!result.ok) throw new Error(`unexpected error ${JSON.stringify(result.error)}`);
    return result.value;
}

function countsOf(map: SlotMap): number[] {
    return [...slotCounts(map).values()];
}

/** Index of the first differing element, -1 when equal (fast, unlike a deep toEqual). */
function firstDifference(a: Uint32Array, b: Uint32Array): number {
    if (a.length !== b.length) return Math.min(a.length, b.length);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
    return -1;
}

function spread(map: SlotMap): number {
    const counts = countsOf(map);
    return Math.max(...counts) - Math.min(...counts);
}

describe('createSlotMap', () => {
    it('splits 16384 slots over 3 shards into contiguous blocks of 5462, 5461, 5461 at epoch 1', () => {
        const map = unwrap(createSlotMap([10, 20, 30]));
        expect(map.epoch).toBe(1n);
        expect(toRanges(map)).toEqual([
            { start: 0, end: 5461, shard_id: 10 },
            { start: 5462, end: 10922, shard_id: 20 },
            { start: 10923, end: 16383, shard_id: 30 }
        ]);
    });

    it('gives slots in proportion to weights', () => {
        const map = unwrap(createSlotMap([1, 2], [1, 3]));
        expect(slotCounts(map)).toEqual(
            new Map([
                [1, 4096],
                [2, 12288]
            ])
        );
    });

    it('balances equal weights to within one slot for any shard count', () => {
        fc.assert(
            fc.property(fc.integer({ min: 1, max: 1000 }), (n) => {
                const map = unwrap(createSlotMap(Array.from({ length: n }, (_, i) => i + 1)));
                expect(slotCounts(map).size).toBe(n);
                expect(spread(map)).toBeLessThanOrEqual(1);
                expect(toRanges(map)).toHaveLength(n);
            }),
            { numRuns: 40 }
        );
    });

    it('rejects empty, duplicate, invalid ids and bad weights', () => {
        expect(createSlotMap([])).toMatchObject({ ok: false, error: { kind: 'NoShards' } });
        expect(createSlotMap([1, 1])).toMatchObject({
            ok: false,
            error: { kind: 'DuplicateShard' }
        });
        expect(createSlotMap([-1])).toMatchObject({ ok: false, error: { kind: 'InvalidShardId' } });
        expect(createSlotMap([2 ** 32])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidShardId' }
        });
        expect(createSlotMap([1, 2], [1])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidWeight' }
        });
        expect(createSlotMap([1, 2], [1, 0])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidWeight' }
        });
        expect(createSlotMap([1, 2], [1, NaN])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidWeight' }
        });
        expect(createSlotMap([1, 2], [1, 1e-9])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidWeight' }
        });
        expect(createSlotMap(Array.from({ length: 1001 }, (_, i) => i))).toMatchObject({
            ok: false,
            error: { kind: 'TooManyShards' }
        });
    });
});

describe('lookups', () => {
    it('answers owner, slots and key lookups consistently', () => {
        const map = unwrap(createSlotMap([7, 8]));
        expect(ownerOf(map, 0)).toBe(7);
        expect(ownerOf(map, 8191)).toBe(7);
        expect(ownerOf(map, 8192)).toBe(8);
        expect(ownerOf(map, 16384)).toBeUndefined();
        expect(ownerOf(map, -1)).toBeUndefined();
        expect(ownerOf(map, 0.5)).toBeUndefined();
        expect(slotsOf(map, 8)).toHaveLength(8192);
        expect(slotsOf(map, 8)[0]).toBe(8192);
        expect(slotsOf(map, 9)).toEqual([]);
        expect(shardIdsOf(map)).toEqual([7, 8]);
        const key = new TextEncoder().encode('borrower');
        expect(shardOfKey(map, key)).toBe(ownerOf(map, slotOf(key)));
    });
});

describe('addShard', () => {
    it('moves floor(16384/4) = 4096 slots to the 4th shard, from the three fullest', () => {
        const map = unwrap(createSlotMap([1, 2, 3]));
        const { map: next, moves } = unwrap(addShard(map, 4));
        expect(moves).toHaveLength(4096);
        expect(next.epoch).toBe(2n);
        expect(new Set(moves.map((m) => m.to))).toEqual(new Set([4]));
        expect(slotsOf(next, 4)).toEqual(moves.map((m) => m.slot));
        expect(spread(next)).toBeLessThanOrEqual(1);
        for (const move of moves) expect(map.owners[move.slot]).toBe(move.from);
    });

    it('gives a weighted shard its share relative to an average shard', () => {
        const map = unwrap(createSlotMap([1, 2]));
        const { moves } = unwrap(addShard(map, 3, 2));
        expect(moves).toHaveLength(Math.floor((SLOT_COUNT * 2) / 4));
    });

    it('refuses a shard already in the map, invalid ids and weights, and leaves the map alone', () => {
        const map = unwrap(createSlotMap([1, 2]));
        const before = map.owners.slice();
        expect(addShard(map, 1)).toMatchObject({ ok: false, error: { kind: 'DuplicateShard' } });
        expect(addShard(map, 1.5)).toMatchObject({ ok: false, error: { kind: 'InvalidShardId' } });
        expect(addShard(map, 3, 0)).toMatchObject({ ok: false, error: { kind: 'InvalidWeight' } });
        expect(addShard(map, 3, 1e9)).toMatchObject({
            ok: false,
            error: { kind: 'InvalidWeight' }
        });
        expect(firstDifference(map.owners, before)).toBe(-1);
        expect(map.epoch).toBe(1n);
    });

    it('refuses the 1001st shard', () => {
        const map = unwrap(createSlotMap(Array.from({ length: 1000 }, (_, i) => i)));
        expect(addShard(map, 5000)).toMatchObject({ ok: false, error: { kind: 'TooManyShards' } });
    });
});

describe('removeShard', () => {
    it('hands every slot of the removed shard to the emptiest shards', () => {
        const map = unwrap(createSlotMap([1, 2, 3, 4]));
        const { map: next, moves } = unwrap(removeShard(map, 2));
        expect(moves).toHaveLength(4096);
        expect(moves.every((m) => m.from === 2)).toBe(true);
        expect(slotsOf(next, 2)).toEqual([]);
        expect(spread(next)).toBeLessThanOrEqual(1);
        expect(next.epoch).toBe(2n);
    });

    it('hands the slots out in contiguous blocks, so the map stays a few ranges', () => {
        const map = unwrap(createSlotMap([1, 2, 3, 4, 5]));
        const { map: next } = unwrap(removeShard(map, 3));
        // 4 original blocks plus the drained block split 4 ways: at most 8 ranges.
        expect(toRanges(next).length).toBeLessThanOrEqual(8);
    });

    it('refuses an unknown shard and the last shard', () => {
        const one = unwrap(createSlotMap([1]));
        expect(removeShard(one, 1)).toMatchObject({ ok: false, error: { kind: 'LastShard' } });
        expect(removeShard(one, 9)).toMatchObject({ ok: false, error: { kind: 'UnknownShard' } });
    });
});

describe('assignSlots', () => {
    it('moves the given slots to the shard and bumps the epoch once', () => {
        const map = unwrap(createSlotMap([1, 2]));
        const { map: next, moves } = unwrap(assignSlots(map, [0, 1, 9000], 2));
        expect(moves).toEqual([
            { slot: 0, from: 1, to: 2 },
            { slot: 1, from: 1, to: 2 }
        ]);
        expect(next.epoch).toBe(2n);
        expect(ownerOf(next, 0)).toBe(2);
        expect(ownerOf(map, 0)).toBe(1);
    });

    it('keeps the epoch when nothing changes owner', () => {
        const map = unwrap(createSlotMap([1, 2]));
        const { map: next, moves } = unwrap(assignSlots(map, [9000], 2));
        expect(moves).toEqual([]);
        expect(next.epoch).toBe(1n);
    });

    it('rejects slots outside 0..16383 with the offending index', () => {
        const map = unwrap(createSlotMap([1, 2]));
        expect(assignSlots(map, [1, 16384], 2)).toEqual({
            ok: false,
            error: { kind: 'InvalidSlot', index: 1 }
        });
        expect(assignSlots(map, [1], -2)).toMatchObject({
            ok: false,
            error: { kind: 'InvalidShardId' }
        });
    });
});

describe('ranges', () => {
    it('round-trips any map through toRanges/fromRanges, in any range order', () => {
        fc.assert(
            fc.property(
                fc.array(
                    fc.tuple(
                        fc.integer({ min: 0, max: SLOT_COUNT - 1 }),
                        fc.integer({ min: 1, max: 6 })
                    ),
                    {
                        maxLength: 60
                    }
                ),
                fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
                (assignments, epoch) => {
                    const owners = new Uint32Array(SLOT_COUNT);
                    for (const [slot, shard] of assignments) owners[slot] = shard;
                    const ranges = toRanges({ epoch, owners });
                    const back = unwrap(fromRanges(epoch, [...ranges].reverse()));
                    expect(firstDifference(back.owners, owners)).toBe(-1);
                    expect(back.epoch).toBe(epoch);
                    for (let i = 1; i < ranges.length; i++) {
                        expect(ranges[i].start).toBe(ranges[i - 1].end + 1);
                        expect(ranges[i].shard_id).not.toBe(ranges[i - 1].shard_id);
                    }
                }
            ),
            { numRuns: 100 }
        );
    });

    it('reports gaps, overlaps, bad bounds and bad epochs as typed errors', () => {
        const whole = { start: 0, end: SLOT_COUNT - 1, shard_id: 1 };
        expect(fromRanges(1n, [whole])).toMatchObject({ ok: true });
        expect(fromRanges(1n, [])).toEqual({ ok: false, error: { kind: 'RangeGap', slot: 0 } });
        expect(fromRanges(1n, [{ start: 0, end: 99, shard_id: 1 }])).toEqual({
            ok: false,
            error: { kind: 'RangeGap', slot: 100 }
        });
        expect(
            fromRanges(1n, [
                { start: 0, end: 100, shard_id: 1 },
                { start: 100, end: SLOT_COUNT - 1, shard_id: 2 }
            ])
        ).toEqual({ ok: false, error: { kind: 'RangeOverlap', slot: 100 } });
        expect(
            fromRanges(1n, [
                { start: 0, end: 99, shard_id: 1 },
                { start: 101, end: SLOT_COUNT - 1, shard_id: 2 }
            ])
        ).toEqual({ ok: false, error: { kind: 'RangeGap', slot: 100 } });
        expect(fromRanges(1n, [{ start: 0, end: SLOT_COUNT, shard_id: 1 }])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidRange', index: 0 }
        });
        expect(fromRanges(1n, [{ start: 5, end: 4, shard_id: 1 }])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidRange', index: 0 }
        });
        expect(fromRanges(1n, [{ ...whole, shard_id: -1 }])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidShardId' }
        });
        expect(fromRanges(0n, [whole])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidEpoch' }
        });
        expect(fromRanges(1n << 64n, [whole])).toMatchObject({
            ok: false,
            error: { kind: 'InvalidEpoch' }
        });
        const tooMany = Array.from({ length: SLOT_COUNT + 1 }, (_, i) => ({
            start: i,
            end: i,
            shard_id: 1
        }));
        expect(fromRanges(1n, tooMany)).toMatchObject({
            ok: false,
            error: { kind: 'TooManyRanges' }
        });
    });
});

describe('validation', () => {
    it('accepts a fresh map and flags unknown owners, wrong length and epoch 0', () => {
        const map = unwrap(createSlotMap([1, 2]));
        expect(validateSlotMap(map, [1, 2])).toEqual([]);
        expect(validateSlotMap(map, [1])).toHaveLength(64);
        expect(validateSlotMap(map, [1])[0]).toEqual({
            kind: 'UnknownOwner',
            slot: 8192,
            shard_id: 2
        });
        expect(validateSlotMap({ epoch: 0n, owners: new Uint32Array(3) }, [0])).toEqual([
            { kind: 'InvalidEpoch', epoch: 0n },
            { kind: 'WrongLength', length: 3 }
        ]);
    });

    it('refuses transitions that change owners without a new epoch, or go back in epochs', () => {
        const map = unwrap(createSlotMap([1, 2]));
        const moved = unwrap(assignSlots(map, [0], 2)).map;
        expect(checkTransition(map, moved)).toEqual([]);
        expect(checkTransition(map, map)).toEqual([]);
        expect(checkTransition(map, { ...moved, epoch: map.epoch })).toEqual([
            { kind: 'EpochNotIncreased', prev: 1n, next: 1n }
        ]);
        expect(checkTransition(moved, map)).toEqual([
            { kind: 'EpochDecreased', prev: 2n, next: 1n }
        ]);
    });
});

describe('slot map invariants under any sequence of adds and removes', () => {
    type Op = { kind: 'add' } | { kind: 'remove'; pick: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
        fc.constant<Op>({ kind: 'add' }),
        fc.nat({ max: 1_000_000 }).map<Op>((pick) => ({ kind: 'remove', pick }))
    );

    it('owns every slot exactly once by a live shard, stays within one slot, grows the epoch, moves the minimum from the fullest', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 1, max: 40 }),
                fc.array(opArb, { maxLength: 10 }),
                (initial, ops) => {
                    let map = unwrap(createSlotMap(Array.from({ length: initial }, (_, i) => i)));
                    let nextId = initial;
                    for (const op of ops) {
                        const live = shardIdsOf(map);
                        const before = slotCounts(map);
                        let change;
                        if (op.kind === 'add') {
                            change = unwrap(addShard(map, nextId));
                            expect(change.moves).toHaveLength(
                                Math.floor(SLOT_COUNT / (live.length + 1))
                            );
                            // Taken from the fullest: each donor, after its last give, is within one
                            // slot of the fullest old shard's final count.
                            const after = slotCounts(change.map);
                            const maxOld = Math.max(...live.map((id) => after.get(id) ?? 0));
                            for (const donor of new Set(change.moves.map((m) => m.from))) {
                                expect((after.get(donor) ?? 0) + 1).toBeGreaterThanOrEqual(maxOld);
                            }
                            live.push(nextId);
                            nextId += 1;
                        } else {
                            if (live.length === 1) continue;
                            const victim = live[op.pick % live.length];
                            change = unwrap(removeShard(map, victim));
                            expect(change.moves).toHaveLength(before.get(victim) ?? -1);
                            live.splice(live.indexOf(victim), 1);
                        }
                        const current = map;
                        const target = change.map;
                        const wrongMoves = change.moves.filter(
                            (m) =>
                                current.owners[m.slot] !== m.from || target.owners[m.slot] !== m.to
                        );
                        expect(wrongMoves).toEqual([]);
                        expect(change.map.epoch).toBe(map.epoch + 1n);
                        expect(checkTransition(map, change.map)).toEqual([]);
                        map = change.map;
                        expect(map.owners).toHaveLength(SLOT_COUNT);
                        expect(validateSlotMap(map, live)).toEqual([]);
                        expect(shardIdsOf(map)).toEqual([...live].sort((a, b) => a - b));
                        expect(spread(map)).toBeLessThanOrEqual(1);
                    }
                }
            ),
            { numRuns: 40 }
        );
    });
});

describe('assignSpan (a cutover on the compact form)', () => {
    /** Maps of 1..6 shards with 0..8 earlier span moves, so ranges are fragmented. */
    const mapArb = fc
        .tuple(
            fc.integer({ min: 1, max: 6 }),
            fc.array(
                fc.tuple(fc.nat(SLOT_COUNT - 1), fc.nat(2_000), fc.integer({ min: 1, max: 7 })),
                { maxLength: 8 }
            )
        )
        .map(([n, moves]) => {
            let map = unwrap(createSlotMap(Array.from({ length: n }, (_, i) => i + 1)));
            for (const [start, length, to] of moves) {
                const slots: number[] = [];
                for (let s = start; s <= Math.min(SLOT_COUNT - 1, start + length); s++)
                    slots.push(s);
                map = unwrap(assignSlots(map, slots, to)).map;
            }
            return map;
        });

    it('equals assignSlots over the span, in toRanges form', () => {
        fc.assert(
            fc.property(
                mapArb,
                fc.nat(SLOT_COUNT - 1),
                fc.nat(1_500),
                fc.integer({ min: 1, max: 8 }),
                (map, start, length, to) => {
                    const end = Math.min(SLOT_COUNT - 1, start + length);
                    const slots: number[] = [];
                    for (let s = start; s <= end; s++) slots.push(s);
                    const expected = unwrap(assignSlots(map, slots, to));
                    const got = unwrap(assignSpan(map.epoch, toRanges(map), start, end, to));
                    expect(got.ranges).toEqual(toRanges(expected.map));
                    expect(got.epoch).toBe(expected.map.epoch);
                    expect(got.moved).toBe(expected.moves.length);
                }
            ),
            { numRuns: 200 }
        );
    });

    it('refuses bad spans and shard ids without changing anything', () => {
        const ranges = toRanges(unwrap(createSlotMap([1, 2])));
        expect(assignSpan(1n, ranges, 5, 4, 2).ok).toBe(false);
        expect(assignSpan(1n, ranges, -1, 4, 2).ok).toBe(false);
        expect(assignSpan(1n, ranges, 0, SLOT_COUNT, 2).ok).toBe(false);
        expect(assignSpan(1n, ranges, 0, 4, -1).ok).toBe(false);
        expect(ranges).toEqual(toRanges(unwrap(createSlotMap([1, 2]))));
    });
});
