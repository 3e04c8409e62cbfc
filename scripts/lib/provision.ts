/**
 * Provisioning the data tier through the factory: tell it the router, upload the shard Wasm in
 * ≤ 1 MiB chunks and commit its sha256, then create shards one by one, waiting for the migration
 * that gives each new shard its slots. It is a function over a factory actor, so the same code runs
 * with emulator actors (`npm start`, the tests) and with `@dfinity/agent` actors (`scripts/deploy.ts`).
 *
 * Re-running it is safe: a committed Wasm can be kept (`reuseCommittedWasm`) or replaced, shards
 * that already exist count towards `shards`, and a migration still running from an earlier run is
 * awaited before anything is created.
 *
 * @example
 * await provisionShards({ factory, routerId, shardWasm, shards: 4, regions: ['asia', 'europe'],
 *     settle: async () => { await ic.advanceTime(500); await ic.tick(5); } });
 */
import { createHash } from 'node:crypto';

import type { Principal } from '@dfinity/principal';

import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { describeValue } from '../../src/shared/errors';
import type { MigrationInfo } from '../../src/shared/factory_api';
import { MAX_SHARDS, MAX_WASM_CHUNK_BYTES } from '../../src/shared/limits';
import type { ShardInfo } from '../../src/shared/types';

/** The factory methods provisioning calls, as plain functions (emulator and agent actors fit). */
type Plain<K extends keyof FactoryService> = {
    [M in K]: (...args: Parameters<FactoryService[M]>) => ReturnType<FactoryService[M]>;
};
export type FactoryApi = Plain<
    | 'set_router_canister'
    | 'upload_shard_wasm_chunk'
    | 'commit_shard_wasm'
    | 'clear_shard_wasm'
    | 'create_new_data_shard'
    | 'get_all_shards'
    | 'get_migration'
    | 'get_scalability_metrics'
>;

export interface ProvisionProgress {
    phase: 'router' | 'upload' | 'commit' | 'create' | 'migrate';
    done: number;
    total: number;
    detail?: string;
}

export interface ProvisionOptions {
    /** The factory, called by one of its admins. */
    factory: FactoryApi;
    /** Passed to `set_router_canister`; the factory tells every shard and pushes its table. */
    routerId: Principal;
    /** The gzipped data_shard Wasm. */
    shardWasm: Uint8Array;
    /** The number of shards wanted in total; existing shards count (a re-run creates the rest). */
    shards: number;
    /** The i-th shard of the factory (0-based) is created in `regions[i % regions.length]`. */
    regions?: string[];
    /** Called between polls while a migration runs (emulator: advance time + tick; agent: sleep). */
    settle: () => Promise<void>;
    /** Bound on polls per migration (default 4,000). */
    maxPolls?: number;
    /** Keep an already committed shard Wasm instead of uploading `shardWasm` again. */
    reuseCommittedWasm?: boolean;
    onProgress?: (p: ProvisionProgress) => void;
}

export interface ProvisionResult {
    /** Chunks uploaded by this call (0 when a committed Wasm was reused). */
    chunks: number;
    /** Shards created by this call. */
    created: ShardInfo[];
    /** Every shard of the factory at the end. */
    shards: ShardInfo[];
    /** Ids of the migrations this call waited for, in order. */
    migrations: string[];
}

export const DEFAULT_MAX_POLLS = 4_000;

/** The `Ok` of a factory result, or an Error naming the call and the typed error. */
export function okOr<T>(what: string, result: { Ok: T } | { Err: unknown }): T {
    if ('Err' in result) throw new Error(`${what}: ${describeValue(result.Err)}`);
    return result.Ok;
}

/** The sha256 of `bytes`, as the factory's `commit_shard_wasm` expects it. */
export function sha256(bytes: Uint8Array): Uint8Array {
    return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/**
 * Empties the factory's chunk store (stale chunks of an interrupted upload would corrupt the
 * module), uploads `wasm` in ≤ MAX_WASM_CHUNK_BYTES chunks and commits its sha256. Returns the
 * chunk count.
 */
export async function uploadShardWasm(
    factory: Pick<FactoryApi, 'clear_shard_wasm' | 'upload_shard_wasm_chunk' | 'commit_shard_wasm'>,
    wasm: Uint8Array,
    onProgress?: (p: ProvisionProgress) => void
): Promise<number> {
    if (wasm.length === 0) throw new Error('shard Wasm is empty');
    const total = Math.ceil(wasm.length / MAX_WASM_CHUNK_BYTES);
    okOr('clear_shard_wasm', await factory.clear_shard_wasm());
    onProgress?.({ phase: 'upload', done: 0, total, detail: `${wasm.length} bytes` });
    for (let i = 0; i < total; i++) {
        const at = i * MAX_WASM_CHUNK_BYTES;
        const chunk = wasm.slice(at, at + MAX_WASM_CHUNK_BYTES);
        okOr(
            `upload_shard_wasm_chunk ${i + 1}/${total}`,
            await factory.upload_shard_wasm_chunk(chunk)
        );
        onProgress?.({ phase: 'upload', done: i + 1, total, detail: `${wasm.length} bytes` });
    }
    onProgress?.({ phase: 'commit', done: 0, total: 1 });
    okOr('commit_shard_wasm', await factory.commit_shard_wasm(sha256(wasm)));
    onProgress?.({ phase: 'commit', done: 1, total: 1 });
    return total;
}

/**
 * Polls migration `id` until it is Done, calling `settle` before every poll; throws when it
 * Failed or is still running after `maxPolls` polls.
 */
export async function awaitMigration(
    factory: Pick<FactoryApi, 'get_migration'>,
    id: string,
    settle: () => Promise<void>,
    maxPolls = DEFAULT_MAX_POLLS,
    onProgress?: (p: ProvisionProgress) => void
): Promise<MigrationInfo> {
    for (let poll = 0; poll < maxPolls; poll++) {
        await settle();
        const info = okOr(`get_migration ${id}`, await factory.get_migration(id)) as MigrationInfo;
        onProgress?.({
            phase: 'migrate',
            done: info.slots_done,
            total: info.slots_total,
            detail: `${id} ${info.phase}`
        });
        if (info.phase === 'Done') return info;
        if (info.phase === 'Failed') throw new Error(`migration failed: ${info.failure[0]}`);
    }
    const info = okOr(`get_migration ${id}`, await factory.get_migration(id)) as MigrationInfo;
    throw new Error(`migration ${id} still ${info.phase} (${describeValue(info.last_error)})`);
}

/** Waits for the factory's in-flight migration, if any; returns its id. */
async function awaitInFlight(
    o: ProvisionOptions,
    migrations: string[]
): Promise<string | undefined> {
    const id = (await o.factory.get_scalability_metrics()).migration_in_flight[0];
    if (id === undefined) return undefined;
    await awaitMigration(o.factory, id, o.settle, o.maxPolls, o.onProgress);
    migrations.push(id);
    return id;
}

/**
 * Tells the factory the router, uploads and commits the shard Wasm, and creates shards until the
 * factory has `o.shards`, waiting for each new shard's migration before the next.
 */
export async function provisionShards(o: ProvisionOptions): Promise<ProvisionResult> {
    if (!Number.isInteger(o.shards) || o.shards < 1 || o.shards > MAX_SHARDS) {
        throw new Error(`shards must be an integer in 1..=${MAX_SHARDS}, got ${o.shards}`);
    }
    const regions = o.regions ?? [];
    const migrations: string[] = [];
    o.onProgress?.({ phase: 'router', done: 0, total: 1 });
    okOr('set_router_canister', await o.factory.set_router_canister(o.routerId));
    o.onProgress?.({ phase: 'router', done: 1, total: 1, detail: o.routerId.toText() });

    const metrics = await o.factory.get_scalability_metrics();
    const chunks =
        o.reuseCommittedWasm === true && metrics.wasm_committed
            ? 0
            : await uploadShardWasm(o.factory, o.shardWasm, o.onProgress);

    await awaitInFlight(o, migrations);
    const existing = (await o.factory.get_all_shards()).length;
    const missing = Math.max(0, o.shards - existing);
    const created: ShardInfo[] = [];
    for (let i = 0; i < missing; i++) {
        const index = existing + i;
        const region = regions.length > 0 ? regions[index % regions.length] : undefined;
        o.onProgress?.({ phase: 'create', done: i, total: missing, detail: region });
        const shard = okOr(
            `create_new_data_shard ${region ?? '(no region)'}`,
            await o.factory.create_new_data_shard(region === undefined ? [] : [region])
        ) as ShardInfo;
        created.push(shard);
        o.onProgress?.({
            phase: 'create',
            done: i + 1,
            total: missing,
            detail: `shard ${shard.shard_id} ${shard.canister_id.toText()} ${shard.region}`
        });
        await awaitInFlight(o, migrations);
    }
    const shards = (await o.factory.get_all_shards()) as ShardInfo[];
    return { chunks, created, shards, migrations };
}
