import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    DEFAULT_BREAKER_CONFIG,
    MAX_SLIDING_WINDOW_SIZE,
    breakerMetrics,
    decodeBreakerState,
    encodeBreakerState,
    initialBreakerState,
    normalizeBreakerConfig,
    onResult,
    transitionTo,
    tryAcquire,
    validateBreakerConfig,
    type BreakerAdminTarget,
    type BreakerConfig,
    type BreakerState,
    type BreakerStateName,
    type Transition
} from '../../src/shared/circuit_breaker';

const BASE: BreakerConfig = {
    ...DEFAULT_BREAKER_CONFIG,
    failure_rate_threshold_percent: 50,
    slow_call_rate_threshold_percent: 100,
    slow_call_duration_threshold_ms: 1_000,
    sliding_window_type: 'CountBased',
    sliding_window_size: 10,
    minimum_number_of_calls: 10,
    wait_duration_in_open_ms: 1_000,
    exponential_backoff_multiplier: 1,
    max_wait_duration_in_open_ms: 1_000,
    permitted_calls_in_half_open: 3,
    max_wait_duration_in_half_open_ms: 0
};

function config(overrides: Partial<BreakerConfig> = {}): BreakerConfig {
    return { ...BASE, ...overrides };
}

/** Runs one permitted call through the breaker and records its outcome. */
function call(
    s: BreakerState,
    cfg: BreakerConfig,
    success: boolean,
    now_ms: number,
    duration_ms = 10
): { state: BreakerState; permitted: boolean; transitions: Transition[] } {
    const acquired = tryAcquire(s, cfg, now_ms);
    if (!acquired.permitted) return acquired;
    const done = onResult(acquired.state, cfg, { success, duration_ms }, now_ms);
    return {
        state: done.state,
        permitted: true,
        transitions: [...acquired.transitions, ...done.transitions]
    };
}

function calls(
    s: BreakerState,
    cfg: BreakerConfig,
    pattern: boolean[],
    now_ms: number
): { state: BreakerState; transitions: Transition[] } {
    let state = s;
    const transitions: Transition[] = [];
    for (const success of pattern) {
        const r = call(state, cfg, success, now_ms);
        state = r.state;
        transitions.push(...r.transitions);
    }
    return { state, transitions };
}

function repeat<T>(value: T, n: number): T[] {
    return Array.from({ length: n }, () => value);
}

function openBreaker(cfg: BreakerConfig, now_ms: number): BreakerState {
    const r = calls(initialBreakerState(now_ms), cfg, repeat(false, 10), now_ms);
    expect(r.state.state).toBe('Open');
    return r.state;
}

describe('validateBreakerConfig', () => {
    it('accepts the defaults', () => {
        expect(validateBreakerConfig(DEFAULT_BREAKER_CONFIG)).toEqual([]);
    });

    it('rejects NaN, out-of-range and non-integer fields by name', () => {
        const bad = config({
            failure_rate_threshold_percent: NaN,
            slow_call_rate_threshold_percent: 0,
            sliding_window_size: MAX_SLIDING_WINDOW_SIZE + 1,
            minimum_number_of_calls: 2.5,
            exponential_backoff_multiplier: 0.5,
            permitted_calls_in_half_open: 0,
            max_wait_duration_in_half_open_ms: -1
        });
        const fields = validateBreakerConfig(bad).map((e) => e.field);
        expect(fields.sort()).toEqual(
            [
                'exponential_backoff_multiplier',
                'failure_rate_threshold_percent',
                'max_wait_duration_in_half_open_ms',
                'minimum_number_of_calls',
                'permitted_calls_in_half_open',
                'sliding_window_size',
                'slow_call_rate_threshold_percent'
            ].sort()
        );
    });

    it('rejects a bigint beyond the safe integer range', () => {
        const bad = { ...DEFAULT_BREAKER_CONFIG, wait_duration_in_open_ms: 2n ** 60n };
        expect(validateBreakerConfig(bad).map((e) => e.field)).toContain(
            'wait_duration_in_open_ms'
        );
    });

    it('rejects a max wait shorter than the base wait and an unknown window type', () => {
        const bad = {
            ...config({ wait_duration_in_open_ms: 5_000, max_wait_duration_in_open_ms: 1_000 }),
            sliding_window_type: 'Sideways'
        } as unknown as BreakerConfig;
        const errors = validateBreakerConfig(bad);
        expect(errors.map((e) => e.field).sort()).toEqual([
            'max_wait_duration_in_open_ms',
            'sliding_window_type'
        ]);
        expect(errors.every((e) => e.reason.length > 0)).toBe(true);
    });
});

describe('config forms', () => {
    it('behaves the same for the Candid form (bigint fields, variant window type)', () => {
        const candid: BreakerConfig = {
            ...BASE,
            sliding_window_type: { TimeBased: null },
            slow_call_duration_threshold_ms: 1_000n,
            sliding_window_size: 10n,
            minimum_number_of_calls: 10n,
            wait_duration_in_open_ms: 1_000n,
            max_wait_duration_in_open_ms: 1_000n,
            permitted_calls_in_half_open: 3n,
            max_wait_duration_in_half_open_ms: undefined
        };
        const plain = config({ sliding_window_type: 'TimeBased' });
        expect(validateBreakerConfig(candid)).toEqual([]);
        expect(normalizeBreakerConfig(candid)).toEqual(plain);
        const pattern = [true, false, false, true, false, false, false, true, false, false];
        const a = calls(initialBreakerState(0), candid, pattern, 0);
        const b = calls(initialBreakerState(0), plain, pattern, 0);
        expect(a).toEqual(b);
        expect(a.state.state).toBe('Open');
    });
});

describe('closed state with a count-based window', () => {
    it('opens after 5 failures in a window of 10', () => {
        const cfg = config();
        const pattern = [true, false, true, false, true, false, true, false, true];
        let r = calls(initialBreakerState(0), cfg, pattern, 0);
        expect(r.state.state).toBe('Closed');
        r = calls(r.state, cfg, [false], 0);
        expect(r.state.state).toBe('Open');
        expect(r.transitions).toHaveLength(1);
        expect(r.transitions[0]).toMatchObject({ from: 'Closed', to: 'Open', at_ms: 0 });
        expect(r.transitions[0].reason).toContain('failure rate 50% ≥ 50%');
    });

    it('stays closed at 4 failures in a window of 10', () => {
        const pattern = [false, false, false, false, true, true, true, true, true, true];
        expect(calls(initialBreakerState(0), config(), pattern, 0).state.state).toBe('Closed');
    });

    it('stays closed below minimum_number_of_calls', () => {
        const cfg = config({ sliding_window_size: 100, minimum_number_of_calls: 20 });
        const r = calls(initialBreakerState(0), cfg, repeat(false, 19), 0);
        expect(r.state.state).toBe('Closed');
        expect(breakerMetrics(r.state, cfg, 0).failure_rate_percent).toBe(-1);
        expect(calls(r.state, cfg, [false], 0).state.state).toBe('Open');
    });

    it('judges a count window once it is full even when the minimum is larger', () => {
        const cfg = config({ sliding_window_size: 5, minimum_number_of_calls: 50 });
        expect(calls(initialBreakerState(0), cfg, repeat(false, 5), 0).state.state).toBe('Open');
    });

    it('forgets the oldest outcome once the ring is full', () => {
        const cfg = config();
        // 4 failures then 10 successes: the failures have left the window.
        const r = calls(initialBreakerState(0), cfg, [...repeat(false, 4), ...repeat(true, 10)], 0);
        const m = breakerMetrics(r.state, cfg, 0);
        expect(m.number_of_calls).toBe(10);
        expect(m.number_of_failed_calls).toBe(0);
        expect(calls(r.state, cfg, repeat(false, 4), 0).state.state).toBe('Closed');
    });

    it('opens on the slow-call rate even when every call succeeds', () => {
        const cfg = config({ slow_call_rate_threshold_percent: 60 });
        let s = initialBreakerState(0);
        const transitions: Transition[] = [];
        for (let i = 0; i < 10; i++) {
            const r = call(s, cfg, true, 0, i < 6 ? 1_500 : 100);
            s = r.state;
            transitions.push(...r.transitions);
        }
        expect(s.state).toBe('Open');
        expect(transitions[0].reason).toContain('slow-call rate 60% ≥ 60%');
    });

    it('counts a call exactly at the slow threshold as not slow', () => {
        const cfg = config({ slow_call_rate_threshold_percent: 10 });
        let s = initialBreakerState(0);
        for (let i = 0; i < 10; i++) s = call(s, cfg, true, 0, 1_000).state;
        expect(s.state).toBe('Closed');
        expect(breakerMetrics(s, cfg, 0).number_of_slow_calls).toBe(0);
    });
});

describe('closed state with a time-based window', () => {
    const cfg = config({
        sliding_window_type: 'TimeBased',
        sliding_window_size: 10,
        minimum_number_of_calls: 5
    });

    it('forgets buckets older than the window', () => {
        let s = calls(initialBreakerState(0), cfg, repeat(false, 4), 0).state;
        expect(breakerMetrics(s, cfg, 9_999).number_of_failed_calls).toBe(4);
        expect(breakerMetrics(s, cfg, 10_000).number_of_calls).toBe(0);
        // The 4 old failures are gone, so one more failure does not reach the minimum.
        s = calls(s, cfg, [false], 10_000).state;
        expect(s.state).toBe('Closed');
        expect(breakerMetrics(s, cfg, 10_000).number_of_calls).toBe(1);
    });

    it('opens when failures within the window reach the threshold', () => {
        let s = calls(initialBreakerState(0), cfg, [false, false], 0).state;
        s = calls(s, cfg, [false, true], 5_000).state;
        expect(s.state).toBe('Closed');
        s = calls(s, cfg, [true], 9_000).state;
        expect(s.state).toBe('Open');
    });

    it('keeps at most sliding_window_size buckets', () => {
        let s = initialBreakerState(0);
        for (let sec = 0; sec < 50; sec++) s = call(s, cfg, true, sec * 1_000).state;
        expect(s.window.kind).toBe('TimeBased');
        if (s.window.kind === 'TimeBased') expect(s.window.buckets.length).toBe(10);
    });
});

describe('open and half-open', () => {
    it('refuses calls until the wait has elapsed, counting them', () => {
        const cfg = config();
        let s = openBreaker(cfg, 0);
        for (const t of [1, 500, 999]) {
            const r = tryAcquire(s, cfg, t);
            expect(r.permitted).toBe(false);
            s = r.state;
        }
        const m = breakerMetrics(s, cfg, 999);
        expect(m.number_of_not_permitted_calls).toBe(3);
        expect(m.remaining_wait_ms).toBe(1);
        const after = tryAcquire(s, cfg, 1_000);
        expect(after.permitted).toBe(true);
        expect(after.state.state).toBe('HalfOpen');
        expect(after.transitions[0]).toMatchObject({ from: 'Open', to: 'HalfOpen', at_ms: 1_000 });
        expect(after.transitions[0].reason).toContain('wait elapsed');
    });

    it('half-open permits exactly N probes', () => {
        const cfg = config({ permitted_calls_in_half_open: 3 });
        let s = openBreaker(cfg, 0);
        const permits: boolean[] = [];
        for (let i = 0; i < 6; i++) {
            const r = tryAcquire(s, cfg, 2_000);
            permits.push(r.permitted);
            s = r.state;
        }
        expect(permits).toEqual([true, true, true, false, false, false]);
        expect(s.state).toBe('HalfOpen');
    });

    it('closes when the probes succeed and resets the wait', () => {
        const cfg = config({
            exponential_backoff_multiplier: 2,
            max_wait_duration_in_open_ms: 60_000
        });
        const s = openBreaker(cfg, 0);
        const r = calls(s, cfg, [true, true, true], 1_000);
        expect(r.state.state).toBe('Closed');
        expect(r.transitions.map((t) => t.to)).toEqual(['HalfOpen', 'Closed']);
        expect(r.transitions[1].reason).toContain('probes succeeded');
        expect(breakerMetrics(r.state, cfg, 1_000).current_wait_ms).toBe(1_000);
    });

    it('re-opens when the probes fail', () => {
        const cfg = config();
        const r = calls(openBreaker(cfg, 0), cfg, [true, false, false], 1_000);
        expect(r.state.state).toBe('Open');
        expect(r.transitions.map((t) => t.to)).toEqual(['HalfOpen', 'Open']);
        expect(r.transitions[1].reason).toContain('probe failed: failure rate 66.7% ≥ 50%');
    });

    it('waits for all N probe results before judging', () => {
        const cfg = config();
        let s = openBreaker(cfg, 0);
        for (let i = 0; i < 3; i++) s = tryAcquire(s, cfg, 1_000).state;
        s = onResult(s, cfg, { success: false, duration_ms: 1 }, 1_001).state;
        s = onResult(s, cfg, { success: false, duration_ms: 1 }, 1_002).state;
        expect(s.state).toBe('HalfOpen');
        const last = onResult(s, cfg, { success: true, duration_ms: 1 }, 1_003);
        expect(last.state.state).toBe('Open');
        expect(last.state.open_until_ms).toBe(1_003 + 1_000);
    });

    it('ignores results beyond the permitted probes', () => {
        const cfg = config();
        let s = openBreaker(cfg, 0);
        s = tryAcquire(s, cfg, 1_000).state;
        s = onResult(s, cfg, { success: false, duration_ms: 1 }, 1_000).state;
        // A late result from a call admitted while Closed is not a probe.
        s = onResult(s, cfg, { success: false, duration_ms: 1 }, 1_000).state;
        expect(s.state).toBe('HalfOpen');
        expect(breakerMetrics(s, cfg, 1_000).number_of_calls).toBe(1);
    });

    it('backoff grows by the multiplier and is capped', () => {
        const cfg = config({
            exponential_backoff_multiplier: 2,
            wait_duration_in_open_ms: 1_000,
            max_wait_duration_in_open_ms: 5_000
        });
        let s = openBreaker(cfg, 0);
        let now_ms = 0;
        const waits: number[] = [s.open_until_ms - now_ms];
        for (let i = 0; i < 5; i++) {
            now_ms = s.open_until_ms;
            const r = calls(s, cfg, [false, false, false], now_ms);
            s = r.state;
            expect(s.state).toBe('Open');
            waits.push(s.open_until_ms - now_ms);
        }
        expect(waits).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
        expect(breakerMetrics(s, cfg, now_ms).current_wait_ms).toBe(5_000);
    });

    it('gives up on half-open after max_wait_duration_in_half_open_ms', () => {
        const cfg = config({ max_wait_duration_in_half_open_ms: 5_000 });
        let s = openBreaker(cfg, 0);
        s = tryAcquire(s, cfg, 1_000).state; // probe whose result never comes
        expect(s.state).toBe('HalfOpen');
        const r = tryAcquire(s, cfg, 6_000);
        expect(r.permitted).toBe(false);
        expect(r.state.state).toBe('Open');
        expect(r.transitions[0].reason).toContain('half-open timed out');
    });
});

describe('admin states', () => {
    it('ForcedOpen never permits and ignores results', () => {
        const cfg = config();
        let s = transitionTo(initialBreakerState(0), 'ForcedOpen', 0).state;
        for (let t = 0; t < 100_000; t += 10_000) {
            const r = tryAcquire(s, cfg, t);
            expect(r.permitted).toBe(false);
            expect(r.transitions).toEqual([]);
            s = onResult(r.state, cfg, { success: true, duration_ms: 1 }, t).state;
        }
        expect(s.state).toBe('ForcedOpen');
        expect(breakerMetrics(s, cfg, 100_000).number_of_not_permitted_calls).toBe(10);
    });

    it('Disabled always permits and never transitions', () => {
        const cfg = config();
        let s = transitionTo(initialBreakerState(0), 'Disabled', 0).state;
        for (let i = 0; i < 50; i++) {
            const r = call(s, cfg, false, i);
            expect(r.permitted).toBe(true);
            expect(r.transitions).toEqual([]);
            s = r.state;
        }
        expect(s.state).toBe('Disabled');
        expect(breakerMetrics(s, cfg, 50).number_of_calls).toBe(0);
    });

    it('MetricsOnly records but never opens', () => {
        const cfg = config();
        let s = transitionTo(initialBreakerState(0), 'MetricsOnly', 0).state;
        for (let i = 0; i < 30; i++) {
            const r = call(s, cfg, false, i);
            expect(r.permitted).toBe(true);
            expect(r.transitions).toEqual([]);
            s = r.state;
        }
        const m = breakerMetrics(s, cfg, 30);
        expect(m.state).toBe('MetricsOnly');
        expect(m.number_of_failed_calls).toBe(10);
        expect(m.failure_rate_percent).toBe(100);
    });

    it('forcing Closed from Open resets the window and the backoff', () => {
        const cfg = config({
            exponential_backoff_multiplier: 3,
            max_wait_duration_in_open_ms: 9_000
        });
        let s = openBreaker(cfg, 0);
        s = calls(s, cfg, [false, false, false], 1_000).state;
        expect(s.current_wait_ms).toBe(3_000);
        const r = transitionTo(s, 'Closed', 2_000);
        expect(r.transitions).toEqual([
            { from: 'Open', to: 'Closed', at_ms: 2_000, reason: 'forced by admin: Open → Closed' }
        ]);
        expect(breakerMetrics(r.state, cfg, 2_000)).toMatchObject({
            number_of_calls: 0,
            current_wait_ms: 1_000,
            state: 'Closed'
        });
    });

    it('forcing the current state is a no-op', () => {
        const s = initialBreakerState(0);
        expect(transitionTo(s, 'Closed', 5)).toEqual({ state: s, transitions: [] });
    });
});

describe('encode and decode', () => {
    it('rejects garbage with a typed error', () => {
        expect(decodeBreakerState('nonsense')).toEqual({
            Err: { field: 'json', reason: 'not valid JSON' }
        });
        expect('Err' in decodeBreakerState('[]')).toBe(true);
        expect('Err' in decodeBreakerState('null')).toBe(true);
        const good = JSON.parse(encodeBreakerState(initialBreakerState(0)));
        const mutations: [string, unknown][] = [
            ['state', 'Ajar'],
            ['version', 2],
            ['not_permitted_calls', -1],
            ['probes_completed', 1],
            ['entered_at_ms', 'yesterday'],
            ['window', { kind: 'CountBased', size: 2, outcomes: [0, 1, 0], next: 0 }],
            ['window', { kind: 'CountBased', size: 3, outcomes: [0, 7], next: 2 }],
            ['window', { kind: 'TimeBased', size: 5, buckets: [[3, 1, 2, 0]] }],
            [
                'window',
                {
                    kind: 'TimeBased',
                    size: 5,
                    buckets: [
                        [1, 1, 0, 0],
                        [9, 1, 0, 0]
                    ]
                }
            ],
            ['window', { kind: 'Sideways', size: 1 }]
        ];
        for (const [field, value] of mutations) {
            const r = decodeBreakerState(JSON.stringify({ ...good, [field]: value }));
            expect('Err' in r ? r.Err.field.split('.')[0] : 'accepted').toBe(field);
        }
    });

    it('round-trips a state with a full ring', () => {
        const cfg = config();
        const s = calls(
            initialBreakerState(0),
            cfg,
            [true, false, true, true, false, true],
            0
        ).state;
        const more = calls(s, cfg, repeat(true, 7), 0).state;
        expect(decodeBreakerState(encodeBreakerState(more))).toEqual({ Ok: more });
    });
});

const STATES: BreakerStateName[] = [
    'Closed',
    'Open',
    'HalfOpen',
    'ForcedOpen',
    'Disabled',
    'MetricsOnly'
];
const AUTOMATIC_EDGES = new Set([
    'Closed>Open',
    'Open>HalfOpen',
    'HalfOpen>Closed',
    'HalfOpen>Open'
]);
const ADMIN_TARGETS: BreakerAdminTarget[] = ['Closed', 'ForcedOpen', 'Disabled', 'MetricsOnly'];

type Op =
    | { kind: 'acquire'; dt_ms: number }
    | { kind: 'call'; dt_ms: number; success: boolean; duration_ms: number }
    | { kind: 'result'; dt_ms: number; success: boolean; duration_ms: number }
    | { kind: 'admin'; dt_ms: number; target: BreakerAdminTarget };

const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
        weight: 10,
        arbitrary: fc.record({
            kind: fc.constant('call' as const),
            dt_ms: fc.nat(1_000),
            // Biased to failures so that Open and HalfOpen are reached often.
            success: fc.oneof(fc.constant(false), fc.boolean()),
            duration_ms: fc.nat(3_000)
        })
    },
    {
        weight: 5,
        arbitrary: fc.record({ kind: fc.constant('acquire' as const), dt_ms: fc.nat(3_000) })
    },
    {
        weight: 5,
        arbitrary: fc.record({
            kind: fc.constant('result' as const),
            dt_ms: fc.nat(3_000),
            success: fc.boolean(),
            duration_ms: fc.nat(3_000)
        })
    },
    {
        weight: 1,
        arbitrary: fc.record({
            kind: fc.constant('admin' as const),
            dt_ms: fc.nat(3_000),
            target: fc.constantFrom(...ADMIN_TARGETS)
        })
    }
);

const configArb: fc.Arbitrary<BreakerConfig> = fc
    .record({
        failure_rate_threshold_percent: fc.integer({ min: 1, max: 100 }),
        slow_call_rate_threshold_percent: fc.integer({ min: 1, max: 100 }),
        slow_call_duration_threshold_ms: fc.nat(3_000),
        sliding_window_type: fc.constantFrom('CountBased' as const, 'TimeBased' as const),
        sliding_window_size: fc.integer({ min: 1, max: 20 }),
        minimum_number_of_calls: fc.integer({ min: 1, max: 25 }),
        wait_duration_in_open_ms: fc.integer({ min: 1, max: 5_000 }),
        exponential_backoff_multiplier: fc.constantFrom(1, 1.5, 2, 3),
        extra_wait_ms: fc.nat(20_000),
        permitted_calls_in_half_open: fc.integer({ min: 1, max: 5 }),
        max_wait_duration_in_half_open_ms: fc.constantFrom(0, 2_000, 10_000)
    })
    .map(({ extra_wait_ms, ...rest }) => ({
        ...rest,
        max_wait_duration_in_open_ms: rest.wait_duration_in_open_ms + extra_wait_ms
    }));

interface Trace {
    states: BreakerState[];
    transitions: { t: Transition; admin: boolean }[];
    acquires: { before: BreakerState; now_ms: number; permitted: boolean }[];
}

function run(cfg: BreakerConfig, ops: Op[]): Trace {
    let now_ms = 1_000_000;
    let s = initialBreakerState(now_ms);
    const trace: Trace = { states: [s], transitions: [], acquires: [] };
    for (const op of ops) {
        now_ms += op.dt_ms;
        if (op.kind === 'acquire' || op.kind === 'call') {
            const r = tryAcquire(s, cfg, now_ms);
            trace.acquires.push({ before: s, now_ms, permitted: r.permitted });
            trace.transitions.push(...r.transitions.map((t) => ({ t, admin: false })));
            s = r.state;
            if (op.kind === 'call' && r.permitted) {
                const outcome = { success: op.success, duration_ms: op.duration_ms };
                const done = onResult(s, cfg, outcome, now_ms);
                trace.transitions.push(...done.transitions.map((t) => ({ t, admin: false })));
                s = done.state;
            }
        } else if (op.kind === 'result') {
            const outcome = { success: op.success, duration_ms: op.duration_ms };
            const r = onResult(s, cfg, outcome, now_ms);
            trace.transitions.push(...r.transitions.map((t) => ({ t, admin: false })));
            s = r.state;
        } else {
            const r = transitionTo(s, op.target, now_ms);
            trace.transitions.push(...r.transitions.map((t) => ({ t, admin: true })));
            s = r.state;
        }
        trace.states.push(s);
    }
    return trace;
}

describe('properties over random event sequences', () => {
    const ops = fc.array(opArb, { maxLength: 120 });
    const params = { numRuns: 200 };

    it('generates sequences that visit every automatic edge', () => {
        const seen = new Set<string>();
        fc.assert(
            fc.property(configArb, ops, (cfg, seq) => {
                for (const { t } of run(cfg, seq).transitions) seen.add(`${t.from}>${t.to}`);
            }),
            { numRuns: 200, seed: 42 }
        );
        for (const edge of AUTOMATIC_EDGES) expect(seen).toContain(edge);
    });

    it('keeps the state size bounded by the window size', () => {
        fc.assert(
            fc.property(configArb, ops, (cfg, seq) => {
                for (const s of run(cfg, seq).states) {
                    const w = s.window;
                    const held = w.kind === 'CountBased' ? w.outcomes.length : w.buckets.length;
                    expect(held).toBeLessThanOrEqual(cfg.sliding_window_size);
                    expect(s.probes_permitted).toBeLessThanOrEqual(
                        cfg.permitted_calls_in_half_open
                    );
                    expect(encodeBreakerState(s).length).toBeLessThan(400 + 40 * held);
                }
            }),
            params
        );
    });

    it('never permits from Open before the wait has elapsed', () => {
        fc.assert(
            fc.property(configArb, ops, (cfg, seq) => {
                const trace = run(cfg, seq);
                for (const s of trace.states.filter((x) => x.state === 'Open')) {
                    // Probe both edges of the wait, which random time steps rarely hit.
                    for (const t of [s.entered_at_ms, s.open_until_ms - 1]) {
                        expect(tryAcquire(s, cfg, t).permitted).toBe(false);
                    }
                    expect(s.open_until_ms).toBeGreaterThan(s.entered_at_ms);
                }
                for (const a of trace.acquires) {
                    if (a.before.state === 'Open' && a.now_ms < a.before.open_until_ms) {
                        expect(a.permitted).toBe(false);
                    }
                    if (a.before.state === 'ForcedOpen') expect(a.permitted).toBe(false);
                    if (a.before.state === 'Disabled') expect(a.permitted).toBe(true);
                }
            }),
            params
        );
    });

    it('moves only along legal edges', () => {
        fc.assert(
            fc.property(configArb, ops, (cfg, seq) => {
                const trace = run(cfg, seq);
                let current: BreakerStateName = 'Closed';
                for (const { t, admin } of trace.transitions) {
                    expect(t.from).toBe(current);
                    expect(t.from).not.toBe(t.to);
                    expect(t.reason.length).toBeGreaterThan(0);
                    if (admin) expect(ADMIN_TARGETS).toContain(t.to);
                    else expect(AUTOMATIC_EDGES.has(`${t.from}>${t.to}`)).toBe(true);
                    current = t.to;
                }
                const last = trace.states[trace.states.length - 1];
                expect(STATES).toContain(last.state);
                expect(last.state).toBe(current);
            }),
            params
        );
    });

    it('round-trips every reachable state through encode and decode', () => {
        fc.assert(
            fc.property(configArb, ops, (cfg, seq) => {
                for (const s of run(cfg, seq).states) {
                    expect(decodeBreakerState(encodeBreakerState(s))).toEqual({ Ok: s });
                }
            }),
            { numRuns: 100 }
        );
    });

    it('never mutates its input state', () => {
        fc.assert(
            fc.property(configArb, ops, opArb, (cfg, seq, op) => {
                const states = run(cfg, seq).states;
                const s = states[states.length - 1];
                const before = encodeBreakerState(s);
                const now_ms = 2_000_000;
                tryAcquire(s, cfg, now_ms);
                onResult(s, cfg, { success: false, duration_ms: 5_000 }, now_ms);
                if (op.kind === 'admin') transitionTo(s, op.target, now_ms);
                expect(encodeBreakerState(s)).toBe(before);
            }),
            { numRuns: 100 }
        );
    });
});
