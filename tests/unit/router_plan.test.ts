import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { encodeCursor, u64KeyCodec } from '../../src/shared/aggregation';
import { SLOT_COUNT } from '../../src/shared/limits';
import { newLoanRecord, totalDue } from '../../src/shared/loan';
import {
    concatBytes,
    encodeLoanValue,
    loanPeopleKeys,
    loanViewOf,
    viewBytes,
    viewId
} from '../../src/shared/loan_codec';
import { encodeOkFarmerReply, encodeOkInvestorReply } from '../../src/shared/router_codec';
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
    userTagsOfBytes,
    validateRoutingTable,
    type BalancerShard,
    type ShardAnswer
} from '../../src/shared/router_plan';
import {
    FarmerDashboard,
    InvestorDashboard,
    LOAN_STATUSES,
    Result,
    type Loan,
    type RoutingTable,
    type StatusCount
} from '../../src/shared/types';
import { loanArb, loanStatus, principal } from './arbitraries';

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
            loans: ids.map((id) => loanViewOf(loan(id, me))),
            next_cursor: more ? [ids[ids.length - 1]] : []
        }
    });

    it('merges borrower and investor lists in id order, a loan in both once', () => {
        const r = mergeUserLoans(page(1, [1n, 5n]), [page(1, [5n, 9n]), page(2, [3n])], {
            limit: 10,
            after: null
        });
        expect('Ok' in r && r.Ok.loans.map(viewId)).toEqual([1n, 3n, 5n, 9n]);
        expect('Ok' in r && r.Ok.complete).toBe(true);
    });

    it('reports the borrower shard by its id when it fails, and pages without gaps', () => {
        const failed: ShardAnswer = { shard_id: 1, ok: false, error: 'down' };
        const r = mergeUserLoans(failed, [page(2, [2n, 4n], true)], { limit: 1, after: null });
        if (!('Ok' in r)) throw new Error('expected Ok');
        expect(r.Ok.complete).toBe(false);
        expect(r.Ok.failed_shards).toEqual([1]);
        expect(r.Ok.loans.map(viewId)).toEqual([2n]);
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
        const d = farmerDashboard(farmer, loans.map(loanViewOf), [], 9n);
        expect(d.loans.map(viewId)).toEqual([1n, 2n, 3n]);
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
        const d = investorDashboard(investor, [loanViewOf(funded)], [3, 1], 9n);
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

/** The dashboards as plain `Loan` objects define them: the oracle of the view-based ones. */
function uniqueLoans(loans: readonly Loan[]): Loan[] {
    const sorted = [...loans].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return sorted.filter((loan, i) => i === 0 || sorted[i - 1].id !== loan.id);
}

function statusCounts(loans: readonly Loan[]): StatusCount[] {
    return LOAN_STATUSES.map((name) => ({
        status: { [name]: null } as StatusCount['status'],
        count: BigInt(loans.filter((l) => name in l.status).length)
    })).filter((c) => c.count > 0n);
}

function farmerOracle(farmer: Principal, loans: Loan[], failed: number[]): FarmerDashboard {
    const all = uniqueLoans(loans);
    const active = all.filter((l) => 'Active' in l.status);
    const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);
    return {
        farmer,
        loans: all,
        total_loans: BigInt(all.length),
        active_loans: BigInt(active.length),
        total_borrowed: sum(
            all
                .filter(
                    (l) => 'Active' in l.status || 'Repaid' in l.status || 'Defaulted' in l.status
                )
                .map((l) => l.amount_approved)
        ),
        total_repaid: sum(all.map((l) => l.total_repaid)),
        outstanding_balance: sum(
            active.map((l) => (totalDue(l) > l.total_repaid ? totalDue(l) - l.total_repaid : 0n))
        ),
        by_status: statusCounts(all),
        complete: failed.length === 0,
        failed_shards: [...failed].sort((a, b) => a - b),
        generated_at: 9n
    };
}

function investorOracle(investor: Principal, loans: Loan[], failed: number[]): InvestorDashboard {
    const all = uniqueLoans(loans);
    let invested = 0n;
    for (const l of all) {
        for (const f of l.funders)
            if (f.investor.toText() === investor.toText()) invested += f.amount;
    }
    return {
        investor,
        investments: all,
        total_investments: BigInt(all.length),
        active_investments: BigInt(all.filter((l) => 'Active' in l.status).length),
        total_invested: invested,
        total_repaid_on_funded_loans: all.reduce((a, l) => a + l.total_repaid, 0n),
        by_status: statusCounts(all),
        complete: failed.length === 0,
        failed_shards: [...failed].sort((a, b) => a - b),
        generated_at: 9n
    };
}

describe('dashboards over loan views', () => {
    const me = principal;
    /** Loans with ids drawn from a few values (duplicates, any order) and small amounts. */
    const amount = fc.oneof(
        fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }),
        fc.bigInt({ min: 0n, max: (1n << 40n) - 1n })
    );
    const loansFor = (investor: Principal) =>
        fc.array(
            fc
                .record({
                    base: loanArb(2, 3),
                    id: fc.bigInt({ min: 0n, max: 12n }).map((n) => (n << 48n) | n),
                    status: loanStatus,
                    amount_approved: amount,
                    apr: fc.oneof(
                        fc.bigInt({ min: 0n, max: 100_000n }),
                        fc.bigInt({ min: 0n, max: (1n << 22n) - 1n })
                    ),
                    total_repaid: amount,
                    mine: fc.option(amount, { nil: undefined })
                })
                .map((x) => ({
                    ...x.base,
                    id: x.id,
                    status: { ...x.status },
                    amount_approved: x.amount_approved,
                    apr: x.apr,
                    total_repaid: x.total_repaid,
                    funders: [
                        ...x.base.funders.map((f) => ({ ...f, amount: f.amount >> 24n })),
                        ...(x.mine === undefined ? [] : [{ investor, amount: x.mine }])
                    ]
                })),
            { maxLength: 12 }
        );
    const failed = fc.array(fc.nat({ max: 9 }), { maxLength: 3 });

    it('sum, count and list as the object definitions do, in reply bytes IDL.encode writes', () => {
        fc.assert(
            fc.property(
                me.chain((p) => fc.tuple(fc.constant(p), loansFor(p), failed)),
                ([user, loans, down]) => {
                    const views = loans.map(loanViewOf);
                    const farmer = farmerDashboard(user, views, down, 9n);
                    const farmerWant = farmerOracle(user, loans, down);
                    expect({ ...farmer, loans: farmer.loans.map(viewId) }).toEqual({
                        ...farmerWant,
                        loans: farmerWant.loans.map((l) => l.id)
                    });
                    expect(farmer.loans.map(viewBytes)).toEqual(
                        farmerWant.loans.map((l) => viewBytes(loanViewOf(l)))
                    );
                    expect(encodeOkFarmerReply(farmer)).toEqual(
                        new Uint8Array(IDL.encode([Result(FarmerDashboard)], [{ Ok: farmerWant }]))
                    );
                    const investor = investorDashboard(user, views, down, 9n);
                    const investorWant = investorOracle(user, loans, down);
                    expect({ ...investor, investments: investor.investments.map(viewId) }).toEqual({
                        ...investorWant,
                        investments: investorWant.investments.map((l) => l.id)
                    });
                    expect(encodeOkInvestorReply(investor)).toEqual(
                        new Uint8Array(
                            IDL.encode([Result(InvestorDashboard)], [{ Ok: investorWant }])
                        )
                    );
                }
            ),
            { numRuns: 150 }
        );
    });

    it('sums amounts near 2^64 exactly', () => {
        const big = (1n << 64n) - 1n;
        const loans = [1n, 2n, 3n].map((id) =>
            loan(id, who(1), {
                status: { Repaid: null },
                amount_approved: big,
                total_repaid: big - id
            })
        );
        const d = farmerDashboard(who(1), loans.map(loanViewOf), [], 9n);
        expect(d.total_borrowed).toBe(3n * big);
        expect(d.total_repaid).toBe(3n * big - 6n);
    });
});

describe('cache tags of a written loan', () => {
    it('are read from its bytes as from the loan, whatever form the bytes have', () => {
        fc.assert(
            fc.property(loanArb(2, 4), (loan) => {
                const bytes = encodeLoanValue(loan);
                expect(userTagsOfBytes(bytes)).toEqual(userTagsOf(loan));
                expect(loanPeopleKeys(bytes)?.length).toBe(1 + loan.funders.length);
                // The same loan with its funders' count in two bytes: decoded, same tags.
                const at = loanViewOf(loan).fundersAt;
                const wide = concatBytes([
                    bytes.subarray(0, at),
                    new Uint8Array([bytes[at] | 0x80, 0]),
                    bytes.subarray(at + 1)
                ]);
                expect(loanPeopleKeys(wide)).toBeUndefined();
                expect(userTagsOfBytes(wide)).toEqual(userTagsOf(loan));
            }),
            { numRuns: 100 }
        );
    });
});
