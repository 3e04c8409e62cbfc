/**
 * The shard registry and the slot map as the factory reads and writes them: conversions between
 * the stored records and the Candid views (`ShardInfo`, `RoutingTable`), and the audit log.
 */
import { Principal, time } from 'azle';

import { fromRanges, SlotMap, toRanges } from '../shared/slot_map';
import type { RoutingTable, ShardInfo } from '../shared/types';
import { MAX_SHARDS } from '../shared/limits';
import { emptyShardMetrics } from '../shared/shard_reply_codec';
import { appendAudit, getSlotRanges, setSlotRanges, ShardRecord, shards } from './store';
import type { ShardLoad } from '../shared/scaling_policy';

export function nowMs(): number {
    return Number(time() / 1_000_000n);
}

/** Writes an audit entry in the name of `caller` (the factory itself for timers). */
export function log(caller: Principal, action: string, detail: string): void {
    appendAudit(caller, action, detail, time());
}

/** The slot map built from the stored ranges it came from (the heap copy is immutable). */
let mapMemo: { stored: object; map: SlotMap } | null = null;

/**
 * The slot map, or null before the first shard. Corrupt stored ranges are a bug: trap. Built once
 * per stored table (16,384 owners); callers must not change it (slot_map functions copy).
 */
export function loadMap(): SlotMap | null {
    const stored = getSlotRanges();
    if (stored === null) return null;
    if (mapMemo !== null && mapMemo.stored === stored) return mapMemo.map;
    const map = fromRanges(stored.epoch, stored.ranges);
    if (!map.ok) throw new Error(`stored slot map is invalid: ${JSON.stringify(map.error)}`);
    mapMemo = { stored, map: map.value };
    return map.value;
}

/** Whether the first shard exists (it creates the slot map). */
export function hasSlotMap(): boolean {
    return getSlotRanges() !== null;
}

/** The routing epoch (0 before the first shard), without building the map. */
export function currentEpoch(): bigint {
    return getSlotRanges()?.epoch ?? 0n;
}

export function saveMap(map: SlotMap): void {
    setSlotRanges(map.epoch, toRanges(map));
}

/** Every shard record, ascending by id (at most MAX_SHARDS). */
export function allShards(): ShardRecord[] {
    return shards.values(0, MAX_SHARDS);
}

/** The Candid view of a shard; `slots` is its slot count in the current map. */
/** What the scaling policy sees of a shard: its latest metrics (zero before the first poll). */
export function shardLoadOf(r: ShardRecord): ShardLoad {
    return {
        shard_id: r.shard_id,
        loan_count: r.metrics?.loan_count ?? 0n,
        storage_percentage: r.metrics?.storage_percentage ?? 0,
        avg_response_time_ms: r.metrics?.avg_response_time_ms ?? 0,
        is_read_only: r.is_read_only
    };
}

/** Principals whose text was parsed (`Principal.fromText` costs ~1 M instructions); bounded. */
const MAX_PRINCIPALS = 1_024;
const principals = new Map<string, Principal>();

/** `Principal.fromText(text)`, remembered (principals are immutable). */
export function principalOf(text: string): Principal {
    const known = principals.get(text);
    if (known !== undefined) return known;
    const p = Principal.fromText(text);
    if (principals.size >= MAX_PRINCIPALS) principals.clear();
    principals.set(text, p);
    return p;
}

export function shardInfo(record: ShardRecord, slots: number): ShardInfo {
    const metrics = record.metrics ?? emptyShardMetrics();
    return {
        shard_id: record.shard_id,
        canister_id: principalOf(record.canister_id),
        created_at: record.created_at,
        loan_count: metrics.loan_count,
        storage_used_bytes: metrics.storage_used_bytes,
        storage_percentage: metrics.storage_percentage,
        is_active: record.is_active,
        is_read_only: record.is_read_only,
        region: record.region,
        slot_count: slots,
        memory_size_bytes: record.memory_size_bytes,
        cycles_balance: record.cycles_balance,
        performance_metrics: metrics
    };
}

/**
 * Slot counts per shard id in the current map (empty before the first shard), summed over the
 * stored ranges (a few dozen) rather than the 16,384 owners.
 */
export function currentSlotCounts(): Map<number, number> {
    const counts = new Map<number, number>();
    for (const r of getSlotRanges()?.ranges ?? []) {
        counts.set(r.shard_id, (counts.get(r.shard_id) ?? 0) + r.end - r.start + 1);
    }
    return counts;
}

/** Every shard's Candid view. */
export function allShardInfos(): ShardInfo[] {
    const counts = currentSlotCounts();
    return allShards().map((r) => shardInfo(r, counts.get(r.shard_id) ?? 0));
}

/** The routing table: compact ranges, epoch, and the address of every installed shard. */
export function routingTable(): RoutingTable {
    const stored = getSlotRanges();
    return {
        epoch: stored?.epoch ?? 0n,
        ranges: stored?.ranges ?? [],
        shards: allShards()
            .filter((r) => r.installed)
            .map((r) => ({
                shard_id: r.shard_id,
                canister_id: principalOf(r.canister_id),
                region: r.region
            }))
    };
}
