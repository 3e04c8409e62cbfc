/**
 * Saving and restoring a network's state in its state folder, so a served network survives a
 * restart: per canister its module, Wasm heap, mutable globals, stable memory, controllers,
 * cycles, status, global timer, certified data and chunk store; per subnet the next canister id;
 * the clock. Saved only when quiescent (no message queued or in flight, no open call context), as
 * a replica's checkpoint at a round boundary. Files: `state/state.json`, `state/modules/<hash>`,
 * `state/canisters/<id>.{heap,stable}` (stable: non-zero pages only), `state/chunks/<hash>`; written to a temporary folder first
 * and renamed, so a crash mid-save leaves the previous checkpoint.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Principal } from '@dfinity/principal';
import type { Engine } from '../engine';
import { PAGE_SIZE_BYTES, StableMemory } from '../stable_memory';

const STATE_VERSION = 1;

interface SavedCanister {
    id: string;
    subnet_index: number;
    controllers: string[];
    status: string;
    cycles: string;
    global_timer_ns: string;
    certified_data_hex: string;
    version: string;
    freezing_threshold: string;
    module_hash_hex: string | null;
    globals: { name: string; value: string; big: boolean }[];
    stable_pages: number;
    chunk_hashes: string[];
}

interface SavedState {
    version: number;
    time_ns: string;
    round: number;
    subnets: { region: string; next_index: string }[];
    canisters: SavedCanister[];
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE_BYTES);

/** The non-zero pages of a stable memory as `[u32 index][64 KiB]` records. */
function sparsePages(stable: StableMemory): Uint8Array {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < stable.size_pages; i++) {
        const page = stable.read(i * PAGE_SIZE_BYTES, PAGE_SIZE_BYTES);
        if (Buffer.compare(page, ZERO_PAGE) === 0) continue;
        const index = new Uint8Array(4);
        new DataView(index.buffer).setUint32(0, i);
        parts.push(index, page);
    }
    return new Uint8Array(Buffer.concat(parts));
}

/** The regions of a saved network (to create an engine with the same subnets), or null. */
export function savedSubnets(dir: string): { region: string }[] | null {
    const file = join(dir, 'state', 'state.json');
    if (!existsSync(file)) return null;
    const s = JSON.parse(readFileSync(file, 'utf8')) as SavedState;
    return s.subnets.map((x) => ({ region: x.region }));
}

/** True when the engine is at a round boundary with nothing outstanding (safe to checkpoint). */
export function quiescent(engine: Engine): boolean {
    if (!engine.idle) return false;
    for (const c of engine.canisters.values()) if (c.callContexts.size > 0) return false;
    return true;
}

/** Writes a checkpoint of `engine` into `dir/state` (replacing the previous one). */
export function saveState(engine: Engine, dir: string): void {
    if (!quiescent(engine)) throw new Error('the network is not quiescent; run rounds first');
    const tmp = join(dir, 'state.tmp');
    rmSync(tmp, { recursive: true, force: true });
    for (const sub of ['modules', 'canisters', 'chunks'])
        mkdirSync(join(tmp, sub), { recursive: true });
    const canisters: SavedCanister[] = [];
    const modules = new Set<string>();
    for (const c of engine.canisters.values()) {
        const id = c.id.toText();
        let moduleHash: string | null = null;
        const globals: SavedCanister['globals'] = [];
        if (c.code && c.instance) {
            moduleHash = Buffer.from(c.code.moduleHash).toString('hex');
            const bytes = engine.moduleBytes.get(moduleHash);
            if (!bytes) throw new Error(`module ${moduleHash} of ${id} is not kept`);
            if (!modules.has(moduleHash)) writeFileSync(join(tmp, 'modules', moduleHash), bytes);
            modules.add(moduleHash);
            writeFileSync(join(tmp, 'canisters', `${id}.heap`), c.heapContents());
            for (const name of c.code.globalExports) {
                const v = (c.instance.exports[name] as WebAssembly.Global).value as number | bigint;
                globals.push({ name, value: String(v), big: typeof v === 'bigint' });
            }
        }
        writeFileSync(join(tmp, 'canisters', `${id}.stable`), sparsePages(c.stable));
        for (const [hash, chunk] of c.chunkStore) writeFileSync(join(tmp, 'chunks', hash), chunk);
        canisters.push({
            id,
            subnet_index: c.subnetIndex,
            controllers: c.controllers.map((p) => p.toText()),
            status: c.status,
            cycles: String(c.cycles),
            global_timer_ns: String(c.globalTimerNs),
            certified_data_hex: Buffer.from(c.certifiedData).toString('hex'),
            version: String(c.version),
            freezing_threshold: String(c.freezingThreshold),
            module_hash_hex: moduleHash,
            globals,
            stable_pages: c.stable.size_pages,
            chunk_hashes: [...c.chunkStore.keys()]
        });
    }
    const state: SavedState = {
        version: STATE_VERSION,
        time_ns: String(engine.timeNs),
        round: engine.round,
        subnets: engine.subnets.map((s) => ({ region: s.region, next_index: String(s.nextIndex) })),
        canisters
    };
    writeFileSync(join(tmp, 'state.json'), JSON.stringify(state, null, 2));
    const final = join(dir, 'state');
    const old = join(dir, 'state.old');
    rmSync(old, { recursive: true, force: true });
    if (existsSync(final)) renameSync(final, old);
    renameSync(tmp, final);
    rmSync(old, { recursive: true, force: true });
}

/**
 * Restores a checkpoint into a fresh `engine` created with the saved subnets. Returns false when
 * `dir` holds no checkpoint.
 */
export function restoreState(engine: Engine, dir: string): boolean {
    const root = join(dir, 'state');
    const file = join(root, 'state.json');
    if (!existsSync(file)) return false;
    const s = JSON.parse(readFileSync(file, 'utf8')) as SavedState;
    if (s.version !== STATE_VERSION) throw new Error(`unknown state version ${s.version}`);
    if (s.subnets.length !== engine.subnets.length) {
        throw new Error(
            `the saved network has ${s.subnets.length} subnets, this one ${engine.subnets.length}`
        );
    }
    if (engine.canisters.size > 0) throw new Error('restore needs an empty network');
    for (const c of s.canisters) {
        const subnet = engine.subnets[c.subnet_index];
        const canister = engine.createCanister(
            subnet,
            c.controllers.map((p) => Principal.fromText(p)),
            BigInt(c.cycles),
            Principal.fromText(c.id)
        );
        canister.status = c.status as typeof canister.status;
        canister.globalTimerNs = BigInt(c.global_timer_ns);
        canister.certifiedData = Uint8Array.from(Buffer.from(c.certified_data_hex, 'hex'));
        canister.version = BigInt(c.version);
        canister.freezingThreshold = BigInt(c.freezing_threshold);
        const stable = new StableMemory();
        stable.grow(BigInt(c.stable_pages));
        const pages = new Uint8Array(readFileSync(join(root, 'canisters', `${c.id}.stable`)));
        const view = new DataView(pages.buffer, pages.byteOffset, pages.byteLength);
        for (let at = 0; at + 4 + PAGE_SIZE_BYTES <= pages.length; at += 4 + PAGE_SIZE_BYTES) {
            const index = view.getUint32(at);
            if (index >= c.stable_pages) throw new Error(`stable page ${index} out of range`);
            stable.write(index * PAGE_SIZE_BYTES, pages.subarray(at + 4, at + 4 + PAGE_SIZE_BYTES));
        }
        canister.stable = stable;
        for (const h of c.chunk_hashes) {
            canister.chunkStore.set(h, new Uint8Array(readFileSync(join(root, 'chunks', h))));
        }
        if (c.module_hash_hex) {
            const wasm = new Uint8Array(readFileSync(join(root, 'modules', c.module_hash_hex)));
            const code = engine.loadCode(wasm);
            canister.code = code;
            canister.instance = canister.instantiate(code);
            canister.loadHeap(
                new Uint8Array(readFileSync(join(root, 'canisters', `${c.id}.heap`)))
            );
            for (const g of c.globals) {
                (canister.instance.exports[g.name] as WebAssembly.Global).value = g.big
                    ? BigInt(g.value)
                    : Number(g.value);
            }
        }
    }
    s.subnets.forEach((x, i) => (engine.subnets[i].nextIndex = BigInt(x.next_index)));
    const savedTime = BigInt(s.time_ns);
    if (savedTime > engine.timeNs) engine.timeNs = savedTime;
    engine.round = s.round;
    return true;
}
