/**
 * fast-check arbitraries of the domain's Candid values, shared by the codec property tests.
 * Records are rebuilt as plain objects: fast-check builds them without a prototype, and
 * @dfinity/candid wants plain objects.
 */
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';

import { LOAN_STATUSES, type Loan } from '../../src/shared/types';

export const nat64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

export const principal = fc
    .uint8Array({ minLength: 0, maxLength: 29 })
    .map((bytes) => Principal.fromUint8Array(bytes));

export const optNat64 = fc
    .option(nat64, { nil: undefined })
    .map((v): [] | [bigint] => (v === undefined ? [] : [v]));

export const loanStatus = fc
    .constantFrom(...LOAN_STATUSES)
    .map((s) => ({ [s]: null }) as Loan['status']);

/** Any loan, with at most `maxRepayments` repayments and `maxFunders` funders. */
export function loanArb(maxRepayments: number, maxFunders: number): fc.Arbitrary<Loan> {
    return fc
        .record({
            id: nat64,
            borrower: principal,
            nft_id: nat64,
            collateral_value_btc: nat64,
            amount_requested: nat64,
            amount_approved: nat64,
            apr: nat64,
            status: loanStatus,
            created_at: nat64,
            due_date: optNat64,
            total_repaid: nat64,
            repayment_history: fc.array(fc.record({ amount: nat64, timestamp: nat64 }), {
                maxLength: maxRepayments
            }),
            last_payment_date: optNat64,
            funders: fc.array(fc.record({ investor: principal, amount: nat64 }), {
                maxLength: maxFunders
            }),
            updated_at: nat64,
            version: nat64
        })
        .map((l) => ({
            ...l,
            status: { ...l.status },
            repayment_history: l.repayment_history.map((r) => ({ ...r })),
            funders: l.funders.map((f) => ({ ...f }))
        }));
}
