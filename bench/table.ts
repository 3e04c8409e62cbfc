/**
 * What every benchmark shares: its rows printed as one aligned table (PASS/FAIL beside each target)
 * and its command-line flags.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

import type { BenchRow } from './core/types';

/** Formats rows as an aligned text table. */
export function formatTable(rows: BenchRow[]): string {
    const lines = rows.map((row) => [
        row.key,
        formatValue(row.value),
        row.unit,
        row.target === undefined ? '' : `${row.target.pass ? 'PASS' : 'FAIL'} (${row.target.text})`
    ]);
    const header = ['figure', 'value', 'unit', 'target'];
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
    const format = (cells: string[]): string =>
        cells.map((c, i) => (i === 1 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
    return [format(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(format)].join(
        '\n'
    );
}

export function formatValue(value: number): string {
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(4);
}

/** The value after `flag` in `args`, e.g. `argValue(['--seed', '3'], '--seed')` → `'3'`. */
export function argValue(args: string[], flag: string): string | undefined {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
}

/**
 * Prints a per-message benchmark's rows and writes them to `out` as JSON: the benchmark's name, its
 * parameters, the node version and time, every figure by key, the rows and the targets missed.
 */
export async function reportOps(
    benchmark: string,
    out: string,
    params: Record<string, unknown>,
    rows: BenchRow[],
    started_ms: number
): Promise<void> {
    console.log(formatTable(rows));
    console.error(`${benchmark}: ${rows.length} figures in ${Date.now() - started_ms} ms`);
    const failed = rows.filter((r) => r.target !== undefined && !r.target.pass);
    await mkdir(dirname(out), { recursive: true });
    const report = {
        benchmark,
        ...params,
        node: process.version,
        generated_at: new Date().toISOString(),
        figures: Object.fromEntries(rows.map((r) => [r.key, r.value])),
        rows,
        targets_failed: failed.map((r) => r.key)
    };
    await writeFile(out, JSON.stringify(report, null, 2) + '\n');
}
