import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { LocalIc } from '../../emulator';
import { createTestIc, type TestIc } from '../../emulator/harness';
import { MAX_COMPOSITE_FANOUT } from '../../src/shared/limits';
import {
    deploy,
    evenRanges,
    FAST_BREAKER,
    routerAs,
    routerInitArg,
    type Deployment
} from './fixtures/router_fixture';
import { hasCapability } from './capabilities';
import { ADMIN, err, FACTORY, ok, principalOf, user, wasmOf } from './support';

describe('router fan-out', () => {
    let ic: TestIc;
    let wide: Deployment;

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        wide = await deploy(ic, { shardCount: 16, pushTable: false });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    function rounds(): number {
        return (ic as unknown as LocalIc).getRound();
    }

    it('calls all 16 shards at once: no more rounds than with 2', async (ctx) => {
        // Rounds (`getRound`) and the trace exist on the emulator only.
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
        const investor = user(900_100);
        const factory = routerAs(ic, wide.routerId, FACTORY);
        // First the same router over 2 of the shards (epoch 1), then over all 16 (epoch 2).
        ok(
            await factory.update_routing_table({
                epoch: 1n,
                ranges: evenRanges(2),
                shards: wide.table.shards.filter((s) => s.shard_id <= 2)
            })
        );
        const start2 = rounds();
        const dash2 = ok(await wide.router.get_investor_dashboard_advanced(investor));
        expect(dash2.complete).toBe(true);
        const rounds2 = rounds() - start2;
        ok(await factory.update_routing_table({ ...wide.table, epoch: 2n }));

        ic.clearMessageTrace();
        const start16 = rounds();
        const dash = ok(await wide.router.get_investor_dashboard_advanced(investor));
        const rounds16 = rounds() - start16;
        expect(dash.complete).toBe(true);
        expect(rounds16).toBeLessThanOrEqual(rounds2);
        const calls = ic
            .getMessageTrace()
            .filter((t) => t.method === 'get_loans_by_investor' && t.kind === 'request');
        expect(calls.length).toBe(16);
        expect(new Set(calls.map((t) => t.round)).size).toBe(1);

        const viaQuery = ok(
            await routerAs(ic, wide.routerId, ADMIN).query_investor_dashboard(investor)
        );
        expect(viaQuery.complete).toBe(true);
    });

    it('sends measurably less traffic to a slow shard under ResponseTimeBased', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        const admin = routerAs(ic, wide.routerId, ADMIN);
        ok(await admin.update_load_balancing_algorithm({ ResponseTimeBased: null }));
        const slow = wide.shards[5];
        ic.setCanisterDelay(slow.canisterId, 4);
        // The health probes measure every shard's latency.
        await ic.advanceTime(5_000);
        await ic.tick(12);
        ic.setCanisterDelay(slow.canisterId, 0);
        const view = ok(await admin.get_balancer_view());
        const slowEndpoint = view.shards.find((s) => s.endpoint.shard_id === slow.shard_id)!;
        const fastest = Math.min(...view.shards.map((s) => s.endpoint.avg_response_time_ms));
        expect(slowEndpoint.endpoint.avg_response_time_ms).toBeGreaterThan(fastest);

        const counts = new Map<number, number>();
        const picks = 64;
        for (let i = 0; i < picks; i++) {
            const id = ok(await wide.router.get_optimal_shard({ Read: null })).shard_id;
            counts.set(id, (counts.get(id) ?? 0) + 1);
        }
        const fair = picks / wide.shards.length;
        expect(counts.get(slow.shard_id) ?? 0).toBeLessThan(fair / 2);
    });

    it('refuses a composite fan-out over the cap and answers it as an update', async () => {
        const routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: routerId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 0, breaker: FAST_BREAKER }),
            sender: ADMIN
        });
        const count = MAX_COMPOSITE_FANOUT + 1;
        const ranges = evenRanges(count);
        const table = {
            epoch: 1n,
            ranges,
            // Addresses where no canister lives: every call is rejected.
            shards: ranges.map((r) => ({
                shard_id: r.shard_id,
                canister_id: principalOf(`gone-${r.shard_id}`),
                region: 'eu'
            }))
        };
        ok(await routerAs(ic, routerId, FACTORY).update_routing_table(table));
        const admin = routerAs(ic, routerId, ADMIN);
        const investor = user(900_200);
        expect(err(await admin.query_investor_dashboard(investor))).toEqual({
            CapacityExceeded: {
                resource: 'composite_fanout_shards',
                limit: BigInt(MAX_COMPOSITE_FANOUT)
            }
        });
        const dash = ok(await admin.get_investor_dashboard_advanced(investor));
        expect(dash.complete).toBe(false);
        expect(dash.failed_shards.length).toBe(count);
    });
});
