import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';

import {
    INSTRUCTION_COUNTER_EXPORT,
    instrumentForCounting,
    isInstrumentedForCounting,
    readInstructionCounter,
    REMOVED_PROFILING_EXPORTS,
    resetInstructionCounter
} from '../src/instrument';
import { buildFixtures } from './fixtures/build';

const EMPTY_CANDID_ARGS = new Uint8Array([0x44, 0x49, 0x44, 0x4c, 0x00, 0x00]);
const PAGE_BYTES = 65_536;

/**
 * Just enough of `ic0` to run Azle's `canister_init`, an update and an upgrade hook in one instance:
 * stable memory in a growable buffer, a fixed clock, replies collected, every write counted.
 */
class MiniIc0 {
    stable = new Uint8Array(0);
    stableWrites: { offset: number; size: number }[] = [];
    reply: number[] = [];
    memory: WebAssembly.Memory | undefined;

    imports(module: WebAssembly.Module): WebAssembly.Imports {
        const impl = this.functions();
        const ic0: Record<string, (...args: never[]) => unknown> = {};
        for (const imp of WebAssembly.Module.imports(module)) {
            if (imp.module !== 'ic0') throw new Error(`unexpected import module ${imp.module}`);
            ic0[imp.name] =
                impl[imp.name] ??
                (() => {
                    throw new Error(`MiniIc0: ic0.${imp.name} is outside this minimal test host`);
                });
        }
        return { ic0 };
    }

    private bytes(): Uint8Array {
        if (this.memory === undefined) throw new Error('memory not bound');
        return new Uint8Array(this.memory.buffer);
    }

    private functions(): Record<string, (...args: never[]) => unknown> {
        const self = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
        const text = (src: number, size: number): string =>
            new TextDecoder().decode(this.bytes().subarray(src, src + size));
        return {
            stable64_size: () => BigInt(this.stable.length / PAGE_BYTES),
            stable64_grow: (pages: bigint) => {
                const old = this.stable.length / PAGE_BYTES;
                const grown = new Uint8Array(this.stable.length + Number(pages) * PAGE_BYTES);
                grown.set(this.stable);
                this.stable = grown;
                return BigInt(old);
            },
            stable64_write: (offset: bigint, src: bigint, size: bigint) => {
                this.stableWrites.push({ offset: Number(offset), size: Number(size) });
                const from = this.bytes().subarray(Number(src), Number(src + size));
                this.stable.set(from, Number(offset));
            },
            stable64_read: (dst: bigint, offset: bigint, size: bigint) => {
                const from = this.stable.subarray(Number(offset), Number(offset + size));
                this.bytes().set(from, Number(dst));
            },
            msg_arg_data_size: () => EMPTY_CANDID_ARGS.length,
            msg_arg_data_copy: (dst: number, offset: number, size: number) =>
                this.bytes().set(EMPTY_CANDID_ARGS.subarray(offset, offset + size), dst),
            msg_reply_data_append: (src: number, size: number) =>
                this.reply.push(...this.bytes().subarray(src, src + size)),
            msg_reply: () => undefined,
            msg_caller_size: () => 1,
            msg_caller_copy: (dst: number) => {
                this.bytes()[dst] = 4;
            },
            canister_self_size: () => self.length,
            canister_self_copy: (dst: number, offset: number, size: number) =>
                this.bytes().set(self.subarray(offset, offset + size), dst),
            time: () => 1_700_000_000_000_000_000n,
            global_timer_set: () => 0n,
            performance_counter: () => 0n,
            in_replicated_execution: () => 1,
            canister_version: () => 0n,
            msg_method_name_size: () => 0,
            msg_method_name_copy: () => undefined,
            // Azle's init arms a 0-delay timer; the call it makes later is never performed here.
            call_new: () => undefined,
            call_data_append: () => undefined,
            call_on_cleanup: () => undefined,
            call_cycles_add128: () => undefined,
            call_with_best_effort_response: () => undefined,
            call_perform: () => 0,
            debug_print: () => undefined,
            trap: (src: number, size: number) => {
                throw new Error(`trap: ${text(src, size)}`);
            }
        };
    }
}

function instantiate(wasm: Uint8Array): { instance: WebAssembly.Instance; ic0: MiniIc0 } {
    const module = new WebAssembly.Module(wasm);
    const ic0 = new MiniIc0();
    const instance = new WebAssembly.Instance(module, ic0.imports(module));
    ic0.memory = instance.exports.memory as WebAssembly.Memory;
    return { instance, ic0 };
}

function run(instance: WebAssembly.Instance, exportName: string): void {
    const fn = instance.exports[exportName];
    if (typeof fn !== 'function') throw new Error(`no export ${exportName}`);
    (fn as () => void)();
}

describe('instrumentForCounting', () => {
    let counterWasm: Uint8Array;
    let counting: Uint8Array;

    beforeAll(async () => {
        const paths = await buildFixtures();
        counterWasm = new Uint8Array(readFileSync(paths.counter));
        counting = instrumentForCounting(counterWasm);
    });

    it('exports the counter as a mutable i64 global and removes the profiling methods', () => {
        const module = new WebAssembly.Module(counting);
        const exports = WebAssembly.Module.exports(module);
        expect(exports).toContainEqual({ name: INSTRUCTION_COUNTER_EXPORT, kind: 'global' });
        for (const name of REMOVED_PROFILING_EXPORTS) {
            expect(exports.map((e) => e.name)).not.toContain(name);
        }
        expect(isInstrumentedForCounting(module)).toBe(true);
        expect(isInstrumentedForCounting(new WebAssembly.Module(counterWasm))).toBe(false);
    });

    it('adds no imports', () => {
        const names = (wasm: Uint8Array): string[] =>
            WebAssembly.Module.imports(new WebAssembly.Module(wasm)).map(
                (i) => `${i.module}.${i.name}`
            );
        expect(names(counting).sort()).toEqual(names(counterWasm).sort());
    });

    it('counts about 1 B instructions for init and about 1.3 M for a trivial update', () => {
        const { instance, ic0 } = instantiate(counting);
        expect(readInstructionCounter(instance)).toBe(0n);
        run(instance, 'canister_init');
        const init = readInstructionCounter(instance);
        expect(init).toBeGreaterThan(300_000_000n);
        expect(init).toBeLessThan(3_000_000_000n);

        resetInstructionCounter(instance);
        expect(readInstructionCounter(instance)).toBe(0n);
        ic0.reply = [];
        run(instance, 'canister_update inc');
        const update = readInstructionCounter(instance);
        expect(update).toBeGreaterThan(300_000n);
        expect(update).toBeLessThan(10_000_000n);
        // Candid nat64 reply: DIDL, no types, one arg of type nat64 (0x78), value 1.
        expect(Buffer.from(ic0.reply).toString('hex')).toBe('4449444c0001780100000000000000');
    });

    it('counts the same number of instructions for the same message in two instances', () => {
        const counts = [0, 1].map(() => {
            const { instance } = instantiate(counting);
            run(instance, 'canister_init');
            resetInstructionCounter(instance);
            run(instance, 'canister_update inc');
            return readInstructionCounter(instance);
        });
        expect(counts[0]).toBe(counts[1]);
    });

    it('keeps stable memory untouched by tracing after init and during pre_upgrade', () => {
        const { instance, ic0 } = instantiate(counting);
        run(instance, 'canister_init');
        const afterInit = ic0.stable.slice();
        ic0.stableWrites = [];
        run(instance, 'canister_update inc');
        run(instance, 'canister_query get');
        expect(ic0.stableWrites).toEqual([]);

        run(instance, 'canister_pre_upgrade');
        // The fixture's own pre_upgrade writes a StableBTreeMap entry; the header must survive.
        expect(ic0.stable.subarray(0, 64)).toEqual(afterInit.subarray(0, 64));
        expect(ic0.stableWrites.filter((w) => w.offset === 0 && w.size > 0)).toEqual([]);
    });

    it('accepts a gzipped module and returns the same instrumented bytes (cached)', () => {
        const fromGzip = instrumentForCounting(new Uint8Array(gzipSync(counterWasm)));
        expect(Buffer.from(fromGzip).equals(Buffer.from(counting))).toBe(true);
    });

    it('refuses to read the counter of a module that was not instrumented', () => {
        const { instance } = instantiate(counterWasm);
        expect(() => readInstructionCounter(instance)).toThrow(/not instrumented/);
    });
});
