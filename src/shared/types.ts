/**
 * The domain's Candid types, defined once. Each `export const X` is the IDL type used by the
 * canisters' decorators and by clients; each `export type X` is its TypeScript type, derived from it.
 * Field names follow the seed (snake_case) so `dfx canister call` users see the documented names.
 */
import {
    blob,
    bool,
    empty,
    float64,
    Infer,
    nat,
    nat32,
    nat64,
    opt,
    principal,
    record,
    result,
    Tag,
    text,
    tuple,
    Typed,
    variant,
    vec
} from './candid';

// ---- Loan status and errors (DESIGN.md §8) ----------------------------------------------------

export const LoanStatus = variant({
    PendingApplication: empty,
    PendingApproval: empty,
    Approved: empty,
    Active: empty,
    Repaid: empty,
    Defaulted: empty
});
export type LoanStatus = Infer<typeof LoanStatus>;
export type LoanStatusName = Tag<LoanStatus>;
export const LOAN_STATUSES: readonly LoanStatusName[] = [
    'PendingApplication',
    'PendingApproval',
    'Approved',
    'Active',
    'Repaid',
    'Defaulted'
];

/** The one error type of every public method. */
export const ApiError = variant({
    NotAuthorized: empty,
    InvalidInput: record({ field: text, reason: text }),
    NotFound: record({ what: text, id: text }),
    /** The shard cannot be reached or its breaker is open; nothing was written. */
    ShardUnavailable: record({ shard_id: nat32, reason: text }),
    /** The slot is owned by another shard since `epoch`: refresh the routing table and retry. */
    WrongShard: record({ slot: nat32, epoch: nat64 }),
    /** The shard or slot does not take writes; `retriable` when it is a short migration freeze. */
    ReadOnly: record({ reason: text, retriable: bool }),
    CapacityExceeded: record({ resource: text, limit: nat64 }),
    InvalidTransition: record({ from: LoanStatus, action: text }),
    /** Another operation of the same kind is in flight (e.g. a scale-out); retry later. */
    Busy: record({ reason: text }),
    /** An inter-canister call was rejected (IC reject code and message). */
    CallFailed: record({ callee: principal, reject_code: nat32, message: text })
});
export type ApiError = Infer<typeof ApiError>;

/** `variant { Ok: T; Err: ApiError }`. */
export function Result<T>(ok: Typed<T, unknown>): Typed<{ Ok: T } | { Err: ApiError }> {
    return result(ok, ApiError);
}
export type Result<T> = { Ok: T } | { Err: ApiError };
export const UnitResult = Result(empty);
export type UnitResult = Result<null>;

// ---- Loans ------------------------------------------------------------------------------------

export const RepaymentRecord = record({ amount: nat64, timestamp: nat64 });
export type RepaymentRecord = Infer<typeof RepaymentRecord>;

export const Funding = record({ investor: principal, amount: nat64 });
export type Funding = Infer<typeof Funding>;

/**
 * A loan, compatible with Agrilends' loan record. Amounts are in the smallest unit (e8s / satoshi),
 * times in nanoseconds since the epoch (IC time), `apr` in basis points. `version` grows by one on
 * every change, so migration can copy by (id, version) and stay idempotent.
 */
export const Loan = record({
    id: nat64,
    borrower: principal,
    nft_id: nat64,
    collateral_value_btc: nat64,
    amount_requested: nat64,
    amount_approved: nat64,
    apr: nat64,
    status: LoanStatus,
    created_at: nat64,
    due_date: opt(nat64),
    total_repaid: nat64,
    repayment_history: vec(RepaymentRecord),
    last_payment_date: opt(nat64),
    funders: vec(Funding),
    updated_at: nat64,
    version: nat64
});
export type Loan = Infer<typeof Loan>;

export const NewLoan = record({
    borrower: principal,
    nft_id: nat64,
    collateral_value_btc: nat64,
    amount_requested: nat64,
    apr: nat64,
    due_date: opt(nat64)
});
export type NewLoan = Infer<typeof NewLoan>;

/** The typed transitions of a loan (see `src/shared/loan.ts` for which are legal from where). */
export const LoanUpdate = variant({
    SubmitForApproval: empty,
    Approve: record({ amount_approved: nat64 }),
    Fund: record({ investor: principal, amount: nat64 }),
    Activate: empty,
    Repay: record({ amount: nat64 }),
    MarkDefaulted: empty
});
export type LoanUpdate = Infer<typeof LoanUpdate>;

/** A page request: an opaque cursor from the previous page and a size (≤ MAX_PAGE_SIZE). */
export const Page = record({ cursor: opt(text), limit: opt(nat32) });
export type Page = Infer<typeof Page>;

/** One page of loans; `complete` is false when some shards did not answer (`failed_shards`). */
export const LoanPage = record({
    loans: vec(Loan),
    next_cursor: opt(text),
    complete: bool,
    failed_shards: vec(nat32)
});
export type LoanPage = Infer<typeof LoanPage>;

export const StatusCount = record({ status: LoanStatus, count: nat64 });
export type StatusCount = Infer<typeof StatusCount>;

// ---- Shards -----------------------------------------------------------------------------------

/**
 * A shard's own figures. `storage_used_bytes` counts the bytes of its stored loans and indexes (what
 * capacity planning needs); the canister's memory size comes from `canister_status`, which only a
 * controller (the factory) can read, so the factory fills `memory_size_bytes` in `ShardInfo`.
 */
export const ShardMetrics = record({
    loan_count: nat64,
    storage_used_bytes: nat64,
    storage_percentage: float64,
    message_count: nat64,
    error_count: nat64,
    avg_instructions_per_call: nat64,
    max_instructions_per_call: nat64,
    avg_response_time_ms: float64,
    owned_slots: nat32,
    is_read_only: bool,
    collected_at: nat64
});
export type ShardMetrics = Infer<typeof ShardMetrics>;

/** The seed's ShardInfo, plus the shard's region and slot count. */
export const ShardInfo = record({
    shard_id: nat32,
    canister_id: principal,
    created_at: nat64,
    loan_count: nat64,
    storage_used_bytes: nat64,
    storage_percentage: float64,
    is_active: bool,
    is_read_only: bool,
    region: text,
    slot_count: nat32,
    memory_size_bytes: nat64,
    cycles_balance: nat,
    performance_metrics: ShardMetrics
});
export type ShardInfo = Infer<typeof ShardInfo>;

/** A contiguous run of slots `[start, end]` (inclusive) owned by one shard. */
export const SlotRange = record({ start: nat32, end: nat32, shard_id: nat32 });
export type SlotRange = Infer<typeof SlotRange>;

export const ShardAddress = record({ shard_id: nat32, canister_id: principal, region: text });
export type ShardAddress = Infer<typeof ShardAddress>;

/** The routing table in compact form; `epoch` grows on every change. */
export const RoutingTable = record({
    epoch: nat64,
    ranges: vec(SlotRange),
    shards: vec(ShardAddress)
});
export type RoutingTable = Infer<typeof RoutingTable>;

// ---- Configuration ----------------------------------------------------------------------------

/** The seed's ScalabilityConfig plus the knobs auto-scaling needs to be safe (cooldown, hysteresis). */
export const ScalabilityConfig = record({
    max_storage_threshold: float64,
    max_loans_per_shard: nat64,
    auto_scaling_enabled: bool,
    rebalancing_enabled: bool,
    geographic_distribution: bool,
    performance_monitoring: bool,
    predictive_scaling: bool,
    max_avg_response_time_ms: float64,
    scale_out_cooldown_ms: nat64,
    hysteresis_percent: float64,
    consecutive_breaches_required: nat32,
    max_shards: nat32,
    scaling_check_interval_ms: nat64,
    shard_storage_capacity_bytes: nat64,
    shard_creation_cycles: nat,
    min_shard_cycles: nat,
    top_up_cycles: nat
});
export type ScalabilityConfig = Infer<typeof ScalabilityConfig>;

export const LoadBalancingAlgorithm = variant({
    RoundRobin: empty,
    WeightedRoundRobin: empty,
    LeastConnections: empty,
    ResourceBased: empty,
    ResponseTimeBased: empty,
    ConsistentHashing: empty,
    Geographic: empty,
    PowerOfTwoChoices: empty
});
export type LoadBalancingAlgorithm = Infer<typeof LoadBalancingAlgorithm>;

/** What a request is for: reads may go anywhere healthy; user-scoped ones to the user's shard. */
export const RequestType = variant({
    Read: empty,
    Write: empty,
    Analytics: empty,
    UserRead: principal,
    UserWrite: principal,
    Regional: text
});
export type RequestType = Infer<typeof RequestType>;

// ---- Circuit breakers -------------------------------------------------------------------------

export const CircuitBreakerState = variant({
    Closed: empty,
    Open: empty,
    HalfOpen: empty,
    ForcedOpen: empty,
    Disabled: empty,
    MetricsOnly: empty
});
export type CircuitBreakerState = Infer<typeof CircuitBreakerState>;

export const SlidingWindowType = variant({ CountBased: empty, TimeBased: empty });
export type SlidingWindowType = Infer<typeof SlidingWindowType>;

export const CircuitBreakerConfig = record({
    failure_rate_threshold_percent: float64,
    slow_call_rate_threshold_percent: float64,
    slow_call_duration_threshold_ms: nat64,
    sliding_window_type: SlidingWindowType,
    sliding_window_size: nat32,
    minimum_number_of_calls: nat32,
    wait_duration_in_open_ms: nat64,
    exponential_backoff_multiplier: float64,
    max_wait_duration_in_open_ms: nat64,
    permitted_calls_in_half_open: nat32,
    /** A half-open breaker whose probes never report back reopens after this (0: never). */
    max_wait_duration_in_half_open_ms: nat64
});
export type CircuitBreakerConfig = Infer<typeof CircuitBreakerConfig>;

/** One breaker's state and metrics as the router reports it. */
export const CircuitBreakerStats = record({
    shard_id: nat32,
    state: CircuitBreakerState,
    failure_rate_percent: float64,
    slow_call_rate_percent: float64,
    buffered_calls: nat32,
    failed_calls: nat32,
    slow_calls: nat32,
    not_permitted_calls: nat64,
    transitions: nat64,
    current_wait_ms: nat64,
    last_transition_at: nat64
});
export type CircuitBreakerStats = Infer<typeof CircuitBreakerStats>;

// ---- Balancing --------------------------------------------------------------------------------

/** A shard as the balancer sees it. */
export const ShardEndpoint = record({
    shard_id: nat32,
    canister_id: principal,
    region: text,
    weight: float64,
    is_healthy: bool,
    circuit_state: CircuitBreakerState,
    in_flight: nat32,
    avg_response_time_ms: float64
});
export type ShardEndpoint = Infer<typeof ShardEndpoint>;

export const ShardRequestCount = record({ shard_id: nat32, requests: nat64, failures: nat64 });
export type ShardRequestCount = Infer<typeof ShardRequestCount>;

export const LoadBalancerStats = record({
    algorithm: LoadBalancingAlgorithm,
    total_requests: nat64,
    failed_requests: nat64,
    rejected_by_breaker: nat64,
    breaker_transitions: nat64,
    per_shard: vec(ShardRequestCount),
    breakers: vec(CircuitBreakerStats),
    routing_epoch: nat64
});
export type LoadBalancerStats = Infer<typeof LoadBalancerStats>;

// ---- Dashboards and statistics ----------------------------------------------------------------

export const FarmerDashboard = record({
    farmer: principal,
    loans: vec(Loan),
    total_loans: nat64,
    active_loans: nat64,
    total_borrowed: nat64,
    total_repaid: nat64,
    outstanding_balance: nat64,
    by_status: vec(StatusCount),
    complete: bool,
    failed_shards: vec(nat32),
    generated_at: nat64
});
export type FarmerDashboard = Infer<typeof FarmerDashboard>;

export const InvestorDashboard = record({
    investor: principal,
    investments: vec(Loan),
    total_investments: nat64,
    active_investments: nat64,
    total_invested: nat64,
    total_repaid_on_funded_loans: nat64,
    by_status: vec(StatusCount),
    complete: bool,
    failed_shards: vec(nat32),
    generated_at: nat64
});
export type InvestorDashboard = Infer<typeof InvestorDashboard>;

export const ShardSummary = record({
    shard_id: nat32,
    loan_count: nat64,
    storage_percentage: float64,
    avg_response_time_ms: float64
});
export type ShardSummary = Infer<typeof ShardSummary>;

export const SystemAnalytics = record({
    total_loans: nat64,
    total_shards: nat32,
    healthy_shards: nat32,
    by_status: vec(StatusCount),
    total_requested: nat64,
    total_approved: nat64,
    total_repaid: nat64,
    shards: vec(ShardSummary),
    complete: bool,
    failed_shards: vec(nat32),
    generated_at: nat64
});
export type SystemAnalytics = Infer<typeof SystemAnalytics>;

export const QueryStatistics = record({
    total_queries: nat64,
    fan_out_queries: nat64,
    shard_calls: nat64,
    partial_results: nat64,
    failed_shard_calls: nat64,
    avg_fan_out: float64,
    avg_latency_ms: float64,
    since: nat64
});
export type QueryStatistics = Infer<typeof QueryStatistics>;

export const CacheStatistics = record({
    hits: nat64,
    misses: nat64,
    evictions: nat64,
    expirations: nat64,
    invalidations: nat64,
    entries: nat64,
    size_bytes: nat64,
    max_entries: nat64,
    max_size_bytes: nat64,
    hit_rate: float64
});
export type CacheStatistics = Infer<typeof CacheStatistics>;

// ---- Wasm upload ------------------------------------------------------------------------------

export const ChunkHash = record({ hash: blob });
export type ChunkHash = Infer<typeof ChunkHash>;

export const SlotCount = tuple(nat32, nat64);
export type SlotCount = Infer<typeof SlotCount>;
