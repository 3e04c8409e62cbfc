/**
 * The system benchmark (`npm run bench`): the real canister Wasm in the local IC emulator's
 * instruction-counting mode (fixed clock origin and `raw_rand` seed, so every count repeats).
 * Instructions per operation (router against a direct shard write, `get_loan`, the farmer
 * dashboard's cache miss and hit, the investor dashboard at 1–64 shards as composite query and as
 * update, a migration per 1,000 loans, a routing-table refresh), rounds per operation at 1–64
 * shards, and the emulator's write throughput. Prints one table with PASS/FAIL beside each target
 * and writes `bench/results/system.json`.
 *
 * Flags: `--seed N` (default 1), `--quick` (1 and 4 shards, fewer samples and loans; written only
 * with `--out`), `--out FILE`, `--loans N` (loans moved by the migration, default 1,000),
 * `--markdown` (measures nothing: prints the README's tables from the written JSON).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildAll } from '../scripts/build';
import type { BenchRow } from './core/types';
import { runFanout } from './system/fanout';
import { markdownReport, type SystemReport } from './system/markdown';
import { loadWasms } from './system/measure';
import { runMigration } from './system/migration';
import { planOf } from './system/plan';
import { argValue, formatTable } from './table';

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const seed = Number(argValue(args, '--seed') ?? '1');
    const quick = args.includes('--quick');
    const loansArg = argValue(args, '--loans');
    const loans = loansArg === undefined ? undefined : Number(loansArg);
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
    const outArg = argValue(args, '--out');
    const out =
        outArg !== undefined
            ? resolve(outArg)
            : quick
              ? undefined
              : resolve(root, 'bench/results/system.json');
    if (!Number.isSafeInteger(seed)) throw new Error('--seed takes an integer');
    if (loans !== undefined && !(Number.isSafeInteger(loans) && loans >= 1 && loans <= 100_000)) {
        throw new Error('--loans takes an integer in 1..=100000');
    }
    if (args.includes('--markdown')) {
        const from = out ?? resolve(root, 'bench/results/system.json');
        console.log(markdownReport(JSON.parse(await readFile(from, 'utf8')) as SystemReport));
        return;
    }
    const plan = planOf(quick, loans);
    const log = (line: string): void => console.error(`bench: ${line}`);

    const started = performance.now();
    await buildAll({ log: (line) => console.error(`build: ${line}`) });
    const wasms = await loadWasms();
    const fanout = await runFanout({ seed, ...plan, wasms, log });
    const migration = await runMigration({ seed, loans: plan.loans, wasms, log });
    const total_ms = Math.round(performance.now() - started);

    const rows: BenchRow[] = [...fanout.rows, ...migration.rows];
    const notes = { ...fanout.notes, ...migration.notes };
    const timings_ms = { ...fanout.timings_ms, ...migration.timings_ms, total: total_ms };
    console.log(formatTable(rows));
    console.log('');
    for (const [key, text] of Object.entries(notes)) console.log(`${key}: ${text}`);
    console.log(`\nwall time (ms): ${JSON.stringify(timings_ms)}`);

    const failed = rows.filter((r) => r.target !== undefined && !r.target.pass);
    if (out !== undefined) {
        await mkdir(dirname(out), { recursive: true });
        await writeFile(
            out,
            JSON.stringify(
                {
                    benchmark: 'system',
                    seed,
                    quick,
                    plan,
                    node: process.version,
                    generated_at: new Date().toISOString(),
                    figures: Object.fromEntries(rows.map((r) => [r.key, r.value])),
                    rows,
                    notes,
                    timings_ms,
                    targets_failed: failed.map((r) => r.key)
                },
                null,
                2
            ) + '\n'
        );
    }
    const verdict =
        failed.length === 0 ? 'all targets met' : 'FAILED: ' + failed.map((r) => r.key).join(', ');
    console.log(
        `\n${out === undefined ? 'not written (quick run; --out FILE writes it)' : `wrote ${out}`}; ${verdict}`
    );
    process.exitCode = failed.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    await main();
}
