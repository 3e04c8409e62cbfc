/**
 * The 10,000-loan test: loans written through the router across 4 shards in parallel batches, a
 * share of them funded by a handful of investors whose loans span every shard, then every loan
 * read back by id, every farmer's loans by borrower (one shard each), every investor's across all
 * shards, and the system totals checked against what was written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '@dfinity/principal';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { slotOf } from '../../src/shared/hash';
import type { Loan, LoanStatusName } from '../../src/shared/types';
import { deploy, type Deployment, routerAs } from './fixtures/router_fixture';
import { ADMIN, application, ok, user } from './support';

const FARMERS = 500;
const LOANS_PER_FARMER = 20;
const LOANS = FARMERS * LOANS_PER_FARMER;
const INVESTORS = 5;
/** Every FUND_EVERY-th loan is submitted, approved and funded. */
const FUND_EVERY = 20;
/** Every SAMPLE_EVERY-th loan or farmer is also read through the router's own paths. */
const SAMPLE_EVERY = 50;
/** Calls submitted together (one emulator round each); below the 500-message input queues. */
const BATCH = 250;
const APPROVED = 400_000n;
const FUNDED = 100_000n;

/** Runs `call` over `items` in parallel batches of BATCH, in order. */
async function inBatches<T, R>(items: readonly T[], call: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = [];
    for (let at = 0; at < items.length; at += BATCH) {
        out.push(...(await Promise.all(items.slice(at, at + BATCH).map(call))));
    }
    return out;
}

function statusOf(loan: Loan): LoanStatusName {
    return Object.keys(loan.status)[0] as LoanStatusName;
}

describe(`${LOANS.toLocaleString('en')} loans across 4 shards`, () => {
    let ic: TestIc;
    let d: Deployment;
    const farmers: Principal[] = Array.from({ length: FARMERS }, (_, n) => user(n));
    const investors: Principal[] = Array.from({ length: INVESTORS }, (_, n) => user(900_000 + n));
    /** Every loan as last answered by a write, by id. */
    const written = new Map<bigint, Loan>();
    const funded = new Map<string, bigint[]>();

    beforeAll(async () => {
        // Counting mode: the canisters read ic0.performance_counter, which the emulator answers only then.
        ic = await createTestIc({ countInstructions: true });
        d = await deploy(ic, { shardCount: 4 });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('writes every loan through the router on the shard owning its borrower', async () => {
        const jobs = Array.from({ length: LOANS }, (_, n) => ({
            farmer: farmers[n % FARMERS],
            n
        }));
        const loans = await inBatches(jobs, async ({ farmer, n }) =>
            ok(await d.router.create_loan(application(farmer, n)))
        );
        for (const loan of loans) written.set(loan.id, loan);
        expect(written.size).toBe(LOANS);
        for (const loan of loans) {
            expect(Number(loan.id >> 48n)).toBe(slotOf(loan.borrower.toUint8Array()));
        }
        const perShard = await Promise.all(
            d.shards.map(async (s) => ok(await s.actor.get_shard_stats()).loan_count)
        );
        expect(perShard.reduce((a, b) => a + b, 0n)).toBe(BigInt(LOANS));
        for (const count of perShard) expect(count).toBeGreaterThan(BigInt(LOANS / 8));
    }, 900_000);

    it('funds a share of the loans from a handful of investors, each spanning every shard', async () => {
        const chosen = [...written.keys()].filter((_, i) => i % FUND_EVERY === 0);
        await inBatches(chosen, async (id) =>
            ok(await d.router.update_loan(id, { SubmitForApproval: null }))
        );
        await inBatches(chosen, async (id) =>
            ok(await d.router.update_loan(id, { Approve: { amount_approved: APPROVED } }))
        );
        const after = await inBatches(chosen, async (id) => {
            const investor = investors[Number(id % BigInt(INVESTORS))];
            return ok(await d.router.update_loan(id, { Fund: { investor, amount: FUNDED } }));
        });
        for (const loan of after) {
            written.set(loan.id, loan);
            const key = loan.funders[0].investor.toText();
            funded.set(key, [...(funded.get(key) ?? []), loan.id]);
        }
        for (const investor of investors) {
            const ids = funded.get(investor.toText()) ?? [];
            expect(ids.length).toBeGreaterThan(0);
            const shards = new Set(ids.map((id) => ownerOf(d, id)));
            expect(shards.size).toBe(d.shards.length);
        }
    }, 900_000);

    it('reads every loan back by id from the shard its id names', async () => {
        const ids = [...written.keys()];
        for (const shard of d.shards) {
            // Consecutive queries to one canister: the cheapest way through 10,000 reads.
            const mine = ids.filter((id) => ownerOf(d, id) === shard.shard_id);
            expect(mine.length).toBeGreaterThan(LOANS / 8);
            const read = await inBatches(mine, async (id) => ok(await shard.actor.get_loan(id)));
            read.forEach((loan, i) => expect(loan).toEqual(written.get(mine[i])));
        }
        // The router's own paths on a sample: the owner it names, and its read (an update).
        const sample = ids.filter((_, i) => i % SAMPLE_EVERY === 0);
        const named = await inBatches(sample, async (id) =>
            ok(await d.router.route_loan_query(id))
        );
        named.forEach((canister, i) => {
            const owner = d.shards.find((s) => s.shard_id === ownerOf(d, sample[i]))!;
            expect(canister.toText()).toBe(owner.canisterId.toText());
        });
        const viaRouter = await inBatches(sample, async (id) => ok(await d.router.get_loan(id)));
        viaRouter.forEach((loan, i) => expect(loan).toEqual(written.get(sample[i])));
    }, 900_000);

    it("reads every farmer's loans by borrower, from one shard each", async () => {
        const expected = new Map<string, bigint[]>();
        for (const loan of written.values()) {
            const key = loan.borrower.toText();
            expected.set(key, [...(expected.get(key) ?? []), loan.id]);
        }
        const pages = await inBatches(farmers, async (farmer) => {
            const slot = slotOf(farmer.toUint8Array());
            const owner = d.table.ranges.find((r) => slot >= r.start && slot <= r.end)!;
            const shard = d.shards.find((s) => s.shard_id === owner.shard_id)!;
            return ok(await shard.actor.get_loans_by_borrower(farmer, [], [500]));
        });
        pages.forEach((page, i) => {
            const ids = expected.get(farmers[i].toText())!;
            expect(page.next_cursor).toEqual([]);
            expect(page.loans.map((l) => l.id)).toEqual([...ids].sort(byId));
            for (const loan of page.loans) expect(loan).toEqual(written.get(loan.id));
        });
        // The router's farmer dashboard (one shard call each) on a sample of farmers.
        const admin = routerAs(ic, d.routerId, ADMIN);
        const sample = farmers.filter((_, i) => i % SAMPLE_EVERY === 0);
        const boards = await inBatches(sample, async (farmer) =>
            ok(await admin.get_farmer_dashboard_advanced(farmer))
        );
        boards.forEach((board, i) => {
            const ids = expected.get(sample[i].toText())!;
            expect(board.complete).toBe(true);
            expect(board.total_loans).toBe(BigInt(LOANS_PER_FARMER));
            expect(board.loans.map((l) => l.id)).toEqual([...ids].sort(byId));
            for (const loan of board.loans) expect(loan).toEqual(written.get(loan.id));
        });
    }, 900_000);

    it("reads every investor's loans across all shards", async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        for (const investor of investors) {
            const board = ok(await admin.get_investor_dashboard_advanced(investor));
            const ids = [...(funded.get(investor.toText()) ?? [])].sort(byId);
            expect(board.complete).toBe(true);
            expect([...board.failed_shards]).toEqual([]);
            expect(board.investments.map((l) => l.id)).toEqual(ids);
            expect(board.total_investments).toBe(BigInt(ids.length));
            expect(board.total_invested).toBe(FUNDED * BigInt(ids.length));
            for (const loan of board.investments) expect(loan).toEqual(written.get(loan.id));
        }
    }, 900_000);

    it('reports system totals equal to what was written', async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        const analytics = ok(await admin.get_system_analytics());
        const loans = [...written.values()];
        expect(analytics.complete).toBe(true);
        expect(analytics.total_loans).toBe(BigInt(LOANS));
        expect(analytics.total_shards).toBe(4);
        expect(analytics.total_requested).toBe(loans.reduce((s, l) => s + l.amount_requested, 0n));
        expect(analytics.total_approved).toBe(loans.reduce((s, l) => s + l.amount_approved, 0n));
        const counts = new Map<string, bigint>();
        for (const loan of loans) {
            counts.set(statusOf(loan), (counts.get(statusOf(loan)) ?? 0n) + 1n);
        }
        for (const { status, count } of analytics.by_status) {
            expect(count).toBe(counts.get(Object.keys(status)[0]) ?? 0n);
        }
        expect(counts.get('Approved')).toBe(BigInt(LOANS / FUND_EVERY));
    }, 900_000);
});

function byId(a: bigint, b: bigint): number {
    return a < b ? -1 : a > b ? 1 : 0;
}

/** The shard id owning a loan, from the slot in its id and the deployment's table. */
function ownerOf(d: Deployment, id: bigint): number {
    const slot = Number(id >> 48n);
    return d.table.ranges.find((r) => slot >= r.start && slot <= r.end)!.shard_id;
}
