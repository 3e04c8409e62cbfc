import { IDL } from '@dfinity/candid';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
    candidPrefix,
    concatBytes,
    decodeLoanValue,
    decodeNewLoanArg,
    encodeLoanValue,
    encodeNewLoanValue,
    lebBytes
} from '../../src/shared/loan_codec';
import { ShardLoanPage } from '../../src/shared/shard_api';
import { Loan, NewLoan, Result } from '../../src/shared/types';
import { loanArb as anyLoan, nat64, optNat64, principal } from './arbitraries';

const loanArb = anyLoan(5, 40);

/** The value bytes `IDL.encode` writes for one loan, after its (constant) type table. */
function idlValueBytes(loan: Loan): Uint8Array {
    const full = new Uint8Array(IDL.encode([Loan], [loan]));
    const ours = encodeLoanValue(loan);
    return full.slice(full.length - ours.length);
}

describe('loan codec', () => {
    it('writes the bytes IDL.encode writes, and reads back what IDL.decode reads', () => {
        fc.assert(
            fc.property(loanArb, (loan) => {
                const ours = encodeLoanValue(loan);
                expect(ours).toEqual(idlValueBytes(loan));
                const prefix = candidPrefix([Loan], [loan], ours);
                const viaIdl = IDL.decode([Loan], concatBytes([prefix, ours]))[0];
                expect(decodeLoanValue(ours)).toEqual(viaIdl);
                expect(decodeLoanValue(ours)).toEqual(loan);
            }),
            { numRuns: 300 }
        );
    });

    it('has one type-table prefix for every loan, so stored bytes can follow it in a reply', () => {
        fc.assert(
            fc.property(loanArb, loanArb, (a, b) => {
                const okA = candidPrefix([Result(Loan)], [{ Ok: a }], encodeLoanValue(a));
                const okB = candidPrefix([Result(Loan)], [{ Ok: b }], encodeLoanValue(b));
                expect(okA).toEqual(okB);
                const reply = concatBytes([okA, encodeLoanValue(b)]);
                expect(IDL.decode([Result(Loan)], reply)[0]).toEqual({ Ok: b });
            }),
            { numRuns: 50 }
        );
    });

    it('builds a page reply from stored bytes that decodes as the page', () => {
        fc.assert(
            fc.property(fc.array(loanArb, { maxLength: 6 }), (loans) => {
                const empty = { loans: [], next_cursor: [] };
                const prefix = candidPrefix(
                    [Result(ShardLoanPage)],
                    [{ Ok: empty }],
                    concatBytes([lebBytes(0), new Uint8Array([0])])
                );
                const body = concatBytes([
                    lebBytes(loans.length),
                    ...loans.map(encodeLoanValue),
                    new Uint8Array([0])
                ]);
                const decoded = IDL.decode([Result(ShardLoanPage)], concatBytes([prefix, body]));
                expect(decoded[0]).toEqual({ Ok: { loans, next_cursor: [] } });
            }),
            { numRuns: 30 }
        );
    });

    it('rejects truncated, trailing and malformed bytes', () => {
        const loan = fc.sample(loanArb, { numRuns: 1, seed: 7 })[0];
        const bytes = encodeLoanValue(loan);
        expect(() => decodeLoanValue(bytes.slice(0, bytes.length - 1))).toThrow(/truncated/);
        expect(() => decodeLoanValue(concatBytes([bytes, new Uint8Array([0])]))).toThrow(
            /trailing/
        );
        expect(() => candidPrefix([Loan], [loan], new Uint8Array([1, 2, 3]))).toThrow();
    });

    it('writes LEB128 as Candid does', () => {
        for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31]) {
            const w = lebBytes(n);
            const viaIdl = new Uint8Array(IDL.encode([IDL.Nat], [BigInt(n)]));
            expect(viaIdl.slice(viaIdl.length - w.length)).toEqual(w);
        }
    });

    it('decodes a NewLoan argument as IDL.decode does, and declines other encodings', () => {
        const newLoanArb = fc
            .record({
                borrower: principal,
                nft_id: nat64,
                collateral_value_btc: nat64,
                amount_requested: nat64,
                apr: nat64,
                due_date: optNat64
            })
            .map((a) => ({ ...a }));
        fc.assert(
            fc.property(newLoanArb, (application) => {
                const arg = new Uint8Array(IDL.encode([NewLoan], [application]));
                expect(arg.slice(arg.length - encodeNewLoanValue(application).length)).toEqual(
                    encodeNewLoanValue(application)
                );
                expect(decodeNewLoanArg(arg)).toEqual(IDL.decode([NewLoan], arg)[0]);
                // Two arguments, or a trailing byte: not the plain encoding, so the caller decodes.
                const two = new Uint8Array(IDL.encode([NewLoan, IDL.Nat], [application, 1n]));
                expect(decodeNewLoanArg(two)).toBeUndefined();
                expect(decodeNewLoanArg(concatBytes([arg, new Uint8Array([0])]))).toBeUndefined();
                expect(decodeNewLoanArg(arg.slice(0, arg.length - 1))).toBeUndefined();
            }),
            { numRuns: 200 }
        );
    });
});
