import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { tagOf } from '../../src/shared/candid';
import {
    applyLoanUpdate,
    newLoanRecord,
    totalDue,
    totalFunded,
    validateNewLoan
} from '../../src/shared/loan';
import { MAX_FUNDERS_PER_LOAN, MAX_REPAYMENT_HISTORY } from '../../src/shared/limits';
import type { Loan, LoanUpdate, NewLoan, Result } from '../../src/shared/types';

const NOW = 1_700_000_000_000_000_000n;
const farmer = Principal.fromUint8Array(new Uint8Array([1, 2, 3, 4, 5]));
const investor = (i: number): Principal =>
    Principal.fromUint8Array(new Uint8Array([9, i & 255, i >> 8]));

const application: NewLoan = {
    borrower: farmer,
    nft_id: 7n,
    collateral_value_btc: 50_000n,
    amount_requested: 1_000_000n,
    apr: 1_000n,
    due_date: [NOW + 1_000_000_000n]
};

function ok(result: Result<Loan>): Loan {
    if ('Err' in result)
        throw new Error(`expected Ok, got ${JSON.stringify(Object.keys(result.Err))}`);
    return result.Ok;
}

function activeLoan(amount = 1_000_000n): Loan {
    let loan = newLoanRecord(1n, application, NOW);
    loan = ok(applyLoanUpdate(loan, { SubmitForApproval: null }, NOW + 1n));
    loan = ok(applyLoanUpdate(loan, { Approve: { amount_approved: amount } }, NOW + 2n));
    loan = ok(applyLoanUpdate(loan, { Fund: { investor: investor(1), amount } }, NOW + 3n));
    return ok(applyLoanUpdate(loan, { Activate: null }, NOW + 4n));
}

describe('loan applications', () => {
    it('accepts a well-formed application', () => {
        expect(validateNewLoan(application, NOW)).toEqual({ Ok: null });
    });

    it.each([
        ['amount_requested', { amount_requested: 0n }],
        ['collateral_value_btc', { collateral_value_btc: 0n }],
        ['apr', { apr: 100_001n }],
        ['due_date', { due_date: [NOW] as [bigint] }],
        ['borrower', { borrower: Principal.anonymous() }]
    ])('rejects a bad %s with InvalidInput naming the field', (field, change) => {
        const result = validateNewLoan({ ...application, ...change }, NOW);
        expect(result).toMatchObject({ Err: { InvalidInput: { field } } });
    });

    it('starts a loan pending, unfunded and at version 1', () => {
        const loan = newLoanRecord(42n, application, NOW);
        expect(loan.status).toEqual({ PendingApplication: null });
        expect(loan.version).toBe(1n);
        expect(loan.funders).toEqual([]);
        expect(loan.created_at).toBe(NOW);
    });
});

describe('loan transitions', () => {
    it('walks the happy path to Repaid and bumps the version on each step', () => {
        let loan = activeLoan();
        expect(loan.version).toBe(5n);
        const due = totalDue(loan);
        expect(due).toBe(1_100_000n);
        loan = ok(applyLoanUpdate(loan, { Repay: { amount: 100_000n } }, NOW + 5n));
        expect(tagOf(loan.status)).toBe('Active');
        loan = ok(applyLoanUpdate(loan, { Repay: { amount: due - 100_000n } }, NOW + 6n));
        expect(loan.status).toEqual({ Repaid: null });
        expect(loan.total_repaid).toBe(due);
        expect(loan.last_payment_date).toEqual([NOW + 6n]);
        expect(loan.version).toBe(7n);
    });

    it('refuses to repay a repaid loan', () => {
        let loan = activeLoan();
        loan = ok(applyLoanUpdate(loan, { Repay: { amount: totalDue(loan) } }, NOW + 5n));
        const again = applyLoanUpdate(loan, { Repay: { amount: 1n } }, NOW + 6n);
        expect(again).toEqual({
            Err: { InvalidTransition: { from: { Repaid: null }, action: 'Repay' } }
        });
    });

    it('refuses an overpayment and leaves the loan as it was', () => {
        const loan = activeLoan();
        const result = applyLoanUpdate(loan, { Repay: { amount: totalDue(loan) + 1n } }, NOW);
        expect(result).toMatchObject({ Err: { InvalidInput: { field: 'amount' } } });
    });

    it('approves at most the requested amount', () => {
        let loan = newLoanRecord(1n, application, NOW);
        loan = ok(applyLoanUpdate(loan, { SubmitForApproval: null }, NOW));
        const result = applyLoanUpdate(
            loan,
            { Approve: { amount_approved: application.amount_requested + 1n } },
            NOW
        );
        expect(result).toMatchObject({ Err: { InvalidInput: { field: 'amount_approved' } } });
    });

    it('activates only a fully funded loan and merges repeated funding by one investor', () => {
        let loan = newLoanRecord(1n, application, NOW);
        loan = ok(applyLoanUpdate(loan, { SubmitForApproval: null }, NOW));
        loan = ok(applyLoanUpdate(loan, { Approve: { amount_approved: 1_000n } }, NOW));
        loan = ok(applyLoanUpdate(loan, { Fund: { investor: investor(1), amount: 400n } }, NOW));
        expect(applyLoanUpdate(loan, { Activate: null }, NOW)).toMatchObject({
            Err: { InvalidInput: { field: 'status' } }
        });
        loan = ok(applyLoanUpdate(loan, { Fund: { investor: investor(1), amount: 600n } }, NOW));
        expect(loan.funders).toHaveLength(1);
        expect(totalFunded(loan)).toBe(1_000n);
        expect(
            applyLoanUpdate(loan, { Fund: { investor: investor(2), amount: 1n } }, NOW)
        ).toMatchObject({ Err: { InvalidInput: { field: 'amount' } } });
        expect(tagOf(ok(applyLoanUpdate(loan, { Activate: null }, NOW)).status)).toBe('Active');
    });

    it(`bounds funders at ${MAX_FUNDERS_PER_LOAN} distinct investors`, () => {
        let loan = newLoanRecord(1n, application, NOW);
        loan = ok(applyLoanUpdate(loan, { SubmitForApproval: null }, NOW));
        loan = ok(applyLoanUpdate(loan, { Approve: { amount_approved: 1_000n } }, NOW));
        for (let i = 0; i < MAX_FUNDERS_PER_LOAN; i++) {
            loan = ok(applyLoanUpdate(loan, { Fund: { investor: investor(i), amount: 1n } }, NOW));
        }
        const result = applyLoanUpdate(
            loan,
            { Fund: { investor: investor(MAX_FUNDERS_PER_LOAN), amount: 1n } },
            NOW
        );
        expect(result).toMatchObject({
            Err: { CapacityExceeded: { resource: 'funders_per_loan' } }
        });
    });

    it(`keeps the newest ${MAX_REPAYMENT_HISTORY} repayments while total_repaid counts all`, () => {
        let loan = activeLoan(10_000n);
        for (let i = 0; i < MAX_REPAYMENT_HISTORY + 10; i++) {
            loan = ok(applyLoanUpdate(loan, { Repay: { amount: 1n } }, NOW + BigInt(i)));
        }
        expect(loan.repayment_history).toHaveLength(MAX_REPAYMENT_HISTORY);
        expect(loan.total_repaid).toBe(BigInt(MAX_REPAYMENT_HISTORY + 10));
        expect(loan.repayment_history.at(-1)?.timestamp).toBe(
            NOW + BigInt(MAX_REPAYMENT_HISTORY + 9)
        );
    });

    it('never lets total_repaid pass the total due, nor funding pass the approved amount', () => {
        const update = fc.oneof(
            fc.constant<LoanUpdate>({ SubmitForApproval: null }),
            fc.bigInt(0n, 2_000n).map<LoanUpdate>((a) => ({ Approve: { amount_approved: a } })),
            fc
                .tuple(fc.integer({ min: 0, max: 40 }), fc.bigInt(0n, 1_500n))
                .map<LoanUpdate>(([i, a]) => ({ Fund: { investor: investor(i), amount: a } })),
            fc.constant<LoanUpdate>({ Activate: null }),
            fc.bigInt(0n, 1_500n).map<LoanUpdate>((a) => ({ Repay: { amount: a } })),
            fc.constant<LoanUpdate>({ MarkDefaulted: null })
        );
        fc.assert(
            fc.property(fc.array(update, { maxLength: 60 }), (updates) => {
                let loan = newLoanRecord(1n, { ...application, amount_requested: 1_000n }, NOW);
                for (const u of updates) {
                    const result = applyLoanUpdate(loan, u, NOW);
                    if ('Ok' in result) {
                        expect(result.Ok.version).toBe(loan.version + 1n);
                        loan = result.Ok;
                    }
                    expect(totalFunded(loan) <= loan.amount_approved).toBe(true);
                    expect(loan.total_repaid <= totalDue(loan)).toBe(true);
                    expect(loan.funders.length <= MAX_FUNDERS_PER_LOAN).toBe(true);
                }
            }),
            { numRuns: 300 }
        );
    });
});
