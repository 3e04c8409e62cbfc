/**
 * The shard's stable memory layout. Every map here survives upgrades; memory ids are fixed forever
 * (ids cannot be reclaimed), so new maps take new ids and old ids are never reused.
 */
import { Principal, StableBTreeMap } from 'azle';

import { emptyTotals, isOwnedState, ShardTotals, SlotRecord } from '../shared/shard_state';
import { IndexNode, SortedIdIndex } from '../shared/sorted_index';

/** Loan ids as 8 big-endian bytes, so the map's key order is id order. */
const idKey = {
    toBytes(id: bigint): Uint8Array {
        const bytes = new Uint8Array(8);
        new DataView(bytes.buffer).setBigUint64(0, id);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): bigint {
        return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
    }
};

/** Values already encoded (Candid bytes of a loan) are stored as they are. */
const rawBytes = {
    toBytes: (bytes: Uint8Array): Uint8Array => bytes,
    fromBytes: (bytes: Uint8Array): Uint8Array => bytes
};

/** The shard's configuration, written at init and by the factory. */
export interface ShardConfig {
    shard_id: number;
    factory: string;
    router: string | null;
    epoch: bigint;
    max_loans: bigint;
    storage_capacity_bytes: bigint;
    read_only: boolean;
}

/** Counters of update calls (queries cannot persist anything, so they are not counted). */
export interface ShardCounters {
    message_count: bigint;
    error_count: bigint;
    instructions_total: bigint;
    instructions_max: bigint;
    storage_used_bytes: bigint;
    owned_slots: number;
}

export const MEMORY = {
    meta: 0,
    loans: 1,
    slots: 2,
    byBorrower: 3,
    byInvestor: 4,
    byStatus: 5,
    dirty: 6
} as const;

export const meta = new StableBTreeMap<string, unknown>(MEMORY.meta);
export const loans = new StableBTreeMap<bigint, Uint8Array>(MEMORY.loans, idKey, rawBytes);
export const slots = new StableBTreeMap<number, SlotRecord>(MEMORY.slots);
export const byBorrower = new SortedIdIndex(
    new StableBTreeMap<string, IndexNode>(MEMORY.byBorrower)
);
export const byInvestor = new SortedIdIndex(
    new StableBTreeMap<string, IndexNode>(MEMORY.byInvestor)
);
export const byStatus = new SortedIdIndex(new StableBTreeMap<string, IndexNode>(MEMORY.byStatus));
/** Per migrating slot, the ids written since its copy began (the catch-up set). */
export const dirty = new SortedIdIndex(new StableBTreeMap<string, IndexNode>(MEMORY.dirty));

export function getConfig(): ShardConfig {
    const config = meta.get('config') as ShardConfig | undefined;
    if (config === undefined) throw new Error('the shard was not initialised');
    return config;
}

export function setConfig(config: ShardConfig): void {
    meta.insert('config', config);
}

export function getTotals(): ShardTotals {
    return (meta.get('totals') as ShardTotals | undefined) ?? emptyTotals();
}

export function setTotals(totals: ShardTotals): void {
    meta.insert('totals', totals);
}

export function getCounters(): ShardCounters {
    return (
        (meta.get('counters') as ShardCounters | undefined) ?? {
            message_count: 0n,
            error_count: 0n,
            instructions_total: 0n,
            instructions_max: 0n,
            storage_used_bytes: 0n,
            owned_slots: 0
        }
    );
}

export function setCounters(counters: ShardCounters): void {
    meta.insert('counters', counters);
}

/** Writes a slot record and keeps the owned-slot count in step with it. */
export function putSlot(
    slot: number,
    before: SlotRecord | undefined,
    after: SlotRecord | undefined
): void {
    if (after === undefined) slots.remove(slot);
    else slots.insert(slot, after);
    const delta = Number(isOwnedState(after?.state)) - Number(isOwnedState(before?.state));
    if (delta !== 0) {
        const counters = getCounters();
        setCounters({ ...counters, owned_slots: counters.owned_slots + delta });
    }
}

export function isFactory(caller: Principal): boolean {
    return caller.toText() === getConfig().factory;
}

export function isRouter(caller: Principal): boolean {
    return caller.toText() === getConfig().router;
}
