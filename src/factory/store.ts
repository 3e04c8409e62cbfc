/**
 * The factory's stable memory layout. Everything that must survive an upgrade lives here; memory
 * ids are fixed forever (they cannot be reclaimed), so a new map takes a new id.
 *
 * Values are JSON in the layout of Azle's default codec, written and read with `azleJson` (the
 * same bytes, without the JavaScript UTF-8 polyfill that cost ~12 M instructions per shard record),
 * except shard records, rewritten every scaling round: Candid (`shardRecordCodec`, which still
 * reads the JSON records of earlier versions). The small maps every message reads (meta, shards,
 * migrations) also keep a heap copy (`HeapMap`): loaded on first use, written through on every
 * change. Values are immutable: callers replace them with `insert`, never change them in place. A
 * trap rolls the heap back with stable memory and an upgrade empties it, so the copy never drifts;
 * a query's loads are discarded with its heap, so `warmStore` loads in init and post-upgrade what
 * the queries read.
 */
import { IDL, Principal, StableBTreeMap } from 'azle';

import { bool, Infer, nat, nat32, nat64, opt, record, text } from '../shared/candid';
import { DEFAULT_FACTORY_CONFIG } from '../shared/factory_api';
import { MessageCodec } from '../shared/factory_codec';
import { MAX_AUDIT_LOG_ENTRIES, MAX_SHARDS } from '../shared/limits';
import { azleJson } from '../shared/stable_json';
import { rawBytes, u32Key, u64Key } from '../shared/stable_keys';
import type { MigrationState } from '../shared/migration';
import { initialScalingState, ScalingState } from '../shared/scaling_policy';
import { ShardMetrics, type ScalabilityConfig, type SlotRange } from '../shared/types';

/** A shard as the registry keeps it; `ShardInfo` is derived from it. */
export interface ShardRecord {
    shard_id: number;
    canister_id: string;
    created_at: bigint;
    region: string;
    is_active: boolean;
    is_read_only: boolean;
    /**
     * Set once install_chunked_code succeeded. A failed install leaves an inactive record whose
     * (empty) canister the next creation in the same region installs, so no cycles are lost.
     */
    installed: boolean;
    /** The subnet chosen through the CMC (text), or absent/null for the factory's own subnet. */
    subnet?: string | null;
    memory_size_bytes: bigint;
    cycles_balance: bigint;
    metrics: ShardMetrics | null;
}

/** One audit entry as stored (the caller as text). */
export interface StoredAuditEntry {
    timestamp: bigint;
    caller: string;
    action: string;
    detail: string;
}

/** The committed shard Wasm: sha256 of the module and its chunk hashes in order. */
export interface WasmRecord {
    module_hash: Uint8Array;
    chunk_hashes: Uint8Array[];
}

/** Counters that only grow. */
export interface Counters {
    next_shard_id: number;
    next_migration: number;
    next_audit_seq: bigint;
    scale_outs: bigint;
    last_scaling_check: bigint;
    next_upgrade: number;
}

export const MEMORY = {
    meta: 0,
    shards: 1,
    audit: 2,
    migrations: 3,
    regions: 4,
    wasmChunks: 5
} as const;

/** Entries a `HeapMap` keeps in the heap at most (the factory's maps hold a few hundred). */
const MAX_HEAP_ENTRIES = 1_024;

/** How a `HeapMap` turns its values into bytes and back. */
interface ValueCodec {
    toBytes(value: unknown): Uint8Array;
    fromBytes(bytes: Uint8Array): unknown;
}

/**
 * A `StableBTreeMap` of value bytes with a heap copy of the entries read or written, and of the
 * first page of values (`values(0, n)`, what `allShards` reads). Writes go to both; see the module
 * comment. The stable map holds the encoded bytes itself (`rawBytes`), so an insert does not
 * decode the value it replaces (Azle's `insert` returns the previous value, decoded).
 */
export class HeapMap<K extends number | string, V> {
    private readonly memo = new Map<K, V | undefined>();
    private page: { length: number; keys: K[]; values: V[] } | null = null;

    constructor(
        private readonly stable: StableBTreeMap<K, Uint8Array>,
        private readonly codec: ValueCodec = azleJson
    ) {}

    get(key: K): V | undefined {
        if (this.memo.has(key)) return this.memo.get(key);
        const bytes = this.stable.get(key);
        const value = bytes === undefined ? undefined : (this.codec.fromBytes(bytes) as V);
        this.remember(key, value);
        return value;
    }

    containsKey(key: K): boolean {
        return this.get(key) !== undefined;
    }

    insert(key: K, value: V): void {
        this.stable.insert(key, this.codec.toBytes(value));
        this.remember(key, value);
        // A changed entry of the page is replaced in it; a new key may belong in it: reload.
        const at = this.page === null ? -1 : this.page.keys.indexOf(key);
        if (at >= 0) this.page!.values[at] = value;
        else this.page = null;
    }

    remove(key: K): void {
        this.stable.remove(key);
        this.remember(key, undefined);
        this.page = null;
    }

    len(): number {
        return this.stable.len();
    }

    keys(start: number, length: number): K[] {
        return this.stable.keys(start, length);
    }

    /** Values in key order; the page from the first entry is kept until the next write. */
    values(start: number, length: number): V[] {
        if (start !== 0) return this.stable.values(start, length).map((b) => this.decode(b));
        if (this.page === null || this.page.length !== length) {
            const items = this.stable.items(0, length);
            this.page = {
                length,
                keys: items.map(([k]) => k),
                values: items.map(([, b]) => this.decode(b))
            };
        }
        return this.page.values.slice();
    }

    private decode(bytes: Uint8Array): V {
        return this.codec.fromBytes(bytes) as V;
    }

    private remember(key: K, value: V | undefined): void {
        if (!this.memo.has(key) && this.memo.size >= MAX_HEAP_ENTRIES) this.memo.clear();
        this.memo.set(key, value);
    }
}

/** A shard record as stored: Candid (`StoredShard`), in one definition with `ShardRecord`. */
const StoredShard = record({
    shard_id: nat32,
    canister_id: text,
    created_at: nat64,
    region: text,
    is_active: bool,
    is_read_only: bool,
    installed: bool,
    subnet: opt(text),
    memory_size_bytes: nat64,
    cycles_balance: nat,
    metrics: opt(ShardMetrics)
});
type StoredShard = Infer<typeof StoredShard>;

const storedShardMessage = MessageCodec.of<[StoredShard]>([StoredShard]);
const DIDL = [0x44, 0x49, 0x44, 0x4c];

/**
 * Shard records as Candid messages, written by hand (`MessageCodec`): the scaling round rewrites
 * every record, and JSON text costs ~3.4 M instructions per record in the canister's JS engine (a
 * byte loop for the UTF-8), Candid ~0.3 M. Records written as JSON by earlier versions (they start
 * with `{`, never with `DIDL`) are still read.
 */
export const shardRecordCodec = {
    toBytes(value: unknown): Uint8Array {
        const r = value as ShardRecord;
        return storedShardMessage.encode([
            {
                ...r,
                subnet: r.subnet === undefined || r.subnet === null ? [] : [r.subnet],
                metrics: r.metrics === null || r.metrics === undefined ? [] : [r.metrics]
            }
        ]);
    },
    fromBytes(bytes: Uint8Array): unknown {
        if (!DIDL.every((b, i) => bytes[i] === b)) return azleJson.fromBytes(bytes);
        const [stored] =
            storedShardMessage.decode(bytes) ??
            (IDL.decode([StoredShard], bytes) as unknown as [StoredShard]);
        const record: ShardRecord = {
            ...stored,
            subnet: stored.subnet[0] ?? null,
            metrics: stored.metrics[0] ?? null
        };
        return record;
    }
};

const meta = new HeapMap<string, unknown>(
    new StableBTreeMap<string, Uint8Array>(MEMORY.meta, azleJson, rawBytes)
);
export const shards = new HeapMap<number, ShardRecord>(
    new StableBTreeMap<number, Uint8Array>(MEMORY.shards, u32Key, rawBytes),
    shardRecordCodec
);
export const audit = new StableBTreeMap<bigint, StoredAuditEntry>(MEMORY.audit, u64Key, azleJson);
export const migrations = new HeapMap<string, MigrationState>(
    new StableBTreeMap<string, Uint8Array>(MEMORY.migrations, azleJson, rawBytes)
);
/** Region name → subnet id (text), for placement through the Cycles Minting Canister. */
export const regions = new StableBTreeMap<string, string>(MEMORY.regions, azleJson, azleJson);
/**
 * The shard Wasm's chunk bytes by sha256 (hex), pending and committed: a shard on another subnet
 * cannot install from the factory's chunk store (it must be on the target's subnet), so the factory
 * uploads these to the new canister's own store.
 */
export const wasmChunks = new StableBTreeMap<string, Uint8Array>(
    MEMORY.wasmChunks,
    azleJson,
    rawBytes
);

/** The key of a chunk's bytes in `wasmChunks`: its sha256 as hex. */
export function chunkKey(hash: Uint8Array): string {
    return [...hash].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function getMeta<T>(key: string, fallback: T): T {
    const value = meta.get(key);
    return value === undefined ? fallback : (value as T);
}

function setMeta<T>(key: string, value: T): void {
    meta.insert(key, value);
}

function removeMeta(key: string): void {
    meta.remove(key);
}

export function getConfig(): ScalabilityConfig {
    return getMeta<ScalabilityConfig>('config', DEFAULT_FACTORY_CONFIG);
}

export function setConfig(config: ScalabilityConfig): void {
    setMeta('config', config);
}

/** Extra admins (controllers are admins without being listed). */
export function getAdmins(): string[] {
    return getMeta<string[]>('admins', []);
}

export function setAdmins(admins: string[]): void {
    setMeta('admins', admins);
}

/** The slot map as ranges; null until the first shard exists. */
export function getSlotRanges(): { epoch: bigint; ranges: SlotRange[] } | null {
    return getMeta<{ epoch: bigint; ranges: SlotRange[] } | null>('slot_map', null);
}

export function setSlotRanges(epoch: bigint, ranges: SlotRange[]): void {
    setMeta('slot_map', { epoch, ranges });
}

export function getWasm(): WasmRecord | null {
    return getMeta<WasmRecord | null>('wasm', null);
}

export function setWasm(wasm: WasmRecord | null): void {
    if (wasm === null) removeMeta('wasm');
    else setMeta('wasm', wasm);
}

/** Chunks uploaded since the last commit, in upload order. */
export function getPendingChunks(): Uint8Array[] {
    return getMeta<Uint8Array[]>('pending_chunks', []);
}

export function setPendingChunks(chunks: Uint8Array[]): void {
    setMeta('pending_chunks', chunks);
}

export function getRouter(): string | null {
    return getMeta<string | null>('router', null);
}

export function setRouter(router: string): void {
    setMeta('router', router);
}

export function getCmc(): string | null {
    return getMeta<string | null>('cmc', null);
}

export function setCmc(cmc: string): void {
    setMeta('cmc', cmc);
}

export function getScalingState(): ScalingState {
    return getMeta<ScalingState>('scaling_state', initialScalingState());
}

export function setScalingState(state: ScalingState): void {
    setMeta('scaling_state', state);
}

export function getCounters(): Counters {
    return getMeta<Counters>('counters', {
        next_shard_id: 1,
        next_migration: 1,
        next_audit_seq: 1n,
        scale_outs: 0n,
        last_scaling_check: 0n,
        next_upgrade: 1
    });
}

export function setCounters(counters: Counters): void {
    setMeta('counters', counters);
}

/** The migration in flight, if any (its id; the state is in `migrations`). */
export function getCurrentMigration(): string | null {
    return getMeta<string | null>('current_migration', null);
}

export function setCurrentMigration(id: string | null): void {
    if (id === null) removeMeta('current_migration');
    else setMeta('current_migration', id);
}

/**
 * A lease on a long operation (`migration`, `create`): held until `until_ms` unless released. A
 * trap between awaits cannot leave the operation locked forever: the lease simply expires.
 */
export function leaseHeld(name: string, now_ms: number): boolean {
    return getMeta<number>(`lease_${name}`, 0) > now_ms;
}

export function takeLease(name: string, until_ms: number): void {
    setMeta(`lease_${name}`, until_ms);
}

export function releaseLease(name: string): void {
    removeMeta(`lease_${name}`);
}

/** Appends an audit entry and drops the oldest beyond MAX_AUDIT_LOG_ENTRIES. */
export function appendAudit(caller: Principal, action: string, detail: string, now: bigint): void {
    const counters = getCounters();
    audit.insert(counters.next_audit_seq, {
        timestamp: now,
        caller: caller.toText(),
        action,
        detail: detail.slice(0, 1_000)
    });
    setCounters({ ...counters, next_audit_seq: counters.next_audit_seq + 1n });
    // One insert can push the log over its bound by one entry at most.
    if (audit.len() > MAX_AUDIT_LOG_ENTRIES) {
        const oldest = audit.keys(0, 1)[0];
        if (oldest !== undefined) audit.remove(oldest);
    }
}

/** Loads into the heap what the queries read (init and post-upgrade: a query's loads are lost). */
export function warmStore(): void {
    getConfig();
    getCounters();
    getSlotRanges();
    getWasm();
    getCurrentMigration();
    shards.values(0, MAX_SHARDS);
}
