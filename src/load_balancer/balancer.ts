/**
 * The balancer at the canister edge: keeps the shards it chooses from in stable memory, asks
 * `choose` (src/shared/balancing.ts) for a pick with a reproducible random source, and runs the
 * health probes whose outcomes feed the breakers.
 */

import { ALGORITHMS, AlgorithmName, choose } from '../shared/balancing';
import { tagOf } from '../shared/candid';
import { slotOf } from '../shared/hash';
import { MAX_REGION_LENGTH_CHARS } from '../shared/limits';
import { MAX_BALANCER_SHARDS, type BalancerView } from '../shared/router_api';
import { BalancerShard, randomSource, snapshotOf } from '../shared/router_plan';
import { ownerOf, type SlotMap } from '../shared/slot_map';
import { OkReplyCodec, principalFromText, principalText } from '../shared/router_codec';
import { decodeOkShardStatsReply } from '../shared/shard_reply_codec';
import {
    LoadBalancerStats,
    type ApiError,
    type LoadBalancingAlgorithm,
    type RequestType,
    type RoutingTable,
    type ShardEndpoint,
    type ShardInfo
} from '../shared/types';
import { breakerOf, breakerStats, callShardRaw, inFlightOf } from './edge';
import {
    flushStores,
    getBook,
    getCounters,
    getRoutingTable,
    setBook,
    shardCounters,
    shards
} from './store';
import { invalidInput } from '../shared/errors';

type Res<T> = { Ok: T } | { Err: ApiError };

const invalid = invalidInput;

/** Every shard the balancer knows, in id order (bounded by MAX_BALANCER_SHARDS). */
export function balancerShards(): BalancerShard[] {
    return shards.entries(MAX_BALANCER_SHARDS).map((entry) => entry[1]);
}

export function endpointOf(s: BalancerShard): ShardEndpoint {
    const breaker = breakerOf(s.shard_id).state;
    return {
        shard_id: s.shard_id,
        canister_id: principalFromText(s.canister_id),
        region: s.region,
        weight: s.weight,
        is_healthy: s.healthy,
        circuit_state: { [breaker]: null } as ShardEndpoint['circuit_state'],
        in_flight: inFlightOf(s.shard_id),
        avg_response_time_ms: s.ewma_latency_ms
    };
}

/**
 * Picks a shard for a request with the configured algorithm; an open breaker or an unhealthy shard
 * is never picked. User-scoped requests carry the user's key (ConsistentHashing sends them to the
 * slot's owner), Regional ones the region.
 */
export function pickShard(request: RequestType, map: SlotMap | null): Res<ShardEndpoint> {
    const book = getBook();
    const all = balancerShards();
    const snapshot = snapshotOf(all, (id) => breakerOf(id).state, inFlightOf);
    const holder = { state: book.random_state };
    let key: Uint8Array | undefined;
    let region: string | undefined;
    if ('UserRead' in request) key = request.UserRead.toUint8Array();
    if ('UserWrite' in request) key = request.UserWrite.toUint8Array();
    if ('Regional' in request) {
        if (request.Regional.length > MAX_REGION_LENGTH_CHARS) {
            return invalid('request_type', `region longer than ${MAX_REGION_LENGTH_CHARS}`);
        }
        region = request.Regional;
    }
    if (book.algorithm === 'ConsistentHashing' && key === undefined) {
        return invalid('request_type', 'ConsistentHashing needs UserRead or UserWrite');
    }
    const result = choose(
        book.algorithm,
        { rrLastShardId: book.rr_last_shard_id, wrrCurrent: book.wrr },
        snapshot,
        {
            key,
            region,
            randomU32: randomSource(holder),
            ownerOfSlot: map === null ? undefined : (slot) => ownerOf(map, slot) ?? -1
        }
    );
    if (!result.ok) {
        const shard_id = key !== undefined && map !== null ? (ownerOf(map, slotOf(key)) ?? 0) : 0;
        return { Err: { ShardUnavailable: { shard_id, reason: result.reason } } };
    }
    setBook({
        ...book,
        rr_last_shard_id: result.state.rrLastShardId,
        wrr: result.state.wrrCurrent,
        random_state: holder.state
    });
    const chosen = all.find((s) => s.shard_id === result.shardId)!;
    return { Ok: endpointOf(chosen) };
}

/** Adds or replaces a shard; a replaced shard keeps its latency average. */
export function addShard(info: ShardInfo, weight: number): Res<null> {
    if (!Number.isFinite(weight) || weight <= 0 || weight > 1e9) {
        return invalid('weight', 'must be a finite number in (0, 1e9]');
    }
    if (info.region.length > MAX_REGION_LENGTH_CHARS) {
        return invalid('region', `at most ${MAX_REGION_LENGTH_CHARS} characters`);
    }
    const usage = info.storage_percentage / 100;
    if (!Number.isFinite(usage) || usage < 0) {
        return invalid('storage_percentage', 'must be a finite number ≥ 0');
    }
    const existing = shards.get(info.shard_id);
    if (existing === undefined && shards.len() >= BigInt(MAX_BALANCER_SHARDS)) {
        return { Err: { CapacityExceeded: { resource: 'balancer_shards', limit: 1000n } } };
    }
    shards.insert(info.shard_id, {
        shard_id: info.shard_id,
        canister_id: info.canister_id.toText(),
        region: info.region,
        weight,
        healthy: info.is_active,
        ewma_latency_ms: existing?.ewma_latency_ms ?? 0,
        last_sample_at_ms: existing?.last_sample_at_ms ?? 0,
        resource_usage: Math.min(1, usage)
    });
    return { Ok: null };
}

export function removeShard(shard_id: number): Res<null> {
    if (shards.get(shard_id) === undefined) {
        return invalid('shard_id', `shard ${shard_id} is not in the balancer`);
    }
    shards.remove(shard_id);
    return { Ok: null };
}

/** Makes every shard of a new routing table known to the balancer (weight 1 when new). */
export function adoptTableShards(table: RoutingTable): void {
    for (const address of table.shards.slice(0, MAX_BALANCER_SHARDS)) {
        const existing = shards.get(address.shard_id);
        const canister_id = principalText(address.canister_id);
        if (existing !== undefined && existing.canister_id === canister_id) continue;
        if (existing === undefined && shards.len() >= BigInt(MAX_BALANCER_SHARDS)) return;
        shards.insert(address.shard_id, {
            shard_id: address.shard_id,
            canister_id,
            region: address.region,
            weight: existing?.weight ?? 1,
            healthy: true,
            ewma_latency_ms: 0,
            last_sample_at_ms: 0,
            resource_usage: existing?.resource_usage ?? 0
        });
    }
}

/** Switches the algorithm; its bookkeeping starts afresh so the new one is not skewed. */
export function setAlgorithm(algorithm: LoadBalancingAlgorithm): void {
    const name = tagOf(algorithm) as AlgorithmName;
    if (!ALGORITHMS.includes(name)) throw new Error(`unknown algorithm ${name}`);
    setBook({ ...getBook(), algorithm: name, rr_last_shard_id: -1, wrr: [] });
}

function perShard(): LoadBalancerStats['per_shard'] {
    return shardCounters.entries(MAX_BALANCER_SHARDS).map(([shard_id, c]) => ({
        shard_id,
        requests: c.requests,
        failures: c.failures
    }));
}

/** Read from the heap copies (`CachedMap.entries`): no stable memory read, nothing flushed. */
export function loadBalancerStats(): LoadBalancerStats {
    const book = getBook();
    const counters = getCounters();
    const ids = new Set<number>(balancerShards().map((s) => s.shard_id));
    for (const [id] of shardCounters.entries(MAX_BALANCER_SHARDS)) ids.add(id);
    return {
        algorithm: { [book.algorithm]: null } as LoadBalancingAlgorithm,
        total_requests: counters.total_requests,
        failed_requests: counters.failed_requests,
        rejected_by_breaker: counters.rejected_by_breaker,
        breaker_transitions: counters.breaker_transitions,
        per_shard: perShard(),
        breakers: [...ids].sort((a, b) => a - b).map(breakerStats),
        routing_epoch: getRoutingTable()?.epoch ?? 0n
    };
}

const LB_STATS_CODEC = new OkReplyCodec<LoadBalancerStats>(LoadBalancerStats, {
    algorithm: { RoundRobin: null },
    total_requests: 0n,
    failed_requests: 0n,
    rejected_by_breaker: 0n,
    breaker_transitions: 0n,
    per_shard: [],
    breakers: [],
    routing_epoch: 0n
});

/**
 * The reply of `get_load_balancer_stats`, encoded by hand: the operators poll it after every
 * batch, and `IDL.encode` of this record costs about 90 M instructions in the canister.
 */
export function encodeLoadBalancerStatsReply(result: Res<LoadBalancerStats>): Uint8Array {
    return LB_STATS_CODEC.encodeReply(result);
}

export function balancerView(): BalancerView {
    const book = getBook();
    return {
        algorithm: { [book.algorithm]: null } as LoadBalancingAlgorithm,
        rr_last_shard_id: BigInt(book.rr_last_shard_id),
        wrr: book.wrr.map((e) => ({ shard_id: e.shardId, current: e.current })),
        random_state: book.random_state,
        shards: balancerShards().map((s) => ({
            endpoint: endpointOf(s),
            resource_usage: s.resource_usage,
            last_sample_at: BigInt(s.last_sample_at_ms) * 1_000_000n
        })),
        per_shard: perShard()
    };
}

/**
 * Probes every shard once, in parallel (`get_shard_stats`), through its breaker: an open breaker
 * is not probed until its wait is over, then the probe is the half-open trial. A shard's health is
 * the outcome of its latest probe.
 */
export async function probeAll(): Promise<void> {
    // The probe timer also writes the deferred bookkeeping to stable memory (`CachedMap`).
    flushStores();
    const targets = balancerShards();
    await Promise.all(
        targets.map(async (s) => {
            const reply = await callShardRaw(
                s.shard_id,
                s.canister_id,
                'get_shard_stats',
                [],
                true,
                decodeOkShardStatsReply
            );
            const refused =
                'Err' in reply &&
                'ShardUnavailable' in reply.Err &&
                reply.Err.ShardUnavailable.reason === 'circuit breaker open';
            if (refused) return;
            const current = shards.get(s.shard_id);
            const healthy = !('Err' in reply);
            // Written through only when it changes: most probes find the shard as it was.
            if (current === undefined || current.healthy === healthy) return;
            shards.insert(s.shard_id, { ...current, healthy });
        })
    );
}
