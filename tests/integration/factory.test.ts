import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { FactoryInit, MigrationInfo } from '../../src/shared/factory_api';
import { slotOf } from '../../src/shared/hash';
import { SLOT_COUNT } from '../../src/shared/limits';
import { shareMoves } from '../../src/shared/migration';
import { fromRanges } from '../../src/shared/slot_map';
import type { Loan, RoutingTable, ShardInfo } from '../../src/shared/types';
import {
    deployFactory,
    type Factory,
    ownerOfSlot,
    shardActor,
    uploadShardWasm,
    waitForMigration
} from './factory_support';
import {
    ADMIN,
    ANONYMOUS,
    application,
    encodeArgs,
    err,
    ok,
    ROUTER,
    STRANGER,
    user,
    usersWhere,
    wasmOf
} from './support';

describe('factory', () => {
    let ic: TestIc;
    let factory: Factory;
    let factoryId: Principal;
    /** Every loan acknowledged by a shard, latest version, by id. */
    const written = new Map<bigint, Loan>();

    async function table(): Promise<RoutingTable> {
        return (await factory.get_routing_table()) as RoutingTable;
    }

    async function shardsById(): Promise<Map<number, ShardInfo>> {
        const all = (await factory.get_all_shards()) as ShardInfo[];
        return new Map(all.map((s) => [s.shard_id, s]));
    }

    /** Writes a loan for `borrower` to the owner shard as the router; retries on a stale table. */
    async function writeLoan(borrower: Principal, n: number): Promise<Loan> {
        for (let attempt = 0; attempt < 50; attempt++) {
            const t = await table();
            const owner = ownerOfSlot(t.ranges, slotOf(borrower.toUint8Array()));
            const address = t.shards.find((s) => s.shard_id === owner)!;
            const shard = shardActor(ic, address.canister_id, ROUTER);
            const result = await shard.create_loan(application(borrower, n));
            if ('Ok' in result) {
                written.set(result.Ok.id, result.Ok);
                return result.Ok;
            }
            const e = result.Err;
            const retriable = 'WrongShard' in e || ('ReadOnly' in e && e.ReadOnly.retriable);
            if (!retriable) throw new Error(`write failed: ${JSON.stringify(e)}`);
            await ic.tick(2);
        }
        throw new Error('write kept failing');
    }

    /** Checks every acknowledged loan is on its owner shard and the shards hold nothing else. */
    async function expectAllLoansOnce(): Promise<void> {
        const t = await table();
        let total = 0n;
        for (const address of t.shards) {
            const stats = ok(await shardActor(ic, address.canister_id, ROUTER).get_shard_stats());
            total += stats.loan_count;
        }
        expect(total).toBe(BigInt(written.size));
        for (const [id, loan] of written) {
            const owner = ownerOfSlot(t.ranges, Number(id >> 48n));
            const address = t.shards.find((s) => s.shard_id === owner)!;
            const stored = ok(await shardActor(ic, address.canister_id, ROUTER).get_loan(id));
            expect(stored).toEqual(loan);
        }
    }

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        ({ factory, factoryId } = await deployFactory(ic));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('stores the shard Wasm in 1 MiB chunks and refuses oversize chunks', async () => {
        const big = new Uint8Array(1_048_577);
        expect(err(await factory.upload_shard_wasm_chunk(big))).toHaveProperty('InvalidInput');
        expect(await uploadShardWasm(factory)).toBe(2);
    });

    it('creates the first shard with every slot at epoch 1, controlled by the factory', async () => {
        ok(await factory.set_router_canister(ROUTER));
        const first = ok(await factory.create_new_data_shard(['asia'])) as ShardInfo;
        expect(first.shard_id).toBe(1);
        expect(first.slot_count).toBe(SLOT_COUNT);
        expect(first.region).toBe('asia');
        const t = await table();
        expect(t.epoch).toBe(1n);
        expect(t.ranges).toEqual([{ start: 0, end: SLOT_COUNT - 1, shard_id: 1 }]);
        const controllers = await ic.getControllers(first.canister_id);
        expect(controllers.map((c) => c.toText())).toContain(factoryId.toText());
    });

    it('takes loans written by the router on the shard that owns the borrower', async () => {
        for (let n = 0; n < 120; n += 20) {
            await Promise.all(Array.from({ length: 20 }, (_, k) => writeLoan(user(n + k), n + k)));
        }
        await expectAllLoansOnce();
        const shard = ok(await factory.get_shard_for_loan(user(3))) as ShardInfo;
        expect(shard.shard_id).toBe(1);
    });

    it('creates 3 more shards, each filled by a migration from the fullest shard', async () => {
        let epoch = (await table()).epoch;
        for (let k = 0; k < 3; k++) {
            const created = ok(await factory.create_new_data_shard([])) as ShardInfo;
            expect(created.slot_count).toBe(0);
            const id = (await factory.get_scalability_metrics()).migration_in_flight[0]!;
            expect(id).toBeDefined();
            const info = await waitForMigration(ic, factory, id);
            // The new shard takes ⌊16384/(n+1)⌋ slots from the fullest shards.
            expect(info.slots_done).toBe(Math.floor(SLOT_COUNT / (k + 2)));
            expect(info.spans_done).toBe(info.spans_total);
            const t = await table();
            expect(t.epoch).toBeGreaterThan(epoch);
            epoch = t.epoch;
        }
        const t = await table();
        expect(fromRanges(t.epoch, t.ranges).ok).toBe(true);
        const ids = new Set(t.shards.map((s) => s.canister_id.toText()));
        expect(ids.size).toBe(4);
        for (const address of t.shards) {
            const controllers = await ic.getControllers(address.canister_id);
            expect(controllers.map((c) => c.toText())).toContain(factoryId.toText());
        }
        const counts = [...(await shardsById()).values()].map((s) => s.slot_count);
        expect(counts.reduce((a, b) => a + b, 0)).toBe(SLOT_COUNT);
        expect(counts).toEqual([4096, 4096, 4096, 4096]);
        await expectAllLoansOnce();
    });

    it('migrates 50% of a shard while writes go on: none lost, none duplicated', async () => {
        const t = await table();
        const map = fromRanges(t.epoch, t.ranges);
        if (!map.ok) throw new Error('routing table');
        const moving = new Set(shareMoves(map.value, 2, 3, 50).map((m) => m.slot));
        const borrowers = usersWhere(40, (slot) => moving.has(slot));
        const target = t.shards.find((s) => s.shard_id === 3)!.canister_id;
        // Slow replies from the target spread the migration over many rounds, between writes.
        ic.setCanisterDelay(target, 2);
        const id = ok(await factory.migrate_shard_data(2, 3, 50)) as string;
        expect(err(await factory.migrate_shard_data(3, 4, 10))).toHaveProperty('Busy');
        let n = 0;
        const info = await waitForMigration(ic, factory, id, 4_000, async () => {
            await writeLoan(borrowers[n % borrowers.length], 20_000 + n);
            n += 1;
        });
        ic.setCanisterDelay(target, 0);
        expect(info.spans_done).toBe(info.spans_total);
        expect(info.slots_total).toBe(2048);
        expect(moving.size).toBe(2048);
        expect(n).toBeGreaterThan(3);
        expect(info.loans_copied).toBeGreaterThan(0n);
        // Writes landed while the slots were migrating: the catch-up copied them.
        expect(info.loans_caught_up).toBeGreaterThan(0n);
        await expectAllLoansOnce();
        const shards = await shardsById();
        expect(shards.get(2)!.slot_count).toBe(2048);
        expect(shards.get(3)!.slot_count).toBe(4096 + 2048);
    });

    it('refuses every admin method to anonymous and strangers, changing nothing', async () => {
        const before = await table();
        const log = ok(await factory.get_audit_log([], [1]));
        for (const who of [ANONYMOUS, STRANGER]) {
            factory.setPrincipal(who);
            const calls: Promise<unknown>[] = [
                factory.upload_shard_wasm_chunk(new Uint8Array([1])),
                factory.commit_shard_wasm(new Uint8Array(32)),
                factory.clear_shard_wasm(),
                factory.create_new_data_shard([]),
                factory.mark_shard_read_only(1),
                factory.update_scalability_config(await factory.get_scalability_config()),
                factory.migrate_shard_data(1, 2, 10),
                factory.rebalance_shards(),
                factory.upgrade_all_shards([]),
                factory.add_admin(STRANGER),
                factory.remove_admin(ADMIN),
                factory.set_router_canister(STRANGER),
                factory.set_region_subnet('eu', STRANGER),
                factory.set_cmc_canister(STRANGER),
                factory.run_scaling_check(),
                factory.stop_migration('m-1'),
                factory.get_audit_log([], [])
            ];
            for (const result of await Promise.all(calls)) {
                expect(result).toEqual({ Err: { NotAuthorized: null } });
            }
            expect(await factory.is_admin()).toBe(false);
        }
        factory.setPrincipal(ADMIN);
        expect(await table()).toEqual(before);
        expect(ok(await factory.get_audit_log([], [1])).entries).toEqual(log.entries);
    });

    it('lets an added admin manage, and a removed one no longer', async () => {
        ok(await factory.add_admin(STRANGER));
        factory.setPrincipal(STRANGER);
        expect(await factory.is_admin()).toBe(true);
        ok(await factory.set_region_subnet('europe', Principal.fromText('aaaaa-aa')));
        factory.setPrincipal(ADMIN);
        ok(await factory.remove_admin(STRANGER));
        factory.setPrincipal(STRANGER);
        expect(err(await factory.set_region_subnet('asia', ADMIN))).toEqual({
            NotAuthorized: null
        });
        factory.setPrincipal(ADMIN);
    });

    it('answers InvalidInput for bad input and changes nothing', async () => {
        const config = await factory.get_scalability_config();
        const before = await table();
        const cases: [Promise<unknown>, string][] = [
            [factory.create_new_data_shard(['x'.repeat(33)]), 'region'],
            [factory.create_new_data_shard(['Bad Region!']), 'region'],
            [factory.migrate_shard_data(1, 1, 10), 'target'],
            [factory.migrate_shard_data(1, 99, 10), 'target'],
            [factory.migrate_shard_data(99, 1, 10), 'source'],
            [factory.migrate_shard_data(1, 2, 0), 'percentage'],
            [factory.migrate_shard_data(1, 2, 100.5), 'percentage'],
            [factory.migrate_shard_data(1, 2, Number.NaN), 'percentage'],
            [factory.mark_shard_read_only(99), 'shard_id'],
            [factory.upgrade_all_shards([0]), 'batch_size'],
            [factory.upgrade_all_shards([51]), 'batch_size'],
            [factory.commit_shard_wasm(new Uint8Array(31)), 'module_hash'],
            [factory.commit_shard_wasm(new Uint8Array(32)), 'module_hash'],
            [factory.upload_shard_wasm_chunk(new Uint8Array(0)), 'chunk'],
            [factory.add_admin(ANONYMOUS), 'admin'],
            [factory.set_router_canister(factoryId), 'router'],
            [factory.set_region_subnet('', ADMIN), 'region'],
            [factory.get_audit_log([], [0]), 'limit'],
            [factory.get_audit_log([], [501]), 'limit'],
            [factory.update_scalability_config({ ...config, max_shards: 0 }), 'max_shards'],
            [
                factory.update_scalability_config({ ...config, max_storage_threshold: 101 }),
                'max_storage_threshold'
            ],
            [
                factory.update_scalability_config({ ...config, shard_creation_cycles: 1n }),
                'shard_creation_cycles'
            ],
            [
                factory.update_scalability_config({ ...config, scaling_check_interval_ms: 10n }),
                'scaling_check_interval_ms'
            ]
        ];
        for (const [call, field] of cases) {
            const e = err((await call) as { Ok: unknown } | { Err: never });
            expect(e).toHaveProperty('InvalidInput');
            expect((e as { InvalidInput: { field: string } }).InvalidInput.field).toBe(field);
        }
        expect(await factory.get_scalability_config()).toEqual(config);
        expect(await table()).toEqual(before);
        expect(err(await factory.get_migration('m-999'))).toHaveProperty('NotFound');
    });

    it('scales out on its own when shards pass 80% of max_loans_per_shard, once', async () => {
        const config = await factory.get_scalability_config();
        ok(
            await factory.update_scalability_config({
                ...config,
                max_loans_per_shard: 50n,
                consecutive_breaches_required: 1,
                scale_out_cooldown_ms: 3_600_000n,
                scaling_check_interval_ms: 5_000n
            })
        );
        const shardsBefore = (await shardsById()).size;
        // The timer's round: metrics of every shard, a decision, a new shard and its migration.
        await ic.advanceTime(6_000);
        let metrics = await factory.get_scalability_metrics();
        for (let round = 0; round < 50 && metrics.migration_in_flight.length === 0; round++) {
            await ic.tick(1);
            metrics = await factory.get_scalability_metrics();
        }
        expect(metrics.scale_outs).toBe(1n);
        expect((await shardsById()).size).toBe(shardsBefore + 1);
        const id = metrics.migration_in_flight[0]!;
        const info = await waitForMigration(ic, factory, id);
        expect(info.reason).toBe('scale_out');
        expect(info.slots_done).toBe(Math.floor(SLOT_COUNT / 5));
        // Shards over the threshold again: the next round is held by the cooldown, and says so.
        ok(
            await factory.update_scalability_config({
                ...config,
                max_loans_per_shard: 10n,
                consecutive_breaches_required: 1,
                scale_out_cooldown_ms: 3_600_000n,
                scaling_check_interval_ms: 5_000n
            })
        );
        await ic.advanceTime(6_000);
        await ic.tick(20);
        expect((await shardsById()).size).toBe(shardsBefore + 1);
        const entries = ok(await factory.get_audit_log([], [50])).entries;
        const decisions = entries.filter((e) => e.action.startsWith('scaling_'));
        expect(decisions.some((e) => e.action === 'scaling_ScaleOut')).toBe(true);
        expect(decisions[0].action).toBe('scaling_None');
        expect(decisions[0].detail).toMatch(/triggers.*cooldown/);
        const scaleOut = decisions.find((e) => e.action === 'scaling_ScaleOut')!;
        expect(scaleOut.detail).toMatch(/loan_count \d+ > 80% of max_loans_per_shard \(40\)/);
        await expectAllLoansOnce();
        ok(await factory.update_scalability_config({ ...config }));
    });

    it('tops up shards below min_shard_cycles, at most 10 per round', async () => {
        const config = await factory.get_scalability_config();
        const shard = (await table()).shards[0].canister_id;
        const before = await ic.getCyclesBalance(shard);
        ok(
            await factory.update_scalability_config({
                ...config,
                scaling_check_interval_ms: 5_000n,
                min_shard_cycles: before + 1n,
                top_up_cycles: 10_000_000_000n
            })
        );
        await ic.advanceTime(6_000);
        await ic.tick(5);
        expect(await ic.getCyclesBalance(shard)).toBeGreaterThan(before);
        const entries = ok(await factory.get_audit_log([], [100])).entries;
        expect(entries.filter((e) => e.action === 'top_up').length).toBeGreaterThan(0);
        ok(await factory.update_scalability_config(config));
    });

    it('upgrades every shard in batches: every loan still there', async () => {
        const summary = ok(await factory.upgrade_all_shards([2])) as string;
        expect(summary).toMatch(/upgraded 5 of 5 shards in batches of 2/);
        await expectAllLoansOnce();
    });

    it('retries steps a trapping shard rejected and still moves every loan once', async () => {
        const t = await table();
        const target = t.shards.find((s) => s.shard_id === 2)!.canister_id;
        ic.setCanisterDelay(target, 2);
        const id = ok(await factory.migrate_shard_data(4, 2, 50)) as string;
        await ic.tick(2);
        ic.injectTraps(target, 3);
        ic.setCanisterDelay(target, 0);
        const info = await waitForMigration(ic, factory, id);
        expect(info.spans_done).toBe(info.spans_total);
        const entries = ok(await factory.get_audit_log([], [100])).entries;
        expect(entries.some((e) => e.action === 'migration_step_error')).toBe(true);
        await expectAllLoansOnce();
    });

    it('resumes a migration after the factory is upgraded mid-way', async () => {
        const t = await table();
        const target = t.shards.find((s) => s.shard_id === 4)!.canister_id;
        ic.setCanisterDelay(target, 3);
        const id = ok(await factory.migrate_shard_data(3, 4, 10)) as string;
        await ic.tick(4);
        const before = ok(await factory.get_migration(id)) as MigrationInfo;
        expect(before.phase).not.toBe('Done');
        await ic.upgradeCanister({
            canisterId: factoryId,
            wasm: await wasmOf('factory'),
            arg: encodeArgs([IDL.Opt(FactoryInit)], [[]]),
            sender: ADMIN
        });
        ic.setCanisterDelay(target, 0);
        const after = await waitForMigration(ic, factory, id);
        expect(after.spans_done).toBe(after.spans_total);
        await expectAllLoansOnce();
    });

    it('resumes after the factory traps mid-step, once its driver lease expires', async () => {
        const t = await table();
        const target = t.shards.find((s) => s.shard_id === 3)!.canister_id;
        ic.setCanisterDelay(target, 3);
        const id = ok(await factory.migrate_shard_data(1, 3, 30)) as string;
        await ic.tick(1);
        // The factory's next message (the reply to its pending call) traps: that step is lost.
        ic.clearMessageTrace();
        ic.injectTraps(factoryId, 1);
        await ic.tick(5);
        const trapped = ic
            .getMessageTrace()
            .filter((e) => e.canister === factoryId.toText() && e.outcome === 'trap');
        expect(trapped.map((e) => e.kind)).toEqual(['response']);
        ic.setCanisterDelay(target, 0);
        const info = await waitForMigration(ic, factory, id);
        expect(info.spans_done).toBe(info.spans_total);
        await expectAllLoansOnce();
    });

    it('rebalances to even slot counts by a migration; stop ends it after a span', async () => {
        const id = ok(await factory.rebalance_shards()) as string;
        const info = await waitForMigration(ic, factory, id);
        expect(info.reason).toBe('rebalance');
        const counts = [...(await shardsById()).values()].map((s) => s.slot_count);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        expect(ok(await factory.rebalance_shards())).toMatch(/balanced/);
        await expectAllLoansOnce();

        const stopped = ok(await factory.migrate_shard_data(1, 2, 100)) as string;
        ok(await factory.stop_migration(stopped));
        const partial = await waitForMigration(ic, factory, stopped);
        expect(partial.stop_requested).toBe(true);
        expect(partial.spans_done).toBeLessThan(partial.spans_total);
        await expectAllLoansOnce();
    });

    it('recommends per shard, and a read-only shard is never the active one', async () => {
        const advice = await factory.get_scaling_recommendations();
        expect(advice.map((a) => a.shard_id)).toEqual([1, 2, 3, 4, 5]);
        ok(await factory.mark_shard_read_only(5));
        const shards = await shardsById();
        expect(shards.get(5)!.is_read_only).toBe(true);
        const active = ok(await factory.get_active_shard()) as ShardInfo;
        expect(active.shard_id).not.toBe(5);
        const metrics = await factory.get_scalability_metrics();
        expect(metrics.total_shards).toBe(5);
        expect(metrics.read_only_shards).toBe(1);
    });
});
