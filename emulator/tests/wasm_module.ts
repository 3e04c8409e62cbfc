/**
 * A tiny Wasm assembler for emulator tests: builds a module with one memory, imported and defined
 * functions, exports and data segments from raw instruction bytes (`op.*` helpers), without a
 * toolchain.
 *
 * @example
 * const bytes = wasmModule({
 *     memoryPages: 2,
 *     funcs: [{ export: 'put', params: [I32, I32], body: [...op.get(0), ...op.get(1), ...op.store(0x36)] }]
 * });
 */
export const I32 = 0x7f;
export const I64 = 0x7e;
export const F32 = 0x7d;
export const F64 = 0x7c;

export function uleb(n: number): number[] {
    const out: number[] = [];
    do {
        const b = n & 0x7f;
        n = Math.floor(n / 128);
        out.push(n === 0 ? b : b | 0x80);
    } while (n !== 0);
    return out;
}

export function sleb(n: bigint | number): number[] {
    let v = BigInt(n);
    const out: number[] = [];
    for (;;) {
        const b = Number(v & 0x7fn);
        v >>= 7n;
        const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
        out.push(done ? b : b | 0x80);
        if (done) return out;
    }
}

/** Instruction encoders. */
export const op = {
    get: (i: number) => [0x20, ...uleb(i)],
    set: (i: number) => [0x21, ...uleb(i)],
    i32: (v: number) => [0x41, ...sleb(v | 0)],
    i64: (v: bigint) => [0x42, ...sleb(BigInt.asIntN(64, v))],
    /** A store or load with its memarg (alignment 0). */
    mem: (opcode: number, offset = 0) => [opcode, 0, ...uleb(offset)],
    call: (f: number) => [0x10, ...uleb(f)],
    memoryCopy: [0xfc, 10, 0, 0],
    memoryFill: [0xfc, 11, 0],
    memoryInit: (data: number) => [0xfc, 8, ...uleb(data), 0],
    memoryGrow: [0x40, 0],
    drop: [0x1a],
    unreachable: [0x00]
};

export interface FuncSpec {
    export?: string;
    params?: number[];
    results?: number[];
    locals?: number[];
    /** Instructions, without the final `end`. */
    body: number[];
}

export interface ModuleSpec {
    memoryPages: number;
    maxPages?: number;
    imports?: { module: string; name: string; params: number[]; results?: number[] }[];
    funcs: FuncSpec[];
    /** Active segments written at instantiation. */
    data?: { offset: number; bytes: number[] }[];
    /** Passive segments for `memory.init` (numbered after the active ones). */
    passive?: number[][];
}

function section(id: number, content: number[]): number[] {
    return [id, ...uleb(content.length), ...content];
}

function vec(items: number[][]): number[] {
    return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
    const b = [...Buffer.from(s, 'utf8')];
    return [...uleb(b.length), ...b];
}

/** Assembles a module; its memory is exported as `memory`. */
export function wasmModule(spec: ModuleSpec): Uint8Array {
    const imports = spec.imports ?? [];
    const sigs = [
        ...imports.map((i) => [i.params, i.results ?? []]),
        ...spec.funcs.map((f) => [f.params ?? [], f.results ?? []])
    ];
    const types = sigs.map(([p, r]) => [
        0x60,
        ...vec(p.map((t) => [t])),
        ...vec(r.map((t) => [t]))
    ]);
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    out.push(...section(1, vec(types)));
    if (imports.length > 0) {
        out.push(
            ...section(
                2,
                vec(
                    imports.map((imp, i) => [...name(imp.module), ...name(imp.name), 0, ...uleb(i)])
                )
            )
        );
    }
    out.push(...section(3, vec(spec.funcs.map((_, i) => uleb(imports.length + i)))));
    const limits =
        spec.maxPages === undefined
            ? [0, ...uleb(spec.memoryPages)]
            : [1, ...uleb(spec.memoryPages), ...uleb(spec.maxPages)];
    out.push(...section(5, vec([limits])));
    const exports: number[][] = [[...name('memory'), 2, 0]];
    spec.funcs.forEach((f, i) => {
        if (f.export) exports.push([...name(f.export), 0, ...uleb(imports.length + i)]);
    });
    out.push(...section(7, vec(exports)));
    const active = spec.data ?? [];
    const passive = spec.passive ?? [];
    if (passive.length > 0) out.push(...section(12, uleb(active.length + passive.length)));
    const bodies = spec.funcs.map((f) => {
        const locals = vec((f.locals ?? []).map((t) => [1, t]));
        const body = [...locals, ...f.body, 0x0b];
        return [...uleb(body.length), ...body];
    });
    out.push(...section(10, vec(bodies)));
    if (active.length + passive.length > 0) {
        const segments = [
            ...active.map((d) => [0, ...op.i32(d.offset), 0x0b, ...vec(d.bytes.map((b) => [b]))]),
            ...passive.map((bytes) => [1, ...vec(bytes.map((b) => [b]))])
        ];
        out.push(...section(11, vec(segments)));
    }
    return Uint8Array.from(out);
}
