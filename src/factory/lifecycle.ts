/**
 * Shard lifecycle: creation (create_canister + install_chunked_code), the auto-scaling round,
 * cycles top-up and rolling upgrades. Decisions come from `src/shared`; this file performs them.
 */
import { canisterSelf, isController, Principal, time } from 'azle';

import { MAX_COMPOSITE_FANOUT, MAX_REGIONS, SLOT_COUNT } from '../shared/limits';
import { planSpans } from '../shared/migration';
import { decideScaling, finishScaleOut, scaleOutRegion, ShardLoad } from '../shared/scaling_policy';
import type { SlotCount } from '../shared/rebalance';
import { MAX_SLOT_COUNT_PAGE, ShardInit, SlotCountPage } from '../shared/shard_api';
import { addShard } from '../shared/slot_map';
import type { ApiError, Result, ShardInfo } from '../shared/types';
import {
    callShard,
    canisterStatus,
    clearChunkStore,
    createCanister,
    depositCycles,
    installShard,
    pushRoutingTable,
    shardMetrics,
    uploadChunk
} from './ic';
import { beginMigration, currentMigration } from './migrator';
import {
    allShards,
    currentEpoch,
    hasSlotMap,
    loadMap,
    log,
    nowMs,
    routingTable,
    saveMap,
    shardInfo,
    shardLoadOf
} from './registry';
import {
    chunkKey,
    getAdmins,
    getCmc,
    getConfig,
    getCounters,
    getRouter,
    getScalingState,
    getWasm,
    leaseHeld,
    regions,
    releaseLease,
    setCounters,
    setScalingState,
    ShardRecord,
    shards,
    takeLease,
    wasmChunks
} from './store';
import { describeValue } from '../shared/errors';

/** A shard creation holds the `create` lease at most this long. */
const CREATE_LEASE_MS = 10 * 60_000;
/** Shards topped up per round at most. */
export const MAX_TOP_UPS_PER_ROUND = 10;
/** Shards upgraded in parallel by default, and at most. */
export const DEFAULT_UPGRADE_BATCH = 5;
export const MAX_UPGRADE_BATCH = 50;

function busy(reason: string): { Err: ApiError } {
    return { Err: { Busy: { reason } } };
}

const describe: (error: ApiError) => string = describeValue;

/** Runs `work` over `items` in parallel groups of at most `width`. */
export async function inGroups<T, R>(
    items: T[],
    width: number,
    work: (item: T) => Promise<R>
): Promise<R[]> {
    const out: R[] = [];
    for (let i = 0; i < items.length; i += width) {
        out.push(...(await Promise.all(items.slice(i, i + width).map(work))));
    }
    return out;
}

/** Why a shard cannot be created now, or null. */
export function creationBlocked(now_ms: number): { Err: ApiError } | null {
    if (getWasm() === null) {
        return { Err: { InvalidInput: { field: 'wasm', reason: 'no shard Wasm committed' } } };
    }
    if (leaseHeld('create', now_ms)) return busy('a shard creation is in flight');
    if (allShards().length >= getConfig().max_shards) {
        return {
            Err: { CapacityExceeded: { resource: 'shards', limit: BigInt(getConfig().max_shards) } }
        };
    }
    if (hasSlotMap() && currentMigration() !== null) {
        return busy(`migration ${currentMigration()?.id} is in flight`);
    }
    return null;
}

/**
 * Creates, installs and registers a shard. The first shard owns every slot (epoch 1); a later one
 * starts empty and receives ⌊16384/(n+1)⌋ slots from the fullest shards by a migration.
 */
export async function createShard(region: string, caller: Principal): Promise<Result<ShardInfo>> {
    const blocked = creationBlocked(nowMs());
    if (blocked !== null) return blocked;
    takeLease('create', nowMs() + CREATE_LEASE_MS);
    try {
        return await createShardLocked(region, caller);
    } finally {
        releaseLease('create');
    }
}

async function createShardLocked(region: string, caller: Principal): Promise<Result<ShardInfo>> {
    const config = getConfig();
    const self = canisterSelf();
    const subnet = region === '' ? undefined : regions.get(region);
    const cmc = getCmc();
    const placement = subnet !== undefined && cmc !== null ? { cmc, subnet } : null;
    const label = region === '' ? 'default' : region;
    // A canister whose install failed earlier is installed again rather than paid for twice.
    const spare = allShards().find(
        (r) =>
            !r.installed && r.region === label && (r.subnet ?? null) === (placement?.subnet ?? null)
    );
    let record: ShardRecord;
    if (spare !== undefined) {
        record = spare;
        log(
            caller,
            'shard_install_retried',
            `shard ${spare.shard_id} (${spare.canister_id}): installing into the canister created before`
        );
    } else {
        const controllers = [self, ...getAdmins().map((a) => Principal.fromText(a))];
        if (isController(caller) && !controllers.some((c) => c.toText() === caller.toText())) {
            controllers.push(caller);
        }
        const created = await createCanister(
            controllers.slice(0, 10),
            config.shard_creation_cycles,
            placement
        );
        if ('Err' in created) {
            log(caller, 'create_shard_failed', `create_canister: ${describe(created.Err)}`);
            return created;
        }
        const counters = getCounters();
        const shard_id = counters.next_shard_id;
        setCounters({ ...counters, next_shard_id: shard_id + 1 });
        record = {
            shard_id,
            canister_id: created.Ok.toText(),
            created_at: time(),
            region: label,
            subnet: placement?.subnet ?? null,
            is_active: false,
            is_read_only: false,
            installed: false,
            memory_size_bytes: 0n,
            cycles_balance: config.shard_creation_cycles,
            metrics: null
        };
        shards.insert(shard_id, record);
    }
    const shard_id = record.shard_id;
    const first = !hasSlotMap();
    const router = getRouter();
    const init: ShardInit = {
        shard_id,
        factory: self,
        router: router === null ? [] : [Principal.fromText(router)],
        slots: first ? [{ start: 0, end: SLOT_COUNT - 1, shard_id }] : [],
        epoch: first ? 1n : currentEpoch(),
        max_loans: config.max_loans_per_shard,
        storage_capacity_bytes: config.shard_storage_capacity_bytes
    };
    const installed = await installOn(record, spare === undefined ? 'install' : 'reinstall', init);
    if ('Err' in installed) {
        log(
            caller,
            'create_shard_failed',
            `shard ${shard_id} (${record.canister_id}) created but not installed: ` +
                `${describe(installed.Err)}; kept inactive and empty, the next creation in ` +
                `region ${label} installs into it`
        );
        return installed;
    }
    const live = { ...record, is_active: true, installed: true };
    shards.insert(shard_id, live);
    const placed = placement === null ? 'own subnet' : `subnet ${placement.subnet} via the CMC`;
    log(
        caller,
        'shard_created',
        `shard ${shard_id} = ${record.canister_id}, ${live.region}, ${placed}`
    );
    if (first) {
        const map = { epoch: 1n, owners: new Uint32Array(SLOT_COUNT).fill(shard_id) };
        saveMap(map);
        if (router !== null) {
            const pushed = await pushRoutingTable(router, routingTable());
            if ('Err' in pushed) log(caller, 'router_push_failed', describe(pushed.Err));
        }
    } else {
        startNewShardMigration(shard_id, caller);
    }
    return { Ok: shardInfo(live, first ? SLOT_COUNT : 0) };
}

/**
 * Installs the committed Wasm on a shard. A shard on the factory's subnet installs from the
 * factory's chunk store. One placed on another subnet through the CMC cannot (install_chunked_code
 * needs the store on the target's subnet), so the factory uploads the chunks into the shard's own
 * store, installs from there and clears it (stored chunks cost cycles). That works at any Wasm size,
 * where a plain install_code would stop at the 2 MiB cross-subnet message limit.
 */
async function installOn(
    record: ShardRecord,
    mode: 'install' | 'reinstall' | 'upgrade',
    init: ShardInit
): Promise<Result<null>> {
    const wasm = getWasm();
    if (wasm === null) return { Err: { NotFound: { what: 'shard wasm', id: '' } } };
    const target = Principal.fromText(record.canister_id);
    if ((record.subnet ?? null) === null) {
        return installShard(target, mode, wasm.chunk_hashes, wasm.module_hash, init);
    }
    for (const hash of wasm.chunk_hashes) {
        const bytes = wasmChunks.get(chunkKey(hash));
        if (bytes === undefined) {
            return { Err: { NotFound: { what: 'shard wasm chunk', id: chunkKey(hash) } } };
        }
        const uploaded = await uploadChunk(bytes, target);
        if ('Err' in uploaded) return uploaded;
    }
    const installed = await installShard(
        target,
        mode,
        wasm.chunk_hashes,
        wasm.module_hash,
        init,
        target
    );
    const cleared = await clearChunkStore(target);
    if ('Err' in cleared) {
        log(
            canisterSelf(),
            'chunk_store_not_cleared',
            `shard ${record.shard_id}: ${describe(cleared.Err)}`
        );
    }
    return installed;
}

/** Plans addShard for a new (empty) shard and starts the migration that fills it. */
function startNewShardMigration(shard_id: number, caller: Principal): string | null {
    const map = loadMap();
    if (map === null) return null;
    const plan = addShard(map, shard_id);
    if (!plan.ok) {
        log(caller, 'migration_not_started', `addShard(${shard_id}): ${plan.error.kind}`);
        return null;
    }
    const reason = getScalingState().in_flight ? 'scale_out' : 'new_shard';
    return beginMigration(planSpans(plan.value.moves), reason, caller);
}

/**
 * Every listed shard's per-slot loan counts (`get_slot_counts`, paged), shards in parallel groups.
 * The first shard that fails makes the whole answer that error: a plan from partial counts would
 * move the wrong slots.
 */
export async function fetchSlotCounts(
    records: ShardRecord[]
): Promise<Result<Map<number, SlotCount[]>>> {
    const results = await inGroups(
        records,
        MAX_COMPOSITE_FANOUT,
        async (r): Promise<Result<SlotCount[]>> => {
            const out: SlotCount[] = [];
            let cursor: [] | [number] = [];
            for (let page = 0; page <= SLOT_COUNT / MAX_SLOT_COUNT_PAGE; page++) {
                const res: Result<SlotCountPage> = await callShard<SlotCountPage>(
                    r.canister_id,
                    'get_slot_counts',
                    [cursor, [MAX_SLOT_COUNT_PAGE]]
                );
                if ('Err' in res) return res;
                out.push(...res.Ok.counts);
                if (res.Ok.next_cursor.length === 0) break;
                cursor = res.Ok.next_cursor;
            }
            return { Ok: out };
        }
    );
    const counts = new Map<number, SlotCount[]>();
    for (let i = 0; i < records.length; i++) {
        const res = results[i];
        if ('Err' in res) return res;
        counts.set(records[i].shard_id, res.Ok);
    }
    return { Ok: counts };
}

/** Fetches every installed shard's metrics (in parallel groups) into the registry. */
export async function refreshMetrics(): Promise<ShardRecord[]> {
    const installed = allShards().filter((r) => r.installed);
    const results = await inGroups(installed, MAX_COMPOSITE_FANOUT, (r) =>
        shardMetrics(r.canister_id)
    );
    const out: ShardRecord[] = [];
    installed.forEach((r, i) => {
        const result = results[i];
        const fresh = shards.get(r.shard_id) ?? r;
        const next = 'Ok' in result ? { ...fresh, metrics: result.Ok } : fresh;
        if ('Ok' in result) shards.insert(r.shard_id, next);
        out.push(next);
    });
    return out;
}

/** One auto-scaling round: measure, decide, audit, and scale out when the policy says so. */
export async function scalingRound(): Promise<void> {
    const self = canisterSelf();
    const config = getConfig();
    const records = await refreshMetrics();
    const counters = getCounters();
    setCounters({ ...counters, last_scaling_check: time() });
    if (records.length === 0) return;
    const loads: ShardLoad[] = records.map(shardLoadOf);
    let state = getScalingState();
    // A scale-out whose migration has ended (or never started) is over.
    if (state.in_flight && currentMigration() === null && !leaseHeld('create', nowMs())) {
        state = finishScaleOut(state, config, nowMs());
    }
    const decision = decideScaling({ shards: loads, config, state, now_ms: nowMs() });
    setScalingState(decision.state);
    log(self, `scaling_${decision.action}`, decision.reasons.join(' | '));
    if (decision.action !== 'ScaleOut') return;
    const blocked = creationBlocked(nowMs());
    if (blocked !== null) {
        setScalingState(finishScaleOut(getScalingState(), config, nowMs()));
        log(self, 'scale_out_failed', describe(blocked.Err));
        return;
    }
    setCounters({ ...getCounters(), scale_outs: getCounters().scale_outs + 1n });
    // Mapped regions are usable only through the CMC; without one, the factory's own subnet.
    const mapped = regions.keys(0, MAX_REGIONS);
    const region =
        getCmc() === null && mapped.length > 0
            ? ''
            : scaleOutRegion(
                  records.map((r) => ({
                      region: r.region,
                      loan_count: r.metrics?.loan_count ?? 0n,
                      is_active: r.is_active
                  })),
                  mapped,
                  config.geographic_distribution
              );
    const created = await createShard(region, self);
    if ('Err' in created) {
        setScalingState(finishScaleOut(getScalingState(), config, nowMs()));
        log(self, 'scale_out_failed', describe(created.Err));
    }
}

/** Reads shard balances and tops up at most MAX_TOP_UPS_PER_ROUND shards below the minimum. */
export async function topUpRound(): Promise<void> {
    const self = canisterSelf();
    const config = getConfig();
    const installed = allShards().filter((r) => r.installed);
    const statuses = await inGroups(installed, MAX_COMPOSITE_FANOUT, (r) =>
        canisterStatus(Principal.fromText(r.canister_id))
    );
    const low: ShardRecord[] = [];
    installed.forEach((r, i) => {
        const status = statuses[i];
        if ('Err' in status) return;
        const fresh = shards.get(r.shard_id) ?? r;
        shards.insert(r.shard_id, {
            ...fresh,
            cycles_balance: status.Ok.cycles,
            memory_size_bytes: status.Ok.memory_size
        });
        if (status.Ok.cycles < config.min_shard_cycles) low.push(fresh);
    });
    if (config.top_up_cycles === 0n) return;
    for (const r of low.slice(0, MAX_TOP_UPS_PER_ROUND)) {
        const deposited = await depositCycles(
            Principal.fromText(r.canister_id),
            config.top_up_cycles
        );
        if ('Err' in deposited) {
            log(self, 'top_up_failed', `shard ${r.shard_id}: ${describe(deposited.Err)}`);
        } else {
            log(self, 'top_up', `shard ${r.shard_id}: +${config.top_up_cycles} cycles`);
        }
    }
}

/**
 * Upgrades every installed shard with the committed Wasm, `batch` at a time in parallel. Returns a
 * summary; every batch is in the audit log.
 */
export async function upgradeAll(batch: number, caller: Principal): Promise<Result<string>> {
    const wasm = getWasm();
    if (wasm === null) {
        return { Err: { InvalidInput: { field: 'wasm', reason: 'no shard Wasm committed' } } };
    }
    if (currentMigration() !== null) return busy('a migration is in flight');
    if (leaseHeld('upgrade', nowMs())) return busy('an upgrade is in flight');
    takeLease('upgrade', nowMs() + CREATE_LEASE_MS);
    try {
        const counters = getCounters();
        const id = `u-${counters.next_upgrade}`;
        setCounters({ ...counters, next_upgrade: counters.next_upgrade + 1 });
        const map = loadMap();
        const targets = allShards().filter((r) => r.installed);
        const failed: number[] = [];
        let done = 0;
        for (let i = 0; i < targets.length; i += batch) {
            const group = targets.slice(i, i + batch);
            const results = await Promise.all(
                group.map((r) => {
                    const init: ShardInit = {
                        shard_id: r.shard_id,
                        factory: canisterSelf(),
                        router: getRouter() === null ? [] : [Principal.fromText(getRouter()!)],
                        slots: [],
                        epoch: map?.epoch ?? 1n,
                        max_loans: getConfig().max_loans_per_shard,
                        storage_capacity_bytes: getConfig().shard_storage_capacity_bytes
                    };
                    return installOn(r, 'upgrade', init);
                })
            );
            results.forEach((res, k) => {
                if ('Err' in res) failed.push(group[k].shard_id);
                else done += 1;
            });
            log(
                caller,
                'upgrade_batch',
                `${id}: batch ${i / batch + 1}: shards ${group.map((r) => r.shard_id).join(', ')}` +
                    `; ${done}/${targets.length} upgraded`
            );
        }
        const summary =
            `${id}: upgraded ${done} of ${targets.length} shards in batches of ${batch}` +
            (failed.length > 0 ? `; failed: ${failed.join(', ')}` : '');
        log(caller, 'upgrade_done', summary);
        return { Ok: summary };
    } finally {
        releaseLease('upgrade');
    }
}
