/**
 * Rebalance planner: which slots to migrate so that no shard carries much more than the mean load.
 *
 * Greedy, as Citus's shard rebalancer: repeatedly move one slot from the heaviest shard to the
 * lightest, choosing the slot that lowers the pair's larger load the most, and skip any move that
 * gains less than half the moved slot's load (Citus's `improvement_threshold` 0.5), because
 * migrating a slot costs in proportion to its load. Such moves never raise the maximum load.
 */
import { SLOT_COUNT } from './hash';
import { MAX_SHARDS } from './limits';
import type { SlotMap, SlotMove } from './slot_map';

/** Largest `maxMoves` accepted; the planner's work is O(maxMoves × (shards + slots per shard)). */
export const MAX_REBALANCE_MOVES = SLOT_COUNT;

/** Inputs of `planRebalance`. */
export interface RebalanceInput {
    /** Load per slot (e.g. loan count), SLOT_COUNT finite non-negative numbers. */
    slotLoads: ArrayLike<number>;
    /** Current owner per slot, SLOT_COUNT shard ids, each in `shardIds`. */
    owners: ArrayLike<number>;
    /** Shards that take part; may include empty (new) shards, which receive slots. */
    shardIds: number[];
    /**
     * Shards that own slots but take no part (e.g. read-only shards): their slots stay where they
     * are and count towards no mean. Disjoint from `shardIds`. Default none.
     */
    pinnedShardIds?: number[];
    /** Target: max shard load / mean shard load ≤ 1 + epsilon. */
    epsilon: number;
    /** Bound on slot moves in the plan, 0..MAX_REBALANCE_MOVES. */
    maxMoves: number;
}

/** A plan: the moves (one per slot at most, ascending by slot) and the balance they reach. */
export interface RebalancePlan {
    moves: SlotMove[];
    max_over_mean_before: number;
    max_over_mean_after: number;
    /** True when the plan reaches max/mean ≤ 1 + epsilon. */
    balanced: boolean;
}

/** Why the inputs were refused. */
export type RebalanceError =
    | { kind: 'InvalidInput'; field: keyof RebalanceInput; reason: string }
    | { kind: 'UnknownOwner'; slot: number; shard_id: number };

/** Result as a value: `{ ok: true, value }` or `{ ok: false, error }`. */
export type RebalanceResult =
    { ok: true; value: RebalancePlan } | { ok: false; error: RebalanceError };

function invalid(field: keyof RebalanceInput, reason: string): RebalanceResult {
    return { ok: false, error: { kind: 'InvalidInput', field, reason } };
}

function validate(input: RebalanceInput): RebalanceResult | null {
    const { slotLoads, owners, shardIds, epsilon, maxMoves } = input;
    const pinned = input.pinnedShardIds ?? [];
    if (pinned.length > MAX_SHARDS || pinned.some((id) => shardIds.includes(id))) {
        return invalid('pinnedShardIds', `at most ${MAX_SHARDS}, none of them in shardIds`);
    }
    if (slotLoads.length !== SLOT_COUNT) return invalid('slotLoads', `need ${SLOT_COUNT} entries`);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        const load = slotLoads[slot];
        if (!Number.isFinite(load) || load < 0) {
            return invalid('slotLoads', `slot ${slot}: load must be finite and >= 0`);
        }
    }
    if (owners.length !== SLOT_COUNT) return invalid('owners', `need ${SLOT_COUNT} entries`);
    if (shardIds.length === 0 || shardIds.length > MAX_SHARDS) {
        return invalid('shardIds', `need 1..${MAX_SHARDS} shards`);
    }
    if (new Set(shardIds).size !== shardIds.length)
        return invalid('shardIds', 'duplicate shard id');
    if (!Number.isFinite(epsilon) || epsilon < 0)
        return invalid('epsilon', 'must be finite and >= 0');
    if (!Number.isInteger(maxMoves) || maxMoves < 0 || maxMoves > MAX_REBALANCE_MOVES) {
        return invalid('maxMoves', `must be an integer in 0..${MAX_REBALANCE_MOVES}`);
    }
    return null;
}

/** Index of the heaviest (`sign` 1) or lightest (`sign` -1) shard; ties go to the lower index. */
function extreme(loads: number[], sign: 1 | -1): number {
    let best = 0;
    for (let i = 1; i < loads.length; i++) {
        if (sign * (loads[i] - loads[best]) > 0) best = i;
    }
    return best;
}

/**
 * Position in `sorted` (ascending load) of the slot whose move across a load gap gains most:
 * gain(x) = min(x, gap - x), which peaks at gap/2, so only the neighbours of gap/2 compete. A move
 * must gain something and at least half its load (x <= 2/3 gap). On equal gain the lighter slot
 * wins (less to copy). -1 when no slot qualifies.
 */
function bestSlot(sorted: number[], slotLoads: ArrayLike<number>, gap: number): number {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (slotLoads[sorted[mid]] <= gap / 2) lo = mid + 1;
        else hi = mid;
    }
    // sorted[lo - 1] is the heaviest slot at most gap/2; sorted[lo] the lightest above it.
    let best = -1;
    let bestGain = 0;
    if (lo > 0 && slotLoads[sorted[lo - 1]] > 0) {
        best = lo - 1;
        bestGain = slotLoads[sorted[lo - 1]];
    }
    if (lo < sorted.length) {
        const load = slotLoads[sorted[lo]];
        const gain = gap - load;
        if (gain > bestGain && gain >= load / 2) best = lo;
    }
    return best;
}

/** Inserts `slot` into `sorted`, keeping it ordered by `compare`. */
function insertSorted(
    sorted: number[],
    slot: number,
    compare: (a: number, b: number) => number
): void {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (compare(sorted[mid], slot) < 0) lo = mid + 1;
        else hi = mid;
    }
    sorted.splice(lo, 0, slot);
}

function maxOverMean(loads: number[], mean: number): number {
    return mean === 0 ? 1 : loads[extreme(loads, 1)] / mean;
}

/**
 * Plans the fewest slot moves (greedily) that bring max/mean shard load to at most 1 + epsilon,
 * never more than `maxMoves`. When the bound cannot be reached (a single slot heavier than the
 * gap, or the move budget runs out) the plan still lowers the maximum as far as it got and
 * says `balanced: false`. Already balanced inputs give no moves.
 *
 * @example planRebalance({ slotLoads, owners: map.owners, shardIds: [1, 2, 3], epsilon: 0.05, maxMoves: 200 })
 */
export function planRebalance(input: RebalanceInput): RebalanceResult {
    const refused = validate(input);
    if (refused !== null) return refused;
    const { slotLoads, owners, shardIds, epsilon, maxMoves } = input;

    const indexOf = new Map<number, number>();
    shardIds.forEach((id, i) => indexOf.set(id, i));
    const pinned = new Set(input.pinnedShardIds ?? []);
    const loads: number[] = shardIds.map(() => 0);
    const slotsByShard: number[][] = shardIds.map(() => []);
    const current = new Int32Array(SLOT_COUNT);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        if (pinned.has(owners[slot])) {
            current[slot] = -1;
            continue;
        }
        const index = indexOf.get(owners[slot]);
        if (index === undefined) {
            return { ok: false, error: { kind: 'UnknownOwner', slot, shard_id: owners[slot] } };
        }
        current[slot] = index;
        loads[index] += slotLoads[slot];
        slotsByShard[index].push(slot);
    }
    const total = loads.reduce((sum, load) => sum + load, 0);
    const mean = total / shardIds.length;
    const limit = (1 + epsilon) * mean;
    const before = maxOverMean(loads, mean);

    // Each shard's slots sorted by (load, slot): the best slot is found by binary search.
    const byLoad = (a: number, b: number): number => slotLoads[a] - slotLoads[b] || a - b;
    for (const slots of slotsByShard) slots.sort(byLoad);

    for (let step = 0; step < maxMoves; step++) {
        const heavy = extreme(loads, 1);
        const light = extreme(loads, -1);
        if (loads[heavy] <= limit) break;
        const candidates = slotsByShard[heavy];
        const pos = bestSlot(candidates, slotLoads, loads[heavy] - loads[light]);
        if (pos === -1) break;
        const slot = candidates[pos];
        candidates.splice(pos, 1);
        insertSorted(slotsByShard[light], slot, byLoad);
        loads[heavy] -= slotLoads[slot];
        loads[light] += slotLoads[slot];
        current[slot] = light;
    }

    // A slot moved twice in the plan migrates once, from its original owner to its final one.
    const moves: SlotMove[] = [];
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
        if (current[slot] === -1) continue;
        const to = shardIds[current[slot]];
        if (to !== owners[slot]) moves.push({ slot, from: owners[slot], to });
    }
    return {
        ok: true,
        value: {
            moves,
            max_over_mean_before: before,
            max_over_mean_after: maxOverMean(loads, mean),
            balanced: mean === 0 || loads[extreme(loads, 1)] <= limit
        }
    };
}

/** One slot's loan count as a shard reports it (`get_slot_counts`). */
export interface SlotCount {
    slot: number;
    count: bigint | number;
}

/**
 * Loans per slot from each shard's reported counts, trusting for each slot only the shard the map
 * says owns it: a source still deleting a moved slot, or a target importing one, reports loans it
 * does not serve. Counts for slots out of range are ignored.
 */
export function slotLoadsFromCounts(
    map: SlotMap,
    counts: ReadonlyMap<number, readonly SlotCount[]>
): Float64Array {
    const loads = new Float64Array(SLOT_COUNT);
    for (const [shard_id, entries] of counts) {
        for (const { slot, count } of entries) {
            if (slot >= 0 && slot < SLOT_COUNT && map.owners[slot] === shard_id) {
                loads[slot] = Number(count);
            }
        }
    }
    return loads;
}

/** Max shard load over mean at which a rebalance by loans stops: within 5% of the mean. */
export const LOAN_REBALANCE_EPSILON = 0.05;

/**
 * The factory's rebalance: moves slots so loans, not slot counts, are even over `writable` shards
 * (others keep their slots), at most `maxMoves` slots (a migration's span bound; the next rebalance
 * moves the rest). `reason` says what the plan achieves, for the audit log.
 *
 * @example planLoanRebalance(map, [1, 2], [], loads, 256) // moves loaded slots from 1 to 2
 */
export function planLoanRebalance(
    map: SlotMap,
    writable: number[],
    pinned: number[],
    slotLoads: ArrayLike<number>,
    maxMoves: number
): { moves: SlotMove[]; reason: string } | { error: string } {
    const result = planRebalance({
        slotLoads,
        owners: map.owners,
        shardIds: writable,
        pinnedShardIds: pinned,
        epsilon: LOAN_REBALANCE_EPSILON,
        maxMoves
    });
    if (!result.ok) {
        const e = result.error;
        return {
            error:
                e.kind === 'UnknownOwner'
                    ? `slot ${e.slot} is owned by unknown shard ${e.shard_id}`
                    : `${e.field}: ${e.reason}`
        };
    }
    const plan = result.value;
    const fmt = (x: number): string => x.toFixed(3);
    return {
        moves: plan.moves,
        reason:
            `loans max/mean ${fmt(plan.max_over_mean_before)} -> ${fmt(plan.max_over_mean_after)}` +
            ` with ${plan.moves.length} slot moves` +
            (plan.balanced ? '' : ' (move bound reached or a slot heavier than the gap)')
    };
}
