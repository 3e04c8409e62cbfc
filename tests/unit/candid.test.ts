import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { describe, expect, it } from 'vitest';
import { tagOf } from '../../src/shared/candid';
import { ApiError, Loan, LoanUpdate, Result } from '../../src/shared/types';

const borrower = Principal.fromText('2vxsx-fae');

function sampleLoan(): Loan {
    return {
        id: (5n << 48n) | 7n,
        borrower,
        nft_id: 42n,
        collateral_value_btc: 100_000n,
        amount_requested: 5_000_000n,
        amount_approved: 0n,
        apr: 1_200n,
        status: { PendingApplication: null },
        created_at: 1_700_000_000_000_000_000n,
        due_date: [1_800_000_000_000_000_000n],
        total_repaid: 0n,
        repayment_history: [],
        last_payment_date: [],
        funders: [],
        updated_at: 1_700_000_000_000_000_000n,
        version: 1n
    };
}

describe('typed Candid', () => {
    it('round-trips a loan through Candid bytes unchanged', () => {
        const loan = sampleLoan();
        const bytes = IDL.encode([Loan], [loan]);
        const [decoded] = IDL.decode([Loan], bytes) as unknown as [Loan];
        expect(decoded.id).toBe(loan.id);
        expect(decoded.borrower.toText()).toBe(borrower.toText());
        expect(decoded.due_date).toEqual(loan.due_date);
        expect(decoded.status).toEqual({ PendingApplication: null });
    });

    it('encodes Result errors as the documented variant', () => {
        const err: Result<Loan> = { Err: { InvalidInput: { field: 'apr', reason: 'too high' } } };
        const bytes = IDL.encode([Result(Loan)], [err]);
        const [decoded] = IDL.decode([Result(Loan)], bytes) as unknown as [Result<Loan>];
        expect(decoded).toEqual(err);
    });

    it('names the tag of a variant value', () => {
        const update: LoanUpdate = { Repay: { amount: 10n } };
        expect(tagOf(update)).toBe('Repay');
        const error: ApiError = { NotAuthorized: null };
        expect(tagOf(error)).toBe('NotAuthorized');
    });

    it('refuses a value with more than one tag', () => {
        expect(() => tagOf({ A: null, B: null })).toThrow(/exactly one tag/);
    });
});
