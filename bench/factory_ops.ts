/**
 * Instructions per message of the factory, measured on the real canister Wasm in the local
 * emulator's counting mode (`npx tsx bench/factory_ops.ts`): its queries (`get_scalability_metrics`,
 * which `npm start` polls every batch, `get_routing_table`, `get_all_shards`, …), the scaling round
 * (`run_scaling_check` and the timer, with their per-shard callbacks) and a migration (every
 * callback of the copy → catch up → flip → verify → delete cycle). The system is the one `npm start`
 * deploys (factory, router, 4 shards on two regional subnets) with `--loans` loans written through
 * the router. Prints a table (count, mean, p50, p90, max per factory message) and writes
 * `bench/results/factory_ops.json`.
 *
 * Flags: `--loans N` (default 400), `--samples N` calls per query and scaling rounds (default 10),
 * `--out FILE`. The codecs a migration uses are built on first use (tens of millions of
 * instructions, once per canister lifetime), so the migration's first messages carry that cost.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { TraceEntry } from '../emulator';
import { LocalIc } from '../emulator';
import { awaitMigration, okOr } from '../scripts/lib/provision';
import { deploySuite, emulatorOptions, type Suite } from '../scripts/lib/main_job';
import type { _SERVICE as RouterService } from '../src/declarations/router/router.did';
import { idlFactory as routerIdl } from '../src/declarations/router/router.did.js';
import { application, user } from '../tests/integration/support';
import { argValue, reportOps } from './table';
import type { BenchRow } from './core/types';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REGIONS = ['asia', 'europe'];
/** Loans submitted together (one round of the emulator each). */
const WRITE_BATCH = 50;

/** Per-message targets (mean instructions) of the factory's hottest messages. */
const TARGETS: Record<string, number> = {
    'queries.get_scalability_metrics.query': 5_000_000,
    'queries.get_routing_table.query': 5_000_000,
    'scaling.get_shard_metrics.response': 10_000_000,
    'timer.canister_status.response': 10_000_000
};

interface Options {
    loans: number;
    samples: number;
}

function percentile(sorted: number[], p: number): number {
    return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/** The factory's messages of `trace`, grouped by method and kind, as table rows. */
function rowsOf(section: string, trace: TraceEntry[], factoryId: string): BenchRow[] {
    const groups = new Map<string, number[]>();
    for (const e of trace) {
        if (e.canister !== factoryId) continue;
        const key = `${section}.${e.method.replace(/[^A-Za-z0-9_]+/g, '_')}.${e.kind}`;
        const values = groups.get(key) ?? [];
        values.push(Number(e.instructions));
        groups.set(key, values);
    }
    const rows: BenchRow[] = [];
    for (const [key, values] of [...groups.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
        const sorted = values.sort((a, b) => a - b);
        const mean = Math.round(sorted.reduce((a, b) => a + b, 0) / sorted.length);
        const target = TARGETS[key];
        rows.push(
            { key: `${key}.count`, value: sorted.length, unit: 'messages' },
            {
                key: `${key}.mean`,
                value: mean,
                unit: 'instructions',
                ...(target === undefined
                    ? {}
                    : { target: { pass: mean <= target, text: `<= ${target / 1e6} M` } })
            },
            { key: `${key}.p50`, value: percentile(sorted, 50), unit: 'instructions' },
            { key: `${key}.p90`, value: percentile(sorted, 90), unit: 'instructions' },
            { key: `${key}.max`, value: sorted[sorted.length - 1], unit: 'instructions' }
        );
    }
    return rows;
}

async function writeLoans(suite: Suite, loans: number): Promise<void> {
    const router = suite.ic.createActor<RouterService>(routerIdl, suite.routerId);
    router.setPrincipal(suite.app);
    for (let n = 0; n < loans; n += WRITE_BATCH) {
        const batch = Array.from({ length: Math.min(WRITE_BATCH, loans - n) }, (_, k) => n + k);
        const results = await Promise.all(
            batch.map((i) => router.create_loan(application(user(i % 97), i)))
        );
        for (const r of results) okOr('create_loan', r);
    }
}

async function bench(o: Options): Promise<BenchRow[]> {
    const ic = await LocalIc.create(emulatorOptions({ regions: REGIONS, seed: 42 }));
    try {
        const suite = await deploySuite(ic, { shards: 4, regions: REGIONS, seed: 42, cmc: true });
        const factoryId = suite.factoryId.toText();
        await writeLoans(suite, o.loans);
        const rows: BenchRow[] = [];
        const f = suite.factory;

        ic.clearMessageTrace();
        for (let i = 0; i < o.samples; i++) {
            await f.get_scalability_metrics();
            await f.get_routing_table();
            await f.get_all_shards();
            await f.get_scaling_recommendations();
            await f.get_active_shard();
        }
        rows.push(...rowsOf('queries', ic.getMessageTrace(), factoryId));

        ic.clearMessageTrace();
        for (let i = 0; i < o.samples; i++) okOr('run_scaling_check', await f.run_scaling_check());
        rows.push(...rowsOf('scaling', ic.getMessageTrace(), factoryId));

        // The timer's round: metrics, decision, then canister_status of every shard (top-up).
        const interval_ms = Number((await f.get_scalability_config()).scaling_check_interval_ms);
        ic.clearMessageTrace();
        for (let i = 0; i < o.samples; i++) {
            await ic.advanceTime(interval_ms);
            await ic.tick(6);
        }
        rows.push(...rowsOf('timer', ic.getMessageTrace(), factoryId));

        ic.clearMessageTrace();
        const id = okOr('migrate_shard_data', await f.migrate_shard_data(1, 2, 25));
        await awaitMigration(
            f,
            id,
            async () => {
                await ic.advanceTime(500);
                await ic.tick(5);
            },
            4_000
        );
        rows.push(...rowsOf('migration', ic.getMessageTrace(), factoryId));
        return rows;
    } finally {
        await ic.tearDown();
    }
}

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const options: Options = {
        loans: Number(argValue(args, '--loans') ?? '400'),
        samples: Number(argValue(args, '--samples') ?? '10')
    };
    if (!Number.isInteger(options.loans) || options.loans < 0 || options.loans > 100_000) {
        throw new Error('--loans takes an integer in 0..=100000');
    }
    if (!Number.isInteger(options.samples) || options.samples < 1 || options.samples > 1_000) {
        throw new Error('--samples takes an integer in 1..=1000');
    }
    const out = resolve(argValue(args, '--out') ?? resolve(root, 'bench/results/factory_ops.json'));
    const started_ms = Date.now();
    const rows = await bench(options);
    await reportOps(
        'factory_ops',
        out,
        { loans: options.loans, samples: options.samples },
        rows,
        started_ms
    );
}

await main();
