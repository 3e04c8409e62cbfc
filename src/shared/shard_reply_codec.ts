/**
 * Hand codecs for the replies of a shard's `get_shard_stats` (`Result<ShardStats>`) and
 * `get_shard_metrics` (`Result<ShardMetrics>`), the two small records the router's health probe and
 * the factory's scaling check read from every shard again and again. `@dfinity/candid`'s generic
 * encoder and decoder cost tens of millions of instructions per reply in the canister's JS engine;
 * these write and read the bytes directly.
 *
 * Both records hold only `nat64`, `nat32`, `float64`, `bool` and `vec StatusCount` fields; the field
 * plan is derived from the one IDL definition at load (a new field of another type throws there).
 * The `Ok` head (`DIDL`, type table, `Ok` tag) is computed once with `IDL.encode` and checked against
 * the hand encoding (`candidPrefix`). A decoder answers undefined for anything but an `Ok` in the
 * encoding `@dfinity/candid` (Azle) writes; `decode*Reply` then falls back to `IDL.decode`, so every
 * valid reply is accepted and every invalid one rejected. `tests/unit/shard_reply_codec.test.ts`
 * checks both directions against `IDL.encode`/`IDL.decode`.
 *
 * The shard's other replies are here too (migration batches with stored loan bytes spliced in, the
 * small control results, `import_loans`' arguments), and `Err` replies of any of its methods
 * (`encodeErrReply`), so no reply of the shard goes through the generic encoder.
 *
 * @example
 * const reply = encodeShardStatsReply({ Ok: stats }); // the bytes IDL.encode([Result(ShardStats)], …) writes
 * decodeShardStatsReply(reply); // { Ok: stats }
 */
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';

import {
    candidFieldOrder,
    candidPrefix,
    concatBytes,
    lebBytes,
    readLoanValue,
    ValueReader
} from './loan_codec';
import {
    DeleteResult,
    ExportBatch,
    ExportCursor,
    ImportResult,
    ShardStats,
    SlotCount,
    SlotCountPage,
    SlotSeq,
    SpanChecksum
} from './shard_api';
import { utf8Text } from './stable_keys';
import {
    ApiError,
    Loan,
    LOAN_STATUSES,
    LoanStatusName,
    Result,
    ShardMetrics,
    StatusCount
} from './types';

type Res<T> = { Ok: T } | { Err: ApiError };

/** How a field is written: fixed-width scalars, or the per-status counts. */
type Kind = 'nat64' | 'nat32' | 'float64' | 'bool' | 'status_counts';

interface FieldPlan {
    name: string;
    kind: Kind;
}

const FIXED_BYTES: Record<Exclude<Kind, 'status_counts'>, number> = {
    nat64: 8,
    nat32: 4,
    float64: 8,
    bool: 1
};

const STATUS_COUNTS_DISPLAY = IDL.Vec(StatusCount).display();
/** Status cases in Candid order (a variant sorts by hash), and each one's index. */
const STATUS_ORDER: readonly LoanStatusName[] = candidFieldOrder(LOAN_STATUSES);
const STATUS_INDEX = new Map<string, number>(STATUS_ORDER.map((s, i) => [s, i]));
const COUNT_FIRST = candidFieldOrder(['status', 'count'] as const)[0] === 'count';

function kindOf(type: IDL.Type, name: string): Kind {
    const display = type.display();
    if (display === IDL.Nat64.display()) return 'nat64';
    if (display === IDL.Nat32.display()) return 'nat32';
    if (display === IDL.Float64.display()) return 'float64';
    if (display === IDL.Bool.display()) return 'bool';
    if (display === STATUS_COUNTS_DISPLAY) return 'status_counts';
    throw new Error(`shard reply codec: field ${name} has type ${display}; teach the codec`);
}

/** A record type's fields in Candid order with how each is written. */
function planOf(type: IDL.Type): FieldPlan[] {
    return (type as unknown as IDL.RecordClass)._fields.map(([name, t]) => ({
        name,
        kind: kindOf(t, name)
    }));
}

/** LEB128 length of a non-negative integer. */
function lebLength(value: number): number {
    let n = 1;
    for (let v = value; v >= 128; v = Math.floor(v / 128)) n++;
    return n;
}

function writeLeb(out: Uint8Array, at: number, value: number): number {
    let v = value;
    let i = at;
    for (;;) {
        const low = v & 0x7f;
        v = Math.floor(v / 128);
        if (v === 0) {
            out[i++] = low;
            return i;
        }
        out[i++] = low | 0x80;
    }
}

function statusIndex(status: object): number {
    const index = STATUS_INDEX.get(Object.keys(status)[0]);
    if (index === undefined) throw new Error('shard reply codec: unknown status');
    return index;
}

/** A `ValueReader` that also reads the scalars of these records. */
class ReplyReader extends ValueReader {
    constructor(bytes: Uint8Array) {
        super(bytes, 'shard reply');
    }

    nat32(): number {
        this.need(4);
        this.at += 4;
        return this.view.getUint32(this.at - 4, true);
    }

    float64(): number {
        this.need(8);
        this.at += 8;
        return this.view.getFloat64(this.at - 8, true);
    }

    bool(): boolean {
        const b = this.byte();
        if (b > 1) throw new Error('shard reply: bad bool');
        return b === 1;
    }

    statusCounts(): StatusCount[] {
        const n = this.count(9);
        const counts: StatusCount[] = [];
        for (let i = 0; i < n; i++) {
            let count = 0n;
            let name: LoanStatusName | undefined;
            for (let f = 0; f < 2; f++) {
                if ((f === 0) === COUNT_FIRST) {
                    count = this.nat64();
                } else {
                    name = STATUS_ORDER[this.leb()];
                    if (name === undefined) throw new Error('shard reply: bad status');
                }
            }
            counts.push({ status: { [name!]: null } as StatusCount['status'], count });
        }
        return counts;
    }
}

/**
 * A hand codec for one small record type and for `Result` replies carrying it. Built at load;
 * throws there when the hand encoding of `sample` differs from `IDL.encode`.
 */
export class SmallRecordCodec<T extends object> {
    private readonly plan: FieldPlan[];
    private readonly fixedBytes: number;
    /** The head of an `Ok` reply: `DIDL`, the type table and the `Ok` tag. */
    readonly okPrefix: Uint8Array;

    constructor(
        readonly type: IDL.Type,
        sample: T
    ) {
        this.plan = planOf(type);
        this.fixedBytes = 0;
        for (const f of this.plan) {
            if (f.kind !== 'status_counts') this.fixedBytes += FIXED_BYTES[f.kind];
        }
        this.okPrefix = candidPrefix([Result(type)], [{ Ok: sample }], this.encodeValue(sample));
    }

    /** Bytes of the value after `headBytes` leading bytes left for the caller. */
    private encodeAfter(value: T, head: Uint8Array): Uint8Array {
        const v = value as Record<string, unknown>;
        let size = head.length + this.fixedBytes;
        for (const f of this.plan) {
            if (f.kind === 'status_counts') {
                const counts = v[f.name] as StatusCount[];
                size += lebLength(counts.length) + 9 * counts.length;
            }
        }
        const out = new Uint8Array(size);
        out.set(head, 0);
        const view = new DataView(out.buffer);
        let at = head.length;
        for (const f of this.plan) {
            const x = v[f.name];
            switch (f.kind) {
                case 'nat64':
                    view.setBigUint64(at, x as bigint, true);
                    at += 8;
                    break;
                case 'nat32':
                    view.setUint32(at, x as number, true);
                    at += 4;
                    break;
                case 'float64':
                    view.setFloat64(at, x as number, true);
                    at += 8;
                    break;
                case 'bool':
                    out[at++] = x === true ? 1 : 0;
                    break;
                default: {
                    const counts = x as StatusCount[];
                    at = writeLeb(out, at, counts.length);
                    for (const c of counts) {
                        if (COUNT_FIRST) {
                            view.setBigUint64(at, c.count, true);
                            out[at + 8] = statusIndex(c.status);
                        } else {
                            out[at] = statusIndex(c.status);
                            view.setBigUint64(at + 1, c.count, true);
                        }
                        at += 9;
                    }
                }
            }
        }
        return out;
    }

    /** The Candid value bytes of `value` (what `IDL.encode([type], [value])` ends with). */
    encodeValue(value: T): Uint8Array {
        return this.encodeAfter(value, new Uint8Array(0));
    }

    /** The whole reply `Ok(value)`, as `IDL.encode([Result(type)], [{ Ok: value }])` writes it. */
    encodeOk(value: T): Uint8Array {
        return this.encodeAfter(value, this.okPrefix);
    }

    /** The whole reply for `result`, `Ok` or `Err`, as `IDL.encode` writes it. */
    encodeReply(result: Res<T>): Uint8Array {
        return 'Ok' in result ? this.encodeOk(result.Ok) : encodeErrReply(this.type, result.Err);
    }

    /** Decodes value bytes written by `encodeValue`; throws on malformed or trailing bytes. */
    decodeValue(bytes: Uint8Array): T {
        const r = new ReplyReader(bytes);
        const value = this.read(r);
        if (r.at !== bytes.length) throw new Error('shard reply: trailing bytes');
        return value;
    }

    private read(r: ReplyReader): T {
        const value: Record<string, unknown> = {};
        for (const f of this.plan) {
            switch (f.kind) {
                case 'nat64':
                    value[f.name] = r.nat64();
                    break;
                case 'nat32':
                    value[f.name] = r.nat32();
                    break;
                case 'float64':
                    value[f.name] = r.float64();
                    break;
                case 'bool':
                    value[f.name] = r.bool();
                    break;
                default:
                    value[f.name] = r.statusCounts();
            }
        }
        return value as T;
    }

    /**
     * The record of an `Ok` reply in the encoding `@dfinity/candid` writes; undefined for an `Err`,
     * another valid encoding, or malformed bytes.
     */
    decodeOk(reply: Uint8Array): T | undefined {
        const prefix = this.okPrefix;
        if (reply.length < prefix.length) return undefined;
        for (let i = 0; i < prefix.length; i++) if (reply[i] !== prefix[i]) return undefined;
        try {
            return this.decodeValue(reply.subarray(prefix.length));
        } catch {
            return undefined;
        }
    }

    /** The reply as `IDL.decode([Result(type)], reply)[0]` reads it; throws as it does. */
    decodeReply(reply: Uint8Array): Res<T> {
        const ok = this.decodeOk(reply);
        if (ok !== undefined) return { Ok: ok };
        return IDL.decode([Result(this.type)], reply)[0] as unknown as Res<T>;
    }
}

const SAMPLE_STATS: ShardStats = {
    shard_id: 0,
    loan_count: 0n,
    owned_slots: 0,
    by_status: LOAN_STATUSES.map((s) => ({
        status: { [s]: null } as StatusCount['status'],
        count: 0n
    })),
    total_requested: 0n,
    total_approved: 0n,
    total_repaid: 0n,
    read_only: false,
    epoch: 0n
};

/** Metrics of a shard never measured (all zero): also the codec's sample. */
export function emptyShardMetrics(): ShardMetrics {
    return {
        loan_count: 0n,
        storage_used_bytes: 0n,
        storage_percentage: 0,
        message_count: 0n,
        error_count: 0n,
        avg_instructions_per_call: 0n,
        max_instructions_per_call: 0n,
        avg_response_time_ms: 0,
        owned_slots: 0,
        is_read_only: false,
        collected_at: 0n
    };
}

/** `get_shard_stats`'s reply codec. */
export const shardStatsCodec = new SmallRecordCodec<ShardStats>(ShardStats, SAMPLE_STATS);
/** `get_shard_metrics`'s reply codec. */
export const shardMetricsCodec = new SmallRecordCodec<ShardMetrics>(
    ShardMetrics,
    emptyShardMetrics()
);

/** `get_shard_stats`'s reply bytes for `result` (what `IDL.encode` writes). */
export function encodeShardStatsReply(result: Res<ShardStats>): Uint8Array {
    return shardStatsCodec.encodeReply(result);
}

/** `get_shard_stats`'s reply, decoded by hand when it is an `Ok`, else with `IDL.decode`. */
export function decodeShardStatsReply(reply: Uint8Array): Res<ShardStats> {
    return shardStatsCodec.decodeReply(reply);
}

/** The `Ok` record of a `get_shard_stats` reply, or undefined (see `SmallRecordCodec.decodeOk`). */
export function decodeOkShardStatsReply(reply: Uint8Array): ShardStats | undefined {
    return shardStatsCodec.decodeOk(reply);
}

/** `get_shard_metrics`'s reply bytes for `result` (what `IDL.encode` writes). */
export function encodeShardMetricsReply(result: Res<ShardMetrics>): Uint8Array {
    return shardMetricsCodec.encodeReply(result);
}

/** `get_shard_metrics`'s reply, decoded by hand when it is an `Ok`, else with `IDL.decode`. */
export function decodeShardMetricsReply(reply: Uint8Array): Res<ShardMetrics> {
    return shardMetricsCodec.decodeReply(reply);
}

/** The `Ok` record of a `get_shard_metrics` reply, or undefined. */
export function decodeOkShardMetricsReply(reply: Uint8Array): ShardMetrics | undefined {
    return shardMetricsCodec.decodeOk(reply);
}

// ---- The shard's other replies, `Ok` by hand (Azle's generic encoder costs tens of millions of
// instructions per reply: the `ApiError` type table alone), and import_loans' arguments ----

/** A reply codec for `Result<T>` whose `Ok` value bytes come from `encodeValue`. */
export class OkReplyEncoder<T> {
    /** The head of an `Ok` reply: `DIDL`, the type table and the `Ok` tag. */
    readonly okPrefix: Uint8Array;

    constructor(
        private readonly type: IDL.Type,
        sample: T,
        private readonly encodeValue: (value: T) => Uint8Array
    ) {
        this.okPrefix = candidPrefix([Result(type)], [{ Ok: sample }], encodeValue(sample));
    }

    /** The whole reply `Ok(value)`, as `IDL.encode` writes it. */
    encodeOk(value: T): Uint8Array {
        return concatBytes([this.okPrefix, this.encodeValue(value)]);
    }

    /** The whole reply for `result`, `Ok` or `Err`, as `IDL.encode` writes it. */
    encodeReply(result: Res<T>): Uint8Array {
        return 'Ok' in result ? this.encodeOk(result.Ok) : encodeErrReply(this.type, result.Err);
    }
}

function nat64Value(value: bigint): Uint8Array {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, value, true);
    return out;
}

function nat32Value(value: number): Uint8Array {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value, true);
    return out;
}

/** `Result<()>` (`UnitResult`): set_slot_state, set_read_only, set_router. */
export const unitReply = new OkReplyEncoder<null>(IDL.Null, null, () => new Uint8Array(0));
/** `Result<nat64>`: ack_dirty. */
export const nat64Reply = new OkReplyEncoder<bigint>(IDL.Nat64, 0n, nat64Value);
/** `Result<ImportResult>`: import_loans. */
export const importResultReply = new SmallRecordCodec<ImportResult>(ImportResult, {
    imported: 0,
    skipped: 0
});
/** `Result<DeleteResult>`: delete_slot_batch. */
export const deleteResultReply = new SmallRecordCodec<DeleteResult>(DeleteResult, {
    deleted: 0,
    remaining: 0n
});
/** `Result<SpanChecksum>`: span_checksum. */
export const spanChecksumReply = new SmallRecordCodec<SpanChecksum>(SpanChecksum, {
    count: 0n,
    checksum: 0n
});

/** A record's fields in Candid order, checked against its IDL definition at load. */
function fieldsOf<N extends string>(type: IDL.Type, names: readonly N[]): N[] {
    const order = candidFieldOrder(names);
    const defined = (type as unknown as IDL.RecordClass)._fields.map(([name]) => name);
    if (defined.join() !== order.join()) {
        throw new Error(`shard reply codec: fields ${defined.join()} changed; teach the codec`);
    }
    return order;
}

const EXPORT_FIELDS = fieldsOf(ExportBatch, ['loans', 'next_cursor', 'slot_seqs'] as const);
const CURSOR_FIELDS = fieldsOf(ExportCursor, ['slot', 'seq'] as const);
const SLOT_SEQ_FIELDS = fieldsOf(SlotSeq, ['slot', 'next_seq'] as const);

/** Value bytes of `vec Loan` from stored loan value bytes. */
function loansValue(stored: readonly Uint8Array[], parts: Uint8Array[]): void {
    parts.push(lebBytes(stored.length));
    for (const bytes of stored) parts.push(bytes);
}

function slotSeqValue(s: SlotSeq, parts: Uint8Array[]): void {
    for (const f of SLOT_SEQ_FIELDS) {
        parts.push(f === 'slot' ? nat32Value(s.slot) : nat64Value(s.next_seq));
    }
}

/** An export batch whose loans are their stored value bytes (never decoded and re-encoded). */
export interface StoredExportBatch {
    loans: Uint8Array[];
    next_cursor: [] | [ExportCursor];
    slot_seqs: SlotSeq[];
}

/** The Candid value bytes of an `ExportBatch` made of stored loans. */
export function encodeExportBatchValue(batch: StoredExportBatch): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const field of EXPORT_FIELDS) {
        if (field === 'loans') {
            loansValue(batch.loans, parts);
        } else if (field === 'next_cursor') {
            const cursor = batch.next_cursor[0];
            parts.push(new Uint8Array([cursor === undefined ? 0 : 1]));
            if (cursor !== undefined) {
                for (const f of CURSOR_FIELDS) {
                    parts.push(f === 'slot' ? nat32Value(cursor.slot) : nat64Value(cursor.seq));
                }
            }
        } else {
            parts.push(lebBytes(batch.slot_seqs.length));
            for (const s of batch.slot_seqs) slotSeqValue(s, parts);
        }
    }
    return concatBytes(parts);
}

/** `Result<ExportBatch>`: export_slot_batch, with stored loan bytes spliced in. */
export const exportBatchReply = new OkReplyEncoder<StoredExportBatch>(
    ExportBatch,
    { loans: [], next_cursor: [], slot_seqs: [] },
    encodeExportBatchValue
);

/** `Result<vec Loan>`: export_dirty_batch, with stored loan bytes spliced in. */
export const storedLoansReply = new OkReplyEncoder<Uint8Array[]>(IDL.Vec(Loan), [], (stored) => {
    const parts: Uint8Array[] = [];
    loansValue(stored, parts);
    return concatBytes(parts);
});

const PAGE_FIELDS = fieldsOf(SlotCountPage, ['counts', 'next_cursor'] as const);
const SLOT_COUNT_FIELDS = fieldsOf(SlotCount, ['slot', 'count'] as const);

/** The Candid value bytes of a `SlotCountPage`. */
export function encodeSlotCountPageValue(page: SlotCountPage): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const field of PAGE_FIELDS) {
        if (field === 'counts') {
            parts.push(lebBytes(page.counts.length));
            for (const c of page.counts) {
                for (const f of SLOT_COUNT_FIELDS) {
                    parts.push(f === 'slot' ? nat32Value(c.slot) : nat64Value(c.count));
                }
            }
        } else {
            const cursor = page.next_cursor[0];
            parts.push(new Uint8Array([cursor === undefined ? 0 : 1]));
            if (cursor !== undefined) parts.push(nat32Value(cursor));
        }
    }
    return concatBytes(parts);
}

/** `Result<SlotCountPage>`: get_slot_counts. */
export const slotCountPageReply = new OkReplyEncoder<SlotCountPage>(
    SlotCountPage,
    { counts: [], next_cursor: [] },
    encodeSlotCountPageValue
);

const IMPORT_ARG_TYPES = [IDL.Vec(Loan), IDL.Vec(SlotSeq)];
const IMPORT_ARG_PREFIX = candidPrefix(IMPORT_ARG_TYPES, [[], []], new Uint8Array([0, 0]));

/**
 * `import_loans`'s arguments `(vec Loan, vec SlotSeq)` decoded by hand in the encoding
 * `@dfinity/candid` writes; undefined for any other encoding or malformed bytes (the caller then
 * uses `IDL.decode`, which accepts and rejects as before).
 */
export function decodeImportLoansArgs(
    arg: Uint8Array
): { loans: Loan[]; slot_seqs: SlotSeq[] } | undefined {
    if (arg.length < IMPORT_ARG_PREFIX.length) return undefined;
    for (let i = 0; i < IMPORT_ARG_PREFIX.length; i++) {
        if (arg[i] !== IMPORT_ARG_PREFIX[i]) return undefined;
    }
    const body = arg.subarray(IMPORT_ARG_PREFIX.length);
    try {
        const r = new ReplyReader(body);
        const n = r.count(1);
        const loans: Loan[] = [];
        for (let i = 0; i < n; i++) loans.push(readLoanValue(r));
        const m = r.count(12);
        const slot_seqs: SlotSeq[] = [];
        for (let i = 0; i < m; i++) {
            const seq: Record<string, unknown> = {};
            for (const f of SLOT_SEQ_FIELDS) seq[f] = f === 'slot' ? r.nat32() : r.nat64();
            slot_seqs.push(seq as unknown as SlotSeq);
        }
        return r.at === body.length ? { loans, slot_seqs } : undefined;
    } catch {
        return undefined;
    }
}

// ---- Err replies by hand: `ApiError` values written from its IDL type ----

/**
 * Appends the Candid value bytes of `value` of `type` for the types `ApiError` is made of:
 * variants, records, text, nat32, nat64, bool, null and principal. Throws on any other type, so a
 * new field of another type fails the tests (which compare with `IDL.encode`), not a reply.
 */
function writeErrorPart(type: IDL.Type, value: unknown, parts: Uint8Array[]): void {
    if (type instanceof IDL.VariantClass) {
        const tag = Object.keys(value as object)[0];
        const index = type._fields.findIndex(([name]) => name === tag);
        if (index < 0) throw new Error(`shard reply codec: unknown variant case ${tag}`);
        parts.push(lebBytes(index));
        writeErrorPart(type._fields[index][1], (value as Record<string, unknown>)[tag], parts);
    } else if (type instanceof IDL.RecordClass) {
        const record = value as Record<string, unknown>;
        for (const [name, t] of type._fields) writeErrorPart(t, record[name], parts);
    } else if (type instanceof IDL.TextClass) {
        const bytes = utf8Text.toBytes(value as string);
        parts.push(lebBytes(bytes.length), bytes);
    } else if (type instanceof IDL.FixedNatClass && type._bits === 64) {
        parts.push(nat64Value(value as bigint));
    } else if (type instanceof IDL.FixedNatClass && type._bits === 32) {
        parts.push(nat32Value(value as number));
    } else if (type instanceof IDL.BoolClass) {
        parts.push(new Uint8Array([value === true ? 1 : 0]));
    } else if (type instanceof IDL.NullClass) {
        // no bytes
    } else if (type instanceof IDL.PrincipalClass) {
        const bytes = (value as Principal).toUint8Array();
        parts.push(new Uint8Array([1]), lebBytes(bytes.length), bytes);
    } else {
        throw new Error(`shard reply codec: no hand encoding for ${type.display()}`);
    }
}

/** The Candid value bytes of an `ApiError` (what `IDL.encode([ApiError], [e])` ends with). */
export function encodeApiErrorValue(error: ApiError): Uint8Array {
    const parts: Uint8Array[] = [];
    writeErrorPart(ApiError, error, parts);
    return concatBytes(parts);
}

/** Heads of `Err` replies by `Ok` type, made on first use (errors are rare; bounded by types). */
const MAX_ERR_PREFIXES = 64;
const errPrefixes = new Map<IDL.Type, Uint8Array>();
const SAMPLE_ERROR: ApiError = { NotAuthorized: null };

/**
 * The whole reply `Result<T>` = `Err(error)` for the `Ok` type `type`, as `IDL.encode` writes it.
 * The head is computed with `IDL.encode` on first use per type and checked against the hand
 * encoding; in an update call it is kept, so later errors cost a few thousand instructions.
 *
 * @example encodeErrReply(Loan, { NotFound: { what: 'loan', id: '7' } })
 */
export function encodeErrReply(type: IDL.Type, error: ApiError): Uint8Array {
    let prefix = errPrefixes.get(type);
    if (prefix === undefined) {
        prefix = candidPrefix(
            [Result(type)],
            [{ Err: SAMPLE_ERROR }],
            encodeApiErrorValue(SAMPLE_ERROR)
        );
        if (errPrefixes.size >= MAX_ERR_PREFIXES) errPrefixes.clear();
        errPrefixes.set(type, prefix);
    }
    return concatBytes([prefix, encodeApiErrorValue(error)]);
}
