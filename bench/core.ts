/**
 * The benchmark of the pure core (`npm run bench:core`): placement against reference hashing
 * schemes, balancing algorithms in a slow-backend simulation, and the cache under Zipf traffic.
 * Prints one table with PASS/FAIL beside each target and writes `bench/results/core.json`.
 *
 * Flags: `--seed N` (default 1), `--quick` (small sizes, for a smoke run), `--out FILE`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { run as balancing } from './core/balancing';
import { run as cache } from './core/cache';
import { run as placement } from './core/placement';
import type { BenchRow, BenchSection } from './core/types';
import { argValue, formatTable } from './table';

export { formatTable };

export const SECTIONS: Record<string, BenchSection> = { placement, balancing, cache };

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const seed = Number(argValue(args, '--seed') ?? '1');
    const quick = args.includes('--quick');
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
    const out = resolve(argValue(args, '--out') ?? resolve(root, 'bench/results/core.json'));
    if (!Number.isSafeInteger(seed)) throw new Error('--seed takes an integer');

    const rows: BenchRow[] = [];
    for (const [name, section] of Object.entries(SECTIONS)) {
        const started_ms = Date.now();
        const sectionRows = await section({ seed, quick });
        rows.push(...sectionRows);
        console.error(`${name}: ${sectionRows.length} figures in ${Date.now() - started_ms} ms`);
    }
    console.log(formatTable(rows));

    const failed = rows.filter((r) => r.target !== undefined && !r.target.pass);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(
        out,
        JSON.stringify(
            {
                benchmark: 'core',
                seed,
                quick,
                node: process.version,
                generated_at: new Date().toISOString(),
                figures: Object.fromEntries(rows.map((r) => [r.key, r.value])),
                rows,
                targets_failed: failed.map((r) => r.key)
            },
            null,
            2
        ) + '\n'
    );
    console.log(
        `\nwrote ${out}; ${failed.length === 0 ? 'all targets met' : 'FAILED: ' + failed.map((r) => r.key).join(', ')}`
    );
    process.exitCode = failed.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    await main();
}
