/**
 * What the emulator's transactions cost on a real data shard (`npx tsx bench/emulator_snapshot.ts`):
 * wall time of `get_loan` queries and `create_loan` updates on a fresh shard, heap pages saved per
 * message (dirty-page tracking, `emulator/src/dirty_pages.ts`), the time of one execution inside
 * the emulator (`Canister.execute`: Wasm, system API and transaction; its 10th percentile, steadier
 * than means on a busy host) and the module's compile time with and without the rewrite. Prints a
 * table and writes `bench/results/emulator_snapshot.json`.
 *
 * Flags: `--queries N` (default 2,000), `--updates N` (200), `--emulator DIR` to measure another
 * copy of the emulator folder (e.g. the previous commit's, extracted with
 * `git archive HEAD emulator | tar -x -C /tmp/before`, with `node_modules` linked beside it),
 * `--count-instructions` (the instrumented build), `--out FILE`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import type { LocalIc as LocalIcType } from '../emulator';
import { rewriteModule } from '../emulator/src/dirty_pages';
import { exposeInternals } from '../emulator/src/wasm_binary';
import type { _SERVICE as ShardService } from '../src/declarations/data_shard/data_shard.did';
import { idlFactory as shardIdl } from '../src/declarations/data_shard/data_shard.did.js';
import { SLOT_COUNT } from '../src/shared/limits';
import { ShardInit } from '../src/shared/shard_api';
import type { ApiError } from '../src/shared/types';
import { application } from '../tests/integration/support';
import { argValue, formatTable } from './table';
import type { BenchRow } from './core/types';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const queries = Number(argValue(args, '--queries') ?? 2_000);
const updates = Number(argValue(args, '--updates') ?? 200);
const emulatorDir = resolve(argValue(args, '--emulator') ?? resolve(root, 'emulator'));
const counting = args.includes('--count-instructions');
const out = resolve(
    argValue(args, '--out') ?? resolve(root, 'bench/results/emulator_snapshot.json')
);

/** Deterministic 29-byte principals, as the other benchmarks use. */
function principalFrom(tag: number, n: number): Principal {
    const bytes = new Uint8Array(29);
    new DataView(bytes.buffer).setUint32(0, n + 1);
    bytes[4] = tag;
    bytes[28] = 0x02;
    return Principal.fromUint8Array(bytes);
}

function ok<T>(result: { Ok: T } | { Err: ApiError }): T {
    if ('Err' in result) throw new Error(`expected Ok, got ${Object.keys(result.Err)[0]}`);
    return result.Ok;
}

/** Process CPU time (user + system) since `since`, in ms: steadier than wall time on a busy host. */
function cpuMs(since: NodeJS.CpuUsage): number {
    const d = process.cpuUsage(since);
    return (d.user + d.system) / 1000;
}

function median(values: number[]): number {
    return quantile(values, 0.5);
}

function quantile(values: number[], q: number): number {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

/** Bound on recorded execution times per method. */
const MAX_EXEC_SAMPLES = 100_000;

/**
 * Records the wall time of every `Canister.execute` by exported method name (`canister_update
 * create_loan` → `create_loan`).
 */
async function recordExecutions(): Promise<Map<string, number[]>> {
    const { Canister } = (await import(resolve(emulatorDir, 'src/canister.ts'))) as {
        Canister: { prototype: { execute: (...args: unknown[]) => unknown } };
    };
    const times = new Map<string, number[]>();
    const execute = Canister.prototype.execute;
    Canister.prototype.execute = function (this: unknown, ...args: unknown[]) {
        const started = process.hrtime.bigint();
        try {
            return execute.apply(this, args);
        } finally {
            const entry = args[0];
            const name = typeof entry === 'string' ? entry.slice(entry.indexOf(' ') + 1) : '';
            let list = times.get(name);
            if (!list) times.set(name, (list = []));
            if (list.length < MAX_EXEC_SAMPLES) {
                list.push(Number(process.hrtime.bigint() - started) / 1000);
            }
        }
    };
    return times;
}

/** Compile time of the plain module and of its dirty-page rewrite (median of 3), and rewrite time. */
function compileRows(wasm: Uint8Array): BenchRow[] {
    const base = exposeInternals(wasm).bytes;
    const started = performance.now();
    const rewritten = rewriteModule(base);
    const rewriteMs = performance.now() - started;
    const time = (bytes: Uint8Array) =>
        median(
            [0, 1, 2].map(() => {
                const t = performance.now();
                new WebAssembly.Module(bytes);
                return performance.now() - t;
            })
        );
    return [
        { key: 'module.code_bytes.plain', value: base.length, unit: 'bytes' },
        { key: 'module.code_bytes.tracked', value: rewritten.bytes.length, unit: 'bytes' },
        { key: 'module.rewrite_ms', value: Math.round(rewriteMs), unit: 'ms' },
        { key: 'module.compile_ms.plain', value: Math.round(time(base)), unit: 'ms' },
        { key: 'module.compile_ms.tracked', value: Math.round(time(rewritten.bytes)), unit: 'ms' }
    ];
}

async function main(): Promise<void> {
    const { LocalIc } = (await import(resolve(emulatorDir, 'index.ts'))) as {
        LocalIc: typeof LocalIcType;
    };
    const wasm = new Uint8Array(await readFile(resolve(root, '.azle/data_shard/data_shard.wasm')));
    const rows: BenchRow[] = compileRows(wasm);
    const executions = await recordExecutions();
    const ic = await LocalIc.create({ countInstructions: counting });
    try {
        const admin = principalFrom(0x41, 0);
        const factory = principalFrom(0x46, 0);
        const router = principalFrom(0x52, 0);
        const init = {
            shard_id: 1,
            factory,
            router: [router],
            slots: [{ start: 0, end: SLOT_COUNT - 1, shard_id: 1 }],
            epoch: 1n,
            max_loans: 1_000_000n,
            storage_capacity_bytes: 10_000_000_000n
        };
        const { canisterId, actor } = await ic.setupCanister<ShardService>({
            idlFactory: shardIdl,
            wasm,
            arg: new Uint8Array(IDL.encode([IDL.Opt(ShardInit)], [[init]])),
            sender: admin,
            controllers: [admin]
        });
        actor.setPrincipal(router);
        const canister = ic.raw.canister(canisterId) as {
            savedHeapPages?: number;
            heapBytes: number;
        };
        const saved = () => canister.savedHeapPages ?? NaN;
        const borrowers = Array.from({ length: 20 }, (_, i) => principalFrom(0x55, i));

        const ids: bigint[] = [];
        let pages = saved();
        let started = performance.now();
        let cpu = process.cpuUsage();
        for (let i = 0; i < updates; i++) {
            ids.push(ok(await actor.create_loan(application(borrowers[i % 20], i))).id);
        }
        const updateMs = performance.now() - started;
        const updateCpuMs = cpuMs(cpu);
        const updatePages = (saved() - pages) / updates;

        pages = saved();
        started = performance.now();
        cpu = process.cpuUsage();
        for (let i = 0; i < queries; i++) {
            const loan = await actor.get_loan(ids[i % ids.length]);
            if (!('Ok' in loan)) throw new Error('get_loan found nothing');
        }
        const queryMs = performance.now() - started;
        const queryCpuMs = cpuMs(cpu);
        const queryPages = (saved() - pages) / queries;
        // Skip the first half of each method's executions (V8 tiers the Wasm up meanwhile).
        const p10 = (name: string) => {
            const list = executions.get(name) ?? [];
            return quantile(list.slice(Math.floor(list.length / 2)), 0.1);
        };
        rows.push(
            { key: 'shard.heap_bytes', value: canister.heapBytes, unit: 'bytes' },
            { key: 'shard.create_loan.updates', value: updates, unit: 'calls' },
            { key: 'shard.create_loan.ms_per_call', value: updateMs / updates, unit: 'ms' },
            { key: 'shard.create_loan.cpu_ms_per_call', value: updateCpuMs / updates, unit: 'ms' },
            { key: 'shard.create_loan.pages_saved_per_call', value: updatePages, unit: 'pages' },
            { key: 'shard.create_loan.execute_us_p10', value: p10('create_loan'), unit: 'us' },
            { key: 'shard.get_loan.queries', value: queries, unit: 'calls' },
            { key: 'shard.get_loan.total_ms', value: Math.round(queryMs), unit: 'ms' },
            { key: 'shard.get_loan.ms_per_call', value: queryMs / queries, unit: 'ms' },
            { key: 'shard.get_loan.cpu_ms_per_call', value: queryCpuMs / queries, unit: 'ms' },
            { key: 'shard.get_loan.pages_saved_per_call', value: queryPages, unit: 'pages' },
            { key: 'shard.get_loan.execute_us_p10', value: p10('get_loan'), unit: 'us' }
        );
    } finally {
        await ic.tearDown();
    }
    console.log(
        `emulator: ${emulatorDir}${counting ? ' (counting instructions)' : ''}\n${formatTable(rows)}`
    );
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify({ emulator: emulatorDir, counting, rows }, null, 2)}\n`);
}

await main();
