import { slotOf } from './hash';

/**
 * Names of the load-balancing algorithms, equal to the tags of the router's Candid
 * `LoadBalancingAlgorithm` variant, so `Object.keys(variant)[0]` maps straight to a name here.
 */
export const ALGORITHMS = [
    'RoundRobin',
    'WeightedRoundRobin',
    'LeastConnections',
    'ResourceBased',
    'ResponseTimeBased',
    'ConsistentHashing',
    'Geographic',
    'PowerOfTwoChoices'
] as const;

/** One of {@link ALGORITHMS}. */
export type AlgorithmName = (typeof ALGORITHMS)[number];

/** What the router knows about one shard when it picks. Shard ids within a snapshot are distinct. */
export interface ShardSnapshot {
    shardId: number;
    healthy: boolean;
    /** Breaker open or forced open: never picked. */
    breakerOpen: boolean;
    /** Relative capacity. Not finite or ≤ 0 means drained: no load-spreading algorithm picks it. */
    weight: number;
    /** Requests sent and not yet answered. */
    inFlight: number;
    /** Peak-EWMA of observed latency (see {@link updatePeakEwma}); 0 means no sample yet. */
    ewmaLatencyMs: number;
    /** Busiest resource (memory, cycles, instructions) as a fraction, 0..1. */
    resourceUsage: number;
    region: string;
}

/** Smooth weighted round-robin bookkeeping for one shard. */
export interface WrrEntry {
    shardId: number;
    current: number;
}

/**
 * Balancer memory between picks, plain data so the router can keep it in stable memory.
 * Bounded: `wrrCurrent` holds at most one entry per shard of the latest snapshot.
 */
export interface BalancerState {
    /** Shard picked last by RoundRobin, -1 before the first pick. */
    rrLastShardId: number;
    /** Smooth-WRR current weights, sorted by shard id. */
    wrrCurrent: WrrEntry[];
}

/** Per-request inputs. Randomness is a parameter so every pick is reproducible. */
export interface BalanceRequest {
    /** Caller's principal bytes; required by ConsistentHashing. */
    key?: Uint8Array;
    /** Caller's region; used by Geographic. */
    region?: string;
    /** Uniform integer in [0, 2^32); other values are coerced with `>>> 0`. */
    randomU32: () => number;
    /** Slot map lookup (slot → owning shard id); required by ConsistentHashing. */
    ownerOfSlot?: (slot: number) => number;
}

/** Outcome of {@link choose}: the shard and the next state, or why nothing can be picked. */
export type ChooseResult =
    | { ok: true; shardId: number; state: BalancerState }
    | { ok: false; error: 'NoShardAvailable'; reason: string };

const NO_ELIGIBLE = 'no healthy shard with a closed breaker and positive weight';

/** Cost of a busy shard without a latency sample (Finagle's penalty): tried only when all else is. */
const UNMEASURED_PENALTY_MS = 1e12;

/**
 * The state before the first pick.
 *
 * @example
 * let state = initialBalancerState();
 */
export function initialBalancerState(): BalancerState {
    return { rrLastShardId: -1, wrrCurrent: [] };
}

/**
 * Peak-EWMA update (Finagle/Linkerd): a sample above the average replaces it at once, so a
 * slowing shard is avoided immediately; otherwise the average decays towards the sample with
 * weight `exp(-elapsedMs / decayMs)` on the old value, so sparse samples count for more.
 *
 * @example
 * updatePeakEwma(10, 50, 5, 10_000); // 50: a peak replaces the average
 * updatePeakEwma(50, 10, 10_000, 10_000); // ≈ 24.7: one decay time pulls it 63% of the way
 */
export function updatePeakEwma(
    prevMs: number,
    sampleMs: number,
    elapsedMs: number,
    decayMs: number
): number {
    if (!Number.isFinite(sampleMs) || sampleMs < 0) return prevMs;
    if (!Number.isFinite(prevMs) || prevMs < 0 || sampleMs > prevMs) return sampleMs;
    if (!(decayMs > 0)) return sampleMs;
    const keep = Math.exp(-Math.max(0, elapsedMs) / decayMs);
    return prevMs * keep + sampleMs * (1 - keep);
}

/**
 * Picks a shard for one request. Pure: `state` is not mutated; the next state is returned.
 * No algorithm picks a shard that is unhealthy or whose breaker is open. Load-spreading
 * algorithms (all but ConsistentHashing) also skip drained shards (weight ≤ 0).
 *
 * Rules, with "load" = (inFlight + 1) / weight and ties broken by the lowest shard id:
 * - RoundRobin: next eligible shard id after the last pick, wrapping.
 * - WeightedRoundRobin: NGINX smooth WRR (current += weight; pick max; subtract the total).
 * - LeastConnections: lowest load (the +1 makes an idle heavy shard beat an idle light one).
 * - ResourceBased: lowest resourceUsage / weight, then lowest load.
 * - ResponseTimeBased: of two distinct random eligible shards, the lower ewma × (inFlight + 1).
 * - ConsistentHashing: the owner of `slotOf(key)`; if it cannot serve, NoShardAvailable rather
 *   than moving the user's writes elsewhere.
 * - Geographic: lowest load among eligible shards in `request.region`, else among all eligible.
 * - PowerOfTwoChoices: of two distinct random eligible shards, the lower load (Envoy least-request).
 * For the two-choice algorithms a tie goes to the first draw.
 *
 * @example
 * const r = choose('PowerOfTwoChoices', state, shards, { randomU32: nextU32 });
 * if (r.ok) state = r.state; // then send to r.shardId; else reply ShardUnavailable
 */
export function choose(
    algorithm: AlgorithmName,
    state: BalancerState,
    snapshot: readonly ShardSnapshot[],
    request: BalanceRequest
): ChooseResult {
    if (algorithm === 'ConsistentHashing') return chooseConsistent(state, snapshot, request);
    if (algorithm === 'WeightedRoundRobin') return chooseSmoothWeighted(state, snapshot);

    const eligible = eligibleShards(snapshot);
    if (eligible.length === 0) return noShard(NO_ELIGIBLE);
    switch (algorithm) {
        case 'RoundRobin': {
            const next = eligible.find((s) => s.shardId > state.rrLastShardId) ?? eligible[0];
            return picked(next.shardId, { ...state, rrLastShardId: next.shardId });
        }
        case 'LeastConnections':
            return picked(minBy(eligible, compareLoad).shardId, state);
        case 'ResourceBased':
            return picked(minBy(eligible, compareResource).shardId, state);
        case 'ResponseTimeBased':
            return picked(betterOfTwo(eligible, request, compareCost).shardId, state);
        case 'Geographic': {
            const local = eligible.filter((s) => s.region === request.region);
            const pool = local.length > 0 ? local : eligible;
            return picked(minBy(pool, compareLoad).shardId, state);
        }
        case 'PowerOfTwoChoices':
            return picked(betterOfTwo(eligible, request, compareLoad).shardId, state);
        default:
            return assertNever(algorithm);
    }
}

function chooseConsistent(
    state: BalancerState,
    snapshot: readonly ShardSnapshot[],
    request: BalanceRequest
): ChooseResult {
    if (request.key === undefined) return noShard('ConsistentHashing needs a key');
    if (request.ownerOfSlot === undefined) return noShard('ConsistentHashing needs ownerOfSlot');
    const slot = slotOf(request.key);
    const ownerId = request.ownerOfSlot(slot);
    const owner = snapshot.find((s) => s.shardId === ownerId);
    if (owner === undefined) return noShard(`slot ${slot} owner ${ownerId} is not in the snapshot`);
    if (!owner.healthy) return noShard(`slot ${slot} owner ${ownerId} is unhealthy`);
    if (owner.breakerOpen) return noShard(`slot ${slot} owner ${ownerId} has an open breaker`);
    return picked(ownerId, state);
}

function chooseSmoothWeighted(
    state: BalancerState,
    snapshot: readonly ShardSnapshot[]
): ChooseResult {
    const previous = new Map<number, number>();
    for (const e of state.wrrCurrent) previous.set(e.shardId, e.current);
    const next: WrrEntry[] = [];
    let total = 0;
    let best = -1;
    for (const s of sortedById(snapshot)) {
        // Ineligible shards restart from 0, so one coming back gets no burst of saved-up credit.
        if (!isSpreadable(s)) {
            next.push({ shardId: s.shardId, current: 0 });
            continue;
        }
        const current = (previous.get(s.shardId) ?? 0) + s.weight;
        total += s.weight;
        if (best < 0 || current > next[best].current) best = next.length;
        next.push({ shardId: s.shardId, current });
    }
    if (best < 0) return noShard(NO_ELIGIBLE);
    next[best].current -= total;
    return picked(next[best].shardId, { ...state, wrrCurrent: next });
}

/** Eligible for load spreading, sorted by shard id so the result does not depend on input order. */
function eligibleShards(snapshot: readonly ShardSnapshot[]): readonly ShardSnapshot[] {
    return sortedById(snapshot.filter(isSpreadable));
}

function isSpreadable(s: ShardSnapshot): boolean {
    return s.healthy && !s.breakerOpen && Number.isFinite(s.weight) && s.weight > 0;
}

/** Sorted by shard id; the input itself when it already is (the usual case), else a sorted copy. */
function sortedById(shards: readonly ShardSnapshot[]): readonly ShardSnapshot[] {
    for (let i = 1; i < shards.length; i++) {
        if (shards[i - 1].shardId > shards[i].shardId) {
            return [...shards].sort((a, b) => a.shardId - b.shardId);
        }
    }
    return shards;
}

/** Negative when `a` is less loaded: (inFlight + 1) / weight, cross-multiplied. */
function compareLoad(a: ShardSnapshot, b: ShardSnapshot): number {
    return (a.inFlight + 1) * b.weight - (b.inFlight + 1) * a.weight;
}

function compareResource(a: ShardSnapshot, b: ShardSnapshot): number {
    const byUsage = clampUsage(a.resourceUsage) * b.weight - clampUsage(b.resourceUsage) * a.weight;
    return byUsage !== 0 ? byUsage : compareLoad(a, b);
}

/** Unknown usage counts as full, so a shard that stopped reporting is not favoured. */
function clampUsage(usage: number): number {
    return Number.isFinite(usage) ? Math.min(1, Math.max(0, usage)) : 1;
}

function compareCost(a: ShardSnapshot, b: ShardSnapshot): number {
    return peakEwmaCost(a) - peakEwmaCost(b);
}

/** Finagle's cost: ewma × (inFlight + 1); a busy shard with no sample yet costs the penalty. */
function peakEwmaCost(s: ShardSnapshot): number {
    const ewma = Number.isFinite(s.ewmaLatencyMs) && s.ewmaLatencyMs > 0 ? s.ewmaLatencyMs : 0;
    if (ewma === 0) return s.inFlight > 0 ? UNMEASURED_PENALTY_MS + s.inFlight : 0;
    return ewma * (s.inFlight + 1);
}

/** First minimum in id order, so ties go to the lowest shard id. `shards` is non-empty. */
function minBy(
    shards: readonly ShardSnapshot[],
    compare: (a: ShardSnapshot, b: ShardSnapshot) => number
): ShardSnapshot {
    let best = shards[0];
    for (let i = 1; i < shards.length; i++) {
        if (compare(shards[i], best) < 0) best = shards[i];
    }
    return best;
}

/** Two distinct uniformly drawn shards; the better one, the first draw on a tie. */
function betterOfTwo(
    shards: readonly ShardSnapshot[],
    request: BalanceRequest,
    compare: (a: ShardSnapshot, b: ShardSnapshot) => number
): ShardSnapshot {
    if (shards.length === 1) return shards[0];
    const i = uniformIndex(request.randomU32(), shards.length);
    let j = uniformIndex(request.randomU32(), shards.length - 1);
    if (j >= i) j += 1;
    return compare(shards[j], shards[i]) < 0 ? shards[j] : shards[i];
}

/** Maps a 32-bit draw onto [0, n) by multiplication, which keeps the high (best-mixed) bits. */
function uniformIndex(u32: number, n: number): number {
    return Math.floor(((u32 >>> 0) / 4294967296) * n);
}

function picked(shardId: number, state: BalancerState): ChooseResult {
    return { ok: true, shardId, state };
}

function noShard(reason: string): ChooseResult {
    return { ok: false, error: 'NoShardAvailable', reason };
}

function assertNever(value: never): never {
    throw new Error(`unreachable: ${String(value)}`);
}
