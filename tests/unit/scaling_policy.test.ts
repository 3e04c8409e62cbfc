import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    DEFAULT_SCALING_CONFIG,
    MAX_TREND_SAMPLES,
    decideScaling,
    describeBreaches,
    estimateTimeToThreshold,
    finishScaleOut,
    initialScalingState,
    scalingRecommendations,
    shouldTriggerScaling,
    validateScalingConfig,
    type ScalingConfig,
    type ScalingDecision,
    type ScalingState,
    type ShardLoad,
    type TrendSample,
    scaleOutRegion
} from '../../src/shared/scaling_policy';
import { MAX_SHARDS } from '../../src/shared/limits';

const CONFIG: ScalingConfig = {
    ...DEFAULT_SCALING_CONFIG,
    max_storage_threshold: 80,
    max_loans_per_shard: 1_000n,
    max_avg_response_time_ms: 1_000,
    scale_out_cooldown_ms: 60_000n,
    hysteresis_percent: 10,
    consecutive_breaches_required: 3,
    max_shards: 10
};

function config(overrides: Partial<ScalingConfig> = {}): ScalingConfig {
    return { ...CONFIG, ...overrides };
}

function load(shard_id: number, overrides: Partial<ShardLoad> = {}): ShardLoad {
    return {
        shard_id,
        loan_count: 100,
        storage_percentage: 10,
        avg_response_time_ms: 100,
        is_read_only: false,
        ...overrides
    };
}

/** Evaluates the same shard loads `rounds` times, one minute apart, threading the state. */
function evaluate(
    rounds: ShardLoad[][],
    cfg: ScalingConfig,
    state: ScalingState = initialScalingState(),
    start_ms = 1_000_000
): ScalingDecision[] {
    const out: ScalingDecision[] = [];
    let s = state;
    rounds.forEach((shards, i) => {
        const d = decideScaling({ shards, config: cfg, state: s, now_ms: start_ms + i * 60_000 });
        out.push(d);
        s = d.state;
    });
    return out;
}

describe('shouldTriggerScaling (the seed trigger)', () => {
    it('fires when storage is over max_storage_threshold', () => {
        expect(shouldTriggerScaling(load(1, { storage_percentage: 80.1 }), CONFIG)).toBe(true);
        expect(shouldTriggerScaling(load(1, { storage_percentage: 80 }), CONFIG)).toBe(false);
    });

    it('fires when loans are over 80% of max_loans_per_shard', () => {
        expect(shouldTriggerScaling(load(1, { loan_count: 801 }), CONFIG)).toBe(true);
        expect(shouldTriggerScaling(load(1, { loan_count: 800n }), CONFIG)).toBe(false);
    });

    it('fires when the average response is over 1000 ms by default', () => {
        const cfg = config({
            max_avg_response_time_ms: DEFAULT_SCALING_CONFIG.max_avg_response_time_ms
        });
        expect(shouldTriggerScaling(load(1, { avg_response_time_ms: 1_001 }), cfg)).toBe(true);
        expect(shouldTriggerScaling(load(1, { avg_response_time_ms: 1_000 }), cfg)).toBe(false);
    });

    it('never fires for a read-only shard', () => {
        const full = load(1, { storage_percentage: 99, loan_count: 5_000, is_read_only: true });
        expect(shouldTriggerScaling(full, CONFIG)).toBe(false);
    });

    it('ignores unmeasurable values', () => {
        const nan = load(1, { storage_percentage: NaN, avg_response_time_ms: Infinity });
        expect(shouldTriggerScaling(nan, CONFIG)).toBe(false);
    });

    it('describes each breach in words', () => {
        const hot = load(3, {
            storage_percentage: 91,
            loan_count: 900,
            avg_response_time_ms: 1_500
        });
        expect(describeBreaches(hot, CONFIG)).toEqual([
            'storage 91% > 80%',
            'loan_count 900 > 80% of max_loans_per_shard (800)',
            'avg response 1500 ms > 1000 ms'
        ]);
    });
});

describe('validateScalingConfig', () => {
    it('accepts the defaults', () => {
        expect(validateScalingConfig(DEFAULT_SCALING_CONFIG)).toEqual([]);
    });

    it('rejects NaN, out-of-range values and wrong types by field', () => {
        const bad = {
            ...CONFIG,
            max_storage_threshold: NaN,
            max_loans_per_shard: 0n,
            max_avg_response_time_ms: -5,
            scale_out_cooldown_ms: 1.5,
            hysteresis_percent: 80,
            consecutive_breaches_required: 0,
            max_shards: MAX_SHARDS + 1,
            predictive_scaling: 'yes'
        } as unknown as ScalingConfig;
        expect(
            validateScalingConfig(bad)
                .map((e) => e.field)
                .sort()
        ).toEqual(
            [
                'consecutive_breaches_required',
                'hysteresis_percent',
                'max_avg_response_time_ms',
                'max_loans_per_shard',
                'max_shards',
                'max_storage_threshold',
                'predictive_scaling',
                'scale_out_cooldown_ms'
            ].sort()
        );
    });

    it('rejects a storage threshold of 0 or above 100', () => {
        for (const t of [0, 100.5]) {
            const errors = validateScalingConfig(config({ max_storage_threshold: t }));
            expect(errors.map((e) => e.field)).toEqual(['max_storage_threshold']);
        }
    });
});

describe('decideScaling', () => {
    const hot = load(2, { loan_count: 900 });

    it('scales out after K consecutive evaluations over a threshold', () => {
        const ds = evaluate(
            [
                [load(1), hot],
                [load(1), hot],
                [load(1), hot]
            ],
            CONFIG
        );
        expect(ds.map((d) => d.action)).toEqual(['None', 'None', 'ScaleOut']);
        expect(ds[0].reasons[0]).toContain('shard 2 over threshold');
        expect(ds[0].reasons[0]).toContain('1 of 3 evaluations in a row');
        expect(ds[2].triggering_shard_ids).toEqual([2]);
        expect(ds[2].state.in_flight).toBe(true);
        expect(ds[2].reasons.join('\n')).toContain('loan_count 900 > 80% of max_loans_per_shard');
    });

    it('restarts the count when a breach is interrupted', () => {
        const calm = load(2);
        const ds = evaluate([[hot], [hot], [calm], [hot], [hot]], CONFIG);
        expect(ds.every((d) => d.action === 'None')).toBe(true);
        expect(ds[4].state.streaks).toEqual([
            { shard_id: 2, consecutive_breaches: 2, triggered: false }
        ]);
    });

    it('keeps a triggered shard triggering until it is below threshold minus the band', () => {
        const cfg = config({ consecutive_breaches_required: 1, scale_out_cooldown_ms: 0n });
        let state = evaluate([[hot]], cfg)[0].state;
        state = finishScaleOut(state, cfg, 1_000_000);
        // 790 loans: below the 800 trigger but above the 720 clear level.
        const inBand = evaluate([[load(2, { loan_count: 790 })]], cfg, state, 2_000_000)[0];
        expect(inBand.triggering_shard_ids).toEqual([2]);
        expect(inBand.action).toBe('ScaleOut');
        expect(inBand.reasons[0]).toContain('not yet 10% below its thresholds');
        state = finishScaleOut(inBand.state, cfg, 2_000_000);
        const cleared = evaluate([[load(2, { loan_count: 720 })]], cfg, state, 3_000_000)[0];
        expect(cleared.action).toBe('None');
        expect(cleared.triggering_shard_ids).toEqual([]);
        expect(cleared.reasons[0]).toContain('shard 2 cleared');
        // A fresh shard at 790 (never triggered) does not trigger.
        const fresh = evaluate([[load(2, { loan_count: 790 })]], cfg, cleared.state, 4_000_000);
        expect(fresh[0].triggering_shard_ids).toEqual([]);
    });

    it('never starts a second scale-out while one is in flight', () => {
        const ds = evaluate(
            Array.from({ length: 6 }, () => [hot]),
            config()
        );
        expect(ds.filter((d) => d.action === 'ScaleOut')).toHaveLength(1);
        expect(ds[5].reasons.join('\n')).toContain('in flight');
    });

    it('respects the cooldown after finishScaleOut', () => {
        const cfg = config({ consecutive_breaches_required: 1, scale_out_cooldown_ms: 120_000n });
        const first = decideScaling({
            shards: [hot],
            config: cfg,
            state: initialScalingState(),
            now_ms: 0
        });
        expect(first.action).toBe('ScaleOut');
        const done = finishScaleOut(first.state, cfg, 30_000);
        expect(done).toMatchObject({ in_flight: false, cooldown_until_ms: 150_000 });
        const early = decideScaling({ shards: [hot], config: cfg, state: done, now_ms: 149_999 });
        expect(early.action).toBe('None');
        expect(early.reasons.join('\n')).toContain('cooldown for another 1 ms');
        const later = decideScaling({ shards: [hot], config: cfg, state: done, now_ms: 150_000 });
        expect(later.action).toBe('ScaleOut');
    });

    it('stops at max_shards', () => {
        const cfg = config({ consecutive_breaches_required: 1, max_shards: 3 });
        const shards = [load(1), load(2), load(3, { storage_percentage: 95 })];
        const d = decideScaling({ shards, config: cfg, state: initialScalingState(), now_ms: 0 });
        expect(d.action).toBe('None');
        expect(d.triggering_shard_ids).toEqual([3]);
        expect(d.reasons.join('\n')).toContain('max_shards is 3');
    });

    it('does nothing when auto-scaling is disabled but still reports the trigger', () => {
        const cfg = config({ consecutive_breaches_required: 1, auto_scaling_enabled: false });
        const d = decideScaling({
            shards: [hot],
            config: cfg,
            state: initialScalingState(),
            now_ms: 0
        });
        expect(d.action).toBe('None');
        expect(d.triggering_shard_ids).toEqual([2]);
        expect(d.reasons.join('\n')).toContain('auto-scaling is disabled');
    });

    it('never lets a read-only shard trigger', () => {
        const cfg = config({ consecutive_breaches_required: 1 });
        const full = load(4, { storage_percentage: 99, is_read_only: true });
        const d = decideScaling({
            shards: [full],
            config: cfg,
            state: initialScalingState(),
            now_ms: 0
        });
        expect(d.action).toBe('None');
        expect(d.state.streaks).toEqual([
            { shard_id: 4, consecutive_breaches: 0, triggered: false }
        ]);
    });

    it('forgets shards that are gone and ignores duplicate entries', () => {
        const cfg = config();
        const first = evaluate([[load(1), hot, load(3)]], cfg)[0];
        expect(first.state.streaks.map((s) => s.shard_id)).toEqual([1, 2, 3]);
        const second = evaluate([[load(3), load(3, { loan_count: 999 })]], cfg, first.state)[0];
        expect(second.state.streaks).toEqual([
            { shard_id: 3, consecutive_breaches: 0, triggered: false }
        ]);
        expect(second.reasons[0]).toContain('1 duplicate or excess shard entries ignored');
    });
});

describe('estimateTimeToThreshold', () => {
    const line = (slope: number, n: number, start = 0): TrendSample[] =>
        Array.from({ length: n }, (_, i) => ({ at_ms: start + i * 1_000, value: 10 + slope * i }));

    it('extrapolates a rising line from the newest sample', () => {
        // 10, 20, 30 at 0, 1, 2 s; 50 is reached 2 s after the newest sample.
        expect(estimateTimeToThreshold(line(10, 3), 50)).toBe(2_000);
    });

    it('returns null for flat, falling or too few samples', () => {
        expect(estimateTimeToThreshold(line(0, 10), 50)).toBeNull();
        expect(estimateTimeToThreshold(line(-1, 10), 50)).toBeNull();
        expect(estimateTimeToThreshold(line(10, 2), 50)).toBeNull();
        const sameTime = [1, 2, 3].map((value) => ({ at_ms: 5, value }));
        expect(estimateTimeToThreshold(sameTime, 50)).toBeNull();
        expect(
            estimateTimeToThreshold(
                [0.1, 0.1, 0.1].map((value, i) => ({ at_ms: i, value })),
                1
            )
        ).toBeNull();
    });

    it('returns 0 when the newest value is already at the threshold', () => {
        expect(estimateTimeToThreshold(line(10, 5), 50)).toBe(0);
    });

    it('sorts samples by time and skips non-finite ones', () => {
        const samples = [...line(10, 3)].reverse();
        samples.push({ at_ms: NaN, value: 1 }, { at_ms: 5_000, value: Infinity });
        expect(estimateTimeToThreshold(samples, 50)).toBe(2_000);
    });

    it('uses only the newest MAX_TREND_SAMPLES samples', () => {
        // An old steep rise followed by a long flat stretch: the window sees only the flat part.
        const old = line(100, 50);
        const flat = Array.from({ length: MAX_TREND_SAMPLES }, (_, i) => ({
            at_ms: 100_000 + i * 1_000,
            value: 5_000
        }));
        expect(estimateTimeToThreshold([...old, ...flat], 10_000)).toBeNull();
    });

    it('matches the exact answer on noiseless lines (property)', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 1, max: 1_000 }),
                fc.integer({ min: 3, max: 300 }),
                fc.integer({ min: 0, max: 1_800_000_000_000 }),
                fc.integer({ min: 1, max: 100_000 }),
                (slopePerSample, n, start_ms, gap) => {
                    const samples = line(slopePerSample, n, start_ms);
                    const newest = samples[samples.length - 1].value;
                    const threshold = newest + gap;
                    const eta = estimateTimeToThreshold(samples, threshold);
                    const exact = (gap / slopePerSample) * 1_000;
                    expect(eta).not.toBeNull();
                    expect(Math.abs((eta as number) - exact)).toBeLessThanOrEqual(1 + exact * 1e-9);
                }
            ),
            { numRuns: 300 }
        );
    });

    it('is null for any non-increasing series (property)', () => {
        fc.assert(
            fc.property(
                fc.array(fc.integer({ min: 0, max: 1_000 }), { minLength: 3, maxLength: 50 }),
                (steps) => {
                    let v = 1_000_000;
                    const samples = steps.map((d, i) => ({ at_ms: i * 1_000, value: (v -= d) }));
                    expect(estimateTimeToThreshold(samples, 2_000_000)).toBeNull();
                }
            ),
            { numRuns: 200 }
        );
    });
});

describe('scalingRecommendations', () => {
    const rising = (shard_id: number, per_hour: number) => ({
        shard_id,
        samples: Array.from({ length: 6 }, (_, i) => ({
            at_ms: i * 3_600_000,
            loan_count: 100 + per_hour * i,
            storage_percentage: 10
        }))
    });

    it('gives one recommendation per shard: now, soon, rebalance or none', () => {
        const shards = [
            load(1, { storage_percentage: 95 }),
            load(2, { loan_count: 600 }),
            load(3, { loan_count: 400 }),
            load(4, { loan_count: 100 }),
            load(5, { loan_count: 100, is_read_only: true })
        ];
        // Shard 2 grows 100 loans/hour: 600 at hour 5, reaches 800 two hours later.
        const recs = scalingRecommendations({
            shards,
            config: config({ max_shards: 5 }),
            trends: [rising(2, 100), rising(4, 0)],
            now_ms: 5 * 3_600_000
        });
        expect(recs.map((r) => [r.shard_id, r.kind])).toEqual([
            [1, 'ScaleOutNow'],
            [2, 'ScaleOutSoon'],
            [3, 'Rebalance'],
            [4, 'None'],
            [5, 'None']
        ]);
        expect(recs[0].reason).toContain('max_shards 5 reached');
        expect(recs[1].eta_ms).toBe(2 * 3_600_000);
        expect(recs[1].reason).toContain('loan_count trend');
        expect(recs[2].reason).toContain('× the mean');
    });

    it('suggests neither soon nor rebalance when those features are off', () => {
        const shards = [load(2, { loan_count: 600 }), load(3, { loan_count: 100 })];
        const recs = scalingRecommendations({
            shards,
            config: config({ predictive_scaling: false, rebalancing_enabled: false }),
            trends: [rising(2, 100)],
            now_ms: 5 * 3_600_000
        });
        expect(recs.map((r) => r.kind)).toEqual(['None', 'None']);
    });

    it('leaves a trend beyond the horizon as None', () => {
        const recs = scalingRecommendations({
            shards: [load(2, { loan_count: 600 })],
            config: CONFIG,
            trends: [rising(2, 100)],
            now_ms: 5 * 3_600_000,
            horizon_ms: 3_600_000
        });
        expect(recs[0].kind).toBe('None');
    });
});

const shardArb: fc.Arbitrary<ShardLoad> = fc.record({
    shard_id: fc.integer({ min: 0, max: 12 }),
    loan_count: fc.integer({ min: 0, max: 1_200 }),
    storage_percentage: fc.double({ min: 0, max: 100, noNaN: true }),
    avg_response_time_ms: fc.integer({ min: 0, max: 1_500 }),
    is_read_only: fc.boolean()
});

const configArb: fc.Arbitrary<ScalingConfig> = fc
    .record({
        auto_scaling_enabled: fc.boolean(),
        scale_out_cooldown_ms: fc.bigInt({ min: 0n, max: 300_000n }),
        hysteresis_percent: fc.integer({ min: 0, max: 30 }),
        consecutive_breaches_required: fc.integer({ min: 1, max: 4 }),
        max_shards: fc.integer({ min: 1, max: 14 })
    })
    .map((knobs) => ({ ...DEFAULT_SCALING_CONFIG, max_loans_per_shard: 1_000n, ...knobs }));

const roundArb = fc.record({
    shards: fc.array(shardArb, { maxLength: 14 }),
    dt_ms: fc.integer({ min: 0, max: 120_000 }),
    finish: fc.boolean()
});

describe('decideScaling properties over random rounds', () => {
    it('generates rounds that reach every outcome and gate', () => {
        const seen = new Set<string>();
        const gates = ['ScaleOut', 'disabled', 'in flight', 'cooldown', 'max_shards'];
        fc.assert(
            fc.property(configArb, fc.array(roundArb, { maxLength: 25 }), (cfg, rounds) => {
                let state = initialScalingState();
                let now_ms = 0;
                for (const round of rounds) {
                    now_ms += round.dt_ms;
                    const d = decideScaling({ shards: round.shards, config: cfg, state, now_ms });
                    const text = [d.action, ...d.reasons].join('\n');
                    for (const gate of gates) if (text.includes(gate)) seen.add(gate);
                    state = round.finish ? finishScaleOut(d.state, cfg, now_ms) : d.state;
                }
            }),
            { numRuns: 300, seed: 7 }
        );
        expect([...seen].sort()).toEqual([...gates].sort());
    });

    it('never scales out when in flight, in cooldown, at max_shards or disabled', () => {
        fc.assert(
            fc.property(configArb, fc.array(roundArb, { maxLength: 25 }), (cfg, rounds) => {
                let state = initialScalingState();
                let now_ms = 0;
                let scaleOuts = 0;
                for (const round of rounds) {
                    now_ms += round.dt_ms;
                    const before = state;
                    const d = decideScaling({ shards: round.shards, config: cfg, state, now_ms });
                    const distinct = new Set(round.shards.map((s) => s.shard_id)).size;
                    if (d.action === 'ScaleOut') {
                        scaleOuts += 1;
                        expect(before.in_flight).toBe(false);
                        expect(now_ms).toBeGreaterThanOrEqual(before.cooldown_until_ms);
                        expect(distinct).toBeLessThan(cfg.max_shards as number);
                        expect(cfg.auto_scaling_enabled).toBe(true);
                        expect(d.triggering_shard_ids.length).toBeGreaterThan(0);
                        expect(d.state.in_flight).toBe(true);
                    } else {
                        expect(d.state.in_flight).toBe(before.in_flight);
                    }
                    for (const id of d.triggering_shard_ids) {
                        const first = round.shards.find((s) => s.shard_id === id);
                        expect(first?.is_read_only).toBe(false);
                    }
                    expect(d.state.streaks.length).toBe(distinct);
                    expect(d.reasons.length).toBeGreaterThan(0);
                    state = round.finish ? finishScaleOut(d.state, cfg, now_ms) : d.state;
                }
                expect(scaleOuts).toBeLessThanOrEqual(rounds.length);
            }),
            { numRuns: 300 }
        );
    });

    it('is deterministic and does not mutate its input', () => {
        fc.assert(
            fc.property(
                configArb,
                fc.array(roundArb, { minLength: 1, maxLength: 10 }),
                (cfg, rounds) => {
                    let state = initialScalingState();
                    for (const round of rounds) {
                        const frozen = JSON.stringify(state);
                        const input = { shards: round.shards, config: cfg, state, now_ms: 1_000 };
                        const a = decideScaling(input);
                        const b = decideScaling(input);
                        expect(a).toEqual(b);
                        expect(JSON.stringify(state)).toBe(frozen);
                        state = a.state;
                    }
                }
            ),
            { numRuns: 200 }
        );
    });

    it('never triggers a shard before K evaluations in a row over a threshold', () => {
        fc.assert(
            fc.property(configArb, fc.array(roundArb, { maxLength: 25 }), (cfg, rounds) => {
                let state = initialScalingState();
                const k = cfg.consecutive_breaches_required as number;
                for (const round of rounds) {
                    const d = decideScaling({
                        shards: round.shards,
                        config: cfg,
                        state,
                        now_ms: 0
                    });
                    for (const streak of d.state.streaks) {
                        if (streak.triggered)
                            expect(streak.consecutive_breaches).toBeGreaterThanOrEqual(k);
                    }
                    state = d.state;
                }
            }),
            { numRuns: 200 }
        );
    });
});

describe('scaleOutRegion', () => {
    const shard = (region: string, loans: number, is_active = true) => ({
        region,
        loan_count: BigInt(loans),
        is_active
    });

    it("places the new shard in the fullest active shard's region", () => {
        const shards = [shard('asia', 10), shard('europe', 90), shard('asia', 200, false)];
        expect(scaleOutRegion(shards, ['asia', 'europe'], false)).toBe('europe');
        // Labels with no mapping at all stay labels.
        expect(scaleOutRegion(shards, [], false)).toBe('europe');
    });

    it("uses the factory's subnet for the default region or a region that is not mapped", () => {
        expect(scaleOutRegion([shard('default', 50)], ['asia'], false)).toBe('');
        expect(scaleOutRegion([shard('mars', 50)], ['asia'], false)).toBe('');
        expect(scaleOutRegion([], ['asia'], false)).toBe('');
    });

    it('spreads shards over mapped regions with geographic distribution', () => {
        const shards = [shard('asia', 1), shard('asia', 1), shard('europe', 500)];
        expect(scaleOutRegion(shards, ['asia', 'europe', 'us'], true)).toBe('us');
        expect(scaleOutRegion(shards, ['asia', 'europe'], true)).toBe('europe');
        // Ties go to the first mapped region; inactive shards do not count.
        expect(scaleOutRegion([shard('asia', 1, false)], ['asia', 'europe'], true)).toBe('asia');
    });

    it('always answers a mapped region or the default (property)', () => {
        const regionArb = fc.constantFrom('asia', 'europe', 'us', 'default', 'mars');
        fc.assert(
            fc.property(
                fc.array(
                    fc.record({ region: regionArb, loan_count: fc.nat(), is_active: fc.boolean() }),
                    {
                        maxLength: 20
                    }
                ),
                fc.uniqueArray(fc.constantFrom('asia', 'europe', 'us'), { maxLength: 3 }),
                fc.boolean(),
                (shards, mapped, geo) => {
                    const r = scaleOutRegion(shards, mapped, geo);
                    if (mapped.length > 0)
                        expect(r === '' || (mapped as string[]).includes(r)).toBe(true);
                    else expect(r === '' || shards.some((s) => s.region === r)).toBe(true);
                }
            )
        );
    });
});
