/**
 * Instruction counting for the emulator: runs `ic-wasm instrument` on a canister module and patches
 * the result so that it only counts (no tracing), then exposes the counter as an exported global.
 *
 * What ic-wasm adds and what this module does about it:
 * - a mutable i64 global `total_counter`, bumped by metering code injected in every function; it is
 *   not exported, so we export it as `__instruction_counter` (read it with `readInstructionCounter`);
 * - a trace printer called on every function entry and exit that writes to stable memory from
 *   offset 24 once `canister_init` ends: this corrupts `StableBTreeMap`'s header, so its
 *   "tracing disabled" test is patched to always hold;
 * - code at the end of `canister_pre_upgrade` (the export is created when missing) that writes 24
 *   bytes of its globals to stable memory offset 0, and at the start of `canister_post_upgrade`
 *   that reads them back: both are patched to move 0 bytes;
 * - exports `canister_query __get_cycles`, `canister_query __get_profiling`,
 *   `canister_update __toggle_tracing`, `canister_update __toggle_entry`: removed here.
 * It adds no imports to an Azle module; ic-wasm would add `ic0.stable64_read/write/grow`,
 * `ic0.msg_arg_data_*`, `ic0.msg_reply*` or `ic0.trap` only to a module that lacks them.
 * The count is the module's own Wasm instructions plus ic-wasm's cost table for `ic0` calls, an
 * approximation of the replica's (a trivial Azle update: ~1.5 M; Azle's init: ~1.0 B).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** Name of the exported mutable i64 global that holds the instruction count. */
export const INSTRUCTION_COUNTER_EXPORT = '__instruction_counter';

/** Exports added by `ic-wasm instrument` that are removed from the counting module. */
export const REMOVED_PROFILING_EXPORTS = [
    'canister_query __get_cycles',
    'canister_query __get_profiling',
    'canister_update __toggle_tracing',
    'canister_update __toggle_entry'
];

// Bump when the post-processing changes, so cached outputs from older versions are not reused.
const CACHE_VERSION = 'v1';
const METADATA_SIZE_BYTES = 24;

/**
 * Returns a copy of `wasm` (raw or gzipped) instrumented to count instructions.
 *
 * @example
 * const counting = instrumentForCounting(readFileSync('counter.wasm'));
 * const instance = new WebAssembly.Instance(new WebAssembly.Module(counting), imports);
 * resetInstructionCounter(instance); instance.exports['canister_update inc'](); readInstructionCounter(instance);
 */
export function instrumentForCounting(wasm: Uint8Array): Uint8Array {
    const raw = isGzip(wasm) ? new Uint8Array(gunzipSync(wasm)) : wasm;
    const key = createHash('sha256').update(CACHE_VERSION).update(raw).digest('hex');
    const cacheDir = join(tmpdir(), 'agrilends-ic-wasm-instrument');
    const cached = join(cacheDir, `${key}.wasm`);
    if (existsSync(cached)) return new Uint8Array(readFileSync(cached));

    mkdirSync(cacheDir, { recursive: true });
    const input = join(cacheDir, `${key}.${process.pid}.in.wasm`);
    const output = join(cacheDir, `${key}.${process.pid}.out.wasm`);
    try {
        writeFileSync(input, raw);
        const result = spawnSync(icWasmPath(), [input, '-o', output, 'instrument'], {
            encoding: 'utf8'
        });
        if (result.status !== 0) {
            throw new Error(`ic-wasm instrument failed: ${result.error ?? result.stderr}`);
        }
        const patched = patchInstrumented(new Uint8Array(readFileSync(output)));
        // Write then rename, so parallel test workers never read a half-written file.
        writeFileSync(output, patched);
        renameSync(output, cached);
        return patched;
    } finally {
        rmSync(input, { force: true });
        rmSync(output, { force: true });
    }
}

/** Instructions counted since the last reset (the counter is a Wasm global, kept across calls). */
export function readInstructionCounter(instance: WebAssembly.Instance): bigint {
    return counterGlobal(instance).value as bigint;
}

/** Sets the counter to zero; call before each message to count that message alone. */
export function resetInstructionCounter(instance: WebAssembly.Instance): void {
    counterGlobal(instance).value = 0n;
}

/** Whether a module (bytes or compiled) was produced by `instrumentForCounting`. */
export function isInstrumentedForCounting(module: WebAssembly.Module): boolean {
    return WebAssembly.Module.exports(module).some(
        (e) => e.name === INSTRUCTION_COUNTER_EXPORT && e.kind === 'global'
    );
}

function counterGlobal(instance: WebAssembly.Instance): WebAssembly.Global {
    const global = instance.exports[INSTRUCTION_COUNTER_EXPORT];
    if (!(global instanceof WebAssembly.Global)) {
        throw new Error('module was not instrumented with instrumentForCounting');
    }
    return global;
}

function isGzip(bytes: Uint8Array): boolean {
    return bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function icWasmPath(): string {
    const here = dirname(fileURLToPath(import.meta.url));
    const path = join(
        here,
        '..',
        '..',
        'node_modules',
        '@icp-sdk',
        'ic-wasm-linux-x64',
        'bin',
        'ic-wasm'
    );
    if (!existsSync(path)) throw new Error(`ic-wasm binary not found at ${path}`);
    return path;
}

type Section = { id: number; start: number; end: number };
type Body = { funcIndex: number; codeStart: number; end: number };
type Export = { name: string; kind: number; index: number; start: number; end: number };

/** Applies the patches described at the top of this file to ic-wasm's output. */
export function patchInstrumented(wasm: Uint8Array): Uint8Array {
    const bytes = new Uint8Array(wasm);
    const sections = readSections(bytes);
    const { funcImports, funcImportIndex } = readImports(bytes, sections);
    const exports = readExports(bytes, sections);
    const bodies = readBodies(bytes, sections, funcImports);
    const bodyOf = (funcIndex: number): Body => {
        const body = bodies.find((b) => b.funcIndex === funcIndex);
        if (body === undefined) throw new Error(`no code for function ${funcIndex}`);
        return body;
    };
    const exportedFunc = (name: string): Body | undefined => {
        const e = exports.find((x) => x.name === name && x.kind === 0);
        return e === undefined ? undefined : bodyOf(e.index);
    };

    const getCycles = exportedFunc('canister_query __get_cycles');
    if (getCycles === undefined) throw new Error('ic-wasm output has no __get_cycles export');
    const totalCounter = firstGlobalGet(bytes, getCycles);

    disablePrinter(bytes, bodies, bodyOf);
    const write = funcImportIndex.get('stable64_write');
    const read = funcImportIndex.get('stable64_read');
    const pre = exportedFunc('canister_pre_upgrade');
    const post = exportedFunc('canister_post_upgrade');
    if (pre !== undefined && write !== undefined) zeroMetadataCopy(bytes, pre, write);
    if (post !== undefined && read !== undefined) zeroMetadataCopy(bytes, post, read);

    return rewriteExports(bytes, sections, exports, totalCounter);
}

function readU32(bytes: Uint8Array, pos: number): [number, number] {
    let result = 0;
    let shift = 0;
    for (;;) {
        const byte = bytes[pos++];
        if (byte === undefined) throw new Error('truncated LEB128');
        result += (byte & 0x7f) * 2 ** shift;
        shift += 7;
        if ((byte & 0x80) === 0) return [result, pos];
    }
}

function skipLeb(bytes: Uint8Array, pos: number): number {
    while ((bytes[pos++] ?? 0) & 0x80);
    return pos;
}

function encodeU32(value: number): number[] {
    const out: number[] = [];
    let v = value;
    do {
        const byte = v & 0x7f;
        v = Math.floor(v / 128);
        out.push(v === 0 ? byte : byte | 0x80);
    } while (v !== 0);
    return out;
}

function readName(bytes: Uint8Array, pos: number): [string, number] {
    const [len, start] = readU32(bytes, pos);
    return [new TextDecoder().decode(bytes.subarray(start, start + len)), start + len];
}

function readSections(bytes: Uint8Array): Section[] {
    const sections: Section[] = [];
    let pos = 8;
    while (pos < bytes.length) {
        const id = bytes[pos] as number;
        const [size, start] = readU32(bytes, pos + 1);
        sections.push({ id, start, end: start + size });
        pos = start + size;
    }
    return sections;
}

function section(sections: Section[], id: number): Section | undefined {
    return sections.find((s) => s.id === id);
}

function readImports(
    bytes: Uint8Array,
    sections: Section[]
): { funcImports: number; funcImportIndex: Map<string, number> } {
    const funcImportIndex = new Map<string, number>();
    const imports = section(sections, 2);
    if (imports === undefined) return { funcImports: 0, funcImportIndex };
    const [count, first] = readU32(bytes, imports.start);
    let pos = first;
    let funcImports = 0;
    for (let i = 0; i < count; i++) {
        const [module, afterModule] = readName(bytes, pos);
        const [name, afterName] = readName(bytes, afterModule);
        const kind = bytes[afterName];
        pos = afterName + 1;
        if (kind === 0x00) {
            if (module === 'ic0') funcImportIndex.set(name, funcImports);
            funcImports++;
            pos = skipLeb(bytes, pos);
        } else if (kind === 0x01) {
            pos = skipLimits(bytes, pos + 1);
        } else if (kind === 0x02) {
            pos = skipLimits(bytes, pos);
        } else if (kind === 0x03) {
            pos += 2;
        } else if (kind === 0x04) {
            pos = skipLeb(bytes, pos + 1);
        } else {
            throw new Error(`unknown import kind ${kind}`);
        }
    }
    return { funcImports, funcImportIndex };
}

function skipLimits(bytes: Uint8Array, pos: number): number {
    const flags = bytes[pos] as number;
    let next = skipLeb(bytes, pos + 1);
    if (flags & 1) next = skipLeb(bytes, next);
    return next;
}

function readExports(bytes: Uint8Array, sections: Section[]): Export[] {
    const exportSection = section(sections, 7);
    if (exportSection === undefined) return [];
    const [count, first] = readU32(bytes, exportSection.start);
    const exports: Export[] = [];
    let pos = first;
    for (let i = 0; i < count; i++) {
        const start = pos;
        const [name, afterName] = readName(bytes, pos);
        const kind = bytes[afterName] as number;
        const [index, end] = readU32(bytes, afterName + 1);
        exports.push({ name, kind, index, start, end });
        pos = end;
    }
    return exports;
}

function readBodies(bytes: Uint8Array, sections: Section[], funcImports: number): Body[] {
    const code = section(sections, 10);
    if (code === undefined) throw new Error('module has no code section');
    const [count, first] = readU32(bytes, code.start);
    const bodies: Body[] = [];
    let pos = first;
    for (let i = 0; i < count; i++) {
        const [size, start] = readU32(bytes, pos);
        const [localGroups, afterCount] = readU32(bytes, start);
        let cursor = afterCount;
        for (let g = 0; g < localGroups; g++) cursor = skipLeb(bytes, cursor) + 1;
        bodies.push({ funcIndex: funcImports + i, codeStart: cursor, end: start + size });
        pos = start + size;
    }
    return bodies;
}

/** The first `global.get` in a short straight-line function made of consts, stores and calls. */
function firstGlobalGet(bytes: Uint8Array, body: Body): number {
    let pos = body.codeStart;
    while (pos < body.end) {
        const op = bytes[pos] as number;
        if (op === 0x23) return readU32(bytes, pos + 1)[0];
        if (op === 0x41 || op === 0x42 || op === 0x10) pos = skipLeb(bytes, pos + 1);
        else if (op >= 0x28 && op <= 0x3e) pos = skipLeb(bytes, skipLeb(bytes, pos + 1));
        else throw new Error(`unexpected opcode 0x${op.toString(16)} in __get_cycles`);
    }
    throw new Error('no global.get in __get_cycles');
}

/**
 * Every traced function starts with `i32.const <id>; call <printer>`; the printer starts with
 * `global.get <is_init>; if` and returns when it is non-zero. Replace that `global.get` by an
 * `i32.const 1` of the same byte length, so tracing is off for good.
 */
function disablePrinter(
    bytes: Uint8Array,
    bodies: Body[],
    bodyOf: (funcIndex: number) => Body
): void {
    const callees = new Map<number, number>();
    for (const body of bodies) {
        if (bytes[body.codeStart] !== 0x41) continue;
        const afterConst = skipLeb(bytes, body.codeStart + 1);
        if (bytes[afterConst] !== 0x10) continue;
        const [callee] = readU32(bytes, afterConst + 1);
        callees.set(callee, (callees.get(callee) ?? 0) + 1);
    }
    const [printer, calls] = [...callees].reduce((a, b) => (b[1] > a[1] ? b : a), [-1, 0]);
    if (calls < bodies.length / 2) throw new Error('could not find the ic-wasm trace printer');
    const body = bodyOf(printer);
    const at = body.codeStart;
    const afterGet = skipLeb(bytes, at + 1);
    if (bytes[at] !== 0x23 || bytes[afterGet] !== 0x04) {
        throw new Error('ic-wasm trace printer does not start with `global.get; if`');
    }
    const lebLength = afterGet - at - 1;
    bytes[at] = 0x41;
    for (let i = 0; i < lebLength; i++) {
        const last = i === lebLength - 1;
        bytes[at + 1 + i] = (i === 0 ? 1 : 0) | (last ? 0 : 0x80);
    }
}

/** Finds `i64.const 0; i64.const 0; i64.const 24; call <fn>` in a body and makes the size 0. */
function zeroMetadataCopy(bytes: Uint8Array, body: Body, fn: number): void {
    const pattern = [0x42, 0x00, 0x42, 0x00, 0x42, METADATA_SIZE_BYTES, 0x10, ...encodeU32(fn)];
    for (let pos = body.codeStart; pos + pattern.length <= body.end; pos++) {
        if (pattern.every((b, i) => bytes[pos + i] === b)) {
            bytes[pos + 5] = 0x00;
            return;
        }
    }
    throw new Error('ic-wasm upgrade metadata copy not found');
}

function rewriteExports(
    bytes: Uint8Array,
    sections: Section[],
    exports: Export[],
    counterGlobalIndex: number
): Uint8Array {
    const exportSection = section(sections, 7);
    if (exportSection === undefined) throw new Error('module has no export section');
    const kept = exports.filter((e) => !REMOVED_PROFILING_EXPORTS.includes(e.name));
    const name = new TextEncoder().encode(INSTRUCTION_COUNTER_EXPORT);
    const payload = [
        ...encodeU32(kept.length + 1),
        ...kept.flatMap((e) => [...bytes.subarray(e.start, e.end)]),
        ...encodeU32(name.length),
        ...name,
        0x03,
        ...encodeU32(counterGlobalIndex)
    ];
    const header = [0x07, ...encodeU32(payload.length)];
    const headerStart = sectionHeaderStart(bytes, exportSection);
    const out = new Uint8Array(
        headerStart + header.length + payload.length + (bytes.length - exportSection.end)
    );
    out.set(bytes.subarray(0, headerStart), 0);
    out.set(header, headerStart);
    out.set(payload, headerStart + header.length);
    out.set(bytes.subarray(exportSection.end), headerStart + header.length + payload.length);
    return out;
}

/** Offset of a section's id byte, found by walking from the module header. */
function sectionHeaderStart(bytes: Uint8Array, target: Section): number {
    let pos = 8;
    while (pos < bytes.length) {
        const [size, start] = readU32(bytes, pos + 1);
        if (start === target.start) return pos;
        pos = start + size;
    }
    throw new Error('section not found');
}
