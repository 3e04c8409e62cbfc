/**
 * Auto-scaling policy: when should the factory add a shard?
 *
 * Pure and deterministic, as the rest of `src/shared`: the factory's timer gathers `ShardLoad`s,
 * calls `decideScaling` with the state it kept from the previous round and `now_ms`, stores the
 * returned state, writes the reasons to the audit log and, on `ScaleOut`, creates a shard. When the
 * scale-out has finished (or failed) it calls `finishScaleOut`.
 *
 * @example
 * const d = decideScaling({ shards, config, state, now_ms });
 * state = d.state;
 * if (d.action === 'ScaleOut') startScaleOut(d.reasons);
 */
import type { FieldError } from './circuit_breaker';
import { MAX_SHARDS } from './limits';

/** Largest accepted `max_loans_per_shard`; keeps `80%` of it exact in float arithmetic. */
export const MAX_LOANS_PER_SHARD_LIMIT = 1_000_000_000_000;
/** Largest accepted `scale_out_cooldown_ms` and `max_avg_response_time_ms` (30 days). */
export const MAX_SCALING_DURATION_MS = 30 * 24 * 60 * 60 * 1000;
/** Largest accepted `consecutive_breaches_required`. */
export const MAX_CONSECUTIVE_BREACHES = 1_000;
/** Largest accepted `hysteresis_percent`: a wider band would never clear. */
export const MAX_HYSTERESIS_PERCENT = 50;
/** Trend estimates use at most this many of the newest samples. */
export const MAX_TREND_SAMPLES = 256;
/** Fewer samples than this give no trend. */
export const MIN_TREND_SAMPLES = 3;
/** An estimate further out than this (one year) counts as flat. */
export const MAX_TREND_ETA_MS = 365 * 24 * 60 * 60 * 1000;
/** The loan trigger fires above this share of `max_loans_per_shard` (the seed's 80%). */
export const LOAN_TRIGGER_PERCENT = 80;
/** `decideScaling` lists at most this many reasons; the rest are summarised in one line. */
export const MAX_SCALING_REASONS = 64;

/**
 * The fields of the Candid `ScalabilityConfig` the policy reads (that record may hold more).
 * Integer fields accept `number` or `bigint` (Candid nat64 decodes to bigint).
 */
export interface ScalingConfig {
    /** Storage use, in percent, above which a shard triggers. */
    max_storage_threshold: number;
    /** A shard triggers above 80% of this many loans. */
    max_loans_per_shard: number | bigint;
    auto_scaling_enabled: boolean;
    /** Lets `scalingRecommendations` suggest `Rebalance`. */
    rebalancing_enabled: boolean;
    geographic_distribution: boolean;
    performance_monitoring: boolean;
    /** Lets `scalingRecommendations` suggest `ScaleOutSoon` from trends. */
    predictive_scaling: boolean;
    /** A shard triggers when its average response time is above this (the seed's 1000 ms). */
    max_avg_response_time_ms: number | bigint;
    /** No new scale-out this long after the last one started or finished. */
    scale_out_cooldown_ms: number | bigint;
    /** A triggered shard clears only at or below threshold × (1 − hysteresis_percent / 100). */
    hysteresis_percent: number;
    /** Evaluations in a row over a threshold before a shard triggers. */
    consecutive_breaches_required: number | bigint;
    /** Never scale out to more shards than this. */
    max_shards: number | bigint;
}

/**
 * The seed's defaults (80% storage, 100,000 loans, 1000 ms) plus a 10-minute cooldown, a 10% band,
 * 3 evaluations in a row and 100 shards; nat64 fields as bigint, as Candid decodes them.
 */
export const DEFAULT_SCALING_CONFIG = Object.freeze({
    max_storage_threshold: 80,
    max_loans_per_shard: 100_000n,
    auto_scaling_enabled: true,
    rebalancing_enabled: true,
    geographic_distribution: false,
    performance_monitoring: true,
    predictive_scaling: true,
    max_avg_response_time_ms: 1_000,
    scale_out_cooldown_ms: 600_000n,
    hysteresis_percent: 10,
    consecutive_breaches_required: 3,
    max_shards: 100
} satisfies ScalingConfig);

/** One shard's load, as the factory measured it in this round. */
export interface ShardLoad {
    shard_id: number;
    loan_count: number | bigint;
    storage_percentage: number;
    avg_response_time_ms: number;
    /** Read-only shards (draining, full) never trigger a scale-out. */
    is_read_only: boolean;
}

/** Per-shard memory between evaluations. */
export interface ShardStreak {
    shard_id: number;
    /** Evaluations in a row the shard was breaching (capped). */
    consecutive_breaches: number;
    /** Reached the required streak; stays set until the shard clears the hysteresis band. */
    triggered: boolean;
}

/** What the policy remembers between rounds; plain data, keep it in stable memory. */
export interface ScalingState {
    in_flight: boolean;
    /** When the scale-out in flight started; 0 when none. */
    in_flight_since_ms: number;
    /** No scale-out before this time. */
    cooldown_until_ms: number;
    /** One entry per shard seen in the last evaluation, ascending by shard id. */
    streaks: ShardStreak[];
}

/** Input of `decideScaling`. */
export interface ScalingDecisionInput {
    shards: readonly ShardLoad[];
    config: ScalingConfig;
    state: ScalingState;
    now_ms: number;
}

/** Output of `decideScaling`; `reasons` are human readable, for the audit log. */
export interface ScalingDecision {
    action: 'None' | 'ScaleOut';
    reasons: string[];
    /** Shards that trigger now, ascending, whether or not a gate held the scale-out back. */
    triggering_shard_ids: number[];
    state: ScalingState;
}

/** One observation of a metric. */
export interface TrendSample {
    at_ms: number;
    value: number;
}

/** One historical load snapshot of a shard. */
export interface ShardSample {
    at_ms: number;
    loan_count: number | bigint;
    storage_percentage: number;
}

/** A shard's recent history, oldest or newest first (it is sorted before use). */
export interface ShardTrend {
    shard_id: number;
    samples: readonly ShardSample[];
}

export type RecommendationKind = 'ScaleOutNow' | 'ScaleOutSoon' | 'Rebalance' | 'None';

/** Advice for one shard; `eta_ms` (from now) only for `ScaleOutSoon`. */
export interface ScalingRecommendation {
    shard_id: number;
    kind: RecommendationKind;
    reason: string;
    eta_ms?: number;
}

/** Input of `scalingRecommendations`. */
export interface RecommendationInput {
    shards: readonly ShardLoad[];
    config: ScalingConfig;
    trends?: readonly ShardTrend[];
    now_ms: number;
    /** `ScaleOutSoon` when a threshold is expected within this; default one day. */
    horizon_ms?: number;
    /** `Rebalance` when a shard holds more than this × the mean loan count; default 1.25. */
    imbalance_ratio?: number;
}

/** Default look-ahead of `scalingRecommendations`. */
export const DEFAULT_PREDICTION_HORIZON_MS = 24 * 60 * 60 * 1000;
/** Default imbalance that makes `scalingRecommendations` suggest `Rebalance`. */
export const DEFAULT_IMBALANCE_RATIO = 1.25;

/** A streak never counts past this, so the state stays small and exact. */
const MAX_STREAK = 1_000_000;

interface Limits {
    storage_percent: number;
    loans: number;
    response_ms: number;
    clear_factor: number;
}

function toNumber(value: number | bigint): number {
    if (typeof value === 'number') return value;
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : NaN;
}

function finiteOr(value: number, fallback: number): number {
    return Number.isFinite(value) ? value : fallback;
}

function limitsOf(config: ScalingConfig): Limits {
    const maxLoans = toNumber(config.max_loans_per_shard);
    return {
        storage_percent: config.max_storage_threshold,
        // Integer arithmetic as the seed's `max_loans_per_shard * 80 / 100` on u64.
        loans: Math.floor((maxLoans * LOAN_TRIGGER_PERCENT) / 100),
        response_ms: toNumber(config.max_avg_response_time_ms),
        clear_factor: 1 - finiteOr(config.hysteresis_percent, 0) / 100
    };
}

interface Measured {
    loans: number;
    storage_percent: number;
    response_ms: number;
}

/** Unmeasurable values (NaN, ∞) read as 0: they neither trigger nor hold a shard triggered. */
function measure(shard: ShardLoad): Measured {
    const loans = toNumber(shard.loan_count);
    return {
        loans: Number.isFinite(loans) ? loans : Number.MAX_SAFE_INTEGER,
        storage_percent: finiteOr(shard.storage_percentage, 0),
        response_ms: finiteOr(shard.avg_response_time_ms, 0)
    };
}

function round1(value: number): number {
    return Math.round(value * 10) / 10;
}

/** Human-readable breaches of the seed's three triggers; empty when none fires. */
function breachesOf(m: Measured, limits: Limits): string[] {
    const out: string[] = [];
    if (m.storage_percent > limits.storage_percent) {
        out.push(`storage ${round1(m.storage_percent)}% > ${limits.storage_percent}%`);
    }
    if (m.loans > limits.loans) {
        out.push(
            `loan_count ${m.loans} > ${LOAN_TRIGGER_PERCENT}% of max_loans_per_shard (${limits.loans})`
        );
    }
    if (m.response_ms > limits.response_ms) {
        out.push(`avg response ${round1(m.response_ms)} ms > ${limits.response_ms} ms`);
    }
    return out;
}

/** At or below every threshold minus the hysteresis band. */
function isCleared(m: Measured, limits: Limits): boolean {
    const f = limits.clear_factor;
    return (
        m.storage_percent <= limits.storage_percent * f &&
        m.loans <= limits.loans * f &&
        m.response_ms <= limits.response_ms * f
    );
}

/**
 * The seed's `should_trigger_scaling`: storage over `max_storage_threshold`, loans over 80% of
 * `max_loans_per_shard`, or average response over `max_avg_response_time_ms`. Read-only shards
 * never trigger.
 *
 * @example
 * shouldTriggerScaling({ ...load, loan_count: 80_001 }, DEFAULT_SCALING_CONFIG) // true
 */
export function shouldTriggerScaling(shard: ShardLoad, config: ScalingConfig): boolean {
    return !shard.is_read_only && breachesOf(measure(shard), limitsOf(config)).length > 0;
}

/**
 * Which triggers a shard breaches, in words (for audit logs); empty when none.
 *
 * @example
 * describeBreaches({ ...load, storage_percentage: 91 }, DEFAULT_SCALING_CONFIG) // ['storage 91% > 80%']
 */
export function describeBreaches(shard: ShardLoad, config: ScalingConfig): string[] {
    return breachesOf(measure(shard), limitsOf(config));
}

function checkRange(
    errors: FieldError[],
    field: string,
    raw: unknown,
    min: number,
    max: number,
    integer: boolean
): void {
    const value = typeof raw === 'bigint' ? toNumber(raw) : raw;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
        errors.push({ field, reason: 'must be a finite number' });
    } else if (integer && !Number.isSafeInteger(value)) {
        errors.push({ field, reason: 'must be an integer' });
    } else if (value < min || value > max) {
        errors.push({ field, reason: `must be in [${min}, ${max}], got ${value}` });
    }
}

/**
 * Checks types and ranges of the policy's fields; an empty list means valid. NaN is rejected.
 *
 * @example
 * validateScalingConfig({ ...DEFAULT_SCALING_CONFIG, max_shards: 0 })
 * // [{ field: 'max_shards', reason: 'must be in [1, 1000], got 0' }]
 */
export function validateScalingConfig(config: ScalingConfig): FieldError[] {
    const errors: FieldError[] = [];
    const c = config as unknown as Record<string, unknown>;
    const threshold = c.max_storage_threshold;
    if (typeof threshold === 'number' && threshold <= 0) {
        errors.push({ field: 'max_storage_threshold', reason: 'must be above 0' });
    } else {
        checkRange(errors, 'max_storage_threshold', threshold, 0, 100, false);
    }
    const maxLoans = MAX_LOANS_PER_SHARD_LIMIT;
    checkRange(errors, 'max_loans_per_shard', c.max_loans_per_shard, 1, maxLoans, true);
    const responseMax = MAX_SCALING_DURATION_MS;
    checkRange(
        errors,
        'max_avg_response_time_ms',
        c.max_avg_response_time_ms,
        1,
        responseMax,
        false
    );
    checkRange(errors, 'scale_out_cooldown_ms', c.scale_out_cooldown_ms, 0, responseMax, true);
    const band = MAX_HYSTERESIS_PERCENT;
    checkRange(errors, 'hysteresis_percent', c.hysteresis_percent, 0, band, false);
    const k = c.consecutive_breaches_required;
    checkRange(errors, 'consecutive_breaches_required', k, 1, MAX_CONSECUTIVE_BREACHES, true);
    checkRange(errors, 'max_shards', c.max_shards, 1, MAX_SHARDS, true);
    const flags = [
        'auto_scaling_enabled',
        'rebalancing_enabled',
        'geographic_distribution',
        'performance_monitoring',
        'predictive_scaling'
    ];
    for (const flag of flags) {
        if (typeof c[flag] !== 'boolean') errors.push({ field: flag, reason: 'must be a boolean' });
    }
    return errors;
}

/**
 * The state before the first evaluation: nothing in flight, no cooldown, no streaks.
 *
 * @example
 * decideScaling({ shards, config, state: initialScalingState(), now_ms })
 */
export function initialScalingState(): ScalingState {
    return { in_flight: false, in_flight_since_ms: 0, cooldown_until_ms: 0, streaks: [] };
}

/**
 * Marks the scale-out in flight as over (whether it succeeded or not) and starts the cooldown from
 * now, so a slow shard creation still gets a full cooldown afterwards.
 *
 * @example
 * state = finishScaleOut(state, config, now_ms);
 */
export function finishScaleOut(
    state: ScalingState,
    config: ScalingConfig,
    now_ms: number
): ScalingState {
    const cooldown_ms = toNumber(config.scale_out_cooldown_ms);
    return {
        in_flight: false,
        in_flight_since_ms: 0,
        cooldown_until_ms: Math.max(state.cooldown_until_ms, now_ms + finiteOr(cooldown_ms, 0)),
        streaks: state.streaks.map((s) => ({ ...s }))
    };
}

/** First occurrence of each shard id, ascending, at most `MAX_SHARDS` of them. */
function distinctShards(shards: readonly ShardLoad[]): ShardLoad[] {
    const seen = new Set<number>();
    const out: ShardLoad[] = [];
    for (const shard of shards) {
        if (out.length >= MAX_SHARDS) break;
        if (seen.has(shard.shard_id)) continue;
        seen.add(shard.shard_id);
        out.push(shard);
    }
    return out.sort((a, b) => a.shard_id - b.shard_id);
}

function pushReason(reasons: string[], reason: string): void {
    if (reasons.length < MAX_SCALING_REASONS) reasons.push(reason);
}

/**
 * One evaluation of the auto-scaling policy. A shard triggers after `consecutive_breaches_required`
 * evaluations in a row over a seed threshold and stays triggered until it falls to or below the
 * threshold minus `hysteresis_percent`. The decision is `ScaleOut` only if some shard triggers,
 * auto-scaling is enabled, no scale-out is in flight, the cooldown has passed and fewer than
 * `max_shards` shards exist; every gate that held it back is named in `reasons`.
 *
 * @example
 * const d = decideScaling({ shards, config, state, now_ms });
 * d.action // 'ScaleOut'
 * d.reasons // ['shard 3 triggers: loan_count 85000 > 80% of max_loans_per_shard (80000) …', …]
 */
export function decideScaling(input: ScalingDecisionInput): ScalingDecision {
    const { config, state, now_ms } = input;
    const limits = limitsOf(config);
    const required = Math.max(1, finiteOr(toNumber(config.consecutive_breaches_required), 1));
    const previous = new Map<number, ShardStreak>();
    for (const s of state.streaks) previous.set(s.shard_id, s);

    const shards = distinctShards(input.shards);
    const reasons: string[] = [];
    const streaks: ShardStreak[] = [];
    const triggering: number[] = [];
    if (input.shards.length > shards.length) {
        const dropped = input.shards.length - shards.length;
        pushReason(reasons, `${dropped} duplicate or excess shard entries ignored`);
    }
    for (const shard of shards) {
        const id = shard.shard_id;
        const prev = previous.get(id);
        if (shard.is_read_only) {
            streaks.push({ shard_id: id, consecutive_breaches: 0, triggered: false });
            continue;
        }
        const m = measure(shard);
        const breaches = breachesOf(m, limits);
        const wasTriggered = prev?.triggered ?? false;
        const breaching = wasTriggered ? !isCleared(m, limits) : breaches.length > 0;
        const consecutive = breaching
            ? Math.min(MAX_STREAK, (prev?.consecutive_breaches ?? 0) + 1)
            : 0;
        const triggered = breaching && (wasTriggered || consecutive >= required);
        streaks.push({ shard_id: id, consecutive_breaches: consecutive, triggered });
        const what =
            breaches.length > 0
                ? breaches.join('; ')
                : `not yet ${config.hysteresis_percent}% below its thresholds`;
        if (triggered) {
            triggering.push(id);
            pushReason(reasons, `shard ${id} triggers: ${what} (${consecutive} in a row)`);
        } else if (breaching) {
            const streak = `${consecutive} of ${required} evaluations in a row`;
            pushReason(reasons, `shard ${id} over threshold: ${what} (${streak})`);
        } else if (wasTriggered) {
            const band = `${config.hysteresis_percent}%`;
            pushReason(reasons, `shard ${id} cleared: at least ${band} below every threshold`);
        }
    }

    const next: ScalingState = {
        in_flight: state.in_flight,
        in_flight_since_ms: state.in_flight_since_ms,
        cooldown_until_ms: state.cooldown_until_ms,
        streaks
    };
    const held = (why: string): ScalingDecision => {
        pushReason(reasons, why);
        return { action: 'None', reasons, triggering_shard_ids: triggering, state: next };
    };
    if (triggering.length === 0) return held('no shard triggers a scale-out');
    const maxShards = toNumber(config.max_shards);
    if (!config.auto_scaling_enabled) return held('scale-out held: auto-scaling is disabled');
    if (state.in_flight) {
        return held(`scale-out held: one is in flight since ${state.in_flight_since_ms} ms`);
    }
    if (now_ms < state.cooldown_until_ms) {
        const left_ms = state.cooldown_until_ms - now_ms;
        return held(`scale-out held: cooldown for another ${left_ms} ms`);
    }
    if (!(shards.length < maxShards)) {
        return held(`scale-out held: ${shards.length} shards, max_shards is ${maxShards}`);
    }
    next.in_flight = true;
    next.in_flight_since_ms = now_ms;
    next.cooldown_until_ms = now_ms + finiteOr(toNumber(config.scale_out_cooldown_ms), 0);
    pushReason(reasons, `scale out: shard(s) ${triggering.join(', ')} trigger`);
    return { action: 'ScaleOut', reasons, triggering_shard_ids: triggering, state: next };
}

/**
 * Least-squares trend of `samples` (the newest `MAX_TREND_SAMPLES`): milliseconds after the newest
 * sample until the fitted line reaches `threshold`; 0 if the newest value is already there; null
 * when there are fewer than `MIN_TREND_SAMPLES` usable samples, the trend is flat or falling, or
 * the estimate lies beyond `MAX_TREND_ETA_MS`.
 *
 * @example
 * estimateTimeToThreshold([{ at_ms: 0, value: 10 }, { at_ms: 1000, value: 20 }, { at_ms: 2000, value: 30 }], 50)
 * // 2000
 */
export function estimateTimeToThreshold(
    samples: readonly TrendSample[],
    threshold: number
): number | null {
    if (!Number.isFinite(threshold)) return null;
    const usable = samples
        .filter((s) => Number.isFinite(s.at_ms) && Number.isFinite(s.value))
        .sort((a, b) => a.at_ms - b.at_ms)
        .slice(-MAX_TREND_SAMPLES);
    if (usable.length < MIN_TREND_SAMPLES) return null;
    const newest = usable[usable.length - 1];
    if (newest.value >= threshold) return 0;
    // Offsets from the first sample keep the sums small and exact-ish; constant values give
    // an exactly zero numerator.
    const t0 = usable[0].at_ms;
    const v0 = usable[0].value;
    let meanX = 0;
    for (const s of usable) meanX += s.at_ms - t0;
    meanX /= usable.length;
    let num = 0;
    let den = 0;
    let meanY = 0;
    for (const s of usable) meanY += s.value - v0;
    meanY /= usable.length;
    for (const s of usable) {
        const dx = s.at_ms - t0 - meanX;
        num += dx * (s.value - v0);
        den += dx * dx;
    }
    if (den === 0) return null;
    const slope = num / den;
    if (!(slope > 0)) return null;
    const fittedNewest = v0 + meanY + slope * (newest.at_ms - t0 - meanX);
    const eta_ms = Math.max(0, Math.ceil((threshold - fittedNewest) / slope));
    return eta_ms > MAX_TREND_ETA_MS ? null : eta_ms;
}

function trendEta(
    trend: ShardTrend | undefined,
    limits: Limits,
    now_ms: number
): { eta_ms: number; metric: string } | null {
    if (trend === undefined || trend.samples.length === 0) return null;
    const samples = trend.samples.slice(-MAX_TREND_SAMPLES * 4);
    let newest_ms = -Infinity;
    for (const s of samples) newest_ms = Math.max(newest_ms, s.at_ms);
    const candidates: { eta_ms: number; metric: string }[] = [];
    const storage = samples.map((s) => ({ at_ms: s.at_ms, value: s.storage_percentage }));
    const storageEta = estimateTimeToThreshold(storage, limits.storage_percent);
    if (storageEta !== null) candidates.push({ eta_ms: storageEta, metric: 'storage' });
    const loans = samples.map((s) => ({ at_ms: s.at_ms, value: toNumber(s.loan_count) }));
    const loansEta = estimateTimeToThreshold(loans, limits.loans);
    if (loansEta !== null) candidates.push({ eta_ms: loansEta, metric: 'loan_count' });
    if (candidates.length === 0) return null;
    candidates.sort((a, b) => a.eta_ms - b.eta_ms);
    const best = candidates[0];
    return { eta_ms: Math.max(0, newest_ms + best.eta_ms - now_ms), metric: best.metric };
}

/**
 * Advice per shard, ascending by shard id, for `get_scaling_recommendations`: `ScaleOutNow` when a
 * seed trigger fires, `ScaleOutSoon` (with `eta_ms`) when `predictive_scaling` is on and a trend
 * reaches a threshold within the horizon, `Rebalance` when `rebalancing_enabled` and the shard holds
 * far more loans than the mean, else `None`.
 *
 * @example
 * scalingRecommendations({ shards, config, trends, now_ms })
 * // [{ shard_id: 1, kind: 'ScaleOutSoon', reason: 'loan_count reaches 80000 in ~3 h', eta_ms: 10_800_000 }]
 */
export function scalingRecommendations(input: RecommendationInput): ScalingRecommendation[] {
    const { config, now_ms } = input;
    const limits = limitsOf(config);
    const horizon_ms = finiteOr(input.horizon_ms ?? DEFAULT_PREDICTION_HORIZON_MS, 0);
    const ratio = finiteOr(
        input.imbalance_ratio ?? DEFAULT_IMBALANCE_RATIO,
        DEFAULT_IMBALANCE_RATIO
    );
    const shards = distinctShards(input.shards);
    const trends = new Map<number, ShardTrend>();
    for (const t of (input.trends ?? []).slice(0, MAX_SHARDS)) {
        if (!trends.has(t.shard_id)) trends.set(t.shard_id, t);
    }
    const writable = shards.filter((s) => !s.is_read_only);
    let total = 0;
    for (const s of writable) total += measure(s).loans;
    const mean = writable.length > 0 ? total / writable.length : 0;
    const atCap = shards.length >= toNumber(config.max_shards);

    return shards.map((shard): ScalingRecommendation => {
        const id = shard.shard_id;
        if (shard.is_read_only) return { shard_id: id, kind: 'None', reason: 'read-only shard' };
        const m = measure(shard);
        const breaches = breachesOf(m, limits);
        if (breaches.length > 0) {
            const cap = atCap ? ` (max_shards ${toNumber(config.max_shards)} reached)` : '';
            return { shard_id: id, kind: 'ScaleOutNow', reason: breaches.join('; ') + cap };
        }
        if (config.predictive_scaling) {
            const eta = trendEta(trends.get(id), limits, now_ms);
            if (eta !== null && eta.eta_ms <= horizon_ms) {
                const minutes = Math.round(eta.eta_ms / 60_000);
                const reason = `${eta.metric} trend reaches its threshold in ~${minutes} min`;
                return { shard_id: id, kind: 'ScaleOutSoon', reason, eta_ms: eta.eta_ms };
            }
        }
        if (config.rebalancing_enabled && writable.length >= 2 && m.loans > mean * ratio) {
            const times = round1(m.loans / mean);
            const reason = `loan_count ${m.loans} is ${times}× the mean ${round1(mean)}`;
            return { shard_id: id, kind: 'Rebalance', reason };
        }
        return { shard_id: id, kind: 'None', reason: 'within limits' };
    });
}

/** A shard as `scaleOutRegion` sees it: where it is and how full it is. */
export interface PlacedShard {
    region: string;
    loan_count: number | bigint;
    is_active: boolean;
}

/**
 * The region of a new shard made by an automatic scale-out ('' = the factory's subnet).
 * With `geographic_distribution`, the mapped region holding the fewest active shards (ties: the
 * first in `mapped` order), so shards spread over regions. Otherwise the region of the fullest
 * active shard: the new shard takes slots from the fullest shards, so their loans stay in their
 * region. A region that is not mapped to a subnet while others are is never chosen (the factory
 * would refuse it), and labels without any mapping stay labels on the factory's subnet.
 */
export function scaleOutRegion(
    shards: readonly PlacedShard[],
    mapped: readonly string[],
    geographicDistribution: boolean
): string {
    const active = shards.filter((s) => s.is_active);
    if (geographicDistribution && mapped.length > 0) {
        let best = mapped[0];
        let fewest = Infinity;
        for (const region of mapped) {
            const n = active.filter((s) => s.region === region).length;
            if (n < fewest) {
                fewest = n;
                best = region;
            }
        }
        return best;
    }
    let fullest: PlacedShard | undefined;
    for (const s of active) {
        if (fullest === undefined || BigInt(s.loan_count) > BigInt(fullest.loan_count)) fullest = s;
    }
    if (fullest === undefined || fullest.region === 'default') return '';
    if (mapped.length > 0 && !mapped.includes(fullest.region)) return '';
    return fullest.region;
}
