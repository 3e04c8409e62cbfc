/**
 * Circuit-breaker state machine, modelled on resilience4j.
 *
 * Pure and deterministic: the state is plain data (numbers, strings, arrays), time is a parameter and
 * every function returns a new state instead of mutating its input, so the router can keep one state
 * per shard in a `StableBTreeMap` (via `encodeBreakerState`) and unit tests can drive it directly.
 *
 * @example
 * let s = initialBreakerState(now_ms);
 * const acquired = tryAcquire(s, DEFAULT_BREAKER_CONFIG, now_ms);
 * s = acquired.state;
 * if (acquired.permitted) {
 *     // ... call the shard, then:
 *     s = onResult(s, DEFAULT_BREAKER_CONFIG, { success: true, duration_ms: 120 }, later_ms).state;
 * }
 */

/** The six breaker states; the last three are only entered by an admin (`transitionTo`). */
export type BreakerStateName =
    'Closed' | 'Open' | 'HalfOpen' | 'ForcedOpen' | 'Disabled' | 'MetricsOnly';

/** States an admin may force with `transitionTo`. */
export type BreakerAdminTarget = 'Closed' | 'ForcedOpen' | 'Disabled' | 'MetricsOnly';

/** `CountBased`: the last N calls. `TimeBased`: calls of the last N seconds. */
export type SlidingWindowType = 'CountBased' | 'TimeBased';

/** Largest accepted `sliding_window_size` (calls or seconds): bounds the state's size. */
export const MAX_SLIDING_WINDOW_SIZE = 1000;
/** Largest accepted `permitted_calls_in_half_open`. */
export const MAX_PERMITTED_CALLS_IN_HALF_OPEN = 1000;
/** Largest accepted `minimum_number_of_calls`. */
export const MAX_MINIMUM_NUMBER_OF_CALLS = 1_000_000;
/** Largest accepted wait or duration in a config (7 days). */
export const MAX_BREAKER_DURATION_MS = 7 * 24 * 60 * 60 * 1000;
/** Largest accepted `exponential_backoff_multiplier`. */
export const MAX_BACKOFF_MULTIPLIER = 100;
/** Largest accepted input of `decodeBreakerState`; a full state is far smaller. */
export const MAX_ENCODED_BREAKER_STATE_CHARS = 256 * 1024;

/** Counters saturate here so they stay exact integers forever. */
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

/** Candid form of the window type (`variant { CountBased; TimeBased }`), accepted as well. */
export type SlidingWindowTypeVariant = { CountBased: null } | { TimeBased: null };

/**
 * Breaker configuration; a Candid record, hence snake_case. Integer fields accept `number` or
 * `bigint` and the window type its string or Candid-variant form, so a decoded Candid
 * `CircuitBreakerConfig` can be passed as it is. Validate with `validateBreakerConfig` before use.
 */
export interface BreakerConfig {
    /** Open when the failure rate (percent of calls in the window) is at or above this, in (0, 100]. */
    failure_rate_threshold_percent: number;
    /** Open when the slow-call rate is at or above this, in (0, 100]. */
    slow_call_rate_threshold_percent: number;
    /** A call lasting longer than this is slow. */
    slow_call_duration_threshold_ms: number | bigint;
    sliding_window_type: SlidingWindowType | SlidingWindowTypeVariant;
    /** Calls (`CountBased`) or seconds (`TimeBased`), 1..MAX_SLIDING_WINDOW_SIZE. */
    sliding_window_size: number | bigint;
    /** No judgement before this many calls are in the window (capped at the size when count-based). */
    minimum_number_of_calls: number | bigint;
    /** First wait in Open before probes are let through. */
    wait_duration_in_open_ms: number | bigint;
    /** Each re-open from HalfOpen multiplies the wait by this; 1 turns backoff off. */
    exponential_backoff_multiplier: number;
    /** The backoff never waits longer than this. */
    max_wait_duration_in_open_ms: number | bigint;
    /** Probes allowed through in HalfOpen; their outcome decides Closed or Open. */
    permitted_calls_in_half_open: number | bigint;
    /**
     * HalfOpen gives up (back to Open) after this long without all probe results; 0 or absent waits
     * forever (resilience4j's default). On the IC a callback that traps loses its result, so set it.
     */
    max_wait_duration_in_half_open_ms?: number | bigint;
}

/** `BreakerConfig` with plain numbers and the string window type, as the state machine reads it. */
export interface NormalizedBreakerConfig {
    failure_rate_threshold_percent: number;
    slow_call_rate_threshold_percent: number;
    slow_call_duration_threshold_ms: number;
    sliding_window_type: SlidingWindowType;
    sliding_window_size: number;
    minimum_number_of_calls: number;
    wait_duration_in_open_ms: number;
    exponential_backoff_multiplier: number;
    max_wait_duration_in_open_ms: number;
    permitted_calls_in_half_open: number;
    max_wait_duration_in_half_open_ms: number;
}

/**
 * Defaults sized for inter-canister calls (an update takes ~2 s, cross-subnet ~4 rounds): judge the
 * last 20 calls once 10 are in, open at 50% failures or 80% calls slower than 5 s, wait 30 s doubling
 * up to 5 min, and let 3 probes through. Written in Candid form (nat64 as bigint, variant window type).
 */
export const DEFAULT_BREAKER_CONFIG = Object.freeze({
    failure_rate_threshold_percent: 50,
    slow_call_rate_threshold_percent: 80,
    slow_call_duration_threshold_ms: 5_000n,
    sliding_window_type: { CountBased: null },
    sliding_window_size: 20,
    minimum_number_of_calls: 10,
    wait_duration_in_open_ms: 30_000n,
    exponential_backoff_multiplier: 2,
    max_wait_duration_in_open_ms: 300_000n,
    permitted_calls_in_half_open: 3,
    max_wait_duration_in_half_open_ms: 60_000n
} satisfies BreakerConfig);

/** One invalid field; the shape of the shared `InvalidInput { field; reason }` error. */
export interface FieldError {
    field: string;
    reason: string;
}

/** Outcome codes in a count window: bit 0 = failed, bit 1 = slow. */
const OUTCOME_FAILED = 1;
const OUTCOME_SLOW = 2;

/** Ring of the last `size` outcome codes; `next` is the slot the next outcome overwrites once full. */
export interface CountWindow {
    kind: 'CountBased';
    size: number;
    outcomes: number[];
    next: number;
}

/** Per-second buckets `[epoch_second, calls, failures, slow_calls]`, ascending, spanning < `size` s. */
export interface TimeWindow {
    kind: 'TimeBased';
    size: number;
    buckets: number[][];
}

/** The sliding window; reshaped to the config on every record, so a config change is safe. */
export type BreakerWindow = CountWindow | TimeWindow;

/** Serialisable breaker state (see `encodeBreakerState`). Treat as opaque outside this module. */
export interface BreakerState {
    version: 1;
    state: BreakerStateName;
    /** When the current state was entered. */
    entered_at_ms: number;
    /** In Open: when the wait ends. 0 otherwise. */
    open_until_ms: number;
    /** Wait of the latest open episode; 0 means the next open uses the base wait. */
    current_wait_ms: number;
    window: BreakerWindow;
    probes_permitted: number;
    probes_completed: number;
    probe_failures: number;
    probe_slow_calls: number;
    /** Calls refused since the current state was entered. */
    not_permitted_calls: number;
}

/** Result of one call, as the caller measured it. */
export interface CallOutcome {
    success: boolean;
    duration_ms: number;
}

/** A state change, returned for the audit log and statistics. */
export interface Transition {
    from: BreakerStateName;
    to: BreakerStateName;
    at_ms: number;
    reason: string;
}

/** `tryAcquire`'s answer: whether the call may go ahead, the next state and any transitions. */
export interface AcquireResult {
    permitted: boolean;
    state: BreakerState;
    transitions: Transition[];
}

/** A next state and the transitions that led to it. */
export interface StepResult {
    state: BreakerState;
    transitions: Transition[];
}

/** Snapshot for dashboards; rates are -1 while fewer than the minimum calls were seen (resilience4j). */
export interface BreakerMetrics {
    state: BreakerStateName;
    number_of_calls: number;
    number_of_failed_calls: number;
    number_of_slow_calls: number;
    number_of_not_permitted_calls: number;
    failure_rate_percent: number;
    slow_call_rate_percent: number;
    /** The wait of the current open episode, or the wait the next open would use. */
    current_wait_ms: number;
    /** Time left before Open lets probes through; 0 in any other state. */
    remaining_wait_ms: number;
}

interface WindowCounts {
    calls: number;
    failures: number;
    slow: number;
}

const STATE_NAMES: readonly BreakerStateName[] = [
    'Closed',
    'Open',
    'HalfOpen',
    'ForcedOpen',
    'Disabled',
    'MetricsOnly'
];
const ADMIN_TARGETS: readonly BreakerStateName[] = [
    'Closed',
    'ForcedOpen',
    'Disabled',
    'MetricsOnly'
];

function windowTypeName(value: unknown): SlidingWindowType | null {
    if (value === 'CountBased' || value === 'TimeBased') return value;
    if (typeof value === 'object' && value !== null) {
        const keys = Object.keys(value);
        if (keys.length === 1 && (keys[0] === 'CountBased' || keys[0] === 'TimeBased')) {
            return keys[0];
        }
    }
    return null;
}

/** A bigint beyond the safe range becomes NaN, which every range check rejects. */
function toNumber(value: number | bigint): number {
    if (typeof value === 'number') return value;
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= -BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(value)
        : NaN;
}

/**
 * The config with plain numbers. Assumes `validateBreakerConfig` passed; the half-open limit
 * defaults to 0 (wait forever) when absent.
 *
 * @example
 * normalizeBreakerConfig(DEFAULT_BREAKER_CONFIG).sliding_window_type // 'CountBased'
 */
export function normalizeBreakerConfig(config: BreakerConfig): NormalizedBreakerConfig {
    const halfOpen = config.max_wait_duration_in_half_open_ms;
    return {
        failure_rate_threshold_percent: config.failure_rate_threshold_percent,
        slow_call_rate_threshold_percent: config.slow_call_rate_threshold_percent,
        slow_call_duration_threshold_ms: toNumber(config.slow_call_duration_threshold_ms),
        sliding_window_type: windowTypeName(config.sliding_window_type) ?? 'CountBased',
        sliding_window_size: toNumber(config.sliding_window_size),
        minimum_number_of_calls: toNumber(config.minimum_number_of_calls),
        wait_duration_in_open_ms: toNumber(config.wait_duration_in_open_ms),
        exponential_backoff_multiplier: config.exponential_backoff_multiplier,
        max_wait_duration_in_open_ms: toNumber(config.max_wait_duration_in_open_ms),
        permitted_calls_in_half_open: toNumber(config.permitted_calls_in_half_open),
        max_wait_duration_in_half_open_ms: halfOpen === undefined ? 0 : toNumber(halfOpen)
    };
}

/**
 * `normalizeBreakerConfig`, remembered for the last config object seen: a canister passes the
 * same (immutable) config on every call, and normalizing it costs tens of thousands of
 * instructions in its JS engine. Configs must not be changed in place (the router replaces them).
 */
let lastRawConfig: BreakerConfig | null = null;
let lastNormalizedConfig: NormalizedBreakerConfig | null = null;

function normalizedOf(config: BreakerConfig): NormalizedBreakerConfig {
    if (config !== lastRawConfig || lastNormalizedConfig === null) {
        lastNormalizedConfig = normalizeBreakerConfig(config);
        lastRawConfig = config;
    }
    return lastNormalizedConfig;
}

function toNumberOrNaN(value: unknown): number {
    if (typeof value === 'number' || typeof value === 'bigint') return toNumber(value);
    return NaN;
}

function checkNumber(
    errors: FieldError[],
    field: string,
    raw: unknown,
    min: number,
    max: number,
    opts: { integer: boolean; minExclusive?: boolean }
): void {
    const value = typeof raw === 'bigint' ? toNumber(raw) : raw;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
        errors.push({ field, reason: 'must be a finite number' });
        return;
    }
    if (opts.integer && !Number.isSafeInteger(value)) {
        errors.push({ field, reason: 'must be an integer' });
        return;
    }
    const tooLow = opts.minExclusive ? value <= min : value < min;
    if (tooLow || value > max) {
        const low = opts.minExclusive ? `(${min}` : `[${min}`;
        errors.push({ field, reason: `must be in ${low}, ${max}], got ${value}` });
    }
}

/** Numeric fields of `BreakerConfig` with their inclusive ranges (`percent`: exclusive of 0). */
const BREAKER_CONFIG_RANGES: readonly [
    keyof BreakerConfig,
    number,
    number,
    'percent' | 'real' | 'integer'
][] = [
    ['failure_rate_threshold_percent', 0, 100, 'percent'],
    ['slow_call_rate_threshold_percent', 0, 100, 'percent'],
    ['slow_call_duration_threshold_ms', 0, MAX_BREAKER_DURATION_MS, 'real'],
    ['sliding_window_size', 1, MAX_SLIDING_WINDOW_SIZE, 'integer'],
    ['minimum_number_of_calls', 1, MAX_MINIMUM_NUMBER_OF_CALLS, 'integer'],
    ['wait_duration_in_open_ms', 1, MAX_BREAKER_DURATION_MS, 'integer'],
    ['exponential_backoff_multiplier', 1, MAX_BACKOFF_MULTIPLIER, 'real'],
    ['max_wait_duration_in_open_ms', 1, MAX_BREAKER_DURATION_MS, 'integer'],
    ['permitted_calls_in_half_open', 1, MAX_PERMITTED_CALLS_IN_HALF_OPEN, 'integer'],
    ['max_wait_duration_in_half_open_ms', 0, MAX_BREAKER_DURATION_MS, 'integer']
];

/**
 * Checks every field's type and range; an empty list means valid. NaN and infinities are rejected.
 *
 * @example
 * validateBreakerConfig({ ...DEFAULT_BREAKER_CONFIG, sliding_window_size: 0 })
 * // [{ field: 'sliding_window_size', reason: 'must be in [1, 1000], got 0' }]
 */
export function validateBreakerConfig(config: BreakerConfig): FieldError[] {
    const errors: FieldError[] = [];
    const c = config as unknown as Record<string, unknown>;
    for (const [field, min, max, kind] of BREAKER_CONFIG_RANGES) {
        // The half-open limit is optional: Candid records without it are still valid.
        if (field === 'max_wait_duration_in_half_open_ms' && c[field] === undefined) continue;
        checkNumber(errors, field, c[field], min, max, {
            integer: kind === 'integer',
            minExclusive: kind === 'percent'
        });
    }
    if (windowTypeName(c.sliding_window_type) === null) {
        errors.push({ field: 'sliding_window_type', reason: 'must be CountBased or TimeBased' });
    }
    const baseWait_ms = toNumberOrNaN(c.wait_duration_in_open_ms);
    const maxWait_ms = toNumberOrNaN(c.max_wait_duration_in_open_ms);
    if (maxWait_ms < baseWait_ms) {
        errors.push({
            field: 'max_wait_duration_in_open_ms',
            reason: `must be at least wait_duration_in_open_ms (${baseWait_ms})`
        });
    }
    return errors;
}

function emptyWindowLike(window: BreakerWindow): BreakerWindow {
    return window.kind === 'CountBased'
        ? { kind: 'CountBased', size: window.size, outcomes: [], next: 0 }
        : { kind: 'TimeBased', size: window.size, buckets: [] };
}

/**
 * A fresh Closed breaker. The window takes its type and size from the config on the first record.
 *
 * @example
 * initialBreakerState(0).state // 'Closed'
 */
export function initialBreakerState(now_ms: number): BreakerState {
    return {
        version: 1,
        state: 'Closed',
        entered_at_ms: now_ms,
        open_until_ms: 0,
        current_wait_ms: 0,
        window: { kind: 'CountBased', size: 0, outcomes: [], next: 0 },
        probes_permitted: 0,
        probes_completed: 0,
        probe_failures: 0,
        probe_slow_calls: 0,
        not_permitted_calls: 0
    };
}

function copyState(s: BreakerState): BreakerState {
    const window: BreakerWindow =
        s.window.kind === 'CountBased'
            ? { ...s.window, outcomes: s.window.outcomes.slice() }
            : { ...s.window, buckets: s.window.buckets.map((b) => b.slice()) };
    return { ...s, window };
}

function clampWindowSize(size: number): number {
    if (!Number.isFinite(size)) return 1;
    return Math.min(MAX_SLIDING_WINDOW_SIZE, Math.max(1, Math.floor(size)));
}

function epochSecond(now_ms: number): number {
    return Math.floor(now_ms / 1000);
}

/** Count outcomes oldest first. */
function orderedOutcomes(w: CountWindow): number[] {
    if (w.outcomes.length < w.size) return w.outcomes.slice();
    return w.outcomes.slice(w.next).concat(w.outcomes.slice(0, w.next));
}

/** Time buckets still inside the window at `now_ms`. */
function liveBuckets(w: TimeWindow, now_ms: number): number[][] {
    const last = w.buckets.length > 0 ? w.buckets[w.buckets.length - 1][0] : -Infinity;
    // A clock that stepped back is read as "no time passed", which keeps buckets ascending.
    const nowSec = Math.max(epochSecond(now_ms), last);
    return w.buckets.filter((b) => b[0] > nowSec - w.size);
}

/** Reshapes the window to the config's type and size, keeping what still fits. */
function conformWindow(
    window: BreakerWindow,
    config: NormalizedBreakerConfig,
    now_ms: number
): BreakerWindow {
    const size = clampWindowSize(config.sliding_window_size);
    if (config.sliding_window_type === 'TimeBased') {
        if (window.kind !== 'TimeBased') return { kind: 'TimeBased', size, buckets: [] };
        const resized: TimeWindow = { kind: 'TimeBased', size, buckets: window.buckets };
        return { ...resized, buckets: liveBuckets(resized, now_ms).map((b) => b.slice()) };
    }
    if (window.kind !== 'CountBased') return { kind: 'CountBased', size, outcomes: [], next: 0 };
    if (window.size === size) return window;
    const kept = orderedOutcomes(window).slice(-size);
    return { kind: 'CountBased', size, outcomes: kept, next: kept.length % size };
}

function recordInWindow(
    window: BreakerWindow,
    config: NormalizedBreakerConfig,
    outcome: CallOutcome,
    now_ms: number
): BreakerWindow {
    const w = conformWindow(window, config, now_ms);
    const failed = !outcome.success;
    const slow = outcome.duration_ms > config.slow_call_duration_threshold_ms;
    if (w.kind === 'CountBased') {
        const code = (failed ? OUTCOME_FAILED : 0) | (slow ? OUTCOME_SLOW : 0);
        const outcomes = w.outcomes.slice();
        if (outcomes.length < w.size) {
            outcomes.push(code);
            return { ...w, outcomes, next: outcomes.length % w.size };
        }
        outcomes[w.next] = code;
        return { ...w, outcomes, next: (w.next + 1) % w.size };
    }
    const buckets = w.buckets.map((b) => b.slice());
    const lastBucket = buckets.length > 0 ? buckets[buckets.length - 1] : undefined;
    const sec = epochSecond(now_ms);
    let bucket: number[];
    if (lastBucket !== undefined && lastBucket[0] >= sec) {
        bucket = lastBucket;
    } else {
        bucket = [sec, 0, 0, 0];
        buckets.push(bucket);
    }
    bucket[1] = Math.min(MAX_COUNTER, bucket[1] + 1);
    if (failed) bucket[2] = Math.min(MAX_COUNTER, bucket[2] + 1);
    if (slow) bucket[3] = Math.min(MAX_COUNTER, bucket[3] + 1);
    return { ...w, buckets };
}

function countWindow(window: BreakerWindow, now_ms: number): WindowCounts {
    const counts: WindowCounts = { calls: 0, failures: 0, slow: 0 };
    if (window.kind === 'CountBased') {
        for (const code of window.outcomes) {
            counts.calls += 1;
            if (code & OUTCOME_FAILED) counts.failures += 1;
            if (code & OUTCOME_SLOW) counts.slow += 1;
        }
        return counts;
    }
    for (const b of liveBuckets(window, now_ms)) {
        counts.calls = Math.min(MAX_COUNTER, counts.calls + b[1]);
        counts.failures = Math.min(MAX_COUNTER, counts.failures + b[2]);
        counts.slow = Math.min(MAX_COUNTER, counts.slow + b[3]);
    }
    return counts;
}

function effectiveMinimumCalls(config: NormalizedBreakerConfig): number {
    const min = Math.max(1, config.minimum_number_of_calls);
    // As resilience4j: a count window can never hold more calls than its size.
    return config.sliding_window_type === 'CountBased'
        ? Math.min(min, clampWindowSize(config.sliding_window_size))
        : min;
}

function percent(part: number, whole: number): number {
    return whole === 0 ? 0 : (part * 100) / whole;
}

function formatPercent(value: number): string {
    return `${Math.round(value * 10) / 10}%`;
}

/** Why the counts should open the breaker, or null when they should not. */
function tripReason(
    counts: WindowCounts,
    config: NormalizedBreakerConfig,
    what: string
): string | null {
    const failureRate = percent(counts.failures, counts.calls);
    if (failureRate >= config.failure_rate_threshold_percent) {
        return (
            `failure rate ${formatPercent(failureRate)} ≥ ` +
            `${formatPercent(config.failure_rate_threshold_percent)} over ${counts.calls} ${what}`
        );
    }
    const slowRate = percent(counts.slow, counts.calls);
    if (slowRate >= config.slow_call_rate_threshold_percent) {
        return (
            `slow-call rate ${formatPercent(slowRate)} ≥ ` +
            `${formatPercent(config.slow_call_rate_threshold_percent)} over ${counts.calls} ${what} ` +
            `(slower than ${config.slow_call_duration_threshold_ms} ms)`
        );
    }
    return null;
}

/** Moves a copied state to `to`, resetting what the target state starts without. */
function moveTo(
    s: BreakerState,
    to: BreakerStateName,
    now_ms: number,
    reason: string,
    transitions: Transition[]
): void {
    transitions.push({ from: s.state, to, at_ms: now_ms, reason });
    s.state = to;
    s.entered_at_ms = now_ms;
    s.not_permitted_calls = 0;
    s.probes_permitted = 0;
    s.probes_completed = 0;
    s.probe_failures = 0;
    s.probe_slow_calls = 0;
    // Open keeps the window so its metrics still show why it opened.
    if (to !== 'Open') {
        s.open_until_ms = 0;
        s.window = emptyWindowLike(s.window);
    }
    if (to === 'Closed') s.current_wait_ms = 0;
}

function nextWaitMs(s: BreakerState, config: NormalizedBreakerConfig): number {
    if (s.current_wait_ms <= 0) return config.wait_duration_in_open_ms;
    // Iterated multiplication (not Math.pow) is exactly rounded in every engine.
    const grown = Math.round(s.current_wait_ms * config.exponential_backoff_multiplier);
    return Math.max(
        config.wait_duration_in_open_ms,
        Math.min(config.max_wait_duration_in_open_ms, grown)
    );
}

function open(
    s: BreakerState,
    config: NormalizedBreakerConfig,
    now_ms: number,
    reason: string,
    transitions: Transition[]
): void {
    const wait_ms = s.state === 'Closed' ? config.wait_duration_in_open_ms : nextWaitMs(s, config);
    moveTo(s, 'Open', now_ms, `${reason}; waiting ${wait_ms} ms`, transitions);
    s.current_wait_ms = wait_ms;
    s.open_until_ms = now_ms + wait_ms;
}

function refuse(s: BreakerState, transitions: Transition[]): AcquireResult {
    s.not_permitted_calls = Math.min(MAX_COUNTER, s.not_permitted_calls + 1);
    return { permitted: false, state: s, transitions };
}

/**
 * Asks whether a call may go to the shard now. Open turns HalfOpen once the wait has elapsed, and
 * HalfOpen hands out at most `permitted_calls_in_half_open` probes. Refusals are counted.
 *
 * @example
 * const { permitted, state } = tryAcquire(s, config, now_ms);
 * if (!permitted) return { Err: { ShardUnavailable: shard_id } };
 */
export function tryAcquire(
    state: BreakerState,
    rawConfig: BreakerConfig,
    now_ms: number
): AcquireResult {
    if (state.state === 'Closed' || state.state === 'Disabled' || state.state === 'MetricsOnly') {
        return { permitted: true, state, transitions: [] };
    }
    const config = normalizedOf(rawConfig);
    const s = copyState(state);
    const transitions: Transition[] = [];
    if (s.state === 'ForcedOpen') return refuse(s, transitions);
    if (s.state === 'Open') {
        if (now_ms < s.open_until_ms) return refuse(s, transitions);
        moveTo(s, 'HalfOpen', now_ms, `wait elapsed (${s.current_wait_ms} ms)`, transitions);
    }
    const halfOpenLimit_ms = config.max_wait_duration_in_half_open_ms;
    if (halfOpenLimit_ms > 0 && now_ms - s.entered_at_ms >= halfOpenLimit_ms) {
        const reason =
            `half-open timed out after ${halfOpenLimit_ms} ms with ` +
            `${s.probes_completed} of ${config.permitted_calls_in_half_open} probe results`;
        open(s, config, now_ms, reason, transitions);
        return refuse(s, transitions);
    }
    if (s.probes_permitted >= config.permitted_calls_in_half_open) return refuse(s, transitions);
    s.probes_permitted += 1;
    return { permitted: true, state: s, transitions };
}

/**
 * Records the outcome of a call and applies the thresholds: Closed opens when the failure or slow-call
 * rate reaches its threshold (once the minimum calls are in); HalfOpen, once all probes answered,
 * closes or re-opens with a longer wait. Disabled and ForcedOpen ignore results; MetricsOnly only
 * records them.
 *
 * @example
 * s = onResult(s, config, { success: false, duration_ms: 30 }, now_ms).state;
 */
export function onResult(
    state: BreakerState,
    rawConfig: BreakerConfig,
    outcome: CallOutcome,
    now_ms: number
): StepResult {
    if (state.state === 'Disabled' || state.state === 'ForcedOpen') {
        return { state, transitions: [] };
    }
    const config = normalizedOf(rawConfig);
    // A shallow copy: the window is never changed in place, only replaced (`recordInWindow`,
    // `moveTo`), so the caller's state stays as it was without copying its outcomes.
    const s: BreakerState = { ...state };
    const transitions: Transition[] = [];
    if (s.state === 'HalfOpen') {
        // Late results of calls admitted before HalfOpen are not probes.
        if (s.probes_completed >= s.probes_permitted) return { state: s, transitions };
        s.probes_completed += 1;
        if (!outcome.success) s.probe_failures += 1;
        if (outcome.duration_ms > config.slow_call_duration_threshold_ms) s.probe_slow_calls += 1;
        if (s.probes_completed < config.permitted_calls_in_half_open)
            return { state: s, transitions };
        const counts = {
            calls: s.probes_completed,
            failures: s.probe_failures,
            slow: s.probe_slow_calls
        };
        const reason = tripReason(counts, config, 'probes');
        if (reason !== null) {
            open(s, config, now_ms, `probe failed: ${reason}`, transitions);
        } else {
            const rate = formatPercent(percent(counts.failures, counts.calls));
            const limit = formatPercent(config.failure_rate_threshold_percent);
            const why = `probes succeeded: failure rate ${rate} < ${limit} over ${counts.calls} probes`;
            moveTo(s, 'Closed', now_ms, why, transitions);
        }
        return { state: s, transitions };
    }
    s.window = recordInWindow(s.window, config, outcome, now_ms);
    if (s.state !== 'Closed') return { state: s, transitions };
    const counts = countWindow(s.window, now_ms);
    if (counts.calls < effectiveMinimumCalls(config)) return { state: s, transitions };
    const reason = tripReason(counts, config, 'calls');
    if (reason !== null) open(s, config, now_ms, reason, transitions);
    return { state: s, transitions };
}

/**
 * Admin override: force `Closed` (resets window and backoff), `ForcedOpen` (refuse everything),
 * `Disabled` (permit everything, record nothing) or `MetricsOnly` (record, never open).
 * Forcing the current state is a no-op.
 *
 * @example
 * transitionTo(s, 'ForcedOpen', now_ms).transitions[0].reason // 'forced by admin: Closed → ForcedOpen'
 */
export function transitionTo(
    state: BreakerState,
    target: BreakerAdminTarget,
    now_ms: number
): StepResult {
    if (!ADMIN_TARGETS.includes(target)) {
        throw new Error(`transitionTo: ${String(target)} is not an admin target`);
    }
    if (state.state === target) return { state, transitions: [] };
    const s = copyState(state);
    const transitions: Transition[] = [];
    moveTo(s, target, now_ms, `forced by admin: ${state.state} → ${target}`, transitions);
    return { state: s, transitions };
}

/**
 * Read-only metrics; safe in a query. Rates are -1 below the minimum number of calls (in HalfOpen the
 * minimum is the number of probes).
 *
 * @example
 * breakerMetrics(initialBreakerState(0), DEFAULT_BREAKER_CONFIG, 0).failure_rate_percent // -1
 */
export function breakerMetrics(
    state: BreakerState,
    rawConfig: BreakerConfig,
    now_ms: number
): BreakerMetrics {
    const config = normalizedOf(rawConfig);
    let counts: WindowCounts;
    let minimum: number;
    if (state.state === 'HalfOpen') {
        counts = {
            calls: state.probes_completed,
            failures: state.probe_failures,
            slow: state.probe_slow_calls
        };
        minimum = config.permitted_calls_in_half_open;
    } else {
        counts = countWindow(state.window, now_ms);
        minimum = effectiveMinimumCalls(config);
    }
    const judged = counts.calls >= minimum && counts.calls > 0;
    return {
        state: state.state,
        number_of_calls: counts.calls,
        number_of_failed_calls: counts.failures,
        number_of_slow_calls: counts.slow,
        number_of_not_permitted_calls: state.not_permitted_calls,
        failure_rate_percent: judged ? percent(counts.failures, counts.calls) : -1,
        slow_call_rate_percent: judged ? percent(counts.slow, counts.calls) : -1,
        current_wait_ms:
            state.current_wait_ms > 0 ? state.current_wait_ms : config.wait_duration_in_open_ms,
        remaining_wait_ms: state.state === 'Open' ? Math.max(0, state.open_until_ms - now_ms) : 0
    };
}

/**
 * Serialises a state to JSON for a `StableBTreeMap<nat32, text>`.
 *
 * @example
 * decodeBreakerState(encodeBreakerState(s)) // { Ok: s }
 */
export function encodeBreakerState(state: BreakerState): string {
    return JSON.stringify(state);
}

/** `decodeBreakerState`'s answer: the state, or which field was wrong and why. */
export type BreakerDecodeResult = { Ok: BreakerState } | { Err: FieldError };

class DecodeError {
    constructor(readonly error: FieldError) {}
}

function fail(field: string, reason: string): never {
    throw new DecodeError({ field, reason });
}

function readCount(
    obj: Record<string, unknown>,
    field: string,
    path: string,
    max = MAX_COUNTER
): number {
    const v = obj[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
        fail(`${path}${field}`, `must be an integer in [0, ${max}]`);
    }
    return v;
}

function readTime(obj: Record<string, unknown>, field: string): number {
    const v = obj[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(field, 'must be a finite number');
    return v;
}

function readObject(value: unknown, field: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        fail(field, 'must be an object');
    }
    return value as Record<string, unknown>;
}

function readWindow(value: unknown): BreakerWindow {
    const w = readObject(value, 'window');
    const size = readCount(w, 'size', 'window.', MAX_SLIDING_WINDOW_SIZE);
    if (w.kind === 'CountBased') {
        const outcomes = w.outcomes;
        if (!Array.isArray(outcomes) || outcomes.length > size) {
            fail('window.outcomes', `must be an array of at most ${size} outcomes`);
        }
        const codes = outcomes.map((o): number => {
            if (o !== 0 && o !== 1 && o !== 2 && o !== 3) fail('window.outcomes', 'codes are 0..3');
            return o;
        });
        const next = readCount(w, 'next', 'window.', MAX_SLIDING_WINDOW_SIZE);
        const nextOk = codes.length < size ? next === codes.length : next < Math.max(size, 1);
        if (!nextOk) fail('window.next', 'does not match the ring');
        return { kind: 'CountBased', size, outcomes: codes, next };
    }
    if (w.kind === 'TimeBased') {
        const raw = w.buckets;
        if (!Array.isArray(raw) || raw.length > size) {
            fail('window.buckets', `must be an array of at most ${size} buckets`);
        }
        const buckets = raw.map((b): number[] => {
            const ok =
                Array.isArray(b) &&
                b.length === 4 &&
                b.every((x) => typeof x === 'number' && Number.isSafeInteger(x)) &&
                b[1] >= 0 &&
                b[2] >= 0 &&
                b[3] >= 0 &&
                b[2] <= b[1] &&
                b[3] <= b[1];
            if (!ok) fail('window.buckets', 'each bucket is [second, calls, failures, slow]');
            return (b as number[]).slice();
        });
        for (let i = 1; i < buckets.length; i++) {
            if (buckets[i][0] <= buckets[i - 1][0]) fail('window.buckets', 'must ascend');
        }
        if (buckets.length > 0 && buckets[buckets.length - 1][0] - buckets[0][0] >= size) {
            fail('window.buckets', `must span less than ${size} s`);
        }
        return { kind: 'TimeBased', size, buckets };
    }
    return fail('window.kind', 'must be CountBased or TimeBased');
}

function readState(value: unknown): BreakerState {
    const o = readObject(value, 'state');
    if (o.version !== 1) fail('version', 'unsupported version');
    const name = o.state;
    if (typeof name !== 'string' || !STATE_NAMES.includes(name as BreakerStateName)) {
        fail('state', `must be one of ${STATE_NAMES.join(', ')}`);
    }
    const probes_permitted = readCount(o, 'probes_permitted', '', MAX_PERMITTED_CALLS_IN_HALF_OPEN);
    const probes_completed = readCount(o, 'probes_completed', '', probes_permitted);
    const state: BreakerState = {
        version: 1,
        state: name as BreakerStateName,
        entered_at_ms: readTime(o, 'entered_at_ms'),
        open_until_ms: readTime(o, 'open_until_ms'),
        current_wait_ms: readCount(o, 'current_wait_ms', '', MAX_BREAKER_DURATION_MS),
        window: readWindow(o.window),
        probes_permitted,
        probes_completed,
        probe_failures: readCount(o, 'probe_failures', '', probes_completed),
        probe_slow_calls: readCount(o, 'probe_slow_calls', '', probes_completed),
        not_permitted_calls: readCount(o, 'not_permitted_calls', '')
    };
    return state;
}

/**
 * Parses and validates a state written by `encodeBreakerState`; garbage gives `Err`, never a throw.
 *
 * @example
 * decodeBreakerState('nonsense') // { Err: { field: 'json', reason: 'not valid JSON' } }
 */
export function decodeBreakerState(text: string): BreakerDecodeResult {
    if (typeof text !== 'string' || text.length > MAX_ENCODED_BREAKER_STATE_CHARS) {
        return { Err: { field: 'json', reason: 'must be a string of bounded length' } };
    }
    let parsed: unknown;
    try {
        parsed = JSON.parse(text);
    } catch {
        return { Err: { field: 'json', reason: 'not valid JSON' } };
    }
    try {
        return { Ok: readState(parsed) };
    } catch (e) {
        if (e instanceof DecodeError) return { Err: e.error };
        throw e;
    }
}
