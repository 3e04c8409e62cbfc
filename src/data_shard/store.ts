/**
 * The shard's stable memory layout. Every map here survives upgrades; memory ids are fixed forever
 * (ids cannot be reclaimed), so new maps take new ids and old ids are never reused.
 */
import { Principal, StableBTreeMap } from 'azle';

import { emptyTotals, ShardTotals, SlotData, StateRun } from '../shared/shard_state';
import { IndexNode, SortedIdIndex } from '../shared/sorted_index';
import { rawBytes, u64Key } from '../shared/stable_keys';

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
}

export const MEMORY = {
    meta: 0,
    loans: 1,
    slots: 2,
    byBorrower: 3,
    byInvestor: 4,
    byStatus: 5,
    dirty: 6,
    dataSlots: 7
} as const;

export const meta = new StableBTreeMap<string, unknown>(MEMORY.meta);
export const loans = new StableBTreeMap<bigint, Uint8Array>(MEMORY.loans, u64Key, rawBytes);
export const slots = new StableBTreeMap<number, SlotData>(MEMORY.slots);
export const byBorrower = new SortedIdIndex(
    new StableBTreeMap<string, IndexNode>(MEMORY.byBorrower)
);
export const byInvestor = new SortedIdIndex(
    new StableBTreeMap<string, IndexNode>(MEMORY.byInvestor)
);
export const byStatus = new SortedIdIndex(new StableBTreeMap<string, IndexNode>(MEMORY.byStatus));
/** The ids written in migrating slots since their copy began (the catch-up set). */
export const dirty = new SortedIdIndex(new StableBTreeMap<string, IndexNode>(MEMORY.dirty));
/** The slots that hold data, so span scans skip empty slots without a lookup each. */
const dataSlots = new SortedIdIndex(new StableBTreeMap<string, IndexNode>(MEMORY.dataSlots));
const DATA_SLOTS_KEY = 'slots';

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
            storage_used_bytes: 0n
        }
    );
}

export function setCounters(counters: ShardCounters): void {
    meta.insert('counters', counters);
}

/** The slot-state table (a few runs, see `StateRun`). */
export function getRuns(): StateRun[] {
    return (meta.get('slot_states') as StateRun[] | undefined) ?? [];
}

export function setRuns(runs: StateRun[]): void {
    meta.insert('slot_states', runs);
}

/** A slot's data (sequence counter, count, checksum) if it ever held a loan here. */
export function getSlotData(slot: number): SlotData | undefined {
    return slots.get(slot);
}

/** Writes a slot's data, keeping the index of slots with data in step; undefined forgets it. */
export function putSlotData(slot: number, data: SlotData | undefined): void {
    if (data === undefined) {
        slots.remove(slot);
        dataSlots.remove(DATA_SLOTS_KEY, BigInt(slot));
    } else {
        if (slots.insert(slot, data) === undefined) dataSlots.add(DATA_SLOTS_KEY, BigInt(slot));
    }
}

/** Slots in `[start, end]` that hold data, ascending, after `after` (at most `limit`). */
export function dataSlotsIn(start: number, end: number, limit: number, after?: number): number[] {
    const from = after ?? start - 1;
    const { ids } = dataSlots.page(DATA_SLOTS_KEY, from < 0 ? null : BigInt(from), limit);
    const out: number[] = [];
    for (const id of ids) {
        const slot = Number(id);
        if (slot > end) break;
        if (slot >= start) out.push(slot);
    }
    return out;
}

export function isFactory(caller: Principal): boolean {
    return caller.toText() === getConfig().factory;
}

export function isRouter(caller: Principal): boolean {
    return caller.toText() === getConfig().router;
}
