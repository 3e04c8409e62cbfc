/**
 * The access-control matrix: every admin method of the factory and every write, migration and read
 * method of the data shard, called as anonymous, a random user, an admin (a controller), the factory
 * and the router. Only the right callers get past the check; every other call answers
 * `NotAuthorized` and leaves the canister's observable state exactly as it was. One deploy of each
 * canister serves the whole table.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Actor } from '../../emulator';
import { createTestIc, type TestIc } from '../../emulator/harness';
import { SLOT_COUNT } from '../../src/shared/limits';
import { ShardInit, shardIdlFactory } from '../../src/shared/shard_api';
import { deployFactory, type Factory, uploadShardWasm } from './factory_support';
import {
    ADMIN,
    ANONYMOUS,
    application,
    bigintJson,
    encodeArgs,
    FACTORY,
    ok,
    principalOf,
    ROUTER,
    STRANGER,
    user,
    wasmOf
} from './support';

type Caller = 'anonymous' | 'user' | 'admin' | 'factory' | 'router';
const CALLERS: Caller[] = ['anonymous', 'user', 'admin', 'factory', 'router'];

/** A row of the matrix: a method, how to call it, and who may. */
interface Row<A> {
    method: string;
    call: (actor: A) => Promise<unknown>;
    allowed: Caller[];
}

const NOT_AUTHORIZED = { Err: { NotAuthorized: null } };

function json(value: unknown): string {
    return JSON.stringify(value, bigintJson);
}

/**
 * Runs every row as every caller; refused calls must change nothing `snapshot` can see. The
 * snapshot reads as a privileged caller, so the caller is set again right before each call.
 */
async function checkMatrix<A extends { setPrincipal(p: Principal): void }>(
    actor: A,
    principals: Record<Caller, Principal>,
    rows: Row<A>[],
    snapshot: () => Promise<string>
): Promise<{ refused: number; passed: number }> {
    let refused = 0;
    let passed = 0;
    for (const row of rows) {
        for (const who of CALLERS) {
            const before = await snapshot();
            actor.setPrincipal(principals[who]);
            const result = await row.call(actor);
            const where = `${row.method} as ${who}`;
            if (row.allowed.includes(who)) {
                expect(result, where).not.toEqual(NOT_AUTHORIZED);
                passed += 1;
            } else {
                expect(result, where).toEqual(NOT_AUTHORIZED);
                expect(await snapshot(), where).toEqual(before);
                refused += 1;
            }
        }
    }
    return { refused, passed };
}

describe('access control', () => {
    let ic: TestIc;

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('factory: only admins get past the check of an admin method; the rest change nothing', async () => {
        const { factory, factoryId } = await deployFactory(ic);
        await uploadShardWasm(factory);
        ok(await factory.set_router_canister(ROUTER));
        ok(await factory.create_new_data_shard([]));
        const principals: Record<Caller, Principal> = {
            anonymous: ANONYMOUS,
            user: STRANGER,
            admin: ADMIN,
            factory: factoryId,
            router: ROUTER
        };
        const newcomer = principalOf('newcomer');
        const admins: Caller[] = ['admin'];
        const rows: Row<Factory>[] = [
            {
                method: 'upload_shard_wasm_chunk',
                call: (f) => f.upload_shard_wasm_chunk(new Uint8Array(0)),
                allowed: admins
            },
            {
                method: 'commit_shard_wasm',
                call: (f) => f.commit_shard_wasm(new Uint8Array(31)),
                allowed: admins
            },
            {
                method: 'create_new_data_shard',
                call: (f) => f.create_new_data_shard(['Not A Region']),
                allowed: admins
            },
            {
                method: 'mark_shard_read_only',
                call: (f) => f.mark_shard_read_only(99),
                allowed: admins
            },
            {
                method: 'update_scalability_config',
                call: async (f) => f.update_scalability_config(await f.get_scalability_config()),
                allowed: admins
            },
            {
                method: 'migrate_shard_data',
                call: (f) => f.migrate_shard_data(1, 1, 10),
                allowed: admins
            },
            { method: 'rebalance_shards', call: (f) => f.rebalance_shards(), allowed: admins },
            {
                method: 'upgrade_all_shards',
                call: (f) => f.upgrade_all_shards([]),
                allowed: admins
            },
            { method: 'add_admin', call: (f) => f.add_admin(newcomer), allowed: admins },
            { method: 'remove_admin', call: (f) => f.remove_admin(newcomer), allowed: admins },
            {
                method: 'set_router_canister',
                call: (f) => f.set_router_canister(ROUTER),
                allowed: admins
            },
            {
                method: 'set_region_subnet',
                call: (f) => f.set_region_subnet('eu', principalOf('subnet')),
                allowed: admins
            },
            {
                method: 'set_cmc_canister',
                call: (f) => f.set_cmc_canister(principalOf('cmc')),
                allowed: admins
            },
            { method: 'run_scaling_check', call: (f) => f.run_scaling_check(), allowed: admins },
            { method: 'stop_migration', call: (f) => f.stop_migration('m-1'), allowed: admins },
            { method: 'get_audit_log', call: (f) => f.get_audit_log([], [5]), allowed: admins },
            // Last: it forgets the committed Wasm.
            { method: 'clear_shard_wasm', call: (f) => f.clear_shard_wasm(), allowed: admins }
        ];
        const snapshot = async (): Promise<string> => {
            factory.setPrincipal(ADMIN);
            return json([
                await factory.get_routing_table(),
                await factory.get_all_shards(),
                await factory.get_scalability_config(),
                await factory.get_scalability_metrics(),
                await factory.get_admins(),
                await factory.get_audit_log([], [3])
            ]);
        };
        const result = await checkMatrix(factory, principals, rows, snapshot);
        expect(result).toEqual({ refused: rows.length * 4, passed: rows.length });
        // Queries that only admins may read answer nothing (not an error) to others.
        for (const who of ['anonymous', 'user', 'factory', 'router'] as Caller[]) {
            factory.setPrincipal(principals[who]);
            expect(await factory.get_admins()).toEqual([]);
            expect(await factory.is_admin()).toBe(false);
        }
    });

    it('data shard: writes from factory and router, migration from the factory, reads from readers', async () => {
        const shardId = (
            await ic.setupCanister<Record<string, (...args: unknown[]) => Promise<unknown>>>({
                idlFactory: shardIdlFactory,
                wasm: await wasmOf('data_shard'),
                arg: encodeArgs(
                    [IDL.Opt(ShardInit)],
                    [
                        [
                            {
                                shard_id: 1,
                                factory: FACTORY,
                                router: [ROUTER],
                                slots: [{ start: 0, end: SLOT_COUNT - 1, shard_id: 1 }],
                                epoch: 1n,
                                max_loans: 100_000n,
                                storage_capacity_bytes: 1_000_000_000n
                            }
                        ]
                    ]
                ),
                sender: ADMIN,
                controllers: [ADMIN]
            })
        ).canisterId;
        type Shard = Actor<Record<string, (...args: unknown[]) => Promise<unknown>>>;
        const shard = ic.createActor(shardIdlFactory, shardId) as Shard;
        shard.setPrincipal(ROUTER);
        const loan = ok(
            (await shard.create_loan(application(user(1), 1))) as { Ok: { id: bigint } }
        );
        const principals: Record<Caller, Principal> = {
            anonymous: ANONYMOUS,
            user: STRANGER,
            admin: ADMIN,
            factory: FACTORY,
            router: ROUTER
        };
        const writers: Caller[] = ['factory', 'router'];
        const factoryOnly: Caller[] = ['factory'];
        const readers: Caller[] = ['admin', 'factory', 'router'];
        const span = { start: 0, end: SLOT_COUNT - 1 };
        const rows: Row<Shard>[] = [
            {
                method: 'create_loan',
                call: (s) => s.create_loan(application(user(2), 2)),
                allowed: writers
            },
            {
                method: 'update_loan',
                call: (s) => s.update_loan(loan.id, { SubmitForApproval: null }),
                allowed: writers
            },
            {
                method: 'set_slot_state',
                call: (s) => s.set_slot_state({ start: 5, end: 5 }, { Owned: null }, 1n),
                allowed: factoryOnly
            },
            { method: 'import_loans', call: (s) => s.import_loans([], []), allowed: factoryOnly },
            { method: 'ack_dirty', call: (s) => s.ack_dirty([]), allowed: factoryOnly },
            {
                method: 'delete_slot_batch',
                call: (s) => s.delete_slot_batch(span, 10),
                allowed: factoryOnly
            },
            { method: 'set_read_only', call: (s) => s.set_read_only(false), allowed: factoryOnly },
            { method: 'set_router', call: (s) => s.set_router(ROUTER), allowed: factoryOnly },
            {
                method: 'export_slot_batch',
                call: (s) => s.export_slot_batch(span, [], 10),
                allowed: factoryOnly
            },
            { method: 'span_checksum', call: (s) => s.span_checksum(span), allowed: factoryOnly },
            {
                method: 'export_dirty_batch',
                call: (s) => s.export_dirty_batch(10),
                allowed: factoryOnly
            },
            { method: 'get_loan', call: (s) => s.get_loan(loan.id), allowed: readers },
            {
                method: 'get_loans_by_borrower',
                call: (s) => s.get_loans_by_borrower(user(1), [], []),
                allowed: readers
            },
            {
                method: 'get_loans_by_investor',
                call: (s) => s.get_loans_by_investor(user(1), [], []),
                allowed: readers
            },
            {
                method: 'get_loans_by_status',
                call: (s) => s.get_loans_by_status({ PendingApplication: null }, [], []),
                allowed: readers
            },
            { method: 'get_shard_metrics', call: (s) => s.get_shard_metrics(), allowed: readers },
            { method: 'get_shard_stats', call: (s) => s.get_shard_stats(), allowed: readers },
            { method: 'get_slot_counts', call: (s) => s.get_slot_counts([], []), allowed: readers }
        ];
        const snapshot = async (): Promise<string> => {
            shard.setPrincipal(FACTORY);
            return json([
                await shard.get_shard_stats(),
                await shard.span_checksum(span),
                await shard.get_loan(loan.id),
                await shard.get_slot_counts([], []),
                await shard.export_dirty_batch(10)
            ]);
        };
        const result = await checkMatrix(shard, principals, rows, snapshot);
        const allowed = rows.reduce((sum, r) => sum + r.allowed.length, 0);
        expect(result).toEqual({ refused: rows.length * 5 - allowed, passed: allowed });
        // The allowed writes happened: two new loans (one per writer) besides the first.
        shard.setPrincipal(FACTORY);
        const stats = ok((await shard.get_shard_stats()) as { Ok: { loan_count: bigint } });
        expect(stats.loan_count).toBe(3n);
    });
});
