/**
 * The router's stable memory: configuration, the cached routing table, the balancer's shards and
 * bookkeeping, one circuit breaker per shard, and counters. Everything here survives upgrades;
 * memory ids are fixed forever (they cannot be reclaimed), so a new map takes a new id.
 *
 * The data path reads these on every call, so every value also lives in a heap copy: loaded from
 * stable memory on first use and written to both on every change (`CachedMap`), except the
 * per-call bookkeeping, which reaches stable memory at the next flush (`CachedMap.defer`,
 * `flushStores`: probe timer and `preUpgrade`). A trap rolls the heap back with stable memory and
 * an upgrade empties the heap after the flush, so the copies never drift. Values
 * use native JSON (`taggedJson`) rather than Azle's default codec, which costs millions of
 * instructions per value in the canister's JS engine.
 */
import { StableBTreeMap } from 'azle';

import type { AlgorithmName, WrrEntry } from '../shared/balancing';
import {
    decodeBreakerState,
    DEFAULT_BREAKER_CONFIG,
    encodeBreakerState,
    type BreakerState
} from '../shared/circuit_breaker';
import {
    DEFAULT_CACHE_TTL_MS,
    DEFAULT_PROBE_INTERVAL_S,
    MAX_BALANCER_SHARDS
} from '../shared/router_api';
import { taggedJson, u32Key, utf8Text } from '../shared/stable_keys';
import type { BalancerShard } from '../shared/router_plan';
import type { CircuitBreakerConfig, QueryStatistics, RoutingTable } from '../shared/types';

/** The router's configuration (principals as text). */
export interface RouterConfig {
    factory: string;
    admins: string[];
    writers: string[];
    probe_interval_s: number;
    cache_ttl_ms: number;
    breaker_config: CircuitBreakerConfig;
}

/** The balancer's memory between picks. */
export interface BalancerBook {
    algorithm: AlgorithmName;
    rr_last_shard_id: number;
    wrr: WrrEntry[];
    random_state: number;
}

/** Request counters of the balancer (what `get_load_balancer_stats` reports). */
export interface BalancerCounters {
    total_requests: bigint;
    failed_requests: bigint;
    rejected_by_breaker: bigint;
    breaker_transitions: bigint;
}

/** Per-shard request counters, kept apart from the balancer's shard so removal keeps history. */
export interface ShardCounters {
    requests: bigint;
    failures: bigint;
    transitions: bigint;
    last_transition_at_ms: number;
}

export const MEMORY = {
    meta: 0,
    breakers: 1,
    shards: 2,
    counters: 3
} as const;

/** Entries a `CachedMap` keeps in the heap; the router's maps hold at most a few hundred. */
const MAX_CACHED_ENTRIES = 4_096;

/**
 * A `StableBTreeMap` with a heap copy of the entries read or written. Values are treated as
 * immutable: callers replace them with `insert` or `defer`, never change them in place.
 *
 * `insert` writes through. `defer` (for the per-call bookkeeping: breaker windows, latency
 * averages, counters) changes only the heap copy and marks the key dirty; `flush` writes the dirty
 * entries to stable memory. The heap copy is what every read sees, so nothing reads a stale value.
 * What a deferred write risks: a trap rolls back heap and stable memory together (nothing lost);
 * an upgrade keeps it because `preUpgrade` flushes (`flushStores`); the probe timer flushes too, so
 * at most one probe interval of bookkeeping is lost when an upgrade skips `preUpgrade` (or it
 * traps) or the canister is reinstalled. Reads of stable memory in bulk (`len`, `values`,
 * `items`) flush first; dirty entries are bounded by the heap copy (MAX_CACHED_ENTRIES).
 */
export class CachedMap<K extends number | string, V> {
    private readonly memo = new Map<K, V | undefined>();
    private readonly dirty = new Set<K>();
    /** Whether the heap copy holds every entry (after `entries`), so bulk reads skip stable memory. */
    private complete = false;

    constructor(private readonly stable: StableBTreeMap<K, V>) {}

    get(key: K): V | undefined {
        if (this.memo.has(key)) return this.memo.get(key);
        const value = this.stable.get(key);
        this.remember(key, value);
        return value;
    }

    insert(key: K, value: V): void {
        this.stable.insert(key, value);
        this.dirty.delete(key);
        this.remember(key, value);
    }

    /** Sets `key` in the heap copy now and in stable memory at the next `flush`. */
    defer(key: K, value: V): void {
        this.remember(key, value);
        this.dirty.add(key);
    }

    remove(key: K): void {
        this.stable.remove(key);
        this.dirty.delete(key);
        this.remember(key, undefined);
    }

    /** Writes the deferred entries to stable memory. */
    flush(): void {
        for (const key of this.dirty) {
            const value = this.memo.get(key);
            if (value === undefined) this.stable.remove(key);
            else this.stable.insert(key, value);
        }
        this.dirty.clear();
    }

    len(): number {
        this.flush();
        return this.stable.len();
    }

    values(start: number, length: number): V[] {
        this.flush();
        return this.stable.values(start, length);
    }

    items(start: number, length: number): [K, V][] {
        this.flush();
        return this.stable.items(start, length);
    }

    /**
     * Every entry in key order (numeric for the `u32Key` maps), at most `max`: read from stable
     * memory once, then from the heap copy, which every write keeps in step. So the operators'
     * polls (`get_load_balancer_stats`, a query) neither flush nor read stable memory. A map with
     * `max` entries or more is read from stable memory each time (its heap copy is not known whole).
     */
    entries(max: number): [K, V][] {
        if (!this.complete) {
            const items = this.items(0, max);
            if (items.length >= max || this.memo.size + items.length >= MAX_CACHED_ENTRIES) {
                return items;
            }
            for (const [key, value] of items) this.memo.set(key, value);
            this.complete = true;
            return items;
        }
        const out: [K, V][] = [];
        for (const [key, value] of this.memo) if (value !== undefined) out.push([key, value]);
        return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    }

    private remember(key: K, value: V | undefined): void {
        if (!this.memo.has(key) && this.memo.size >= MAX_CACHED_ENTRIES) {
            this.flush();
            this.memo.clear();
            this.complete = false;
        }
        this.memo.set(key, value);
    }
}

const meta = new CachedMap(new StableBTreeMap<string, unknown>(MEMORY.meta, utf8Text, taggedJson));
/**
 * A breaker state in stable memory: its `encodeBreakerState` text in UTF-8 (the layout of every
 * version). The heap copy holds the decoded state, so a call neither decodes nor encodes JSON: the
 * text is written at the next flush. An entry that does not decode reads as null (a bug: only the
 * router writes this map); `breakerOf` then starts that breaker over.
 */
const breakerStateBytes = {
    toBytes(state: BreakerState | null): Uint8Array {
        if (state === null) throw new Error('router store: no breaker state to write');
        return utf8Text.toBytes(encodeBreakerState(state));
    },
    fromBytes(bytes: Uint8Array): BreakerState | null {
        const decoded = decodeBreakerState(utf8Text.fromBytes(bytes));
        return 'Ok' in decoded ? decoded.Ok : null;
    }
};

/** Shard id → its breaker's state. */
export const breakers = new CachedMap(
    new StableBTreeMap<number, BreakerState | null>(MEMORY.breakers, u32Key, breakerStateBytes)
);
export const shards = new CachedMap(
    new StableBTreeMap<number, BalancerShard>(MEMORY.shards, u32Key, taggedJson)
);
export const shardCounters = new CachedMap(
    new StableBTreeMap<number, ShardCounters>(MEMORY.counters, u32Key, taggedJson)
);

function getMeta<T>(key: string, fallback: T): T {
    const value = meta.get(key);
    return value === undefined ? fallback : (value as T);
}

function setMeta<T>(key: string, value: T): void {
    meta.insert(key, value);
}

/** Bookkeeping written on every call: in the heap now, in stable memory at the next flush. */
function deferMeta<T>(key: string, value: T): void {
    meta.defer(key, value);
}

/**
 * Writes every deferred value to stable memory: from `preUpgrade` and the probe timer (see
 * `CachedMap`). Update, timer and pre-upgrade context (a query's writes are discarded).
 */
export function flushStores(): void {
    meta.flush();
    breakers.flush();
    shards.flush();
    shardCounters.flush();
}

/** Loads what every call reads (init and post-upgrade), so queries never pay for the load. */
export function warmCaches(): void {
    getConfig();
    getRoutingTable();
    getBook();
    getCounters();
    getQueryCounters();
    shards.entries(MAX_BALANCER_SHARDS);
    shardCounters.entries(MAX_BALANCER_SHARDS);
}

export const DEFAULT_ROUTER_CONFIG: RouterConfig = {
    factory: '2vxsx-fae',
    admins: [],
    writers: [],
    probe_interval_s: DEFAULT_PROBE_INTERVAL_S,
    cache_ttl_ms: DEFAULT_CACHE_TTL_MS,
    breaker_config: { ...DEFAULT_BREAKER_CONFIG } as CircuitBreakerConfig
};

export function getConfig(): RouterConfig {
    return getMeta<RouterConfig>('config', DEFAULT_ROUTER_CONFIG);
}

export function setConfig(config: RouterConfig): void {
    setMeta('config', config);
}

/** The routing table last accepted (from a factory push or a refresh); null before the first. */
export function getRoutingTable(): RoutingTable | null {
    return getMeta<RoutingTable | null>('routing', null);
}

export function setRoutingTable(table: RoutingTable): void {
    setMeta('routing', table);
}

export function getBook(): BalancerBook {
    return getMeta<BalancerBook>('balancer', {
        algorithm: 'RoundRobin',
        rr_last_shard_id: -1,
        wrr: [],
        random_state: 1
    });
}

export function setBook(book: BalancerBook): void {
    setMeta('balancer', book);
}

export function getCounters(): BalancerCounters {
    return getMeta<BalancerCounters>('lb_counters', {
        total_requests: 0n,
        failed_requests: 0n,
        rejected_by_breaker: 0n,
        breaker_transitions: 0n
    });
}

/** Deferred (see `CachedMap`): the data path counts every call. */
export function setCounters(counters: BalancerCounters): void {
    deferMeta('lb_counters', counters);
}

/** Query statistics as stored: sums, from which the averages are derived. */
export interface QueryCounters {
    total_queries: bigint;
    fan_out_queries: bigint;
    shard_calls: bigint;
    partial_results: bigint;
    failed_shard_calls: bigint;
    fan_out_sum: bigint;
    latency_sum_ms: number;
    since: bigint;
}

/** Query counters at zero, counting from `since` (IC time). */
export function zeroQueryCounters(since: bigint): QueryCounters {
    return {
        total_queries: 0n,
        fan_out_queries: 0n,
        shard_calls: 0n,
        partial_results: 0n,
        failed_shard_calls: 0n,
        fan_out_sum: 0n,
        latency_sum_ms: 0,
        since
    };
}

export function getQueryCounters(): QueryCounters {
    return getMeta<QueryCounters>('query_counters', zeroQueryCounters(0n));
}

/** Deferred (see `CachedMap`): every fan-out counts. */
export function setQueryCounters(counters: QueryCounters): void {
    deferMeta('query_counters', counters);
}

export function queryStatistics(c: QueryCounters): QueryStatistics {
    const n = Number(c.total_queries);
    return {
        total_queries: c.total_queries,
        fan_out_queries: c.fan_out_queries,
        shard_calls: c.shard_calls,
        partial_results: c.partial_results,
        failed_shard_calls: c.failed_shard_calls,
        avg_fan_out: n === 0 ? 0 : Number(c.fan_out_sum) / n,
        avg_latency_ms: n === 0 ? 0 : c.latency_sum_ms / n,
        since: c.since
    };
}
