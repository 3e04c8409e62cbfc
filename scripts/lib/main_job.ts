/**
 * The main job behind `npm start`: a local IC emulator with two subnets tagged `asia` and
 * `europe`, the factory and the router deployed, shards provisioned through the factory
 * (`provision.ts`), then a seeded workload (`workload.ts`) sent through the router in batches of
 * concurrent calls, with an automatic scale-out and its live migration under load and one shard
 * stopped and restarted midway; it ends with per-operation figures, the invariant checks and a
 * report (`report.ts`).
 *
 * @example
 * const report = await runMainJob({ ...DEFAULT_MAIN_JOB, loans: 300, farmers: 60, shards: 2 });
 * report.ok // every invariant check held
 */
import { readFile } from 'node:fs/promises';

import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';

import { CMC_ID, LocalIc, type Actor, type TraceEntry } from '../../emulator';
import type { _SERVICE as ShardService } from '../../src/declarations/data_shard/data_shard.did';
import { idlFactory as shardIdl } from '../../src/declarations/data_shard/data_shard.did.js';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import type { _SERVICE as RouterService } from '../../src/declarations/router/router.did';
import { idlFactory as routerIdl } from '../../src/declarations/router/router.did.js';
import { tagOf } from '../../src/shared/candid';
import { describeValue } from '../../src/shared/errors';
import { FactoryInit, type MigrationInfo } from '../../src/shared/factory_api';
import {
    afterPrefix,
    decodeLoanValue,
    encodeNewLoanArg,
    encodeUpdateLoanArgs,
    okLoanPrefix
} from '../../src/shared/loan_codec';
import { slotOf } from '../../src/shared/hash';
import { MAX_PAGE_SIZE, SLOT_COUNT } from '../../src/shared/limits';
import { RouterInit } from '../../src/shared/router_api';
import { addShard } from '../../src/shared/slot_map';
import type {
    CircuitBreakerConfig,
    Loan,
    LoanStatusName,
    LoanUpdate,
    NewLoan,
    RoutingTable
} from '../../src/shared/types';
import { artifacts } from '../build';
import { silentProgress, type Progress } from './progress';
import { awaitMigration, okOr, provisionShards, type ProvisionResult } from './provision';
import type { Check, MethodRow, MigrationRow, OperationRow, Report, ShardRow } from './report';
import { principalFor, Workload, type Batch, type Read } from './workload';

export interface MainJobOptions {
    loans: number;
    farmers: number;
    investors: number;
    /** Shards provisioned before the workload (the scale-out adds one). */
    shards: number;
    seed: number;
    /** Stop one shard midway and restart it later. */
    faults: boolean;
    /**
     * Count instructions during the whole run and add its per-method table (from the emulator's
     * message trace); otherwise only the per-operation figures are counted.
     */
    countInstructions: boolean;
    regions: string[];
    progress?: Progress;
}

/**
 * The default run, the issue's scale: 20,000 loans from 2,000 farmers and 300 investors, within 3
 * minutes on 2 cores (measured 130-150 s: the emulator executes every instruction of every canister
 * in one thread, about 160-180 loans/s with their updates and reads); see the README.
 */
export const DEFAULT_MAIN_JOB: MainJobOptions = {
    loans: 20_000,
    farmers: 2_000,
    investors: 300,
    shards: 4,
    seed: 42,
    faults: true,
    countInstructions: false,
    regions: ['asia', 'europe']
};

/** IC time per batch of concurrent calls: timers (scaling check, probes) see time pass. */
const BATCH_TIME_MS = 1_000;
/** Bound on batches: far more than any run needs (each batch creates ≥ 1% of the loans). */
const MAX_BATCHES = 100_000;
/** Bound on the rounds spent waiting for breakers to close or migrations to end. */
const MAX_SETTLE_STEPS = 2_000;
/** Calls in one batch stay under the router's 500-message input queue. */
const MAX_CALLS_PER_BATCH = 400;
/** The shard stopped midway stays stopped at least this many batches. */
const MIN_OUTAGE_BATCHES = 12;
const CYCLES = 1_000_000_000_000_000n;
/**
 * Page size of the router read-back: a composite query merges one page from every shard within
 * 5 B instructions, so pages stay well under MAX_PAGE_SIZE.
 */
const ROUTER_PAGE_LOANS = 200;

/** The router's breakers: judge the last 10 calls once 5 are in, 50%, 10 s open, 2 probes. */
export const MAIN_JOB_BREAKER: CircuitBreakerConfig = {
    failure_rate_threshold_percent: 50,
    slow_call_rate_threshold_percent: 100,
    slow_call_duration_threshold_ms: 3_600_000n,
    sliding_window_type: { CountBased: null },
    sliding_window_size: 10,
    minimum_number_of_calls: 5,
    wait_duration_in_open_ms: 10_000n,
    exponential_backoff_multiplier: 1,
    max_wait_duration_in_open_ms: 10_000n,
    permitted_calls_in_half_open: 2,
    max_wait_duration_in_half_open_ms: 60_000n
};

export type Factory = Actor<FactoryService>;
export type Router = Actor<RouterService>;
export type Shard = Actor<ShardService>;

/** The deployed system. */
export interface Suite {
    ic: LocalIc;
    admin: Principal;
    /** The application that writes loans through the router. */
    app: Principal;
    factory: Factory;
    factoryId: Principal;
    router: Router;
    routerId: Principal;
    provision: ProvisionResult;
}

function encode(types: IDL.Type[], values: unknown[]): Uint8Array {
    return new Uint8Array(IDL.encode(types, values));
}

const OK_LOAN_PREFIX = okLoanPrefix();

/**
 * `{ Ok: loan }` from a `Result<Loan>` reply holding `Ok`, decoded by hand (`IDL.decode` costs the
 * job about a millisecond per reply); undefined for anything else (errors go to `IDL.decode`).
 */
function decodeOkLoanReply(reply: Uint8Array): { Ok: Loan } | undefined {
    const bytes = afterPrefix(reply, OK_LOAN_PREFIX);
    if (bytes === undefined) return undefined;
    try {
        return { Ok: decodeLoanValue(bytes) };
    } catch {
        return undefined;
    }
}

/** What the job keeps of a read whose answer it only counts: the reply was `Ok`. */
export const READ_OK = { Ok: 'Ok (not decoded: the job counts this read)' } as const;

/**
 * The bytes every `Ok` reply of a `Result<T>` method starts with: the header, type table and
 * argument types (fixed by the types), then the `Ok` tag. Found by encoding two different `Err`
 * values: they agree up to and including the `Err` tag.
 */
function okHead(retTypes: IDL.Type[]): Uint8Array {
    const result = retTypes[0] as IDL.VariantClass;
    const tags = result._fields.map(([name]) => name);
    if (retTypes.length !== 1 || tags.length !== 2 || tags[0] !== 'Ok' || tags[1] !== 'Err') {
        throw new Error(`okHead: expected variant { Ok; Err }, got ${result.display()}`);
    }
    const a = new Uint8Array(IDL.encode(retTypes, [{ Err: { NotAuthorized: null } }]));
    const b = new Uint8Array(IDL.encode(retTypes, [{ Err: { Busy: { reason: '' } } }]));
    let common = 0;
    while (common < a.length && a[common] === b[common]) common++;
    if (a[common - 1] !== 1) throw new Error('okHead: the Err tag is not where expected');
    const head = a.slice(0, common);
    head[common - 1] = 0;
    return head;
}

/**
 * A reply decoder for reads the job only counts (dashboards, analytics): `READ_OK` when the reply
 * is the method's `Ok` arm, undefined otherwise so that errors are decoded by `IDL.decode`. A
 * farmer's dashboard carries up to thousands of loans, which `IDL.decode` takes milliseconds of
 * the job's CPU to build and the job would throw away.
 */
export function okOutcome(
    method: keyof RouterService
): (reply: Uint8Array) => typeof READ_OK | undefined {
    const func = routerIdl({ IDL })._fields.find(([name]) => name === method)?.[1] as
        IDL.FuncClass | undefined;
    if (func === undefined) throw new Error(`okOutcome: the router has no method ${method}`);
    const head = okHead(func.retTypes);
    return (reply) => (afterPrefix(reply, head) === undefined ? undefined : READ_OK);
}

/** A bigint-safe deep equality of Candid values. */
function same(a: unknown, b: unknown): boolean {
    return describeValue(a) === describeValue(b);
}

/** The first key of a Candid error variant, e.g. `ShardUnavailable`, or the thrown error's name. */
function errorKind(e: unknown): string {
    if (e instanceof Error) return `reject:${(e as { reject_code?: number }).reject_code ?? '?'}`;
    if (typeof e === 'object' && e !== null) return Object.keys(e)[0] ?? 'unknown';
    return 'unknown';
}

/** Errors after which the same write may be sent again: it was not applied. */
const RETRIABLE = new Set(['ShardUnavailable', 'CallFailed', 'ReadOnly', 'Busy', 'WrongShard']);
function retriable(kind: string): boolean {
    return RETRIABLE.has(kind) || kind.startsWith('reject:');
}

/**
 * Starts the emulator's canisters: factory and router on the `asia` subnet, the app registered
 * as a router writer, and `shards` shards provisioned through the factory (2 per region with the
 * default regions).
 */
export async function deploySuite(
    ic: LocalIc,
    o: {
        shards: number;
        regions: string[];
        seed: number;
        progress?: Progress;
        /** Key-backed principals (e.g. `--serve`'s operator) made admins and router writers. */
        operators?: Principal[];
        /** The emulator has a CMC (`emulatorOptions` turns it on): place shards by region. */
        cmc?: boolean;
    }
): Promise<Suite> {
    const progress = o.progress ?? silentProgress();
    const admin = principalFor('admin', 0, o.seed);
    const app = principalFor('app', 0, o.seed);
    const operators = o.operators ?? [];
    const subnets = await ic.getApplicationSubnets();
    const [subnet] = subnets;
    const [factoryWasm, routerWasm, shardWasm] = await Promise.all(
        ['factory', 'router', 'data_shard'].map(
            async (name) => new Uint8Array(await readFile(artifacts(name).wasmGz))
        )
    );
    progress.phase('deploy', 2);
    const { actor: factory, canisterId: factoryId } = await ic.setupCanister<FactoryService>({
        idlFactory: factoryIdl,
        wasm: factoryWasm,
        arg: encode([IDL.Opt(FactoryInit)], [[{ admins: [admin, ...operators] }]]),
        sender: admin,
        controllers: [admin],
        cycles: CYCLES,
        targetSubnetId: subnet.id
    });
    factory.setPrincipal(admin);
    progress.update({ done: 1 });
    const routerId = await ic.createCanister({
        sender: admin,
        controllers: [admin],
        cycles: CYCLES,
        targetSubnetId: subnet.id
    });
    await ic.installCode({
        canisterId: routerId,
        wasm: routerWasm,
        arg: encode(
            [IDL.Opt(RouterInit)],
            [
                [
                    {
                        factory: factoryId,
                        admins: [admin, ...operators],
                        writers: operators,
                        health_probe_interval_s: [5],
                        cache_ttl_ms: [60_000n],
                        breaker_config: [MAIN_JOB_BREAKER],
                        random_seed: [o.seed >>> 0]
                    }
                ]
            ]
        ),
        sender: admin
    });
    const router = ic.createActor<RouterService>(routerIdl, routerId);
    router.setPrincipal(admin);
    okOr('add_writer', await router.add_writer(app));
    progress.update({ done: 2 });
    // Each region's shards go on its own subnet, created through the CMC (as on mainnet).
    if (o.cmc ?? true) {
        okOr('set_cmc_canister', await factory.set_cmc_canister(CMC_ID));
        for (const s of subnets) {
            if (o.regions.includes(s.region)) {
                okOr('set_region_subnet', await factory.set_region_subnet(s.region, s.id));
            }
        }
    }
    let phase = '';
    const provision = await provisionShards({
        factory,
        routerId,
        shardWasm,
        shards: o.shards,
        regions: o.regions,
        settle: async () => {
            await ic.advanceTime(500);
            await ic.tick(5);
        },
        onProgress: (p) => {
            if (p.phase !== phase) progress.phase(p.phase, p.total);
            phase = p.phase;
            progress.update({ done: p.done, total: p.total });
        }
    });
    return { ic, admin, app, factory, factoryId, router, routerId, provision };
}

/**
 * The `max_loans_per_shard` that makes the factory scale out once during the run without the new
 * shard reaching its own limit (a shard refuses loans beyond the limit it was created with): the
 * new shard's slots are known in advance (`addShard` takes them by slot count), so its final loan
 * count is too. Returns the limit and the share of creates after which the trigger (80%) fires.
 */
export function scaleOutLimit(
    creates: NewLoan[],
    table: RoutingTable,
    newShardId: number
): { limit: number; trigger_at: number | null } {
    const owners = new Uint32Array(SLOT_COUNT);
    for (const r of table.ranges) owners.fill(r.shard_id, r.start, r.end + 1);
    const planned = addShard({ epoch: table.epoch, owners }, newShardId);
    if (!planned.ok) throw new Error(`cannot plan a scale-out: ${planned.error.kind}`);
    const slots = creates.map((c) => slotOf(c.borrower.toUint8Array()));
    const newShardLoans = slots.filter((s) => planned.value.map.owners[s] === newShardId).length;
    // 15% headroom (and at least 10 loans) over the new shard's final load.
    const limit = Math.max(10, Math.ceil(newShardLoans * 1.15) + 10);
    const threshold = Math.floor((limit * 80) / 100);
    const perShard = new Map<number, number>();
    for (let i = 0; i < slots.length; i++) {
        const shard = owners[slots[i]];
        const count = (perShard.get(shard) ?? 0) + 1;
        perShard.set(shard, count);
        if (count > threshold) return { limit, trigger_at: (i + 1) / slots.length };
    }
    return { limit, trigger_at: null };
}

interface Tracker {
    migrations: Map<
        string,
        {
            batch0: number;
            round0: number;
            wall0: number;
            end?: number;
            rounds?: number;
            wall?: number;
        }
    >;
    breakerEvents: { shard_id: number; state: string; at_batch: number }[];
    lastStates: Map<number, string>;
    methods: Map<string, { count: number; sum: bigint; max: bigint }>;
    names: Map<string, string>;
}

/** Runs the whole job on a fresh emulator and returns the report. */
export async function runMainJob(options: MainJobOptions): Promise<Report> {
    const progress = options.progress ?? silentProgress();
    const t0 = Date.now();
    const ic = await LocalIc.create(emulatorOptions(options));
    try {
        const suite = await deploySuite(ic, { ...options, progress });
        return await runOnSuite(suite, options, { started: t0, deployed: Date.now() });
    } finally {
        progress.stop();
        await ic.tearDown();
    }
}

/**
 * The emulator the job needs: one subnet per region, a trace large enough for one batch, and
 * instruction counting only when asked for (`countInstructions`, default on for the benches that
 * share this set-up): the counting build runs about twice as slow, so the main job runs its
 * workload uncounted and switches counting on for the per-operation figures
 * (`LocalIc.setInstructionCounting`).
 */
export function emulatorOptions(
    o: Pick<MainJobOptions, 'regions' | 'seed'> & { countInstructions?: boolean }
): {
    subnets: { region: string }[];
    cmc: true;
    countInstructions: boolean;
    seed: number;
    traceCapacity: number;
} {
    return {
        subnets: o.regions.map((region) => ({ region })),
        cmc: true,
        countInstructions: o.countInstructions ?? true,
        seed: o.seed,
        traceCapacity: 100_000
    };
}

/** The workload, the per-operation figures and the checks on a deployed suite; the report. */
export async function runOnSuite(
    suite: Suite,
    options: MainJobOptions,
    time: { started: number; deployed: number }
): Promise<Report> {
    const progress = options.progress ?? silentProgress();
    const run = await runWorkload(suite, options, progress);
    const tWorkload = Date.now();
    progress.phase('checks', 1);
    // The figures per operation are instruction counts: count from here on.
    suite.ic.setInstructionCounting(true);
    const operations = await measureOperations(suite, run.workload);
    suite.ic.setInstructionCounting(options.countInstructions);
    const checks = [...run.checks, ...(await invariantChecks(suite, run.workload))];
    progress.stop();
    const tEnd = Date.now();
    return await buildReport(suite, options, run, operations, checks, {
        total: tEnd - time.started,
        deploy: time.deployed - time.started,
        workload: tWorkload - time.deployed,
        checks: tEnd - tWorkload
    });
}

interface WorkloadRun {
    workload: Workload;
    tracker: Tracker;
    batches: number;
    updates: number;
    reads: number;
    retried: number;
    errors: Record<string, number>;
    stoppedShard: number | null;
    maxLoans: number;
    loansPerS: number;
    /** Loans the workload wrote (the per-operation figures add one more). */
    acknowledged: number;
    checks: Check[];
}

/** Batch sizes: about 100 batches of creates, updates ≈ 1.3 per create, reads ≈ 0.2. */
function batchSizes(loans: number): { creates: number; updates: number; reads: number } {
    const creates = Math.min(150, Math.max(10, Math.ceil(loans / 100)));
    const updates = Math.ceil(creates * 1.3);
    const reads = Math.max(4, Math.ceil(creates * 0.2));
    const scale = Math.min(1, MAX_CALLS_PER_BATCH / (creates + updates + reads));
    return {
        creates: Math.max(1, Math.floor(creates * scale)),
        updates: Math.max(1, Math.floor(updates * scale)),
        reads: Math.max(1, Math.floor(reads * scale))
    };
}

/** The role of a canister in the trace: the job deploys nothing else, so the rest are shards. */
function roleOf(suite: Suite, id: string): string {
    if (id === suite.factoryId.toText()) return 'factory';
    if (id === suite.routerId.toText()) return 'router';
    if (id === 'aaaaa-aa') return 'management';
    return 'shard';
}

function recordTrace(suite: Suite, tracker: Tracker, collect: boolean): void {
    if (collect) {
        for (const e of suite.ic.getMessageTrace()) {
            let name = tracker.names.get(e.canister);
            if (name === undefined) {
                name = roleOf(suite, e.canister);
                tracker.names.set(e.canister, name);
            }
            const key = `${name}\u0000${e.method}\u0000${e.kind}`;
            const row = tracker.methods.get(key) ?? { count: 0, sum: 0n, max: 0n };
            row.count += 1;
            row.sum += e.instructions;
            if (e.instructions > row.max) row.max = e.instructions;
            tracker.methods.set(key, row);
        }
    }
    suite.ic.clearMessageTrace();
}

/** The router's methods as a deferred actor: each submits now and returns a function to await. */
type DeferredRouter = {
    [K in keyof RouterService]: (
        ...a: Parameters<RouterService[K]>
    ) => Promise<() => ReturnType<RouterService[K]>>;
};

/** Sends one batch concurrently (all calls enter the same round) and applies the answers. */
async function sendBatch(
    r: DeferredRouter,
    workload: Workload,
    batch: Batch,
    stats: {
        errors: Record<string, number>;
        retried: number;
        staleReads: number;
        failedReads: number;
        fatal: string[];
    }
): Promise<void> {
    const count = (kind: string): void => {
        stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
    };
    const settle = async <T>(submitted: Promise<() => Promise<T>>): Promise<T | Error> => {
        try {
            return await (
                await submitted
            )();
        } catch (e) {
            return e instanceof Error ? e : new Error(String(e));
        }
    };
    // Submit everything first, then wait: the calls execute in the same rounds.
    const creates = batch.creates.map((a) => r.create_loan(a));
    const updates = batch.updates.map((u) => r.update_loan(u.id, u.change));
    const reads = batch.reads.map((read) => sendRead(r, read));
    const [createResults, updateResults, readResults] = await Promise.all([
        Promise.all(creates.map(settle)),
        Promise.all(updates.map(settle)),
        Promise.all(reads.map(settle))
    ]);
    createResults.forEach((result, i) => {
        if (!(result instanceof Error) && 'Ok' in result) {
            workload.recordCreated(result.Ok as Loan);
            return;
        }
        const kind = errorKind(result instanceof Error ? result : result.Err);
        count(kind);
        if (retriable(kind)) {
            stats.retried += 1;
            workload.recordCreateFailed(batch.creates[i]);
        } else {
            stats.fatal.push(
                `create_loan: ${describeValue(result instanceof Error ? result.message : result.Err)}`
            );
        }
    });
    updateResults.forEach((result, i) => {
        const { id } = batch.updates[i];
        if (!(result instanceof Error) && 'Ok' in result) {
            workload.recordUpdate(id, result.Ok as Loan, true);
            return;
        }
        const kind = errorKind(result instanceof Error ? result : result.Err);
        count(kind);
        if (retriable(kind)) stats.retried += 1;
        else {
            stats.fatal.push(
                `update_loan ${id}: ${describeValue(result instanceof Error ? result.message : result.Err)}`
            );
        }
        workload.recordUpdate(id, null, retriable(kind));
    });
    const updated = new Set(batch.updates.map((u) => u.id));
    readResults.forEach((result, i) => {
        const read = batch.reads[i];
        if (result instanceof Error || 'Err' in (result as object)) {
            const kind = errorKind(
                result instanceof Error ? result : (result as { Err: unknown }).Err
            );
            count(`read:${kind}`);
            if (!retriable(kind)) stats.failedReads += 1;
            return;
        }
        if (read.kind === 'loan' && !updated.has(read.id)) {
            const expected = workload.acknowledged.get(read.id);
            if (!same((result as { Ok: Loan }).Ok, expected)) stats.staleReads += 1;
        }
    });
}

function sendRead(r: DeferredRouter, read: Read): Promise<() => Promise<unknown>> {
    switch (read.kind) {
        case 'loan':
            return r.get_loan(read.id);
        case 'farmer_dashboard':
            return r.get_farmer_dashboard_advanced(read.farmer);
        case 'investor_dashboard':
            return r.get_investor_dashboard_advanced(read.investor);
        case 'system_analytics':
            return r.get_system_analytics();
    }
}

async function breakerStates(suite: Suite): Promise<Map<number, string>> {
    const stats = okOr('get_load_balancer_stats', await suite.router.get_load_balancer_stats());
    return new Map(stats.breakers.map((b) => [b.shard_id, tagOf(b.state) as string]));
}

function statesText(states: Map<number, string>): string {
    return [...states.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([id, s]) => `${id}:${s === 'HalfOpen' ? 'H' : s[0]}`)
        .join(' ');
}

/** Polls the factory and the router after a batch: migrations, breaker transitions. */
async function observe(
    suite: Suite,
    tracker: Tracker,
    batch: number
): Promise<{
    states: Map<number, string>;
    inFlight: string | undefined;
    shards: number;
    scaleOuts: number;
}> {
    const metrics = await suite.factory.get_scalability_metrics();
    const inFlight = metrics.migration_in_flight[0];
    const round = suite.ic.getRound();
    for (const [id, m] of tracker.migrations) {
        if (m.end === undefined && id !== inFlight) {
            m.end = batch;
            m.rounds = round - m.round0;
            m.wall = Date.now() - m.wall0;
        }
    }
    if (inFlight !== undefined && !tracker.migrations.has(inFlight)) {
        tracker.migrations.set(inFlight, { batch0: batch, round0: round, wall0: Date.now() });
    }
    const states = await breakerStates(suite);
    for (const [id, state] of states) {
        if (tracker.lastStates.get(id) !== state) {
            if (tracker.lastStates.has(id))
                tracker.breakerEvents.push({ shard_id: id, state, at_batch: batch });
            tracker.lastStates.set(id, state);
        }
    }
    return {
        states,
        inFlight,
        shards: metrics.total_shards,
        scaleOuts: Number(metrics.scale_outs)
    };
}

/**
 * Sets `max_loans_per_shard` (see `scaleOutLimit`) and a 5 s scaling check, one breach, a 1 h
 * cool-down and one shard more than today: exactly one automatic scale-out during the run.
 */
async function configureScaleOut(
    suite: Suite,
    o: MainJobOptions,
    progress: Progress
): Promise<{ plan: { limit: number; trigger_at: number | null }; table: RoutingTable }> {
    const { ic, factory } = suite;
    // The scale-out limit is planned over the same applications the run will send.
    const preview = new Workload({
        loans: o.loans,
        farmers: o.farmers,
        investors: o.investors,
        seed: o.seed,
        now_ns: BigInt(await ic.getTime()) * 1_000_000n
    });
    const table = (await factory.get_routing_table()) as RoutingTable;
    const nextId = Math.max(...table.shards.map((s) => s.shard_id)) + 1;
    const plan = scaleOutLimit(preview.nextBatch(o.loans, 0, 0).creates, table, nextId);
    const config = await factory.get_scalability_config();
    okOr(
        'update_scalability_config',
        await factory.update_scalability_config({
            ...config,
            max_loans_per_shard: BigInt(plan.limit),
            auto_scaling_enabled: true,
            scaling_check_interval_ms: 5_000n,
            consecutive_breaches_required: 1,
            scale_out_cooldown_ms: 3_600_000n,
            max_shards: table.shards.length + 1
        })
    );
    progress.log(
        `max_loans_per_shard = ${plan.limit}: the factory should scale out after ` +
            (plan.trigger_at === null
                ? 'never (too few loans per shard)'
                : `${Math.round(plan.trigger_at * 100)}% of the loans`)
    );
    return { plan, table };
}

/** After the workload: lets a migration still running end and every breaker close, time passing. */
async function settle(
    suite: Suite,
    tracker: Tracker,
    o: MainJobOptions,
    batch: number,
    progress: Progress
): Promise<void> {
    const { ic, factory } = suite;
    progress.phase('settle', 1);
    const inFlight = (await factory.get_scalability_metrics()).migration_in_flight[0];
    if (inFlight !== undefined) {
        await awaitMigration(
            factory,
            inFlight,
            async () => {
                await ic.advanceTime(BATCH_TIME_MS);
                await ic.tick(2);
                recordTrace(suite, tracker, o.countInstructions);
            },
            MAX_SETTLE_STEPS
        );
    }
    let states = (await observe(suite, tracker, batch)).states;
    for (
        let step = 0;
        step < MAX_SETTLE_STEPS && [...states.values()].some((s) => s !== 'Closed');
        step++
    ) {
        await ic.advanceTime(BATCH_TIME_MS);
        await ic.tick(2);
        recordTrace(suite, tracker, o.countInstructions);
        states = (await observe(suite, tracker, batch)).states;
    }
}

async function runWorkload(
    suite: Suite,
    o: MainJobOptions,
    progress: Progress
): Promise<WorkloadRun> {
    const { ic } = suite;
    const workload = new Workload({
        loans: o.loans,
        farmers: o.farmers,
        investors: o.investors,
        seed: o.seed,
        now_ns: BigInt(await ic.getTime()) * 1_000_000n
    });
    const { plan, table } = await configureScaleOut(suite, o, progress);
    const tracker: Tracker = {
        migrations: new Map(),
        breakerEvents: [],
        lastStates: new Map(),
        methods: new Map(),
        names: new Map()
    };
    const deferred = ic.createDeferredActor<RouterService>(
        routerIdl,
        suite.routerId,
        {
            create_loan: decodeOkLoanReply,
            update_loan: decodeOkLoanReply,
            get_loan: decodeOkLoanReply,
            get_farmer_dashboard_advanced: okOutcome('get_farmer_dashboard_advanced'),
            get_investor_dashboard_advanced: okOutcome('get_investor_dashboard_advanced'),
            get_system_analytics: okOutcome('get_system_analytics')
        },
        {
            create_loan: ([application]) => encodeNewLoanArg(application as NewLoan),
            update_loan: ([id, change]) => encodeUpdateLoanArgs(id as bigint, change as LoanUpdate)
        }
    );
    deferred.setPrincipal(suite.app);
    const sizes = batchSizes(o.loans);
    const stats = {
        errors: {} as Record<string, number>,
        retried: 0,
        staleReads: 0,
        failedReads: 0,
        fatal: [] as string[]
    };
    let updates = 0;
    let reads = 0;
    let batch = 0;
    let stopped: { shard_id: number; canister: Principal; at: number } | null = null;
    let restarted = false;
    let victim: number | null = null;
    const t0 = Date.now();
    progress.phase('workload', o.loans);
    recordTrace(suite, tracker, false);
    for (; batch < MAX_BATCHES && !workload.done; batch++) {
        const next = workload.nextBatch(sizes.creates, sizes.updates, sizes.reads);
        updates += next.updates.length;
        reads += next.reads.length;
        await sendBatch(deferred as unknown as DeferredRouter, workload, next, stats);
        recordTrace(suite, tracker, o.countInstructions);
        await ic.advanceTime(BATCH_TIME_MS);
        const seen = await observe(suite, tracker, batch);
        const share = workload.acknowledged.size / o.loans;
        // The outage prefers to stay clear of the scale-out's migration: before it when the
        // scale-out comes late, after it when it comes early. A migration still running at half
        // the workload (cross-subnet steps are slow) gets the outage in the middle of it: the
        // factory's migration retries its failed steps until the shard is back.
        const scaleOutDone = seen.scaleOuts > 0 && seen.inFlight === undefined;
        const clearOfMigration =
            seen.inFlight === undefined &&
            (plan.trigger_at === null || plan.trigger_at >= 0.6 || scaleOutDone);
        const faultNow =
            o.faults &&
            stopped === null &&
            !restarted &&
            share >= 0.25 &&
            (clearOfMigration || share >= 0.5);
        if (faultNow) {
            const target = table.shards[table.shards.length > 1 ? 1 : 0];
            victim = target.shard_id;
            await ic.stopCanister({ canisterId: target.canister_id, sender: suite.admin });
            stopped = { shard_id: target.shard_id, canister: target.canister_id, at: batch };
            progress.log(
                `batch ${batch}: shard ${target.shard_id} (${target.canister_id.toText()}) stopped`
            );
        } else if (
            stopped !== null &&
            batch - stopped.at >= MIN_OUTAGE_BATCHES &&
            (seen.states.get(stopped.shard_id) === 'Open' ||
                batch - stopped.at >= 4 * MIN_OUTAGE_BATCHES)
        ) {
            await ic.startCanister({ canisterId: stopped.canister, sender: suite.admin });
            progress.log(
                `batch ${batch}: shard ${stopped.shard_id} restarted (breaker ${seen.states.get(stopped.shard_id)})`
            );
            stopped = null;
            restarted = true;
        }
        const elapsed = (Date.now() - t0) / 1000;
        progress.update({
            done: workload.acknowledged.size,
            loansPerS: elapsed > 0 ? workload.acknowledged.size / elapsed : 0,
            shards: seen.shards,
            breakers: statesText(seen.states)
        });
    }
    if (stopped !== null) {
        await ic.startCanister({ canisterId: stopped.canister, sender: suite.admin });
    }
    const loansPerS = workload.acknowledged.size / Math.max(0.001, (Date.now() - t0) / 1000);
    const acknowledged = workload.acknowledged.size;
    await settle(suite, tracker, o, batch, progress);
    const checks: Check[] = [];
    checks.push({
        name: 'every write acknowledged',
        ok: workload.done && stats.fatal.length === 0 && workload.abandoned.length === 0,
        detail:
            `${workload.acknowledged.size}/${o.loans} loans, ${stats.fatal.length} writes refused for good` +
            (stats.fatal.length > 0 ? ` (first: ${stats.fatal[0]})` : '') +
            `, ${workload.abandoned.length} updates given up, ${stats.retried} retried after a retriable error`
    });
    checks.push({
        name: 'reads during the run match the acknowledged content',
        ok: stats.staleReads === 0 && stats.failedReads === 0,
        detail:
            `${stats.staleReads} loans read back different from their last acknowledged write, ` +
            `${stats.failedReads} reads failed with a non-retriable error`
    });
    return {
        workload,
        tracker,
        batches: batch,
        updates,
        reads,
        retried: stats.retried,
        errors: stats.errors,
        stoppedShard: victim,
        maxLoans: plan.limit,
        loansPerS,
        acknowledged,
        checks
    };
}

/** Runs `fn` alone and reports its rounds and the instructions of every message it caused. */
async function measure(
    ic: LocalIc,
    operation: string,
    fn: () => Promise<unknown>
): Promise<OperationRow> {
    // Timers already due fire in these rounds, not during the measured call (no time passes).
    await ic.tick(2);
    ic.clearMessageTrace();
    const round = ic.getRound();
    await fn();
    const rounds = ic.getRound() - round;
    const entries = ic.getMessageTrace().filter((e: TraceEntry) => e.kind !== 'timer');
    ic.clearMessageTrace();
    const instructions = entries.reduce((sum, e) => sum + e.instructions, 0n);
    return { operation, rounds, instructions: Number(instructions), messages: entries.length };
}

/**
 * A new farmer whose slot is on a shard in the router's subnet, so single-shard figures are not
 * mixed with cross-subnet latency (2 rounds each way; the fan-outs show that part).
 */
async function sameSubnetFarmer(
    suite: Suite,
    table: RoutingTable,
    seed: number
): Promise<Principal> {
    const { ic } = suite;
    const routerSubnet = (await ic.getCanisterSubnetId(suite.routerId))?.toText();
    const local = new Set<number>();
    for (const s of table.shards) {
        if ((await ic.getCanisterSubnetId(s.canister_id))?.toText() === routerSubnet) {
            local.add(s.shard_id);
        }
    }
    const owners = new Uint32Array(SLOT_COUNT);
    for (const r of table.ranges) owners.fill(r.shard_id, r.start, r.end + 1);
    for (let n = 0; n < 10_000; n++) {
        const farmer = principalFor('calibration', n, seed);
        if (local.size === 0 || local.has(owners[slotOf(farmer.toUint8Array())])) return farmer;
    }
    throw new Error("no farmer found on the router's subnet");
}

/**
 * Instructions and rounds of each operation, one call at a time after the workload (a new
 * farmer's loan, so the model stays exact): writes, reads, cache miss and hit, fan-outs.
 */
async function measureOperations(suite: Suite, workload: Workload): Promise<OperationRow[]> {
    const { ic } = suite;
    const router = ic.createActor<RouterService>(routerIdl, suite.routerId);
    router.setPrincipal(suite.app);
    const table = (await router.get_routing_table()) as RoutingTable;
    const shards = table.shards.length;
    const farmer = await sameSubnetFarmer(suite, table, workload.options.seed);
    // An investor nobody read yet: the first dashboard is a cache miss on every shard.
    const investor = principalFor('calibration-investor', 0, workload.options.seed);
    const rows: OperationRow[] = [];
    let loan: Loan | undefined;
    rows.push(
        await measure(ic, 'create_loan (router → shard)', async () => {
            loan = okOr(
                'create_loan',
                await router.create_loan({
                    borrower: farmer,
                    nft_id: 1n,
                    collateral_value_btc: 50_000n,
                    amount_requested: 100_000n,
                    apr: 800n,
                    due_date: []
                })
            ) as Loan;
        })
    );
    workload.acknowledged.set(loan!.id, loan!);
    rows.push(
        await measure(ic, 'update_loan (router → shard)', async () => {
            loan = okOr(
                'update_loan',
                await router.update_loan(loan!.id, { SubmitForApproval: null })
            ) as Loan;
        })
    );
    workload.acknowledged.set(loan!.id, loan!);
    rows.push(
        await measure(ic, 'get_loan (router → shard)', async () =>
            okOr('get_loan', await router.get_loan(loan!.id))
        )
    );
    for (const label of ['miss', 'hit']) {
        rows.push(
            await measure(ic, `farmer dashboard, cache ${label} (update)`, async () =>
                okOr('farmer dashboard', await router.get_farmer_dashboard_advanced(farmer))
            )
        );
    }
    rows.push(
        await measure(ic, 'farmer dashboard (composite query)', async () =>
            okOr('farmer dashboard', await router.query_farmer_dashboard(farmer))
        )
    );
    for (const label of ['miss', 'hit']) {
        rows.push(
            await measure(
                ic,
                `investor dashboard, ${shards} shards, cache ${label} (update)`,
                async () =>
                    okOr(
                        'investor dashboard',
                        await router.get_investor_dashboard_advanced(investor)
                    )
            )
        );
    }
    rows.push(
        await measure(ic, `investor dashboard, ${shards} shards (composite query)`, async () =>
            okOr('investor dashboard', await router.query_investor_dashboard(investor))
        )
    );
    rows.push(
        await measure(ic, `system analytics, ${shards} shards (update)`, async () =>
            okOr('system analytics', await router.get_system_analytics())
        )
    );
    return rows;
}

/** Slot coverage of a table: how many slots are owned 0 times and more than once. */
export function coverage(table: RoutingTable): { gaps: number; overlaps: number; bad: number } {
    const counts = new Uint8Array(SLOT_COUNT);
    let bad = 0;
    const known = new Set(table.shards.map((s) => s.shard_id));
    for (const r of table.ranges) {
        if (r.start > r.end || r.end >= SLOT_COUNT || !known.has(r.shard_id)) {
            bad += 1;
            continue;
        }
        for (let slot = r.start; slot <= r.end; slot++)
            counts[slot] = Math.min(2, counts[slot] + 1);
    }
    let gaps = 0;
    let overlaps = 0;
    for (const c of counts) {
        if (c === 0) gaps += 1;
        if (c > 1) overlaps += 1;
    }
    return { gaps, overlaps, bad };
}

function slotCount(table: RoutingTable, shard_id: number): number {
    return table.ranges
        .filter((r) => r.shard_id === shard_id)
        .reduce((sum, r) => sum + (r.end - r.start + 1), 0);
}

const STATUSES: LoanStatusName[] = [
    'PendingApplication',
    'PendingApproval',
    'Approved',
    'Active',
    'Repaid',
    'Defaulted'
];

/** Every loan a shard holds, read through its status index in pages (as the router). */
async function shardLoans(shard: Shard, loanCount: number): Promise<Loan[]> {
    const loans: Loan[] = [];
    const maxPages = Math.ceil(loanCount / MAX_PAGE_SIZE) + 2;
    for (const status of STATUSES) {
        let cursor: [] | [bigint] = [];
        for (let page = 0; page < maxPages; page++) {
            const got = okOr(
                `get_loans_by_status ${status}`,
                await shard.get_loans_by_status({ [status]: null } as never, cursor, [
                    MAX_PAGE_SIZE
                ])
            ) as { loans: Loan[]; next_cursor: [] | [bigint] };
            loans.push(...got.loans);
            if (got.next_cursor.length === 0) break;
            cursor = got.next_cursor;
        }
    }
    return loans;
}

/** The invariant checks over the final state. */
async function invariantChecks(suite: Suite, workload: Workload): Promise<Check[]> {
    const { ic } = suite;
    const checks: Check[] = [];
    const factoryTable = (await suite.factory.get_routing_table()) as RoutingTable;
    const routerTable = (await suite.router.get_routing_table()) as RoutingTable;
    const cover = coverage(factoryTable);
    // Slot ownership as the shards themselves see it.
    let shardTotal = 0;
    const ownership: string[] = [];
    const found = new Map<bigint, { loan: Loan; shard: number }>();
    let duplicates = 0;
    let misplaced = 0;
    for (const address of factoryTable.shards) {
        const shard = ic.createActor<ShardService>(shardIdl, address.canister_id);
        shard.setPrincipal(suite.routerId);
        const stats = okOr('get_shard_stats', await shard.get_shard_stats());
        shardTotal += Number(stats.loan_count);
        const expected = slotCount(factoryTable, address.shard_id);
        if (stats.owned_slots !== expected) {
            ownership.push(
                `shard ${address.shard_id} owns ${stats.owned_slots}, table says ${expected}`
            );
        }
        for (const loan of await shardLoans(shard, Number(stats.loan_count))) {
            if (found.has(loan.id)) duplicates += 1;
            found.set(loan.id, { loan, shard: address.shard_id });
            const slot = slotOf(loan.borrower.toUint8Array());
            const owner = factoryTable.ranges.find((r) => r.start <= slot && slot <= r.end);
            if (owner?.shard_id !== address.shard_id || Number(loan.id >> 48n) !== slot)
                misplaced += 1;
        }
    }
    checks.push({
        name: 'every slot owned exactly once',
        ok:
            cover.gaps === 0 &&
            cover.overlaps === 0 &&
            cover.bad === 0 &&
            ownership.length === 0 &&
            same(factoryTable, routerTable),
        detail:
            `${SLOT_COUNT} slots: ${cover.gaps} unowned, ${cover.overlaps} owned twice, ${cover.bad} bad ranges; ` +
            `shards agree with the table${ownership.length > 0 ? ` except ${ownership.join('; ')}` : ''}; ` +
            `router table ${same(factoryTable, routerTable) ? 'equals' : 'DIFFERS from'} the factory's (epoch ${factoryTable.epoch})`
    });
    let different = 0;
    let missing = 0;
    for (const [id, loan] of workload.acknowledged) {
        const got = found.get(id);
        if (got === undefined) missing += 1;
        else if (!same(got.loan, loan)) different += 1;
    }
    const unexpected = [...found.keys()].filter((id) => !workload.acknowledged.has(id)).length;
    checks.push({
        name: 'every acknowledged loan read back with identical content',
        ok:
            missing === 0 &&
            different === 0 &&
            unexpected === 0 &&
            duplicates === 0 &&
            misplaced === 0,
        detail:
            `${workload.acknowledged.size} acknowledged, ${found.size} stored: ${missing} missing, ` +
            `${different} different, ${unexpected} never acknowledged, ${duplicates} duplicated, ` +
            `${misplaced} on a shard not owning their slot`
    });
    // Through the router: the busiest farmers' loans, paged and merged across shards.
    const byFarmer = new Map<string, Loan[]>();
    for (const loan of workload.acknowledged.values()) {
        const key = loan.borrower.toText();
        const loans = byFarmer.get(key);
        if (loans) loans.push(loan);
        else byFarmer.set(key, [loan]);
    }
    const busiest = [...byFarmer.entries()].sort((a, b) => b[1].length - a[1].length).slice(0, 20);
    const router = ic.createActor<RouterService>(routerIdl, suite.routerId);
    router.setPrincipal(suite.app);
    let pageProblems = 0;
    for (const [, loans] of busiest) {
        const ids: bigint[] = [];
        let cursor: [] | [string] = [];
        const maxPages = Math.ceil(loans.length / ROUTER_PAGE_LOANS) + 2;
        for (let page = 0; page < maxPages; page++) {
            const got: { loans: Loan[]; complete: boolean; next_cursor: [] | [string] } = okOr(
                'get_aggregated_user_loans',
                await router.get_aggregated_user_loans(loans[0].borrower, [
                    { cursor, limit: [ROUTER_PAGE_LOANS] }
                ])
            );
            if (!got.complete) pageProblems += 1;
            for (const l of got.loans) {
                ids.push(l.id);
                if (!same(l, workload.acknowledged.get(l.id))) pageProblems += 1;
            }
            if (got.next_cursor.length === 0) break;
            cursor = got.next_cursor;
        }
        if (ids.length !== loans.length || new Set(ids).size !== ids.length) pageProblems += 1;
    }
    checks.push({
        name: "the busiest farmers' loans through the router",
        ok: pageProblems === 0,
        detail: `${busiest.length} farmers (${busiest.reduce((s, [, l]) => s + l.length, 0)} loans) paged through get_aggregated_user_loans: ${pageProblems} problems`
    });
    const analytics = okOr('get_system_analytics', await router.get_system_analytics());
    const byStatus = new Map<string, number>();
    for (const loan of workload.acknowledged.values()) {
        const s = tagOf(loan.status) as string;
        byStatus.set(s, (byStatus.get(s) ?? 0) + 1);
    }
    const statusOk = analytics.by_status.every(
        (c) => Number(c.count) === (byStatus.get(tagOf(c.status) as string) ?? 0)
    );
    const analyticsTotal = Number(analytics.total_loans);
    checks.push({
        name: 'totals equal',
        ok:
            analytics.complete &&
            analyticsTotal === workload.acknowledged.size &&
            shardTotal === workload.acknowledged.size &&
            statusOk,
        detail:
            `acknowledged ${workload.acknowledged.size}, shards ${shardTotal}, router analytics ` +
            `${analyticsTotal} (complete: ${analytics.complete}); per status ${statusOk ? 'equal' : 'DIFFERENT'}: ` +
            [...byStatus.entries()].map(([k, v]) => `${k} ${v}`).join(', ')
    });
    return checks;
}

async function buildReport(
    suite: Suite,
    o: MainJobOptions,
    run: WorkloadRun,
    operations: OperationRow[],
    checks: Check[],
    wall_ms: Report['wall_ms']
): Promise<Report> {
    const { ic, factory, router } = suite;
    const table = (await factory.get_routing_table()) as RoutingTable;
    const routerTable = (await router.get_routing_table()) as RoutingTable;
    const metrics = await factory.get_scalability_metrics();
    const lb = okOr('get_load_balancer_stats', await router.get_load_balancer_stats());
    const cache = okOr('get_cache_statistics', await router.get_cache_statistics());
    const queries = okOr('get_query_statistics', await router.get_query_statistics());
    const breakers = new Map(lb.breakers.map((b) => [b.shard_id, tagOf(b.state) as string]));
    const shards: ShardRow[] = [];
    for (const address of table.shards) {
        const shard = ic.createActor<ShardService>(shardIdl, address.canister_id);
        shard.setPrincipal(suite.routerId);
        const m = okOr('get_shard_metrics', await shard.get_shard_metrics());
        shards.push({
            shard_id: address.shard_id,
            region: address.region,
            canister_id: address.canister_id.toText(),
            slots: slotCount(table, address.shard_id),
            loans: Number(m.loan_count),
            storage_bytes: Number(m.storage_used_bytes),
            cycles: (await ic.getCyclesBalance(address.canister_id)).toString(),
            breaker: breakers.get(address.shard_id) ?? '-'
        });
    }
    const ids = [...new Set([...suite.provision.migrations, ...run.tracker.migrations.keys()])];
    const migrations: MigrationRow[] = [];
    for (const id of ids) {
        const info = okOr(`get_migration ${id}`, await factory.get_migration(id)) as MigrationInfo;
        const seen = run.tracker.migrations.get(id);
        migrations.push({
            id,
            reason: info.reason,
            phase: info.phase,
            moves: info.moves.map((m) => `${m.from}→${m.to}: ${m.slots}`).join(', '),
            slots: info.slots_total,
            loans_copied: Number(info.loans_copied),
            duration_ms: Number(info.updated_at - info.started_at) / 1e6,
            rounds: seen?.rounds ?? 0,
            wall_ms: seen?.wall ?? 0
        });
    }
    const scaleOuts = Number(metrics.scale_outs);
    const scaleOutMigration = [...run.tracker.migrations.entries()].find(
        ([id]) => migrations.find((m) => m.id === id)?.reason === 'scale_out'
    );
    const underLoad = scaleOutMigration !== undefined && scaleOutMigration[1].batch0 < run.batches;
    const scaleChecks: Check[] = [
        {
            name: 'automatic scale-out with a live migration under load',
            ok:
                scaleOuts >= 1 &&
                underLoad &&
                migrations.some((m) => m.reason === 'scale_out' && m.phase === 'Done'),
            detail:
                `${scaleOuts} scale-out(s); ` +
                (scaleOutMigration === undefined
                    ? 'no scale-out migration seen'
                    : `migration ${scaleOutMigration[0]} started in batch ${scaleOutMigration[1].batch0} of ${run.batches}, ended ${scaleOutMigration[1].end === undefined ? 'after the workload' : `in batch ${scaleOutMigration[1].end}`}`)
        }
    ];
    if (o.faults) {
        const events = run.tracker.breakerEvents.filter((e) => e.shard_id === run.stoppedShard);
        const opened = events.findIndex((e) => e.state === 'Open');
        const closed = events.findIndex((e, i) => i > opened && e.state === 'Closed');
        scaleChecks.push({
            name: 'stopped shard: its breaker opened and closed again',
            ok:
                opened >= 0 &&
                closed > opened &&
                [...breakers.values()].every((s) => s === 'Closed'),
            detail:
                `shard ${run.stoppedShard}: ${events.map((e) => `${e.state}@${e.at_batch}`).join(' → ') || 'no transition'}; ` +
                `final states ${statesText(breakers)}`
        });
    }
    const allChecks = [...checks, ...scaleChecks];
    const methods: MethodRow[] = [...run.tracker.methods.entries()]
        .map(([key, v]) => {
            const [canister, method, kind] = key.split('\u0000');
            return {
                canister,
                method,
                kind,
                count: v.count,
                avg_instructions: Number(v.sum / BigInt(Math.max(1, v.count))),
                max_instructions: Number(v.max)
            };
        })
        .sort((a, b) => b.avg_instructions * b.count - a.avg_instructions * a.count);
    return {
        options: {
            loans: o.loans,
            farmers: o.farmers,
            investors: o.investors,
            shards: o.shards,
            seed: o.seed,
            faults: o.faults,
            count_instructions: o.countInstructions,
            regions: o.regions.join(',')
        },
        wall_ms,
        rounds: ic.getRound(),
        workload: {
            loans: run.acknowledged,
            updates: run.updates,
            reads: run.reads,
            retried_writes: run.retried,
            batches: run.batches,
            loans_per_s: run.loansPerS,
            errors: run.errors
        },
        shards,
        routing_epoch: { factory: table.epoch.toString(), router: routerTable.epoch.toString() },
        scale_outs: scaleOuts,
        max_loans_per_shard: run.maxLoans,
        migrations,
        faults: { stopped_shard: run.stoppedShard, events: run.tracker.breakerEvents },
        balancer: {
            total_requests: lb.total_requests.toString(),
            failed_requests: lb.failed_requests.toString(),
            rejected_by_breaker: lb.rejected_by_breaker.toString(),
            breaker_transitions: lb.breaker_transitions.toString(),
            per_shard: lb.per_shard.map((p) => ({
                shard_id: p.shard_id,
                requests: p.requests.toString(),
                failures: p.failures.toString()
            }))
        },
        cache: {
            hits: cache.hits.toString(),
            misses: cache.misses.toString(),
            hit_rate: cache.hit_rate,
            entries: cache.entries.toString()
        },
        queries: {
            total_queries: queries.total_queries.toString(),
            avg_fan_out: queries.avg_fan_out,
            partial_results: queries.partial_results.toString()
        },
        operations,
        methods,
        checks: allChecks,
        ok: allChecks.every((c) => c.ok)
    };
}
