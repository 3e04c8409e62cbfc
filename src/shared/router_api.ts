/**
 * The router's own Candid types (the shared domain types are in `types.ts`): its init argument and
 * the views it adds for operators and tests. Defined once here; the canister and its clients share
 * them.
 */
import { float64, Infer, int64, nat32, nat64, opt, principal, record, vec } from './candid';
import {
    CircuitBreakerConfig,
    LoadBalancingAlgorithm,
    ShardEndpoint,
    ShardRequestCount
} from './types';

/** Health probes run at most this often and at least this rarely. */
export const MIN_PROBE_INTERVAL_S = 1;
export const MAX_PROBE_INTERVAL_S = 3_600;
export const DEFAULT_PROBE_INTERVAL_S = 10;

/** Cached dashboards live at most this long (the cache is in the heap and lost on upgrade). */
export const DEFAULT_CACHE_TTL_MS = 30_000;
export const MAX_CACHE_TTL_MS = 3_600_000;
export const CACHE_MAX_ENTRIES = 10_000;
export const CACHE_MAX_BYTES = 64 * 1024 * 1024;

/** Bounded lists of principals the router keeps. */
export const MAX_ADMINS = 32;
export const MAX_WRITERS = 64;

/** Shards the balancer tracks (the factory's own bound). */
export const MAX_BALANCER_SHARDS = 1_000;

/** Retries of a write that hit a migration freeze, and the pause before each (in awaited rounds). */
export const MAX_READ_ONLY_RETRIES = 3;

/** Pages one dashboard reads per shard: at most this × MAX_PAGE_SIZE loans per shard. */
export const MAX_DASHBOARD_PAGES_PER_SHARD = 4;

/**
 * The router's init (and upgrade) argument. On upgrade every field given replaces the stored value;
 * state absent from the argument is kept.
 */
export const RouterInit = record({
    /** The factory: the only principal that may push routing tables; asked on `WrongShard`. */
    factory: principal,
    /** Admins besides the controllers. */
    admins: vec(principal),
    /** Applications allowed to write loans through the router. */
    writers: vec(principal),
    health_probe_interval_s: opt(nat32),
    cache_ttl_ms: opt(nat64),
    breaker_config: opt(CircuitBreakerConfig),
    /** Seed of the balancer's pseudo-random draws (two-choice algorithms); reproducible picks. */
    random_seed: opt(nat32)
});
export type RouterInit = Infer<typeof RouterInit>;

/** One shard as the balancer holds it: the endpoint plus the inputs of `ResourceBased`. */
export const BalancerShardView = record({
    endpoint: ShardEndpoint,
    resource_usage: float64,
    last_sample_at: nat64
});
export type BalancerShardView = Infer<typeof BalancerShardView>;

/** Smooth weighted round-robin bookkeeping of one shard. */
export const WrrCurrent = record({ shard_id: nat32, current: float64 });
export type WrrCurrent = Infer<typeof WrrCurrent>;

/**
 * Everything a pick depends on, so a client can replay `choose` from `src/shared/balancing.ts` and
 * get the same answer (`rr_last_shard_id` is -1 before the first round-robin pick).
 */
export const BalancerView = record({
    algorithm: LoadBalancingAlgorithm,
    rr_last_shard_id: int64,
    wrr: vec(WrrCurrent),
    random_state: nat32,
    shards: vec(BalancerShardView),
    per_shard: vec(ShardRequestCount)
});
export type BalancerView = Infer<typeof BalancerView>;
