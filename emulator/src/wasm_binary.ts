import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';

/** Prefix of the exports this loader adds; canister code never uses the name. */
export const EMU_EXPORT_PREFIX = '__emu_';
/** Name under which the rewritten module exports function table 0. */
export const TABLE_EXPORT = `${EMU_EXPORT_PREFIX}table`;
/** Largest module the emulator accepts after gunzip (the IC's Wasm limit is 100 MiB). */
export const MAX_WASM_SIZE_BYTES = 100 * 1024 * 1024;

const SECTION_IMPORT = 2;
const SECTION_TABLE = 4;
const SECTION_GLOBAL = 6;
const SECTION_EXPORT = 7;
const KIND_TABLE = 1;
const KIND_GLOBAL = 3;
/** Bound on section / entry counts while parsing (a Wasm module has far fewer). */
const MAX_ENTRIES = 1_000_000;

/** True when the bytes start with the gzip magic number `1f 8b`. */
export function isGzip(bytes: Uint8Array): boolean {
    return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Un-gzips a module if needed, as the replica does for `install_code`. */
export function decodeModule(bytes: Uint8Array): Uint8Array {
    const raw = isGzip(bytes)
        ? new Uint8Array(gunzipSync(bytes, { maxOutputLength: MAX_WASM_SIZE_BYTES }))
        : bytes;
    if (raw.length < 8 || raw[0] !== 0 || raw[1] !== 0x61 || raw[2] !== 0x73 || raw[3] !== 0x6d) {
        throw new Error('not a Wasm module (bad magic number)');
    }
    return raw;
}

/** SHA-256 of bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
    return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** A cursor over a byte array reading LEB128 numbers and names. */
class Reader {
    constructor(
        readonly bytes: Uint8Array,
        public pos = 0
    ) {}
    byte(): number {
        if (this.pos >= this.bytes.length) throw new Error('unexpected end of Wasm module');
        return this.bytes[this.pos++];
    }
    u32(): number {
        let result = 0;
        let shift = 0;
        for (let i = 0; i < 5; i++) {
            const b = this.byte();
            result += (b & 0x7f) * 2 ** shift;
            if ((b & 0x80) === 0) return result;
            shift += 7;
        }
        throw new Error('LEB128 u32 too long');
    }
    /** Skips a signed or unsigned LEB128 of any width (up to 64 bits). */
    skipLeb(): void {
        for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return;
        throw new Error('LEB128 too long');
    }
    name(): string {
        const len = this.u32();
        const s = Buffer.from(this.bytes.subarray(this.pos, this.pos + len)).toString('utf8');
        this.pos += len;
        return s;
    }
    skipLimits(): void {
        const flags = this.byte();
        this.skipLeb();
        if (flags & 1) this.skipLeb();
    }
    /** Skips a constant expression up to and including its `end`. */
    skipConstExpr(): void {
        for (let i = 0; i < 10_000; i++) {
            const op = this.byte();
            if (op === 0x0b) return;
            if (op === 0x41 || op === 0x42 || op === 0x23 || op === 0xd2) this.skipLeb();
            else if (op === 0x43) this.pos += 4;
            else if (op === 0x44) this.pos += 8;
            else if (op === 0xd0) this.byte();
            else if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d)
                continue;
            else if (op === 0x7e) continue;
            else throw new Error(`unsupported opcode 0x${op.toString(16)} in constant expr`);
        }
        throw new Error('constant expression too long');
    }
}

function leb(n: number): number[] {
    const out: number[] = [];
    for (;;) {
        const b = n & 0x7f;
        n = Math.floor(n / 128);
        if (n === 0) {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

function encodeName(s: string): number[] {
    const b = Buffer.from(s, 'utf8');
    return [...leb(b.length), ...b];
}

interface Section {
    id: number;
    start: number;
    contentStart: number;
    end: number;
}

function sections(bytes: Uint8Array): Section[] {
    const r = new Reader(bytes, 8);
    const out: Section[] = [];
    while (r.pos < bytes.length && out.length < 1000) {
        const start = r.pos;
        const id = r.byte();
        const size = r.u32();
        const contentStart = r.pos;
        r.pos += size;
        if (r.pos > bytes.length) throw new Error('Wasm section overruns the module');
        out.push({ id, start, contentStart, end: r.pos });
    }
    return out;
}

/** What the loader learned about a module while rewriting it. */
export interface RewrittenModule {
    bytes: Uint8Array;
    /** Export names of the module's own mutable globals (snapshotted for rollback). */
    globalExports: string[];
    hasTable: boolean;
}

/**
 * Rewrites the export section so that table 0 and every mutable global defined by the module are
 * exported: reply/reject callbacks are table indices, and rollback after a trap must restore globals
 * such as `__stack_pointer`, which JS can only reach through exports.
 */
export function exposeInternals(bytes: Uint8Array): RewrittenModule {
    const secs = sections(bytes);
    let importedGlobals = 0;
    let importedTables = 0;
    let definedTables = 0;
    const mutableGlobals: number[] = [];
    const existing: { name: string; kind: number; index: number }[] = [];
    let exportSec: Section | undefined;
    for (const s of secs) {
        const r = new Reader(bytes, s.contentStart);
        if (s.id === SECTION_IMPORT) {
            const n = r.u32();
            if (n > MAX_ENTRIES) throw new Error('too many imports');
            for (let i = 0; i < n; i++) {
                r.name();
                r.name();
                const kind = r.byte();
                if (kind === 0) r.u32();
                else if (kind === 1) {
                    r.byte();
                    r.skipLimits();
                    importedTables++;
                } else if (kind === 2) r.skipLimits();
                else if (kind === 3) {
                    r.byte();
                    r.byte();
                    importedGlobals++;
                } else if (kind === 4) {
                    r.byte();
                    r.u32();
                } else throw new Error(`unknown import kind ${kind}`);
            }
        } else if (s.id === SECTION_TABLE) {
            definedTables = r.u32();
        } else if (s.id === SECTION_GLOBAL) {
            const n = r.u32();
            if (n > MAX_ENTRIES) throw new Error('too many globals');
            for (let i = 0; i < n; i++) {
                r.byte();
                const mut = r.byte();
                r.skipConstExpr();
                if (mut === 1) mutableGlobals.push(importedGlobals + i);
            }
        } else if (s.id === SECTION_EXPORT) {
            exportSec = s;
            const n = r.u32();
            if (n > MAX_ENTRIES) throw new Error('too many exports');
            for (let i = 0; i < n; i++) {
                const name = r.name();
                const kind = r.byte();
                const index = r.u32();
                existing.push({ name, kind, index });
            }
        }
    }
    const hasTable = importedTables + definedTables > 0;
    const added: { name: string; kind: number; index: number }[] = [];
    const globalExports: string[] = [];
    if (hasTable) {
        const t = existing.find((e) => e.kind === KIND_TABLE && e.index === 0);
        if (!t) added.push({ name: TABLE_EXPORT, kind: KIND_TABLE, index: 0 });
    }
    for (const g of mutableGlobals) {
        const e = existing.find((x) => x.kind === KIND_GLOBAL && x.index === g);
        if (e) globalExports.push(e.name);
        else {
            const name = `${EMU_EXPORT_PREFIX}global_${g}`;
            added.push({ name, kind: KIND_GLOBAL, index: g });
            globalExports.push(name);
        }
    }
    if (added.length === 0) return { bytes, globalExports, hasTable };
    const entries: number[] = [...leb(existing.length + added.length)];
    for (const e of [...existing, ...added])
        entries.push(...encodeName(e.name), e.kind, ...leb(e.index));
    const newSection = Uint8Array.from([SECTION_EXPORT, ...leb(entries.length), ...entries]);
    let out: Uint8Array;
    if (exportSec) {
        out = concat([
            bytes.subarray(0, exportSec.start),
            newSection,
            bytes.subarray(exportSec.end)
        ]);
    } else {
        // Sections are ordered by id: insert after the last section whose id precedes exports.
        const after = secs.filter((s) => s.id !== 0 && s.id < SECTION_EXPORT).pop();
        const at = after ? after.end : 8;
        out = concat([bytes.subarray(0, at), newSection, bytes.subarray(at)]);
    }
    return { bytes: out, globalExports, hasTable };
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
        out.set(p, off);
        off += p.length;
    }
    return out;
}
