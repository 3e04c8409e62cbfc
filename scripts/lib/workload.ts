/**
 * The main job's workload, as plain data and pure decisions (no IC calls): seeded farmers and
 * investors, Zipf-distributed farmer activity, loan applications, and the client-side model of
 * every acknowledged loan from which the next legal update (approve, fund, repay, …) is chosen.
 * The runner (`main_job.ts`) sends what this module plans and feeds the answers back.
 *
 * @example
 * const w = new Workload({ loans: 300, farmers: 60, investors: 20, seed: 7 });
 * const batch = w.nextBatch(64); // { creates: NewLoan[], updates: [...], reads: [...] }
 */
import { createHash } from 'node:crypto';

import { Principal } from '@dfinity/principal';

import { mulberry32Unit } from '../../bench/prng';
import { totalDue, totalFunded } from '../../src/shared/loan';
import { tagOf } from '../../src/shared/candid';
import type { Loan, LoanStatusName, LoanUpdate, NewLoan } from '../../src/shared/types';

/** Zipf exponent of farmer activity (s = 1: the classic rank-frequency law). */
export const ZIPF_EXPONENT = 1;
/** Bounds of the workload's sizes, so a typo cannot ask for an unbounded run. */
export const MAX_WORKLOAD_LOANS = 1_000_000;
export const MAX_WORKLOAD_PRINCIPALS = 100_000;
/** A step that failed this many times is given up (and reported). */
export const MAX_UPDATE_ATTEMPTS = 50;
/** A loan's due date, from its creation: one year, in nanoseconds. */
const YEAR_NS = 365n * 24n * 3_600n * 1_000_000_000n;

/**
 * Share of created loans that go through each step of the lifecycle. Each step is one write, so
 * these decide how many updates the run makes per loan (≈ 1.05 with these values).
 */
export const LIFECYCLE_SHARE = {
    submit: 0.3,
    approve: 0.25,
    fund: 0.2,
    activate: 0.15,
    repay: 0.1
} as const;

export interface WorkloadOptions {
    loans: number;
    farmers: number;
    investors: number;
    seed: number;
    /** Start of the run in IC time (ns): due dates are a year after. */
    now_ns?: bigint;
}

/** One read the runner performs; the answer is checked against the model where it can be. */
export type Read =
    | { kind: 'loan'; id: bigint }
    | { kind: 'farmer_dashboard'; farmer: Principal }
    | { kind: 'investor_dashboard'; investor: Principal }
    | { kind: 'system_analytics' };

export interface PlannedUpdate {
    id: bigint;
    change: LoanUpdate;
}

export interface Batch {
    creates: NewLoan[];
    updates: PlannedUpdate[];
    reads: Read[];
}

/** A principal derived from a name and the seed: self-authenticating form (29 bytes, tag 0x02). */
export function principalFor(kind: string, index: number, seed: number): Principal {
    const digest = createHash('sha256').update(`agrilends/${kind}/${seed}/${index}`).digest();
    const bytes = new Uint8Array(29);
    bytes.set(digest.subarray(0, 28));
    bytes[28] = 0x02;
    return Principal.fromUint8Array(bytes);
}

/**
 * A sampler of ranks 0..n-1 with P(k) ∝ 1/(k+1)^s, by inverse CDF over a precomputed table
 * (n ≤ MAX_WORKLOAD_PRINCIPALS entries).
 */
export function zipfSampler(n: number, s: number, unit: () => number): () => number {
    if (!Number.isInteger(n) || n < 1 || n > MAX_WORKLOAD_PRINCIPALS) {
        throw new Error(`zipf: n must be an integer in 1..=${MAX_WORKLOAD_PRINCIPALS}`);
    }
    const cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
        sum += 1 / Math.pow(k + 1, s);
        cdf[k] = sum;
    }
    return () => {
        const u = unit() * sum;
        let lo = 0;
        let hi = n - 1;
        while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (cdf[mid] < u) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    };
}

/** The update that moves a loan one step further, or null when it should stay as it is. */
function nextStep(
    loan: Loan,
    target: number,
    investor: Principal,
    unit: () => number
): LoanUpdate | null {
    const status: LoanStatusName = tagOf(loan.status);
    switch (status) {
        case 'PendingApplication':
            return target >= 1 ? { SubmitForApproval: null } : null;
        case 'PendingApproval':
            if (target < 2) return null;
            // Approve 60–100% of the request.
            return {
                Approve: {
                    amount_approved: max1(
                        (loan.amount_requested * BigInt(60 + Math.floor(unit() * 41))) / 100n
                    )
                }
            };
        case 'Approved': {
            const rest = loan.amount_approved - totalFunded(loan);
            if (rest > 0n) return target >= 3 ? { Fund: { investor, amount: rest } } : null;
            return target >= 4 ? { Activate: null } : null;
        }
        case 'Active': {
            if (target < 5) return null;
            const due = totalDue(loan) - loan.total_repaid;
            // Half the loans repay in full at once, the others in two instalments.
            const amount = unit() < 0.5 || loan.total_repaid > 0n ? due : max1(due / 2n);
            return { Repay: { amount } };
        }
        default:
            return null;
    }
}

function max1(v: bigint): bigint {
    return v < 1n ? 1n : v;
}

/**
 * The workload: plans batches and keeps the model of acknowledged loans. Not thread-safe by
 * design: the runner applies a batch's answers before asking for the next batch.
 */
export class Workload {
    readonly farmers: Principal[];
    readonly investors: Principal[];
    /** Latest acknowledged content of every loan, by id. */
    readonly acknowledged = new Map<bigint, Loan>();
    /** The acknowledged ids in order, for reads (the map's keys without a copy per batch). */
    private readonly ids: bigint[] = [];
    /** How far each loan should go: 0 created … 5 repaid (from LIFECYCLE_SHARE). */
    private readonly targets = new Map<bigint, number>();
    /** Loans with a planned next step, in creation order (bounded by the loan count). */
    private readonly moving: bigint[] = [];
    private readonly inFlight = new Set<bigint>();
    /** Applications that were not acknowledged, sent again first (at most `loans`). */
    private readonly retries: NewLoan[] = [];
    /** Failed attempts per loan update; a loan is given up after MAX_UPDATE_ATTEMPTS. */
    private readonly failures = new Map<bigint, number>();
    /** Loans whose next step kept failing (reported, and a failed check). */
    readonly abandoned: bigint[] = [];
    private readonly unit: () => number;
    private readonly pickFarmer: () => number;
    private readonly now_ns: bigint;
    private created = 0;

    constructor(readonly options: WorkloadOptions) {
        const { loans, farmers, investors } = options;
        if (!Number.isInteger(loans) || loans < 1 || loans > MAX_WORKLOAD_LOANS) {
            throw new Error(`loans must be an integer in 1..=${MAX_WORKLOAD_LOANS}`);
        }
        for (const [name, n] of [
            ['farmers', farmers],
            ['investors', investors]
        ] as const) {
            if (!Number.isInteger(n) || n < 1 || n > MAX_WORKLOAD_PRINCIPALS) {
                throw new Error(`${name} must be an integer in 1..=${MAX_WORKLOAD_PRINCIPALS}`);
            }
        }
        this.unit = mulberry32Unit(options.seed);
        this.pickFarmer = zipfSampler(farmers, ZIPF_EXPONENT, this.unit);
        this.farmers = Array.from({ length: farmers }, (_, i) =>
            principalFor('farmer', i, options.seed)
        );
        this.investors = Array.from({ length: investors }, (_, i) =>
            principalFor('investor', i, options.seed)
        );
        this.now_ns = options.now_ns ?? 1_767_225_600_000_000_000n;
    }

    /** Loans still to create. */
    get remaining(): number {
        return this.options.loans - this.created;
    }

    /** Whether every loan is acknowledged and no loan has a step left. */
    get done(): boolean {
        return (
            this.remaining === 0 &&
            this.retries.length === 0 &&
            this.moving.length === 0 &&
            this.inFlight.size === 0
        );
    }

    /** A new application from a Zipf-chosen farmer. */
    private application(): NewLoan {
        const farmer = this.farmers[this.pickFarmer()];
        const n = this.created;
        const amount = BigInt(100_000 + Math.floor(this.unit() * 9_900_000));
        return {
            borrower: farmer,
            nft_id: BigInt(n + 1),
            collateral_value_btc: amount / 2n + 1n,
            amount_requested: amount,
            apr: BigInt(500 + Math.floor(this.unit() * 1_500)),
            due_date: [this.now_ns + YEAR_NS]
        };
    }

    private lifecycleTarget(): number {
        const u = this.unit();
        const shares = [
            LIFECYCLE_SHARE.submit,
            LIFECYCLE_SHARE.approve,
            LIFECYCLE_SHARE.fund,
            LIFECYCLE_SHARE.activate,
            LIFECYCLE_SHARE.repay
        ];
        let target = 0;
        for (const share of shares) if (u < share) target += 1;
        return target;
    }

    /**
     * The next batch: up to `creates` new loans, one step for up to `updates` loans not already in
     * flight, and `reads` reads over acknowledged loans and the principals.
     */
    nextBatch(creates: number, updates: number, reads: number): Batch {
        const batch: Batch = { creates: [], updates: [], reads: [] };
        // Retries take at most half the creates, so new loans keep flowing while a shard is down.
        const retryBudget = this.remaining > 0 ? Math.max(1, Math.floor(creates / 2)) : creates;
        while (batch.creates.length < retryBudget && this.retries.length > 0) {
            batch.creates.push(this.retries.shift()!);
        }
        while (batch.creates.length < creates && this.remaining > 0) {
            batch.creates.push(this.application());
            this.created += 1;
        }
        let scanned = 0;
        while (batch.updates.length < updates && scanned < this.moving.length) {
            const id = this.moving[scanned];
            const loan = this.acknowledged.get(id)!;
            const change = nextStep(
                loan,
                this.targets.get(id) ?? 0,
                this.investorPick(),
                this.unit
            );
            if (change === null) {
                this.moving.splice(scanned, 1);
                continue;
            }
            if (!this.inFlight.has(id)) {
                this.inFlight.add(id);
                batch.updates.push({ id, change });
            }
            scanned += 1;
        }
        const ids = this.ids;
        for (let i = 0; i < reads && ids.length > 0; i++) {
            const u = this.unit();
            if (u < 0.5)
                batch.reads.push({ kind: 'loan', id: ids[Math.floor(this.unit() * ids.length)] });
            else if (u < 0.85)
                batch.reads.push({
                    kind: 'farmer_dashboard',
                    farmer: this.farmers[this.pickFarmer()]
                });
            else if (u < 0.98)
                batch.reads.push({ kind: 'investor_dashboard', investor: this.investorPick() });
            else batch.reads.push({ kind: 'system_analytics' });
        }
        return batch;
    }

    private investorPick(): Principal {
        return this.investors[Math.floor(this.unit() * this.investors.length)];
    }

    /** Records an acknowledged new loan (its lifecycle target is drawn here). */
    recordCreated(loan: Loan): void {
        if (!this.acknowledged.has(loan.id)) this.ids.push(loan.id);
        this.acknowledged.set(loan.id, loan);
        const target = this.lifecycleTarget();
        this.targets.set(loan.id, target);
        if (target > 0) this.moving.push(loan.id);
    }

    /** An application that was not acknowledged (and not applied): it is sent again later. */
    recordCreateFailed(application: NewLoan): void {
        this.retries.push(application);
    }

    /**
     * Records the answer to an update: the new content on success. A step that failed with a
     * retriable error is planned again later, at most MAX_UPDATE_ATTEMPTS times.
     */
    recordUpdate(id: bigint, loan: Loan | null, retriable: boolean): void {
        this.inFlight.delete(id);
        if (loan !== null) {
            this.acknowledged.set(id, loan);
            this.failures.delete(id);
            return;
        }
        const failures = (this.failures.get(id) ?? 0) + 1;
        this.failures.set(id, failures);
        if (!retriable || failures >= MAX_UPDATE_ATTEMPTS) {
            this.abandoned.push(id);
            const at = this.moving.indexOf(id);
            if (at >= 0) this.moving.splice(at, 1);
        }
    }
}
