/**
 * The factory's figures: a factory and a router provisioning two shards, `loans` loans written
 * through the router in parallel batches (the emulator's write throughput, information only),
 * then `migrate_shard_data` moving every slot of shard 1 to shard 2 — the instructions of every
 * message of the migration, across factory, both shards and the router's table update, per 1,000
 * loans moved — and one routing-table refresh (router `refresh_routing_table`).
 */
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';

import type { Actor, LocalIc } from '../../emulator';
import type { _SERVICE as RouterService } from '../../src/declarations/router/router.did';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { FactoryInit, type MigrationInfo } from '../../src/shared/factory_api';
import { SLOT_COUNT } from '../../src/shared/limits';
import type { ShardStats } from '../../src/shared/shard_api';
import type { RoutingTable } from '../../src/shared/types';
import { provisionShards } from '../../scripts/lib/provision';
import { shardActor, type Factory } from '../../tests/integration/factory_support';
import { APP, routerIdl, routerInitArg } from '../../tests/integration/fixtures/router_fixture';
import { ADMIN, application, encodeArgs } from '../../tests/integration/support';
import type { BenchRow } from '../core/types';
import type { SectionResult } from './fanout';
import { countingIc, measure, okOf, usersByGroup, type Wasms } from './measure';
import { breakdown, sumInstructions } from './targets';

/** Loans per farmer, as in the main job's default workload (20,000 loans, 2,000 farmers). */
const LOANS_PER_FARMER = 10;
/** Parallel writes per batch: a client's in-flight window. */
const WRITE_BATCH = 100;
/** Bound on polls of the migration (one round each). */
const MAX_POLLS = 20_000;
/** Polls without a phase change before the clock moves (a failed step retries on a timer). */
const STALL_POLLS = 200;
const FIRST_FARMER = 500_000;

export interface MigrationOptions {
    seed: number;
    loans: number;
    wasms: Wasms;
    log: (line: string) => void;
}

/** The factory (admin ADMIN) and a router that knows it, as system.test.ts deploys them. */
async function deployFactoryAndRouter(
    ic: LocalIc,
    wasms: Wasms,
    seed: number
): Promise<{ factory: Factory; factoryId: Principal; routerId: Principal }> {
    const { actor: factory, canisterId: factoryId } = await ic.setupCanister<FactoryService>({
        idlFactory: factoryIdl,
        wasm: wasms.factory,
        arg: encodeArgs([IDL.Opt(FactoryInit)], [[{ admins: [ADMIN] }]]),
        sender: ADMIN,
        controllers: [ADMIN]
    });
    factory.setPrincipal(ADMIN);
    const routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
    await ic.installCode({
        canisterId: routerId,
        wasm: wasms.router,
        arg: routerInitArg({ shardCount: 0, factory: factoryId, seed }),
        sender: ADMIN
    });
    return { factory, factoryId, routerId };
}

/** Polls until the migration is Done, ticking rounds; the clock only moves when a step stalls. */
async function driveMigration(
    ic: LocalIc,
    factory: Factory,
    id: string
): Promise<{ info: MigrationInfo; time_advances: number }> {
    let lastPhase = '';
    let stalled = 0;
    let time_advances = 0;
    for (let poll = 0; poll < MAX_POLLS; poll++) {
        await ic.tick();
        const info = okOf('get_migration', await factory.get_migration(id)) as MigrationInfo;
        if (info.phase === 'Done') return { info, time_advances };
        if (info.phase === 'Failed') throw new Error(`migration failed: ${info.failure[0]}`);
        const phase = `${info.phase}/${info.spans_done}/${info.loans_copied}`;
        stalled = phase === lastPhase ? stalled + 1 : 0;
        lastPhase = phase;
        if (stalled >= STALL_POLLS) {
            await ic.advanceTime(1_000);
            time_advances += 1;
            stalled = 0;
        }
    }
    throw new Error(`migration ${id} not done after ${MAX_POLLS} polls`);
}

/** Writes `loans` loans through the router, WRITE_BATCH in flight; farmers take turns. */
async function writeLoans(
    ic: LocalIc,
    router: Actor<RouterService>,
    farmers: Principal[],
    loans: number
): Promise<{ wall_ms: number; rounds: number }> {
    const started = performance.now();
    const roundBefore = ic.getRound();
    for (let at = 0; at < loans; at += WRITE_BATCH) {
        const batch = Array.from({ length: Math.min(WRITE_BATCH, loans - at) }, (_, i) => at + i);
        const replies = await Promise.all(
            batch.map((n) => router.create_loan(application(farmers[n % farmers.length], n)))
        );
        replies.forEach((r) => okOf('create_loan', r));
    }
    return { wall_ms: performance.now() - started, rounds: ic.getRound() - roundBefore };
}

interface FactoryDeployment {
    ic: LocalIc;
    factory: Factory;
    factoryId: Principal;
    routerId: Principal;
    table: RoutingTable;
}

/**
 * Moves every slot of shard 1 (holding all `loans`) to shard 2 and checks the shards' counts;
 * the figures count every message of the migration, not the benchmark's own polls.
 */
async function measureMigration(
    d: FactoryDeployment,
    loans: number
): Promise<{ rows: BenchRow[]; notes: Record<string, string>; wall_ms: number }> {
    const { ic, factory, factoryId } = d;
    const started = performance.now();
    const m = await measure(ic, async () => {
        const id = okOf('migrate_shard_data', await factory.migrate_shard_data(1, 2, 100));
        return await driveMigration(ic, factory, id);
    });
    const wall_ms = performance.now() - started;
    const { info, time_advances } = m.value;
    const adminId = ADMIN.toText();
    const trace = m.trace.filter((e) => !(e.kind === 'query' && e.caller === adminId));
    const total = sumInstructions(trace);
    const moved = Number(info.loans_copied);
    const statsOf = async (shard_id: number): Promise<ShardStats> => {
        const address = d.table.shards.find((s) => s.shard_id === shard_id);
        if (address === undefined) throw new Error(`shard ${shard_id} is not in the table`);
        const shard = shardActor(ic, address.canister_id, factoryId);
        return okOf('get_shard_stats', await shard.get_shard_stats());
    };
    const [source, target] = [await statsOf(1), await statsOf(2)];
    if (moved !== loans || source.loan_count !== 0n || target.loan_count !== BigInt(loans)) {
        throw new Error(
            `migration moved ${moved} loans; shards hold ${source.loan_count} and ` +
                `${target.loan_count}, expected 0 and ${loans}`
        );
    }
    const roles = new Map<string, string>([
        [factoryId.toText(), 'factory'],
        [d.routerId.toText(), 'router'],
        ...d.table.shards.map((s): [string, string] => [
            s.canister_id.toText(),
            `shard ${s.shard_id}`
        ])
    ]);
    const notes = {
        migration:
            `migrate_shard_data(1, 2, 100): ${info.slots_total} slots, ${moved} loans; every message ` +
            `on factory, shards and router counted; clock advanced ${time_advances} × 1 s`,
        'migration.breakdown': breakdown(trace, (c) => roles.get(c) ?? c, 8)
            .map((g) => `${g.what}: ${g.messages} msgs, ${(g.instructions / 1e6).toFixed(1)} M`)
            .join('; ')
    };
    const rows: BenchRow[] = [
        { key: 'migration.loans_moved', value: moved, unit: 'loans' },
        { key: 'migration.slots_moved', value: info.slots_total, unit: 'slots' },
        { key: 'migration.instructions', value: total, unit: 'instructions' },
        {
            key: 'migration.instructions_per_1000_loans',
            value: Math.round((total * 1000) / moved),
            unit: 'instructions'
        },
        { key: 'migration.messages', value: trace.length, unit: 'messages' },
        { key: 'migration.rounds', value: m.rounds, unit: 'rounds' }
    ];
    return { rows, notes, wall_ms };
}

export async function runMigration(o: MigrationOptions): Promise<SectionResult> {
    const timings_ms: Record<string, number> = {};
    const ic = await countingIc(o.seed);
    try {
        const started = performance.now();
        const { factory, factoryId, routerId } = await deployFactoryAndRouter(ic, o.wasms, o.seed);
        const router = ic.createActor<RouterService>(routerIdl, routerId);
        router.setPrincipal(APP);
        await provisionShards({
            factory,
            routerId,
            shardWasm: o.wasms.shard,
            shards: 2,
            settle: async () => {
                await ic.advanceTime(500);
                await ic.tick(5);
            }
        });
        timings_ms['deploy.factory_router_2_shards'] = Math.round(performance.now() - started);
        o.log(`factory, router and 2 shards in ${timings_ms['deploy.factory_router_2_shards']} ms`);

        // Farmers of shard 1 only, so the migration moves every loan written.
        const table = (await factory.get_routing_table()) as RoutingTable;
        const owners = new Int32Array(SLOT_COUNT).fill(-1);
        for (const r of table.ranges) for (let s = r.start; s <= r.end; s++) owners[s] = r.shard_id;
        const farmerCount = Math.max(1, Math.ceil(o.loans / LOANS_PER_FARMER));
        const onShard1 = (slot: number): number => (owners[slot] === 1 ? 0 : -1);
        const farmers = usersByGroup(1, farmerCount, onShard1, FIRST_FARMER)[0];
        const writes = await writeLoans(ic, router, farmers, o.loans);
        timings_ms['write'] = Math.round(writes.wall_ms);
        o.log(`${o.loans} loans from ${farmerCount} farmers written in ${timings_ms['write']} ms`);

        const migration = await measureMigration(
            { ic, factory, factoryId, routerId, table },
            o.loans
        );
        timings_ms['migration'] = Math.round(migration.wall_ms);
        o.log(`migration of ${o.loans} loans in ${timings_ms['migration']} ms`);

        const admin = ic.createActor<RouterService>(routerIdl, routerId);
        admin.setPrincipal(ADMIN);
        const refresh = await measure(ic, () => admin.refresh_routing_table());
        okOf('refresh_routing_table', refresh.value);

        const rows: BenchRow[] = [
            {
                key: 'throughput.create_loan.loans_per_s',
                value: (o.loans * 1000) / writes.wall_ms,
                unit: 'loans/s'
            },
            {
                key: 'throughput.create_loan.rounds_per_batch',
                value: writes.rounds / Math.ceil(o.loans / WRITE_BATCH),
                unit: 'rounds'
            },
            ...migration.rows,
            {
                key: 'refresh_routing_table.instructions',
                value: sumInstructions(refresh.trace),
                unit: 'instructions'
            },
            { key: 'refresh_routing_table.rounds', value: refresh.rounds, unit: 'rounds' }
        ];
        const notes = {
            throughput:
                `${o.loans} create_loan through the router to 2 shards, ${WRITE_BATCH} in flight, ` +
                'in instruction-counting mode; wall clock, so it varies with the machine',
            ...migration.notes
        };
        return { rows, notes, timings_ms };
    } finally {
        await ic.tearDown();
    }
}
