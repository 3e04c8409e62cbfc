/**
 * The shard's stable memory layout, with heap copies of the small records every call reads.
 *
 * Every map here survives upgrades; memory ids are fixed forever (ids cannot be reclaimed), so new
 * maps take new ids and old ids are never reused. Values use compact byte codecs, not Azle's
 * default JSON (which costs millions of instructions per value in the canister's JS engine).
 *
 * The configuration, the slot-state runs and the statistics are read on every call, so they are
 * also kept in the heap: loaded from stable memory on first use (and eagerly in init and
 * post-upgrade, so queries find them loaded), and written to both on every change. A trap rolls
 * back the heap with stable memory, and an upgrade empties the heap, so the copies never drift.
 */
import { Principal, StableBTreeMap } from 'azle';

import { emptyTotals, ShardTotals, SlotData, StateRun } from '../shared/shard_state';
import { IndexNode, indexNodeCodec, SortedIdIndex } from '../shared/sorted_index';
import { rawBytes, u32Key, u64Key, utf8Text } from '../shared/stable_keys';
import { LOAN_STATUSES } from '../shared/types';

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

/** Everything a write changes besides the loan, its slot and its indexes: one stable record. */
export interface ShardStatsRecord {
    counters: ShardCounters;
    totals: ShardTotals;
}

/**
 * Memory ids. `meta` holds `config` and `slot_states` (JSON, written rarely); `stats` holds the
 * counters and totals in one binary record (written once per update call).
 */
export const MEMORY = {
    meta: 0,
    loans: 1,
    slots: 2,
    byBorrower: 3,
    byInvestor: 4,
    byStatus: 5,
    dirty: 6,
    dataSlots: 7,
    stats: 8,
    loanHashes: 9
} as const;

/** Index store keys whose bytes are remembered; the memo is emptied when full. */
const MAX_REMEMBERED_KEYS = 4_096;
const keyBytes = new Map<string, Uint8Array>();

/**
 * `utf8Text` for index store keys, with the bytes of recent keys remembered: every index operation
 * encodes its header and page keys (a borrower's or investor's are 66+ characters), and the
 * per-character encoder costs about a million instructions for the four keys of one index update.
 * The same few thousand keys (statuses, a shard's borrowers and investors) come back again and again.
 */
export const indexKeyCodec = {
    toBytes(text: string): Uint8Array {
        let bytes = keyBytes.get(text);
        if (bytes === undefined) {
            bytes = utf8Text.toBytes(text);
            if (keyBytes.size >= MAX_REMEMBERED_KEYS) keyBytes.clear();
            keyBytes.set(text, bytes);
        }
        return bytes;
    },
    fromBytes: utf8Text.fromBytes
};

function indexMap(memoryId: number): StableBTreeMap<string, IndexNode> {
    return new StableBTreeMap<string, IndexNode>(memoryId, indexKeyCodec, indexNodeCodec);
}

/** `SlotData` as 28 bytes: next_seq, low_seq (float64, exact below 2^53), count (u32), checksum (u64). */
export const slotDataCodec = {
    toBytes(data: SlotData): Uint8Array {
        const bytes = new Uint8Array(28);
        const view = new DataView(bytes.buffer);
        view.setFloat64(0, data.next_seq);
        view.setFloat64(8, data.low_seq);
        view.setUint32(16, data.count);
        view.setBigUint64(20, data.checksum);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): SlotData {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        return {
            next_seq: view.getFloat64(0),
            low_seq: view.getFloat64(8),
            count: view.getUint32(16),
            checksum: view.getBigUint64(20)
        };
    }
};

/** Bytes of `ShardStatsRecord`: five counters, three amounts (u64) and a u32 per status. */
export const statsCodec = {
    toBytes(s: ShardStatsRecord): Uint8Array {
        const bytes = new Uint8Array(8 * 8 + 4 * LOAN_STATUSES.length);
        const view = new DataView(bytes.buffer);
        const c = s.counters;
        const t = s.totals;
        const wide = [
            c.message_count,
            c.error_count,
            c.instructions_total,
            c.instructions_max,
            c.storage_used_bytes,
            t.total_requested,
            t.total_approved,
            t.total_repaid
        ];
        wide.forEach((v, i) => view.setBigUint64(i * 8, BigInt.asUintN(64, v)));
        LOAN_STATUSES.forEach((status, i) => view.setUint32(64 + i * 4, t.by_status[status]));
        return bytes;
    },
    fromBytes(bytes: Uint8Array): ShardStatsRecord {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const u = (i: number): bigint => view.getBigUint64(i * 8);
        const totals = emptyTotals();
        LOAN_STATUSES.forEach((status, i) => {
            totals.by_status[status] = view.getUint32(64 + i * 4);
        });
        totals.total_requested = u(5);
        totals.total_approved = u(6);
        totals.total_repaid = u(7);
        return {
            counters: {
                message_count: u(0),
                error_count: u(1),
                instructions_total: u(2),
                instructions_max: u(3),
                storage_used_bytes: u(4)
            },
            totals
        };
    }
};

/**
 * A loan's checksum hash (`loanHash` of its stored bytes) and the version it was taken at, so a
 * write subtracts the old hash from its slot's checksum without hashing the old bytes again (the
 * hash costs about a million instructions per loan). The version guards against an entry left
 * stale by a build that did not keep this map: on a mismatch the shard hashes the bytes.
 */
export interface LoanHash {
    hash: bigint;
    version: bigint;
}

/** `LoanHash` as 16 bytes: hash, version (u64 each). */
export const loanHashCodec = {
    toBytes(h: LoanHash): Uint8Array {
        const bytes = new Uint8Array(16);
        const view = new DataView(bytes.buffer);
        view.setBigUint64(0, h.hash);
        view.setBigUint64(8, h.version);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): LoanHash {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        return { hash: view.getBigUint64(0), version: view.getBigUint64(8) };
    }
};

const meta = new StableBTreeMap<string, unknown>(MEMORY.meta);
const statsMap = new StableBTreeMap<number, ShardStatsRecord>(MEMORY.stats, u32Key, statsCodec);
const STATS_KEY = 0;
export const loans = new StableBTreeMap<bigint, Uint8Array>(MEMORY.loans, u64Key, rawBytes);
/** Each stored loan's `LoanHash` (see there); absent for loans written by earlier builds. */
export const loanHashes = new StableBTreeMap<bigint, LoanHash>(
    MEMORY.loanHashes,
    u64Key,
    loanHashCodec
);
export const slots = new StableBTreeMap<number, SlotData>(MEMORY.slots, u32Key, slotDataCodec);
export const byBorrower = new SortedIdIndex(indexMap(MEMORY.byBorrower));
export const byInvestor = new SortedIdIndex(indexMap(MEMORY.byInvestor));
export const byStatus = new SortedIdIndex(indexMap(MEMORY.byStatus));
/** The ids written in migrating slots since their copy began (the catch-up set). */
export const dirty = new SortedIdIndex(indexMap(MEMORY.dirty));
/** The slots that hold data, so span scans skip empty slots without a lookup each. */
const dataSlots = new SortedIdIndex(indexMap(MEMORY.dataSlots));
const DATA_SLOTS_KEY = 'slots';

/** Heap copies (see the module comment); `undefined` until loaded. */
let config: ShardConfig | undefined;
let writers: { factory: Uint8Array; router: Uint8Array | null } | undefined;
let runs: StateRun[] | undefined;
let stats: ShardStatsRecord | undefined;

function zeroStats(): ShardStatsRecord {
    return {
        counters: {
            message_count: 0n,
            error_count: 0n,
            instructions_total: 0n,
            instructions_max: 0n,
            storage_used_bytes: 0n
        },
        totals: emptyTotals()
    };
}

export function getConfig(): ShardConfig {
    if (config === undefined) {
        const stored = meta.get('config') as ShardConfig | undefined;
        if (stored === undefined) throw new Error('the shard was not initialised');
        config = stored;
    }
    return config;
}

export function setConfig(next: ShardConfig): void {
    meta.insert('config', next);
    config = next;
    writers = undefined;
}

/** The statistics record; change it only through `setStats`. */
export function getStats(): ShardStatsRecord {
    if (stats === undefined) stats = statsMap.get(STATS_KEY) ?? zeroStats();
    return stats;
}

/**
 * Replaces the statistics in the heap only. Every update call ends in `setStats` (the shard's
 * `metered`), which writes the record to stable memory once, however many loans the call changed.
 */
export function stageStats(next: ShardStatsRecord): void {
    stats = next;
}

/** Replaces the statistics in the heap and in stable memory. */
export function setStats(next: ShardStatsRecord): void {
    statsMap.insert(STATS_KEY, next);
    stats = next;
}

/** The slot-state table (a few runs, see `StateRun`). */
export function getRuns(): StateRun[] {
    if (runs === undefined) runs = (meta.get('slot_states') as StateRun[] | undefined) ?? [];
    return runs;
}

export function setRuns(next: StateRun[]): void {
    meta.insert('slot_states', next);
    runs = next;
}

/** Loads the heap copies now (init and post-upgrade), so queries never pay for the load. */
export function warmCaches(): void {
    getConfig();
    getRuns();
    getStats();
    writerBytes();
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

/** The factory's and router's principals as bytes, compared without rendering text each call. */
function writerBytes(): { factory: Uint8Array; router: Uint8Array | null } {
    if (writers === undefined) {
        const c = getConfig();
        writers = {
            factory: Principal.fromText(c.factory).toUint8Array(),
            router: c.router === null ? null : Principal.fromText(c.router).toUint8Array()
        };
    }
    return writers;
}

function sameBytes(a: Uint8Array, b: Uint8Array | null): boolean {
    if (b === null || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
}

export function isFactory(caller: Principal): boolean {
    return sameBytes(caller.toUint8Array(), writerBytes().factory);
}

export function isRouter(caller: Principal): boolean {
    return sameBytes(caller.toUint8Array(), writerBytes().router);
}
