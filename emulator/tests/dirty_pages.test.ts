/**
 * Dirty-page tracking (`emulator/src/dirty_pages.ts`): the module rewrite on hand-assembled modules
 * (every store width, page-crossing stores, bulk memory, out-of-bounds traps, the fallback for
 * unknown opcodes), the nested undo logs against full-snapshot references (also as a fast-check
 * property), and canisters that trap, grow or receive host writes on the emulator.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
    ARENA_PAGES,
    HEAP_BASE,
    PageUndoLog,
    rewriteModule,
    setDirtyPageTracking,
    UNDO_PAGE_BYTES
} from '../src/dirty_pages';
import { instrumentForCounting } from '../src/instrument';
import { LocalIc } from '../src/local_ic';
import { exposeInternals } from '../src/wasm_binary';
import { createTestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import { fixtureWasms, install } from './support';
import { F32, F64, I32, I64, op, wasmModule, type FuncSpec, type ModuleSpec } from './wasm_module';

const WASM_PAGE = 65_536;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Store opcodes with their value type and width. */
const STORES: { opcode: number; type: number; width: number; name: string }[] = [
    { opcode: 0x36, type: I32, width: 4, name: 'i32.store' },
    { opcode: 0x37, type: I64, width: 8, name: 'i64.store' },
    { opcode: 0x38, type: F32, width: 4, name: 'f32.store' },
    { opcode: 0x39, type: F64, width: 8, name: 'f64.store' },
    { opcode: 0x3a, type: I32, width: 1, name: 'i32.store8' },
    { opcode: 0x3b, type: I32, width: 2, name: 'i32.store16' },
    { opcode: 0x3c, type: I64, width: 1, name: 'i64.store8' },
    { opcode: 0x3d, type: I64, width: 2, name: 'i64.store16' },
    { opcode: 0x3e, type: I64, width: 4, name: 'i64.store32' }
];
/** The offset of the `*_off` stores: odd, so stores at page starts cross the page before. */
const STORE_OFFSET = UNDO_PAGE_BYTES - 3;

/** A module exercising every kind of memory write (4 Wasm pages, at most 8). */
function writerModule(extra: FuncSpec[] = []): ModuleSpec {
    const funcs: FuncSpec[] = [];
    for (const s of STORES) {
        const body = [...op.get(0), ...op.get(1), ...op.mem(s.opcode)];
        funcs.push({ export: `st_${s.name}`, params: [I32, s.type], body });
        const withOffset = [...op.get(0), ...op.get(1), ...op.mem(s.opcode, STORE_OFFSET)];
        funcs.push({ export: `sto_${s.name}`, params: [I32, s.type], body: withOffset });
    }
    funcs.push(
        {
            export: 'copy',
            params: [I32, I32, I32],
            body: [...op.get(0), ...op.get(1), ...op.get(2), ...op.memoryCopy]
        },
        {
            export: 'fill',
            params: [I32, I32, I32],
            body: [...op.get(0), ...op.get(1), ...op.get(2), ...op.memoryFill]
        },
        {
            export: 'init',
            params: [I32, I32, I32],
            body: [...op.get(0), ...op.get(1), ...op.get(2), ...op.memoryInit(1)]
        },
        {
            export: 'grow',
            params: [I32],
            results: [I32],
            body: [...op.get(0), ...op.memoryGrow]
        },
        {
            export: 'store_then_trap',
            params: [I32, I32],
            body: [...op.get(0), ...op.get(1), ...op.mem(0x36), ...op.unreachable]
        },
        // A call through the function index space (shifted by the rewrite's import).
        {
            export: 'call_store',
            params: [I32, I32],
            body: [...op.get(0), ...op.get(1), ...op.call(0)]
        },
        ...extra
    );
    return {
        memoryPages: 4,
        maxPages: 8,
        funcs,
        data: [{ offset: 100, bytes: [1, 2, 3, 4] }],
        passive: [Array.from({ length: 9000 }, (_, i) => (i * 7 + 1) & 0xff)]
    };
}

type Fn = (...args: (number | bigint)[]) => unknown;

const COMPILED = new WeakMap<
    ModuleSpec,
    { plain: WebAssembly.Module; tracked: WebAssembly.Module }
>();

/** The module of a spec, plain and rewritten, compiled once. */
function compiled(spec: ModuleSpec): { plain: WebAssembly.Module; tracked: WebAssembly.Module } {
    let c = COMPILED.get(spec);
    if (!c) {
        const bytes = wasmModule(spec);
        const rewritten = rewriteModule(bytes);
        expect(rewritten.tracked, rewritten.reason).toBe(true);
        c = {
            plain: new WebAssembly.Module(bytes),
            tracked: new WebAssembly.Module(rewritten.bytes)
        };
        COMPILED.set(spec, c);
    }
    return c;
}

/** An instance of the rewritten module with its undo log, as a canister holds them. */
function tracked(spec: ModuleSpec) {
    const module = compiled(spec).tracked;
    const log: PageUndoLog = new PageUndoLog((): WebAssembly.Instance => instance);
    const marks = log.instanceImports();
    const instance: WebAssembly.Instance = new WebAssembly.Instance(module, {
        __emu: marks.imports
    });
    marks.attach(instance);
    return {
        log,
        fn: (name: string) => instance.exports[name] as Fn,
        heap: () =>
            new Uint8Array((instance.exports.memory as WebAssembly.Memory).buffer, HEAP_BASE)
    };
}

/** The same module unchanged, the reference. */
function plain(spec: ModuleSpec) {
    const instance = new WebAssembly.Instance(compiled(spec).plain, {});
    return {
        fn: (name: string) => instance.exports[name] as Fn,
        heap: () => new Uint8Array((instance.exports.memory as WebAssembly.Memory).buffer)
    };
}

function valueFor(type: number, n: number): number | bigint {
    if (type === I64) return BigInt(n) * 0x0101_0101_0101n + 0x7f00_0000_0000_0000n;
    if (type === F32 || type === F64) return n + 0.5;
    return n * 0x0102_0304;
}

/** Byte equality without vitest's element-wise diff (slow on heaps); names the first difference. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
    if (Buffer.compare(actual, expected) === 0) return;
    let at = 0;
    while (at < Math.min(actual.length, expected.length) && actual[at] === expected[at]) at++;
    expect(`length ${actual.length}, byte ${at} = ${actual[at]}`, 'heaps differ').toBe(
        `length ${expected.length}, byte ${at} = ${expected[at]}`
    );
}

/** Runs `f`, returning its error message (or null). */
function trapOf(f: () => unknown): string | null {
    try {
        f();
        return null;
    } catch (e) {
        return (e as Error).message;
    }
}

describe('dirty-page rewrite of a hand-assembled module', () => {
    const spec = writerModule();

    it('rewrites the module and keeps every export and data segment', () => {
        const t = tracked(spec);
        expect(t.heap().subarray(100, 104)).toEqual(Uint8Array.from([1, 2, 3, 4]));
        for (const s of STORES) expect(typeof t.fn(`st_${s.name}`)).toBe('function');
    });

    for (const s of STORES) {
        it(`${s.name} writes like the original and is undone, also across a page boundary`, () => {
            const t = tracked(spec);
            const p = plain(spec);
            const before = t.heap().slice();
            t.log.begin();
            const boundary = 2 * UNDO_PAGE_BYTES - Math.max(1, s.width - 1); // crosses if width > 1
            for (const [name, addr] of [
                [`st_${s.name}`, boundary],
                [`st_${s.name}`, 5 * UNDO_PAGE_BYTES + 8],
                [`sto_${s.name}`, 7 * UNDO_PAGE_BYTES], // crosses because of the offset
                [`sto_${s.name}`, 9 * UNDO_PAGE_BYTES + 1]
            ] as const) {
                const v = valueFor(s.type, addr);
                t.fn(name)(addr, v);
                p.fn(name)(addr, v);
            }
            expectSameBytes(t.heap(), p.heap());
            t.log.rollback();
            expectSameBytes(t.heap(), before);
        });
    }

    it('saves both pages of a store that crosses a boundary, and a saved page only once', () => {
        const t = tracked(spec);
        t.log.begin();
        const saved = t.log.savedPages;
        t.fn('st_i64.store')(3 * UNDO_PAGE_BYTES - 4, 1n);
        expect(t.log.savedPages - saved).toBe(2);
        t.fn('st_i32.store')(3 * UNDO_PAGE_BYTES + 100, 7);
        t.fn('st_i32.store8')(3 * UNDO_PAGE_BYTES - 1, 7);
        expect(t.log.savedPages - saved).toBe(2);
        t.log.commit();
    });

    it('saves the second page of a crossing store when the first page is already saved', () => {
        for (const s of STORES.filter((x) => x.width > 1)) {
            const t = tracked(spec);
            const before = t.heap().slice();
            t.log.begin();
            t.fn(`st_${s.name}`)(3 * UNDO_PAGE_BYTES - 100, valueFor(s.type, 1));
            t.fn(`st_${s.name}`)(3 * UNDO_PAGE_BYTES - 1, valueFor(s.type, 2));
            t.fn(`sto_${s.name}`)(5 * UNDO_PAGE_BYTES - STORE_OFFSET - 100, valueFor(s.type, 3));
            t.fn(`sto_${s.name}`)(5 * UNDO_PAGE_BYTES - STORE_OFFSET - 1, valueFor(s.type, 4));
            t.log.rollback();
            expectSameBytes(t.heap(), before);
        }
    });

    it('undoes memory.copy, memory.fill and memory.init over several pages', () => {
        const t = tracked(spec);
        const p = plain(spec);
        t.fn('fill')(1000, 0x5a, 3 * UNDO_PAGE_BYTES + 17);
        p.fn('fill')(1000, 0x5a, 3 * UNDO_PAGE_BYTES + 17);
        const before = t.heap().slice();
        t.log.begin();
        for (const x of [t, p]) {
            x.fn('copy')(20 * UNDO_PAGE_BYTES - 5, 900, 2 * UNDO_PAGE_BYTES);
            x.fn('fill')(30 * UNDO_PAGE_BYTES + 1, 0xee, 5 * UNDO_PAGE_BYTES);
            x.fn('init')(40 * UNDO_PAGE_BYTES - 100, 3, 8000);
            x.fn('copy')(60, 61, 0); // zero length writes nothing
        }
        expectSameBytes(t.heap(), p.heap());
        // copy: 3 pages, fill: 6 pages (unaligned start), init: 3 pages.
        expect(t.log.savedPages).toBe(12);
        t.log.rollback();
        expectSameBytes(t.heap(), before);
    });

    it('traps out of bounds exactly like the original and saves nothing', () => {
        const t = tracked(spec);
        const p = plain(spec);
        const size = 4 * WASM_PAGE;
        t.log.begin();
        const before = t.heap().slice();
        const cases: [string, (number | bigint)[]][] = [
            ['st_i32.store', [size - 2, 1]],
            ['st_i64.store', [size - 7, 1n]],
            ['st_i32.store8', [size, 1]],
            ['sto_i64.store', [size - STORE_OFFSET - 4, 1n]],
            ['sto_i32.store', [-1, 1]], // the effective address wraps past 4 GiB
            ['fill', [size - 10, 1, 11]],
            ['copy', [size - 10, 0, 11]],
            ['copy', [0, size - 10, 11]], // source out of bounds: nothing is written
            ['init', [size - 10, 0, 11]],
            ['init', [0, 8999, 2]] // segment out of bounds
        ];
        for (const [name, args] of cases) {
            const expected = trapOf(() => p.fn(name)(...args));
            expect(expected, name).not.toBeNull();
            expect(
                trapOf(() => t.fn(name)(...args)),
                name
            ).toBe(expected);
        }
        expectSameBytes(t.heap(), before);
        expectSameBytes(t.heap(), p.heap());
        // Only the wrapped store saved a page (address 4093 + ...), which it never wrote.
        expect(t.log.savedPages).toBeLessThanOrEqual(1);
        t.log.rollback();
        expectSameBytes(t.heap(), before);
    });

    it('restores exactly after a trap that follows writes', () => {
        const t = tracked(spec);
        const before = t.heap().slice();
        t.log.begin();
        t.fn('fill')(0, 0x11, 2 * WASM_PAGE);
        expect(trapOf(() => t.fn('store_then_trap')(12_345, 99))).toMatch(/unreachable/);
        t.log.rollback();
        expectSameBytes(t.heap(), before);
    });

    it('rolls back an inner transaction alone and commits the outer one', () => {
        const t = tracked(spec);
        const a = 10 * UNDO_PAGE_BYTES;
        const b = 20 * UNDO_PAGE_BYTES;
        t.log.begin();
        t.fn('st_i32.store')(a, 1);
        const afterOuter = t.heap().slice();
        t.log.begin();
        t.fn('st_i32.store')(a, 2);
        t.fn('st_i32.store')(b, 3);
        t.log.rollback();
        expectSameBytes(t.heap(), afterOuter);
        // The outer level still undoes page `a` (saved before the inner level began).
        t.fn('st_i32.store')(a + 4, 5);
        t.log.commit();
        const view = new DataView(t.heap().buffer, t.heap().byteOffset);
        expect([view.getInt32(a, true), view.getInt32(a + 4, true)]).toEqual([1, 5]);
        expect(view.getInt32(b, true)).toBe(0);
        expect(t.log.depth).toBe(0);
    });

    it('commits an inner transaction into the outer one, which then rolls both back', () => {
        const t = tracked(spec);
        const before = t.heap().slice();
        t.log.begin();
        t.fn('st_i32.store')(4 * UNDO_PAGE_BYTES, 1);
        t.log.begin();
        t.fn('st_i32.store')(4 * UNDO_PAGE_BYTES, 2); // page saved by both levels
        t.fn('st_i32.store')(8 * UNDO_PAGE_BYTES, 3); // page saved by the inner level only
        t.log.commit();
        t.fn('st_i32.store')(8 * UNDO_PAGE_BYTES + 4, 4); // already in the outer log
        t.log.rollback();
        expectSameBytes(t.heap(), before);
    });

    it('saves a page once per level, also after an inner level closes', () => {
        const t = tracked(spec);
        const [a, b, c] = [10, 20, 30].map((p) => p * UNDO_PAGE_BYTES);
        const before = t.heap().slice();
        t.log.begin();
        t.fn('st_i32.store')(a, 1);
        expect(t.log.savedPages).toBe(1);
        t.log.begin();
        t.fn('st_i32.store')(a, 2); // the inner level saves its own copy
        t.fn('st_i32.store')(b, 3);
        expect(t.log.savedPages).toBe(3);
        t.log.rollback();
        t.fn('st_i32.store')(a + 8, 4); // still saved by the outer level
        expect(t.log.savedPages).toBe(3);
        t.log.begin();
        t.fn('st_i32.store')(c, 5);
        expect(t.log.savedPages).toBe(4);
        t.log.commit();
        // Pages of both levels are now the outer level's: no new copies.
        for (const addr of [a + 12, b + 12, c + 12]) t.fn('st_i32.store')(addr, 6);
        expect(t.log.savedPages).toBe(5); // b: the inner level that saved it was rolled back
        t.log.rollback();
        expectSameBytes(t.heap(), before);
    });

    it('keeps copies in host buffers once the arena is full, and restores them in order', () => {
        // 320 Wasm pages (20 MiB): more undo pages than the arena holds.
        const t = tracked({ ...spec, memoryPages: 320, maxPages: 330 });
        const MiB = 1 << 20;
        const before = t.heap().slice();
        t.log.begin();
        t.fn('fill')(0, 1, 12 * MiB); // 3,072 pages: in the arena
        const afterOuter = t.heap().slice();
        t.log.begin();
        t.fn('fill')(6 * MiB, 2, 10 * MiB); // saved again by this level: the arena fills up
        t.fn('st_i32.store')(13 * MiB, 7); // a store's page copied by the host
        expect(t.log.savedPages).toBeGreaterThan(ARENA_PAGES);
        t.log.rollback();
        expectSameBytes(t.heap(), afterOuter);
        t.log.begin();
        t.fn('fill')(6 * MiB, 3, 10 * MiB);
        t.log.commit(); // pages 1,536..3,071 now have two copies in the outer level
        t.fn('fill')(0, 4, 20 * MiB);
        t.log.begin();
        t.fn('fill')(MiB, 5, MiB); // the arena is full: host copies only
        t.log.rollback();
        t.log.rollback();
        expectSameBytes(t.heap(), before);
        expect(t.log.depth).toBe(0);
    });

    it('marks the saved pages of the open level in a replacement instance', () => {
        // As a canister whose inner level grew the heap and trapped: the outer level goes on in a
        // fresh instance holding the restored heap.
        const module = compiled(spec).tracked;
        let instance!: WebAssembly.Instance;
        const log = new PageUndoLog(() => instance);
        const start = () => {
            const marks = log.instanceImports();
            instance = new WebAssembly.Instance(module, { __emu: marks.imports });
            marks.attach(instance);
            return instance;
        };
        // The heap, above the marks and the arena.
        const heapOf = (i: WebAssembly.Instance) =>
            new Uint8Array((i.exports.memory as WebAssembly.Memory).buffer, HEAP_BASE);
        const store = (addr: number, v: number) =>
            (instance.exports['st_i32.store'] as Fn)(addr, v);
        const first = start();
        const before = heapOf(first).slice();
        const a = 10 * UNDO_PAGE_BYTES;
        log.begin();
        store(a, 1);
        log.begin();
        store(a + 4, 2);
        (instance.exports.grow as Fn)(1);
        const heapBytes = log.rollback().sizeBytes - HEAP_BASE;
        expect(heapOf(first).length).toBeGreaterThan(heapBytes);
        const restored = heapOf(first).slice(0, heapBytes);
        heapOf(start()).set(restored);
        const saved = log.savedPages;
        store(a + 8, 3); // page `a` is in the outer log: not saved again from the new heap
        expect(log.savedPages).toBe(saved);
        log.rollback();
        expectSameBytes(heapOf(instance), before);
    });

    it('matches full snapshots on random writes, nested transactions and traps', () => {
        type Step =
            | { kind: 'store'; s: number; addr: number; offset: boolean }
            | { kind: 'fill' | 'copy' | 'init'; d: number; x: number; n: number }
            | { kind: 'begin' | 'commit' | 'rollback' | 'trap'; addr: number };
        const size = 4 * WASM_PAGE;
        // Addresses near the boundaries of a few pages (so that writes meet on a page already
        // saved), at the end of the heap, and anywhere.
        const pages = size / UNDO_PAGE_BYTES;
        const addr = fc.oneof(
            fc
                .tuple(fc.constantFrom(1, 2, 3, pages - 1, pages), fc.integer({ min: -9, max: 9 }))
                .map(([page, delta]) => page * UNDO_PAGE_BYTES + delta),
            fc.integer({ min: 0, max: size + 16 })
        );
        const step: fc.Arbitrary<Step> = fc.oneof(
            {
                weight: 6,
                arbitrary: fc.record({
                    kind: fc.constant('store' as const),
                    s: fc.integer({ min: 0, max: STORES.length - 1 }),
                    addr,
                    offset: fc.boolean()
                })
            },
            {
                weight: 2,
                arbitrary: fc.record({
                    kind: fc.constantFrom('fill' as const, 'copy' as const, 'init' as const),
                    d: addr,
                    x: addr,
                    n: fc.integer({ min: 0, max: 3 * UNDO_PAGE_BYTES })
                })
            },
            {
                weight: 2,
                arbitrary: fc.record({
                    kind: fc.constantFrom(
                        'begin' as const,
                        'commit' as const,
                        'rollback' as const,
                        'trap' as const
                    ),
                    addr
                })
            }
        );
        fc.assert(
            fc.property(fc.array(step, { minLength: 20, maxLength: 80 }), (steps) => {
                const t = tracked(spec);
                const p = plain(spec);
                const snapshots: Uint8Array[] = [];
                const run = (name: string, args: (number | bigint)[]) => {
                    const a = trapOf(() => t.fn(name)(...args));
                    const b = trapOf(() => p.fn(name)(...args));
                    expect(a).toBe(b);
                };
                for (const s of steps) {
                    if (s.kind === 'store') {
                        const st = STORES[s.s];
                        const name = `${s.offset ? 'sto' : 'st'}_${st.name}`;
                        run(name, [s.addr, valueFor(st.type, s.addr)]);
                    } else if (s.kind === 'fill') run('fill', [s.d, s.x & 0xff, s.n]);
                    else if (s.kind === 'copy') run('copy', [s.d, s.x, s.n]);
                    else if (s.kind === 'init') run('init', [s.d, s.x % 9001, s.n % 9001]);
                    else if (s.kind === 'begin') {
                        t.log.begin();
                        snapshots.push(p.heap().slice());
                    } else if (snapshots.length > 0 && s.kind === 'commit') {
                        t.log.commit();
                        snapshots.pop();
                    } else if (snapshots.length > 0) {
                        if (s.kind === 'trap') run('store_then_trap', [s.addr, 77]);
                        t.log.rollback();
                        p.heap().set(snapshots.pop()!);
                    }
                    expectSameBytes(t.heap(), p.heap());
                }
                while (snapshots.length > 0) {
                    t.log.rollback();
                    p.heap().set(snapshots.pop()!);
                    expectSameBytes(t.heap(), p.heap());
                }
            }),
            { numRuns: 200 }
        );
    });

    it('leaves a module with an unknown opcode unchanged (fallback to full snapshots)', () => {
        const simd = writerModule([
            // v128.const 0; drop: SIMD is outside the supported set.
            { export: 'simd', body: [0xfd, 0x0c, ...new Array(16).fill(0), ...op.drop] }
        ]);
        const bytes = wasmModule(simd);
        const result = rewriteModule(bytes);
        expect(result.tracked).toBe(false);
        expect(result.reason).toMatch(/opcode 0xfd/);
        expect(result.bytes).toBe(bytes);
    });
});

describe('dirty-page rewrite of the Azle canisters', () => {
    it.each(['data_shard', 'router', 'factory'])(
        'rewrites %s, plain and instrumented for counting',
        (name) => {
            const raw = new Uint8Array(readFileSync(resolve(ROOT, `.azle/${name}/${name}.wasm`)));
            for (const build of [raw, instrumentForCounting(raw)]) {
                const rewritten = rewriteModule(exposeInternals(build).bytes);
                expect(rewritten.tracked, rewritten.reason).toBe(true);
                expect(WebAssembly.validate(rewritten.bytes)).toBe(true);
            }
        }
    );
});

/** A canister without Candid: raw bytes in, raw bytes out, with ic0 host writes. */
function rawCanister(extra: FuncSpec[] = []): Uint8Array {
    const [argSize, argCopy, append, reply] = [0, 1, 2, 3];
    const ARG_AT = WASM_PAGE - 5; // host writes across a page boundary
    const copyArg = [...op.i32(ARG_AT), ...op.i32(0), ...op.call(argSize), ...op.call(argCopy)];
    return wasmModule({
        memoryPages: 3,
        imports: [
            { module: 'ic0', name: 'msg_arg_data_size', params: [], results: [I32] },
            { module: 'ic0', name: 'msg_arg_data_copy', params: [I32, I32, I32] },
            { module: 'ic0', name: 'msg_reply_data_append', params: [I32, I32] },
            { module: 'ic0', name: 'msg_reply', params: [] }
        ],
        funcs: [
            // put: arg bytes to ARG_AT (host write), a fill elsewhere, reply.
            {
                export: 'canister_update put',
                body: [
                    ...copyArg,
                    ...op.i32(2 * WASM_PAGE + 10),
                    ...op.i32(0x42),
                    ...op.i32(300),
                    ...op.memoryFill,
                    ...op.call(reply)
                ]
            },
            { export: 'canister_update put_trap', body: [...copyArg, ...op.unreachable] },
            // grow_trap: grows by 2 pages, writes old and new pages, traps.
            {
                export: 'canister_update grow_trap',
                body: [
                    ...op.i32(2),
                    ...op.memoryGrow,
                    ...op.drop,
                    ...op.i32(4 * WASM_PAGE),
                    ...op.i32(7),
                    ...op.mem(0x36),
                    ...op.i32(64),
                    ...op.i32(7),
                    ...op.mem(0x36),
                    ...op.unreachable
                ]
            },
            // dump: the whole heap as the reply.
            {
                export: 'canister_query dump',
                body: [
                    ...op.i32(0),
                    0x3f,
                    0x00, // memory.size
                    ...op.i32(16),
                    0x74, // i32.shl
                    ...op.call(append),
                    ...op.call(reply)
                ]
            },
            // scribble (query): writes everywhere, replies; the writes are discarded.
            {
                export: 'canister_query scribble',
                body: [
                    ...copyArg,
                    ...op.i32(0),
                    ...op.i32(0x33),
                    ...op.i32(3 * WASM_PAGE - 1),
                    ...op.memoryFill,
                    ...op.call(reply)
                ]
            },
            ...extra
        ]
    });
}

describe('transactions of a raw canister on the emulator', () => {
    const variants: [string, Uint8Array, boolean][] = [
        ['tracked', rawCanister(), true],
        [
            'fallback (unknown opcode)',
            rawCanister([{ body: [0xfd, 0x0c, ...new Array(16).fill(0), ...op.drop] }]),
            false
        ]
    ];
    for (const [label, wasm, dirtyPages] of variants) {
        describe(label, () => {
            let ic: LocalIc;
            let canisterId: Awaited<ReturnType<LocalIc['createCanister']>>;
            const dump = async () => ic.queryCall({ canisterId, method: 'dump' });
            const update = (method: string, arg: number[]) =>
                ic.updateCall({ canisterId, method, arg: Uint8Array.from(arg) });

            beforeAll(async () => {
                ic = await LocalIc.create();
                canisterId = await ic.createCanister();
                await ic.installCode({ canisterId, wasm, arg: new Uint8Array(0) });
            });
            afterAll(async () => {
                await ic?.tearDown();
            });

            it(`uses ${dirtyPages ? 'page undo logs' : 'full heap snapshots'}`, () => {
                expect(ic.raw.canister(canisterId).code!.dirtyPages).toBe(dirtyPages);
            });

            it('keeps an update’s host and Wasm writes', async () => {
                await update('put', [9, 8, 7, 6, 5, 4, 3]);
                const heap = await dump();
                expect([...heap.subarray(WASM_PAGE - 5, WASM_PAGE + 2)]).toEqual([
                    9, 8, 7, 6, 5, 4, 3
                ]);
                expect(heap[2 * WASM_PAGE + 10]).toBe(0x42);
            });

            it('rolls back host writes (msg_arg_data_copy) of a trapped update', async () => {
                const before = await dump();
                await expect(update('put_trap', [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])).rejects.toThrow(
                    /unreachable/
                );
                expectSameBytes(await dump(), before);
            });

            it('discards a query’s writes', async () => {
                const before = await dump();
                await ic.queryCall({ canisterId, method: 'scribble', arg: Uint8Array.from([5]) });
                expectSameBytes(await dump(), before);
            });

            it('restores the heap at its old size after a trap that grew it', async () => {
                const before = await dump();
                await expect(update('grow_trap', [])).rejects.toThrow(/unreachable/);
                const after = await dump();
                expect(after.length).toBe(3 * WASM_PAGE);
                expectSameBytes(after, before);
                // The fresh instance keeps working, tracking included.
                await update('put', [1, 2, 3, 4, 5, 6, 7]);
                await expect(update('put_trap', [0, 0, 0])).rejects.toThrow(/unreachable/);
                expect([...(await dump()).subarray(WASM_PAGE - 5, WASM_PAGE + 2)]).toEqual([
                    1, 2, 3, 4, 5, 6, 7
                ]);
            });
        });
    }
});

describe('instruction counts with dirty-page tracking', () => {
    let wasms: Record<FixtureName, Uint8Array>;

    beforeAll(async () => {
        wasms = await fixtureWasms();
    });

    afterAll(() => setDirtyPageTracking(true));

    /** Runs a fixed script on a fresh counting instance; returns the instructions per message. */
    async function counts(counter: Uint8Array): Promise<string[]> {
        const ic = await createTestIc({ countInstructions: true, seed: 42 });
        try {
            const { actor } = await install(ic, { ...wasms, counter }, 'counter');
            await actor.inc();
            await actor.put('key', 'value');
            await actor.get();
            await expect(actor.inc_then_trap()).rejects.toThrow();
            await expect(actor.grow_then_trap(2)).rejects.toThrow();
            await actor.inc();
            await actor.inc_in_query();
            // Installation differs (a gzipped module is uploaded in chunks): compare the messages.
            return ic
                .getMessageTrace()
                .filter((e) => e.kind !== 'management')
                .map((e) => `${e.method}:${e.instructions}`);
        } finally {
            await ic.tearDown();
        }
    }

    it('counts exactly the same instructions as full snapshots', async () => {
        setDirtyPageTracking(true);
        const tracked = await counts(wasms.counter);
        setDirtyPageTracking(false);
        // Other bytes (gzipped), so the engine's module cache compiles the module again.
        const full = await counts(gzipSync(wasms.counter));
        setDirtyPageTracking(true);
        expect(tracked.length).toBeGreaterThan(4);
        expect(tracked).toEqual(full);
    });
});
