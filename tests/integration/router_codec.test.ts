/**
 * The router's cheap paths keep their meaning: hand-encoded replies (`route_loan_query`, the cached
 * farmer dashboard) are the bytes `IDL.encode` writes, arguments in another valid encoding are
 * still accepted, and the per-call bookkeeping that reaches stable memory only at the next flush
 * (breaker windows, latencies, counters) survives an upgrade.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { principal } from '../../src/shared/candid';
import { FarmerDashboard, Result } from '../../src/shared/types';
import { ADMIN, application, encodeArgs, ok, STRANGER, user, wasmOf } from './support';
import { APP, deploy, routerAs, routerInitArg, type Deployment } from './fixtures/router_fixture';

const LoanRoute = Result(principal);
const Dashboard = Result(FarmerDashboard);

describe('router codec', () => {
    let ic: TestIc;
    let d: Deployment;

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        d = await deploy(ic, { shardCount: 2 });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('answers route_loan_query with the bytes IDL.encode writes, for any argument encoding', async () => {
        const loan = ok(await d.router.create_loan(application(user(10), 1)));
        const call = (arg: Uint8Array) =>
            ic.queryCall({
                canisterId: d.routerId,
                method: 'route_loan_query',
                arg,
                sender: STRANGER
            });
        const usual = await call(encodeArgs([IDL.Nat64], [loan.id]));
        const expected = ok(await d.router.route_loan_query(loan.id));
        const owner = d.shards.find((s) => s.canisterId.toText() === expected.toText());
        expect(ok(await owner!.actor.get_loan(loan.id))).toEqual(loan);
        expect([...usual]).toEqual([...encodeArgs([LoanRoute], [{ Ok: expected }])]);
        // An extra argument is valid Candid (ignored): the generic decoder takes over.
        const extra = await call(encodeArgs([IDL.Nat64, IDL.Text], [loan.id, 'ignored']));
        expect([...extra]).toEqual([...usual]);
        // A bad id: the same typed error as before, encoded by @dfinity/candid.
        const bad = IDL.decode([LoanRoute], await call(encodeArgs([IDL.Nat64], [1n << 63n])))[0];
        expect(bad).toHaveProperty('Err.InvalidInput');
    });

    it('serves a cached farmer dashboard as the very bytes of the miss', async () => {
        const farmer = user(20);
        ok(await d.router.create_loan(application(farmer, 2)));
        const call = (arg: Uint8Array, sender: Principal) =>
            ic.updateCall({
                canisterId: d.routerId,
                method: 'get_farmer_dashboard_advanced',
                arg,
                sender
            });
        const admin = routerAs(ic, d.routerId, ADMIN);
        const before = ok(await admin.get_cache_statistics());
        const miss = await call(encodeArgs([IDL.Principal], [farmer]), APP);
        const hit = await call(encodeArgs([IDL.Principal, IDL.Text], [farmer, 'x']), farmer);
        expect([...hit]).toEqual([...miss]);
        const after = ok(await admin.get_cache_statistics());
        expect(after.hits).toBe(before.hits + 1n);
        expect(after.misses).toBe(before.misses + 1n);
        const dashboard = IDL.decode([Dashboard], miss)[0] as unknown as {
            Ok: { farmer: Principal; loans: unknown[]; complete: boolean };
        };
        expect(dashboard.Ok.farmer.toText()).toBe(farmer.toText());
        expect(dashboard.Ok.loans).toHaveLength(1);
        expect(dashboard.Ok.complete).toBe(true);
        // Another user still may not read it, cached or not.
        const refused = IDL.decode(
            [Dashboard],
            await call(encodeArgs([IDL.Principal], [farmer]), STRANGER)
        );
        expect(refused[0]).toEqual({ Err: { NotAuthorized: null } });
        // A write for the farmer drops the cached reply: the next answer has both loans.
        ok(await d.router.create_loan(application(farmer, 3)));
        const fresh = IDL.decode(
            [Dashboard],
            await call(encodeArgs([IDL.Principal], [farmer]), APP)
        );
        expect((fresh[0] as { Ok: { loans: unknown[] } }).Ok.loans).toHaveLength(2);
    });

    it('keeps the per-call breaker windows, latencies and counters through an upgrade', async () => {
        for (let i = 0; i < 5; i++) ok(await d.router.create_loan(application(user(100 + i), i)));
        ok(await d.router.get_farmer_dashboard_advanced(user(100)));
        const admin = routerAs(ic, d.routerId, ADMIN);
        const stats = ok(await admin.get_load_balancer_stats());
        const queries = ok(await admin.get_query_statistics());
        expect(stats.total_requests).toBeGreaterThanOrEqual(6n);
        expect(queries.total_queries).toBeGreaterThan(0n);
        await ic.upgradeCanister({
            canisterId: d.routerId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 2 }),
            sender: ADMIN
        });
        expect(ok(await admin.get_load_balancer_stats())).toEqual(stats);
        expect(ok(await admin.get_query_statistics())).toEqual(queries);
    });
});
