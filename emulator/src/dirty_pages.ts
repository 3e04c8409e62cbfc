/**
 * Dirty-page tracking for the emulator's transactions: instead of copying the whole Wasm heap before
 * every message, the module is rewritten once so that the first write to each 4 KiB undo page in a
 * transaction saves that page's old contents into an undo log; a rollback copies back only those
 * pages (as the replica, which tracks the OS pages a message dirtied).
 *
 * The rewrite (`trackDirtyPages`, cached on disk by the module's hash):
 * - moves the canister's heap up by `HEAP_BASE` (3 MiB + 64 KiB) in the Wasm memory: every load
 *   and store gets `HEAP_BASE` added to its static offset, `memory.copy` / `fill` / `init` to their
 *   addresses, active data segments to their offsets; `memory.size` and `memory.grow` report pages
 *   of the heap alone (the memory's limits grow by the pages below). Addresses, bounds and traps
 *   stay exactly those of the original module, except that the heap can grow to 4 GiB minus
 *   (3 MiB + 128 KiB) instead of 4 GiB (`MAX_HEAP_PAGES`);
 * - below the heap, which the canister cannot address, lie the marks (one byte per undo page of a
 *   4 GiB memory, non-zero when the page was already saved in the current transaction), the arena's
 *   slots (the page number of each copy) and the arena (`ARENA_PAGES` page copies);
 * - adds the import `__emu.save_pages(start: i32, length: i32)` (function indices after it shift by
 *   one everywhere: calls, `ref.func`, exports, elements, start) and the exported global
 *   `ARENA_USED_EXPORT` (arena slots in use);
 * - before every store (`i32/i64/f32/f64.store*`) inserts an inline check: unless the mark byte of
 *   the store's page is set and the store stays inside that page, call an added `save_store(ea,
 *   width)`, which copies each unmarked page into the next arena slot and marks it, or calls
 *   `save_pages` when the arena is full or no transaction is open; the operands are stashed in
 *   fresh locals;
 * - before `memory.copy` / `memory.fill` / `memory.init` calls a small added function
 *   `check(dst, n)` that calls `save_pages` unless the range's first and last pages are marked and
 *   it is at most a page long.
 * An opcode outside the supported set (MVP, sign-ext, non-trapping float-to-int, bulk memory,
 * reference types, multi-value), memory64, an imported or second memory, or a data segment whose
 * offset is not a constant leaves the module unchanged (`tracked: false`): the canister then falls
 * back to full heap snapshots. The injected code runs after `ic-wasm instrument` and never touches
 * its counter, so counted instructions are unchanged. `save_pages` ignores a range outside the
 * heap: the instruction then traps before writing, with the same error as without the rewrite.
 *
 * The runtime (`PageUndoLog`) keeps one undo log per open (nested) transaction: page number → the
 * page's contents when that level first wrote it. It is bounded by the memory: at most one copy of
 * each page per level, plus the copies of the inner levels it committed (so at most the nesting
 * depth times the memory). Page numbers and sizes there are of the whole Wasm memory (heap
 * addresses plus `HEAP_BASE`).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** log2 of the tracking granularity: 4 KiB undo pages, as the replica tracks OS pages. */
export const UNDO_PAGE_SHIFT = 12;
/** Bytes per undo page: a write saves the undo pages it touches. */
export const UNDO_PAGE_BYTES = 1 << UNDO_PAGE_SHIFT;
/** Undo pages of a 32-bit memory (4 GiB): one mark byte each, at the start of the memory. */
export const UNDO_PAGE_COUNT = 2 ** (32 - UNDO_PAGE_SHIFT);
const WASM_PAGE_BYTES = 65_536;
/**
 * Page copies the undo logs keep in the memory below the heap (the arena), made by the module
 * itself without calling the host; beyond that the host keeps the copies. A message of the Azle
 * canisters here writes about 200-300 pages; a larger arena makes every instance larger, which a
 * replacement instance (after a rolled-back growth) pays for in allocation and garbage collection.
 */
export const ARENA_PAGES = 512;
/** The arena's slots: the page number of each copy (u32), after the marks. */
const SLOTS_AT = UNDO_PAGE_COUNT;
/** The arena's page copies, after the slots. */
const ARENA_AT = SLOTS_AT + WASM_PAGE_BYTES;
/** Where the canister's heap starts in a rewritten module's memory: marks, slots, arena below. */
export const HEAP_BASE = ARENA_AT + ARENA_PAGES * UNDO_PAGE_BYTES;
/** Export name of the global the rewrite adds: arena slots in use (`ARENA_PAGES`: none free). */
export const ARENA_USED_EXPORT = '__emu_arena_used';
/** Wasm pages below the heap. */
const BASE_PAGES = HEAP_BASE / WASM_PAGE_BYTES;
/**
 * Most Wasm pages of a rewritten module's memory: one less than 4 GiB, so that an address the shift
 * would carry past 2^32 can be replaced by 2^32 - 1, which is always out of bounds.
 */
const MAX_MEMORY_PAGES = 65_535;
/** Most heap pages of a rewritten module (the original may grow to 65,536). */
export const MAX_HEAP_PAGES = MAX_MEMORY_PAGES - BASE_PAGES;
/** Import module and name of the host function that saves pages. */
export const SAVE_IMPORT_MODULE = '__emu';
export const SAVE_IMPORT_NAME = 'save_pages';

// Change when the rewrite changes, so cached outputs of older versions are not reused (never
// 'dirty-pages-v4': stale outputs of an abandoned experiment may carry that name).
const CACHE_VERSION = 'heap-base-marks-v1';
/** Bound on section and vector counts while parsing (a Wasm module has far fewer). */
const MAX_ENTRIES = 10_000_000;
/** Free page buffers kept for reuse (8 MiB); beyond that they are left to the GC. */
const MAX_POOLED_PAGES = (8 << 20) / UNDO_PAGE_BYTES;

/** The result of `trackDirtyPages`. */
export interface TrackedModule {
    bytes: Uint8Array;
    /** False when the module was left unchanged (unknown opcode, no memory, memory64). */
    tracked: boolean;
    /** Why the module was not rewritten (for diagnostics). */
    reason?: string;
}

/** Raised by the decoder for a construct the rewrite does not support (means: fall back). */
class Unsupported extends Error {}

/**
 * Rewrites a module for dirty-page tracking (see the file comment), caching the result on disk by
 * the module's hash. Returns the module unchanged with `tracked: false` when it cannot be rewritten.
 *
 * @example
 * const { bytes, tracked } = trackDirtyPages(exposeInternals(raw).bytes);
 */
export function trackDirtyPages(wasm: Uint8Array): TrackedModule {
    // The layout constants are part of the key: the host and a cached module must agree on them.
    const layout = `${CACHE_VERSION}:${UNDO_PAGE_SHIFT}:${ARENA_PAGES}:${HEAP_BASE}`;
    const key = createHash('sha256').update(layout).update(wasm).digest('hex');
    const dir = join(tmpdir(), 'agrilends-dirty-pages');
    const cached = join(dir, `${key}.wasm`);
    if (existsSync(cached)) return { bytes: new Uint8Array(readFileSync(cached)), tracked: true };
    const result = rewriteModule(wasm);
    if (result.tracked) {
        mkdirSync(dir, { recursive: true });
        // Write then rename, so parallel test workers never read a half-written file.
        const part = join(dir, `${key}.${process.pid}.part`);
        writeFileSync(part, result.bytes);
        renameSync(part, cached);
    }
    return result;
}

/** The rewrite itself, without the cache. */
export function rewriteModule(wasm: Uint8Array): TrackedModule {
    try {
        return { bytes: new ModuleRewriter(wasm).rewrite(), tracked: true };
    } catch (e) {
        if (e instanceof Unsupported) return { bytes: wasm, tracked: false, reason: e.message };
        throw e;
    }
}

// ---- encoding helpers ---------------------------------------------------------------------------

/** A growable byte buffer. */
class Out {
    bytes = new Uint8Array(1024);
    length = 0;

    private reserve(n: number): void {
        if (this.length + n <= this.bytes.length) return;
        let size = this.bytes.length * 2;
        while (size < this.length + n) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.bytes.subarray(0, this.length));
        this.bytes = next;
    }
    byte(b: number): void {
        this.reserve(1);
        this.bytes[this.length++] = b;
    }
    span(src: Uint8Array, start: number, end: number): void {
        this.reserve(end - start);
        this.bytes.set(src.subarray(start, end), this.length);
        this.length += end - start;
    }
    all(src: Uint8Array | number[]): void {
        for (const b of src) this.byte(b);
    }
    u32(v: number): void {
        do {
            const b = v & 0x7f;
            v = Math.floor(v / 128);
            this.byte(v === 0 ? b : b | 0x80);
        } while (v !== 0);
    }
    s32(v: number): void {
        v |= 0;
        for (;;) {
            const b = v & 0x7f;
            v >>= 7;
            const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
            this.byte(done ? b : b | 0x80);
            if (done) return;
        }
    }
    result(): Uint8Array {
        return this.bytes.slice(0, this.length);
    }
}

function u32Bytes(v: number): number[] {
    const o = new Out();
    o.u32(v);
    return [...o.result()];
}

/** A cursor over module bytes. */
class In {
    constructor(
        readonly bytes: Uint8Array,
        public pos: number,
        readonly end: number
    ) {}
    byte(): number {
        if (this.pos >= this.end) throw new Unsupported('unexpected end of section');
        return this.bytes[this.pos++];
    }
    u32(): number {
        let result = 0;
        for (let shift = 0; shift < 35; shift += 7) {
            const b = this.byte();
            result += (b & 0x7f) * 2 ** shift;
            if ((b & 0x80) === 0) return result;
        }
        throw new Unsupported('LEB128 u32 too long');
    }
    /** Skips a LEB128 number of up to `maxBytes` bytes (s32: 5, s33: 5, s64: 10). */
    skipLeb(maxBytes: number): void {
        for (let i = 0; i < maxBytes; i++) if ((this.byte() & 0x80) === 0) return;
        throw new Unsupported('LEB128 too long');
    }
    count(): number {
        const n = this.u32();
        if (n > MAX_ENTRIES) throw new Unsupported('vector too long');
        return n;
    }
    skipName(): void {
        const n = this.u32();
        this.pos += n;
        if (this.pos > this.end) throw new Unsupported('name overruns section');
    }
    /** A signed LEB128 32-bit number (an `i32.const` immediate). */
    s32(): number {
        let result = 0;
        let shift = 0;
        for (let i = 0; i < 5; i++) {
            const b = this.byte();
            result |= (b & 0x7f) << shift;
            shift += 7;
            if ((b & 0x80) === 0) {
                return shift < 32 && b & 0x40 ? result | (-1 << shift) : result;
            }
        }
        throw new Unsupported('LEB128 s32 too long');
    }
    /** The flags of a memory's or table's limits: 0 (min) or 1 (min and max). */
    limitsFlags(): number {
        const flags = this.byte();
        if (flags > 1) throw new Unsupported(`limits flags ${flags} (shared or 64-bit)`);
        return flags;
    }
    skipLimits(): void {
        const flags = this.limitsFlags();
        this.u32();
        if (flags & 1) this.u32();
    }
}

interface Section {
    id: number;
    /** Offset of the id byte. */
    start: number;
    contentStart: number;
    end: number;
}

const SEC_CUSTOM = 0;
const SEC_TYPE = 1;
const SEC_IMPORT = 2;
const SEC_FUNCTION = 3;
const SEC_MEMORY = 5;
const SEC_GLOBAL = 6;
const SEC_EXPORT = 7;
const SEC_START = 8;
const SEC_ELEMENT = 9;
const SEC_CODE = 10;
const SEC_DATA = 11;
/** Where each known section goes in a module (data count, 12, sits between element and code). */
const SECTION_ORDER: Record<number, number> = {
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    5: 5,
    6: 6,
    7: 7,
    8: 8,
    9: 9,
    12: 10,
    10: 11,
    11: 12
};

const T_I32 = 0x7f;
const T_I64 = 0x7e;
const T_F32 = 0x7d;
const T_F64 = 0x7c;
const T_FUNCREF = 0x70;
const T_EXTERNREF = 0x6f;
const VALUE_TYPES = new Set([T_I32, T_I64, T_F32, T_F64, T_FUNCREF, T_EXTERNREF]);

/** Stores: opcode → [value type, width in bytes]. */
const STORES: Record<number, [number, number]> = {
    0x36: [T_I32, 4],
    0x37: [T_I64, 8],
    0x38: [T_F32, 4],
    0x39: [T_F64, 8],
    0x3a: [T_I32, 1],
    0x3b: [T_I32, 2],
    0x3c: [T_I64, 1],
    0x3d: [T_I64, 2],
    0x3e: [T_I64, 4]
};

// Fresh locals added to a function that writes memory or grows it, relative to its first new local.
const L_ADDR = 0; // i32: the store address / the destination of a bulk operation
const L_I32 = 1; // i32: a stored value / the source or fill value of a bulk operation
const L_LEN = 2; // i32: the store's effective address / the length of a bulk operation / grow's result
const L_I64 = 3;
const L_F32 = 4;
const L_F64 = 5;
const NEW_LOCALS = [
    [3, T_I32],
    [1, T_I64],
    [1, T_F32],
    [1, T_F64]
];
const VALUE_LOCAL: Record<number, number> = {
    [T_I32]: L_I32,
    [T_I64]: L_I64,
    [T_F32]: L_F32,
    [T_F64]: L_F64
};
/** The largest static offset a memarg can hold (memory32). */
const MAX_OFFSET = 0xffff_ffff;

class ModuleRewriter {
    private readonly sections: Section[];
    private typeCount = 0;
    /** Parameter count of each function type (undefined for other types). */
    private readonly paramCounts: number[] = [];
    private funcImports = 0;
    private globalImports = 0;
    private definedGlobals = 0;
    /** The added global: arena slots in use. */
    private arenaGlobal = 0;
    /** Type index of each defined function. */
    private funcTypes: number[] = [];
    private hasMemory = false;
    private saveType = 0;
    private saveImport = 0;
    private checkFunc = 0;
    private saveStoreFunc = 0;

    constructor(private readonly wasm: Uint8Array) {
        if (wasm.length < 8 || wasm[0] !== 0 || wasm[1] !== 0x61 || wasm[4] !== 1) {
            throw new Unsupported('not a Wasm 1.0 module');
        }
        this.sections = [];
        const r = new In(wasm, 8, wasm.length);
        while (r.pos < wasm.length) {
            if (this.sections.length >= 1000) throw new Unsupported('too many sections');
            const start = r.pos;
            const id = r.byte();
            const size = r.u32();
            const contentStart = r.pos;
            if (contentStart + size > wasm.length) throw new Unsupported('section overruns');
            r.pos = contentStart + size;
            if (id !== SEC_CUSTOM && SECTION_ORDER[id] === undefined) {
                throw new Unsupported(`unknown section ${id}`);
            }
            this.sections.push({ id, start, contentStart, end: r.pos });
        }
    }

    private section(id: number): Section | undefined {
        return this.sections.find((s) => s.id === id);
    }

    private reader(s: Section): In {
        return new In(this.wasm, s.contentStart, s.end);
    }

    /** A function index after the new import: imported functions keep theirs. */
    private func(index: number): number {
        return index < this.funcImports ? index : index + 1;
    }

    rewrite(): Uint8Array {
        this.scan();
        if (!this.hasMemory) throw new Unsupported('module has no memory');
        const replaced = new Map<number, Uint8Array>();
        replaced.set(SEC_TYPE, this.typeSection());
        replaced.set(SEC_IMPORT, this.importSection());
        replaced.set(SEC_FUNCTION, this.functionSection());
        replaced.set(SEC_MEMORY, this.memorySection());
        replaced.set(SEC_GLOBAL, this.globalSection());
        replaced.set(SEC_EXPORT, this.exportSection());
        if (this.section(SEC_START)) replaced.set(SEC_START, this.startSection());
        if (this.section(SEC_ELEMENT)) replaced.set(SEC_ELEMENT, this.elementSection());
        replaced.set(SEC_CODE, this.codeSection());
        if (this.section(SEC_DATA)) replaced.set(SEC_DATA, this.dataSection());
        return this.assemble(replaced);
    }

    /** Reads the counts the rewrite needs (types, imports, functions, memory). */
    private scan(): void {
        const types = this.section(SEC_TYPE);
        if (types) {
            const r = this.reader(types);
            this.typeCount = r.count();
            for (let i = 0; i < this.typeCount; i++) {
                if (r.byte() !== 0x60) throw new Unsupported('non-function type');
                const params = r.count();
                for (let p = 0; p < params; p++) r.byte();
                const results = r.count();
                for (let p = 0; p < results; p++) r.byte();
                this.paramCounts.push(params);
            }
        }
        const imports = this.section(SEC_IMPORT);
        if (imports) {
            const r = this.reader(imports);
            const n = r.count();
            for (let i = 0; i < n; i++) {
                r.skipName();
                r.skipName();
                const kind = r.byte();
                if (kind === 0) {
                    r.u32();
                    this.funcImports++;
                } else if (kind === 1) {
                    r.byte();
                    r.skipLimits();
                } else if (kind === 2) {
                    throw new Unsupported('imported memory');
                } else if (kind === 3) {
                    r.byte();
                    r.byte();
                    this.globalImports++;
                } else throw new Unsupported(`import kind ${kind}`);
            }
        }
        const funcs = this.section(SEC_FUNCTION);
        if (funcs) {
            const r = this.reader(funcs);
            const n = r.count();
            for (let i = 0; i < n; i++) this.funcTypes.push(r.u32());
        }
        const memory = this.section(SEC_MEMORY);
        if (memory) {
            const n = this.reader(memory).count();
            if (n > 1) throw new Unsupported('more than one memory');
            this.hasMemory = n === 1;
        }
        if (this.section(SEC_CODE) === undefined && this.funcTypes.length > 0) {
            throw new Unsupported('functions without a code section');
        }
        this.saveType = this.typeCount;
        this.saveImport = this.funcImports;
        this.checkFunc = this.funcImports + 1 + this.funcTypes.length;
        this.saveStoreFunc = this.checkFunc + 1;
        const globals = this.section(SEC_GLOBAL);
        if (globals) this.definedGlobals = this.reader(globals).count();
        this.arenaGlobal = this.globalImports + this.definedGlobals;
    }

    /** Appends the type `(i32, i32) -> ()` of the import and the helper. */
    private typeSection(): Uint8Array {
        const o = new Out();
        o.u32(this.typeCount + 1);
        const s = this.section(SEC_TYPE);
        if (s) {
            const r = this.reader(s);
            r.count();
            o.span(this.wasm, r.pos, s.end);
        }
        o.all([0x60, 2, T_I32, T_I32, 0]);
        return o.result();
    }

    private importSection(): Uint8Array {
        const o = new Out();
        const s = this.section(SEC_IMPORT);
        const r = s ? this.reader(s) : null;
        const n = r ? r.count() : 0;
        o.u32(n + 1);
        if (s && r) o.span(this.wasm, r.pos, s.end);
        const mod = Buffer.from(SAVE_IMPORT_MODULE);
        const name = Buffer.from(SAVE_IMPORT_NAME);
        o.u32(mod.length);
        o.all(mod);
        o.u32(name.length);
        o.all(name);
        o.byte(0);
        o.u32(this.saveType);
        return o.result();
    }

    private functionSection(): Uint8Array {
        const o = new Out();
        o.u32(this.funcTypes.length + 2);
        for (const t of this.funcTypes) o.u32(t);
        o.u32(this.saveType);
        o.u32(this.saveType);
        return o.result();
    }

    /** The memory with room for the marks below the heap: both limits grow by `BASE_PAGES`. */
    private memorySection(): Uint8Array {
        const r = this.reader(this.section(SEC_MEMORY)!);
        r.count();
        const flags = r.limitsFlags();
        const min = r.u32();
        const max = flags & 1 ? r.u32() : 65_536;
        if (min > MAX_HEAP_PAGES) throw new Unsupported(`initial memory of ${min} pages`);
        const o = new Out();
        o.u32(1);
        o.byte(1);
        o.u32(min + BASE_PAGES);
        o.u32(Math.min(max, MAX_HEAP_PAGES) + BASE_PAGES);
        return o.result();
    }

    /** Copies the globals (renumbering `ref.func`) and appends the arena's slots in use. */
    private globalSection(): Uint8Array {
        const s = this.section(SEC_GLOBAL);
        const r = s ? this.reader(s) : null;
        const o = new Out();
        const n = r ? r.count() : 0;
        o.u32(n + 1);
        for (let i = 0; r && i < n; i++) {
            o.byte(r.byte());
            o.byte(r.byte());
            this.constExpr(r, o);
        }
        // (global (mut i32) (i32.const ARENA_PAGES)): no transaction, no arena slot free.
        o.all([T_I32, 1, 0x41]);
        o.s32(ARENA_PAGES);
        o.byte(0x0b);
        return o.result();
    }

    private exportSection(): Uint8Array {
        const o = new Out();
        const s = this.section(SEC_EXPORT);
        const r = s ? this.reader(s) : null;
        const n = r ? r.count() : 0;
        o.u32(n + 1);
        const name = Buffer.from(ARENA_USED_EXPORT);
        o.u32(name.length);
        o.all(name);
        o.byte(3);
        o.u32(this.arenaGlobal);
        for (let i = 0; r && i < n; i++) {
            const nameStart = r.pos;
            r.skipName();
            o.span(this.wasm, nameStart, r.pos);
            const kind = r.byte();
            const index = r.u32();
            o.byte(kind);
            o.u32(kind === 0 ? this.func(index) : index);
        }
        return o.result();
    }

    private startSection(): Uint8Array {
        const o = new Out();
        o.u32(this.func(this.reader(this.section(SEC_START)!).u32()));
        return o.result();
    }

    private elementSection(): Uint8Array {
        const r = this.reader(this.section(SEC_ELEMENT)!);
        const o = new Out();
        const n = r.count();
        o.u32(n);
        for (let i = 0; i < n; i++) {
            const flags = r.u32();
            if (flags > 7) throw new Unsupported(`element segment flags ${flags}`);
            o.u32(flags);
            if (flags === 2 || flags === 6) o.u32(r.u32());
            if ((flags & 1) === 0) this.constExpr(r, o);
            if (flags & 3) o.byte(r.byte()); // elemkind or reftype
            const items = r.count();
            o.u32(items);
            for (let k = 0; k < items; k++) {
                if (flags & 4) this.constExpr(r, o);
                else o.u32(this.func(r.u32()));
            }
        }
        return o.result();
    }

    /** Active data segments move up with the heap: their offsets (constants) gain `HEAP_BASE`. */
    private dataSection(): Uint8Array {
        const s = this.section(SEC_DATA)!;
        const r = this.reader(s);
        const o = new Out();
        const n = r.count();
        o.u32(n);
        for (let i = 0; i < n; i++) {
            const flags = r.u32();
            if (flags > 2) throw new Unsupported(`data segment flags ${flags}`);
            o.u32(flags);
            if (flags === 2 && r.u32() !== 0) throw new Unsupported('data for another memory');
            if (flags === 2) o.u32(0);
            if (flags !== 1) {
                if (r.byte() !== 0x41) throw new Unsupported('data offset not a constant');
                const offset = r.s32() >>> 0;
                if (r.byte() !== 0x0b) throw new Unsupported('data offset not a constant');
                // Beyond 2^32 the segment cannot fit: the original fails to instantiate as well.
                if (offset + HEAP_BASE > MAX_OFFSET) throw new Unsupported('data offset too large');
                o.byte(0x41);
                o.s32(offset + HEAP_BASE);
                o.byte(0x0b);
            }
            const start = r.pos;
            const size = r.u32();
            r.pos += size;
            if (r.pos > s.end) throw new Unsupported('data segment overruns');
            o.span(this.wasm, start, r.pos);
        }
        return o.result();
    }

    /** Copies a constant expression, renumbering `ref.func`. */
    private constExpr(r: In, o: Out): void {
        for (let i = 0; i < 10_000; i++) {
            const at = r.pos;
            const op = r.byte();
            if (op === 0x0b) {
                o.byte(op);
                return;
            }
            if (op === 0xd2) {
                o.byte(op);
                o.u32(this.func(r.u32()));
                continue;
            }
            if (op === 0x41 || op === 0x23) r.skipLeb(5);
            else if (op === 0x42) r.skipLeb(10);
            else if (op === 0x43) r.pos += 4;
            else if (op === 0x44) r.pos += 8;
            else if (op === 0xd0) r.byte();
            else if (![0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e].includes(op)) {
                throw new Unsupported(`opcode 0x${op.toString(16)} in a constant expression`);
            }
            o.span(this.wasm, at, r.pos);
        }
        throw new Unsupported('constant expression too long');
    }

    private codeSection(): Uint8Array {
        const s = this.section(SEC_CODE)!;
        const r = this.reader(s);
        const n = r.count();
        if (n !== this.funcTypes.length) throw new Unsupported('code and function counts differ');
        const o = new Out();
        o.u32(n + 2);
        const body = new Out();
        for (let i = 0; i < n; i++) {
            const size = r.u32();
            const end = r.pos + size;
            if (end > s.end) throw new Unsupported('function body overruns');
            body.length = 0;
            this.functionBody(new In(this.wasm, r.pos, end), this.funcTypes[i], body);
            o.u32(body.length);
            o.span(body.bytes, 0, body.length);
            r.pos = end;
        }
        for (const helper of [this.checkBody(), this.saveStoreBody()]) {
            o.u32(helper.length);
            o.all(helper);
        }
        return o.result();
    }

    /**
     * `save_store(ea, width)` (an address of the whole memory), out of line so that the inline check
     * stays small: for each page of the store that is unmarked, copies it into the next arena slot
     * and marks it, or asks the host (`save_pages`) when the arena is full or no transaction is
     * open. A store below the heap (its address wrapped past 2^32) or reaching beyond the memory
     * traps: nothing to save.
     */
    private saveStoreBody(): number[] {
        const g = u32Bytes(this.arenaGlobal);
        const shift = [0x41, UNDO_PAGE_SHIFT];
        return [
            1,
            3,
            T_I32, // locals: $p (2), $end (3), $n (4)
            0x20,
            0,
            0x41,
            ...signedLeb(HEAP_BASE),
            0x49, // i32.lt_u
            0x0d,
            0, // br_if 0: return
            0x20,
            0,
            ...shift,
            0x76,
            0x21,
            2, // $p = ea >> SHIFT
            0x20,
            0,
            0x20,
            1,
            0x6a,
            0x41,
            1,
            0x6b,
            ...shift,
            0x76,
            0x21,
            3, // $end = (ea + width - 1) >> SHIFT
            0x3f,
            0,
            0x41,
            4,
            0x74,
            0x21,
            4, // $n = undo pages in the memory: memory.size << 4
            0x20,
            3,
            0x20,
            4,
            0x4f, // i32.ge_u: $end beyond the memory
            0x20,
            2,
            0x20,
            4,
            0x4f,
            0x72, // or $p beyond it (the range wraps past 2^32)
            0x0d,
            0, // br_if 0: return, the store traps
            0x03,
            0x40, // loop
            0x20,
            2,
            0x2d,
            0,
            0,
            0x45, // the mark byte of $p is 0
            0x04,
            0x40, // if
            0x23,
            ...g,
            0x41,
            ...signedLeb(ARENA_PAGES),
            0x49, // a slot is free
            0x04,
            0x40, // if
            0x23,
            ...g,
            ...shift,
            0x74,
            0x41,
            ...signedLeb(ARENA_AT),
            0x6a, // dst: ARENA_AT + used << SHIFT
            0x20,
            2,
            ...shift,
            0x74, // src: $p << SHIFT
            0x41,
            ...signedLeb(UNDO_PAGE_BYTES),
            0xfc,
            10,
            0,
            0, // memory.copy
            0x23,
            ...g,
            0x41,
            2,
            0x74,
            0x20,
            2,
            0x36,
            2,
            ...u32Bytes(SLOTS_AT), // slot: i32.store offset=SLOTS_AT (used << 2) $p
            0x23,
            ...g,
            0x41,
            1,
            0x6a,
            0x24,
            ...g, // used += 1
            0x20,
            2,
            0x41,
            1,
            0x3a,
            0,
            0, // i32.store8: mark $p
            0x05, // else
            0x20,
            2,
            ...shift,
            0x74,
            0x41,
            ...signedLeb(UNDO_PAGE_BYTES),
            0x10,
            ...u32Bytes(this.saveImport),
            0x0b,
            0x0b,
            0x20,
            2,
            0x41,
            1,
            0x6a,
            0x22,
            2,
            0x20,
            3,
            0x4d, // i32.le_u
            0x0d,
            0, // br_if: next page
            0x0b,
            0x0b
        ];
    }

    /**
     * `check(start, length)` (addresses of the whole memory): calls `save_pages` unless the first
     * and last page of the range are both marked and the range is at most a page long.
     */
    private checkBody(): number[] {
        const marked = (getEnd: number[]): number[] => [
            ...getEnd,
            0x41,
            UNDO_PAGE_SHIFT,
            0x76, // i32.shr_u
            0x2d,
            0,
            0, // i32.load8_u: the mark byte
            0x45 // i32.eqz
        ];
        return [
            0, // no locals
            ...marked([0x20, 0]),
            ...marked([0x20, 0, 0x20, 1, 0x6a, 0x41, 1, 0x6b]), // start + length - 1
            0x72, // i32.or
            0x20,
            1,
            0x41,
            ...signedLeb(UNDO_PAGE_BYTES),
            0x4b, // i32.gt_u
            0x72,
            0x04,
            0x40, // if
            0x20,
            0,
            0x20,
            1,
            0x10,
            ...u32Bytes(this.saveImport),
            0x0b,
            0x0b
        ];
    }

    /** Rewrites one function body into `o` (without its size prefix). */
    private functionBody(r: In, typeIndex: number, o: Out): void {
        const params = this.paramCounts[typeIndex];
        if (params === undefined) throw new Unsupported('function of an unknown type');
        const groupsStart = r.pos;
        const groups = r.count();
        const entriesStart = r.pos;
        let locals = 0;
        for (let g = 0; g < groups; g++) {
            locals += r.u32();
            const t = r.byte();
            if (!VALUE_TYPES.has(t)) throw new Unsupported(`local of type 0x${t.toString(16)}`);
        }
        const codeStart = r.pos;
        const writes = this.scanWrites(new In(this.wasm, codeStart, r.end));
        if (!writes) {
            o.span(this.wasm, groupsStart, codeStart);
        } else {
            o.u32(groups + NEW_LOCALS.length);
            o.span(this.wasm, entriesStart, codeStart);
            for (const [count, type] of NEW_LOCALS) {
                o.u32(count);
                o.byte(type);
            }
        }
        this.instructions(new In(this.wasm, codeStart, r.end), o, params + locals);
    }

    /** True when a body needs the fresh locals: a store, a bulk memory write or `memory.grow`. */
    private scanWrites(r: In): boolean {
        let found = false;
        decode(r, (op, sub) => {
            if (
                STORES[op] ||
                op === 0x40 ||
                (op === 0xfc && (sub === 8 || sub === 10 || sub === 11))
            ) {
                found = true;
            }
        });
        return found;
    }

    /**
     * Copies an instruction stream, moving memory accesses up by `HEAP_BASE`, injecting the checks
     * and renumbering function indices.
     */
    private instructions(r: In, o: Out, firstNew: number): void {
        const local = (k: number) => firstNew + k;
        const w = this.wasm;
        let copied = r.pos;
        const flush = (upTo: number) => {
            o.span(w, copied, upTo);
        };
        const get = (k: number) => {
            o.byte(0x20);
            o.u32(local(k));
        };
        const set = (k: number) => {
            o.byte(0x21);
            o.u32(local(k));
        };
        decode(r, (op, sub, at, immStart) => {
            if (op === 0x10 || op === 0xd2) {
                flush(at);
                o.byte(op);
                o.u32(this.func(readU32At(w, immStart)));
                copied = r.pos;
                return;
            }
            if (op >= 0x28 && op <= 0x3e) {
                const m = new In(w, immStart, r.end);
                const align = m.u32();
                const offset = m.u32() + HEAP_BASE;
                flush(at);
                const store = STORES[op];
                if (store) {
                    this.storeCheck(o, store[1], offset, local(VALUE_LOCAL[store[0]]), local);
                } else if (offset > MAX_OFFSET) {
                    // Out of bounds whatever the address: trap as the original does.
                    o.all([0x1a, 0x41, 0x7f]); // drop; i32.const -1
                }
                o.byte(op);
                o.u32(align);
                o.u32(Math.min(offset, MAX_OFFSET));
                copied = r.pos;
                return;
            }
            if (op === 0x3f) {
                // memory.size of the heap alone.
                flush(r.pos);
                o.byte(0x41);
                o.s32(BASE_PAGES);
                o.byte(0x6b); // i32.sub
                copied = r.pos;
                return;
            }
            if (op === 0x40) {
                // memory.grow: the old size of the heap alone, -1 stays -1.
                flush(r.pos);
                o.byte(0x22);
                o.u32(local(L_LEN)); // local.tee $old
                o.byte(0x41);
                o.s32(BASE_PAGES);
                o.all([0x6b, 0x41, 0x7f]); // old - BASE_PAGES; i32.const -1
                get(L_LEN);
                o.all([0x41, 0x7f, 0x47, 0x1b]); // i32.const -1; i32.ne; select
                copied = r.pos;
                return;
            }
            if (op === 0xfc && (sub === 8 || sub === 10 || sub === 11)) {
                // Operands: destination, source (copy) / value (fill) / segment offset (init), length.
                flush(at);
                set(L_LEN);
                set(L_I32);
                set(L_ADDR);
                this.moveUp(o, local(L_ADDR));
                if (sub === 10) this.moveUp(o, local(L_I32));
                get(L_ADDR);
                get(L_LEN);
                o.byte(0x10);
                o.u32(this.checkFunc);
                for (const l of [L_ADDR, L_I32, L_LEN]) get(l);
                copied = at;
            }
        });
        flush(r.pos);
    }

    /**
     * Adds `HEAP_BASE` to the address in local `l`; an address the addition carries past 2^32
     * (out of bounds in the original) becomes 2^32 - 1 (out of bounds here, even for length 0).
     *
     *   i32.const -1; local.get $l; i32.const BASE; i32.add; local.tee $l
     *   local.get $l; i32.const BASE; i32.lt_u; select; local.set $l   (-1 when carried)
     */
    private moveUp(o: Out, l: number): void {
        o.all([0x41, 0x7f, 0x20]);
        o.u32(l);
        o.byte(0x41);
        o.s32(HEAP_BASE);
        o.byte(0x6a);
        o.byte(0x22);
        o.u32(l);
        o.byte(0x20);
        o.u32(l);
        o.byte(0x41);
        o.s32(HEAP_BASE);
        o.all([0x49, 0x1b]); // i32.lt_u; select
        o.byte(0x21);
        o.u32(l);
    }

    /**
     * Code before a store of `width` bytes at `addr + offset` (stack: addr, value; `offset`
     * already includes `HEAP_BASE`). Inline fast path: the mark byte of the page is set and the
     * store does not cross into the next page; else `save_store(ea, width)`. Ends with the store's
     * operands on the stack, for the store that follows with the new offset.
     *
     *   local.set $value; local.tee $addr; i32.const offset; i32.add; local.tee $ea
     *   i32.const SHIFT; i32.shr_u; i32.load8_u; i32.eqz
     *   [local.get $ea; i32.const PAGE-1; i32.and; i32.const PAGE-width; i32.gt_u; i32.or]
     *   if; local.get $ea; i32.const width; call $save_store; end
     *   local.get $addr; local.get $value
     */
    private storeCheck(
        o: Out,
        width: number,
        offset: number,
        value: number,
        local: (k: number) => number
    ): void {
        const addr = local(L_ADDR);
        const ea = local(L_LEN);
        o.byte(0x21);
        o.u32(value);
        if (offset > MAX_OFFSET) {
            // Out of bounds whatever the address: trap as the original does, writing nothing.
            o.all([0x1a, 0x41, 0x7f, 0x20]); // drop; i32.const -1; local.get $value
            o.u32(value);
            return;
        }
        o.byte(0x22);
        o.u32(addr);
        // The effective address wraps at 2^32 here; such a store traps anyway (the saved page is
        // then merely unneeded), and the mark byte read stays below HEAP_BASE.
        o.byte(0x41);
        o.s32(offset | 0);
        o.byte(0x6a); // i32.add
        o.byte(0x22);
        o.u32(ea);
        o.all([0x41, UNDO_PAGE_SHIFT, 0x76, 0x2d, 0, 0, 0x45]); // shr_u; i32.load8_u; i32.eqz
        if (width > 1) {
            o.byte(0x20);
            o.u32(ea);
            o.byte(0x41);
            o.s32(UNDO_PAGE_BYTES - 1);
            o.byte(0x71); // i32.and
            o.byte(0x41);
            o.s32(UNDO_PAGE_BYTES - width);
            o.byte(0x4b); // i32.gt_u
            o.byte(0x72); // i32.or
        }
        o.all([0x04, 0x40, 0x20]); // if; local.get $ea
        o.u32(ea);
        o.byte(0x41);
        o.s32(width);
        o.byte(0x10);
        o.u32(this.saveStoreFunc);
        o.byte(0x0b);
        o.byte(0x20);
        o.u32(addr);
        o.byte(0x20);
        o.u32(value);
    }

    private assemble(replaced: Map<number, Uint8Array>): Uint8Array {
        const o = new Out();
        o.span(this.wasm, 0, 8);
        const emit = (id: number, content: Uint8Array) => {
            o.byte(id);
            o.u32(content.length);
            o.span(content, 0, content.length);
        };
        const done = new Set<number>();
        const emitMissingBefore = (order: number) => {
            for (const [id, content] of replaced) {
                if (!done.has(id) && SECTION_ORDER[id] < order) {
                    emit(id, content);
                    done.add(id);
                }
            }
        };
        for (const s of this.sections) {
            if (s.id === SEC_CUSTOM) {
                const r = this.reader(s);
                const nameLen = r.u32();
                const name = Buffer.from(this.wasm.subarray(r.pos, r.pos + nameLen)).toString(
                    'utf8'
                );
                // Function names are indexed by function: dropped rather than renumbered.
                if (name !== 'name') o.span(this.wasm, s.start, s.end);
                continue;
            }
            emitMissingBefore(SECTION_ORDER[s.id]);
            const content = replaced.get(s.id);
            if (content) {
                emit(s.id, content);
                done.add(s.id);
            } else o.span(this.wasm, s.start, s.end);
        }
        emitMissingBefore(Infinity);
        return o.result();
    }
}

function readU32At(bytes: Uint8Array, pos: number): number {
    return new In(bytes, pos, bytes.length).u32();
}

function signedLeb(v: number): number[] {
    const o = new Out();
    o.s32(v);
    return [...o.result()];
}

/**
 * Decodes an instruction stream to its final `end`, calling `visit(op, sub, at, immStart)` after
 * each instruction's immediates were read (`r.pos` is then the next instruction). `sub` is the
 * sub-opcode of 0xFC instructions. Throws `Unsupported` for any opcode outside the supported set.
 */
function decode(
    r: In,
    visit: (op: number, sub: number, at: number, immStart: number) => void
): void {
    let depth = 1;
    while (r.pos < r.end) {
        const at = r.pos;
        const op = r.byte();
        const immStart = r.pos;
        let sub = -1;
        if (op >= 0x45 && op <= 0xc4) {
            // numeric operators (MVP and sign extension): no immediates
        } else if (op >= 0x20 && op <= 0x26) {
            r.u32(); // local/global/table index
        } else if (op >= 0x28 && op <= 0x3e) {
            const align = r.u32();
            if (align >= 64) throw new Unsupported('memarg with a memory index (multi-memory)');
            r.u32();
        } else {
            switch (op) {
                case 0x00: // unreachable
                case 0x01: // nop
                case 0x05: // else
                case 0x0f: // return
                case 0x1a: // drop
                case 0x1b: // select
                case 0xd1: // ref.is_null
                    break;
                case 0x02:
                case 0x03:
                case 0x04:
                    blockType(r);
                    depth++;
                    break;
                case 0x0b:
                    depth--;
                    break;
                case 0x0c:
                case 0x0d:
                case 0x10:
                case 0xd2:
                    r.u32();
                    break;
                case 0x0e: {
                    const n = r.count();
                    for (let i = 0; i <= n; i++) r.u32();
                    break;
                }
                case 0x11:
                    r.u32();
                    r.u32();
                    break;
                case 0x1c: {
                    const n = r.count();
                    for (let i = 0; i < n; i++) r.byte();
                    break;
                }
                case 0x3f:
                case 0x40:
                    if (r.byte() !== 0) throw new Unsupported('memory index other than 0');
                    break;
                case 0x41:
                    r.skipLeb(5);
                    break;
                case 0x42:
                    r.skipLeb(10);
                    break;
                case 0x43:
                    r.pos += 4;
                    break;
                case 0x44:
                    r.pos += 8;
                    break;
                case 0xd0:
                    r.byte();
                    break;
                case 0xfc:
                    sub = r.u32();
                    prefixedImmediates(r, sub);
                    break;
                default:
                    throw new Unsupported(`opcode 0x${op.toString(16)}`);
            }
        }
        if (r.pos > r.end) throw new Unsupported('instruction overruns the function body');
        visit(op, sub, at, immStart);
        if (depth === 0) {
            if (r.pos !== r.end) throw new Unsupported('bytes after the final end');
            return;
        }
    }
    throw new Unsupported('function body without a final end');
}

function blockType(r: In): void {
    const b = r.bytes[r.pos];
    if (b === 0x40 || VALUE_TYPES.has(b)) {
        r.pos++;
        return;
    }
    if (b === 0x7b) throw new Unsupported('v128 block type');
    r.skipLeb(5); // s33 type index (multi-value)
}

/** Immediates of the 0xFC instructions: saturating truncations, bulk memory, table operations. */
function prefixedImmediates(r: In, sub: number): void {
    const zero = () => {
        if (r.byte() !== 0) throw new Unsupported('memory index other than 0');
    };
    if (sub <= 7) return;
    switch (sub) {
        case 8: // memory.init data, 0
            r.u32();
            zero();
            return;
        case 9: // data.drop
        case 13: // elem.drop
        case 15: // table.grow
        case 16: // table.size
        case 17: // table.fill
            r.u32();
            return;
        case 10: // memory.copy 0 0
            zero();
            zero();
            return;
        case 11: // memory.fill 0
            zero();
            return;
        case 12: // table.init elem table
        case 14: // table.copy table table
            r.u32();
            r.u32();
            return;
        default:
            throw new Unsupported(`opcode 0xfc ${sub}`);
    }
}

// ---- runtime ------------------------------------------------------------------------------------

/**
 * The marks of one instance: views of its memory (the mark bytes, the arena and its slots), the
 * arena's slots-in-use global, and the pages the host marked without an arena slot (for
 * O(marked) clears).
 */
interface InstanceMarks {
    instance: WebAssembly.Instance | null;
    memory: WebAssembly.Memory | null;
    used: WebAssembly.Global | null;
    list: number[];
    /** A view of the whole memory; a grown memory detaches it (length 0), which re-makes it. */
    view: Uint8Array;
    /** The arena's slots (page numbers); re-made with `view`. */
    slots: Uint32Array;
}

/**
 * One open transaction: its arena slots (from `arenaStart` to the next level's, or to the slots in
 * use), the copies the host kept when the arena was full (`copies[i]` is page `pages[i]`, oldest
 * first), and the memory size then.
 */
interface UndoLevel {
    arenaStart: number;
    pages: number[];
    copies: Uint8Array[];
    sizeBytes: number;
}

/** What `PageUndoLog.rollback` did, for the caller to finish (a heap that grew needs a new instance). */
export interface RolledBack {
    /** Memory size when the transaction began: a larger memory must be replaced by one this size. */
    sizeBytes: number;
    /** Pages copied back. */
    restoredPages: number;
}

const EMPTY_VIEW = new Uint8Array(0);
const EMPTY_SLOTS = new Uint32Array(0);

/**
 * Undo logs of a canister's nested transactions over a tracked module's heap. `instanceImports`
 * gives a new instance its `__emu.save_pages`; `attach` binds the instance once created.
 *
 * Invariant: a page of the current instance is marked exactly when the innermost level (with the
 * inner levels it committed) saved it, or it was written outside any transaction (or it lies beyond
 * the memory size the level began with and the host marked it). So a marked page needs no work and
 * an unmarked one is not in the innermost log: no lookup per page. Closing a nested level re-marks
 * the outer level's pages, and `attach` moves the open levels' arena and marks to a replacement
 * instance.
 *
 * Copies are made by the module into the arena while it has free slots, by the host into the arena
 * for host writes, and by the host into its own buffers once the arena is full. A level may hold a
 * page twice after an inner level committed into it: rollback applies the host's copies newest
 * first, then the arena's newest first, so the oldest copy of a page lands last (a host copy is
 * always newer than an arena copy of the same level's page: once the arena is full it stays full
 * until the level that filled it closes).
 *
 * @example
 * const log = new PageUndoLog(() => instance);
 * const marks = log.instanceImports();
 * instance = new WebAssembly.Instance(module, { ...imports, __emu: marks.imports });
 * marks.attach(instance);
 * log.begin(); instance.exports.run(); log.rollback(); // the heap is as before `run`
 */
export class PageUndoLog {
    private readonly levels: UndoLevel[] = [];
    private readonly marksOf = new WeakMap<WebAssembly.Instance, InstanceMarks>();
    private readonly pool: Uint8Array[] = [];
    /** The marks of the instance `current()` returned last (host writes come in bursts). */
    private lastInstance: WebAssembly.Instance | null = null;
    private lastMarks: InstanceMarks | null = null;
    /** Copies made by the host into its own buffers, and arena copies of closed levels. */
    private counted = 0;

    constructor(private readonly current: () => WebAssembly.Instance) {}

    /** Number of open transactions. */
    get depth(): number {
        return this.levels.length;
    }

    /** Pages saved since creation (for benchmarks and tests). */
    get savedPages(): number {
        return this.counted + (this.levels.length > 0 ? arenaUsed(this.currentMarks()) : 0);
    }

    /** The import object entries for a new instance, and `attach` to call once it exists. */
    instanceImports(): {
        imports: Record<string, (start: number, length: number) => void>;
        attach: (instance: WebAssembly.Instance) => void;
    } {
        const marks: InstanceMarks = {
            instance: null,
            memory: null,
            used: null,
            list: [],
            view: EMPTY_VIEW,
            slots: EMPTY_SLOTS
        };
        return {
            imports: { [SAVE_IMPORT_NAME]: (start, length) => this.save(marks, start, length) },
            attach: (instance) => {
                const memory = instance.exports.memory;
                const used = instance.exports[ARENA_USED_EXPORT];
                if (
                    !(memory instanceof WebAssembly.Memory) ||
                    !(used instanceof WebAssembly.Global)
                ) {
                    throw new Error('module was not rewritten by trackDirtyPages');
                }
                marks.instance = instance;
                marks.memory = memory;
                marks.used = used;
                this.marksOf.set(instance, marks);
                // A replacement instance (a rollback that shrank the heap) inside an open
                // transaction: the open levels' arena copies move over, and the pages the
                // innermost level saved must not be saved again.
                const top = this.levels[this.levels.length - 1];
                const previous = this.lastMarks;
                if (top && previous && previous !== marks) {
                    const n = arenaUsed(previous);
                    const from = heap(previous);
                    const to = heap(marks);
                    to.set(from.subarray(ARENA_AT, ARENA_AT + n * UNDO_PAGE_BYTES), ARENA_AT);
                    to.set(from.subarray(SLOTS_AT, SLOTS_AT + n * 4), SLOTS_AT);
                    used.value = n;
                    markLevel(marks, top, n);
                }
            }
        };
    }

    /**
     * Saves the pages of `[start, start + length)` of the current instance's memory (the heap
     * begins at `HEAP_BASE`) that the innermost transaction has not saved yet. Call before the host
     * writes canister memory. A range outside the heap saves nothing (the write traps before
     * changing anything).
     */
    saveRange(start: number, length: number): void {
        this.save(this.currentMarks(), start, length);
    }

    private currentMarks(): InstanceMarks {
        const instance = this.current();
        if (instance !== this.lastInstance || this.lastMarks === null) {
            const marks = this.marksOf.get(instance);
            if (!marks) throw new Error('instance not attached to its undo log');
            this.lastInstance = instance;
            this.lastMarks = marks;
        }
        return this.lastMarks;
    }

    private save(marks: InstanceMarks, start: number, length: number): void {
        // Called during instantiation (a start function) the instance is not attached yet: the
        // heap is then either fresh or about to be overwritten by a rollback.
        if (marks.instance === null) return;
        start >>>= 0;
        length >>>= 0;
        if (length === 0 || start < HEAP_BASE) return;
        const mem = heap(marks);
        const end = start + length;
        if (end > mem.length) return;
        const last = Math.floor((end - 1) / UNDO_PAGE_BYTES);
        let p = start >>> UNDO_PAGE_SHIFT;
        // Common case: every page already marked.
        while (p <= last && mem[p] !== 0) p++;
        if (p > last) return;
        const level = this.levels[this.levels.length - 1];
        let used = level !== undefined ? arenaUsed(marks) : ARENA_PAGES;
        for (; p <= last; p++) {
            if (mem[p] !== 0) continue;
            mem[p] = 1;
            if (level === undefined || p * UNDO_PAGE_BYTES >= level.sizeBytes) {
                marks.list.push(p); // nothing to save: outside a transaction, or a new page
            } else if (used < ARENA_PAGES) {
                const at = p * UNDO_PAGE_BYTES;
                mem.copyWithin(ARENA_AT + used * UNDO_PAGE_BYTES, at, at + UNDO_PAGE_BYTES);
                marks.slots[used++] = p;
            } else {
                const copy = this.pool.pop() ?? new Uint8Array(UNDO_PAGE_BYTES);
                copy.set(mem.subarray(p * UNDO_PAGE_BYTES, (p + 1) * UNDO_PAGE_BYTES));
                level.pages.push(p);
                level.copies.push(copy);
                marks.list.push(p);
                this.counted++;
            }
        }
        if (level !== undefined) marks.used!.value = used;
    }

    /** Opens a (nested) transaction. */
    begin(): void {
        const marks = this.currentMarks();
        const top = this.levels[this.levels.length - 1];
        const used = top ? arenaUsed(marks) : 0;
        // Marks of an outer level (or of writes outside any transaction) must not hide a page
        // from this level: every page is saved again on its first write here.
        clearMarks(marks, top ? top.arenaStart : 0, used);
        this.levels.push({
            arenaStart: used,
            pages: [],
            copies: [],
            sizeBytes: heap(marks).length
        });
        marks.used!.value = used;
    }

    /** Keeps the innermost transaction's writes; an outer level keeps its older copies. */
    commit(): void {
        const top = this.levels.pop();
        if (!top) throw new Error('commit without a transaction');
        const marks = this.currentMarks();
        const used = arenaUsed(marks);
        const outer = this.levels[this.levels.length - 1];
        if (!outer) {
            for (const copy of top.copies) this.release(copy);
            this.counted += used;
            clearMarks(marks, 0, used);
            marks.used!.value = ARENA_PAGES;
            return;
        }
        // The inner level's pages stay marked and its copies become the outer level's (after
        // its own, so that rollback applies the outer's older copies last).
        markLevel(marks, outer, top.arenaStart);
        for (let i = 0; i < top.pages.length; i++) {
            outer.pages.push(top.pages[i]);
            outer.copies.push(top.copies[i]);
        }
    }

    /**
     * Copies the innermost transaction's saved pages back into the current memory and clears the
     * marks. If the memory grew meanwhile the caller must replace the instance by one with
     * `sizeBytes` bytes holding this memory's first `sizeBytes` bytes (Wasm memory cannot shrink).
     */
    rollback(): RolledBack {
        const top = this.levels.pop();
        if (!top) throw new Error('rollback without a transaction');
        const marks = this.currentMarks();
        const used = arenaUsed(marks);
        const mem = heap(marks);
        const slots = marks.slots;
        for (let i = top.copies.length - 1; i >= 0; i--) {
            mem.set(top.copies[i], top.pages[i] * UNDO_PAGE_BYTES);
            this.release(top.copies[i]);
        }
        for (let i = used - 1; i >= top.arenaStart; i--) {
            const from = ARENA_AT + i * UNDO_PAGE_BYTES;
            mem.copyWithin(slots[i] * UNDO_PAGE_BYTES, from, from + UNDO_PAGE_BYTES);
        }
        this.counted += used - top.arenaStart;
        clearMarks(marks, top.arenaStart, used);
        const outer = this.levels[this.levels.length - 1];
        if (outer) {
            markLevel(marks, outer, top.arenaStart);
            marks.used!.value = top.arenaStart;
        } else marks.used!.value = ARENA_PAGES;
        return {
            sizeBytes: top.sizeBytes,
            restoredPages: top.pages.length + used - top.arenaStart
        };
    }

    private release(copy: Uint8Array): void {
        if (this.pool.length < MAX_POOLED_PAGES) this.pool.push(copy);
    }
}

/** The whole memory of an instance, re-made after growth (with the slots view). */
function heap(marks: InstanceMarks): Uint8Array {
    // Growth detaches the old buffer, so its view reads as empty: only then ask for the buffer
    // (a getter that costs more than the rest of a save).
    if (marks.view.length === 0) {
        marks.view = new Uint8Array(marks.memory!.buffer);
        marks.slots = new Uint32Array(marks.memory!.buffer, SLOTS_AT, ARENA_PAGES);
    }
    return marks.view;
}

/** Arena slots in use (0 after `ARENA_PAGES` of an instance outside transactions is not used). */
function arenaUsed(marks: InstanceMarks): number {
    return marks.used!.value as number;
}

/** Marks the pages a level saved: its arena slots `[level.arenaStart, end)` and its host copies. */
function markLevel(marks: InstanceMarks, level: UndoLevel, end: number): void {
    const mem = heap(marks);
    const slots = marks.slots;
    for (let i = level.arenaStart; i < end; i++) mem[slots[i]] = 1;
    for (const p of level.pages) {
        if (mem[p] !== 0) continue;
        mem[p] = 1;
        marks.list.push(p);
    }
}

/** Clears the marks of the arena slots `[from, to)` and of the pages the host marked. */
function clearMarks(marks: InstanceMarks, from: number, to: number): void {
    const mem = heap(marks);
    const slots = marks.slots;
    for (let i = from; i < to; i++) mem[slots[i]] = 0;
    for (const p of marks.list) mem[p] = 0;
    marks.list.length = 0;
}

let trackingEnabled = true;

/**
 * Turns the rewrite off (full heap snapshots) for modules compiled from now on, for tests and
 * benchmarks that compare both. The engine caches compiled modules by the installed bytes' hash.
 */
export function setDirtyPageTracking(enabled: boolean): void {
    trackingEnabled = enabled;
}

/**
 * Compiles a module rewritten for dirty-page tracking, or the module itself when it cannot be
 * rewritten. An invalid module fails with its own compile error, not the rewrite's.
 */
export function compileWithDirtyPages(wasm: Uint8Array): {
    module: WebAssembly.Module;
    dirtyPages: boolean;
    /** Where the canister's heap begins in the module's memory (`HEAP_BASE` when tracked). */
    heapBase: number;
} {
    const untracked = () => ({
        module: new WebAssembly.Module(wasm),
        dirtyPages: false,
        heapBase: 0
    });
    if (!trackingEnabled) return untracked();
    const tracked = trackDirtyPages(wasm);
    if (!tracked.tracked) return untracked();
    try {
        return {
            module: new WebAssembly.Module(tracked.bytes),
            dirtyPages: true,
            heapBase: HEAP_BASE
        };
    } catch (e) {
        new WebAssembly.Module(wasm); // throws the module's own error when it is invalid
        throw new Error(
            `the dirty-page rewrite produced an invalid module: ${(e as Error).message}`,
            { cause: e }
        );
    }
}
