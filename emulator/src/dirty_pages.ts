/**
 * Dirty-page tracking for the emulator's transactions: instead of copying the whole Wasm heap before
 * every message, the module is rewritten once so that the first write to each 4 KiB undo page in a
 * transaction saves that page's old contents into an undo log; a rollback copies back only those
 * pages (as the replica, which tracks the OS pages a message dirtied).
 *
 * The rewrite (`trackDirtyPages`, cached on disk by the module's hash):
 * - adds a table of 1,048,576 `externref` entries, one per undo page of a 4 GiB memory (exported as
 *   `DIRTY_TABLE_EXPORT`): a non-null entry marks a page already saved in the current transaction;
 * - adds the import `__emu.save_pages(start: i32, length: i32)` (function indices after it shift by
 *   one everywhere: calls, `ref.func`, exports, elements, start);
 * - adds a mutable global (exported as `LAST_PAGE_EXPORT`): the last page a store found marked,
 *   -1 when none; the host resets it whenever it clears marks;
 * - before every store (`i32/i64/f32/f64.store*`) inserts an inline check: unless the page of
 *   `addr + offset` is that last page and the store stays inside it, call a small added function
 *   `store_slow(ea, width)`, which calls `save_pages` if the page is unmarked or the store crosses
 *   into the next page, and otherwise caches the page; the operands are stashed in fresh locals;
 * - before `memory.copy` / `memory.fill` / `memory.init` calls a small added function
 *   `check(dst, n)` that calls `save_pages` unless the range's first and last pages are marked and
 *   it is at most a page long.
 * An opcode outside the supported set (MVP, sign-ext, non-trapping float-to-int, bulk memory,
 * reference types, multi-value), memory64 or a second memory leaves the module unchanged
 * (`tracked: false`): the canister then falls back to full heap snapshots. The injected code runs
 * after `ic-wasm instrument` and never touches its counter, so counted instructions are unchanged.
 * `save_pages` ignores a range outside the heap: the instruction then traps before writing, with
 * the same error as without the rewrite.
 *
 * The runtime (`PageUndoLog`) keeps one undo log per open (nested) transaction: page number → the
 * page's contents when that level first wrote it. It is bounded by the heap: at most one copy of each
 * page that existed when the level began (pages added by `memory.grow` are never saved).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** log2 of the tracking granularity: 4 KiB undo pages, as the replica tracks OS pages. */
export const UNDO_PAGE_SHIFT = 12;
/** Bytes per undo page: a write saves the undo pages it touches. */
export const UNDO_PAGE_BYTES = 1 << UNDO_PAGE_SHIFT;
/** Undo pages of a 32-bit memory (4 GiB), the size of the marks table. */
export const UNDO_PAGE_COUNT = 2 ** (32 - UNDO_PAGE_SHIFT);
/** Export name of the marks table the rewrite adds. */
export const DIRTY_TABLE_EXPORT = '__emu_dirty_pages';
/**
 * Export name of the global the rewrite adds: the last page a store found marked (-1: none), so
 * that a run of stores to one page skips the table. Clearing the marks must reset it to -1.
 */
export const LAST_PAGE_EXPORT = '__emu_dirty_last';
/** Import module and name of the host function that saves pages. */
export const SAVE_IMPORT_MODULE = '__emu';
export const SAVE_IMPORT_NAME = 'save_pages';

// Bump when the rewrite changes, so cached outputs of older versions are not reused.
const CACHE_VERSION = 'dirty-pages-v3';
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
    const key = createHash('sha256').update(CACHE_VERSION).update(wasm).digest('hex');
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
    skipLimits(): number {
        const flags = this.byte();
        if (flags > 1) throw new Unsupported(`limits flags ${flags} (shared or 64-bit)`);
        this.u32();
        if (flags & 1) this.u32();
        return flags;
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
const SEC_TABLE = 4;
const SEC_MEMORY = 5;
const SEC_GLOBAL = 6;
const SEC_EXPORT = 7;
const SEC_START = 8;
const SEC_ELEMENT = 9;
const SEC_CODE = 10;
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

// Fresh locals added to a function that writes memory, relative to its first new local.
const L_ADDR = 0; // i32: the store address / the destination of a bulk operation
const L_I32 = 1; // i32: a stored value / the source or fill value of a bulk operation
const L_LEN = 2; // i32: the length of a bulk operation
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

class ModuleRewriter {
    private readonly sections: Section[];
    private typeCount = 0;
    /** Parameter count of each function type (undefined for other types). */
    private readonly paramCounts: number[] = [];
    private funcImports = 0;
    private globalImports = 0;
    private definedGlobals = 0;
    /** The added global caching the last page a store found marked. */
    private lastGlobal = 0;
    private tableImports = 0;
    private definedTables = 0;
    /** Type index of each defined function. */
    private funcTypes: number[] = [];
    private hasMemory = false;
    private saveType = 0;
    private saveImport = 0;
    private checkFunc = 0;
    private storeSlowFunc = 0;
    private dirtyTable = 0;

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
        replaced.set(SEC_TABLE, this.tableSection());
        replaced.set(SEC_GLOBAL, this.globalSection());
        replaced.set(SEC_EXPORT, this.exportSection());
        if (this.section(SEC_START)) replaced.set(SEC_START, this.startSection());
        if (this.section(SEC_ELEMENT)) replaced.set(SEC_ELEMENT, this.elementSection());
        replaced.set(SEC_CODE, this.codeSection());
        return this.assemble(replaced);
    }

    /** Reads the counts the rewrite needs (types, imports, functions, tables, memory). */
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
                    this.tableImports++;
                } else if (kind === 2) {
                    r.skipLimits();
                    this.hasMemory = true;
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
        const tables = this.section(SEC_TABLE);
        if (tables) this.definedTables = this.reader(tables).count();
        const globals = this.section(SEC_GLOBAL);
        if (globals) this.definedGlobals = this.reader(globals).count();
        const memory = this.section(SEC_MEMORY);
        if (memory) {
            const r = this.reader(memory);
            const n = r.count();
            for (let i = 0; i < n; i++) r.skipLimits();
            if (n > 0) this.hasMemory = true;
        }
        if (this.section(SEC_CODE) === undefined && this.funcTypes.length > 0) {
            throw new Unsupported('functions without a code section');
        }
        this.saveType = this.typeCount;
        this.saveImport = this.funcImports;
        this.checkFunc = this.funcImports + 1 + this.funcTypes.length;
        this.storeSlowFunc = this.checkFunc + 1;
        this.dirtyTable = this.tableImports + this.definedTables;
        this.lastGlobal = this.globalImports + this.definedGlobals;
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

    /** Appends the marks table: 65,536 `externref`s, all null. */
    private tableSection(): Uint8Array {
        const o = new Out();
        o.u32(this.definedTables + 1);
        const s = this.section(SEC_TABLE);
        if (s) {
            const r = this.reader(s);
            r.count();
            o.span(this.wasm, r.pos, s.end);
        }
        o.byte(T_EXTERNREF);
        o.byte(1);
        o.u32(UNDO_PAGE_COUNT);
        o.u32(UNDO_PAGE_COUNT);
        return o.result();
    }

    /** Copies the globals (renumbering `ref.func`) and appends the last-marked-page cache. */
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
        // (global (mut i32) (i32.const -1)): -1 is no page.
        o.all([T_I32, 1, 0x41, 0x7f, 0x0b]);
        return o.result();
    }

    private exportSection(): Uint8Array {
        const o = new Out();
        const s = this.section(SEC_EXPORT);
        const r = s ? this.reader(s) : null;
        const n = r ? r.count() : 0;
        o.u32(n + 2);
        for (let i = 0; r && i < n; i++) {
            const nameStart = r.pos;
            r.skipName();
            o.span(this.wasm, nameStart, r.pos);
            const kind = r.byte();
            const index = r.u32();
            o.byte(kind);
            o.u32(kind === 0 ? this.func(index) : index);
        }
        const name = Buffer.from(DIRTY_TABLE_EXPORT);
        o.u32(name.length);
        o.all(name);
        o.byte(1);
        o.u32(this.dirtyTable);
        const last = Buffer.from(LAST_PAGE_EXPORT);
        o.u32(last.length);
        o.all(last);
        o.byte(3);
        o.u32(this.lastGlobal);
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
        for (const helper of [this.checkBody(), this.storeSlowBody()]) {
            o.u32(helper.length);
            o.all(helper);
        }
        return o.result();
    }

    /**
     * `store_slow(ea, width)`, out of line so that the inline check stays small: calls
     * `save_pages` when the page of `ea` is unmarked or the store crosses into the next page;
     * otherwise the page becomes the cached last marked page.
     */
    private storeSlowBody(): number[] {
        const t = u32Bytes(this.dirtyTable);
        const last = u32Bytes(this.lastGlobal);
        return [
            1,
            1,
            T_I32, // one local: the page
            0x20,
            0,
            0x41,
            UNDO_PAGE_SHIFT,
            0x76, // i32.shr_u
            0x22,
            2, // local.tee $page
            0x25,
            ...t, // table.get
            0xd1, // ref.is_null
            0x20,
            0,
            0x41,
            ...signedLeb(UNDO_PAGE_BYTES - 1),
            0x71, // i32.and
            0x41,
            ...signedLeb(UNDO_PAGE_BYTES),
            0x20,
            1,
            0x6b, // i32.sub: PAGE - width
            0x4b, // i32.gt_u: crosses
            0x72, // i32.or
            0x04,
            0x40, // if
            0x20,
            0,
            0x20,
            1,
            0x10,
            ...u32Bytes(this.saveImport),
            0x05, // else
            0x20,
            2,
            0x24,
            ...last, // global.set $last
            0x0b,
            0x0b
        ];
    }

    /**
     * `check(start, length)`: calls `save_pages` unless the first and last page of the range are
     * both marked and the range is at most a page long.
     */
    private checkBody(): number[] {
        const t = u32Bytes(this.dirtyTable);
        const page = (getEnd: number[]): number[] => [
            ...getEnd,
            0x41,
            UNDO_PAGE_SHIFT,
            0x76, // i32.shr_u
            0x25,
            ...t, // table.get
            0xd1 // ref.is_null
        ];
        const code = [
            0, // no locals
            ...page([0x20, 0]),
            ...page([0x20, 0, 0x20, 1, 0x6a, 0x41, 1, 0x6b]), // start + length - 1
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
        return code;
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
            // No store or bulk write: only call / ref.func indices may change.
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

    /** True when a body contains a store or a bulk memory write (a quick pre-pass). */
    private scanWrites(r: In): boolean {
        let found = false;
        decode(r, (op, sub) => {
            if (STORES[op] || (op === 0xfc && (sub === 8 || sub === 10 || sub === 11))) {
                found = true;
            }
        });
        return found;
    }

    /** Copies an instruction stream, injecting the checks and renumbering function indices. */
    private instructions(r: In, o: Out, firstNew: number): void {
        const local = (k: number) => firstNew + k;
        const w = this.wasm;
        let copied = r.pos;
        const flush = (upTo: number) => {
            o.span(w, copied, upTo);
        };
        decode(r, (op, sub, at, immStart) => {
            if (op === 0x10 || op === 0xd2) {
                flush(at);
                o.byte(op);
                o.u32(this.func(readU32At(w, immStart)));
                copied = r.pos;
                return;
            }
            const store = STORES[op];
            if (store) {
                const [type, width] = store;
                const offset = readMemargOffset(w, immStart);
                flush(at);
                this.storeCheck(o, offset, width, local(VALUE_LOCAL[type]), local);
                copied = at;
                return;
            }
            if (op === 0xfc && (sub === 8 || sub === 10 || sub === 11)) {
                flush(at);
                o.byte(0x21);
                o.u32(local(L_LEN));
                o.byte(0x21);
                o.u32(local(L_I32));
                o.byte(0x22);
                o.u32(local(L_ADDR));
                o.byte(0x20);
                o.u32(local(L_LEN));
                o.byte(0x10);
                o.u32(this.checkFunc);
                for (const l of [L_ADDR, L_I32, L_LEN]) {
                    o.byte(0x20);
                    o.u32(local(l));
                }
                copied = at;
            }
        });
        flush(r.pos);
    }

    /**
     * Code before a store of `width` bytes at `addr + offset` (stack: addr, value). Inline fast
     * path: the page is the last one found marked (a global) and the store does not cross into
     * the next page; else `store_slow(ea, width)`. Ends with the store's operands on the stack.
     *
     *   local.set $value; local.tee $addr; [i32.const offset; i32.add; local.tee $ea]
     *   i32.const SHIFT; i32.shr_u; global.get $last; i32.ne
     *   [local.get $ea; i32.const PAGE-1; i32.and; i32.const PAGE-width; i32.gt_u; i32.or]
     *   if; local.get $ea; i32.const width; call $store_slow; end
     *   local.get $addr; local.get $value
     */
    private storeCheck(
        o: Out,
        offset: number,
        width: number,
        value: number,
        local: (k: number) => number
    ): void {
        const addr = local(L_ADDR);
        // The effective address wraps at 2^32 here; such a store traps anyway (the saved page is
        // then merely unneeded), and the page index stays inside the table.
        const ea = offset !== 0 ? local(L_LEN) : addr;
        o.byte(0x21);
        o.u32(value);
        o.byte(0x22);
        o.u32(addr);
        if (offset !== 0) {
            o.byte(0x41);
            o.s32(offset);
            o.byte(0x6a); // i32.add
            o.byte(0x22);
            o.u32(ea);
        }
        o.all([0x41, UNDO_PAGE_SHIFT, 0x76, 0x23]); // i32.shr_u; global.get
        o.u32(this.lastGlobal);
        o.byte(0x47); // i32.ne
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
        o.u32(this.storeSlowFunc);
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

/** The offset of a memarg at `pos` (after its alignment). */
function readMemargOffset(bytes: Uint8Array, pos: number): number {
    const r = new In(bytes, pos, bytes.length);
    r.u32();
    return r.u32();
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

/** The marks of one instance: its table and a JS mirror (flags and a list, for O(marked) clears). */
interface InstanceMarks {
    instance: WebAssembly.Instance | null;
    table: WebAssembly.Table | null;
    memory: WebAssembly.Memory | null;
    /** The module's cache of the last page a store found marked (`LAST_PAGE_EXPORT`). */
    last: WebAssembly.Global | null;
    /** 1 when the page is marked (saved by the innermost level, or added since it began). */
    flags: Uint8Array;
    list: number[];
    /** A view of the heap; a grown memory detaches it (length 0), which re-makes it. */
    view: Uint8Array;
}

/**
 * One open transaction: the old contents of the pages it wrote first (`copies[i]` is page
 * `pages[i]`, each page at most once), and the heap size then.
 */
interface UndoLevel {
    pages: number[];
    copies: Uint8Array[];
    sizeBytes: number;
}

/** What `PageUndoLog.rollback` did, for the caller to finish (a heap that grew needs a new instance). */
export interface RolledBack {
    /** Heap size when the transaction began: a larger heap must be replaced by one this size. */
    sizeBytes: number;
    /** Pages copied back. */
    restoredPages: number;
}

const MARK = true;
/** A transient flag bit while merging levels: the page is in the outer level's log. */
const IN_OUTER = 2;
const EMPTY_VIEW = new Uint8Array(0);

/**
 * Undo logs of a canister's nested transactions over a tracked module's heap. `instanceImports`
 * gives a new instance its `__emu.save_pages`; `attach` binds the instance once created.
 *
 * Invariant: a page of the current instance is marked exactly when the innermost level saved it,
 * or it lies beyond the heap size the level began with, or it was written outside any transaction.
 * So a marked page needs no work and an unmarked one is not in the innermost log: no lookup per
 * page. Closing a nested level re-marks the outer level's pages, and `attach` marks the innermost
 * level's pages in a replacement instance.
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
    /** Pages saved since creation (for benchmarks and tests). */
    savedPages = 0;

    constructor(private readonly current: () => WebAssembly.Instance) {}

    /** Number of open transactions. */
    get depth(): number {
        return this.levels.length;
    }

    /** The import object entries for a new instance, and `attach` to call once it exists. */
    instanceImports(): {
        imports: Record<string, (start: number, length: number) => void>;
        attach: (instance: WebAssembly.Instance) => void;
    } {
        const marks: InstanceMarks = {
            instance: null,
            table: null,
            memory: null,
            last: null,
            flags: new Uint8Array(UNDO_PAGE_COUNT),
            list: [],
            view: EMPTY_VIEW
        };
        return {
            imports: { [SAVE_IMPORT_NAME]: (start, length) => this.save(marks, start, length) },
            attach: (instance) => {
                const table = instance.exports[DIRTY_TABLE_EXPORT];
                const last = instance.exports[LAST_PAGE_EXPORT];
                if (
                    !(table instanceof WebAssembly.Table) ||
                    !(last instanceof WebAssembly.Global)
                ) {
                    throw new Error('module was not rewritten by trackDirtyPages');
                }
                marks.instance = instance;
                marks.table = table;
                marks.last = last;
                marks.memory = instance.exports.memory as WebAssembly.Memory;
                this.marksOf.set(instance, marks);
                // A replacement instance (a rollback that shrank the heap) inside an open
                // transaction: its pages the level saved must not be saved again.
                const top = this.levels[this.levels.length - 1];
                if (top) for (const p of top.pages) mark(marks, p);
            }
        };
    }

    /**
     * Saves the pages of `[start, start + length)` of the current instance's heap that the innermost
     * transaction has not saved yet. Call before the host writes canister memory. A range outside
     * the heap saves nothing (the write traps before changing anything).
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
        if (length === 0) return;
        const flags = marks.flags;
        const end = start + length;
        const last = Math.floor((end - 1) / UNDO_PAGE_BYTES);
        let p = start >>> UNDO_PAGE_SHIFT;
        // Common case: every page already marked (pages past the table end read as undefined).
        while (p <= last && flags[p] === 1) p++;
        if (p > last) return;
        const mem = heap(marks);
        if (end > mem.length) return;
        const level = this.levels[this.levels.length - 1];
        for (; p <= last; p++) {
            if (flags[p] === 1) continue;
            if (level !== undefined && p * UNDO_PAGE_BYTES < level.sizeBytes) {
                const copy = this.pool.pop() ?? new Uint8Array(UNDO_PAGE_BYTES);
                copy.set(mem.subarray(p * UNDO_PAGE_BYTES, (p + 1) * UNDO_PAGE_BYTES));
                level.pages.push(p);
                level.copies.push(copy);
                this.savedPages++;
            }
            mark(marks, p);
        }
    }

    /** Opens a (nested) transaction. */
    begin(): void {
        const marks = this.currentMarks();
        // Marks of an outer level (or of writes outside any transaction) must not hide a page
        // from this level: every page is saved again on its first write here.
        clearMarks(marks);
        this.levels.push({ pages: [], copies: [], sizeBytes: heap(marks).length });
    }

    /** Keeps the innermost transaction's writes; an outer level keeps its older copies. */
    commit(): void {
        const top = this.levels.pop();
        if (!top) throw new Error('commit without a transaction');
        const outer = this.levels[this.levels.length - 1];
        if (!outer) {
            for (const copy of top.copies) this.release(copy);
            return;
        }
        // The inner level's pages stay marked; a page it saved goes to the outer log unless that
        // has an older copy or the page is newer than the outer level.
        const marks = this.currentMarks();
        const flags = marks.flags;
        for (const p of outer.pages) flags[p] |= IN_OUTER;
        for (let i = 0; i < top.pages.length; i++) {
            const p = top.pages[i];
            if ((flags[p] & IN_OUTER) === 0 && p * UNDO_PAGE_BYTES < outer.sizeBytes) {
                outer.pages.push(p);
                outer.copies.push(top.copies[i]);
            } else this.release(top.copies[i]);
        }
        for (const p of outer.pages) {
            flags[p] &= ~IN_OUTER;
            mark(marks, p);
        }
    }

    /**
     * Copies the innermost transaction's saved pages back into the current heap and clears the
     * marks. If the heap grew meanwhile the caller must replace the instance by one with
     * `sizeBytes` bytes holding this heap's first `sizeBytes` bytes (Wasm memory cannot shrink).
     */
    rollback(): RolledBack {
        const top = this.levels.pop();
        if (!top) throw new Error('rollback without a transaction');
        const marks = this.currentMarks();
        const mem = heap(marks);
        for (let i = 0; i < top.pages.length; i++) {
            mem.set(top.copies[i], top.pages[i] * UNDO_PAGE_BYTES);
            this.release(top.copies[i]);
        }
        clearMarks(marks);
        const outer = this.levels[this.levels.length - 1];
        if (outer) for (const p of outer.pages) mark(marks, p);
        return { sizeBytes: top.sizeBytes, restoredPages: top.pages.length };
    }

    private release(copy: Uint8Array): void {
        if (this.pool.length < MAX_POOLED_PAGES) this.pool.push(copy);
    }
}

function heap(marks: InstanceMarks): Uint8Array {
    // Growth detaches the old buffer, so its view reads as empty: only then ask for the buffer
    // (a getter that costs more than the rest of a save).
    if (marks.view.length === 0) marks.view = new Uint8Array(marks.memory!.buffer);
    return marks.view;
}

function mark(marks: InstanceMarks, p: number): void {
    if (marks.flags[p] === 1) return;
    marks.flags[p] = 1;
    marks.list.push(p);
    marks.table!.set(p, MARK);
}

function clearMarks(marks: InstanceMarks): void {
    for (const p of marks.list) {
        marks.flags[p] = 0;
        marks.table!.set(p, null);
    }
    marks.list.length = 0;
    // The module's cache may name a page just unmarked.
    marks.last!.value = -1;
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
} {
    if (!trackingEnabled) return { module: new WebAssembly.Module(wasm), dirtyPages: false };
    const tracked = trackDirtyPages(wasm);
    if (!tracked.tracked) return { module: new WebAssembly.Module(wasm), dirtyPages: false };
    try {
        return { module: new WebAssembly.Module(tracked.bytes), dirtyPages: true };
    } catch (e) {
        new WebAssembly.Module(wasm); // throws the module's own error when it is invalid
        throw new Error(
            `the dirty-page rewrite produced an invalid module: ${(e as Error).message}`,
            { cause: e }
        );
    }
}
