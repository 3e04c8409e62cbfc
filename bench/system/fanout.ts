/**
 * Per-operation instructions and rounds over routers with 1 to 64 shards (the router fixture's
 * even slot ranges, no factory). For each shard count: a fresh counting emulator, one investor
 * with a funded loan on every shard, then the investor dashboard as composite query and as update,
 * and the rounds of the single-shard operations. At `opsShards` shards also the per-operation
 * comparisons, each a mean over `samples` operations: `create_loan` through the router against the
 * same write sent straight to the shard, `get_loan`, and the farmer dashboard missing and hitting
 * the cache.
 */
import type { Principal } from '@dfinity/principal';

import type { LocalIc } from '../../emulator';
import { MAX_COMPOSITE_FANOUT, SLOT_COUNT } from '../../src/shared/limits';
import type { Loan } from '../../src/shared/types';
import { deploy, type Deployment } from '../../tests/integration/fixtures/router_fixture';
import { application } from '../../tests/integration/support';
import type { BenchRow } from '../core/types';
import { countingIc, measure, okOf, usersByGroup, type Wasms } from './measure';
import {
    AZLE_FLOORS,
    cacheHitRow,
    compositeBudgetRow,
    type CompositeOutcome,
    flatRoundsRow,
    meanOf,
    projectLinear,
    routerOverheadRow,
    type RoundsPoint,
    splitByCanister,
    sumInstructions
} from './targets';

/** Writes before the measured ones, so one-time costs (first stable-map pages) are not counted. */
const WARMUP_WRITES = 2;
/** User numbers of the benchmark's farmers start here; investors are numbered apart. */
const FIRST_FARMER = 1_000;
const FIRST_INVESTOR = 900_000;

export interface FanoutOptions {
    seed: number;
    shardCounts: number[];
    /** The shard count where the per-operation comparisons run. */
    opsShards: number;
    samples: number;
    wasms: Wasms;
    log: (line: string) => void;
}

export interface SectionResult {
    rows: BenchRow[];
    notes: Record<string, string>;
    timings_ms: Record<string, number>;
}

/** Index of the even range (`evenRanges(shards)`) holding `slot`. */
function evenGroupOf(shards: number): (slot: number) => number {
    const size = Math.floor(SLOT_COUNT / shards);
    return (slot) => Math.min(Math.floor(slot / size), shards - 1);
}

/** One loan per shard, straight to the shards (setup, not measured), funded by `investor`. */
async function fundOnEveryShard(
    d: Deployment,
    farmers: Principal[],
    investor: Principal
): Promise<Loan[]> {
    const created = await Promise.all(
        d.shards.map(async (s, i) =>
            okOf('seed create_loan', await s.actor.create_loan(application(farmers[i], i)))
        )
    );
    const steps = [
        () => ({ SubmitForApproval: null }),
        (l: Loan) => ({ Approve: { amount_approved: l.amount_requested } }),
        (l: Loan) => ({ Fund: { investor, amount: l.amount_requested / 2n } })
    ];
    let loans = created;
    for (const step of steps) {
        loans = await Promise.all(
            loans.map(async (l, i) =>
                okOf('seed update_loan', await d.shards[i].actor.update_loan(l.id, step(l)))
            )
        );
    }
    return loans;
}

/** The composite investor dashboard: answered, refused with a typed error, or rejected. */
async function compositeInvestorDashboard(
    ic: LocalIc,
    d: Deployment,
    investor: Principal,
    shards: number
): Promise<{ outcome: CompositeOutcome; rounds: number }> {
    const m = await measure(ic, () =>
        d.router.query_investor_dashboard(investor).then(
            (result) => ({ result }),
            (error: Error) => ({ error })
        )
    );
    const instructions = sumInstructions(m.trace);
    if ('error' in m.value) {
        return { outcome: { kind: 'rejected', message: m.value.error.message }, rounds: m.rounds };
    }
    const result = m.value.result;
    if ('Ok' in result) {
        // Each shard call's callback runs on the router; without their entries the sum undercounts.
        const shardQueries = m.trace.filter((e) => e.canister !== d.routerId.toText()).length;
        const callbacks = m.trace.filter((e) => e.detail === 'callback').length;
        if (callbacks !== shardQueries) {
            throw new Error(
                `composite trace: ${shardQueries} shard queries, ${callbacks} callbacks`
            );
        }
        if (result.Ok.complete && result.Ok.investments.length !== shards) {
            throw new Error(`composite dashboard: ${result.Ok.investments.length} of ${shards}`);
        }
        return {
            outcome: { kind: 'answered', instructions, complete: result.Ok.complete },
            rounds: m.rounds
        };
    }
    if ('CapacityExceeded' in result.Err) {
        const { resource, limit } = result.Err.CapacityExceeded;
        return {
            outcome: { kind: 'refused', resource, limit: Number(limit), instructions },
            rounds: m.rounds
        };
    }
    throw new Error(`composite dashboard: unexpected ${Object.keys(result.Err)[0]}`);
}

/** The per-operation comparisons on one deployment; farmers all on shard 1. */
async function operations(
    ic: LocalIc,
    d: Deployment,
    farmers: Principal[],
    samples: number
): Promise<BenchRow[]> {
    const routerId = d.routerId.toText();
    const shard = d.shards[0].actor;
    const routedFarmers = farmers.slice(0, WARMUP_WRITES + samples);
    const directFarmers = farmers.slice(WARMUP_WRITES + samples, 2 * (WARMUP_WRITES + samples));
    for (let k = 0; k < WARMUP_WRITES; k++) {
        okOf('warm-up', await d.router.create_loan(application(routedFarmers[k], k)));
        okOf('warm-up', await shard.create_loan(application(directFarmers[k], k)));
    }
    const routed: { router: number; others: number; total: number }[] = [];
    const direct: number[] = [];
    const loans: Loan[] = [];
    // Interleaved, so both see the same shard state (its maps grow by one loan per write).
    for (let k = WARMUP_WRITES; k < WARMUP_WRITES + samples; k++) {
        const r = await measure(ic, () => d.router.create_loan(application(routedFarmers[k], k)));
        loans.push(okOf('create_loan (router)', r.value));
        routed.push(splitByCanister(r.trace, routerId));
        const s = await measure(ic, () => shard.create_loan(application(directFarmers[k], k)));
        okOf('create_loan (shard)', s.value);
        direct.push(sumInstructions(s.trace));
    }
    const gets: { router: number; others: number; total: number }[] = [];
    const directGets: number[] = [];
    const misses: number[] = [];
    const hits: number[] = [];
    const composites: number[] = [];
    for (const loan of loans) {
        const g = await measure(ic, () => d.router.get_loan(loan.id));
        if (okOf('get_loan (router)', g.value).id !== loan.id)
            throw new Error('get_loan: wrong loan');
        gets.push(splitByCanister(g.trace, routerId));
        const q = await measure(ic, () => shard.get_loan(loan.id));
        okOf('get_loan (shard)', q.value);
        directGets.push(sumInstructions(q.trace));
        const miss = await measure(ic, () => d.router.get_farmer_dashboard_advanced(loan.borrower));
        const hit = await measure(ic, () => d.router.get_farmer_dashboard_advanced(loan.borrower));
        if (okOf('farmer dashboard', miss.value).loans.length !== 1) throw new Error('dashboard');
        if (
            JSON.stringify(okOf('farmer dashboard', hit.value).loans.map((l) => `${l.id}`)) !==
            JSON.stringify([`${loan.id}`])
        ) {
            throw new Error('farmer dashboard: the hit answered another dashboard');
        }
        if (hit.trace.some((e) => e.canister !== routerId)) {
            throw new Error('farmer dashboard: the second call was not a cache hit');
        }
        misses.push(sumInstructions(miss.trace));
        hits.push(sumInstructions(hit.trace));
        const c = await measure(ic, () => d.router.query_farmer_dashboard(loan.borrower));
        okOf('farmer dashboard (composite)', c.value);
        composites.push(sumInstructions(c.trace));
    }
    const routedTotal = meanOf(routed.map((r) => r.total));
    const directTotal = meanOf(direct);
    const miss = meanOf(misses);
    const hit = meanOf(hits);
    const instr = (key: string, value: number): BenchRow => ({ key, value, unit: 'instructions' });
    return [
        instr('create_loan.routed.instructions', routedTotal),
        instr('create_loan.routed.router_instructions', meanOf(routed.map((r) => r.router))),
        instr('create_loan.routed.shard_instructions', meanOf(routed.map((r) => r.others))),
        instr('create_loan.direct.instructions', directTotal),
        routerOverheadRow(routedTotal, directTotal),
        instr('get_loan.routed.instructions', meanOf(gets.map((r) => r.total))),
        instr('get_loan.routed.router_instructions', meanOf(gets.map((r) => r.router))),
        instr('get_loan.routed.shard_instructions', meanOf(gets.map((r) => r.others))),
        instr('get_loan.direct_query.instructions', meanOf(directGets)),
        instr('farmer_dashboard.miss.instructions', miss),
        instr('farmer_dashboard.hit.instructions', hit),
        cacheHitRow(hit, miss),
        instr('farmer_dashboard.composite.instructions', meanOf(composites)),
        instr('azle_floor.trivial_update', AZLE_FLOORS.trivial_update_instructions),
        instr(
            'azle_floor.stable_btreemap_insert.min',
            AZLE_FLOORS.stable_btreemap_insert_min_instructions
        ),
        instr(
            'azle_floor.stable_btreemap_insert.max',
            AZLE_FLOORS.stable_btreemap_insert_max_instructions
        ),
        {
            key: 'create_loan.direct.over_trivial_update_floor',
            value: directTotal / AZLE_FLOORS.trivial_update_instructions,
            unit: 'ratio'
        }
    ];
}

/** The fan-out series and the per-operation comparisons. */
export async function runFanout(o: FanoutOptions): Promise<SectionResult> {
    // Grouped so the table reads by topic: operations, dashboards by width, rounds, targets.
    const opsRows: BenchRow[] = [];
    const dashboardRows: BenchRow[] = [];
    const roundRows: BenchRow[] = [];
    const rows: BenchRow[] = [];
    const notes: Record<string, string> = {};
    const timings_ms: Record<string, number> = {};
    const dashboardRounds: RoundsPoint[] = [];
    const answered: { shards: number; instructions: number }[] = [];
    let widest: {
        shards: number;
        composite: CompositeOutcome;
        update: { complete: boolean; instructions: number };
    } | null = null;
    for (const shards of [...o.shardCounts].sort((a, b) => a - b)) {
        const ic = await countingIc(o.seed);
        try {
            let started = performance.now();
            const d = await deploy(ic, {
                shardCount: shards,
                seed: o.seed,
                wasms: { router: o.wasms.router, shard: o.wasms.shard }
            });
            timings_ms[`deploy.s${shards}`] = Math.round(performance.now() - started);
            o.log(`${shards} shards deployed in ${timings_ms[`deploy.s${shards}`]} ms`);
            started = performance.now();
            const ops = shards === o.opsShards;
            const perShard = ops ? 2 + 2 * (WARMUP_WRITES + o.samples) : 2;
            const users = usersByGroup(
                shards,
                perShard,
                evenGroupOf(shards),
                FIRST_FARMER + shards * 10_000
            );
            const investor = usersByGroup(1, 1, () => 0, FIRST_INVESTOR + shards)[0][0];
            await fundOnEveryShard(
                d,
                users.map((u) => u[0]),
                investor
            );

            const composite = await compositeInvestorDashboard(ic, d, investor, shards);
            const update = await measure(ic, () =>
                d.router.get_investor_dashboard_advanced(investor)
            );
            const dashboard = okOf('investor dashboard', update.value);
            if (!dashboard.complete || dashboard.investments.length !== shards) {
                throw new Error(`investor dashboard: ${dashboard.investments.length} of ${shards}`);
            }
            const split = splitByCanister(update.trace, d.routerId.toText());
            const key = `investor_dashboard`;
            if (composite.outcome.kind === 'answered') {
                answered.push({ shards, instructions: composite.outcome.instructions });
                dashboardRows.push({
                    key: `${key}.composite.s${shards}.instructions`,
                    value: composite.outcome.instructions,
                    unit: 'instructions'
                });
            } else if (composite.outcome.kind === 'refused') {
                dashboardRows.push({
                    key: `${key}.composite.s${shards}.refusal_instructions`,
                    value: composite.outcome.instructions,
                    unit: 'instructions'
                });
                notes[`${key}.composite.s${shards}`] =
                    `refused: CapacityExceeded { resource: ${composite.outcome.resource}, limit: ${composite.outcome.limit} }`;
            } else {
                notes[`${key}.composite.s${shards}`] = `rejected: ${composite.outcome.message}`;
            }
            dashboardRows.push(
                {
                    key: `${key}.update.s${shards}.instructions`,
                    value: split.total,
                    unit: 'instructions'
                },
                {
                    key: `${key}.update.s${shards}.router_instructions`,
                    value: split.router,
                    unit: 'instructions'
                }
            );
            roundRows.push(
                {
                    key: `${key}.composite.s${shards}.rounds`,
                    value: composite.rounds,
                    unit: 'rounds'
                },
                { key: `${key}.update.s${shards}.rounds`, value: update.rounds, unit: 'rounds' }
            );
            dashboardRounds.push({ shards, rounds: update.rounds });
            widest = {
                shards,
                composite: composite.outcome,
                update: { complete: dashboard.complete, instructions: split.total }
            };

            // Rounds of the single-shard operations, for a farmer of shard 1.
            const farmer = users[0][1];
            const write = await measure(ic, () => d.router.create_loan(application(farmer, 0)));
            const loan = okOf('create_loan', write.value);
            const read = await measure(ic, () => d.router.get_loan(loan.id));
            okOf('get_loan', read.value);
            const farmerDash = await measure(ic, () =>
                d.router.get_farmer_dashboard_advanced(farmer)
            );
            okOf('farmer dashboard', farmerDash.value);
            roundRows.push(
                { key: `create_loan.s${shards}.rounds`, value: write.rounds, unit: 'rounds' },
                { key: `get_loan.s${shards}.rounds`, value: read.rounds, unit: 'rounds' },
                {
                    key: `farmer_dashboard.s${shards}.rounds`,
                    value: farmerDash.rounds,
                    unit: 'rounds'
                }
            );
            if (ops) opsRows.push(...(await operations(ic, d, users[0].slice(2), o.samples)));
            timings_ms[`measure.s${shards}`] = Math.round(performance.now() - started);
            o.log(`${shards} shards measured in ${timings_ms[`measure.s${shards}`]} ms`);
        } finally {
            await ic.tearDown();
        }
    }
    if (dashboardRounds.length >= 2)
        rows.push(flatRoundsRow('investor_dashboard.update', dashboardRounds));
    if (widest !== null) {
        const verdict = compositeBudgetRow(widest.shards, widest.composite, widest.update);
        rows.push(verdict.row);
        notes[verdict.row.key] = `${verdict.mode}: ${verdict.row.target?.text}`;
    }
    if (answered.length >= 2) {
        const [a, b] = answered.slice(-2);
        dashboardRows.push({
            key: `investor_dashboard.composite.s${MAX_COMPOSITE_FANOUT}.projected_instructions`,
            value: projectLinear(a, b, MAX_COMPOSITE_FANOUT),
            unit: 'instructions'
        });
        notes[`investor_dashboard.composite.s${MAX_COMPOSITE_FANOUT}.projected_instructions`] =
            `linear from the composite at ${a.shards} and ${b.shards} shards; the router caps composite fan-out at ${MAX_COMPOSITE_FANOUT}`;
    }
    return { rows: [...opsRows, ...dashboardRows, ...roundRows, ...rows], notes, timings_ms };
}
