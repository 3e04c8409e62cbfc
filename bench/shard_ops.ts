/**
 * Instructions per call of the data shard and of the router's data path, measured on the real
 * canister Wasm in the local emulator's counting mode (`npx tsx bench/shard_ops.ts`). Every figure
 * is the emulator's own count of the Wasm instructions a message executed (the message trace), the
 * same count `ic0.performance_counter` reports inside the canister. Prints a table and writes
 * `bench/results/shard_ops.json`.
 *
 * Flags: `--loans N` loans written before measuring (default 300), `--samples N` calls measured
 * per operation (default 30), `--wasm-dir DIR` to measure other builds (`DIR/<name>/<name>.wasm.gz`,
 * e.g. a copy of `.azle` taken before a change), `--only shard|migration|router`, `--out FILE`.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import type { Actor, TraceEntry } from '../emulator';
import { LocalIc } from '../emulator';
import type { _SERVICE as RouterService } from '../src/declarations/router/router.did';
import { idlFactory as routerIdl } from '../src/declarations/router/router.did.js';
import type { _SERVICE as ShardService } from '../src/declarations/data_shard/data_shard.did';
import { idlFactory as shardIdl } from '../src/declarations/data_shard/data_shard.did.js';
import { slotOf } from '../src/shared/hash';
import { SLOT_COUNT } from '../src/shared/limits';
import { ShardInit } from '../src/shared/shard_api';
import type { ApiError, Loan, SlotRange } from '../src/shared/types';
import { APP, evenRanges, routerInitArg } from '../tests/integration/fixtures/router_fixture';
import { ADMIN, application, FACTORY } from '../tests/integration/support';
import { argValue, reportOps } from './table';
import type { BenchRow } from './core/types';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Targets of the shard's per-call cost (instructions). */
const TARGETS: Record<string, number> = {
    'shard.create_loan': 25_000_000,
    'shard.get_loan': 10_000_000
};

/** Deterministic 29-byte self-authenticating-shaped principals, as the tests use. */
function principalFrom(tag: number, n: number): Uint8Array {
    const bytes = new Uint8Array(29);
    new DataView(bytes.buffer).setUint32(0, n + 1);
    bytes[4] = tag;
    bytes[28] = 0x02;
    return bytes;
}

function ok<T>(result: { Ok: T } | { Err: ApiError }): T {
    if ('Err' in result) {
        throw new Error(`expected Ok, got ${JSON.stringify(result.Err, (_k, v) => String(v))}`);
    }
    return result.Ok;
}

/** Instructions of the traced messages, split by canister. */
function instructionsBy(trace: TraceEntry[], canister: Principal): bigint {
    const id = canister.toText();
    return trace
        .filter((e) => e.canister === id)
        .reduce((sum, e) => sum + BigInt(e.instructions), 0n);
}

/** Collects samples of one figure and summarises them. */
class Samples {
    readonly values: number[] = [];
    add(value: bigint | number): void {
        this.values.push(Number(value));
    }
    rows(key: string, unit: string): BenchRow[] {
        if (this.values.length === 0) return [];
        const sorted = [...this.values].sort((a, b) => a - b);
        const mean = Math.round(sorted.reduce((a, b) => a + b, 0) / sorted.length);
        const max = sorted[sorted.length - 1];
        const target = TARGETS[key];
        return [
            {
                key: `${key}.mean`,
                value: mean,
                unit,
                ...(target === undefined
                    ? {}
                    : { target: { pass: mean <= target, text: `<= ${target / 1e6} M` } })
            },
            { key: `${key}.max`, value: max, unit }
        ];
    }
}

/**
 * Runs `op` against a cleared trace and returns what each canister executed for it, plus the
 * wall time of the whole emulated exchange.
 */
async function measure(
    ic: LocalIc,
    op: () => Promise<unknown>,
    canisters: Principal[]
): Promise<{ instructions: bigint[]; wall_ms: number }> {
    ic.clearMessageTrace();
    const started = performance.now();
    await op();
    const wall_ms = performance.now() - started;
    const trace = ic.getMessageTrace();
    return { instructions: canisters.map((c) => instructionsBy(trace, c)), wall_ms };
}

async function wasmOf(dir: string, name: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(resolve(dir, name, `${name}.wasm.gz`)));
}

function shardInitArg(
    shard_id: number,
    factory: Principal,
    router: Principal,
    slots: SlotRange[]
): Uint8Array {
    const value = {
        shard_id,
        factory,
        router: [router],
        slots,
        epoch: 1n,
        max_loans: 1_000_000n,
        storage_capacity_bytes: 10_000_000_000n
    };
    return new Uint8Array(IDL.encode([IDL.Opt(ShardInit)], [[value]]));
}

interface Options {
    loans: number;
    samples: number;
    wasmDir: string;
}

/** One shard owning every slot, called directly as the router would. */
async function benchShard(o: Options, rows: BenchRow[]): Promise<void> {
    const ic = await LocalIc.create({ countInstructions: true });
    try {
        const admin = Principal.fromUint8Array(principalFrom(0x41, 0));
        const factory = Principal.fromUint8Array(principalFrom(0x46, 0));
        const router = Principal.fromUint8Array(principalFrom(0x52, 0));
        const { canisterId, actor } = await ic.setupCanister<ShardService>({
            idlFactory: shardIdl,
            wasm: await wasmOf(o.wasmDir, 'data_shard'),
            arg: shardInitArg(1, factory, router, [{ start: 0, end: SLOT_COUNT - 1, shard_id: 1 }]),
            sender: admin,
            controllers: [admin]
        });
        const shard: Actor<ShardService> = actor;
        shard.setPrincipal(router);
        const borrowers = Array.from({ length: 20 }, (_, i) =>
            Principal.fromUint8Array(principalFrom(0x55, i))
        );
        const investor = Principal.fromUint8Array(principalFrom(0x49, 0));
        // Fill in parallel batches (one round each), so indexes are realistic before measuring.
        const ids: bigint[] = [];
        for (let done = 0; done < o.loans; done += 100) {
            const batch = Array.from({ length: Math.min(100, o.loans - done) }, (_, i) =>
                shard.create_loan(application(borrowers[(done + i) % borrowers.length], done + i))
            );
            for (const r of await Promise.all(batch)) ids.push(ok(r).id);
        }

        const create = new Samples();
        const createWall = new Samples();
        const submit = new Samples();
        const approve = new Samples();
        const fund = new Samples();
        const activate = new Samples();
        const repay = new Samples();
        const stats = new Samples();
        const metricsCalls = new Samples();
        const getLoan = new Samples();
        const getWall = new Samples();
        const byBorrower = new Samples();
        const byInvestor = new Samples();
        const fresh: bigint[] = [];
        for (let i = 0; i < o.samples; i++) {
            let loan: Loan | undefined;
            const m = await measure(ic, async () => {
                loan = ok(
                    await shard.create_loan(
                        application(borrowers[i % borrowers.length], 10_000 + i)
                    )
                );
            }, [canisterId]);
            create.add(m.instructions[0]);
            createWall.add(m.wall_ms);
            fresh.push(loan!.id);
        }
        for (const id of fresh) {
            submit.add(
                (
                    await measure(ic, () => shard.update_loan(id, { SubmitForApproval: null }), [
                        canisterId
                    ])
                ).instructions[0]
            );
            approve.add(
                (
                    await measure(
                        ic,
                        () => shard.update_loan(id, { Approve: { amount_approved: 500_000n } }),
                        [canisterId]
                    )
                ).instructions[0]
            );
            fund.add(
                (
                    await measure(
                        ic,
                        () => shard.update_loan(id, { Fund: { investor, amount: 500_000n } }),
                        [canisterId]
                    )
                ).instructions[0]
            );
            activate.add(
                (await measure(ic, () => shard.update_loan(id, { Activate: null }), [canisterId]))
                    .instructions[0]
            );
            repay.add(
                (
                    await measure(ic, () => shard.update_loan(id, { Repay: { amount: 1_000n } }), [
                        canisterId
                    ])
                ).instructions[0]
            );
        }
        for (let i = 0; i < o.samples; i++) {
            stats.add(
                (await measure(ic, async () => ok(await shard.get_shard_stats()), [canisterId]))
                    .instructions[0]
            );
            metricsCalls.add(
                (await measure(ic, async () => ok(await shard.get_shard_metrics()), [canisterId]))
                    .instructions[0]
            );
        }
        for (let i = 0; i < o.samples; i++) {
            const id = ids[(i * 7) % ids.length];
            const m = await measure(ic, () => shard.get_loan(id), [canisterId]);
            getLoan.add(m.instructions[0]);
            getWall.add(m.wall_ms);
            byBorrower.add(
                (
                    await measure(
                        ic,
                        () =>
                            shard.get_loans_by_borrower(borrowers[i % borrowers.length], [], [20]),
                        [canisterId]
                    )
                ).instructions[0]
            );
            byInvestor.add(
                (
                    await measure(ic, () => shard.get_loans_by_investor(investor, [], [20]), [
                        canisterId
                    ])
                ).instructions[0]
            );
        }
        const metrics = ok(await shard.get_shard_metrics());
        rows.push(
            ...create.rows('shard.create_loan', 'instructions'),
            ...submit.rows('shard.update_loan(SubmitForApproval)', 'instructions'),
            ...approve.rows('shard.update_loan(Approve)', 'instructions'),
            ...fund.rows('shard.update_loan(Fund)', 'instructions'),
            ...activate.rows('shard.update_loan(Activate)', 'instructions'),
            ...repay.rows('shard.update_loan(Repay)', 'instructions'),
            ...stats.rows('shard.get_shard_stats', 'instructions'),
            ...metricsCalls.rows('shard.get_shard_metrics', 'instructions'),
            ...getLoan.rows('shard.get_loan', 'instructions'),
            ...byBorrower.rows('shard.get_loans_by_borrower(20)', 'instructions'),
            ...byInvestor.rows('shard.get_loans_by_investor(20)', 'instructions'),
            ...createWall.rows('shard.create_loan.wall', 'ms'),
            ...getWall.rows('shard.get_loan.wall', 'ms'),
            {
                key: 'shard.metrics.avg_instructions_per_call',
                value: Number(metrics.avg_instructions_per_call),
                unit: 'instructions'
            }
        );
    } finally {
        await ic.tearDown();
    }
}

/**
 * A migration of the slots of a few borrowers between two shards, step by step as the factory
 * drives it, with the instructions of each step per call and per loan moved.
 */
async function benchMigration(o: Options, rows: BenchRow[]): Promise<void> {
    const ic = await LocalIc.create({ countInstructions: true });
    try {
        const admin = Principal.fromUint8Array(principalFrom(0x41, 0));
        const factory = Principal.fromUint8Array(principalFrom(0x46, 0));
        const router = Principal.fromUint8Array(principalFrom(0x52, 0));
        const wasm = await wasmOf(o.wasmDir, 'data_shard');
        const install = async (id: number, slots: SlotRange[]) =>
            ic.setupCanister<ShardService>({
                idlFactory: shardIdl,
                wasm,
                arg: shardInitArg(id, factory, router, slots),
                sender: admin,
                controllers: [admin]
            });
        const source = await install(1, [{ start: 0, end: SLOT_COUNT - 1, shard_id: 1 }]);
        const target = await install(2, []);
        source.actor.setPrincipal(router);
        const borrowers = Array.from({ length: 20 }, (_, i) =>
            Principal.fromUint8Array(principalFrom(0x55, i))
        );
        for (let done = 0; done < o.loans; done += 100) {
            const batch = Array.from({ length: Math.min(100, o.loans - done) }, (_, i) =>
                source.actor.create_loan(
                    application(borrowers[(done + i) % borrowers.length], done + i)
                )
            );
            for (const r of await Promise.all(batch)) ok(r);
        }
        source.actor.setPrincipal(factory);
        target.actor.setPrincipal(factory);
        const step = async (canister: Principal, op: () => Promise<unknown>): Promise<number> =>
            Number((await measure(ic, op, [canister])).instructions[0]);
        const perCall = new Map<string, Samples>();
        const perLoan = new Map<string, Samples>();
        const add = (map: Map<string, Samples>, key: string, value: number): void => {
            if (!map.has(key)) map.set(key, new Samples());
            map.get(key)!.add(value);
        };
        // One span per borrower: its slot, moved from the source to the target.
        for (const borrower of borrowers.slice(0, Math.min(o.samples, borrowers.length))) {
            const slot = slotOf(borrower.toUint8Array());
            const span = { start: slot, end: slot };
            add(
                perCall,
                'set_slot_state',
                await step(source.canisterId, async () =>
                    ok(await source.actor.set_slot_state(span, { Migrating: null }, 1n))
                )
            );
            ok(await target.actor.set_slot_state(span, { Importing: null }, 1n));
            let exported: Loan[] = [];
            let slotSeqs: { slot: number; next_seq: bigint }[] = [];
            const exportCost = await step(source.canisterId, async () => {
                const batch = ok(await source.actor.export_slot_batch(span, [], 1_000));
                exported = batch.loans;
                slotSeqs = batch.slot_seqs;
            });
            const importCost = await step(target.canisterId, async () =>
                ok(await target.actor.import_loans(exported, slotSeqs))
            );
            const checksumCost = await step(source.canisterId, async () =>
                ok(await source.actor.span_checksum(span))
            );
            const dirtyCost = await step(source.canisterId, async () =>
                ok(await source.actor.export_dirty_batch(100))
            );
            ok(await source.actor.set_slot_state(span, { Frozen: null }, 1n));
            ok(await source.actor.set_slot_state(span, { Released: null }, 2n));
            ok(await target.actor.set_slot_state(span, { Owned: null }, 2n));
            const deleteCost = await step(source.canisterId, async () =>
                ok(await source.actor.delete_slot_batch(span, 1_000))
            );
            add(perCall, 'export_slot_batch', exportCost);
            add(perCall, 'import_loans', importCost);
            add(perCall, 'span_checksum', checksumCost);
            add(perCall, 'export_dirty_batch', dirtyCost);
            add(perCall, 'delete_slot_batch', deleteCost);
            const n = Math.max(1, exported.length);
            add(perLoan, 'export_slot_batch', exportCost / n);
            add(perLoan, 'import_loans', importCost / n);
            add(perLoan, 'delete_slot_batch', deleteCost / n);
        }
        for (const [key, samples] of perCall) {
            rows.push(...samples.rows(`migration.${key}`, 'instructions'));
        }
        for (const [key, samples] of perLoan) {
            rows.push(...samples.rows(`migration.${key}.per_loan`, 'instructions'));
        }
    } finally {
        await ic.tearDown();
    }
}

/** A router with two shards (the test acts as the factory), called as the application. */
async function benchRouter(o: Options, rows: BenchRow[]): Promise<void> {
    const ic = await LocalIc.create({ countInstructions: true });
    try {
        const routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: routerId,
            wasm: await wasmOf(o.wasmDir, 'router'),
            arg: routerInitArg({ shardCount: 2 }),
            sender: ADMIN
        });
        const router = ic.createActor<RouterService>(routerIdl, routerId);
        const ranges = evenRanges(2);
        const shardIds: Principal[] = [];
        for (const range of ranges) {
            const { canisterId } = await ic.setupCanister<ShardService>({
                idlFactory: shardIdl,
                wasm: await wasmOf(o.wasmDir, 'data_shard'),
                arg: shardInitArg(range.shard_id, FACTORY, routerId, [range]),
                sender: ADMIN,
                controllers: [ADMIN]
            });
            shardIds.push(canisterId);
        }
        router.setPrincipal(FACTORY);
        ok(
            await router.update_routing_table({
                epoch: 1n,
                ranges,
                shards: shardIds.map((canister_id, i) => ({
                    shard_id: i + 1,
                    canister_id,
                    region: 'eu'
                }))
            })
        );
        router.setPrincipal(APP);
        const borrowers = Array.from({ length: 20 }, (_, i) =>
            Principal.fromUint8Array(principalFrom(0x55, i))
        );
        const ids: bigint[] = [];
        for (let done = 0; done < o.loans; done += 100) {
            const batch = Array.from({ length: Math.min(100, o.loans - done) }, (_, i) =>
                router.create_loan(application(borrowers[(done + i) % borrowers.length], done + i))
            );
            for (const r of await Promise.all(batch)) ids.push(ok(r).id);
        }
        const owner = (borrower: Principal): Principal =>
            shardIds[slotOf(borrower.toUint8Array()) < SLOT_COUNT / 2 ? 0 : 1];

        const createRouter = new Samples();
        const createShard = new Samples();
        const createWall = new Samples();
        const getRouter = new Samples();
        const getShard = new Samples();
        for (let i = 0; i < o.samples; i++) {
            const borrower = borrowers[i % borrowers.length];
            const m = await measure(
                ic,
                async () => ok(await router.create_loan(application(borrower, 20_000 + i))),
                [routerId, owner(borrower)]
            );
            createRouter.add(m.instructions[0]);
            createShard.add(m.instructions[1]);
            createWall.add(m.wall_ms);
        }
        for (let i = 0; i < o.samples; i++) {
            const id = ids[(i * 7) % ids.length];
            const shard = shardIds[Number(id >> 48n) < SLOT_COUNT / 2 ? 0 : 1];
            const m = await measure(ic, async () => ok(await router.get_loan(id)), [
                routerId,
                shard
            ]);
            getRouter.add(m.instructions[0]);
            getShard.add(m.instructions[1]);
        }
        rows.push(
            ...createRouter.rows('router.create_loan.router', 'instructions'),
            ...createShard.rows('router.create_loan.shard', 'instructions'),
            ...createWall.rows('router.create_loan.wall', 'ms'),
            ...getRouter.rows('router.get_loan.router', 'instructions'),
            ...getShard.rows('router.get_loan.shard', 'instructions')
        );
    } finally {
        await ic.tearDown();
    }
}

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const options: Options = {
        loans: Number(argValue(args, '--loans') ?? '300'),
        samples: Number(argValue(args, '--samples') ?? '30'),
        wasmDir: resolve(argValue(args, '--wasm-dir') ?? resolve(root, '.azle'))
    };
    if (!Number.isInteger(options.loans) || options.loans < 0 || options.loans > 100_000) {
        throw new Error('--loans takes an integer in 0..=100000');
    }
    if (!Number.isInteger(options.samples) || options.samples < 1 || options.samples > 1_000) {
        throw new Error('--samples takes an integer in 1..=1000');
    }
    const out = resolve(argValue(args, '--out') ?? resolve(root, 'bench/results/shard_ops.json'));
    const rows: BenchRow[] = [];
    const started_ms = Date.now();
    const only = argValue(args, '--only');
    if (only !== 'router' && only !== 'migration') await benchShard(options, rows);
    if (only !== 'router' && only !== 'shard') await benchMigration(options, rows);
    if (only !== 'shard' && only !== 'migration') await benchRouter(options, rows);
    await reportOps(
        'shard_ops',
        out,
        { loans: options.loans, samples: options.samples, wasm_dir: options.wasmDir },
        rows,
        started_ms
    );
}

await main();
