/**
 * End to end: the real factory and the real router together. The factory creates the shards and
 * pushes its routing table to the router; loans are written and read only through the router,
 * also while the factory migrates slots between shards.
 */
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { slotOf } from '../../src/shared/hash';
import { SLOT_COUNT } from '../../src/shared/limits';
import type { MigrationInfo } from '../../src/shared/factory_api';
import type { Loan, RoutingTable, ShardInfo } from '../../src/shared/types';
import {
    deployFactory,
    type Factory,
    ownerOfSlot,
    shardActor,
    uploadShardWasm,
    waitForMigration
} from './factory_support';
import { APP, routerIdl, routerInitArg, type Router } from './fixtures/router_fixture';
import { hasCapability } from './capabilities';
import { ADMIN, application, ok, user, wasmOf } from './support';

const FARMERS = 50;

/** The fields of the router's `LoanPage` the checks read. */
interface UserPage {
    loans: { id: bigint }[];
    complete: boolean;
    next_cursor: [] | [string];
}

describe('factory and router together', () => {
    let ic: TestIc;
    let factory: Factory;
    let router: Router;
    let routerId: Principal;
    let factoryId: Principal;
    /** Every loan the router acknowledged, latest content, by id. */
    const written = new Map<bigint, Loan>();
    let next = 0;

    async function factoryTable(): Promise<RoutingTable> {
        return (await factory.get_routing_table()) as RoutingTable;
    }

    async function routerTable(): Promise<RoutingTable> {
        return (await router.get_routing_table()) as RoutingTable;
    }

    /** Writes one loan through the router; retries (as a client would) while slots are frozen. */
    async function writeLoan(farmer = user(next % FARMERS)): Promise<Loan> {
        const n = next++;
        for (let attempt = 0; attempt < 50; attempt++) {
            const result = await router.create_loan(application(farmer, n));
            if ('Ok' in result) {
                written.set(result.Ok.id, result.Ok);
                return result.Ok;
            }
            const e = result.Err;
            if (!('ReadOnly' in e && e.ReadOnly.retriable)) {
                throw new Error(
                    `write ${n} failed: ${JSON.stringify(e, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`
                );
            }
            await ic.tick(2);
        }
        throw new Error(`write ${n} kept failing`);
    }

    /**
     * Every acknowledged loan (or `only` these) reads back identically through the router; each
     * farmer's ids come once, and the shards together hold exactly the acknowledged loans.
     */
    async function expectAllLoansOnce(only?: Loan[]): Promise<void> {
        const loans = only ?? [...written.values()];
        const read = await Promise.all(loans.map((l) => router.get_loan(l.id)));
        read.forEach((r, i) => expect(ok(r)).toEqual(loans[i]));
        const seen: bigint[] = [];
        const farmers = Array.from({ length: FARMERS }, (_, f) => f);
        await Promise.all(
            farmers.map(async (f) => {
                let cursor: [] | [string] = [];
                for (let pages = 0; pages < 100; pages++) {
                    const page: UserPage = ok(
                        await router.get_aggregated_user_loans(user(f), [{ cursor, limit: [100] }])
                    );
                    expect(page.complete).toBe(true);
                    seen.push(...page.loans.map((l) => l.id));
                    if (page.next_cursor.length === 0) break;
                    cursor = page.next_cursor;
                }
            })
        );
        expect(seen.length).toBe(written.size);
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of seen) expect(written.has(id)).toBe(true);
        let total = 0n;
        for (const address of (await factoryTable()).shards) {
            const stats = ok(
                await shardActor(ic, address.canister_id, factoryId).get_shard_stats()
            );
            total += stats.loan_count;
        }
        expect(total).toBe(BigInt(written.size));
    }

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        ({ factory, factoryId } = await deployFactory(ic, [ADMIN]));
        routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: routerId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 0, factory: factoryId }),
            sender: ADMIN
        });
        router = ic.createActor(routerIdl, routerId);
        router.setPrincipal(APP);
        ok(await factory.set_router_canister(routerId));
        await uploadShardWasm(factory);
        const first = ok(await factory.create_new_data_shard([])) as ShardInfo;
        expect(first.shard_id).toBe(1);
        const second = ok(await factory.create_new_data_shard([])) as ShardInfo;
        expect(second.shard_id).toBe(2);
        // The second shard is filled by a migration from the first.
        const id = (await factory.get_scalability_metrics()).migration_in_flight[0];
        if (id !== undefined) await waitForMigration(ic, factory, id);
    }, 120_000);

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('the factory pushes its routing table to the router: same epoch, all 16384 slots', async () => {
        const f = await factoryTable();
        const r = await routerTable();
        expect(f.shards.length).toBe(2);
        expect(r.epoch).toBe(f.epoch);
        expect(r).toEqual(f);
        let covered = 0;
        for (const range of r.ranges) covered += range.end - range.start + 1;
        expect(covered).toBe(SLOT_COUNT);
        expect(r.ranges[0].start).toBe(0);
        expect(r.ranges[r.ranges.length - 1].end).toBe(SLOT_COUNT - 1);
        expect(new Set(r.ranges.map((x) => x.shard_id))).toEqual(new Set([1, 2]));
    });

    it('writes 200 loans for 50 farmers through the router and reads each back', async () => {
        for (let batch = 0; batch < 10; batch++) {
            await Promise.all(Array.from({ length: 20 }, () => writeLoan()));
        }
        expect(written.size).toBe(200);
        await expectAllLoansOnce();
        // Both shards hold loans.
        for (const address of (await factoryTable()).shards) {
            const stats = ok(
                await shardActor(ic, address.canister_id, factoryId).get_shard_stats()
            );
            expect(stats.loan_count).toBeGreaterThan(0n);
        }
    });

    it('migrates 50% of a shard while writes go on through the router: none lost, none twice', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        const before = await factoryTable();
        const target = before.shards.find((s) => s.shard_id === 2)!.canister_id;
        // Slow replies from the target spread the migration over many rounds, between writes.
        ic.setCanisterDelay(target, 2);
        const id = ok(await factory.migrate_shard_data(1, 2, 50.0)) as string;
        const start = written.size;
        let during = 0;
        let info: MigrationInfo;
        try {
            info = await waitForMigration(ic, factory, id, 4_000, async () => {
                if (written.size - start < 100) {
                    await writeLoan();
                    during += 1;
                }
            });
        } finally {
            ic.setCanisterDelay(target, 0);
        }
        // Writes left after the migration ended.
        while (written.size - start < 100) await writeLoan();
        expect(info.spans_done).toBe(info.spans_total);
        expect(info.slots_done).toBe(SLOT_COUNT / 4);
        // Writes were acknowledged while the migration ran.
        expect(during).toBeGreaterThan(3);
        const after = await factoryTable();
        expect(after.epoch).toBeGreaterThan(before.epoch);
        const r = await routerTable();
        expect(r.epoch).toBe(after.epoch);
        expect(r).toEqual(after);
        expect(written.size).toBe(300);
        await expectAllLoansOnce();
    });

    it('a router that missed the flip writes to the new owner: WrongShard → refresh → retry', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
        const stale = await routerTable();
        // Every message to the router traps while the factory migrates: its pushes fail.
        ic.injectTraps(routerId, 1_000_000);
        let info: MigrationInfo;
        try {
            const id = ok(await factory.migrate_shard_data(2, 1, 50.0)) as string;
            info = await waitForMigration(ic, factory, id);
        } finally {
            ic.injectTraps(routerId, 0);
        }
        expect(info.spans_done).toBe(info.spans_total);
        const fresh = await factoryTable();
        expect(fresh.epoch).toBeGreaterThan(stale.epoch);
        expect(await routerTable()).toEqual(stale);

        const owner = (t: RoutingTable, p: Principal) =>
            ownerOfSlot(t.ranges, slotOf(p.toUint8Array()));
        const moved = Array.from({ length: FARMERS }, (_, f) => user(f)).filter(
            (p) => owner(stale, p) !== owner(fresh, p)
        );
        expect(moved.length).toBeGreaterThan(0);
        ic.clearMessageTrace();
        const loan = await writeLoan(moved[0]);
        const pulls = ic
            .getMessageTrace()
            .filter((e) => e.canister === factoryId.toText() && e.method === 'get_routing_table');
        expect(pulls.length).toBeGreaterThan(0);
        expect(await routerTable()).toEqual(fresh);
        const newOwner = fresh.shards.find((s) => s.shard_id === owner(fresh, moved[0]))!;
        expect(ok(await shardActor(ic, newOwner.canister_id, factoryId).get_loan(loan.id))).toEqual(
            loan
        );
        const late = [loan];
        for (const farmer of moved.slice(1, 10)) late.push(await writeLoan(farmer));
        // Every farmer's ids once and the shard totals; the new loans read back through the router.
        await expectAllLoansOnce(late);
    });
});
