/**
 * Instructions per message of the router canister under a main-job-shaped workload, measured on
 * the real Wasm in the local emulator's counting mode (`npx tsx bench/router_ops.ts`): a router
 * with 4 shards (the bench acts as the factory), batches of concurrent `create_loan`,
 * `update_loan` and `get_loan` ingress calls with IC time passing between batches (so the probe
 * timer runs), the operators' polls (`get_load_balancer_stats`), dashboards and analytics, an
 * outage (one shard stopped: rejected calls, then an open breaker answering errors) and
 * routing-table pushes. Every router message of the run is grouped by method and kind (ingress,
 * response callback, timer, query) and summarised as count, mean, p50, p90 and max: the spikes
 * (garbage collection, flushes) show as p90/max far above p50. Prints a table and writes
 * `bench/results/router_ops.json`.
 *
 * Flags: `--loans N` (default 600), `--batch N` concurrent calls per batch (default 150),
 * `--wasm-dir DIR` to measure other builds (`DIR/<name>/<name>.wasm.gz`, e.g. a copy of `.azle`
 * taken before a change), `--out FILE`.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Principal } from '@dfinity/principal';

import type { TraceEntry } from '../emulator';
import { LocalIc } from '../emulator';
import type { _SERVICE as RouterService } from '../src/declarations/router/router.did';
import { idlFactory as routerIdl } from '../src/declarations/router/router.did.js';
import type { _SERVICE as ShardService } from '../src/declarations/data_shard/data_shard.did';
import { idlFactory as shardIdl } from '../src/declarations/data_shard/data_shard.did.js';
import { IDL } from '@dfinity/candid';
import { slotOf } from '../src/shared/hash';
import { ShardInit } from '../src/shared/shard_api';
import type { ApiError, Loan, LoanUpdate, RoutingTable } from '../src/shared/types';
import { APP, evenRanges, routerInitArg } from '../tests/integration/fixtures/router_fixture';
import { ADMIN, application, FACTORY, user } from '../tests/integration/support';
import { argValue, reportOps } from './table';
import type { BenchRow } from './core/types';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const SHARDS = 4;
/** IC time per batch, as the main job (`BATCH_TIME_MS`): the 5 s probe runs every 5 batches. */
const BATCH_TIME_MS = 1_000;
const FARMERS = 100;
const INVESTORS = 10;

/** Targets of the router's per-message cost (instructions), from the round's task (P3). */
const TARGETS: Record<string, number> = {
    'get_load_balancer_stats.query.p50': 10_000_000,
    'update_loan.ingress.p50': 3_000_000
};

function ok<T>(result: { Ok: T } | { Err: ApiError }): T {
    if ('Err' in result) {
        throw new Error(`expected Ok, got ${JSON.stringify(result.Err, (_k, v) => String(v))}`);
    }
    return result.Ok;
}

async function wasmOf(dir: string, name: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(resolve(dir, name, `${name}.wasm.gz`)));
}

/** Router messages of the run, by `method.kind`. */
class Groups {
    private readonly byKey = new Map<string, number[]>();

    take(ic: LocalIc, router: string): void {
        for (const e of ic.getMessageTrace() as TraceEntry[]) {
            if (e.canister !== router || e.kind === 'inspect') continue;
            const key = `${e.method}.${e.kind}`;
            const list = this.byKey.get(key) ?? [];
            list.push(Number(e.instructions));
            this.byKey.set(key, list);
        }
        ic.clearMessageTrace();
    }

    rows(): BenchRow[] {
        const rows: BenchRow[] = [];
        for (const key of [...this.byKey.keys()].sort()) {
            const sorted = [...this.byKey.get(key)!].sort((a, b) => a - b);
            const at = (q: number): number =>
                sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
            const sum = sorted.reduce((a, b) => a + b, 0);
            const figures: [string, number, string][] = [
                ['count', sorted.length, 'messages'],
                ['mean', Math.round(sum / sorted.length), 'instructions'],
                ['p50', at(0.5), 'instructions'],
                ['p90', at(0.9), 'instructions'],
                ['max', sorted[sorted.length - 1], 'instructions'],
                ['total', sum, 'instructions']
            ];
            for (const [name, value, unit] of figures) {
                const target = TARGETS[`${key}.${name}`];
                rows.push({
                    key: `${key}.${name}`,
                    value,
                    unit,
                    ...(target === undefined
                        ? {}
                        : { target: { pass: value <= target, text: `<= ${target / 1e6} M` } })
                });
            }
        }
        return rows;
    }
}

function shardInitArg(shard_id: number, router: Principal, range: ReturnType<typeof evenRanges>) {
    const value = {
        shard_id,
        factory: FACTORY,
        router: [router],
        slots: range,
        epoch: 1n,
        max_loans: 1_000_000n,
        storage_capacity_bytes: 10_000_000_000n
    };
    return new Uint8Array(IDL.encode([IDL.Opt(ShardInit)], [[value]]));
}

/** The next transition of a loan in the workload's life cycle, or null at its end (Active). */
function nextUpdate(loan: Loan, investor: Principal): LoanUpdate | null {
    switch (Object.keys(loan.status)[0]) {
        case 'PendingApplication':
            return { SubmitForApproval: null };
        case 'PendingApproval':
            return { Approve: { amount_approved: loan.amount_requested } };
        case 'Approved':
            return loan.funders.length === 0
                ? { Fund: { investor, amount: loan.amount_approved } }
                : { Activate: null };
        default:
            return null;
    }
}

interface Options {
    loans: number;
    batch: number;
    wasmDir: string;
}

async function run(o: Options): Promise<BenchRow[]> {
    const ic = await LocalIc.create({ countInstructions: true, traceCapacity: 100_000 });
    const groups = new Groups();
    try {
        const routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: routerId,
            wasm: await wasmOf(o.wasmDir, 'router'),
            arg: routerInitArg({ shardCount: SHARDS }),
            sender: ADMIN
        });
        const router = ic.createActor<RouterService>(routerIdl, routerId);
        const ranges = evenRanges(SHARDS);
        const shardWasm = await wasmOf(o.wasmDir, 'data_shard');
        const shardIds: Principal[] = [];
        for (const range of ranges) {
            const { canisterId } = await ic.setupCanister<ShardService>({
                idlFactory: shardIdl,
                wasm: shardWasm,
                arg: shardInitArg(range.shard_id, routerId, [range]),
                sender: ADMIN,
                controllers: [ADMIN]
            });
            shardIds.push(canisterId);
        }
        const table = (epoch: bigint): RoutingTable => ({
            epoch,
            ranges,
            shards: shardIds.map((canister_id, i) => ({
                shard_id: i + 1,
                canister_id,
                region: 'eu'
            }))
        });
        ic.clearMessageTrace();
        router.setPrincipal(FACTORY);
        ok(await router.update_routing_table(table(1n)));
        const admin = ic.createActor<RouterService>(routerIdl, routerId);
        admin.setPrincipal(ADMIN);
        router.setPrincipal(APP);
        groups.take(ic, routerId.toText());

        const farmers = Array.from({ length: FARMERS }, (_, i) => user(i));
        const investors = Array.from({ length: INVESTORS }, (_, i) => user(10_000 + i));
        const live: Loan[] = [];
        let created = 0;
        let n = 0;
        // Batches mixing writes and reads, as the main job sends them; then the operator's poll.
        while (created < o.loans || live.length > 0) {
            const creates = Math.min(Math.ceil(o.batch / 3), o.loans - created);
            const updates = live.splice(0, Math.ceil(o.batch / 2));
            const reads = updates.slice(0, Math.ceil(o.batch / 6));
            const calls: Promise<unknown>[] = [];
            for (let i = 0; i < creates; i++, created++) {
                calls.push(
                    router
                        .create_loan(application(farmers[(created * 7) % FARMERS], created))
                        .then((r) => live.push(ok(r)))
                );
            }
            for (const loan of updates) {
                const update = nextUpdate(loan, investors[n++ % INVESTORS]);
                if (update === null) continue;
                calls.push(
                    router.update_loan(loan.id, update).then((r) => {
                        const next = ok(r);
                        if (nextUpdate(next, investors[0]) !== null) live.push(next);
                    })
                );
            }
            for (const loan of reads) calls.push(router.get_loan(loan.id).then(ok));
            calls.push(router.get_farmer_dashboard_advanced(farmers[n % FARMERS]).then(ok));
            calls.push(router.get_investor_dashboard_advanced(investors[n % INVESTORS]).then(ok));
            await Promise.all(calls);
            ok(await admin.get_load_balancer_stats());
            await ic.advanceTime(BATCH_TIME_MS);
            groups.take(ic, routerId.toText());
        }
        // An outage: shard 1 stopped, so writes to it fail (rejects), then its breaker opens
        // and the router answers `ShardUnavailable` itself; then it restarts and recovers.
        const down = farmers.filter((f) => slotOf(f.toUint8Array()) <= ranges[0].end);
        await ic.stopCanister({ canisterId: shardIds[0], sender: ADMIN });
        for (let i = 0; i < 4; i++) {
            await Promise.all(
                down.map((f, j) =>
                    router.create_loan(application(f, 2_000_000 + 100 * i + j)).then((r) => {
                        if (!('Err' in r)) throw new Error('a stopped shard took a loan');
                    })
                )
            );
            ok(await admin.get_load_balancer_stats());
            await ic.advanceTime(BATCH_TIME_MS);
            groups.take(ic, routerId.toText());
        }
        await ic.startCanister({ canisterId: shardIds[0], sender: ADMIN });
        // One of each of the remaining operations, a few times.
        for (let i = 0; i < 5; i++) {
            ok(await admin.get_system_analytics());
            ok(await router.get_aggregated_user_loans(farmers[i], []));
            router.setPrincipal(FACTORY);
            ok(await router.update_routing_table(table(BigInt(2 + i))));
            router.setPrincipal(APP);
            ok(await router.create_loan(application(farmers[i], 1_000_000 + i)));
            await ic.advanceTime(BATCH_TIME_MS);
            groups.take(ic, routerId.toText());
        }
        return groups.rows();
    } finally {
        await ic.tearDown();
    }
}

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const options: Options = {
        loans: Number(argValue(args, '--loans') ?? '600'),
        batch: Number(argValue(args, '--batch') ?? '150'),
        wasmDir: resolve(argValue(args, '--wasm-dir') ?? resolve(root, '.azle'))
    };
    if (!Number.isInteger(options.loans) || options.loans < 1 || options.loans > 100_000) {
        throw new Error('--loans takes an integer in 1..=100000');
    }
    if (!Number.isInteger(options.batch) || options.batch < 6 || options.batch > 400) {
        throw new Error('--batch takes an integer in 6..=400');
    }
    const out = resolve(argValue(args, '--out') ?? resolve(root, 'bench/results/router_ops.json'));
    const started_ms = Date.now();
    const rows = await run(options);
    await reportOps(
        'router_ops',
        out,
        { loans: options.loans, batch: options.batch, wasm_dir: options.wasmDir },
        rows,
        started_ms
    );
}

await main();
