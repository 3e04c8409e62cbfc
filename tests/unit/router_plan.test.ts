import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { encodeCursor, u64KeyCodec } from '../../src/shared/aggregation';
import { SLOT_COUNT } from '../../src/shared/limits';
import { newLoanRecord } from '../../src/shared/loan';
import {
    farmerDashboard,
    investorDashboard,
    isBreakerFailure,
    mergeUserLoans,
    nextRandomU32,
    planPage,
    randomSource,
    snapshotOf,
    systemAnalytics,
    userTag,
    userTagsOf,
    validateRoutingTable,
    type BalancerShard,
    type ShardAnswer
} from '../../src/shared/router_plan';
import type { Loan, RoutingTable } from '../../src/shared/types';

function who(n: number): Principal {
    const bytes = new Uint8Array(29);
    bytes[0] = n + 1;
    bytes[28] = 0x02;
    return Principal.fromUint8Array(bytes);
}

function loan(id: bigint, borrower: Principal, over: Partial<Loan> = {}): Loan {
    const base = newLoanRecord(
        id,
        {
            borrower,
            nft_id: 1n,
            collateral_value_btc: 10n,
            amount_requested: 1_000n,
            apr: 1_000n,
            due_date: []
        },
        5n
    );
    return { ...base, ...over };
}

const HALF = SLOT_COUNT / 2;
const TABLE: RoutingTable = {
    epoch: 2n,
    ranges: [
        { start: 0, end: HALF - 1, shard_id: 1 },
        { start: HALF, end: SLOT_COUNT - 1, shard_id: 2 }
    ],
    shards: [
        { shard_id: 1, canister_id: who(1), region: 'eu' },
        { shard_id: 2, canister_id: who(2), region: 'asia' }
    ]
};

describe('validateRoutingTable', () => {
    it('accepts a table covering every slot with a newer epoch', () => {
        const r = validateRoutingTable(TABLE, 1n);
        expect('Ok' in r && r.Ok.owners[HALF]).toBe(2);
    });

    it('refuses an epoch that does not grow, gaps, unaddressed owners and duplicate shards', () => {
        expect(validateRoutingTable(TABLE, 2n)).toMatchObject({
            Err: { InvalidInput: { field: 'epoch' } }
        });
        expect(validateRoutingTable({ ...TABLE, ranges: TABLE.ranges.slice(1) }, 0n)).toMatchObject(
            { Err: { InvalidInput: { field: 'ranges' } } }
        );
        expect(validateRoutingTable({ ...TABLE, shards: TABLE.shards.slice(1) }, 0n)).toMatchObject(
            { Err: { InvalidInput: { field: 'shards' } } }
        );
        const twice = { ...TABLE, shards: [...TABLE.shards, TABLE.shards[0]] };
        expect(validateRoutingTable(twice, 0n)).toMatchObject({
            Err: { InvalidInput: { field: 'shards' } }
        });
    });
});

describe('isBreakerFailure', () => {
    it('counts rejects and ShardUnavailable as failures, business errors as successes', () => {
        expect(isBreakerFailure({ rejected: true })).toBe(true);
        const unavailable = { Err: { ShardUnavailable: { shard_id: 1, reason: 'x' } } };
        expect(isBreakerFailure({ rejected: false, reply: unavailable })).toBe(true);
        const invalid = { Err: { InvalidInput: { field: 'a', reason: 'b' } } };
        expect(isBreakerFailure({ rejected: false, reply: invalid })).toBe(false);
        const wrong = { Err: { WrongShard: { slot: 1, epoch: 2n } } };
        expect(isBreakerFailure({ rejected: false, reply: wrong })).toBe(false);
        expect(isBreakerFailure({ rejected: false, reply: { Ok: null } })).toBe(false);
    });
});

describe('random draws', () => {
    it('replays the same sequence from the same state and never sticks at zero', () => {
        fc.assert(
            fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (seed) => {
                const a = { state: seed };
                const b = { state: seed };
                const drawA = randomSource(a);
                const drawB = randomSource(b);
                for (let i = 0; i < 8; i++) {
                    const x = drawA();
                    expect(x).toBe(drawB());
                    expect(x).toBeGreaterThan(0);
                    expect(x).toBeLessThan(2 ** 32);
                }
                expect(a.state).toBe(b.state);
            })
        );
        expect(nextRandomU32(0).value).toBe(nextRandomU32(0x9e3779b9).value);
    });
});

describe('snapshotOf', () => {
    it('marks Open and ForcedOpen breakers as open, not HalfOpen', () => {
        const shards: BalancerShard[] = [1, 2, 3].map((shard_id) => ({
            shard_id,
            canister_id: who(shard_id).toText(),
            region: 'eu',
            weight: 1,
            healthy: true,
            ewma_latency_ms: 3,
            last_sample_at_ms: 0,
            resource_usage: 0.5
        }));
        const states: Record<number, string> = { 1: 'Open', 2: 'ForcedOpen', 3: 'HalfOpen' };
        const snapshot = snapshotOf(
            shards,
            (id) => states[id],
            (id) => id * 10
        );
        expect(snapshot.map((s) => s.breakerOpen)).toEqual([true, true, false]);
        expect(snapshot.map((s) => s.inFlight)).toEqual([10, 20, 30]);
        expect(snapshot[0]).toMatchObject({ ewmaLatencyMs: 3, resourceUsage: 0.5, region: 'eu' });
    });
});

describe('planPage', () => {
    it('defaults the limit, bounds it and decodes the cursor', () => {
        expect(planPage([])).toEqual({ Ok: { limit: 100, after: null } });
        expect(planPage([{ cursor: [], limit: [501] }])).toMatchObject({
            Err: { InvalidInput: { field: 'limit' } }
        });
        expect(planPage([{ cursor: [], limit: [0] }])).toMatchObject({
            Err: { InvalidInput: { field: 'limit' } }
        });
        expect(planPage([{ cursor: ['nope'], limit: [] }])).toMatchObject({
            Err: { InvalidInput: { field: 'cursor' } }
        });
        const cursor = encodeCursor(42n, u64KeyCodec);
        expect(planPage([{ cursor: [cursor], limit: [5] }])).toEqual({
            Ok: { limit: 5, after: 42n }
        });
    });
});

describe('mergeUserLoans', () => {
    const me = who(7);
    const page = (shard_id: number, ids: bigint[], more = false): ShardAnswer => ({
        shard_id,
        ok: true,
        page: {
            loans: ids.map((id) => loan(id, me)),
            next_cursor: more ? [ids[ids.length - 1]] : []
        }
    });

    it('merges borrower and investor lists in id order, a loan in both once', () => {
        const r = mergeUserLoans(page(1, [1n, 5n]), [page(1, [5n, 9n]), page(2, [3n])], {
            limit: 10,
            after: null
        });
        expect('Ok' in r && r.Ok.loans.map((l) => l.id)).toEqual([1n, 3n, 5n, 9n]);
        expect('Ok' in r && r.Ok.complete).toBe(true);
    });

    it('reports the borrower shard by its id when it fails, and pages without gaps', () => {
        const failed: ShardAnswer = { shard_id: 1, ok: false, error: 'down' };
        const r = mergeUserLoans(failed, [page(2, [2n, 4n], true)], { limit: 1, after: null });
        if (!('Ok' in r)) throw new Error('expected Ok');
        expect(r.Ok.complete).toBe(false);
        expect(r.Ok.failed_shards).toEqual([1]);
        expect(r.Ok.loans.map((l) => l.id)).toEqual([2n]);
        expect(r.Ok.next_cursor.length).toBe(1);
    });
});

describe('dashboards', () => {
    const farmer = who(1);
    const investor = who(2);

    it('sums a farmer loans by status, disbursed amounts and what active loans owe', () => {
        const loans = [
            loan(1n, farmer, {
                status: { Active: null },
                amount_approved: 1_000n,
                total_repaid: 100n
            }),
            loan(2n, farmer, {
                status: { Repaid: null },
                amount_approved: 500n,
                total_repaid: 550n
            }),
            loan(3n, farmer),
            loan(3n, farmer)
        ];
        const d = farmerDashboard(farmer, loans, [], 9n);
        expect(d.total_loans).toBe(3n);
        expect(d.active_loans).toBe(1n);
        expect(d.total_borrowed).toBe(1_500n);
        expect(d.total_repaid).toBe(650n);
        expect(d.outstanding_balance).toBe(1_000n);
        expect(d.by_status).toEqual([
            { status: { PendingApplication: null }, count: 1n },
            { status: { Active: null }, count: 1n },
            { status: { Repaid: null }, count: 1n }
        ]);
        expect(d.complete).toBe(true);
    });

    it('counts only the investor own funding, and lists failed shards', () => {
        const funded = loan(4n, farmer, {
            funders: [
                { investor, amount: 300n },
                { investor: who(3), amount: 700n }
            ]
        });
        const d = investorDashboard(investor, [funded], [3, 1], 9n);
        expect(d.total_invested).toBe(300n);
        expect(d.total_investments).toBe(1n);
        expect(d.complete).toBe(false);
        expect(d.failed_shards).toEqual([1, 3]);
        expect(userTagsOf(funded)).toEqual([userTag(farmer), userTag(investor), userTag(who(3))]);
    });

    it('adds shard counters for system analytics and lists the missing shards', () => {
        const stats = (shard_id: number, loans: bigint) => ({
            shard_id,
            loan_count: loans,
            owned_slots: 10,
            by_status: [{ status: { Active: null }, count: loans }],
            total_requested: loans * 10n,
            total_approved: loans,
            total_repaid: 1n,
            read_only: false,
            epoch: 1n
        });
        const a = systemAnalytics(
            [
                { shard_id: 2, avg_response_time_ms: 1, ok: true, stats: stats(2, 3n) },
                { shard_id: 1, avg_response_time_ms: 2, ok: true, stats: stats(1, 4n) },
                { shard_id: 3, avg_response_time_ms: 0, ok: false }
            ],
            9n
        );
        expect(a.total_loans).toBe(7n);
        expect(a.total_requested).toBe(70n);
        expect(a.by_status).toEqual([{ status: { Active: null }, count: 7n }]);
        expect(a.total_shards).toBe(3);
        expect(a.healthy_shards).toBe(2);
        expect(a.shards.map((s) => s.shard_id)).toEqual([1, 2]);
        expect(a.failed_shards).toEqual([3]);
        expect(a.complete).toBe(false);
    });
});
