/**
 * The router's decisions as pure functions: which shard owns a slot under a routing table, how a
 * shard's answer counts for its breaker, how per-shard pages and counters become one user-facing
 * answer, and the reproducible random draws of the two-choice algorithms. The canister reads its
 * state, calls these, and applies the result.
 */
import type { Principal } from '@dfinity/principal';

import { tagOf } from './candid';
import type { ShardSnapshot } from './balancing';
import { totalDue } from './loan';
import { decodeCursor, mergePages, u64KeyCodec, type ShardPage } from './aggregation';
import { fromRanges, type SlotMap } from './slot_map';
import type { ShardLoanPage, ShardStats } from './shard_api';
import {
    ApiError,
    FarmerDashboard,
    InvestorDashboard,
    Loan,
    LOAN_STATUSES,
    LoanPage,
    RoutingTable,
    StatusCount,
    SystemAnalytics
} from './types';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SHARDS } from './limits';
import { invalidInput } from './errors';
import { principalKey } from './router_codec';

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

/** One shard's answer to a page request: its page or why it could not be had. */
export type ShardAnswer = { shard_id: number } & (
    { ok: true; page: ShardLoanPage } | { ok: false; error: string }
);

function toShardPage(answer: ShardAnswer, id: number): ShardPage<Loan> {
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
): Res<LoanPage> {
    // Investor lists keep their shard id; the borrower list takes an id no shard has (ids < 2^32).
    const BORROWER_LIST = 2 ** 32;
    const pages = investor.map((a) => toShardPage(a, a.shard_id));
    if (borrower !== null) pages.push(toShardPage(borrower, BORROWER_LIST));
    const merged = mergePages(pages, {
        limit: plan.limit,
        key: (loan: Loan) => loan.id,
        compare: (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0),
        codec: u64KeyCodec,
        after: plan.after
    });
    if (!merged.ok) return invalid(merged.error.field, merged.error.reason);
    const loans: Loan[] = [];
    for (const loan of merged.value.items) {
        if (loans.length === 0 || loans[loans.length - 1].id !== loan.id) loans.push(loan);
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

function byStatus(loans: readonly Loan[]): StatusCount[] {
    const counts = new Map<string, bigint>();
    for (const loan of loans) {
        const name = tagOf(loan.status);
        counts.set(name, (counts.get(name) ?? 0n) + 1n);
    }
    return LOAN_STATUSES.filter((name) => counts.has(name)).map((name) => ({
        status: { [name]: null } as StatusCount['status'],
        count: counts.get(name)!
    }));
}

function isActive(loan: Loan): boolean {
    return 'Active' in loan.status;
}

/** Loans sorted by id with duplicates (same id from two answers) removed. */
function uniqueById(loans: readonly Loan[]): Loan[] {
    const sorted = [...loans].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return sorted.filter((loan, i) => i === 0 || sorted[i - 1].id !== loan.id);
}

/**
 * A farmer's dashboard from their loans (all on one shard). Borrowed = approved amounts of loans
 * that were disbursed (Active, Repaid, Defaulted); outstanding = what active loans still owe.
 */
export function farmerDashboard(
    farmer: FarmerDashboard['farmer'],
    loans: readonly Loan[],
    failed_shards: readonly number[],
    now_ns: bigint
): FarmerDashboard {
    const all = uniqueById(loans);
    let total_borrowed = 0n;
    let total_repaid = 0n;
    let outstanding_balance = 0n;
    for (const loan of all) {
        const disbursed =
            'Active' in loan.status || 'Repaid' in loan.status || 'Defaulted' in loan.status;
        if (disbursed) total_borrowed += loan.amount_approved;
        total_repaid += loan.total_repaid;
        if (isActive(loan)) {
            const due = totalDue(loan);
            outstanding_balance += due > loan.total_repaid ? due - loan.total_repaid : 0n;
        }
    }
    return {
        farmer,
        loans: all,
        total_loans: BigInt(all.length),
        active_loans: BigInt(all.filter(isActive).length),
        total_borrowed,
        total_repaid,
        outstanding_balance,
        by_status: byStatus(all),
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
    investor: InvestorDashboard['investor'],
    loans: readonly Loan[],
    failed_shards: readonly number[],
    now_ns: bigint
): InvestorDashboard {
    const all = uniqueById(loans);
    const me = principalKey(investor);
    let total_invested = 0n;
    let total_repaid_on_funded_loans = 0n;
    for (const loan of all) {
        for (const funding of loan.funders) {
            if (principalKey(funding.investor) === me) total_invested += funding.amount;
        }
        total_repaid_on_funded_loans += loan.total_repaid;
    }
    return {
        investor,
        investments: all,
        total_investments: BigInt(all.length),
        active_investments: BigInt(all.filter(isActive).length),
        total_invested,
        total_repaid_on_funded_loans,
        by_status: byStatus(all),
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

/** Cache tags of a loan's people: its borrower and every funder, so a write invalidates them all. */
export function userTagsOf(loan: Loan): string[] {
    const tags = new Set<string>([userTag(loan.borrower)]);
    for (const f of loan.funders) tags.add(userTag(f.investor));
    return [...tags];
}

/** A user's cache tag: from the principal's bytes (`principalKey`), cheaper than its text. */
export function userTag(user: Principal): string {
    return `user:${principalKey(user)}`;
}
