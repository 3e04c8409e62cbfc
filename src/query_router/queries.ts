/**
 * Cross-shard reads: parallel fan-out (`Promise.all` over shard calls), merge, the dashboard cache
 * and the query statistics. Each read comes in two kinds:
 * - `update` (`fill = true`): calls go through the breakers (outcomes recorded), results are cached
 *   and statistics kept — all writes, which only an update may make last;
 * - composite query (`fill = false`): the same fan-out, read-only, for clients wanting query latency.
 * The farmer's dashboard is cached as its encoded reply, so a hit costs no Candid encoding. Cache
 * keys and tags name users by their principal's bytes (`principalKey`), not its text.
 * Shard pages and statistics are decoded by hand (`callShardLoanPage`, `shard_reply_codec`) and the
 * dashboards and analytics are encoded by hand (`router_codec`): a page's loans are views over the
 * shard's reply bytes (`LoanView`: the few fields a dashboard sums are read in place, no `Loan` is
 * built), and the reply carries those bytes again, so a dashboard costs no generic Candid work.
 */
import { Principal, time } from 'azle';

import { callShardLoanPage, callShardRaw } from '../load_balancer/edge';
import {
    getConfig,
    getQueryCounters,
    getRoutingTable,
    setQueryCounters,
    shards as balancerShards
} from '../load_balancer/store';
import { BoundedCache } from '../shared/cache';
import { slotOf } from '../shared/hash';
import {
    encodeErrFarmerReply,
    encodeErrInvestorReply,
    encodeOkFarmerReply,
    encodeOkInvestorReply,
    OkReplyCodec,
    principalKey,
    type FarmerDashboardView,
    type InvestorDashboardView,
    type LoanPageView
} from '../shared/router_codec';
import { decodeOkShardStatsReply } from '../shared/shard_reply_codec';
import { MAX_PAGE_SIZE } from '../shared/limits';
import {
    CACHE_MAX_BYTES,
    CACHE_MAX_ENTRIES,
    MAX_DASHBOARD_PAGES_PER_SHARD
} from '../shared/router_api';
import {
    farmerDashboard,
    investorDashboard,
    mergeUserLoans,
    PagePlan,
    ShardAnswer,
    StatsAnswer,
    systemAnalytics,
    userTag
} from '../shared/router_plan';
import { ownerOf } from '../shared/slot_map';
import type { LoanView } from '../shared/loan_codec';
import { type ApiError, SystemAnalytics } from '../shared/types';
import { ownerOfSlot, ownerShards, slotMap, Target } from './routing';

type Res<T> = { Ok: T } | { Err: ApiError };

/** Dashboards and pages in the heap: lost on upgrade by design, invalidated per user on writes. */
export const cache = new BoundedCache<unknown>({
    max_entries: CACHE_MAX_ENTRIES,
    max_bytes: CACHE_MAX_BYTES,
    policy: 'w-tinylfu'
});

/** A rough size of a cached answer: enough to bound the cache's bytes. */
function sizeOf(loans: number): number {
    return 512 + loans * 512;
}

const ANALYTICS_TAG = 'analytics';

/** Keys carry the routing epoch: an answer built from an older table is never served. */
/** The routing epoch as text, remembered while it stays the same. */
let epochText = { epoch: -1n, text: '' };

function cacheKey(what: string): string {
    const epoch = getRoutingTable()?.epoch ?? 0n;
    if (epoch !== epochText.epoch) epochText = { epoch, text: String(epoch) };
    return `${epochText.text}:${what}`;
}

/** Drops every cached answer about these people, and the system analytics. */
export function invalidateUsers(tags: readonly string[]): void {
    for (const tag of tags) cache.invalidateTag(tag);
    cache.invalidateTag(ANALYTICS_TAG);
}

function nowMs(): number {
    return Number(time() / 1_000_000n);
}

interface FanOutOutcome {
    shard_calls: number;
    failed_calls: number;
    complete: boolean;
    started_ns: bigint;
}

function recordQuery(o: FanOutOutcome): void {
    const c = getQueryCounters();
    const latency_ms = Number(time() - o.started_ns) / 1e6;
    setQueryCounters({
        ...c,
        total_queries: c.total_queries + 1n,
        fan_out_queries: c.fan_out_queries + (o.shard_calls > 1 ? 1n : 0n),
        shard_calls: c.shard_calls + BigInt(o.shard_calls),
        partial_results: c.partial_results + (o.complete ? 0n : 1n),
        failed_shard_calls: c.failed_shard_calls + BigInt(o.failed_calls),
        fan_out_sum: c.fan_out_sum + BigInt(o.shard_calls),
        latency_sum_ms: c.latency_sum_ms + latency_ms
    });
}

/**
 * Reads up to `max_pages` pages of one shard's index (borrower or investor), keeping only loans
 * whose slot the shard owns under the current table (a migration's copies elsewhere are skipped).
 */
async function readIndex(
    fill: boolean,
    target: Target,
    method: 'get_loans_by_borrower' | 'get_loans_by_investor',
    user: Principal,
    plan: PagePlan,
    max_pages: number
): Promise<{ answer: ShardAnswer; calls: number }> {
    const map = slotMap();
    const loans: LoanView[] = [];
    let after = plan.after;
    let calls = 0;
    let next_cursor: [] | [bigint] = [];
    for (let page = 0; page < max_pages; page++) {
        calls += 1;
        const reply = await callShardLoanPage(
            target.shard_id,
            target.canister_id,
            method,
            { key: user, cursor: after === null ? [] : [after], limit: [plan.limit] },
            fill
        );
        if ('Err' in reply) {
            const error = JSON.stringify(Object.keys(reply.Err));
            return { answer: { shard_id: target.shard_id, ok: false, error }, calls };
        }
        // A farmer's loans share one slot: its owner is looked up once, not per loan.
        let slot = -1;
        let owned = false;
        for (const loan of reply.Ok.loans) {
            // The slot is the id's top 16 bits (`slot << 48 | seq`): the high half's top 16.
            const loanSlot = loan.idHi >>> 16;
            if (loanSlot !== slot) {
                slot = loanSlot;
                owned = map !== null && ownerOf(map, slot) === target.shard_id;
            }
            if (owned) loans.push(loan);
        }
        next_cursor = reply.Ok.next_cursor;
        if (next_cursor.length === 0) break;
        after = next_cursor[0];
    }
    return {
        answer: { shard_id: target.shard_id, ok: true, page: { loans, next_cursor } },
        calls
    };
}

function failedIds(answers: readonly ShardAnswer[]): number[] {
    return answers.filter((a) => !a.ok).map((a) => a.shard_id);
}

function loansOf(answers: readonly ShardAnswer[]): LoanView[] {
    return answers.flatMap((a) => (a.ok ? a.page.loans : []));
}

const FULL_PLAN: PagePlan = { limit: MAX_PAGE_SIZE, after: null };

/**
 * The farmer's dashboard: one shard (the owner of the farmer's slot), a few pages. With `fill`
 * (update context) the calls go through the breakers and the query is counted; the cache is the
 * caller's (`farmerDashboardReply`).
 */
async function buildFarmerDashboard(
    farmer: Principal,
    fill: boolean
): Promise<Res<FarmerDashboardView>> {
    const started_ns = time();
    const target = ownerOfSlot(slotOf(farmer.toUint8Array()));
    if ('Err' in target) return target;
    const { answer, calls } = await readIndex(
        fill,
        target.Ok,
        'get_loans_by_borrower',
        farmer,
        FULL_PLAN,
        MAX_DASHBOARD_PAGES_PER_SHARD
    );
    const dashboard = farmerDashboard(farmer, loansOf([answer]), failedIds([answer]), time());
    if (fill) {
        recordQuery({
            shard_calls: calls,
            failed_calls: answer.ok ? 0 : 1,
            complete: dashboard.complete,
            started_ns
        });
    }
    return { Ok: dashboard };
}

/** The read-only farmer's dashboard (composite query): uncached, nothing recorded. */
export async function farmerDashboardOf(farmer: Principal): Promise<Res<FarmerDashboardView>> {
    return await buildFarmerDashboard(farmer, false);
}

/** A `Result<FarmerDashboard>` reply, encoded by hand (`Ok`: the shards' loan bytes reused). */
export function encodeFarmerReply(result: Res<FarmerDashboardView>): Uint8Array {
    return 'Ok' in result ? encodeOkFarmerReply(result.Ok) : encodeErrFarmerReply(result.Err);
}

/** A `Result<InvestorDashboard>` reply, encoded by hand. */
export function encodeInvestorReply(result: Res<InvestorDashboardView>): Uint8Array {
    return 'Ok' in result ? encodeOkInvestorReply(result.Ok) : encodeErrInvestorReply(result.Err);
}

/**
 * The reply of `get_farmer_dashboard_advanced` (update context). The cache keeps a complete
 * dashboard as its encoded reply, so a hit neither calls a shard nor encodes anything.
 */
export async function farmerDashboardReply(
    farmer: Principal,
    farmerKey = principalKey(farmer)
): Promise<Uint8Array> {
    const key = cacheKey(`farmer:${farmerKey}`);
    const hit = cache.get(key, nowMs());
    if (hit instanceof Uint8Array) return hit;
    const result = await buildFarmerDashboard(farmer, true);
    const reply = encodeFarmerReply(result);
    if ('Ok' in result && result.Ok.complete) {
        putCached(key, reply, result.Ok.loans.length, [farmer]);
    }
    return reply;
}

function putCached(key: string, value: unknown, loans: number, users: Principal[]): void {
    cache.put(
        key,
        value,
        {
            size_bytes: sizeOf(loans),
            ttl_ms: getConfig().cache_ttl_ms,
            tags: users.map((u) => userTag(u))
        },
        nowMs()
    );
}

/** Calls every target in parallel; each answers its own `ShardAnswer`. */
async function fanOut(
    targets: readonly Target[],
    each: (t: Target) => Promise<{ answer: ShardAnswer; calls: number }>
): Promise<{ answers: ShardAnswer[]; calls: number }> {
    const results = await Promise.all(targets.map(each));
    return {
        answers: results.map((r) => r.answer),
        calls: results.reduce((sum, r) => sum + r.calls, 0)
    };
}

/** The investor's dashboard: every shard owning slots, in parallel. */
export async function investorDashboardOf(
    investor: Principal,
    fill: boolean
): Promise<Res<InvestorDashboardView>> {
    const key = cacheKey(`investor:${principalKey(investor)}`);
    if (fill) {
        const hit = cache.get(key, nowMs()) as InvestorDashboardView | undefined;
        if (hit !== undefined) return { Ok: hit };
    }
    const targets = ownerShards();
    const started_ns = time();
    const { answers, calls } = await fanOut(targets, (t) =>
        readIndex(
            fill,
            t,
            'get_loans_by_investor',
            investor,
            FULL_PLAN,
            MAX_DASHBOARD_PAGES_PER_SHARD
        )
    );
    const dashboard = investorDashboard(investor, loansOf(answers), failedIds(answers), time());
    if (fill) {
        recordQuery({
            shard_calls: calls,
            failed_calls: failedIds(answers).length,
            complete: dashboard.complete,
            started_ns
        });
        if (dashboard.complete) {
            putCached(key, dashboard, dashboard.investments.length, [investor]);
        }
    }
    return { Ok: dashboard };
}

/** One page of a user's loans as borrower and investor, merged across shards in id order. */
export async function userLoansOf(
    user: Principal,
    plan: PagePlan,
    fill: boolean
): Promise<Res<LoanPageView>> {
    const key = cacheKey(`loans:${principalKey(user)}:${plan.after ?? ''}:${plan.limit}`);
    if (fill) {
        const hit = cache.get(key, nowMs()) as LoanPageView | undefined;
        if (hit !== undefined) return { Ok: hit };
    }
    const owner = ownerOfSlot(slotOf(user.toUint8Array()));
    if ('Err' in owner) return owner;
    const started_ns = time();
    const [borrower, investor] = await Promise.all([
        readIndex(fill, owner.Ok, 'get_loans_by_borrower', user, plan, 1),
        fanOut(ownerShards(), (t) => readIndex(fill, t, 'get_loans_by_investor', user, plan, 1))
    ]);
    const page = mergeUserLoans(borrower.answer, investor.answers, plan);
    if ('Err' in page) return page;
    if (fill) {
        recordQuery({
            shard_calls: borrower.calls + investor.calls,
            failed_calls: page.Ok.failed_shards.length,
            complete: page.Ok.complete,
            started_ns
        });
        if (page.Ok.complete) putCached(key, page.Ok, page.Ok.loans.length, [user]);
    }
    return page;
}

/** Hand codec of the router's `Result<SystemAnalytics>` (shard stats: `shard_reply_codec`). */
const ANALYTICS_CODEC = new OkReplyCodec<SystemAnalytics>(SystemAnalytics, {
    total_loans: 0n,
    total_shards: 0,
    healthy_shards: 0,
    by_status: [],
    total_requested: 0n,
    total_approved: 0n,
    total_repaid: 0n,
    shards: [],
    complete: true,
    failed_shards: [],
    generated_at: 0n
});

/** A `Result<SystemAnalytics>` reply, encoded by hand. */
export function encodeAnalyticsReply(result: Res<SystemAnalytics>): Uint8Array {
    return ANALYTICS_CODEC.encodeReply(result);
}

/** System-wide figures from every shard's counters, in parallel. */
export async function systemAnalyticsOf(fill: boolean): Promise<Res<SystemAnalytics>> {
    const key = cacheKey('analytics');
    if (fill) {
        const hit = cache.get(key, nowMs()) as SystemAnalytics | undefined;
        if (hit !== undefined) return { Ok: hit };
    }
    const started_ns = time();
    const targets = ownerShards();
    const answers: StatsAnswer[] = await Promise.all(
        targets.map(async (t): Promise<StatsAnswer> => {
            const reply = await callShardRaw(
                t.shard_id,
                t.canister_id,
                'get_shard_stats',
                [],
                fill,
                decodeOkShardStatsReply
            );
            const avg_response_time_ms = balancerShards.get(t.shard_id)?.ewma_latency_ms ?? 0;
            return 'Ok' in reply
                ? { shard_id: t.shard_id, avg_response_time_ms, ok: true, stats: reply.Ok }
                : { shard_id: t.shard_id, avg_response_time_ms, ok: false };
        })
    );
    const analytics = systemAnalytics(answers, time());
    if (fill) {
        recordQuery({
            shard_calls: targets.length,
            failed_calls: analytics.failed_shards.length,
            complete: analytics.complete,
            started_ns
        });
        if (analytics.complete) {
            cache.put(
                key,
                analytics,
                {
                    size_bytes: sizeOf(targets.length),
                    ttl_ms: getConfig().cache_ttl_ms,
                    tags: [ANALYTICS_TAG]
                },
                nowMs()
            );
        }
    }
    return { Ok: analytics };
}
