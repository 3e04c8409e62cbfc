/**
 * The shard's stable memory layout, with heap copies of the small records every call reads.
 *
 * Every map here survives upgrades; memory ids are fixed forever (ids cannot be reclaimed), so new
 * maps take new ids and old ids are never reused. Values use compact byte codecs, not Azle's
 * default JSON (which costs millions of instructions per value in the canister's JS engine).
 *
 * The configuration, the slot-state runs and the statistics are read on every call, so they are
 * also kept in the heap: loaded from stable memory on first use (and eagerly in init and
 * post-upgrade, so queries find them loaded), and written to both on every change. Bounded heap
 * caches hold what writes read again soon: slot records, recently written loans (decoded, with
 * their bytes and checksum hash) and decoded index nodes. A trap rolls back the heap with stable
 * memory, and an upgrade empties the heap, so the copies never drift.
 */
import { Principal, StableBTreeMap } from 'azle';

import { emptyTotals, ShardTotals, SlotData, StateRun } from '../shared/shard_state';
import { SLOT_COUNT } from '../shared/limits';
import { indexNodeCodec, SortedIdIndex } from '../shared/sorted_index';
import { rawBytes, u32Key, u64Key, utf8Text } from '../shared/stable_keys';
import { Loan, LOAN_STATUSES } from '../shared/types';

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
const MAX_REMEMBERED_KEYS = 8_192;
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

/** A value codec (Azle's `Serializable` shape, typed). */
interface ValueCodec<V> {
    toBytes(value: V): Uint8Array;
    fromBytes(bytes: Uint8Array): V;
}

/**
 * A `StableBTreeMap` whose values are decoded by `get` only. Azle's `insert` and `remove` decode
 * the value they replace (for an index page, a copy of 2 KiB into typed arrays), which the shard
 * never reads; here the map holds raw bytes and the codec runs on this side. The stored bytes are
 * the codec's, exactly as with the codec given to the map, so the layout does not change.
 */
export class ValueMap<K, V> {
    private readonly raw: StableBTreeMap<K, Uint8Array>;

    constructor(
        memoryId: number,
        keyCodec: ValueCodec<K>,
        private readonly codec: ValueCodec<V>
    ) {
        this.raw = new StableBTreeMap<K, Uint8Array>(memoryId, keyCodec, rawBytes);
    }

    get(key: K): V | undefined {
        const bytes = this.raw.get(key);
        return bytes === undefined ? undefined : this.codec.fromBytes(bytes);
    }

    /** Writes `value` under `key`; true when the key was new. */
    insert(key: K, value: V): boolean {
        return this.raw.insert(key, this.codec.toBytes(value)) === undefined;
    }

    remove(key: K): void {
        this.raw.remove(key);
    }
}

/**
 * Decoded index nodes each index keeps in the heap (see `SortedIdIndexOptions.cached_nodes`),
 * least recently used dropped first: the hot ones (statuses, active borrowers and investors) stay.
 * At most 8 MiB per index at 256 ids per page; a borrower's one small page is far less.
 */
const CACHED_INDEX_NODES = 4_096;

function index(memoryId: number): SortedIdIndex {
    return new SortedIdIndex(new ValueMap(memoryId, indexKeyCodec, indexNodeCodec), {
        cached_nodes: CACHED_INDEX_NODES
    });
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
        // Written out: this runs once per update call. `setBigUint64` takes values modulo 2^64.
        const bytes = new Uint8Array(8 * 8 + 4 * LOAN_STATUSES.length);
        const view = new DataView(bytes.buffer);
        const c = s.counters;
        const t = s.totals;
        view.setBigUint64(0, c.message_count);
        view.setBigUint64(8, c.error_count);
        view.setBigUint64(16, c.instructions_total);
        view.setBigUint64(24, c.instructions_max);
        view.setBigUint64(32, c.storage_used_bytes);
        view.setBigUint64(40, t.total_requested);
        view.setBigUint64(48, t.total_approved);
        view.setBigUint64(56, t.total_repaid);
        for (let i = 0; i < LOAN_STATUSES.length; i++) {
            view.setUint32(64 + i * 4, t.by_status[LOAN_STATUSES[i]]);
        }
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
const statsMap = new ValueMap<number, ShardStatsRecord>(MEMORY.stats, u32Key, statsCodec);
const STATS_KEY = 0;
export const loans = new StableBTreeMap<bigint, Uint8Array>(MEMORY.loans, u64Key, rawBytes);
/** Each stored loan's `LoanHash` (see there); absent for loans written by earlier builds. */
export const loanHashes = new ValueMap<bigint, LoanHash>(MEMORY.loanHashes, u64Key, loanHashCodec);
const slots = new ValueMap<number, SlotData>(MEMORY.slots, u32Key, slotDataCodec);
export const byBorrower = index(MEMORY.byBorrower);
export const byInvestor = index(MEMORY.byInvestor);
export const byStatus = index(MEMORY.byStatus);
/** The ids written in migrating slots since their copy began (the catch-up set). */
export const dirty = index(MEMORY.dirty);
/** The slots that hold data, so span scans skip empty slots without a lookup each. */
const dataSlots = index(MEMORY.dataSlots);
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

/** Slot records kept in the heap (every write reads and writes its slot's): all of them fit. */
const MAX_CACHED_SLOTS = SLOT_COUNT;
const slotCache = new Map<number, SlotData>();

/**
 * A slot's data (sequence counter, count, checksum) if it ever held a loan here. Records are
 * replaced, never changed in place (`putSlotData` takes a new object), so the heap copy is safe.
 */
export function getSlotData(slot: number): SlotData | undefined {
    const cached = slotCache.get(slot);
    if (cached !== undefined) return cached;
    const stored = slots.get(slot);
    if (stored !== undefined) cacheSlot(slot, stored);
    return stored;
}

function cacheSlot(slot: number, data: SlotData): void {
    if (slotCache.size >= MAX_CACHED_SLOTS && !slotCache.has(slot)) slotCache.clear();
    slotCache.set(slot, data);
}

/** Writes a slot's data, keeping the index of slots with data in step; undefined forgets it. */
export function putSlotData(slot: number, data: SlotData | undefined): void {
    if (data === undefined) {
        slotCache.delete(slot);
        slots.remove(slot);
        dataSlots.remove(DATA_SLOTS_KEY, BigInt(slot));
    } else {
        cacheSlot(slot, data);
        if (slots.insert(slot, data)) dataSlots.add(DATA_SLOTS_KEY, BigInt(slot));
    }
}

/** A loan as last written here: decoded, its stored bytes, and their checksum hash (`loanHash`). */
export interface RecentLoan {
    loan: Loan;
    bytes: Uint8Array;
    hash: bigint;
}

/**
 * Loans kept in the heap after their last write, oldest write evicted first: a loan moves through
 * its lifecycle in a few writes close together, and each one then skips the read, the decode and
 * the hash lookup of the one before (together about 450 K instructions). Entries are never changed
 * in place. At a few KiB per loan, about 10 MiB at most.
 */
const MAX_RECENT_LOANS = 4_096;
const recentLoans = new Map<bigint, RecentLoan>();

/** The loan `id` as last written here, if still remembered (see `recentLoans`). */
export function recentLoan(id: bigint): RecentLoan | undefined {
    return recentLoans.get(id);
}

/** Remembers a loan just written (undefined: just deleted) as the newest entry. */
export function rememberLoan(id: bigint, entry: RecentLoan | undefined): void {
    recentLoans.delete(id);
    if (entry === undefined) return;
    if (recentLoans.size >= MAX_RECENT_LOANS) {
        const oldest = recentLoans.keys().next();
        if (oldest.done !== true) recentLoans.delete(oldest.value);
    }
    recentLoans.set(id, entry);
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
