/**
 * Helpers of the factory tests: deploy the factory, upload the shard Wasm in ≤ 1 MiB chunks, drive
 * rounds until a migration ends, and read shards as the router does.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { expect } from 'vitest';

import type { Actor } from '../../emulator';
import type { TestIc } from '../../emulator/harness';
import { awaitMigration, uploadShardWasm as uploadWasm } from '../../scripts/lib/provision';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { FactoryInit, type MigrationInfo } from '../../src/shared/factory_api';
import { shardIdlFactory } from '../../src/shared/shard_api';
import type { ShardStats } from '../../src/shared/shard_api';
import type { Loan, NewLoan, Result, ShardMetrics } from '../../src/shared/types';
import { ADMIN, encodeArgs, wasmOf } from './support';

export type Factory = Actor<FactoryService>;

/** The shard methods the tests call, typed. */
export interface ShardClient {
    create_loan(application: NewLoan): Promise<Result<Loan>>;
    get_loan(id: bigint): Promise<Result<Loan>>;
    get_shard_stats(): Promise<Result<ShardStats>>;
    get_shard_metrics(): Promise<Result<ShardMetrics>>;
    get_loans_by_borrower(
        p: Principal,
        cursor: [] | [bigint],
        limit: [] | [number]
    ): Promise<Result<{ loans: Loan[]; next_cursor: [] | [bigint] }>>;
    span_checksum(span: {
        start: number;
        end: number;
    }): Promise<Result<{ count: bigint; checksum: bigint }>>;
}
export type Shard = Actor<ShardClient>;

/** Deploys the factory (controller ADMIN) with `admins` in its init argument. */
export async function deployFactory(
    ic: TestIc,
    admins: Principal[] = []
): Promise<{ factory: Factory; factoryId: Principal }> {
    const { actor, canisterId } = await ic.setupCanister<FactoryService>({
        idlFactory: factoryIdl,
        wasm: await wasmOf('factory'),
        arg: encodeArgs([IDL.Opt(FactoryInit)], [[{ admins }]]),
        sender: ADMIN,
        controllers: [ADMIN]
    });
    actor.setPrincipal(ADMIN);
    return { factory: actor, factoryId: canisterId };
}

/** Uploads the gzipped shard Wasm in ≤ 1 MiB chunks and commits its sha256; returns the chunk count. */
export async function uploadShardWasm(factory: Factory): Promise<number> {
    return uploadWasm(factory, await wasmOf('data_shard'));
}

/** Runs rounds until migration `id` is Done (fails the test on Failed or after `maxRounds`). */
export async function waitForMigration(
    ic: TestIc,
    factory: Factory,
    id: string,
    maxRounds = 4_000,
    between?: () => Promise<void>
): Promise<MigrationInfo> {
    // With `between` (e.g. concurrent writes), it runs before every round.
    const step = between === undefined ? 5 : 1;
    return awaitMigration(
        factory,
        id,
        async () => {
            if (between !== undefined) await between();
            // Retries after a failed step wait on a timer (seconds), so time moves too.
            await ic.advanceTime(500);
            await ic.tick(step);
        },
        Math.ceil(maxRounds / step)
    );
}

/** A shard actor for `canisterId`, calling as `sender`. */
export function shardActor(ic: TestIc, canisterId: Principal, sender: Principal): Shard {
    const actor = ic.createActor<ShardClient>(shardIdlFactory, canisterId);
    actor.setPrincipal(sender);
    return actor;
}

/** The owner shard id of `slot` in a routing table's ranges. */
export function ownerOfSlot(
    ranges: { start: number; end: number; shard_id: number }[],
    slot: number
): number {
    const range = ranges.find((r) => r.start <= slot && slot <= r.end);
    expect(range).toBeDefined();
    return range!.shard_id;
}
