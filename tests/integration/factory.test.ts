/**
 * The factory on the emulator (and on PocketIC where a test needs no emulator-only capability):
 * chunked shard Wasm, shard creation, routing table and epochs, migrations under writes and
 * faults, auto-scaling, top-ups, rolling upgrades, admins, bad input; shard placement by region
 * through the Cycles Minting Canister; a failed install retried into the same canister; rebalance
 * by loan counts.
 */
import { createHash } from 'node:crypto';

import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CMC_ID, managementIdlFactory } from '../../emulator';
import { createTestIc, type TestIc } from '../../emulator/harness';
import { FactoryInit, MigrationInfo } from '../../src/shared/factory_api';
import { slotOf } from '../../src/shared/hash';
import { SLOT_COUNT } from '../../src/shared/limits';
import { shareMoves } from '../../src/shared/migration';
import { fromRanges } from '../../src/shared/slot_map';
import type { Loan, RoutingTable, ShardInfo } from '../../src/shared/types';
import { hasCapability, observable } from './capabilities';
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
    bigintJson,
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

    it('migrates 50% of a shard while writes go on: none lost, none duplicated', async (ctx) => {
        const t = await table();
        const map = fromRanges(t.epoch, t.ranges);
        if (!map.ok) throw new Error('routing table');
        const moving = new Set(shareMoves(map.value, 2, 3, 50).map((m) => m.slot));
        const borrowers = usersWhere(40, (slot) => moving.has(slot));
        const target = t.shards.find((s) => s.shard_id === 3)!.canister_id;
        // Slow replies from the target spread the migration over many rounds, between writes.
        const slowed = observable(ic, 'faults', ctx, 'writes interleaved with a slowed migration');
        if (slowed) ic.setCanisterDelay(target, 2);
        const id = ok(await factory.migrate_shard_data(2, 3, 50)) as string;
        expect(err(await factory.migrate_shard_data(3, 4, 10))).toHaveProperty('Busy');
        let n = 0;
        const info = await waitForMigration(ic, factory, id, 4_000, async () => {
            await writeLoan(borrowers[n % borrowers.length], 20_000 + n);
            n += 1;
        });
        if (slowed) ic.setCanisterDelay(target, 0);
        expect(info.spans_done).toBe(info.spans_total);
        expect(info.slots_total).toBe(2048);
        expect(moving.size).toBe(2048);
        expect(info.loans_copied).toBeGreaterThan(0n);
        if (slowed) {
            expect(n).toBeGreaterThan(3);
            // Writes landed while the slots were migrating: the catch-up copied them.
            expect(info.loans_caught_up).toBeGreaterThan(0n);
        }
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
        const shardsBefore = await factory.get_all_shards();
        const logBefore = ok(await factory.get_audit_log([], [1]));
        const cases: [Promise<unknown>, string][] = [
            [factory.create_new_data_shard(['x'.repeat(33)]), 'region'],
            [factory.create_new_data_shard(['Bad Region!']), 'region'],
            // 'europe' is mapped (by the test above), so an unmapped region is unknown.
            [factory.create_new_data_shard(['mars']), 'region'],
            // Mapped, but no CMC is set to place it.
            [factory.create_new_data_shard(['europe']), 'region'],
            [factory.set_region_subnet('y'.repeat(33), ADMIN), 'region'],
            [factory.set_region_subnet('Bad Region!', ADMIN), 'region'],
            [factory.set_region_subnet('eu', ANONYMOUS), 'subnet'],
            [factory.set_cmc_canister(ANONYMOUS), 'cmc'],
            [factory.set_cmc_canister(factoryId), 'cmc'],
            [factory.set_router_canister(ANONYMOUS), 'router'],
            [factory.add_admin(factoryId), 'admin'],
            [factory.migrate_shard_data(99, 98, 50), 'source'],
            [factory.migrate_shard_data(1, 2, -5), 'percentage'],
            [factory.migrate_shard_data(1, 2, Number.POSITIVE_INFINITY), 'percentage'],
            [factory.get_migration('m'.repeat(33)), 'id'],
            [factory.stop_migration('m'.repeat(33)), 'id'],
            [factory.upload_shard_wasm_chunk(new Uint8Array(1_048_577)), 'chunk'],
            [
                factory.update_scalability_config({ ...config, max_storage_threshold: -1 }),
                'max_storage_threshold'
            ],
            [factory.update_scalability_config({ ...config, max_shards: 1_000_000 }), 'max_shards'],
            [
                factory.update_scalability_config({ ...config, max_loans_per_shard: 0n }),
                'max_loans_per_shard'
            ],
            [
                factory.update_scalability_config({ ...config, consecutive_breaches_required: 0 }),
                'consecutive_breaches_required'
            ],
            [
                factory.update_scalability_config({ ...config, hysteresis_percent: -1 }),
                'hysteresis_percent'
            ],
            [
                factory.update_scalability_config({
                    ...config,
                    max_avg_response_time_ms: Number.NaN
                }),
                'max_avg_response_time_ms'
            ],
            [
                factory.update_scalability_config({ ...config, shard_storage_capacity_bytes: 0n }),
                'shard_storage_capacity_bytes'
            ],
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
        expect(await factory.get_all_shards()).toEqual(shardsBefore);
        expect(ok(await factory.get_audit_log([], [1])).entries).toEqual(logBefore.entries);
        expect(err(await factory.get_migration('m-999'))).toHaveProperty('NotFound');
        expect(err(await factory.stop_migration('m-999'))).toHaveProperty('NotFound');
        expect(err(await factory.remove_admin(STRANGER))).toHaveProperty('NotFound');
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

    it('retries steps a trapping shard rejected and still moves every loan once', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
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

    it('resumes a migration after the factory is upgraded mid-way', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
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

    it('resumes after the factory traps mid-step, once its driver lease expires', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
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

    it('stops a migration after the span in progress when asked', async () => {
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

/** The routing table of `factory`. */
async function tableOf(factory: Factory): Promise<RoutingTable> {
    return (await factory.get_routing_table()) as RoutingTable;
}

/** Writes a loan for `borrower` on its owner shard, as the router (no migration in flight). */
async function writeAsRouter(
    ic: TestIc,
    factory: Factory,
    borrower: Principal,
    n: number
): Promise<Loan> {
    const t = await tableOf(factory);
    const owner = ownerOfSlot(t.ranges, slotOf(borrower.toUint8Array()));
    const address = t.shards.find((s) => s.shard_id === owner)!;
    return ok(
        await shardActor(ic, address.canister_id, ROUTER).create_loan(application(borrower, n))
    );
}

describe('factory: shards placed by region through the Cycles Minting Canister', () => {
    let ic: TestIc;
    let factory: Factory;
    let factoryId: Principal;
    let europe: Principal;
    let asia: Principal;

    beforeAll(async () => {
        ic = await createTestIc({
            subnets: [{ region: 'europe' }, { region: 'asia' }],
            cmc: true,
            countInstructions: true
        });
        const subnets = await ic.getApplicationSubnets();
        europe = subnets[0].id;
        asia = subnets[1].id;
        ({ factory, factoryId } = await deployFactory(ic));
        await uploadShardWasm(factory);
        ok(await factory.set_router_canister(ROUTER));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it("creates each shard on its region's subnet; loans are written and read across subnets", async (ctx) => {
        if (ic.backend !== 'emulator') return ctx.skip('the CMC is emulated; PocketIC has none');
        expect(await ic.getCanisterSubnetId(factoryId)).toEqual(europe);
        ok(await factory.set_cmc_canister(CMC_ID));
        ok(await factory.set_region_subnet('europe', europe));
        ok(await factory.set_region_subnet('asia', asia));
        const first = ok(await factory.create_new_data_shard(['europe'])) as ShardInfo;
        const second = ok(await factory.create_new_data_shard(['asia'])) as ShardInfo;
        expect(await ic.getCanisterSubnetId(first.canister_id)).toEqual(europe);
        expect(await ic.getCanisterSubnetId(second.canister_id)).toEqual(asia);
        expect([first.region, second.region]).toEqual(['europe', 'asia']);
        for (const shard of [first, second]) {
            const controllers = await ic.getControllers(shard.canister_id);
            expect(controllers.map((c) => c.toText())).toContain(factoryId.toText());
        }
        // The asia shard installed from its own chunk store, emptied afterwards.
        const management = ic.createActor<{
            stored_chunks(a: { canister_id: Principal }): Promise<{ hash: Uint8Array }[]>;
        }>(managementIdlFactory, Principal.fromText('aaaaa-aa'));
        management.setPrincipal(ADMIN);
        expect(await management.stored_chunks({ canister_id: second.canister_id })).toEqual([]);
        const id = (await factory.get_scalability_metrics()).migration_in_flight[0]!;
        const moved = await waitForMigration(ic, factory, id);
        expect(moved.slots_done).toBe(SLOT_COUNT / 2);

        const loans: Loan[] = [];
        for (let n = 0; n < 40; n += 10) {
            loans.push(
                ...(await Promise.all(
                    Array.from({ length: 10 }, (_, k) =>
                        writeAsRouter(ic, factory, user(n + k), n + k)
                    )
                ))
            );
        }
        const t = await tableOf(factory);
        const onAsia = loans.filter((l) => ownerOfSlot(t.ranges, Number(l.id >> 48n)) === 2);
        expect(onAsia.length).toBeGreaterThan(0);
        expect(onAsia.length).toBeLessThan(loans.length);
        for (const loan of loans) {
            const owner = ownerOfSlot(t.ranges, Number(loan.id >> 48n));
            const address = t.shards.find((s) => s.shard_id === owner)!;
            expect(ok(await shardActor(ic, address.canister_id, ROUTER).get_loan(loan.id))).toEqual(
                loan
            );
        }
        // A rolling upgrade reaches the remote shard the same way; every loan stays.
        expect(ok(await factory.upgrade_all_shards([]))).toMatch(/upgraded 2 of 2 shards/);
        for (const loan of loans) {
            const owner = ownerOfSlot(t.ranges, Number(loan.id >> 48n));
            const address = t.shards.find((s) => s.shard_id === owner)!;
            expect(ok(await shardActor(ic, address.canister_id, ROUTER).get_loan(loan.id))).toEqual(
                loan
            );
        }
        const log = ok(await factory.get_audit_log([], [20])).entries;
        expect(
            log.some((e) => e.action === 'shard_created' && /asia.*via the CMC/.test(e.detail))
        ).toBe(true);
    });

    it('refuses an unmapped region, and a CMC refusal refunds all but the penalty, registering nothing', async (ctx) => {
        if (ic.backend !== 'emulator') return ctx.skip('the CMC is emulated; PocketIC has none');
        const unknown = err(await factory.create_new_data_shard(['mars']));
        expect(unknown).toMatchObject({ InvalidInput: { field: 'region' } });
        // A subnet that does not exist: the CMC refunds the attached cycles minus 100 M.
        const nowhere = Principal.selfAuthenticating(new Uint8Array([7, 7, 7]));
        ok(await factory.set_region_subnet('nowhere', nowhere));
        const shards = await factory.get_all_shards();
        const table = await tableOf(factory);
        const before = await ic.getCyclesBalance(factoryId);
        const refused = err(await factory.create_new_data_shard(['nowhere']));
        const after = await ic.getCyclesBalance(factoryId);
        expect(refused).toHaveProperty('CallFailed');
        expect(JSON.stringify(refused, bigintJson)).toMatch(/does not exist.*refunded/);
        const config = await factory.get_scalability_config();
        expect(before - after).toBeGreaterThanOrEqual(100_000_000n);
        expect(before - after).toBeLessThan(config.shard_creation_cycles / 10n);
        expect(await factory.get_all_shards()).toEqual(shards);
        expect(await tableOf(factory)).toEqual(table);
    });
});

describe('factory: a failed install, and rebalance by loans', () => {
    let ic: TestIc;
    let factory: Factory;
    let factoryId: Principal;

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        ({ factory, factoryId } = await deployFactory(ic));
        await uploadShardWasm(factory);
        ok(await factory.set_router_canister(ROUTER));
        ok(await factory.create_new_data_shard([]));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('keeps the canister of a failed install and installs into it next time, paying once', async () => {
        const junk = new Uint8Array(1_000).fill(7);
        ok(await factory.upload_shard_wasm_chunk(junk));
        ok(
            await factory.commit_shard_wasm(
                new Uint8Array(createHash('sha256').update(junk).digest())
            )
        );
        const table = await tableOf(factory);
        const failed = err(await factory.create_new_data_shard([]));
        expect(failed).toHaveProperty('CallFailed');
        const spare = ((await factory.get_all_shards()) as ShardInfo[]).find(
            (s) => s.shard_id === 2
        )!;
        expect(spare.is_active).toBe(false);
        expect(await tableOf(factory)).toEqual(table);
        const log = ok(await factory.get_audit_log([], [5])).entries;
        expect(log[0].action).toBe('create_shard_failed');
        expect(log[0].detail).toMatch(/kept inactive and empty/);

        await uploadShardWasm(factory);
        const config = await factory.get_scalability_config();
        const before = await ic.getCyclesBalance(factoryId);
        const retried = ok(await factory.create_new_data_shard([])) as ShardInfo;
        const after = await ic.getCyclesBalance(factoryId);
        expect(retried.shard_id).toBe(2);
        expect(retried.canister_id.toText()).toBe(spare.canister_id.toText());
        expect(retried.is_active).toBe(true);
        // No second canister was paid for.
        expect(before - after).toBeLessThan(config.shard_creation_cycles);
        expect((await factory.get_all_shards()).length).toBe(2);
        const entries = ok(await factory.get_audit_log([], [5])).entries;
        expect(entries.some((e) => e.action === 'shard_install_retried')).toBe(true);
        const id = (await factory.get_scalability_metrics()).migration_in_flight[0]!;
        const info = await waitForMigration(ic, factory, id);
        expect(info.slots_done).toBe(SLOT_COUNT / 2);
    });

    it('moves loaded slots off a shard that holds every loan though slot counts are even', async () => {
        const t = await tableOf(factory);
        const owned = t.ranges.filter((r) => r.shard_id === 1);
        const slots: number[] = [];
        for (const r of owned) {
            for (let slot = r.start; slot <= r.end && slots.length < 8; slot += 997)
                slots.push(slot);
        }
        expect(slots.length).toBe(8);
        let n = 0;
        for (const slot of slots) {
            const borrowers = usersWhere(10, (s) => s === slot);
            await Promise.all(borrowers.map((b) => writeAsRouter(ic, factory, b, n++)));
        }
        const statsOf = async (shard_id: number): Promise<bigint> => {
            const address = t.shards.find((s) => s.shard_id === shard_id)!;
            return ok(await shardActor(ic, address.canister_id, ROUTER).get_shard_stats())
                .loan_count;
        };
        expect([await statsOf(1), await statsOf(2)]).toEqual([80n, 0n]);
        const counts = ((await factory.get_all_shards()) as ShardInfo[]).map((s) => s.slot_count);
        expect(counts).toEqual([SLOT_COUNT / 2, SLOT_COUNT / 2]);

        const id = ok(await factory.rebalance_shards()) as string;
        const info = await waitForMigration(ic, factory, id);
        expect(info.reason).toBe('rebalance');
        // Greedy: four slots of 10 loans move, 40 and 40.
        expect(info.slots_total).toBe(4);
        expect([await statsOf(1), await statsOf(2)]).toEqual([40n, 40n]);
        expect(ok(await factory.rebalance_shards())).toMatch(/^balanced/);
        const log = ok(await factory.get_audit_log([], [50])).entries;
        const planned = log.find((e) => e.action === 'rebalance_planned')!;
        expect(planned.detail).toMatch(/loans max\/mean 2\.000 -> 1\.000 with 4 slot moves/);
    });
});
