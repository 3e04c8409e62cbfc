/**
 * The factory's stable memory layout. Everything that must survive an upgrade lives here; memory
 * ids are fixed forever (they cannot be reclaimed), so a new map takes a new id.
 */
import { Principal, StableBTreeMap } from 'azle';

import { DEFAULT_FACTORY_CONFIG } from '../shared/factory_api';
import { MAX_AUDIT_LOG_ENTRIES } from '../shared/limits';
import { rawBytes, u32Key, u64Key } from '../shared/stable_keys';
import type { MigrationState } from '../shared/migration';
import { initialScalingState, ScalingState } from '../shared/scaling_policy';
import type { ScalabilityConfig, ShardMetrics, SlotRange } from '../shared/types';

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

const meta = new StableBTreeMap<string, unknown>(MEMORY.meta);
export const shards = new StableBTreeMap<number, ShardRecord>(MEMORY.shards, u32Key);
export const audit = new StableBTreeMap<bigint, StoredAuditEntry>(MEMORY.audit, u64Key);
export const migrations = new StableBTreeMap<string, MigrationState>(MEMORY.migrations);
/** Region name → subnet id (text), for placement through the Cycles Minting Canister. */
export const regions = new StableBTreeMap<string, string>(MEMORY.regions);
/**
 * The shard Wasm's chunk bytes by sha256 (hex), pending and committed: a shard on another subnet
 * cannot install from the factory's chunk store (it must be on the target's subnet), so the factory
 * uploads these to the new canister's own store.
 */
export const wasmChunks = new StableBTreeMap<string, Uint8Array>(
    MEMORY.wasmChunks,
    undefined,
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
