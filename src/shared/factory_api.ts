/**
 * The factory's own Candid types (beyond the domain types in `types.ts`), its default
 * configuration and the validation of that configuration. Pure: the factory canister and its
 * clients (tests, scripts) share these.
 */
import { bool, float64, Infer, nat32, nat64, opt, principal, record, text, vec } from './candid';
import type { FieldError } from './circuit_breaker';
import { DEFAULT_SCALING_CONFIG, validateScalingConfig } from './scaling_policy';
import type { ScalabilityConfig } from './types';

/** A migration's progress, as `get_migration` reports it. */
export const MigrationInfo = record({
    migration_id: text,
    /** Importing, Tracking, Copying, CatchingUp, Freezing, Draining, Flipping, Activating, Releasing, Verifying, Cleaning, Done or Failed. */
    phase: text,
    reason: text,
    spans_done: nat32,
    spans_total: nat32,
    slots_done: nat32,
    slots_total: nat32,
    loans_copied: nat64,
    loans_caught_up: nat64,
    loans_deleted: nat64,
    /** Source and target shard of every span, in order: (from, to) pairs without repeats. */
    moves: vec(record({ from: nat32, to: nat32, slots: nat32 })),
    started_at: nat64,
    updated_at: nat64,
    step_errors: nat32,
    /** A stop was requested: the migration ends after the span in progress. */
    stop_requested: bool,
    last_error: opt(text),
    failure: opt(text)
});
export type MigrationInfo = Infer<typeof MigrationInfo>;

/** One audit-log entry: who did what, when (ns since the epoch), with a human-readable detail. */
export const AuditEntry = record({
    seq: nat64,
    timestamp: nat64,
    caller: principal,
    action: text,
    detail: text
});
export type AuditEntry = Infer<typeof AuditEntry>;

/** A page of the audit log, newest first; pass `next_cursor` back for older entries. */
export const AuditPage = record({ entries: vec(AuditEntry), next_cursor: opt(nat64) });
export type AuditPage = Infer<typeof AuditPage>;

/** The system's figures, summed over the registry's latest view of every shard. */
export const ScalabilityMetrics = record({
    total_shards: nat32,
    active_shards: nat32,
    read_only_shards: nat32,
    total_loans: nat64,
    total_storage_used_bytes: nat64,
    avg_storage_percentage: float64,
    max_storage_percentage: float64,
    routing_epoch: nat64,
    migration_in_flight: opt(text),
    scale_outs: nat64,
    last_scaling_check: nat64,
    auto_scaling_enabled: bool,
    wasm_committed: bool
});
export type ScalabilityMetrics = Infer<typeof ScalabilityMetrics>;

/** Advice for one shard (`ScaleOutNow`, `ScaleOutSoon`, `Rebalance`, `None`). */
export const ScalingAdvice = record({
    shard_id: nat32,
    kind: text,
    reason: text,
    eta_ms: opt(nat64)
});
export type ScalingAdvice = Infer<typeof ScalingAdvice>;

/** The factory's init/upgrade argument: extra admins (controllers are always admins). */
export const FactoryInit = record({ admins: vec(principal) });
export type FactoryInit = Infer<typeof FactoryInit>;

/** Cycles given to a new shard: creation costs 500 B; the rest is the shard's balance. */
export const DEFAULT_SHARD_CREATION_CYCLES = 2_000_000_000_000n;

/**
 * The seed's defaults plus the factory's operating knobs: a 60 s scaling check, 96 GiB of
 * storage per shard, 2 T cycles per new shard, top-up of 1 T below 500 B.
 */
export const DEFAULT_FACTORY_CONFIG: ScalabilityConfig = {
    ...DEFAULT_SCALING_CONFIG,
    scaling_check_interval_ms: 60_000n,
    shard_storage_capacity_bytes: 96n * 1024n ** 3n,
    shard_creation_cycles: DEFAULT_SHARD_CREATION_CYCLES,
    min_shard_cycles: 500_000_000_000n,
    top_up_cycles: 1_000_000_000_000n
};

/** Bounds of the factory's own knobs. */
export const MIN_SCALING_CHECK_INTERVAL_MS = 1_000n;
export const MAX_SCALING_CHECK_INTERVAL_MS = 24n * 3_600_000n;
/** create_canister costs 500 B cycles; a shard needs some balance on top. */
export const MIN_SHARD_CREATION_CYCLES = 600_000_000_000n;
export const MAX_CYCLES_FIELD = 1_000_000_000_000_000n;
export const MIN_SHARD_STORAGE_CAPACITY_BYTES = 1_048_576n;
export const MAX_SHARD_STORAGE_CAPACITY_BYTES = 500n * 1024n ** 3n;

function inRange(
    errors: FieldError[],
    field: string,
    value: bigint,
    min: bigint,
    max: bigint
): void {
    if (value < min || value > max) {
        errors.push({ field, reason: `must be in [${min}, ${max}], got ${value}` });
    }
}

/**
 * Every invalid field of a ScalabilityConfig: the policy's own checks plus the factory's knobs.
 * An empty list means the config may be stored.
 *
 * @example validateFactoryConfig({ ...DEFAULT_FACTORY_CONFIG, max_shards: 0 }) // [{ field: 'max_shards', ... }]
 */
export function validateFactoryConfig(config: ScalabilityConfig): FieldError[] {
    const errors = validateScalingConfig(config);
    inRange(
        errors,
        'scaling_check_interval_ms',
        config.scaling_check_interval_ms,
        MIN_SCALING_CHECK_INTERVAL_MS,
        MAX_SCALING_CHECK_INTERVAL_MS
    );
    inRange(
        errors,
        'shard_storage_capacity_bytes',
        config.shard_storage_capacity_bytes,
        MIN_SHARD_STORAGE_CAPACITY_BYTES,
        MAX_SHARD_STORAGE_CAPACITY_BYTES
    );
    inRange(
        errors,
        'shard_creation_cycles',
        config.shard_creation_cycles,
        MIN_SHARD_CREATION_CYCLES,
        MAX_CYCLES_FIELD
    );
    inRange(errors, 'min_shard_cycles', config.min_shard_cycles, 0n, MAX_CYCLES_FIELD);
    inRange(errors, 'top_up_cycles', config.top_up_cycles, 0n, MAX_CYCLES_FIELD);
    return errors;
}
