import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import {
    ALGORITHMS,
    choose,
    type AlgorithmName,
    type BalanceRequest,
    type ShardSnapshot
} from '../../src/shared/balancing';
import { randomSource } from '../../src/shared/router_plan';
import { fromRanges, ownerOf } from '../../src/shared/slot_map';
import { routerAs } from './fixtures/router_fixture';
import { deploy, shardInfo, type Deployment } from './fixtures/router_fixture';
import { ADMIN, err, FACTORY, ok, principalOf, user, usersWhere } from './support';

type View = {
    algorithm: Record<string, null>;
    rr_last_shard_id: bigint;
    wrr: { shard_id: number; current: number }[];
    random_state: number;
    shards: {
        endpoint: {
            shard_id: number;
            region: string;
            weight: number;
            is_healthy: boolean;
            circuit_state: Record<string, null>;
            in_flight: number;
            avg_response_time_ms: number;
        };
        resource_usage: number;
    }[];
};

type Request = { Read: null } | { Regional: string } | { UserRead: ReturnType<typeof user> };

/** The pure `choose`, fed exactly what the canister reports it knows. */
function replay(
    algorithm: AlgorithmName,
    view: View,
    d: Deployment,
    requests: Request[]
): (number | 'none')[] {
    const map = fromRanges(d.table.epoch, d.table.ranges);
    if (!map.ok) throw new Error('bad table');
    const snapshot: ShardSnapshot[] = view.shards.map(({ endpoint: e, resource_usage }) => ({
        shardId: e.shard_id,
        healthy: e.is_healthy,
        breakerOpen: 'Open' in e.circuit_state || 'ForcedOpen' in e.circuit_state,
        weight: e.weight,
        inFlight: e.in_flight,
        ewmaLatencyMs: e.avg_response_time_ms,
        resourceUsage: resource_usage,
        region: e.region
    }));
    let state = {
        rrLastShardId: Number(view.rr_last_shard_id),
        wrrCurrent: view.wrr.map((w) => ({ shardId: w.shard_id, current: w.current }))
    };
    const holder = { state: view.random_state };
    return requests.map((request) => {
        const input: BalanceRequest = {
            randomU32: randomSource(holder),
            ownerOfSlot: (slot) => ownerOf(map.value, slot) ?? -1
        };
        if ('UserRead' in request) input.key = request.UserRead.toUint8Array();
        if ('Regional' in request) input.region = request.Regional;
        const r = choose(algorithm, state, snapshot, input);
        if (!r.ok) return 'none';
        state = r.state;
        return r.shardId;
    });
}

function requestsFor(algorithm: AlgorithmName): Request[] {
    const users = usersWhere(12, () => true);
    return users.map((u, i): Request => {
        if (algorithm === 'ConsistentHashing') return { UserRead: u };
        if (algorithm === 'Geographic') return { Regional: i % 2 === 0 ? 'asia' : 'eu' };
        return i % 3 === 0 ? { UserRead: u } : { Read: null };
    });
}

async function pickAll(d: Deployment, requests: Request[]): Promise<(number | 'none')[]> {
    const picks: (number | 'none')[] = [];
    for (const request of requests) {
        const r = await d.router.get_optimal_shard(request);
        picks.push('Ok' in r ? r.Ok.shard_id : 'none');
    }
    return picks;
}

describe('router balancing', () => {
    let ic: TestIc;
    let d: Deployment;

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        d = await deploy(ic, { shardCount: 4, seed: 777 });
        const admin = routerAs(ic, d.routerId, ADMIN);
        const setup: [number, string, number, number, bigint][] = [
            [1, 'eu', 10, 1, 50n],
            [2, 'eu', 50, 2, 10n],
            [3, 'asia', 20, 3, 30n],
            [4, 'asia', 80, 1, 20n]
        ];
        for (const [id, region, storage, weight, latency_ms] of setup) {
            ok(await admin.add_shard_to_balancer(shardInfo(d, id, region, storage), weight));
            ok(await admin.record_request_result(id, true, latency_ms));
        }
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('picks as the pure algorithm does, for every algorithm', async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        for (const algorithm of ALGORITHMS) {
            ok(await admin.update_load_balancing_algorithm({ [algorithm]: null } as never));
            const requests = requestsFor(algorithm);
            const view = ok(await admin.get_balancer_view()) as unknown as View;
            const expected = replay(algorithm, view, d, requests);
            expect(await pickAll(d, requests), algorithm).toEqual(expected);
            expect(
                expected.filter((p) => p === 'none'),
                algorithm
            ).toEqual([]);
        }
    });

    it('never picks a shard whose breaker is open, in any algorithm', async () => {
        const admin = routerAs(ic, d.routerId, ADMIN);
        ok(await admin.record_request_result(2, false, 5n));
        ok(await admin.record_request_result(2, false, 5n));
        expect(await d.router.can_execute_request(2)).toBe(false);
        for (const algorithm of ALGORITHMS) {
            ok(await admin.update_load_balancing_algorithm({ [algorithm]: null } as never));
            const requests = requestsFor(algorithm);
            const view = ok(await admin.get_balancer_view()) as unknown as View;
            const expected = replay(algorithm, view, d, requests);
            const picks = await pickAll(d, requests);
            expect(picks, algorithm).toEqual(expected);
            expect(picks, algorithm).not.toContain(2);
        }
        // ConsistentHashing does not move a user off their shard: it says the shard is unavailable.
        ok(await admin.update_load_balancing_algorithm({ ConsistentHashing: null }));
        const [onTwo] = usersWhere(1, (s) => s >= 4096 && s < 8192);
        expect(err(await d.router.get_optimal_shard({ UserRead: onTwo }))).toMatchObject({
            ShardUnavailable: { shard_id: 2 }
        });
        const stats = ok(await admin.get_load_balancer_stats());
        expect(stats.breakers.find((b) => b.shard_id === 2)!.state).toEqual({ Open: null });
        expect(stats.breaker_transitions).toBeGreaterThanOrEqual(1n);
    });

    it('only admins and the factory may record results; the factory can trip a breaker', async () => {
        const factory = routerAs(ic, d.routerId, FACTORY);
        ok(await factory.record_request_result(4, true, 1n));
        const stranger = routerAs(ic, d.routerId, principalOf('stranger'));
        expect(await stranger.record_request_result(4, false, 1n)).toEqual({
            Err: { NotAuthorized: null }
        });
        expect(await stranger.get_optimal_shard({ Read: null })).toEqual({
            Err: { NotAuthorized: null }
        });
    });
});
