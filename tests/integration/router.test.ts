import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { slotOf } from '../../src/shared/hash';
import { MAX_PAGE_SIZE } from '../../src/shared/limits';
import { decodeLoanId } from '../../src/shared/loan_id';
import type { Loan } from '../../src/shared/types';

type PageView = { loans: { id: bigint }[]; next_cursor: [] | [string]; complete: boolean };
import {
    ADMIN,
    ANONYMOUS,
    application,
    err,
    FACTORY,
    ok,
    STRANGER,
    user,
    usersWhere,
    wasmOf
} from './support';
import {
    APP,
    deploy,
    FAST_BREAKER,
    routerAs,
    routerInitArg,
    shardInfo,
    type Deployment
} from './fixtures/router_fixture';
import { hasCapability, observable } from './capabilities';

function byId(a: bigint, b: bigint): number {
    return a < b ? -1 : a > b ? 1 : 0;
}

/** Shard i (1-based) of 4 owns slots [(i-1)·4096, i·4096). */
function onShard(i: number, count: number, from = 0): ReturnType<typeof user>[] {
    return usersWhere(count + from, (s) => Math.floor(s / 4096) + 1 === i).slice(from);
}

async function fundedLoan(d: Deployment, farmerShard: number, investor: ReturnType<typeof user>) {
    const [farmer] = onShard(farmerShard, 1, 40);
    const loan = ok(await d.router.create_loan(application(farmer, 7)));
    ok(await d.router.update_loan(loan.id, { SubmitForApproval: null }));
    ok(await d.router.update_loan(loan.id, { Approve: { amount_approved: 900n } }));
    return ok(await d.router.update_loan(loan.id, { Fund: { investor, amount: 300n } }));
}

describe('router', () => {
    let ic: TestIc;
    let d: Deployment;
    const investor = user(700_000);
    const investments: Loan[] = [];

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        d = await deploy(ic, { shardCount: 4 });
        for (let shard = 1; shard <= 4; shard++)
            investments.push(await fundedLoan(d, shard, investor));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('writes each loan on the shard owning the borrower slot and reads it back', async () => {
        const [farmer] = onShard(3, 1);
        const loan = ok(await d.router.create_loan(application(farmer, 1)));
        expect(decodeLoanId(loan.id)).toMatchObject({
            ok: true,
            value: { slot: slotOf(farmer.toUint8Array()) }
        });
        expect(ok(await d.shards[2].actor.get_loan(loan.id))).toEqual(loan);
        const updated = ok(await d.router.update_loan(loan.id, { SubmitForApproval: null }));
        expect(updated.status).toEqual({ PendingApproval: null });
        expect(ok(await d.router.get_loan(loan.id))).toEqual(updated);
        // The borrower may read their own loan; another user may not.
        expect(ok(await routerAs(ic, d.routerId, farmer).get_loan(loan.id))).toEqual(updated);
        expect(err(await routerAs(ic, d.routerId, STRANGER).get_loan(loan.id))).toEqual({
            NotAuthorized: null
        });
        expect(ok(await d.router.route_loan_query(loan.id)).toText()).toBe(
            d.shards[2].canisterId.toText()
        );
    });

    it('builds the investor dashboard from every shard, the composite query agreeing', async () => {
        const dash = ok(await d.router.get_investor_dashboard_advanced(investor));
        expect(dash.complete).toBe(true);
        expect([...dash.failed_shards]).toEqual([]);
        expect(dash.investments.map((l) => l.id)).toEqual(investments.map((l) => l.id).sort(byId));
        expect(dash.total_invested).toBe(1_200n);
        const viaQuery = ok(
            await routerAs(ic, d.routerId, investor).query_investor_dashboard(investor)
        );
        expect({ ...viaQuery, generated_at: 0n }).toEqual({ ...dash, generated_at: 0n });
    });

    it('pages a user loans across shards by cursor with no gaps or duplicates', async () => {
        const [farmer] = onShard(2, 1, 60);
        const own: bigint[] = [];
        for (let i = 0; i < 3; i++)
            own.push(ok(await d.router.create_loan(application(farmer, i))).id);
        // The farmer also funds one loan on each of two other shards.
        const funded = [await fundedLoan(d, 1, farmer), await fundedLoan(d, 4, farmer)];
        const expected = [...own, ...funded.map((l) => l.id)].sort((a, b) => (a < b ? -1 : 1));
        const seen: bigint[] = [];
        let cursor: [] | [string] = [];
        for (let pages = 0; pages < 10; pages++) {
            const page: PageView = ok(
                await d.router.get_aggregated_user_loans(farmer, [{ cursor, limit: [2] }])
            );
            expect(page.complete).toBe(true);
            seen.push(...page.loans.map((l) => l.id));
            if (page.next_cursor.length === 0) break;
            cursor = page.next_cursor;
        }
        expect(seen).toEqual(expected);
        const first: PageView = ok(
            await d.router.query_aggregated_user_loans(farmer, [{ cursor: [], limit: [500] }])
        );
        expect(first.loans.map((l) => l.id)).toEqual(expected);
        expect(first.next_cursor).toEqual([]);
    });

    it('serves a repeated dashboard from the cache with no shard call; a write invalidates it', async (ctx) => {
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
        const [farmer] = onShard(1, 1, 80);
        ok(await d.router.create_loan(application(farmer, 1)));
        const shardIds = new Set(d.shards.map((s) => s.canisterId.toText()));
        const shardCalls = () => ic.getMessageTrace().filter((t) => shardIds.has(t.canister));
        const admin = routerAs(ic, d.routerId, ADMIN);
        const before = ok(await admin.get_cache_statistics());

        const first = ok(await d.router.get_farmer_dashboard_advanced(farmer));
        expect(first.total_loans).toBe(1n);
        const viaQuery = ok(await d.router.query_farmer_dashboard(farmer));
        expect({ ...viaQuery, generated_at: 0n }).toEqual({ ...first, generated_at: 0n });
        ic.clearMessageTrace();
        const second = ok(await d.router.get_farmer_dashboard_advanced(farmer));
        expect(second).toEqual(first);
        expect(shardCalls()).toEqual([]);

        ok(await d.router.create_loan(application(farmer, 2)));
        ic.clearMessageTrace();
        const third = ok(await d.router.get_farmer_dashboard_advanced(farmer));
        expect(third.total_loans).toBe(2n);
        expect(shardCalls().length).toBeGreaterThan(0);

        const after = ok(await admin.get_cache_statistics());
        expect(after.hits - before.hits).toBe(1n);
        expect(after.misses - before.misses).toBe(2n);
        expect(after.invalidations - before.invalidations).toBeGreaterThanOrEqual(1n);
    });

    it('lets only writers write, users read their own, admins configure', async () => {
        const [farmer] = onShard(2, 1, 100);
        const other = onShard(2, 1, 101)[0];
        for (const caller of [ANONYMOUS, STRANGER, farmer, ADMIN, FACTORY]) {
            const r = routerAs(ic, d.routerId, caller);
            expect(await r.create_loan(application(farmer))).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.update_loan(investments[0].id, { Activate: null })).toEqual({
                Err: { NotAuthorized: null }
            });
        }
        for (const caller of [ANONYMOUS, STRANGER, farmer, APP, FACTORY]) {
            const r = routerAs(ic, d.routerId, caller);
            expect(await r.add_writer(STRANGER)).toEqual({ Err: { NotAuthorized: null } });
            expect(await r.update_load_balancing_algorithm({ RoundRobin: null })).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.remove_shard_from_balancer(1)).toEqual({ Err: { NotAuthorized: null } });
            expect(await r.reset_query_statistics()).toEqual({ Err: { NotAuthorized: null } });
        }
        for (const caller of [ANONYMOUS, STRANGER, farmer, APP]) {
            const r = routerAs(ic, d.routerId, caller);
            expect(await r.record_request_result(1, false, 10n)).toEqual({
                Err: { NotAuthorized: null }
            });
        }
        for (const caller of [ANONYMOUS, STRANGER, APP, ADMIN, farmer]) {
            const r = routerAs(ic, d.routerId, caller);
            expect(await r.update_routing_table({ ...d.table, epoch: 99n })).toEqual({
                Err: { NotAuthorized: null }
            });
        }
        for (const caller of [ANONYMOUS, STRANGER, other]) {
            const r = routerAs(ic, d.routerId, caller);
            expect(await r.get_farmer_dashboard_advanced(farmer)).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.get_investor_dashboard_advanced(farmer)).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.query_investor_dashboard(farmer)).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.get_aggregated_user_loans(farmer, [])).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await r.get_system_analytics()).toEqual({ Err: { NotAuthorized: null } });
            expect(await r.get_load_balancer_stats()).toEqual({ Err: { NotAuthorized: null } });
            expect(await r.get_query_statistics()).toEqual({ Err: { NotAuthorized: null } });
            expect(await r.get_cache_statistics()).toEqual({ Err: { NotAuthorized: null } });
        }
        // The user themself, admins and writers may read the dashboard.
        for (const caller of [farmer, ADMIN, APP]) {
            const r = routerAs(ic, d.routerId, caller);
            expect('Ok' in (await r.get_farmer_dashboard_advanced(farmer))).toBe(true);
        }
        // The writer list is managed by admins.
        const admin = routerAs(ic, d.routerId, ADMIN);
        ok(await admin.add_writer(STRANGER));
        ok(await routerAs(ic, d.routerId, STRANGER).create_loan(application(farmer, 5)));
        ok(await admin.remove_writer(STRANGER));
        expect(await routerAs(ic, d.routerId, STRANGER).create_loan(application(farmer))).toEqual({
            Err: { NotAuthorized: null }
        });
    });

    it('rejects bad input with typed errors and changes no state', async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        const [farmer] = onShard(1, 1, 120);
        const statsBefore = ok(await admin.get_load_balancer_stats());
        const viewBefore = ok(await admin.get_balancer_view());

        expect(
            err(
                await d.router.get_aggregated_user_loans(farmer, [
                    { cursor: [], limit: [MAX_PAGE_SIZE + 1] }
                ])
            )
        ).toMatchObject({ InvalidInput: { field: 'limit' } });
        expect(
            err(
                await d.router.get_aggregated_user_loans(farmer, [{ cursor: ['%%bad'], limit: [] }])
            )
        ).toMatchObject({ InvalidInput: { field: 'cursor' } });
        expect(
            err(await d.router.create_loan({ ...application(farmer), amount_requested: 0n }))
        ).toMatchObject({
            InvalidInput: { field: 'amount_requested' }
        });
        expect(err(await d.router.update_loan(1n << 63n, { Activate: null }))).toMatchObject({
            InvalidInput: { field: 'id' }
        });
        expect(err(await d.router.route_loan_query(1n << 63n))).toMatchObject({
            InvalidInput: { field: 'id' }
        });
        const info = { ...shardInfo(d, 1) };
        for (const weight of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
            expect(err(await admin.add_shard_to_balancer(info, weight))).toMatchObject({
                InvalidInput: { field: 'weight' }
            });
        }
        expect(err(await admin.remove_shard_from_balancer(999))).toMatchObject({
            InvalidInput: { field: 'shard_id' }
        });
        expect(err(await admin.record_request_result(999, false, 5n))).toMatchObject({
            InvalidInput: { field: 'shard_id' }
        });
        expect(await d.router.can_execute_request(999)).toBe(false);
        expect(
            err(await admin.set_breaker_config({ ...FAST_BREAKER, sliding_window_size: 0 }))
        ).toMatchObject({
            InvalidInput: {}
        });
        const factory = routerAs(ic, d.routerId, FACTORY);
        expect(err(await factory.update_routing_table(d.table))).toMatchObject({
            InvalidInput: { field: 'epoch' }
        });
        expect(
            err(
                await factory.update_routing_table({
                    ...d.table,
                    epoch: 5n,
                    ranges: d.table.ranges.slice(1)
                })
            )
        ).toMatchObject({ InvalidInput: { field: 'ranges' } });
        expect(
            err(
                await factory.update_routing_table({
                    ...d.table,
                    epoch: 5n,
                    shards: d.table.shards.slice(1)
                })
            )
        ).toMatchObject({ InvalidInput: { field: 'shards' } });

        const statsAfter = ok(await admin.get_load_balancer_stats());
        expect(statsAfter.routing_epoch).toBe(statsBefore.routing_epoch);
        expect(ok(await admin.get_balancer_view())).toEqual(viewBefore);
        expect(await routerAs(ic, d.routerId, ANONYMOUS).get_routing_table()).toEqual(d.table);
    });

    it('answers without a stopped shard, opens its breaker, fails fast, and recovers after the wait', async (ctx) => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        const stopped = d.shards[3];
        await ic.stopCanister({ canisterId: stopped.canisterId, sender: ADMIN });
        // A write to one of the investor's loans invalidates their cached dashboard.
        ok(await d.router.update_loan(investments[0].id, { Fund: { investor, amount: 100n } }));

        const dash = ok(await d.router.get_investor_dashboard_advanced(investor));
        expect(dash.complete).toBe(false);
        expect([...dash.failed_shards]).toEqual([stopped.shard_id]);
        expect(dash.investments.map((l) => l.id)).toEqual(investments.slice(0, 3).map((l) => l.id));

        // More failing calls until the breaker judges (window 4, minimum 2, 50%).
        let failing = 1;
        while ((await d.router.can_execute_request(stopped.shard_id)) && failing < 4) {
            ok(await d.router.get_investor_dashboard_advanced(investor));
            failing += 1;
        }
        expect(await d.router.can_execute_request(stopped.shard_id)).toBe(false);
        expect(await d.router.can_execute_request(1)).toBe(true);

        // Calls for its users now fail fast: no message reaches the shard.
        const [farmer] = onShard(4, 1, 140);
        const traced = observable(ic, 'trace', ctx, 'no message reaches the stopped shard');
        if (traced) ic.clearMessageTrace();
        const refused = err(await d.router.create_loan(application(farmer)));
        expect(refused).toEqual({
            ShardUnavailable: { shard_id: stopped.shard_id, reason: 'circuit breaker open' }
        });
        if (traced) {
            expect(
                ic.getMessageTrace().filter((t) => t.canister === stopped.canisterId.toText())
            ).toEqual([]);
        }
        const stats = ok(await admin.get_load_balancer_stats());
        const breaker = stats.breakers.find((b) => b.shard_id === stopped.shard_id)!;
        expect(breaker.state).toEqual({ Open: null });
        expect(stats.rejected_by_breaker).toBeGreaterThan(0n);

        // The router is upgraded meanwhile: the open breaker and the configuration survive.
        ok(await admin.update_load_balancing_algorithm({ LeastConnections: null }));
        await ic.upgradeCanister({
            canisterId: d.routerId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 4 }),
            sender: ADMIN
        });
        const upgraded = ok(await admin.get_load_balancer_stats());
        expect(upgraded.algorithm).toEqual({ LeastConnections: null });
        expect(upgraded.breakers).toEqual(stats.breakers);
        expect(upgraded.routing_epoch).toBe(1n);
        expect(await d.router.can_execute_request(stopped.shard_id)).toBe(false);

        // Restart: after the wait the re-armed probe timer sends the half-open probe, which closes it.
        await ic.startCanister({ canisterId: stopped.canisterId, sender: ADMIN });
        await ic.advanceTime(11_000);
        await ic.tick(3);
        const recovered = ok(await admin.get_load_balancer_stats());
        const closed = recovered.breakers.find((b) => b.shard_id === stopped.shard_id)!;
        expect(closed.state).toEqual({ Closed: null });
        expect(closed.transitions).toBe(breaker.transitions + 2n); // Open → HalfOpen → Closed
        expect(recovered.breaker_transitions).toBeGreaterThanOrEqual(3n);
        const whole = ok(await d.router.get_investor_dashboard_advanced(investor));
        expect(whole.complete).toBe(true);
        expect(ok(await d.router.create_loan(application(farmer))).borrower.toText()).toBe(
            farmer.toText()
        );
    });

    it('keeps query statistics and resets them for admins', async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        const stats = ok(await admin.get_query_statistics());
        expect(stats.total_queries).toBeGreaterThan(0n);
        expect(stats.fan_out_queries).toBeGreaterThan(0n);
        expect(stats.partial_results).toBeGreaterThan(0n);
        expect(stats.failed_shard_calls).toBeGreaterThan(0n);
        const analytics = ok(await d.router.get_system_analytics());
        expect(analytics.complete).toBe(true);
        expect(analytics.total_shards).toBe(4);
        expect(analytics.total_loans).toBeGreaterThan(4n);
        ok(await admin.reset_query_statistics());
        expect(ok(await admin.get_query_statistics()).total_queries).toBe(0n);
    });
});
