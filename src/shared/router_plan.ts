/**
 * The router's decisions as pure functions: which shard owns a slot under a routing table, how a
 * shard's answer counts for its breaker, how per-shard pages and counters become one user-facing
 * answer, and the reproducible random draws of the two-choice algorithms. The canister reads its
 * state, calls these, and applies the result.
 */
import type { Principal } from '@dfinity/principal';

import { tagOf } from './candid';
import type { ShardSnapshot } from './balancing';
import { decodeCursor, mergePages, u64KeyCodec, type ShardPage } from './aggregation';
import {
    addFundingOf,
    compareViewIds,
    decodeLoanValue,
    LOAN_STATUS_ORDER,
    loanPeopleKeys,
    nat64FromHalves,
    viewId,
    viewNat64,
    type LoanView,
    type LoanViewPage
} from './loan_codec';
import { fromRanges, type SlotMap } from './slot_map';
import type { ShardStats } from './shard_api';
import {
    ApiError,
    Loan,
    LOAN_STATUSES,
    LoanStatusName,
    RoutingTable,
    StatusCount,
    SystemAnalytics
} from './types';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SHARDS } from './limits';
import { invalidInput } from './errors';
import {
    principalKey,
    type FarmerDashboardView,
    type InvestorDashboardView,
    type LoanPageView
} from './router_codec';

type Res<T> = { Ok: T } | { Err: ApiError };

const invalid = invalidInput;

// ---- Routing table ----------------------------------------------------------------------------

/**
 * Checks a pushed table: ranges cover every slot once, every owner has an address, addresses are
 * unique, and the epoch is strictly newer than `current_epoch`. Returns the slot map to route with.
 *
 * @example validateRoutingTable(table, 3n) // { Ok: map } when table.epoch > 3
 */
export function validateRoutingTable(table: RoutingTable, current_epoch: bigint): Res<SlotMap> {
    if (table.epoch <= current_epoch) {
        return invalid('epoch', `must be greater than the current epoch ${current_epoch}`);
    }
    if (table.shards.length > MAX_SHARDS) {
        return invalid('shards', `at most ${MAX_SHARDS} shards`);
    }
    const addressed = new Set<number>();
    for (const shard of table.shards) {
        if (addressed.has(shard.shard_id)) {
            return invalid('shards', `shard ${shard.shard_id} is listed twice`);
        }
        addressed.add(shard.shard_id);
    }
    const map = fromRanges(table.epoch, table.ranges);
    if (!map.ok) return invalid('ranges', JSON.stringify(map.error));
    for (const range of table.ranges) {
        if (!addressed.has(range.shard_id)) {
            return invalid('shards', `shard ${range.shard_id} owns slots but has no address`);
        }
    }
    return { Ok: map.value };
}

// ---- Breaker outcomes -------------------------------------------------------------------------

/**
 * Whether a shard's answer counts as a failure for its breaker: a reject (the call threw) or the
 * shard saying it is unavailable. Business errors (InvalidInput, NotFound, WrongShard, ReadOnly…)
 * prove the shard is up and answering, so they count as successes.
 */
export function isBreakerFailure(answer: { rejected: true } | { rejected: false; reply: unknown }) {
    if (answer.rejected) return true;
    const reply = answer.reply;
    if (typeof reply !== 'object' || reply === null || !('Err' in reply)) return false;
    const error = (reply as { Err: ApiError }).Err;
    return typeof error === 'object' && error !== null && 'ShardUnavailable' in error;
}

/** Converts an IC time in nanoseconds to milliseconds (fractional, so sub-ms latencies count). */
export function nsToMs(ns: bigint): number {
    return Number(ns) / 1e6;
}

// ---- Random draws -----------------------------------------------------------------------------

/**
 * xorshift32: the next draw and state. Not secure (a balancer needs no secret), only reproducible:
 * replaying from a known state gives the canister's picks. State 0 is mapped to a fixed constant.
 *
 * @example nextRandomU32(1) // { value: 270369, state: 270369 }
 */
export function nextRandomU32(state: number): { value: number; state: number } {
    let x = state >>> 0 || 0x9e3779b9;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return { value: x, state: x };
}

/** A draw function over a mutable holder of the state, as `choose` wants it. */
export function randomSource(holder: { state: number }): () => number {
    return () => {
        const next = nextRandomU32(holder.state);
        holder.state = next.state;
        return next.value;
    };
}

/** What the balancer stores per shard (in stable memory). */
export interface BalancerShard {
    shard_id: number;
    canister_id: string;
    region: string;
    weight: number;
    healthy: boolean;
    ewma_latency_ms: number;
    last_sample_at_ms: number;
    resource_usage: number;
}

/** The snapshot `choose` reads: an Open or ForcedOpen breaker removes a shard from every choice. */
export function snapshotOf(
    shards: readonly BalancerShard[],
    breakerStateOf: (shard_id: number) => string,
    inFlightOf: (shard_id: number) => number
): ShardSnapshot[] {
    return shards.map((s) => {
        const breaker = breakerStateOf(s.shard_id);
        return {
            shardId: s.shard_id,
            healthy: s.healthy,
            breakerOpen: breaker === 'Open' || breaker === 'ForcedOpen',
            weight: s.weight,
            inFlight: inFlightOf(s.shard_id),
            ewmaLatencyMs: s.ewma_latency_ms,
            resourceUsage: s.resource_usage,
            region: s.region
        };
    });
}

// ---- Pages ------------------------------------------------------------------------------------

/** A validated page request: the limit and the loan id to start after (null on page one). */
export interface PagePlan {
    limit: number;
    after: bigint | null;
}

/** Checks a client's `opt Page`: limit in 1..MAX_PAGE_SIZE, cursor decodable. */
export function planPage(
    page: [] | [{ cursor: [] | [string]; limit: [] | [number] }]
): Res<PagePlan> {
    const limit = page[0]?.limit[0] ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        return invalid('limit', `must be in 1..=${MAX_PAGE_SIZE}`);
    }
    const cursor = page[0]?.cursor[0];
    if (cursor === undefined) return { Ok: { limit, after: null } };
    const decoded = decodeCursor(cursor, u64KeyCodec);
    if (!decoded.ok) return invalid('cursor', `not a cursor of this query (${decoded.error.kind})`);
    return { Ok: { limit, after: decoded.value } };
}

/** One shard's answer to a page request: its page (loans as views) or why it could not be had. */
export type ShardAnswer = { shard_id: number } & (
    { ok: true; page: LoanViewPage } | { ok: false; error: string }
);

function toShardPage(answer: ShardAnswer, id: number): ShardPage<LoanView> {
    if (!answer.ok) return { shard_id: id, ok: false, error: answer.error };
    return {
        shard_id: id,
        ok: true,
        items: answer.page.loans,
        has_more: answer.page.next_cursor.length > 0
    };
}

/**
 * Merges a user's loans as borrower (one shard) and as investor (every shard) into one page in id
 * order. The borrower and investor lists of one shard are merged as separate lists, and a loan in
 * both (a borrower funding their own loan) is emitted once.
 */
export function mergeUserLoans(
    borrower: ShardAnswer | null,
    investor: readonly ShardAnswer[],
    plan: PagePlan
): Res<LoanPageView> {
    // Investor lists keep their shard id; the borrower list takes an id no shard has (ids < 2^32).
    const BORROWER_LIST = 2 ** 32;
    const pages = investor.map((a) => toShardPage(a, a.shard_id));
    if (borrower !== null) pages.push(toShardPage(borrower, BORROWER_LIST));
    const merged = mergePages(pages, {
        limit: plan.limit,
        key: viewId,
        compare: (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0),
        codec: u64KeyCodec,
        after: plan.after
    });
    if (!merged.ok) return invalid(merged.error.field, merged.error.reason);
    const loans: LoanView[] = [];
    for (const loan of merged.value.items) {
        if (loans.length === 0 || compareViewIds(loans[loans.length - 1], loan) !== 0) {
            loans.push(loan);
        }
    }
    const failed = new Set<number>();
    for (const id of merged.value.failed_shards) {
        failed.add(id === BORROWER_LIST && borrower !== null ? borrower.shard_id : id);
    }
    return {
        Ok: {
            loans,
            next_cursor: merged.value.next_cursor === null ? [] : [merged.value.next_cursor],
            complete: merged.value.complete,
            failed_shards: [...failed].sort((a, b) => a - b)
        }
    };
}

// ---- Dashboards -------------------------------------------------------------------------------

const STATUS_NAMES: readonly LoanStatusName[] = LOAN_STATUS_ORDER;
const ACTIVE = STATUS_NAMES.indexOf('Active');
const REPAID = STATUS_NAMES.indexOf('Repaid');
const DEFAULTED = STATUS_NAMES.indexOf('Defaulted');
/** `LOAN_STATUSES` (the order `by_status` lists) as indexes into `STATUS_NAMES`. */
const LISTED = LOAN_STATUSES.map((name) => STATUS_NAMES.indexOf(name));

/** Counts per status index (`LoanView.status`), listed in `LOAN_STATUSES` order, zeros left out. */
function byStatus(counts: readonly number[]): StatusCount[] {
    const out: StatusCount[] = [];
    for (const index of LISTED) {
        if (counts[index] > 0) {
            out.push({
                status: { [STATUS_NAMES[index]]: null } as StatusCount['status'],
                count: BigInt(counts[index])
            });
        }
    }
    return out;
}

/** Most loans a dashboard sums (it reads a few pages per shard: far fewer). */
const MAX_DASHBOARD_LOANS = 2 ** 21;

/** Below this, products and sums of numbers are exact integers (2^52: margin for the checks). */
const EXACT_BELOW = 2 ** 52;

/**
 * Views sorted by loan id with duplicates (same id from two answers) removed, the first kept.
 * Shard pages come sorted, so an ascending list (the usual case) is only checked, not sorted.
 */
function uniqueById(loans: readonly LoanView[]): LoanView[] {
    // Sums of 32-bit halves (`nat64FromHalves`) stay exact for this many loans.
    if (loans.length > MAX_DASHBOARD_LOANS) throw new RangeError('too many loans for a dashboard');
    let ascending = true;
    for (let i = 1; i < loans.length; i++) {
        const a = loans[i - 1];
        const b = loans[i];
        if (a.idHi > b.idHi || (a.idHi === b.idHi && a.idLo >= b.idLo)) {
            ascending = false;
            break;
        }
    }
    if (ascending) return loans.slice();
    const sorted = [...loans].sort(compareViewIds);
    return sorted.filter((loan, i) => i === 0 || compareViewIds(sorted[i - 1], loan) !== 0);
}

/**
 * What an active loan still owes: its total due (`totalDue`: approved plus `apr` basis points of
 * it, rounded down) less repaid, as a number when every figure is small enough to be exact (the
 * usual case: no BigInt), else -1 (the caller then uses `owedBig`).
 */
function owedSmall(v: LoanView): number {
    const data = v.data;
    if (
        data.getUint32(v.approvedAt + 4, true) !== 0 ||
        data.getUint32(v.aprAt + 4, true) !== 0 ||
        data.getUint32(v.repaidAt + 4, true) !== 0
    ) {
        return -1;
    }
    const approved = data.getUint32(v.approvedAt, true);
    const apr = data.getUint32(v.aprAt, true);
    const product = approved * apr;
    if (product >= EXACT_BELOW) return -1;
    let interest = Math.floor(product / 10_000);
    // Exact integer division, whatever the rounding of `/`.
    if (interest * 10_000 > product) interest -= 1;
    else if ((interest + 1) * 10_000 <= product) interest += 1;
    const due = approved + interest;
    const repaid = data.getUint32(v.repaidAt, true);
    return due > repaid ? due - repaid : 0;
}

/** `owedSmall` in BigInt arithmetic, for any amounts. */
function owedBig(v: LoanView): bigint {
    const approved = viewNat64(v, v.approvedAt);
    const due = approved + (approved * viewNat64(v, v.aprAt)) / 10_000n;
    const repaid = viewNat64(v, v.repaidAt);
    return due > repaid ? due - repaid : 0n;
}

/**
 * A farmer's dashboard from their loans (all on one shard). Borrowed = approved amounts of loans
 * that were disbursed (Active, Repaid, Defaulted); outstanding = what active loans still owe.
 * Reads four fields in each loan's bytes (sums kept as 32-bit halves: no BigInt per loan, see
 * `nat64FromHalves`); the loans stay views, whose bytes the reply carries.
 */
export function farmerDashboard(
    farmer: FarmerDashboardView['farmer'],
    loans: readonly LoanView[],
    failed_shards: readonly number[],
    now_ns: bigint
): FarmerDashboardView {
    const all = uniqueById(loans);
    const counts = STATUS_NAMES.map(() => 0);
    let borrowedHi = 0;
    let borrowedLo = 0;
    let repaidHi = 0;
    let repaidLo = 0;
    let outstandingSmall = 0;
    let outstandingBig = 0n;
    for (const loan of all) {
        const status = loan.status;
        const data = loan.data;
        counts[status] += 1;
        if (status === ACTIVE || status === REPAID || status === DEFAULTED) {
            borrowedHi += data.getUint32(loan.approvedAt + 4, true);
            borrowedLo += data.getUint32(loan.approvedAt, true);
        }
        repaidHi += data.getUint32(loan.repaidAt + 4, true);
        repaidLo += data.getUint32(loan.repaidAt, true);
        if (status === ACTIVE) {
            const small = owedSmall(loan);
            if (small < 0) outstandingBig += owedBig(loan);
            else outstandingSmall += small;
            // Each small amount is below 2^40: moved to the BigInt before the sum leaves 2^53.
            if (outstandingSmall >= EXACT_BELOW) {
                outstandingBig += BigInt(outstandingSmall);
                outstandingSmall = 0;
            }
        }
    }
    return {
        farmer,
        loans: all,
        total_loans: BigInt(all.length),
        active_loans: BigInt(counts[ACTIVE]),
        total_borrowed: nat64FromHalves(borrowedHi, borrowedLo),
        total_repaid: nat64FromHalves(repaidHi, repaidLo),
        outstanding_balance: BigInt(outstandingSmall) + outstandingBig,
        by_status: byStatus(counts),
        complete: failed_shards.length === 0,
        failed_shards: [...failed_shards].sort((a, b) => a - b),
        generated_at: now_ns
    };
}

/**
 * An investor's dashboard from the loans they funded, gathered from every shard. Invested = the
 * investor's own funding amounts; repaid on funded loans = those loans' repayments, whole.
 */
export function investorDashboard(
    investor: InvestorDashboardView['investor'],
    loans: readonly LoanView[],
    failed_shards: readonly number[],
    now_ns: bigint
): InvestorDashboardView {
    const all = uniqueById(loans);
    const me = principalKey(investor);
    const counts = STATUS_NAMES.map(() => 0);
    const invested: [number, number] = [0, 0];
    let repaidHi = 0;
    let repaidLo = 0;
    for (const loan of all) {
        counts[loan.status] += 1;
        addFundingOf(loan, me, invested);
        repaidHi += loan.data.getUint32(loan.repaidAt + 4, true);
        repaidLo += loan.data.getUint32(loan.repaidAt, true);
    }
    return {
        investor,
        investments: all,
        total_investments: BigInt(all.length),
        active_investments: BigInt(counts[ACTIVE]),
        total_invested: nat64FromHalves(invested[0], invested[1]),
        total_repaid_on_funded_loans: nat64FromHalves(repaidHi, repaidLo),
        by_status: byStatus(counts),
        complete: failed_shards.length === 0,
        failed_shards: [...failed_shards].sort((a, b) => a - b),
        generated_at: now_ns
    };
}

/** One shard's statistics or its failure, for `systemAnalytics`. */
export type StatsAnswer = { shard_id: number; avg_response_time_ms: number } & (
    { ok: true; stats: ShardStats } | { ok: false }
);

/** System-wide figures: the sum of every answering shard's counters. */
export function systemAnalytics(answers: readonly StatsAnswer[], now_ns: bigint): SystemAnalytics {
    const statusTotals = new Map<string, bigint>();
    let total_loans = 0n;
    let total_requested = 0n;
    let total_approved = 0n;
    let total_repaid = 0n;
    const failed: number[] = [];
    const shards: SystemAnalytics['shards'] = [];
    for (const answer of answers) {
        if (!answer.ok) {
            failed.push(answer.shard_id);
            continue;
        }
        const s = answer.stats;
        total_loans += s.loan_count;
        total_requested += s.total_requested;
        total_approved += s.total_approved;
        total_repaid += s.total_repaid;
        for (const { status, count } of s.by_status) {
            const name = tagOf(status);
            statusTotals.set(name, (statusTotals.get(name) ?? 0n) + count);
        }
        shards.push({
            shard_id: answer.shard_id,
            loan_count: s.loan_count,
            storage_percentage: 0,
            avg_response_time_ms: answer.avg_response_time_ms
        });
    }
    failed.sort((a, b) => a - b);
    return {
        total_loans,
        total_shards: answers.length,
        healthy_shards: answers.length - failed.length,
        by_status: LOAN_STATUSES.filter((n) => statusTotals.has(n)).map((name) => ({
            status: { [name]: null } as StatusCount['status'],
            count: statusTotals.get(name)!
        })),
        total_requested,
        total_approved,
        total_repaid,
        shards: shards.sort((a, b) => a.shard_id - b.shard_id),
        complete: failed.length === 0,
        failed_shards: failed,
        generated_at: now_ns
    };
}

/**
 * `userTagsOf` the loan whose value bytes are `bytes` (a shard's reply to a write), read in place
 * when the bytes are in the usual form, else decoded.
 */
export function userTagsOfBytes(bytes: Uint8Array): string[] {
    const keys = loanPeopleKeys(bytes);
    if (keys === undefined) return userTagsOf(decodeLoanValue(bytes));
    return [...new Set(keys.map((key) => `${USER_TAG}${key}`))];
}

/** Cache tags of a loan's people: its borrower and every funder, so a write invalidates them all. */
export function userTagsOf(loan: Loan): string[] {
    const tags = new Set<string>([userTag(loan.borrower)]);
    for (const f of loan.funders) tags.add(userTag(f.investor));
    return [...tags];
}

/** A user's cache tag: from the principal's bytes (`principalKey`), cheaper than its text. */
export function userTag(user: Principal): string {
    return `${USER_TAG}${principalKey(user)}`;
}

const USER_TAG = 'user:';
