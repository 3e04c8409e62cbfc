/**
 * Loan rules as pure functions: validating a new loan, building its record, and applying the typed
 * transitions of `LoanUpdate`. A shard calls these and stores the result; nothing here touches
 * state, so every rule is pinned down by unit tests.
 *
 * Lifecycle:
 *   PendingApplication --SubmitForApproval--> PendingApproval --Approve--> Approved
 *   Approved --Fund (until fully funded)--> Approved --Activate--> Active
 *   Active --Repay (until the total due is paid)--> Repaid;  Active --MarkDefaulted--> Defaulted
 */
import { tagOf } from './candid';
import { invalidInput } from './errors';
import { MAX_APR_BPS, MAX_FUNDERS_PER_LOAN, MAX_REPAYMENT_HISTORY } from './limits';
import type {
    ApiError,
    Loan,
    LoanStatus,
    LoanStatusName,
    LoanUpdate,
    NewLoan,
    Result
} from './types';

/** The largest amount a loan may request, in the smallest unit (10^9 whole tokens of 8 decimals). */
export const MAX_LOAN_AMOUNT = 100_000_000_000_000_000n;

const invalid = invalidInput;

/**
 * Checks a loan application; `now_ns` is IC time. Returns the first violation found.
 *
 * @example validateNewLoan({ ...app, apr: 200_000n }, now) // → InvalidInput { field: 'apr' }
 */
export function validateNewLoan(loan: NewLoan, now_ns: bigint): Result<null> {
    if (loan.borrower.isAnonymous()) {
        return invalid('borrower', 'the anonymous principal cannot borrow');
    }
    if (loan.amount_requested <= 0n || loan.amount_requested > MAX_LOAN_AMOUNT) {
        return invalid('amount_requested', `must be in 1..=${MAX_LOAN_AMOUNT}`);
    }
    if (loan.collateral_value_btc <= 0n) {
        return invalid('collateral_value_btc', 'a loan needs collateral');
    }
    if (loan.apr > MAX_APR_BPS) {
        return invalid('apr', `basis points must be at most ${MAX_APR_BPS}`);
    }
    if (loan.due_date.length === 1 && loan.due_date[0] <= now_ns) {
        return invalid('due_date', 'must be in the future');
    }
    return { Ok: null };
}

/** The record a shard stores for a validated application, under the id it assigned. */
export function newLoanRecord(id: bigint, loan: NewLoan, now_ns: bigint): Loan {
    return {
        id,
        borrower: loan.borrower,
        nft_id: loan.nft_id,
        collateral_value_btc: loan.collateral_value_btc,
        amount_requested: loan.amount_requested,
        amount_approved: 0n,
        apr: loan.apr,
        status: { PendingApplication: null },
        created_at: now_ns,
        due_date: loan.due_date,
        total_repaid: 0n,
        repayment_history: [],
        last_payment_date: [],
        funders: [],
        updated_at: now_ns,
        version: 1n
    };
}

/** What the borrower owes in total: principal plus one term of simple interest at `apr`. */
export function totalDue(loan: Loan): bigint {
    return loan.amount_approved + (loan.amount_approved * loan.apr) / 10_000n;
}

/** The sum funded so far. */
export function totalFunded(loan: Loan): bigint {
    return loan.funders.reduce((sum, f) => sum + f.amount, 0n);
}

function status(name: LoanStatusName): LoanStatus {
    return { [name]: null } as LoanStatus;
}

function wrongState(loan: Loan, action: string): { Err: ApiError } {
    return { Err: { InvalidTransition: { from: loan.status, action } } };
}

/**
 * Applies one transition. On success the loan's `version` grows by one and `updated_at` is `now_ns`;
 * on failure the loan is unchanged and the error says why.
 *
 * @example applyLoanUpdate(loan, { Repay: { amount: 10n } }, now) // Active → Active or Repaid
 */
export function applyLoanUpdate(loan: Loan, update: LoanUpdate, now_ns: bigint): Result<Loan> {
    const from = tagOf(loan.status);
    const action = tagOf(update);
    const next = (changes: Partial<Loan>): Result<Loan> => ({
        Ok: { ...loan, ...changes, updated_at: now_ns, version: loan.version + 1n }
    });

    if ('SubmitForApproval' in update) {
        if (from !== 'PendingApplication') return wrongState(loan, action);
        return next({ status: status('PendingApproval') });
    }
    if ('Approve' in update) {
        if (from !== 'PendingApproval') return wrongState(loan, action);
        const amount = update.Approve.amount_approved;
        if (amount <= 0n || amount > loan.amount_requested) {
            return invalid('amount_approved', 'must be in 1..=amount_requested');
        }
        return next({ status: status('Approved'), amount_approved: amount });
    }
    if ('Fund' in update) {
        if (from !== 'Approved') return wrongState(loan, action);
        const { investor, amount } = update.Fund;
        // Compared by bytes: `toText` costs about a million instructions in the canister (helper P2).
        if (investor.isAnonymous()) {
            return invalid('investor', 'the anonymous principal cannot fund');
        }
        const remaining = loan.amount_approved - totalFunded(loan);
        if (amount <= 0n || amount > remaining) {
            return invalid('amount', `must be in 1..=${remaining} (the unfunded rest)`);
        }
        const existing = loan.funders.findIndex((f) => f.investor.compareTo(investor) === 'eq');
        if (existing < 0 && loan.funders.length >= MAX_FUNDERS_PER_LOAN) {
            return {
                Err: {
                    CapacityExceeded: {
                        resource: 'funders_per_loan',
                        limit: BigInt(MAX_FUNDERS_PER_LOAN)
                    }
                }
            };
        }
        const funders =
            existing < 0
                ? [...loan.funders, { investor, amount }]
                : loan.funders.map((f, i) =>
                      i === existing ? { investor, amount: f.amount + amount } : f
                  );
        return next({ funders });
    }
    if ('Activate' in update) {
        if (from !== 'Approved') return wrongState(loan, action);
        if (totalFunded(loan) !== loan.amount_approved) {
            return invalid('status', 'a loan is activated only when fully funded');
        }
        return next({ status: status('Active') });
    }
    if ('Repay' in update) {
        if (from !== 'Active') return wrongState(loan, action);
        const amount = update.Repay.amount;
        const remaining = totalDue(loan) - loan.total_repaid;
        if (amount <= 0n || amount > remaining) {
            return invalid('amount', `must be in 1..=${remaining} (the amount still due)`);
        }
        const total_repaid = loan.total_repaid + amount;
        // The history keeps the newest records; `total_repaid` still counts the dropped ones.
        const repayment_history = [...loan.repayment_history, { amount, timestamp: now_ns }].slice(
            -MAX_REPAYMENT_HISTORY
        );
        return next({
            total_repaid,
            repayment_history,
            last_payment_date: [now_ns],
            status: total_repaid === totalDue(loan) ? status('Repaid') : loan.status
        });
    }
    if ('MarkDefaulted' in update) {
        if (from !== 'Active') return wrongState(loan, action);
        return next({ status: status('Defaulted') });
    }
    return invalid('update', 'unknown transition');
}
