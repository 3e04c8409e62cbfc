import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { decodeLoanPageValue, encodeLoanPageValue } from '../../src/shared/loan_codec';
import {
    decodeNat64Arg,
    decodeOkLoanPageReply,
    decodePrincipalArg,
    encodeOkFarmerReply,
    encodeOkInvestorReply,
    encodeOkPrincipalReply,
    OkReplyCodec,
    encodePrincipalValue,
    principalKey,
    principalText
} from '../../src/shared/router_codec';
import { ShardLoanPage, ShardStats } from '../../src/shared/shard_api';
import {
    FarmerDashboard,
    InvestorDashboard,
    Result,
    SystemAnalytics
} from '../../src/shared/types';
import { loanArb as anyLoan, loanStatus, nat64, optNat64, principal } from './arbitraries';

const status = loanStatus;
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

    it('keys principals by their bytes and remembers their text', () => {
        fc.assert(
            fc.property(principal, principal, (a, b) => {
                expect(principalKey(a) === principalKey(b)).toBe(a.toText() === b.toText());
                expect(principalText(a)).toBe(a.toText());
                expect(principalText(a)).toBe(a.toText());
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
                expect(mine).toEqual(theirs.Ok);
                // The decoded loans carry their bytes: re-encoding the page gives the same bytes.
                const value = encodeLoanPageValue(mine!);
                expect(value).toEqual(reply.subarray(reply.length - value.length));
                expect(decodeLoanPageValue(value)).toEqual(theirs.Ok);
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
                expect(encodeOkFarmerReply(d)).toEqual(theirs);
            })
        );
        fc.assert(
            fc.property(investorArb, (d) => {
                const theirs = encoded([Result(InvestorDashboard)], [{ Ok: d }]);
                expect(encodeOkInvestorReply(d)).toEqual(theirs);
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
