/**
 * The routing table: which shard owns each of the 16384 hash slots, plus an epoch.
 *
 * Plain data and pure functions: every change returns a new map with `epoch + 1` and the list of
 * slot moves it implies. The factory executes the moves (copy, catch up, cutover) and commits each
 * cutover with `assignSlots`; `addShard`/`removeShard` are plans whose final map is what the
 * cutovers converge to. Over the wire and in stable memory the map is a list of inclusive ranges.
 */
import { slotOf, SLOT_COUNT } from './hash';
import { MAX_SHARDS } from './limits';
import type { SlotRange } from './types';

export type { SlotRange };

/** Slot → owning shard id. `owners` always has SLOT_COUNT entries; treat it as immutable. */
export interface SlotMap {
    epoch: bigint;
    owners: Uint32Array;
}

/** One slot changing owner. */
export interface SlotMove {
    slot: number;
    from: number;
    to: number;
}

/** A new map and the slot moves that lead to it from the old one. */
export interface SlotMapChange {
    map: SlotMap;
    moves: SlotMove[];
}

/** Why an operation on the slot map was refused; nothing changes when one is returned. */
export type SlotMapError =
    | { kind: 'InvalidShardId'; shard_id: number }
    | { kind: 'DuplicateShard'; shard_id: number }
    | { kind: 'UnknownShard'; shard_id: number }
    | { kind: 'TooManyShards'; max: number }
    | { kind: 'NoShards' }
    | { kind: 'LastShard'; shard_id: number }
    | { kind: 'InvalidWeight'; index: number; reason: string }
    | { kind: 'InvalidSlot'; index: number }
    | { kind: 'InvalidEpoch'; reason: string }
    | { kind: 'TooManyRanges'; count: number; max: number }
    | { kind: 'InvalidRange'; index: number; reason: string }
    | { kind: 'RangeGap'; slot: number }
    | { kind: 'RangeOverlap'; slot: number };

/** Result as a value: `{ ok: true, value }` or `{ ok: false, error }`. */
export type SlotMapResult<T> = { ok: true; value: T } | { ok: false; error: SlotMapError };

/** A broken invariant found by `validateSlotMap` or `checkTransition`. */
export type SlotMapViolation =
    | { kind: 'WrongLength'; length: number }
    | { kind: 'UnknownOwner'; slot: number; shard_id: number }
    | { kind: 'InvalidEpoch'; epoch: bigint }
    | { kind: 'EpochNotIncreased'; prev: bigint; next: bigint }
    | { kind: 'EpochDecreased'; prev: bigint; next: bigint };

/** Validation lists at most this many violations, so a corrupt map cannot produce a huge reply. */
export const MAX_VIOLATIONS = 64;

const MAX_U32 = 0xffffffff;
const MAX_U64 = (1n << 64n) - 1n;

function ok<T>(value: T): SlotMapResult<T> {
    return { ok: true, value };
}

function err<T>(error: SlotMapError): SlotMapResult<T> {
    return { ok: false, error };
}

function isShardId(value: number): boolean {
    return Number.isInteger(value) && value >= 0 && value <= MAX_U32;
}

/**
 * Slot counts proportional to `weights` summing to SLOT_COUNT (largest-remainder method, ties to
 * the lower index), so equal weights give counts that differ by at most one.
 */
function apportion(weights: number[]): number[] {
    const total = weights.reduce((sum, w) => sum + w, 0);
    const quotas = weights.map((w) => (SLOT_COUNT * w) / total);
    const counts = quotas.map((q) => Math.floor(q));
    let left = SLOT_COUNT - counts.reduce((sum, c) => sum + c, 0);
    const order = quotas
        .map((q, i) => ({ i, frac: q - Math.floor(q) }))
        .sort((a, b) => b.frac - a.frac || a.i - b.i);
    // left < weights.length because each floor loses less than one slot.
    for (let k = 0; left > 0 && k < order.length; k++, left--) counts[order[k].i] += 1;
    return counts;
}

/**
 * A map over `shardIds` in contiguous blocks, sized by `weights` (default: equal), at epoch 1.
 *
 * @example createSlotMap([1, 2, 3]) // shard 1 owns 0..5461, shard 2 5462..10922, shard 3 10923..16383
 */
export function createSlotMap(shardIds: number[], weights?: number[]): SlotMapResult<SlotMap> {
    if (shardIds.length === 0) return err({ kind: 'NoShards' });
    if (shardIds.length > MAX_SHARDS) return err({ kind: 'TooManyShards', max: MAX_SHARDS });
    const seen = new Set<number>();
    for (const id of shardIds) {
        if (!isShardId(id)) return err({ kind: 'InvalidShardId', shard_id: id });
        if (seen.has(id)) return err({ kind: 'DuplicateShard', shard_id: id });
        seen.add(id);
    }
    const w = weights ?? shardIds.map(() => 1);
    if (w.length !== shardIds.length) {
        return err({ kind: 'InvalidWeight', index: w.length, reason: 'one weight per shard' });
    }
    for (let i = 0; i < w.length; i++) {
        if (!Number.isFinite(w[i]) || w[i] <= 0) {
            return err({
                kind: 'InvalidWeight',
                index: i,
                reason: 'weight must be finite and > 0'
            });
        }
    }
    const counts = apportion(w);
    const owners = new Uint32Array(SLOT_COUNT);
    let slot = 0;
    for (let i = 0; i < shardIds.length; i++) {
        if (counts[i] === 0) {
            return err({
                kind: 'InvalidWeight',
                index: i,
                reason: 'weight too small for one slot'
            });
        }
        owners.fill(shardIds[i], slot, slot + counts[i]);
        slot += counts[i];
    }
    return ok({ epoch: 1n, owners });
}

/** The shard owning `slot`, or undefined when `slot` is not an integer in 0..16383. */
export function ownerOf(map: SlotMap, slot: number): number | undefined {
    return Number.isInteger(slot) && slot >= 0 && slot < SLOT_COUNT ? map.owners[slot] : undefined;
}

/**
 * The shard owning the key's slot (hash of the borrower's principal bytes).
 *
 * @example shardOfKey(map, Principal.fromText(caller).toUint8Array())
 */
export function shardOfKey(map: SlotMap, keyBytes: Uint8Array): number {
    return map.owners[slotOf(keyBytes)];
}

/** The slots owned by `shardId`, ascending. */
export function slotsOf(map: SlotMap, shardId: number): number[] {
    const slots: number[] = [];
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        if (map.owners[slot] === shardId) slots.push(slot);
    }
    return slots;
}

/** Slot count per shard that owns at least one slot, in ascending shard id order. */
export function slotCounts(map: SlotMap): Map<number, number> {
    const counts = new Map<number, number>();
    // Count runs, not slots: maps are mostly long runs, so this touches the Map rarely.
    let runStart = 0;
    for (let slot = 1; slot <= SLOT_COUNT; slot++) {
        if (slot === SLOT_COUNT || map.owners[slot] !== map.owners[runStart]) {
            const owner = map.owners[runStart];
            counts.set(owner, (counts.get(owner) ?? 0) + slot - runStart);
            runStart = slot;
        }
    }
    return new Map([...counts.entries()].sort((a, b) => a[0] - b[0]));
}

/** The shards that own at least one slot, ascending. */
export function shardIdsOf(map: SlotMap): number[] {
    return [...slotCounts(map).keys()];
}

/** Shard ids (ascending) and their slot counts as parallel arrays, for tight loops. */
interface Tally {
    ids: number[];
    counts: number[];
}

function tally(map: SlotMap): Tally {
    const entries = [...slotCounts(map)];
    return { ids: entries.map((e) => e[0]), counts: entries.map((e) => e[1]) };
}

/** Index of the shard with the most (`sign` 1) or fewest (`sign` -1) slots; ties: lower id. */
function extremeIndex(counts: number[], sign: 1 | -1): number {
    let best = 0;
    for (let i = 1; i < counts.length; i++) {
        if (sign * (counts[i] - counts[best]) > 0) best = i;
    }
    return best;
}

/**
 * Plans adding `shardId`: it receives ⌊16384·w/(n+w)⌋ slots, where n is the number of shards and
 * `weight` (default 1) is relative to an average existing shard, so weight 1 gives ⌊16384/(n+1)⌋,
 * the minimum movement for a fair share. Slots are taken one at a time from the currently fullest
 * shard (its highest slot, which keeps ranges contiguous). Returns the target map at epoch + 1.
 *
 * @example addShard(map, 7) // { ok: true, value: { map, moves: [{ slot, from, to: 7 }, ...] } }
 */
export function addShard(map: SlotMap, shardId: number, weight = 1): SlotMapResult<SlotMapChange> {
    if (!isShardId(shardId)) return err({ kind: 'InvalidShardId', shard_id: shardId });
    if (!Number.isFinite(weight) || weight <= 0) {
        return err({ kind: 'InvalidWeight', index: 0, reason: 'weight must be finite and > 0' });
    }
    const { ids, counts } = tally(map);
    if (ids.includes(shardId)) return err({ kind: 'DuplicateShard', shard_id: shardId });
    if (ids.length >= MAX_SHARDS) return err({ kind: 'TooManyShards', max: MAX_SHARDS });
    const target = Math.floor((SLOT_COUNT * weight) / (ids.length + weight));
    if (target === 0) {
        return err({ kind: 'InvalidWeight', index: 0, reason: 'weight too small for one slot' });
    }
    if (SLOT_COUNT - target < ids.length) {
        return err({ kind: 'InvalidWeight', index: 0, reason: 'weight leaves a shard no slot' });
    }
    // Each shard's slots ascending, used as a stack so the highest slot goes first.
    const indexOf = new Map(ids.map((id, i) => [id, i]));
    const slotsByShard: number[][] = ids.map(() => []);
    let run: number[] = [];
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        if (slot === 0 || map.owners[slot] !== map.owners[slot - 1]) {
            run = slotsByShard[indexOf.get(map.owners[slot]) ?? -1];
        }
        run.push(slot);
    }
    const owners = map.owners.slice();
    const moves: SlotMove[] = [];
    // target < SLOT_COUNT because there is at least one shard; each iteration moves one slot.
    for (let k = 0; k < target; k++) {
        const from = extremeIndex(counts, 1);
        const slot = slotsByShard[from].pop();
        if (slot === undefined) throw new Error('slot map bookkeeping out of sync');
        counts[from] -= 1;
        owners[slot] = shardId;
        moves.push({ slot, from: ids[from], to: shardId });
    }
    moves.sort((a, b) => a.slot - b.slot);
    return ok({ map: { epoch: map.epoch + 1n, owners }, moves });
}

/**
 * Plans removing (draining) `shardId`: its slots go to the emptiest remaining shards (one at a
 * time to the currently emptiest, so counts stay level), in contiguous blocks. Returns the target
 * map at epoch + 1.
 *
 * @example removeShard(map, 7) // { ok: true, value: { map, moves: [{ slot, from: 7, to }, ...] } }
 */
export function removeShard(map: SlotMap, shardId: number): SlotMapResult<SlotMapChange> {
    const { ids, counts } = tally(map);
    const removed = ids.indexOf(shardId);
    if (removed === -1) return err({ kind: 'UnknownShard', shard_id: shardId });
    if (ids.length === 1) return err({ kind: 'LastShard', shard_id: shardId });
    ids.splice(removed, 1);
    counts.splice(removed, 1);
    // Water-fill: decide how many slots each shard receives (one at a time to the emptiest),
    // then hand them out as contiguous blocks so the map keeps few ranges.
    const drained = slotsOf(map, shardId);
    const gains = ids.map(() => 0);
    for (let k = 0; k < drained.length; k++) {
        const to = extremeIndex(counts, -1);
        counts[to] += 1;
        gains[to] += 1;
    }
    const owners = map.owners.slice();
    const moves: SlotMove[] = [];
    let next = 0;
    for (let i = 0; i < ids.length; i++) {
        for (let k = 0; k < gains[i]; k++, next++) {
            owners[drained[next]] = ids[i];
            moves.push({ slot: drained[next], from: shardId, to: ids[i] });
        }
    }
    return ok({ map: { epoch: map.epoch + 1n, owners }, moves });
}

/**
 * Gives `slots` to `toShard` (a migration cutover). Bumps the epoch by one when any owner
 * changes; returns the map unchanged (same epoch, no moves) when none does.
 *
 * @example assignSlots(map, [42], 3) // slot 42 now routes to shard 3, epoch + 1
 */
export function assignSlots(
    map: SlotMap,
    slots: number[],
    toShard: number
): SlotMapResult<SlotMapChange> {
    if (!isShardId(toShard)) return err({ kind: 'InvalidShardId', shard_id: toShard });
    if (slots.length > SLOT_COUNT) return err({ kind: 'InvalidSlot', index: SLOT_COUNT });
    for (let i = 0; i < slots.length; i++) {
        const slot = slots[i];
        if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
            return err({ kind: 'InvalidSlot', index: i });
        }
    }
    const owners = map.owners.slice();
    const moves: SlotMove[] = [];
    for (const slot of slots) {
        const from = owners[slot];
        if (from === toShard) continue;
        owners[slot] = toShard;
        moves.push({ slot, from, to: toShard });
    }
    if (moves.length === 0) return ok({ map, moves });
    return ok({ map: { epoch: map.epoch + 1n, owners }, moves });
}

/**
 * `assignSlots` of the span `start..=end` on the compact form: the ranges after giving those slots
 * to `toShard`, with the epoch bumped only when an owner changed, and how many slots moved. Works
 * on the few ranges rather than the 16,384 owners (a migration's cutover runs it once per span).
 * `ranges` must be valid (`fromRanges`); the result is in `toRanges` form (sorted, maximal runs).
 *
 * @example assignSpan(1n, [{ start: 0, end: 16383, shard_id: 1 }], 0, 9, 2) // epoch 2, 10 moved
 */
export function assignSpan(
    epoch: bigint,
    ranges: readonly SlotRange[],
    start: number,
    end: number,
    toShard: number
): SlotMapResult<{ epoch: bigint; ranges: SlotRange[]; moved: number }> {
    if (!isShardId(toShard)) return err({ kind: 'InvalidShardId', shard_id: toShard });
    if (!Number.isInteger(start) || start < 0 || start >= SLOT_COUNT) {
        return err({ kind: 'InvalidSlot', index: 0 });
    }
    if (!Number.isInteger(end) || end < start || end >= SLOT_COUNT) {
        return err({ kind: 'InvalidSlot', index: 1 });
    }
    const pieces: SlotRange[] = [];
    let moved = 0;
    for (const r of [...ranges].sort((a, b) => a.start - b.start)) {
        if (r.end < start || r.start > end) {
            pieces.push({ ...r });
            continue;
        }
        if (r.start < start) pieces.push({ start: r.start, end: start - 1, shard_id: r.shard_id });
        const from = Math.max(r.start, start);
        const to = Math.min(r.end, end);
        if (r.shard_id !== toShard) moved += to - from + 1;
        pieces.push({ start: from, end: to, shard_id: toShard });
        if (r.end > end) pieces.push({ start: end + 1, end: r.end, shard_id: r.shard_id });
    }
    const merged: SlotRange[] = [];
    for (const piece of pieces) {
        const last = merged[merged.length - 1];
        if (
            last !== undefined &&
            last.shard_id === piece.shard_id &&
            last.end + 1 === piece.start
        ) {
            last.end = piece.end;
        } else {
            merged.push(piece);
        }
    }
    if (moved === 0) return ok({ epoch, ranges: merged, moved });
    return ok({ epoch: epoch + 1n, ranges: merged, moved });
}

/**
 * The compact form: maximal runs of consecutive slots with one owner, ascending, inclusive ends.
 *
 * @example toRanges(createSlotMap([1, 2]).value) // [{start: 0, end: 8191, shard_id: 1}, {start: 8192, end: 16383, shard_id: 2}]
 */
export function toRanges(map: SlotMap): SlotRange[] {
    const ranges: SlotRange[] = [];
    let start = 0;
    for (let slot = 1; slot <= SLOT_COUNT; slot++) {
        if (slot === SLOT_COUNT || map.owners[slot] !== map.owners[start]) {
            ranges.push({ start, end: slot - 1, shard_id: map.owners[start] });
            start = slot;
        }
    }
    return ranges;
}

/**
 * Rebuilds a map from ranges read off the wire or stable memory. The ranges, in any order, must
 * cover every slot exactly once; otherwise a typed error says where they fail.
 */
export function fromRanges(epoch: bigint, ranges: SlotRange[]): SlotMapResult<SlotMap> {
    if (typeof epoch !== 'bigint' || epoch < 1n || epoch > MAX_U64) {
        return err({ kind: 'InvalidEpoch', reason: 'epoch must be in 1..2^64-1' });
    }
    if (ranges.length > SLOT_COUNT) {
        return err({ kind: 'TooManyRanges', count: ranges.length, max: SLOT_COUNT });
    }
    for (let i = 0; i < ranges.length; i++) {
        const { start, end, shard_id } = ranges[i];
        if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end >= SLOT_COUNT) {
            return err({
                kind: 'InvalidRange',
                index: i,
                reason: `slots must be in 0..${SLOT_COUNT - 1}`
            });
        }
        if (start > end) return err({ kind: 'InvalidRange', index: i, reason: 'start > end' });
        if (!isShardId(shard_id)) return err({ kind: 'InvalidShardId', shard_id });
    }
    const sorted = [...ranges].sort((a, b) => a.start - b.start);
    const owners = new Uint32Array(SLOT_COUNT);
    let next = 0;
    for (const { start, end, shard_id } of sorted) {
        if (start > next) return err({ kind: 'RangeGap', slot: next });
        if (start < next) return err({ kind: 'RangeOverlap', slot: start });
        owners.fill(shard_id, start, end + 1);
        next = end + 1;
    }
    if (next < SLOT_COUNT) return err({ kind: 'RangeGap', slot: next });
    return ok({ epoch, owners });
}

/**
 * Checks the invariants of one map: SLOT_COUNT owners (so every slot is owned exactly once), each
 * a known shard, and an epoch in 1..2^64-1. Returns at most MAX_VIOLATIONS violations; [] = valid.
 */
export function validateSlotMap(map: SlotMap, knownShardIds: Iterable<number>): SlotMapViolation[] {
    const violations: SlotMapViolation[] = [];
    if (map.epoch < 1n || map.epoch > MAX_U64)
        violations.push({ kind: 'InvalidEpoch', epoch: map.epoch });
    if (map.owners.length !== SLOT_COUNT) {
        violations.push({ kind: 'WrongLength', length: map.owners.length });
    }
    const known = new Set(knownShardIds);
    const length = Math.min(map.owners.length, SLOT_COUNT);
    let ownerKnown = false;
    for (let slot = 0; slot < length && violations.length < MAX_VIOLATIONS; slot++) {
        const owner = map.owners[slot];
        // Look the owner up once per run of equal owners.
        if (slot === 0 || owner !== map.owners[slot - 1]) ownerKnown = known.has(owner);
        if (!ownerKnown) violations.push({ kind: 'UnknownOwner', slot, shard_id: owner });
    }
    return violations;
}

/**
 * Checks that `next` may replace `prev`: the epoch never decreases, and strictly grows when any
 * slot changes owner. Returns the violations; [] = allowed.
 */
export function checkTransition(prev: SlotMap, next: SlotMap): SlotMapViolation[] {
    if (next.epoch < prev.epoch) {
        return [{ kind: 'EpochDecreased', prev: prev.epoch, next: next.epoch }];
    }
    if (next.epoch === prev.epoch && !sameOwners(prev.owners, next.owners)) {
        return [{ kind: 'EpochNotIncreased', prev: prev.epoch, next: next.epoch }];
    }
    return [];
}

function sameOwners(a: Uint32Array, b: Uint32Array): boolean {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
}
