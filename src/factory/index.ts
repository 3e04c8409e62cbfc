/**
 * The factory: shard registry and lifecycle, the routing table (slot map + epoch), auto-scaling,
 * migration and rebalancing, rolling upgrades, cycles top-up, admins and the audit log.
 *
 * Admins are the canister's controllers plus the admin list. Every update checks the caller first
 * and validates its input before changing anything. Decisions live in `src/shared`
 * (`slot_map.ts`, `migration.ts`, `scaling_policy.ts`, `rebalance.ts`); see the README's Factory API section for a
 * `dfx canister call` example per method.
 */
import {
    canisterSelf,
    clearTimer,
    IDL,
    init,
    isController,
    msgArgData,
    msgReply,
    msgCaller,
    postUpgrade,
    Principal,
    query,
    setTimerInterval,
    update
} from 'azle';

import { blob, bool, float64, nat32, nat64, opt, principal, text, vec } from '../shared/candid';
import {
    AuditEntry,
    AuditPage,
    FactoryInit,
    MigrationInfo,
    ScalabilityMetrics,
    ScalingAdvice,
    validateFactoryConfig
} from '../shared/factory_api';
import {
    allShardsReply,
    decodeTextArg,
    migrationReply,
    routingTableMessage,
    scalabilityMetricsReply,
    scalingAdviceReply,
    shardInfoReply,
    UNIT_OK,
    unitResultMessage
} from '../shared/factory_codec';
import { slotOf } from '../shared/hash';
import {
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_REGION_LENGTH_CHARS,
    MAX_REGIONS,
    MAX_WASM_CHUNK_BYTES,
    MAX_WASM_TOTAL_BYTES
} from '../shared/limits';
import {
    MigrationState,
    planEvenSlots,
    planSpans,
    requestStop,
    shareMoves,
    slotsDone,
    slotTotal,
    validateMigrationRequest
} from '../shared/migration';
import { planLoanRebalance, slotLoadsFromCounts } from '../shared/rebalance';
import { scalingRecommendations } from '../shared/scaling_policy';
import { Result, RoutingTable, ScalabilityConfig, ShardInfo, UnitResult } from '../shared/types';
import { VERSION } from '../shared/version';
import { callShard, clearChunkStore, pushRoutingTable, uploadChunk } from './ic';
import {
    createShard,
    DEFAULT_UPGRADE_BATCH,
    fetchSlotCounts,
    inGroups,
    MAX_UPGRADE_BATCH,
    scalingRound,
    topUpRound,
    upgradeAll
} from './lifecycle';
import { beginMigration, currentMigration, kickMigration } from './migrator';
import {
    allShardInfos,
    allShards,
    currentEpoch,
    currentSlotCounts,
    hasSlotMap,
    loadMap,
    nowMs,
    log,
    routingTable,
    shardInfo,
    shardLoadOf
} from './registry';
import {
    audit,
    chunkKey,
    getAdmins,
    getCmc,
    getConfig,
    getCounters,
    getPendingChunks,
    getSlotRanges,
    getWasm,
    migrations,
    regions,
    releaseLease,
    setAdmins,
    setCmc,
    setConfig,
    setPendingChunks,
    setRouter,
    setWasm,
    shards,
    warmStore,
    wasmChunks
} from './store';
import { describeValue, invalidInput } from '../shared/errors';

const NOT_AUTHORIZED = { Err: { NotAuthorized: null } } as const;
/** Admins in the list at most (controllers are admins without being listed). */
const MAX_ADMINS = 32;
/** Wasm chunks at most (100 MiB in 1 MiB chunks, the IC's limit). */
const MAX_WASM_CHUNKS = MAX_WASM_TOTAL_BYTES / MAX_WASM_CHUNK_BYTES;
/** Regions in the placement table at most. */
/** The migration watchdog's period: resumes a migration whose driver trapped or was upgraded away. */
const WATCHDOG_INTERVAL_S = 5;
/** Slot moves one rebalance plans at most: each is a span of the migration unless adjacent. */
const MAX_REBALANCE_SLOT_MOVES = 64;

let scalingTimer: bigint | null = null;

const invalid = invalidInput;

function isAdmin(caller: Principal): boolean {
    if (caller.isAnonymous()) return false;
    return isController(caller) || getAdmins().includes(caller.toText());
}

function validRegion(region: string): string | null {
    if (region.length > MAX_REGION_LENGTH_CHARS) {
        return `at most ${MAX_REGION_LENGTH_CHARS} characters`;
    }
    if (!/^[a-z0-9_-]*$/.test(region)) return 'only a-z, 0-9, _ and -';
    return null;
}

/**
 * Why a region cannot be placed, or null. Without a placement table regions are labels (the shard
 * lands on the factory's subnet); once regions are mapped to subnets, an unmapped one is refused
 * rather than silently placed elsewhere, and a mapped one needs the CMC.
 */
function placementProblem(region: string): string | null {
    if (region === '' || regions.len() === 0) return null;
    if (!regions.containsKey(region)) {
        const known = regions.keys(0, MAX_REGIONS).join(', ');
        return `unknown region ${region} (known: ${known})`;
    }
    if (getCmc() === null) return `region ${region} needs the CMC: set_cmc_canister first`;
    return null;
}

function isAnonymousOrSelf(p: Principal): boolean {
    return p.isAnonymous() || p.toText() === canisterSelf().toText();
}

/** (Re-)arms the timers: the scaling/top-up round and the migration watchdog. */
function armTimers(): void {
    if (scalingTimer !== null) clearTimer(scalingTimer);
    const interval_s = Math.max(1, Number(getConfig().scaling_check_interval_ms / 1_000n));
    scalingTimer = setTimerInterval(interval_s, async () => {
        await scalingRound();
        await topUpRound();
    });
}

function armWatchdog(): void {
    setTimerInterval(WATCHDOG_INTERVAL_S, () => {
        if (currentMigration() !== null) kickMigration(0);
    });
}

/** `get_migration`'s answer for `id`. */
function migrationOf(id: string): Result<MigrationInfo> {
    if (id.length > 32) return invalid('id', 'at most 32 characters');
    const state = migrations.get(id);
    if (state === undefined) return { Err: { NotFound: { what: 'migration', id } } };
    return { Ok: migrationInfo(state) };
}

function migrationInfo(state: MigrationState): MigrationInfo {
    const pairs = new Map<string, { from: number; to: number; slots: number }>();
    for (const span of state.spans) {
        const key = `${span.from}:${span.to}`;
        const entry = pairs.get(key) ?? { from: span.from, to: span.to, slots: 0 };
        entry.slots += span.end - span.start + 1;
        pairs.set(key, entry);
    }
    return {
        migration_id: state.id,
        phase: state.phase,
        reason: state.reason,
        spans_done: Math.min(state.span_index, state.spans.length),
        spans_total: state.spans.length,
        slots_done: slotsDone(state),
        slots_total: slotTotal(state.spans),
        loans_copied: BigInt(state.loans_copied),
        loans_caught_up: BigInt(state.loans_caught_up),
        loans_deleted: BigInt(state.loans_deleted),
        moves: [...pairs.values()].slice(0, 1_000),
        started_at: BigInt(state.started_at_ms) * 1_000_000n,
        updated_at: BigInt(state.updated_at_ms) * 1_000_000n,
        step_errors: state.step_errors,
        stop_requested: state.stop_requested,
        last_error: state.last_error === null ? [] : [state.last_error],
        failure: state.failure === null ? [] : [state.failure]
    };
}

export default class {
    /**
     * Installs the factory. `opt FactoryInit { admins }` adds admins besides the controllers; the
     * same argument is accepted on upgrade (admins are then added, never removed).
     */
    @init([opt(FactoryInit)])
    init(arg: [] | [FactoryInit]): void {
        addAdmins(arg);
        armTimers();
        armWatchdog();
        warmStore();
    }

    /** Re-arms the timers (they do not survive upgrades) and resumes a migration in flight. */
    @postUpgrade([opt(FactoryInit)])
    postUpgrade(arg: [] | [FactoryInit]): void {
        addAdmins(arg);
        releaseLease('migration');
        releaseLease('create');
        releaseLease('upgrade');
        armTimers();
        armWatchdog();
        warmStore();
        if (currentMigration() !== null) kickMigration(0);
    }

    /** The canister's version. Query; anyone. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }

    // ---- Shard Wasm ---------------------------------------------------------------------------

    /**
     * Stores one chunk (≤ 1 MiB) of the shard Wasm in the factory's chunk store and returns its
     * sha256. Update; admins only. Upload the chunks in order, then `commit_shard_wasm`.
     */
    @update([blob], Result(blob))
    async upload_shard_wasm_chunk(chunk: Uint8Array): Promise<Result<Uint8Array>> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (chunk.length === 0 || chunk.length > MAX_WASM_CHUNK_BYTES) {
            return invalid('chunk', `must be 1..=${MAX_WASM_CHUNK_BYTES} bytes`);
        }
        if (getPendingChunks().length >= MAX_WASM_CHUNKS) {
            return invalid('chunk', `at most ${MAX_WASM_CHUNKS} chunks; clear_shard_wasm first`);
        }
        const uploaded = await uploadChunk(chunk);
        if ('Err' in uploaded) return uploaded;
        // Kept for shards on other subnets, which install from their own chunk store.
        wasmChunks.insert(chunkKey(uploaded.Ok), Uint8Array.from(chunk));
        setPendingChunks([...getPendingChunks(), uploaded.Ok]);
        return uploaded;
    }

    /**
     * Makes the chunks uploaded since the last commit the shard Wasm; `module_hash` is the sha256
     * of the whole module (install_chunked_code checks it). Update; admins only.
     */
    @update([blob], UnitResult)
    commit_shard_wasm(module_hash: Uint8Array): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (module_hash.length !== 32) return invalid('module_hash', 'must be 32 bytes (sha256)');
        const chunks = getPendingChunks();
        if (chunks.length === 0) return invalid('module_hash', 'no chunks uploaded');
        setWasm({ module_hash: Uint8Array.from(module_hash), chunk_hashes: chunks });
        setPendingChunks([]);
        const kept = new Set(chunks.map(chunkKey));
        for (const key of wasmChunks.keys(0, 2 * MAX_WASM_CHUNKS)) {
            if (!kept.has(key)) wasmChunks.remove(key);
        }
        log(caller, 'wasm_committed', `${chunks.length} chunks, sha256 ${hex(module_hash)}`);
        return { Ok: null };
    }

    /** Empties the chunk store and forgets the committed Wasm. Update; admins only. */
    @update([], UnitResult)
    async clear_shard_wasm(): Promise<UnitResult> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const cleared = await clearChunkStore();
        if ('Err' in cleared) return cleared;
        setWasm(null);
        setPendingChunks([]);
        for (const key of wasmChunks.keys(0, 2 * MAX_WASM_CHUNKS)) wasmChunks.remove(key);
        log(caller, 'wasm_cleared', '');
        return { Ok: null };
    }

    // ---- Shards -------------------------------------------------------------------------------

    /**
     * Creates a data shard: create_canister with `shard_creation_cycles` and controllers [factory,
     * admins], install_chunked_code with `opt ShardInit`, registration, and (for every shard but
     * the first) a migration that gives it its share of the slots. A region mapped to a subnet
     * (`set_region_subnet`) is created there through the CMC (`set_cmc_canister`) and installed
     * from the new canister's own chunk store; with no region mapped at all, regions are labels and
     * shards land on the factory's subnet; once any is mapped, an unmapped region is InvalidInput.
     * A failed install keeps the empty canister (inactive) and the next creation in that region
     * installs into it instead of paying for another. Update; admins only.
     */
    @update([opt(text)], Result(ShardInfo))
    async create_new_data_shard(region: [] | [string]): Promise<Result<ShardInfo>> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const name = region[0] ?? '';
        const bad = validRegion(name) ?? placementProblem(name);
        if (bad !== null) return invalid('region', bad);
        return createShard(name, caller);
    }

    /** The active, writable shard with the fewest loans (or NotFound). Query; anyone. */
    @query([], Result(ShardInfo), { manual: true })
    get_active_shard(): void {
        msgReply(shardInfoReply.encode([activeShard()]));
    }

    /** Every registered shard with its latest metrics and slot count. Query; anyone. */
    @query([], vec(ShardInfo), { manual: true })
    get_all_shards(): void {
        msgReply(allShardsReply.encode([allShardInfos()]));
    }

    /** The shard owning `user`'s slot in the current routing table. Query; anyone. */
    @query([principal], Result(ShardInfo))
    get_shard_for_loan(user: Principal): Result<ShardInfo> {
        const stored = getSlotRanges();
        if (stored === null) return { Err: { NotFound: { what: 'routing table', id: '' } } };
        const slot = slotOf(user.toUint8Array());
        const owner = stored.ranges.find((r) => r.start <= slot && slot <= r.end)?.shard_id;
        const record = owner === undefined ? undefined : shards.get(owner);
        if (record === undefined) return { Err: { NotFound: { what: 'shard', id: `${owner}` } } };
        return { Ok: shardInfo(record, currentSlotCounts().get(record.shard_id) ?? 0) };
    }

    /** Makes a shard refuse writes (`set_read_only(true)`) and records it. Update; admins only. */
    @update([nat32], UnitResult)
    async mark_shard_read_only(shard_id: number): Promise<UnitResult> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const record = shards.get(shard_id);
        if (record === undefined || !record.installed) {
            return invalid('shard_id', `unknown shard ${shard_id}`);
        }
        const r = await callShard<null>(record.canister_id, 'set_read_only', [true]);
        if ('Err' in r) return r;
        shards.insert(shard_id, { ...(shards.get(shard_id) ?? record), is_read_only: true });
        log(caller, 'shard_read_only', `shard ${shard_id}`);
        return { Ok: null };
    }

    /** The routing table: slot ranges, epoch and shard addresses. Query; anyone. */
    @query([], RoutingTable, { manual: true })
    get_routing_table(): void {
        msgReply(routingTableMessage.encode([routingTable()]));
    }

    /** System totals from the registry's latest shard metrics. Query; anyone. */
    @query([], ScalabilityMetrics, { manual: true })
    get_scalability_metrics(): void {
        msgReply(scalabilityMetricsReply.encode([scalabilityMetrics()]));
    }

    /** The current configuration. Query; anyone. */
    @query([], ScalabilityConfig)
    get_scalability_config(): ScalabilityConfig {
        return getConfig();
    }

    /** Replaces the configuration after validating every field. Update; admins only. */
    @update([ScalabilityConfig], UnitResult)
    update_scalability_config(config: ScalabilityConfig): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const errors = validateFactoryConfig(config);
        if (errors.length > 0) return invalid(errors[0].field, errors[0].reason);
        const intervalChanged =
            config.scaling_check_interval_ms !== getConfig().scaling_check_interval_ms;
        setConfig(config);
        if (intervalChanged) armTimers();
        log(caller, 'config_updated', jsonOf(config));
        return { Ok: null };
    }

    /** Per-shard advice from the latest metrics (ScaleOutNow, Rebalance, …). Query; anyone. */
    @query([], vec(ScalingAdvice), { manual: true })
    get_scaling_recommendations(): void {
        msgReply(scalingAdviceReply.encode([scalingAdvice()]));
    }

    /** Runs one auto-scaling round now (as the timer does). Update; admins only. */
    @update([], UnitResult, { manual: true })
    async run_scaling_check(): Promise<void> {
        if (!isAdmin(msgCaller())) return msgReply(unitResultMessage.encode([NOT_AUTHORIZED]));
        await scalingRound();
        msgReply(UNIT_OK);
    }

    // ---- Migration ----------------------------------------------------------------------------

    /**
     * Moves `percentage` (0 < p ≤ 100) of `source`'s slots to `target`, with their loans; returns
     * the migration id. Busy while another migration runs. Update; admins only.
     */
    @update([nat32, nat32, float64], Result(text))
    migrate_shard_data(source: number, target: number, percentage: number): Result<string> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const map = loadMap();
        const known = new Set(
            allShards()
                .filter((r) => r.installed)
                .map((r) => r.shard_id)
        );
        const sourceSlots = currentSlotCounts().get(source) ?? 0;
        const bad = validateMigrationRequest({ source, target, percentage, known, sourceSlots });
        if (bad !== null) return invalid(bad.field, bad.reason);
        if (map === null) return invalid('source', 'no routing table yet');
        const running = currentMigration();
        if (running !== null) return { Err: { Busy: { reason: `${running.id} is in flight` } } };
        if (shards.get(target)?.is_read_only === true) {
            return invalid('target', `shard ${target} is read-only`);
        }
        const spans = planSpans(shareMoves(map, source, target, percentage));
        return { Ok: beginMigration(spans, 'manual', caller) };
    }

    /** A migration's progress. Query; anyone. */
    @query([text], Result(MigrationInfo), { manual: true })
    get_migration(): void {
        const arg = msgArgData();
        const id = decodeTextArg(arg) ?? (IDL.decode([text], arg)[0] as unknown as string);
        msgReply(migrationReply.encode([migrationOf(id)]));
    }

    /**
     * Stops a migration after the span in progress (a span is never left half-moved); the slots
     * not yet moved stay with their sources. Update; admins only.
     */
    @update([text], UnitResult)
    stop_migration(id: string): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (id.length > 32) return invalid('id', 'at most 32 characters');
        const state = migrations.get(id);
        if (state === undefined) return { Err: { NotFound: { what: 'migration', id } } };
        if (state.phase === 'Done' || state.phase === 'Failed') {
            return invalid('id', `migration ${id} has ended (${state.phase})`);
        }
        migrations.insert(id, requestStop(state));
        log(caller, 'migration_stop_requested', `${id} at span ${state.span_index + 1}`);
        return { Ok: null };
    }

    /**
     * Evens out loans over the writable shards: reads every shard's per-slot loan counts
     * (`get_slot_counts`), plans with `planLoanRebalance` (greedy, heaviest to lightest shard, to
     * within 5% of the mean) and starts the moves as one migration; returns its id, or a note when
     * nothing needs moving. At most 64 slots move per call (each migrates as its own span unless
     * adjacent): call again until it answers `balanced`. With no loans yet it evens out slot counts
     * instead. Read-only shards keep their slots. Update; admins only.
     */
    @update([], Result(text))
    async rebalance_shards(): Promise<Result<string>> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const running = currentMigration();
        if (running !== null) return { Err: { Busy: { reason: `${running.id} is in flight` } } };
        const map = loadMap();
        if (map === null) return invalid('shards', 'no shards yet');
        const installed = allShards().filter((r) => r.installed);
        const writable = installed.filter((r) => !r.is_read_only).map((r) => r.shard_id);
        const owners = new Set(map.owners);
        const counted = await fetchSlotCounts(installed.filter((r) => owners.has(r.shard_id)));
        if ('Err' in counted) return counted;
        // The table or a migration may have changed while the counts were read.
        const now = loadMap();
        const started = currentMigration();
        if (started !== null) return { Err: { Busy: { reason: `${started.id} is in flight` } } };
        if (now === null || now.epoch !== map.epoch) {
            return { Err: { Busy: { reason: 'the routing table changed; retry' } } };
        }
        const loads = slotLoadsFromCounts(map, counted.Ok);
        const total = loads.reduce((sum, x) => sum + x, 0);
        let moves;
        let reason: string;
        if (total === 0) {
            moves = planEvenSlots(map, writable);
            reason = `no loans yet: even slot counts, ${moves.length} slot moves`;
        } else {
            const pinned = [...owners].filter((id) => !writable.includes(id));
            const plan = planLoanRebalance(map, writable, pinned, loads, MAX_REBALANCE_SLOT_MOVES);
            if ('error' in plan) return invalid('shards', plan.error);
            moves = plan.moves;
            reason = plan.reason;
        }
        if (moves.length === 0) return { Ok: `balanced: nothing to move (${reason})` };
        const id = beginMigration(planSpans(moves), 'rebalance', caller);
        log(caller, 'rebalance_planned', `${id}: ${reason}`);
        return { Ok: id };
    }

    // ---- Upgrades -----------------------------------------------------------------------------

    /**
     * Upgrades every shard to the committed Wasm, `batch_size` (default 5, ≤ 50) at a time;
     * returns a summary. Busy during a migration. Update; admins only.
     */
    @update([opt(nat32)], Result(text))
    async upgrade_all_shards(batch_size: [] | [number]): Promise<Result<string>> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const batch = batch_size[0] ?? DEFAULT_UPGRADE_BATCH;
        if (batch < 1 || batch > MAX_UPGRADE_BATCH) {
            return invalid('batch_size', `must be in 1..=${MAX_UPGRADE_BATCH}`);
        }
        return upgradeAll(batch, caller);
    }

    // ---- Admins, router, placement, audit -----------------------------------------------------

    /** Adds an admin. Update; admins only. */
    @update([principal], UnitResult)
    add_admin(admin: Principal): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (isAnonymousOrSelf(admin)) return invalid('admin', 'anonymous or the factory itself');
        const admins = getAdmins();
        if (admins.includes(admin.toText())) return { Ok: null };
        if (admins.length >= MAX_ADMINS) return invalid('admin', `at most ${MAX_ADMINS} admins`);
        setAdmins([...admins, admin.toText()]);
        log(caller, 'admin_added', admin.toText());
        return { Ok: null };
    }

    /** Removes an admin from the list (controllers stay admins). Update; admins only. */
    @update([principal], UnitResult)
    remove_admin(admin: Principal): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const admins = getAdmins();
        if (!admins.includes(admin.toText())) {
            return { Err: { NotFound: { what: 'admin', id: admin.toText() } } };
        }
        setAdmins(admins.filter((a) => a !== admin.toText()));
        log(caller, 'admin_removed', admin.toText());
        return { Ok: null };
    }

    /** The admin list (controllers not included). Query; admins only (others get []). */
    @query([], vec(principal))
    get_admins(): Principal[] {
        if (!isAdmin(msgCaller())) return [];
        return getAdmins().map((a) => Principal.fromText(a));
    }

    /**
     * Sets the router: new shards get it in their init argument, existing shards through
     * `set_router`, and the routing table is pushed to it on every change. Update; admins only.
     */
    @update([principal], UnitResult)
    async set_router_canister(router: Principal): Promise<UnitResult> {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (isAnonymousOrSelf(router)) return invalid('router', 'anonymous or the factory itself');
        setRouter(router.toText());
        const installed = allShards().filter((r) => r.installed);
        const results = await inGroups(installed, 32, (r) =>
            callShard<null>(r.canister_id, 'set_router', [router])
        );
        const failed = installed.filter((_, i) => 'Err' in results[i]).map((r) => r.shard_id);
        if (hasSlotMap()) {
            const pushed = await pushRoutingTable(router.toText(), routingTable());
            if ('Err' in pushed) log(caller, 'router_push_failed', jsonOf(pushed.Err));
        }
        log(
            caller,
            'router_set',
            `${router.toText()}; ${installed.length - failed.length} shards told` +
                (failed.length > 0 ? `, failed: ${failed.join(', ')}` : '')
        );
        if (failed.length > 0) {
            return {
                Err: {
                    ShardUnavailable: { shard_id: failed[0], reason: 'set_router failed; retry' }
                }
            };
        }
        return { Ok: null };
    }

    /** Maps a region to a subnet for placement through the CMC. Update; admins only. */
    @update([text, principal], UnitResult)
    set_region_subnet(region: string, subnet: Principal): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        const bad = validRegion(region);
        if (bad !== null || region === '') return invalid('region', bad ?? 'must not be empty');
        if (subnet.isAnonymous()) return invalid('subnet', 'must not be anonymous');
        if (!regions.containsKey(region) && regions.len() >= MAX_REGIONS) {
            return invalid('region', `at most ${MAX_REGIONS} regions`);
        }
        regions.insert(region, subnet.toText());
        log(caller, 'region_subnet_set', `${region} → ${subnet.toText()}`);
        return { Ok: null };
    }

    /** Sets the Cycles Minting Canister used for placement on a chosen subnet. Update; admins only. */
    @update([principal], UnitResult)
    set_cmc_canister(cmc: Principal): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller)) return NOT_AUTHORIZED;
        if (isAnonymousOrSelf(cmc)) return invalid('cmc', 'anonymous or the factory itself');
        setCmc(cmc.toText());
        log(caller, 'cmc_set', cmc.toText());
        return { Ok: null };
    }

    /**
     * The audit log, newest first: entries older than `cursor` (a `seq`), at most `limit`
     * (default 100, ≤ 500). Query; admins only.
     */
    @query([opt(nat64), opt(nat32)], Result(AuditPage))
    get_audit_log(cursor: [] | [bigint], limit: [] | [number]): Result<AuditPage> {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        const size = limit[0] ?? DEFAULT_PAGE_SIZE;
        if (size < 1 || size > MAX_PAGE_SIZE)
            return invalid('limit', `must be in 1..=${MAX_PAGE_SIZE}`);
        const first = audit.keys(0, 1)[0];
        const end = cursor[0] ?? getCounters().next_audit_seq;
        if (first === undefined || end <= first) return { Ok: { entries: [], next_cursor: [] } };
        // Sequence numbers are contiguous from `first`, so a seq maps to an index.
        const endIndex = Number(end - first);
        const startIndex = Math.max(0, endIndex - size);
        const items = audit.items(startIndex, endIndex - startIndex);
        const entries: AuditEntry[] = items.reverse().map(([seq, e]) => ({
            seq,
            timestamp: e.timestamp,
            caller: Principal.fromText(e.caller),
            action: e.action,
            detail: e.detail
        }));
        const oldest = entries[entries.length - 1]?.seq;
        return {
            Ok: {
                entries,
                next_cursor: startIndex > 0 && oldest !== undefined ? [oldest] : []
            }
        };
    }

    /** Whether the caller is an admin. Query; anyone. */
    @query([], bool)
    is_admin(): boolean {
        return isAdmin(msgCaller());
    }
}

/** The active, writable shard with the fewest loans (or NotFound). */
function activeShard(): Result<ShardInfo> {
    const candidates = allShardInfos().filter((s) => s.is_active && !s.is_read_only);
    if (candidates.length === 0) return { Err: { NotFound: { what: 'shard', id: 'active' } } };
    candidates.sort((a, b) => Number(a.loan_count - b.loan_count) || a.shard_id - b.shard_id);
    return { Ok: candidates[0] };
}

/** Per-shard advice from the latest metrics. */
function scalingAdvice(): ScalingAdvice[] {
    const loads = allShards()
        .filter((r) => r.installed)
        .map(shardLoadOf);
    const now_ms = nowMs();
    return scalingRecommendations({ shards: loads, config: getConfig(), now_ms }).map((r) => ({
        shard_id: r.shard_id,
        kind: r.kind,
        reason: r.reason,
        eta_ms: r.eta_ms === undefined ? [] : [BigInt(Math.round(r.eta_ms))]
    }));
}

/** System totals from the registry's latest shard metrics (the heap copy: no stable reads). */
function scalabilityMetrics(): ScalabilityMetrics {
    const all = allShards();
    const metrics = all.map((r) => r.metrics);
    const percentages = metrics.map((m) => m?.storage_percentage ?? 0);
    const counters = getCounters();
    const running = currentMigration();
    return {
        total_shards: all.length,
        active_shards: all.filter((r) => r.is_active).length,
        read_only_shards: all.filter((r) => r.is_read_only).length,
        total_loans: metrics.reduce((sum, m) => sum + (m?.loan_count ?? 0n), 0n),
        total_storage_used_bytes: metrics.reduce(
            (sum, m) => sum + (m?.storage_used_bytes ?? 0n),
            0n
        ),
        avg_storage_percentage:
            percentages.length === 0
                ? 0
                : percentages.reduce((a, b) => a + b, 0) / percentages.length,
        max_storage_percentage: percentages.reduce((a, b) => Math.max(a, b), 0),
        routing_epoch: currentEpoch(),
        migration_in_flight: running === null ? [] : [running.id],
        scale_outs: counters.scale_outs,
        last_scaling_check: counters.last_scaling_check,
        auto_scaling_enabled: getConfig().auto_scaling_enabled,
        wasm_committed: getWasm() !== null
    };
}

function addAdmins(arg: [] | [FactoryInit]): void {
    const given = arg[0]?.admins ?? [];
    const admins = [...getAdmins()];
    for (const admin of given.slice(0, MAX_ADMINS)) {
        if (admin.isAnonymous() || admins.includes(admin.toText())) continue;
        if (admins.length >= MAX_ADMINS) break;
        admins.push(admin.toText());
    }
    setAdmins(admins);
}

function hex(bytes: Uint8Array): string {
    return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const jsonOf = describeValue;
