/**
 * The pure part of the system benchmark: sums over the emulator's message trace and the targets
 * with their PASS/FAIL verdicts, as plain functions over plain data (tested in
 * tests/unit/bench_system.test.ts).
 */
import type { BenchRow } from '../core/types';

/** The IC's instruction limit of one query, for the whole call graph of a composite query. */
export const QUERY_BUDGET_INSTRUCTIONS = 5_000_000_000;
/** The router may add at most this fraction to a direct shard write's instructions. */
export const MAX_ROUTER_OVERHEAD_FRACTION = 0.5;
/** A dashboard cache hit may cost at most this fraction of a miss. */
export const MAX_CACHE_HIT_FRACTION = 0.1;

/** Azle's own published figures: the floor our per-operation instructions compare with. */
export const AZLE_FLOORS = {
    trivial_update_instructions: 1_200_000,
    stable_btreemap_insert_min_instructions: 2_000_000,
    stable_btreemap_insert_max_instructions: 10_000_000
} as const;

/** The fields of an emulator trace entry the figures read. */
export interface TracedMessage {
    canister: string;
    kind: string;
    caller: string;
    instructions: bigint;
}

/**
 * Instructions of the replicated and query executions in `entries` (`inspect` is left out: the
 * replica does not charge `canister_inspect_message`), optionally only those `where` accepts.
 */
export function sumInstructions(
    entries: readonly TracedMessage[],
    where: (e: TracedMessage) => boolean = () => true
): number {
    let total = 0n;
    for (const e of entries) if (e.kind !== 'inspect' && where(e)) total += e.instructions;
    return Number(total);
}

/** A routed call's instructions: the part executed on `routerId` and the part on the others. */
export function splitByCanister(
    entries: readonly TracedMessage[],
    routerId: string
): { router: number; others: number; total: number } {
    const router = sumInstructions(entries, (e) => e.canister === routerId);
    const others = sumInstructions(entries, (e) => e.canister !== routerId);
    return { router, others, total: router + others };
}

/** The mean of `values`, rounded to an integer (instruction counts are integers). */
export function meanOf(values: readonly number[]): number {
    if (values.length === 0) throw new Error('meanOf: no values');
    return Math.round(values.reduce((a, b) => a + b, 0) / values.length);
}

/** Router overhead of a write: `routed / direct − 1`; at most MAX_ROUTER_OVERHEAD_FRACTION. */
export function routerOverheadRow(routed: number, direct: number): BenchRow {
    if (!(direct > 0) || !(routed >= 0)) {
        throw new Error(`routerOverheadRow: bad instructions ${routed} / ${direct}`);
    }
    const value = routed / direct - 1;
    return {
        key: 'create_loan.router_overhead',
        value,
        unit: 'fraction',
        target: {
            text: `≤ ${MAX_ROUTER_OVERHEAD_FRACTION} (router + shard ≤ ${1 + MAX_ROUTER_OVERHEAD_FRACTION} × direct)`,
            pass: value <= MAX_ROUTER_OVERHEAD_FRACTION
        }
    };
}

/** A cache hit's instructions over a miss's; at most MAX_CACHE_HIT_FRACTION. */
export function cacheHitRow(hit: number, miss: number): BenchRow {
    if (!(miss > 0) || !(hit >= 0))
        throw new Error(`cacheHitRow: bad instructions ${hit} / ${miss}`);
    const value = hit / miss;
    return {
        key: 'farmer_dashboard.hit_over_miss',
        value,
        unit: 'fraction',
        target: { text: `≤ ${MAX_CACHE_HIT_FRACTION}`, pass: value <= MAX_CACHE_HIT_FRACTION }
    };
}

/** Rounds of one operation at one deployment size. */
export interface RoundsPoint {
    shards: number;
    rounds: number;
}

/**
 * Fan-out latency stays flat: the rounds at the widest deployment equal those at the narrowest.
 * The row's value is the rounds at the widest.
 */
export function flatRoundsRow(operation: string, points: readonly RoundsPoint[]): BenchRow {
    if (points.length < 2) throw new Error('flatRoundsRow: needs at least two deployment sizes');
    const sorted = [...points].sort((a, b) => a.shards - b.shards);
    const narrow = sorted[0];
    const wide = sorted[sorted.length - 1];
    return {
        key: `${operation}.rounds.flat_s${narrow.shards}_to_s${wide.shards}`,
        value: wide.rounds,
        unit: 'rounds',
        target: {
            text: `= rounds at ${narrow.shards} shard${narrow.shards === 1 ? '' : 's'} (${narrow.rounds})`,
            pass: wide.rounds === narrow.rounds
        }
    };
}

/** What the router's composite query did at one deployment size. */
export type CompositeOutcome =
    | { kind: 'answered'; instructions: number; complete: boolean }
    | { kind: 'refused'; resource: string; limit: number; instructions: number }
    | { kind: 'rejected'; message: string };

/** The update fan-out's answer at the same size (the fallback of a refused composite query). */
export interface UpdateOutcome {
    complete: boolean;
    instructions: number;
}

/**
 * The wide investor dashboard stays inside the 5 B query budget (the composite query answers
 * completely within it) or falls back: the composite query refuses with a typed
 * `CapacityExceeded` before fanning out and the update fan-out answers completely. A composite
 * query rejected by the system (over budget, trapped) fails.
 */
export function compositeBudgetRow(
    shards: number,
    composite: CompositeOutcome,
    update: UpdateOutcome
): { row: BenchRow; mode: string } {
    const key = `investor_dashboard.s${shards}.query_budget`;
    const budget = `${QUERY_BUDGET_INSTRUCTIONS / 1e9} B`;
    if (composite.kind === 'answered') {
        const inside = composite.instructions <= QUERY_BUDGET_INSTRUCTIONS;
        const pass = inside && composite.complete;
        const mode = `composite query answered (${composite.complete ? 'complete' : 'partial'}) with ${composite.instructions} instructions`;
        return {
            row: {
                key,
                value: composite.instructions,
                unit: 'instructions',
                target: { text: `inside the ${budget} query budget: ${mode}`, pass }
            },
            mode: pass ? 'inside_budget' : 'over_budget_or_partial'
        };
    }
    if (composite.kind === 'refused') {
        const mode =
            `falls back: the composite query refuses (${composite.resource} > ${composite.limit}) ` +
            `with ${composite.instructions} instructions; the update answered ` +
            `${update.complete ? 'complete' : 'PARTIAL'}`;
        return {
            row: {
                key,
                value: update.instructions,
                unit: 'instructions',
                target: { text: mode, pass: update.complete }
            },
            mode: 'falls_back_to_update'
        };
    }
    return {
        row: {
            key,
            value: 0,
            unit: 'instructions',
            target: { text: `composite query rejected: ${composite.message}`, pass: false }
        },
        mode: 'rejected'
    };
}

/**
 * A composite query's instructions at the fan-out cap, extrapolated linearly from two measured
 * widths (information: the cap's reason is that this stays under the 5 B budget).
 */
export function projectLinear(
    a: { shards: number; instructions: number },
    b: { shards: number; instructions: number },
    shards: number
): number {
    if (a.shards === b.shards) throw new Error('projectLinear: needs two different widths');
    const perShard = (b.instructions - a.instructions) / (b.shards - a.shards);
    return Math.round(b.instructions + perShard * (shards - b.shards));
}

/** The fields `breakdown` groups by. */
export interface TracedCall extends TracedMessage {
    method: string;
}

/**
 * Where the instructions of `entries` went: grouped by canister role (`roleOf`), kind and method,
 * largest first, at most `top` groups. E.g. `factory timer canister_global_timer: 12 msgs, 3.1 B`.
 */
export function breakdown(
    entries: readonly TracedCall[],
    roleOf: (canister: string) => string,
    top: number
): { what: string; messages: number; instructions: number }[] {
    const groups = new Map<string, { messages: number; instructions: bigint }>();
    for (const e of entries) {
        if (e.kind === 'inspect') continue;
        const what = `${roleOf(e.canister)} ${e.kind} ${e.method}`;
        const g = groups.get(what) ?? { messages: 0, instructions: 0n };
        g.messages += 1;
        g.instructions += e.instructions;
        groups.set(what, g);
    }
    return [...groups.entries()]
        .map(([what, g]) => ({ what, messages: g.messages, instructions: Number(g.instructions) }))
        .sort((a, b) => b.instructions - a.instructions || a.what.localeCompare(b.what))
        .slice(0, Math.max(0, top));
}
