/**
 * The main job's report: what the run measured and whether every invariant held, as plain data
 * (written as JSON with `--json FILE`) and as the text `npm start` prints at the end.
 */

export interface ShardRow {
    shard_id: number;
    region: string;
    canister_id: string;
    slots: number;
    loans: number;
    storage_bytes: number;
    cycles: string;
    breaker: string;
}

export interface MigrationRow {
    id: string;
    reason: string;
    phase: string;
    moves: string;
    slots: number;
    loans_copied: number;
    /** IC time from start to the last update of the migration. */
    duration_ms: number;
    /** Emulator rounds while the job saw it in flight (0 when it ran inside provisioning). */
    rounds: number;
    /** Real time while the job saw it in flight. */
    wall_ms: number;
}

export interface OperationRow {
    operation: string;
    rounds: number;
    instructions: number;
    /** Messages executed for it (ingress, inter-canister requests and responses). */
    messages: number;
}

export interface MethodRow {
    canister: string;
    method: string;
    kind: string;
    count: number;
    avg_instructions: number;
    max_instructions: number;
}

export interface Check {
    name: string;
    ok: boolean;
    detail: string;
}

export interface BreakerEvent {
    shard_id: number;
    state: string;
    at_batch: number;
}

export interface Report {
    options: Record<string, number | boolean | string>;
    wall_ms: { total: number; deploy: number; workload: number; checks: number };
    rounds: number;
    workload: {
        loans: number;
        updates: number;
        reads: number;
        retried_writes: number;
        batches: number;
        loans_per_s: number;
        errors: Record<string, number>;
    };
    shards: ShardRow[];
    routing_epoch: { factory: string; router: string };
    scale_outs: number;
    max_loans_per_shard: number;
    migrations: MigrationRow[];
    faults: { stopped_shard: number | null; events: BreakerEvent[] };
    balancer: {
        total_requests: string;
        failed_requests: string;
        rejected_by_breaker: string;
        breaker_transitions: string;
        per_shard: { shard_id: number; requests: string; failures: string }[];
    };
    cache: { hits: string; misses: string; hit_rate: number; entries: string };
    queries: { total_queries: string; avg_fan_out: number; partial_results: string };
    operations: OperationRow[];
    methods: MethodRow[];
    checks: Check[];
    ok: boolean;
}

/** The report as JSON text (bigints as decimal strings). */
export function reportJson(report: Report): string {
    return JSON.stringify(
        report,
        (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
        2
    );
}

/** A plain text table: columns padded to their widest cell, numbers right-aligned. */
export function table(headers: string[], rows: (string | number)[][]): string {
    const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)));
    const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
    const right = headers.map((_, i) => rows.length > 0 && typeof rows[0][i] === 'number');
    const line = (r: string[]): string =>
        r.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
    return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** 1234567 → "1,234,567"; fractions keep two decimals. */
export function fmt(n: number): string {
    return Number.isInteger(n)
        ? n.toLocaleString('en-US')
        : n.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

function seconds(ms: number): string {
    return `${(ms / 1000).toFixed(1)} s`;
}

/** The report as the text printed at the end of `npm start`. */
export function formatReport(r: Report): string {
    const out: string[] = [];
    const w = r.workload;
    out.push(
        `Agrilends main job: ${fmt(w.loans)} loans, ${fmt(w.updates)} updates, ${fmt(w.reads)} reads ` +
            `in ${seconds(r.wall_ms.total)} (deploy ${seconds(r.wall_ms.deploy)}, workload ` +
            `${seconds(r.wall_ms.workload)} at ${fmt(Math.round(w.loans_per_s))} loans/s, checks ` +
            `${seconds(r.wall_ms.checks)}); ${fmt(r.rounds)} emulator rounds, ${fmt(w.batches)} batches`
    );
    out.push('', 'Shards');
    out.push(
        table(
            ['id', 'region', 'canister id', 'slots', 'loans', 'storage bytes', 'cycles', 'breaker'],
            r.shards.map((s) => [
                s.shard_id,
                s.region,
                s.canister_id,
                s.slots,
                s.loans,
                s.storage_bytes,
                `${(Number(s.cycles) / 1e12).toFixed(3)} T`,
                s.breaker
            ])
        )
    );
    out.push(
        '',
        `Routing epoch: factory ${r.routing_epoch.factory}, router ${r.routing_epoch.router}; ` +
            `scale-outs: ${r.scale_outs} (max_loans_per_shard ${fmt(r.max_loans_per_shard)})`
    );
    out.push('', 'Migrations');
    out.push(
        table(
            [
                'id',
                'reason',
                'phase',
                'moves',
                'slots',
                'loans copied',
                'IC time',
                'rounds',
                'wall'
            ],
            r.migrations.map((m) => [
                m.id,
                m.reason,
                m.phase,
                m.moves,
                m.slots,
                m.loans_copied,
                seconds(m.duration_ms),
                m.rounds,
                seconds(m.wall_ms)
            ])
        )
    );
    const b = r.balancer;
    out.push(
        '',
        `Balancer: ${b.total_requests} requests, ${b.failed_requests} failed, ` +
            `${b.rejected_by_breaker} rejected by an open breaker, ${b.breaker_transitions} breaker transitions`
    );
    out.push(
        table(
            ['shard', 'requests', 'failures'],
            b.per_shard.map((p) => [p.shard_id, p.requests, p.failures])
        )
    );
    out.push(
        '',
        r.faults.stopped_shard === null
            ? 'Faults: none (--no-faults)'
            : `Faults: shard ${r.faults.stopped_shard} stopped and restarted; breaker: ` +
                  r.faults.events.map((e) => `${e.state} (batch ${e.at_batch})`).join(' → ')
    );
    out.push(
        `Cache: ${r.cache.hits} hits, ${r.cache.misses} misses, hit rate ` +
            `${(r.cache.hit_rate * 100).toFixed(1)}%, ${r.cache.entries} entries; fan-out queries: ` +
            `${r.queries.total_queries}, average fan-out ${r.queries.avg_fan_out.toFixed(2)}, ` +
            `${r.queries.partial_results} partial`
    );
    const errors = Object.entries(w.errors);
    out.push(
        `Retried writes: ${fmt(w.retried_writes)}` +
            (errors.length > 0 ? ` (${errors.map(([k, v]) => `${k} ${fmt(v)}`).join(', ')})` : '')
    );
    out.push('', 'Per operation (one call alone, instruction counting on)');
    out.push(
        table(
            ['operation', 'rounds', 'instructions', 'messages'],
            r.operations.map((o) => [o.operation, o.rounds, o.instructions, o.messages])
        )
    );
    if (r.methods.length > 0) {
        out.push('', 'Whole run, per canister method (--count-instructions)');
        out.push(
            table(
                ['canister', 'method', 'kind', 'count', 'avg instructions', 'max instructions'],
                r.methods.map((m) => [
                    m.canister,
                    m.method,
                    m.kind,
                    m.count,
                    m.avg_instructions,
                    m.max_instructions
                ])
            )
        );
    }
    out.push('', 'Invariant checks');
    for (const c of r.checks) out.push(`  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
    out.push('', r.ok ? 'All checks passed.' : 'SOME CHECKS FAILED.');
    return out.join('\n');
}
