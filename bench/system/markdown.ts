/**
 * The README's benchmark tables, from a written `system.json` (`npm run bench -- --markdown`
 * prints them without measuring anything), so the README follows every re-run.
 */
import type { BenchRow } from '../core/types';

/** The parts of `system.json` the tables read. */
export interface SystemReport {
    quick: boolean;
    plan: { shardCounts: number[]; opsShards: number; samples: number; loans: number };
    figures: Record<string, number>;
    rows: BenchRow[];
    notes: Record<string, string>;
}

/** Instructions in M (or B from 10 B up), e.g. `29.1 M`, `70.7 B`; `—` when not measured. */
export function formatInstructions(value: number | undefined): string {
    if (value === undefined) return '—';
    if (value >= 10e9) return `${(value / 1e9).toFixed(1)} B`;
    if (value >= 1e9) return `${(value / 1e9).toFixed(2)} B`;
    return `${(value / 1e6).toFixed(value >= 10e6 ? 1 : 2)} M`;
}

function count(value: number | undefined): string {
    return value === undefined ? '—' : value.toLocaleString('en-US');
}

function table(header: string[], lines: string[][]): string {
    const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
    return [row(header), row(header.map(() => '---')), ...lines.map(row)].join('\n');
}

/** The README's benchmark section body: per-operation, per-width and target tables. */
export function markdownReport(r: SystemReport): string {
    const f = r.figures;
    const m = formatInstructions;
    const parts = (op: string): string =>
        `router ${m(f[`${op}.router_instructions`])} + shard ${m(f[`${op}.shard_instructions`])}`;
    const ops = table(
        ['operation', 'instructions', 'of which'],
        [
            [
                '`create_loan` through the router',
                m(f['create_loan.routed.instructions']),
                parts('create_loan.routed')
            ],
            [
                '`create_loan` sent straight to the shard',
                m(f['create_loan.direct.instructions']),
                ''
            ],
            [
                '`get_loan` through the router (update)',
                m(f['get_loan.routed.instructions']),
                parts('get_loan.routed')
            ],
            ['`get_loan` on the shard (query)', m(f['get_loan.direct_query.instructions']), ''],
            [
                'farmer dashboard, cache miss (update)',
                m(f['farmer_dashboard.miss.instructions']),
                ''
            ],
            ['farmer dashboard, cache hit (update)', m(f['farmer_dashboard.hit.instructions']), ''],
            [
                'farmer dashboard (composite query)',
                m(f['farmer_dashboard.composite.instructions']),
                ''
            ],
            [
                'routing-table refresh (`refresh_routing_table`)',
                m(f['refresh_routing_table.instructions']),
                'router + factory'
            ],
            [
                `migration of ${count(f['migration.loans_moved'])} loans (${count(f['migration.slots_moved'])} slots), per 1,000 loans`,
                m(f['migration.instructions_per_1000_loans']),
                'factory + both shards + router'
            ],
            ['Azle floor: a trivial update', m(f['azle_floor.trivial_update']), 'published'],
            [
                'Azle floor: one `StableBTreeMap` insert',
                `${m(f['azle_floor.stable_btreemap_insert.min'])}–${m(f['azle_floor.stable_btreemap_insert.max'])}`,
                'published'
            ]
        ]
    );
    const widths = table(
        [
            'shards',
            'investor dashboard, composite query',
            'investor dashboard, update',
            'rounds: dashboard update / composite',
            'rounds: `create_loan` / `get_loan` / farmer dashboard'
        ],
        r.plan.shardCounts.map((n) => {
            const answered = f[`investor_dashboard.composite.s${n}.instructions`];
            const refused = f[`investor_dashboard.composite.s${n}.refusal_instructions`];
            const composite =
                answered !== undefined
                    ? m(answered)
                    : refused !== undefined
                      ? `refused (\`CapacityExceeded\`), ${m(refused)}`
                      : 'rejected';
            const rounds = (op: string): string => `${f[`${op}.s${n}.rounds`] ?? '—'}`;
            return [
                String(n),
                composite,
                m(f[`investor_dashboard.update.s${n}.instructions`]),
                `${f[`investor_dashboard.update.s${n}.rounds`] ?? '—'} / ${f[`investor_dashboard.composite.s${n}.rounds`] ?? '—'}`,
                `${rounds('create_loan')} / ${rounds('get_loan')} / ${rounds('farmer_dashboard')}`
            ];
        })
    );
    const targets = table(
        ['target', 'measured', 'result'],
        r.rows
            .filter((row) => row.target !== undefined)
            .map((row) => [
                `\`${row.key}\` ${row.target!.text}`,
                row.unit === 'instructions'
                    ? m(row.value)
                    : `${Number(row.value.toFixed(4))} ${row.unit}`,
                row.target!.pass ? 'PASS' : 'FAIL'
            ])
    );
    const throughput = f['throughput.create_loan.loans_per_s'];
    const projectedKey = Object.keys(f).find((k) => k.endsWith('.projected_instructions'));
    const cap = /\.s(\d+)\.projected_instructions$/.exec(projectedKey ?? '')?.[1];
    const projected =
        projectedKey === undefined
            ? ''
            : `\n\nThe composite query projected linearly to the router's ${cap}-shard cap: ` +
              `${m(f[projectedKey])} of the 5 B query budget.`;
    return [
        `Instructions per operation (emulator, instruction-counting mode; means of ${r.plan.samples} operations at ${r.plan.opsShards} shards):`,
        '',
        ops,
        '',
        'By deployment width (one investor with a funded loan on every shard):',
        '',
        widths + projected,
        '',
        targets,
        '',
        `Write throughput in the emulator (information only): ${throughput === undefined ? '—' : throughput.toFixed(1)} loans/s.` +
            (r.quick ? ' (quick run)' : '')
    ].join('\n');
}
