import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
    encodeLoanPageValue,
    loanViewOf,
    okLoanPrefix,
    scanLoanPageValue,
    viewBytes,
    viewId,
    type LoanView
} from '../../src/shared/loan_codec';
import {
    ArgsCodec,
    decodeNat64Arg,
    decodeOkLoanPageReply,
    decodePrincipalArg,
    decodeRoutingTableBytes,
    encodeErrFarmerReply,
    encodeErrInvestorReply,
    encodeErrPrincipalReply,
    encodeUnitReply,
    encodeUserLoanPageReply,
    ErrReplyCodec,
    encodeOkFarmerReply,
    encodeOkInvestorReply,
    encodeOkPrincipalReply,
    OkReplyCodec,
    encodePrincipalValue,
    principalFromText,
    principalKey,
    principalText
} from '../../src/shared/router_codec';
import { SHARD_METHODS, ShardLoanPage, ShardStats } from '../../src/shared/shard_api';
import {
    ApiError,
    FarmerDashboard,
    InvestorDashboard,
    LoadBalancerStats,
    Loan,
    LoanPage,
    Page,
    Result,
    RoutingTable,
    SystemAnalytics,
    UnitResult
} from '../../src/shared/types';
import { loanArb as anyLoan, loanStatus, nat64, optNat64, principal } from './arbitraries';

const status = loanStatus;
const views = (list: readonly Loan[]): LoanView[] => list.map(loanViewOf);
const loanArb = anyLoan(3, 4);
const loans = fc.array(loanArb, { maxLength: 4 });
const statusCounts = fc.array(
    fc.record({ status, count: nat64 }).map((c) => ({ status: { ...c.status }, count: c.count })),
    { maxLength: 6 }
);
const shardIds = fc.array(fc.nat({ max: 0xffff_ffff }), { maxLength: 5 });

const farmerArb: fc.Arbitrary<FarmerDashboard> = fc
    .record({
        farmer: principal,
        loans,
        total_loans: nat64,
        active_loans: nat64,
        total_borrowed: nat64,
        total_repaid: nat64,
        outstanding_balance: nat64,
        by_status: statusCounts,
        complete: fc.boolean(),
        failed_shards: shardIds,
        generated_at: nat64
    })
    .map((d) => ({ ...d }));
const investorArb: fc.Arbitrary<InvestorDashboard> = fc
    .record({
        investor: principal,
        investments: loans,
        total_investments: nat64,
        active_investments: nat64,
        total_invested: nat64,
        total_repaid_on_funded_loans: nat64,
        by_status: statusCounts,
        complete: fc.boolean(),
        failed_shards: shardIds,
        generated_at: nat64
    })
    .map((d) => ({ ...d }));

function encoded(types: IDL.Type[], values: unknown[]): Uint8Array {
    return new Uint8Array(IDL.encode(types, values));
}

describe('router codec', () => {
    it('decodes a (principal) argument as IDL.decode does', () => {
        fc.assert(
            fc.property(principal, (p) => {
                const arg = encoded([IDL.Principal], [p]);
                const mine = decodePrincipalArg(arg);
                const theirs = IDL.decode([IDL.Principal], arg)[0] as unknown as Principal;
                expect(mine?.toText()).toBe(theirs.toText());
            })
        );
    });

    it('decodes a (nat64) argument as IDL.decode does', () => {
        fc.assert(
            fc.property(nat64, (n) => {
                expect(decodeNat64Arg(encoded([IDL.Nat64], [n]))).toBe(n);
            })
        );
    });

    it('leaves every other encoding to IDL.decode (undefined, never a wrong value)', () => {
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 48 }), principal, nat64, (junk, p, n) => {
                const pArg = encoded([IDL.Principal], [p]);
                const nArg = encoded([IDL.Nat64], [n]);
                // Truncated, extended, or another type: not the usual encoding of the argument.
                expect(decodePrincipalArg(pArg.slice(0, pArg.length - 1))).toBeUndefined();
                expect(decodePrincipalArg(new Uint8Array([...pArg, 0]))).toBeUndefined();
                expect(decodeNat64Arg(nArg.slice(0, nArg.length - 1))).toBeUndefined();
                expect(decodeNat64Arg(new Uint8Array([...nArg, 0]))).toBeUndefined();
                expect(decodePrincipalArg(nArg)).toBeUndefined();
                expect(decodeNat64Arg(pArg)).toBeUndefined();
                // Arbitrary bytes decode to what IDL.decode says, or are left to it.
                const mine = decodePrincipalArg(junk);
                if (mine !== undefined) {
                    const theirs = IDL.decode([IDL.Principal], junk)[0] as unknown as Principal;
                    expect(mine.toText()).toBe(theirs.toText());
                }
                const num = decodeNat64Arg(junk);
                if (num !== undefined) expect(num).toBe(IDL.decode([IDL.Nat64], junk)[0]);
            })
        );
    });

    it('refuses a (principal) longer than 29 bytes', () => {
        const arg = new Uint8Array([
            0x44,
            0x49,
            0x44,
            0x4c,
            0,
            1,
            0x68,
            1,
            30,
            ...new Array(30).fill(7)
        ]);
        expect(decodePrincipalArg(arg)).toBeUndefined();
    });

    it('encodes Ok(principal) as IDL.encode does, and the reply decodes back', () => {
        fc.assert(
            fc.property(principal, (p) => {
                const expected = encoded([Result(IDL.Principal as never)], [{ Ok: p }]);
                const reply = encodeOkPrincipalReply(p);
                expect([...reply]).toEqual([...expected]);
                const back = IDL.decode([Result(IDL.Principal as never)], reply)[0] as unknown as {
                    Ok: Principal;
                };
                expect(back.Ok.toText()).toBe(p.toText());
                expect(encodePrincipalValue(p).length).toBeLessThan(reply.length);
            })
        );
    });

    it('keys principals by their bytes and remembers their text both ways', () => {
        fc.assert(
            fc.property(principal, principal, (a, b) => {
                expect(principalKey(a) === principalKey(b)).toBe(a.toText() === b.toText());
                expect(principalText(a)).toBe(a.toText());
                expect(principalText(a)).toBe(a.toText());
                expect(principalFromText(a.toText()).toText()).toBe(a.toText());
                expect(principalFromText(a.toText())).toBe(principalFromText(a.toText()));
            })
        );
    });

    it('decodes a shard Ok loan page reply as IDL.decode does, and splices its loan bytes', () => {
        fc.assert(
            fc.property(loans, optNat64, (page_loans, next_cursor) => {
                const page = { loans: page_loans, next_cursor };
                const reply = encoded([Result(ShardLoanPage)], [{ Ok: page }]);
                const mine = decodeOkLoanPageReply(reply);
                const theirs = IDL.decode([Result(ShardLoanPage)], reply)[0] as unknown as {
                    Ok: unknown;
                };
                const decoded = theirs.Ok as { loans: Loan[]; next_cursor: [] | [bigint] };
                // The views lie over each loan's own bytes, in order, with its id and status.
                expect(mine!.next_cursor).toEqual(decoded.next_cursor);
                expect(mine!.loans.map(viewId)).toEqual(decoded.loans.map((l) => l.id));
                expect(mine!.loans.map(viewBytes)).toEqual(
                    decoded.loans.map((l) => viewBytes(loanViewOf(l)))
                );
                const value = encodeLoanPageValue(decoded);
                expect(value).toEqual(reply.subarray(reply.length - value.length));
                expect(scanLoanPageValue(value).loans.map(viewId)).toEqual(
                    decoded.loans.map((l) => l.id)
                );
            })
        );
    });

    it('leaves an Err page reply and malformed bytes to IDL.decode', () => {
        const err = encoded([Result(ShardLoanPage)], [{ Err: { NotAuthorized: null } }]);
        expect(decodeOkLoanPageReply(err)).toBeUndefined();
        const ok = encoded([Result(ShardLoanPage)], [{ Ok: { loans: [], next_cursor: [5n] } }]);
        expect(decodeOkLoanPageReply(ok.subarray(0, ok.length - 1))).toBeUndefined();
        expect(decodeOkLoanPageReply(new Uint8Array([...ok, 0]))).toBeUndefined();
    });

    it('encodes Ok dashboard replies byte for byte as IDL.encode does', () => {
        fc.assert(
            fc.property(farmerArb, (d) => {
                const theirs = encoded([Result(FarmerDashboard)], [{ Ok: d }]);
                expect(encodeOkFarmerReply({ ...d, loans: views(d.loans) })).toEqual(theirs);
            })
        );
        fc.assert(
            fc.property(investorArb, (d) => {
                const theirs = encoded([Result(InvestorDashboard)], [{ Ok: d }]);
                expect(encodeOkInvestorReply({ ...d, investments: views(d.investments) })).toEqual(
                    theirs
                );
            })
        );
    });

    it('encodes and decodes Ok stats and analytics replies as IDL does', () => {
        const nat32 = fc.nat({ max: 0xffff_ffff });
        const statsArb: fc.Arbitrary<ShardStats> = fc
            .record({
                shard_id: nat32,
                loan_count: nat64,
                owned_slots: nat32,
                by_status: statusCounts,
                total_requested: nat64,
                total_approved: nat64,
                total_repaid: nat64,
                read_only: fc.boolean(),
                epoch: nat64
            })
            .map((x) => ({ ...x }));
        const summary = fc
            .record({
                shard_id: nat32,
                loan_count: nat64,
                storage_percentage: fc.double(),
                avg_response_time_ms: fc.double()
            })
            .map((x) => ({ ...x }));
        const analyticsArb: fc.Arbitrary<SystemAnalytics> = fc
            .record({
                total_loans: nat64,
                total_shards: nat32,
                healthy_shards: nat32,
                by_status: statusCounts,
                total_requested: nat64,
                total_approved: nat64,
                total_repaid: nat64,
                shards: fc.array(summary, { maxLength: 4 }),
                complete: fc.boolean(),
                failed_shards: shardIds,
                generated_at: nat64
            })
            .map((x) => ({ ...x }));
        const check = <T>(type: IDL.Type, arb: fc.Arbitrary<T>, sample: T): void => {
            const codec = new OkReplyCodec<T>(type, sample);
            fc.assert(
                fc.property(arb, (value) => {
                    const theirs = encoded([Result(type)], [{ Ok: value }]);
                    expect(codec.encodeOk(value)).toEqual(theirs);
                    const decoded = IDL.decode([Result(type)], theirs)[0] as unknown as { Ok: T };
                    expect(codec.decodeOk(theirs)).toEqual(decoded.Ok);
                })
            );
            const err = encoded([Result(type)], [{ Err: { NotAuthorized: null } }]);
            expect(codec.decodeOk(err)).toBeUndefined();
            const ok = codec.encodeOk(sample);
            expect(codec.decodeOk(ok.subarray(0, ok.length - 1))).toBeUndefined();
            expect(codec.decodeOk(new Uint8Array([...ok, 0]))).toBeUndefined();
        };
        check(ShardStats, statsArb, fc.sample(statsArb, { numRuns: 1, seed: 3 })[0]);
        check(SystemAnalytics, analyticsArb, fc.sample(analyticsArb, { numRuns: 1, seed: 5 })[0]);
    });
});

const nat32 = fc.nat({ max: 0xffff_ffff });
/** Texts of any code points (non-ASCII ones are left to IDL.decode by the decoders). */
const anyText = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 8 }));

const apiErrorArb: fc.Arbitrary<ApiError> = fc.oneof(
    fc.constant({ NotAuthorized: null }),
    fc.record({ field: anyText, reason: anyText }).map((v) => ({ InvalidInput: { ...v } })),
    fc.record({ what: anyText, id: anyText }).map((v) => ({ NotFound: { ...v } })),
    fc.record({ shard_id: nat32, reason: anyText }).map((v) => ({ ShardUnavailable: { ...v } })),
    fc.record({ slot: nat32, epoch: nat64 }).map((v) => ({ WrongShard: { ...v } })),
    fc.record({ reason: anyText, retriable: fc.boolean() }).map((v) => ({ ReadOnly: { ...v } })),
    fc.record({ resource: anyText, limit: nat64 }).map((v) => ({ CapacityExceeded: { ...v } })),
    fc
        .record({ from: loanStatus, action: anyText })
        .map((v) => ({ InvalidTransition: { from: { ...v.from }, action: v.action } })),
    fc.record({ reason: anyText }).map((v) => ({ Busy: { ...v } })),
    fc
        .record({ callee: principal, reject_code: nat32, message: anyText })
        .map((v) => ({ CallFailed: { ...v } }))
) as fc.Arbitrary<ApiError>;

const BEYOND_ASCII = /[\u0080-\uffff]/;
const ASCII_ONLY = { test: (text: string): boolean => !BEYOND_ASCII.test(text) };

/** Whether every text in the error is ASCII (what the hand decoder reads itself). */
function asciiError(error: ApiError): boolean {
    const payload = Object.values(error)[0] as Record<string, unknown> | null;
    return Object.values(payload ?? {}).every((v) => typeof v !== 'string' || ASCII_ONLY.test(v));
}

describe('router codec: Err replies and small values (P3)', () => {
    it('encodes Err replies byte for byte as IDL.encode does, for every reply type', () => {
        const loanErr = new ErrReplyCodec(okLoanPrefix());
        const replies: [IDL.Type, (e: ApiError) => Uint8Array][] = [
            [Result(Loan), (e) => loanErr.encode(e)],
            [Result(IDL.Principal as never), encodeErrPrincipalReply],
            [Result(FarmerDashboard), encodeErrFarmerReply],
            [Result(InvestorDashboard), encodeErrInvestorReply],
            [UnitResult, (e) => encodeUnitReply({ Err: e })]
        ];
        fc.assert(
            fc.property(apiErrorArb, (error) => {
                for (const [type, encode] of replies) {
                    expect(encode(error)).toEqual(encoded([type], [{ Err: error }]));
                }
            })
        );
    });

    it('decodes Err replies as IDL.decode does, leaving non-ASCII texts to it', () => {
        const loanErr = new ErrReplyCodec(okLoanPrefix());
        fc.assert(
            fc.property(apiErrorArb, (error) => {
                const reply = encoded([Result(Loan)], [{ Err: error }]);
                const theirs = IDL.decode([Result(Loan)], reply)[0] as unknown as {
                    Err: ApiError;
                };
                const mine = loanErr.decode(reply);
                if (asciiError(error)) expect(mine).toEqual(theirs.Err);
                else expect(mine === undefined || ASCII_ONLY.test(JSON.stringify(mine))).toBe(true);
                expect(loanErr.decode(reply.subarray(0, reply.length - 1))).toBeUndefined();
                expect(loanErr.decode(new Uint8Array([...reply, 0]))).toBeUndefined();
            })
        );
    });

    it('reads no Ok reply as an error, and no error as Ok', () => {
        const loanErr = new ErrReplyCodec(okLoanPrefix());
        const ok = encoded([UnitResult], [{ Ok: null }]);
        expect(encodeUnitReply({ Ok: null })).toEqual(ok);
        expect(new ErrReplyCodec(ok).decode(ok)).toBeUndefined();
        fc.assert(
            fc.property(loanArb, (loan) => {
                expect(loanErr.decode(encoded([Result(Loan)], [{ Ok: loan }]))).toBeUndefined();
            }),
            { numRuns: 20 }
        );
        expect(() => new ErrReplyCodec(new Uint8Array([0x44, 0x49, 0x44, 0x4c, 9]))).toThrow();
    });

    it('encodes Ok and Err load balancer statistics as IDL.encode does', () => {
        const algorithm = fc
            .constantFrom('RoundRobin', 'LeastConnections', 'ConsistentHashing', 'Geographic')
            .map((a) => ({ [a]: null }) as LoadBalancerStats['algorithm']);
        const state = fc
            .constantFrom('Closed', 'Open', 'HalfOpen', 'ForcedOpen', 'Disabled', 'MetricsOnly')
            .map((s) => ({ [s]: null }) as LoadBalancerStats['breakers'][number]['state']);
        const breaker = fc
            .record({
                shard_id: nat32,
                state,
                failure_rate_percent: fc.double(),
                slow_call_rate_percent: fc.double(),
                buffered_calls: nat32,
                failed_calls: nat32,
                slow_calls: nat32,
                not_permitted_calls: nat64,
                transitions: nat64,
                current_wait_ms: nat64,
                last_transition_at: nat64
            })
            .map((b) => ({ ...b, state: { ...b.state } }));
        const statsArb: fc.Arbitrary<LoadBalancerStats> = fc
            .record({
                algorithm,
                total_requests: nat64,
                failed_requests: nat64,
                rejected_by_breaker: nat64,
                breaker_transitions: nat64,
                per_shard: fc.array(
                    fc
                        .record({ shard_id: nat32, requests: nat64, failures: nat64 })
                        .map((c) => ({ ...c })),
                    { maxLength: 5 }
                ),
                breakers: fc.array(breaker, { maxLength: 5 }),
                routing_epoch: nat64
            })
            .map((s) => ({ ...s, algorithm: { ...s.algorithm } }));
        const codec = new OkReplyCodec<LoadBalancerStats>(
            LoadBalancerStats,
            fc.sample(statsArb, { numRuns: 1, seed: 7 })[0]
        );
        fc.assert(
            fc.property(statsArb, apiErrorArb, (stats, error) => {
                const type = Result(LoadBalancerStats);
                expect(codec.encodeReply({ Ok: stats })).toEqual(encoded([type], [{ Ok: stats }]));
                expect(codec.encodeReply({ Err: error })).toEqual(
                    encoded([type], [{ Err: error }])
                );
            })
        );
    });

    it('decodes a routing table as IDL.decode does, and leaves anything else to it', () => {
        const region = fc.oneof(fc.constantFrom('eu', 'asia', ''), anyText);
        const tableArb: fc.Arbitrary<RoutingTable> = fc
            .record({
                epoch: nat64,
                ranges: fc.array(
                    fc.record({ start: nat32, end: nat32, shard_id: nat32 }).map((r) => ({ ...r })),
                    { maxLength: 6 }
                ),
                shards: fc.array(
                    fc
                        .record({ shard_id: nat32, canister_id: principal, region })
                        .map((a) => ({ ...a })),
                    { maxLength: 4 }
                )
            })
            .map((t) => ({ ...t }));
        fc.assert(
            fc.property(tableArb, fc.uint8Array({ maxLength: 64 }), (table, junk) => {
                const bytes = encoded([RoutingTable], [table]);
                const theirs = IDL.decode([RoutingTable], bytes)[0];
                const mine = decodeRoutingTableBytes(bytes);
                const ascii = table.shards.every((s) => ASCII_ONLY.test(s.region));
                if (ascii) expect(mine).toEqual(theirs);
                else if (mine !== undefined) expect(mine).toEqual(theirs);
                expect(
                    decodeRoutingTableBytes(bytes.subarray(0, bytes.length - 1))
                ).toBeUndefined();
                expect(decodeRoutingTableBytes(new Uint8Array([...bytes, 0]))).toBeUndefined();
                const fromJunk = decodeRoutingTableBytes(junk);
                if (fromJunk !== undefined) {
                    expect(fromJunk).toEqual(IDL.decode([RoutingTable], junk)[0]);
                }
            })
        );
    });

    it('encodes shard page requests as IDL.encode does', () => {
        const types = SHARD_METHODS.get_loans_by_investor.args;
        const codec = new ArgsCodec(types, [Principal.anonymous(), [], []]);
        fc.assert(
            fc.property(
                principal,
                optNat64,
                fc.option(nat32, { nil: undefined }),
                (p, after, n) => {
                    const args = [p, after, n === undefined ? [] : [n]];
                    const bytes = codec.encode(args);
                    expect(bytes).toEqual(encoded([...types], args));
                    expect(codec.decode(bytes)).toEqual(IDL.decode([...types], bytes));
                }
            )
        );
        expect(() => codec.encode([Principal.anonymous()])).toThrow();
    });

    it('decodes (principal, opt Page) arguments as IDL.decode does, or leaves them to it', () => {
        const types = [IDL.Principal, IDL.Opt(Page)];
        const codec = new ArgsCodec(types, [Principal.anonymous(), []]);
        const page = fc
            .record({
                cursor: fc.option(anyText, { nil: undefined }),
                limit: fc.option(nat32, { nil: undefined })
            })
            .map((p) => ({
                cursor: p.cursor === undefined ? [] : [p.cursor],
                limit: p.limit === undefined ? [] : [p.limit]
            }));
        const optPage = fc
            .option(page, { nil: undefined })
            .map((p) => (p === undefined ? [] : [p]));
        fc.assert(
            fc.property(principal, optPage, fc.uint8Array({ maxLength: 48 }), (p, o, junk) => {
                const bytes = encoded(types, [p, o]);
                const theirs = IDL.decode(types, bytes);
                const mine = codec.decode(bytes);
                const cursor = (o as { cursor: string[] }[])[0]?.cursor[0] ?? '';
                if (ASCII_ONLY.test(cursor)) expect(mine).toEqual(theirs);
                else if (mine !== undefined) expect(mine).toEqual(theirs);
                expect(codec.decode(bytes.subarray(0, bytes.length - 1))).toBeUndefined();
                expect(codec.decode(new Uint8Array([...bytes, 0]))).toBeUndefined();
                const fromJunk = codec.decode(junk);
                if (fromJunk !== undefined) expect(fromJunk).toEqual(IDL.decode(types, junk));
            })
        );
    });

    it('encodes Ok and Err user loan pages as IDL.encode does', () => {
        const pageArb: fc.Arbitrary<LoanPage> = fc
            .record({
                loans,
                next_cursor: fc.option(anyText, { nil: undefined }),
                complete: fc.boolean(),
                failed_shards: shardIds
            })
            .map((p) => ({
                ...p,
                next_cursor: p.next_cursor === undefined ? [] : [p.next_cursor]
            }));
        fc.assert(
            fc.property(pageArb, apiErrorArb, (page, error) => {
                const type = Result(LoanPage);
                expect(
                    encodeUserLoanPageReply({ Ok: { ...page, loans: views(page.loans) } })
                ).toEqual(encoded([type], [{ Ok: page }]));
                expect(encodeUserLoanPageReply({ Err: error })).toEqual(
                    encoded([type], [{ Err: error }])
                );
            })
        );
    });
});
