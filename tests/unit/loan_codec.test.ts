import { IDL } from '@dfinity/candid';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
    candidPrefix,
    concatBytes,
    decodeLoanValue,
    decodeLoanIdArg,
    decodeNewLoanArg,
    decodePrincipalPageArgs,
    decodeStatusPageArgs,
    decodeUpdateLoanArgs,
    encodeLoanValue,
    encodeNewLoanArg,
    encodeNewLoanValue,
    encodePrincipalPageArgs,
    encodeUpdateLoanArgs,
    encodeUpdateLoanArgValues,
    lebBytes,
    addFundingOf,
    LOAN_STATUS_ORDER,
    loanViewOf,
    nat64FromHalves,
    scanLoanPageValue,
    scanLoanValue,
    ValueReader,
    viewBytes,
    viewId,
    viewNat64
} from '../../src/shared/loan_codec';
import { latin1 } from '../../src/shared/router_codec';
import { ShardLoanPage } from '../../src/shared/shard_api';
import { Loan, LoanStatus, LoanUpdate, NewLoan, Result } from '../../src/shared/types';
import { loanArb as anyLoan, loanStatus, nat64, optNat64, principal } from './arbitraries';

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
                expect(encodeNewLoanArg(application)).toEqual(arg);
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

    it('decodes update_loan arguments as IDL.decode does, and leaves other encodings to it', () => {
        const change: fc.Arbitrary<LoanUpdate> = fc.oneof(
            fc.constant({ SubmitForApproval: null }),
            nat64.map((amount_approved) => ({ Approve: { amount_approved } })),
            fc.record({ investor: principal, amount: nat64 }).map((f) => ({ Fund: { ...f } })),
            fc.constant({ Activate: null }),
            nat64.map((amount) => ({ Repay: { amount } })),
            fc.constant({ MarkDefaulted: null })
        );
        fc.assert(
            fc.property(nat64, change, (id, update) => {
                const arg = new Uint8Array(IDL.encode([IDL.Nat64, LoanUpdate], [id, update]));
                const values = encodeUpdateLoanArgValues(id, update);
                expect(arg.slice(arg.length - values.length)).toEqual(values);
                expect(encodeUpdateLoanArgs(id, update)).toEqual(arg);
                const theirs = IDL.decode([IDL.Nat64, LoanUpdate], arg);
                expect(decodeUpdateLoanArgs(arg)).toEqual([...theirs]);
                expect(decodeUpdateLoanArgs(arg)).toEqual([id, update]);
                const three = new Uint8Array(
                    IDL.encode([IDL.Nat64, LoanUpdate, IDL.Nat], [id, update, 1n])
                );
                expect(decodeUpdateLoanArgs(three)).toBeUndefined();
                expect(
                    decodeUpdateLoanArgs(concatBytes([arg, new Uint8Array([0])]))
                ).toBeUndefined();
                expect(decodeUpdateLoanArgs(arg.slice(0, arg.length - 1))).toBeUndefined();
            }),
            { numRuns: 300 }
        );
    });

    it('leaves an update_loan argument with an unknown case to IDL.decode, which rejects it', () => {
        const arg = new Uint8Array(
            IDL.encode([IDL.Nat64, LoanUpdate], [7n, { MarkDefaulted: null }])
        );
        const bad = arg.slice();
        bad[bad.length - 1] = 6;
        expect(decodeUpdateLoanArgs(bad)).toBeUndefined();
        expect(() => IDL.decode([IDL.Nat64, LoanUpdate], bad)).toThrow();
    });

    it('decodes a loan id argument (nat64) as IDL.decode does', () => {
        fc.assert(
            fc.property(nat64, (id) => {
                const arg = new Uint8Array(IDL.encode([IDL.Nat64], [id]));
                expect(decodeLoanIdArg(arg)).toBe(IDL.decode([IDL.Nat64], arg)[0]);
                expect(decodeLoanIdArg(arg.slice(0, arg.length - 1))).toBeUndefined();
                expect(decodeLoanIdArg(concatBytes([arg, new Uint8Array([0])]))).toBeUndefined();
                const other = new Uint8Array(IDL.encode([IDL.Nat], [id]));
                expect(decodeLoanIdArg(other)).toBeUndefined();
            })
        );
    });

    it("decodes the paged reads' arguments as IDL.decode does", () => {
        const optNat32 = fc
            .option(fc.nat({ max: 0xffff_ffff }), { nil: undefined })
            .map((v): [] | [number] => (v === undefined ? [] : [v]));
        const tail = [IDL.Opt(IDL.Nat64), IDL.Opt(IDL.Nat32)];
        fc.assert(
            fc.property(principal, loanStatus, optNat64, optNat32, (p, status, cursor, limit) => {
                const byPrincipal = new Uint8Array(
                    IDL.encode([IDL.Principal, ...tail], [p, cursor, limit])
                );
                expect(encodePrincipalPageArgs({ key: p, cursor, limit })).toEqual(byPrincipal);
                const [key, c, l] = IDL.decode([IDL.Principal, ...tail], byPrincipal);
                expect(decodePrincipalPageArgs(byPrincipal)).toEqual({ key, cursor: c, limit: l });
                const byStatus = new Uint8Array(
                    IDL.encode([LoanStatus, ...tail], [status, cursor, limit])
                );
                const [s, c2, l2] = IDL.decode([LoanStatus, ...tail], byStatus);
                expect(decodeStatusPageArgs(byStatus)).toEqual({ key: s, cursor: c2, limit: l2 });
                expect(decodeStatusPageArgs(byStatus)).toEqual({ key: status, cursor, limit });
                for (const arg of [byPrincipal, byStatus]) {
                    const cut = arg.slice(0, arg.length - 1);
                    const padded = concatBytes([arg, new Uint8Array([0])]);
                    expect(
                        decodePrincipalPageArgs(cut) ?? decodeStatusPageArgs(cut)
                    ).toBeUndefined();
                    expect(
                        decodePrincipalPageArgs(padded) ?? decodeStatusPageArgs(padded)
                    ).toBeUndefined();
                }
                // The other argument types (e.g. no limit at all) are left to IDL.decode.
                const short = new Uint8Array(IDL.encode([IDL.Principal, tail[0]], [p, cursor]));
                expect(decodePrincipalPageArgs(short)).toBeUndefined();
            }),
            { numRuns: 300 }
        );
    });

    it('scans a loan into a view of its bytes, id, status and amounts, as decoding reads them', () => {
        fc.assert(
            fc.property(loanArb, (loan) => {
                const v = loanViewOf(loan);
                expect(viewBytes(v)).toEqual(encodeLoanValue(loan));
                expect(viewId(v)).toBe(loan.id);
                expect({ [LOAN_STATUS_ORDER[v.status]]: null }).toEqual(loan.status);
                expect(viewNat64(v, v.approvedAt)).toBe(loan.amount_approved);
                expect(viewNat64(v, v.aprAt)).toBe(loan.apr);
                expect(viewNat64(v, v.repaidAt)).toBe(loan.total_repaid);
            }),
            { numRuns: 200 }
        );
    });

    it('accepts exactly the loan bytes decoding accepts, cut or changed anywhere', () => {
        const accepts = (read: () => unknown): boolean => {
            try {
                read();
                return true;
            } catch {
                return false;
            }
        };
        fc.assert(
            fc.property(loanArb, fc.nat(), fc.nat({ max: 255 }), (loan, where, value) => {
                const bytes = encodeLoanValue(loan);
                const changed = bytes.slice();
                changed[where % bytes.length] = value;
                const cut = bytes.slice(0, where % bytes.length);
                for (const candidate of [changed, cut]) {
                    const scanned = accepts(() => {
                        const r = new ValueReader(candidate);
                        scanLoanValue(r, candidate);
                        if (r.at !== candidate.length) throw new Error('trailing');
                    });
                    expect(scanned).toBe(accepts(() => decodeLoanValue(candidate)));
                }
            }),
            { numRuns: 500 }
        );
    });

    it('scans a page into views over its loans, and rejects what a decode rejects', () => {
        fc.assert(
            fc.property(fc.array(loanArb, { maxLength: 5 }), optNat64, (loans, next_cursor) => {
                const body = concatBytes([
                    lebBytes(loans.length),
                    ...loans.map(encodeLoanValue),
                    new Uint8Array(next_cursor.length === 0 ? [0] : [1, 0, 0, 0, 0, 0, 0, 0, 0])
                ]);
                if (next_cursor.length === 1) {
                    new DataView(body.buffer).setBigUint64(body.length - 8, next_cursor[0], true);
                }
                const page = scanLoanPageValue(body);
                expect(page.next_cursor).toEqual(next_cursor);
                expect(page.loans.map(viewBytes)).toEqual(loans.map(encodeLoanValue));
                expect(() => scanLoanPageValue(body.slice(0, body.length - 1))).toThrow();
                expect(() => scanLoanPageValue(concatBytes([body, new Uint8Array([0])]))).toThrow(
                    /trailing/
                );
            }),
            { numRuns: 50 }
        );
    });

    it('scans bytes with a LEB128 count in two bytes (valid Candid) field by field, alike', () => {
        fc.assert(
            fc.property(loanArb, (loan) => {
                const bytes = encodeLoanValue(loan);
                const v = loanViewOf(loan);
                // The funders' count, one byte below 128, written again as two bytes.
                const count = bytes[v.fundersAt];
                const wide = concatBytes([
                    bytes.subarray(0, v.fundersAt),
                    new Uint8Array([count | 0x80, 0]),
                    bytes.subarray(v.fundersAt + 1)
                ]);
                const r = new ValueReader(wide);
                const w = scanLoanValue(r, wide);
                expect(r.at).toBe(wide.length);
                expect(decodeLoanValue(wide)).toEqual(loan);
                expect([viewId(w), w.status, viewNat64(w, w.approvedAt)]).toEqual([
                    loan.id,
                    v.status,
                    loan.amount_approved
                ]);
                expect(viewNat64(w, w.repaidAt)).toBe(loan.total_repaid);
                expect(w.fundersAt).toBe(v.fundersAt);
                // Funding sums read the same either way, for each funder's own amounts.
                for (const f of loan.funders) {
                    const key = latin1(f.investor.toUint8Array());
                    const want = loan.funders
                        .filter((g) => g.investor.toText() === f.investor.toText())
                        .reduce((a, g) => a + g.amount, 0n);
                    for (const view of [v, w]) {
                        const sum: [number, number] = [0, 0];
                        addFundingOf(view, key, sum);
                        expect(nat64FromHalves(sum[0], sum[1])).toBe(want);
                    }
                }
            }),
            { numRuns: 100 }
        );
    });
});
