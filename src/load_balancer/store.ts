/**
 * The router's stable memory: configuration, the cached routing table, the balancer's shards and
 * bookkeeping, one circuit breaker per shard, and counters. Everything here survives upgrades;
 * memory ids are fixed forever (they cannot be reclaimed), so a new map takes a new id.
 *
 * The data path reads these on every call, so every value also lives in a heap copy: loaded from
 * stable memory on first use and written to both on every change (`CachedMap`). A trap rolls the
 * heap back with stable memory and an upgrade empties the heap, so the copies never drift. Values
 * use native JSON (`taggedJson`) rather than Azle's default codec, which costs millions of
 * instructions per value in the canister's JS engine.
 */
import { StableBTreeMap } from 'azle';

import type { AlgorithmName, WrrEntry } from '../shared/balancing';
import { DEFAULT_BREAKER_CONFIG } from '../shared/circuit_breaker';
import { DEFAULT_CACHE_TTL_MS, DEFAULT_PROBE_INTERVAL_S } from '../shared/router_api';
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
 * immutable: callers replace them with `insert`, never change them in place.
 */
export class CachedMap<K extends number | string, V> {
    private readonly memo = new Map<K, V | undefined>();

    constructor(private readonly stable: StableBTreeMap<K, V>) {}

    get(key: K): V | undefined {
        if (this.memo.has(key)) return this.memo.get(key);
        const value = this.stable.get(key);
        this.remember(key, value);
        return value;
    }

    insert(key: K, value: V): void {
        this.stable.insert(key, value);
        this.remember(key, value);
    }

    remove(key: K): void {
        this.stable.remove(key);
        this.remember(key, undefined);
    }

    len(): number {
        return this.stable.len();
    }

    values(start: number, length: number): V[] {
        return this.stable.values(start, length);
    }

    items(start: number, length: number): [K, V][] {
        return this.stable.items(start, length);
    }

    private remember(key: K, value: V | undefined): void {
        if (!this.memo.has(key) && this.memo.size >= MAX_CACHED_ENTRIES) this.memo.clear();
        this.memo.set(key, value);
    }
}

const meta = new CachedMap(new StableBTreeMap<string, unknown>(MEMORY.meta, utf8Text, taggedJson));
/** Shard id → `encodeBreakerState` text. */
export const breakers = new CachedMap(
    new StableBTreeMap<number, string>(MEMORY.breakers, u32Key, utf8Text)
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

/** Loads what every call reads (init and post-upgrade), so queries never pay for the load. */
export function warmCaches(): void {
    getConfig();
    getRoutingTable();
    getBook();
    getCounters();
    getQueryCounters();
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

export function setCounters(counters: BalancerCounters): void {
    setMeta('lb_counters', counters);
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

export function setQueryCounters(counters: QueryCounters): void {
    setMeta('query_counters', counters);
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
