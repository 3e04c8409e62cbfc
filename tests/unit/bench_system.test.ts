import { describe, expect, it } from 'vitest';

import { formatInstructions, markdownReport } from '../../bench/system/markdown';
import { planOf } from '../../bench/system/plan';
import {
    breakdown,
    cacheHitRow,
    compositeBudgetRow,
    flatRoundsRow,
    meanOf,
    projectLinear,
    QUERY_BUDGET_INSTRUCTIONS,
    routerOverheadRow,
    splitByCanister,
    sumInstructions,
    type TracedCall
} from '../../bench/system/targets';

const ROUTER = 'router-id';
const SHARD = 'shard-id';

function entry(canister: string, kind: string, instructions: bigint, method = 'm'): TracedCall {
    return { canister, kind, method, caller: 'c', instructions };
}

describe('system benchmark: sums over the message trace', () => {
    const trace = [
        entry(ROUTER, 'ingress', 100n),
        entry(SHARD, 'request', 40n),
        entry(ROUTER, 'response', 60n),
        entry(ROUTER, 'inspect', 1_000n)
    ];

    it('sums every execution except canister_inspect_message', () => {
        expect(sumInstructions(trace)).toBe(200);
        expect(sumInstructions(trace, (e) => e.kind === 'request')).toBe(40);
        expect(sumInstructions([])).toBe(0);
    });

    it('splits a routed call into the router part and the shard part', () => {
        expect(splitByCanister(trace, ROUTER)).toEqual({ router: 160, others: 40, total: 200 });
    });

    it('rounds means to whole instructions and refuses an empty sample', () => {
        expect(meanOf([1, 2])).toBe(2);
        expect(meanOf([10, 20, 30])).toBe(20);
        expect(() => meanOf([])).toThrow(/no values/);
    });

    it('groups the instructions by role, kind and method, largest first', () => {
        const groups = breakdown(
            [
                ...trace,
                entry(SHARD, 'request', 500n, 'import'),
                entry(SHARD, 'request', 1n, 'import')
            ],
            (c) => (c === ROUTER ? 'router' : 'shard'),
            2
        );
        expect(groups).toEqual([
            { what: 'shard request import', messages: 2, instructions: 501 },
            { what: 'router ingress m', messages: 1, instructions: 100 }
        ]);
    });
});

describe('system benchmark: targets', () => {
    it('passes a router that adds at most 50% to a direct write, fails one that adds more', () => {
        expect(routerOverheadRow(150, 100).target?.pass).toBe(true);
        expect(routerOverheadRow(150, 100).value).toBeCloseTo(0.5);
        expect(routerOverheadRow(151, 100).target?.pass).toBe(false);
        expect(routerOverheadRow(90, 100).target?.pass).toBe(true);
        expect(() => routerOverheadRow(10, 0)).toThrow(/bad instructions/);
    });

    it('passes a cache hit of at most 10% of a miss', () => {
        expect(cacheHitRow(10, 100).target?.pass).toBe(true);
        expect(cacheHitRow(11, 100).target?.pass).toBe(false);
        expect(cacheHitRow(11, 100).value).toBeCloseTo(0.11);
        expect(() => cacheHitRow(1, 0)).toThrow(/bad instructions/);
    });

    it('passes flat fan-out rounds: the widest deployment takes the rounds of the narrowest', () => {
        const flat = flatRoundsRow('op', [
            { shards: 64, rounds: 1 },
            { shards: 1, rounds: 1 },
            { shards: 16, rounds: 1 }
        ]);
        expect(flat.key).toBe('op.rounds.flat_s1_to_s64');
        expect(flat.target?.pass).toBe(true);
        const growing = flatRoundsRow('op', [
            { shards: 1, rounds: 1 },
            { shards: 64, rounds: 3 }
        ]);
        expect(growing.value).toBe(3);
        expect(growing.target?.pass).toBe(false);
        expect(() => flatRoundsRow('op', [{ shards: 1, rounds: 1 }])).toThrow(/two/);
    });

    it('passes a composite dashboard answered completely inside the 5 B budget', () => {
        const inside = compositeBudgetRow(
            16,
            { kind: 'answered', instructions: QUERY_BUDGET_INSTRUCTIONS, complete: true },
            { complete: true, instructions: 1 }
        );
        expect(inside.mode).toBe('inside_budget');
        expect(inside.row.target?.pass).toBe(true);
        expect(inside.row.key).toBe('investor_dashboard.s16.query_budget');
    });

    it('fails a composite dashboard over the budget or partial', () => {
        const over = compositeBudgetRow(
            16,
            { kind: 'answered', instructions: QUERY_BUDGET_INSTRUCTIONS + 1, complete: true },
            { complete: true, instructions: 1 }
        );
        expect(over.row.target?.pass).toBe(false);
        const partial = compositeBudgetRow(
            16,
            { kind: 'answered', instructions: 1_000, complete: false },
            { complete: true, instructions: 1 }
        );
        expect(partial.row.target?.pass).toBe(false);
    });

    it('passes a typed refusal only when the update fallback answers completely', () => {
        const refused = {
            kind: 'refused',
            resource: 'composite_fanout_shards',
            limit: 32,
            instructions: 5
        } as const;
        const fallsBack = compositeBudgetRow(64, refused, { complete: true, instructions: 900 });
        expect(fallsBack.mode).toBe('falls_back_to_update');
        expect(fallsBack.row.target?.pass).toBe(true);
        expect(fallsBack.row.value).toBe(900);
        expect(fallsBack.row.target?.text).toContain('composite_fanout_shards > 32');
        expect(
            compositeBudgetRow(64, refused, { complete: false, instructions: 900 }).row.target?.pass
        ).toBe(false);
    });

    it('fails a composite dashboard the system rejected (e.g. over the instruction limit)', () => {
        const rejected = compositeBudgetRow(
            64,
            { kind: 'rejected', message: 'IC0522' },
            { complete: true, instructions: 1 }
        );
        expect(rejected.mode).toBe('rejected');
        expect(rejected.row.target?.pass).toBe(false);
    });

    it('extrapolates a composite cost linearly to another width', () => {
        const a = { shards: 1, instructions: 100 };
        const b = { shards: 4, instructions: 400 };
        expect(projectLinear(a, b, 32)).toBe(3_200);
        expect(() => projectLinear(a, a, 32)).toThrow(/two different/);
    });
});

describe('system benchmark: plan', () => {
    it('measures 1 to 64 shards in a full run and 1 and 4 in a quick one', () => {
        expect(planOf(false).shardCounts).toEqual([1, 4, 16, 64]);
        expect(planOf(false).loans).toBe(1_000);
        expect(planOf(true).shardCounts).toEqual([1, 4]);
        expect(planOf(true, 30).loans).toBe(30);
    });
});

describe('system benchmark: README tables', () => {
    it('formats instruction counts in M and B', () => {
        expect(formatInstructions(836_758)).toBe('0.84 M');
        expect(formatInstructions(29_072_195)).toBe('29.1 M');
        expect(formatInstructions(3_210_249_470)).toBe('3.21 B');
        expect(formatInstructions(70_726_518_056)).toBe('70.7 B');
        expect(formatInstructions(undefined)).toBe('—');
    });

    it('prints one line per deployment width and every target with its verdict', () => {
        const text = markdownReport({
            quick: false,
            plan: { shardCounts: [1, 64], opsShards: 4, samples: 8, loans: 1_000 },
            figures: {
                'create_loan.routed.instructions': 30e6,
                'investor_dashboard.composite.s1.instructions': 100e6,
                'investor_dashboard.composite.s64.refusal_instructions': 2e6,
                'investor_dashboard.update.s64.instructions': 3e9,
                'investor_dashboard.update.s64.rounds': 1,
                'investor_dashboard.composite.s64.rounds': 0,
                'migration.loans_moved': 1_000
            },
            rows: [
                routerOverheadRow(30e6, 10e6),
                cacheHitRow(1, 100),
                { key: 'no.target', value: 1, unit: 'rounds' }
            ],
            notes: {}
        });
        expect(text).toContain('| `create_loan` through the router | 30.0 M |');
        expect(text).toContain('| 1 | 100.0 M | — |');
        expect(text).toContain('| 64 | refused (`CapacityExceeded`), 2.00 M | 3.00 B | 1 / 0 |');
        expect(text).toContain('migration of 1,000 loans');
        expect(text).toMatch(/create_loan\.router_overhead.*\| 2 fraction \| FAIL \|/);
        expect(text).toMatch(/farmer_dashboard\.hit_over_miss.*\| PASS \|/);
        expect(text).not.toContain('no.target');
    });
});
