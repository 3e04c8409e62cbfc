/**
 * Hand Candid encoders for the factory's hottest messages: the replies of the queries clients poll
 * (`get_scalability_metrics` every batch of `npm start`, `get_routing_table`, `get_all_shards`,
 * `get_migration`) and the routing table it pushes to the router. `@dfinity/candid`'s generic
 * encoder costs 15–50 M instructions per such message in the canister's JS engine; these write the
 * value bytes by walking the one IDL definition of each type, behind a head (`DIDL`, type table,
 * argument types) computed once at load with `IDL.encode` and checked against the hand encoding
 * (`candidPrefix`). `tests/unit/factory_codec.test.ts` compares every codec with `IDL.encode` on
 * arbitrary values.
 *
 * @example
 * const codec = new MessageCodec([ScalabilityMetrics], [sample]);
 * msgReply(codec.encode([metrics])); // the bytes IDL.encode([ScalabilityMetrics], [metrics]) writes
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import { MigrationInfo, ScalabilityMetrics, ScalingAdvice } from './factory_api';
import { candidPrefix, concatBytes, ValueReader, Writer } from './loan_codec';
import { emptyShardMetrics } from './shard_reply_codec';
import { utf8Text } from './stable_keys';
import { OpaqueValue, TypedReader, writeTyped } from './typed_codec';
import { Result, RoutingTable, ShardInfo, UnitResult } from './types';

/** Names this codec in its errors. */
const CODEC = 'factory codec';

export { OpaqueValue };

/** The value bytes of `values` of `types` (what `IDL.encode(types, values)` ends with). */
export function encodeValues(types: readonly IDL.Type[], values: readonly unknown[]): Uint8Array {
    const w = new Writer(256);
    types.forEach((t, i) => writeTyped(t, values[i], w, CODEC));
    return w.done();
}

/** A value of `type` with the least content, for computing a message head. */
export function sampleOf(type: IDL.Type): unknown {
    if (type instanceof IDL.RecordClass) {
        return Object.fromEntries(type._fields.map(([name, t]) => [name, sampleOf(t)]));
    }
    if (type instanceof IDL.VariantClass) {
        const [name, t] = type._fields[0];
        return { [name]: sampleOf(t) };
    }
    if (type instanceof IDL.VecClass || type instanceof IDL.OptClass) return [];
    if (type instanceof IDL.TextClass) return '';
    if (type instanceof IDL.NatClass) return 0n;
    if (type instanceof IDL.FixedNatClass) return type._bits === 64 ? 0n : 0;
    if (type instanceof IDL.FloatClass) return 0;
    if (type instanceof IDL.BoolClass) return false;
    if (type instanceof IDL.NullClass) return null;
    if (type instanceof IDL.PrincipalClass) return SAMPLE_PRINCIPAL;
    throw new Error(`factory codec: no sample for ${type.display()}`);
}

/**
 * A hand codec of one message type (a reply or an argument tuple): the head is computed from
 * `sample` with `IDL.encode` at load (it depends on the types only), the value bytes by hand.
 */
export class MessageCodec<T extends unknown[]> {
    readonly prefix: Uint8Array;

    /**
     * `opaque`: values of this type (compared by identity, e.g. `Loan`) are decoded as
     * `OpaqueValue`s holding their bytes, for passing them on unread.
     */
    constructor(
        readonly types: IDL.Type[],
        sample: T,
        private readonly opaque: IDL.Type | null = null
    ) {
        this.prefix = candidPrefix(types, sample, encodeValues(types, sample));
    }

    /** A codec of `types` (the head from a sample of least content). */
    static of<T extends unknown[]>(
        types: IDL.Type[],
        opaque: IDL.Type | null = null
    ): MessageCodec<T> {
        return new MessageCodec<T>(types, types.map(sampleOf) as T, opaque);
    }

    /** The whole message, as `IDL.encode(types, values)` writes it. */
    encode(values: T): Uint8Array {
        return concatBytes([this.prefix, encodeValues(this.types, values)]);
    }

    /**
     * The values of a message in the encoding `@dfinity/candid` writes (this head, ASCII texts);
     * undefined for any other bytes: the caller decodes those with `IDL.decode`, so every valid
     * message is still read and every invalid one still refused.
     */
    decode(bytes: Uint8Array): T | undefined {
        const head = this.prefix;
        if (bytes.length < head.length) return undefined;
        for (let i = 0; i < head.length; i++) if (bytes[i] !== head[i]) return undefined;
        try {
            const r = new TypedReader(bytes.subarray(head.length), CODEC, this.opaque);
            const values = this.types.map((t) => r.read(t));
            return r.at === bytes.length - head.length ? (values as T) : undefined;
        } catch {
            return undefined;
        }
    }
}

/** `DIDL`, no type table, one argument of type `text`. */
const TEXT_ARG_HEAD = [0x44, 0x49, 0x44, 0x4c, 0x00, 0x01, 0x71];
/** Longest text argument read by hand; longer ones go through `IDL.decode`. */
const MAX_HAND_TEXT_BYTES = 127;

/**
 * The text of an argument `(text)` in the usual encoding (ASCII, under 128 bytes); undefined
 * otherwise, and the caller decodes with `IDL.decode`, so every valid argument is still accepted.
 */
export function decodeTextArg(arg: Uint8Array): string | undefined {
    const at = TEXT_ARG_HEAD.length;
    if (arg.length < at + 1) return undefined;
    for (let i = 0; i < at; i++) if (arg[i] !== TEXT_ARG_HEAD[i]) return undefined;
    const length = arg[at];
    if (length > MAX_HAND_TEXT_BYTES || arg.length !== at + 1 + length) return undefined;
    for (let i = at + 1; i < arg.length; i++) if (arg[i] >= 0x80) return undefined;
    return utf8Text.fromBytes(arg.subarray(at + 1));
}

/** A principal for samples (the encoding of the head does not depend on values). */
export const SAMPLE_PRINCIPAL = Principal.anonymous();

const SAMPLE_SCALABILITY: ScalabilityMetrics = {
    total_shards: 0,
    active_shards: 0,
    read_only_shards: 0,
    total_loans: 0n,
    total_storage_used_bytes: 0n,
    avg_storage_percentage: 0,
    max_storage_percentage: 0,
    routing_epoch: 0n,
    migration_in_flight: [],
    scale_outs: 0n,
    last_scaling_check: 0n,
    auto_scaling_enabled: false,
    wasm_committed: false
};

/** A `ShardInfo` of zeros (tests build arbitrary ones from it). */
export const SAMPLE_SHARD_INFO: ShardInfo = {
    shard_id: 0,
    canister_id: SAMPLE_PRINCIPAL,
    created_at: 0n,
    loan_count: 0n,
    storage_used_bytes: 0n,
    storage_percentage: 0,
    is_active: false,
    is_read_only: false,
    region: '',
    slot_count: 0,
    memory_size_bytes: 0n,
    cycles_balance: 0n,
    performance_metrics: emptyShardMetrics()
};

const SAMPLE_MIGRATION: MigrationInfo = {
    migration_id: '',
    phase: '',
    reason: '',
    spans_done: 0,
    spans_total: 0,
    slots_done: 0,
    slots_total: 0,
    loans_copied: 0n,
    loans_caught_up: 0n,
    loans_deleted: 0n,
    moves: [],
    started_at: 0n,
    updated_at: 0n,
    step_errors: 0,
    stop_requested: false,
    last_error: [],
    failure: []
};

/** `get_scalability_metrics`'s reply `(ScalabilityMetrics)`. */
export const scalabilityMetricsReply = new MessageCodec<[ScalabilityMetrics]>(
    [ScalabilityMetrics],
    [SAMPLE_SCALABILITY]
);

/** `get_routing_table`'s reply, and the argument of the router's `update_routing_table`. */
export const routingTableMessage = new MessageCodec<[RoutingTable]>(
    [RoutingTable],
    [{ epoch: 0n, ranges: [], shards: [] }]
);

/** `get_all_shards`'s reply `(vec ShardInfo)`. */
export const allShardsReply = new MessageCodec<[ShardInfo[]]>([IDL.Vec(ShardInfo)], [[]]);

/** `get_active_shard`'s reply `(Result<ShardInfo>)`. */
export const shardInfoReply = new MessageCodec<[Result<ShardInfo>]>(
    [Result(ShardInfo)],
    [{ Ok: SAMPLE_SHARD_INFO }]
);

/** `get_scaling_recommendations`'s reply `(vec ScalingAdvice)`. */
export const scalingAdviceReply = new MessageCodec<[ScalingAdvice[]]>(
    [IDL.Vec(ScalingAdvice)],
    [[]]
);

/** `get_migration`'s reply `(Result<MigrationInfo>)`. */
export const migrationReply = new MessageCodec<[Result<MigrationInfo>]>(
    [Result(MigrationInfo)],
    [{ Ok: SAMPLE_MIGRATION }]
);

/** A `Result<()>` reply (`update_routing_table`'s); `UNIT_OK` is its `Ok`. */
export const unitResultMessage = new MessageCodec<[UnitResult]>([UnitResult], [{ Ok: null }]);
export const UNIT_OK: Uint8Array = unitResultMessage.encode([{ Ok: null }]);

/** The empty argument tuple `()`, e.g. of a shard's `get_shard_metrics`. */
export const NO_ARGS: Uint8Array = new Uint8Array(IDL.encode([], []));

/** Candid type codes of the primitive types (negative SLEB opcodes) and their fixed widths. */
const FIXED_WIDTH = new Map<number, number>([
    [-1, 0], // null
    [-2, 1], // bool
    [-5, 1], // nat8
    [-6, 2], // nat16
    [-7, 4], // nat32
    [-8, 8], // nat64
    [-9, 1], // int8
    [-10, 2], // int16
    [-11, 4], // int32
    [-12, 8], // int64
    [-13, 4], // float32
    [-14, 8], // float64
    [-16, 0] // reserved
]);
const NAT = -3;
const INT = -4;
const TEXT = -15;
const PRINCIPAL = -24;
const OPT = -18;
const VEC = -19;
const RECORD = -20;
const VARIANT = -21;
/** Entries of a type table read by hand at most; a larger one goes through `IDL.decode`. */
const MAX_TYPE_TABLE = 256;

/** The Candid hash of a field name (`idlLabelToId`). */
export function fieldHash(name: string): number {
    let h = 0;
    for (const b of utf8Text.toBytes(name)) h = (h * 223 + b) >>> 0;
    return h;
}

type TableEntry =
    | { op: typeof OPT | typeof VEC; inner: number }
    | { op: typeof RECORD | typeof VARIANT; fields: [number, number][] };

/** A reader of any Candid message's type table and values, for picking a few fields out. */
class AnyReader extends ValueReader {
    readonly table: TableEntry[] = [];

    constructor(bytes: Uint8Array) {
        super(bytes, 'candid');
    }

    sleb(): number {
        let result = 0;
        let scale = 1;
        for (let i = 0; i < 8; i++) {
            const b = this.byte();
            result += (b & 0x7f) * scale;
            scale *= 128;
            if ((b & 0x80) === 0) return (b & 0x40) !== 0 ? result - scale : result;
        }
        throw new Error('candid: SLEB128 too long');
    }

    readTable(): void {
        const magic = [0x44, 0x49, 0x44, 0x4c];
        for (const m of magic) if (this.byte() !== m) throw new Error('candid: no DIDL');
        const n = this.leb();
        if (n > MAX_TYPE_TABLE) throw new Error('candid: type table too large');
        for (let i = 0; i < n; i++) {
            const op = this.sleb();
            if (op === OPT || op === VEC) {
                this.table.push({ op, inner: this.sleb() });
            } else if (op === RECORD || op === VARIANT) {
                const count = this.count(2);
                const fields: [number, number][] = [];
                for (let k = 0; k < count; k++) fields.push([this.leb(), this.sleb()]);
                this.table.push({ op, fields });
            } else {
                throw new Error(`candid: type opcode ${op} not read by hand`);
            }
        }
    }

    /** Skips one value of type `t` (a table index, or a negative primitive code). */
    skip(t: number, depth = 0): void {
        if (depth > 64) throw new Error('candid: too deep');
        if (t < 0) return this.skipPrimitive(t);
        const entry = this.table[t];
        if (entry === undefined) throw new Error('candid: bad type index');
        if (entry.op === OPT) {
            const tag = this.byte();
            if (tag === 1) this.skip(entry.inner, depth + 1);
            else if (tag !== 0) throw new Error('candid: bad opt tag');
        } else if (entry.op === VEC) {
            const n = this.count(1);
            const width = FIXED_WIDTH.get(entry.inner);
            if (width !== undefined && width > 0) {
                this.need(n * width);
                this.at += n * width;
            } else {
                for (let i = 0; i < n; i++) this.skip(entry.inner, depth + 1);
            }
        } else if (entry.op === RECORD) {
            for (const [, ft] of entry.fields) this.skip(ft, depth + 1);
        } else if (entry.op === VARIANT) {
            const field = entry.fields[this.leb()];
            if (field === undefined) throw new Error('candid: bad variant index');
            this.skip(field[1], depth + 1);
        }
    }

    private skipPrimitive(t: number): void {
        const width = FIXED_WIDTH.get(t);
        if (width !== undefined) {
            this.need(width);
            this.at += width;
        } else if (t === NAT || t === INT) {
            while ((this.byte() & 0x80) !== 0);
        } else if (t === TEXT) {
            const n = this.count(1);
            this.at += n;
        } else if (t === PRINCIPAL) {
            if (this.byte() !== 1) throw new Error('candid: opaque principal');
            const n = this.count(1);
            this.at += n;
        } else {
            throw new Error(`candid: type ${t} not read by hand`);
        }
    }
}

/**
 * The `nat` fields `names` of a message whose first value is a record, read by hand from any valid
 * encoding (the type table is parsed, other fields skipped); undefined when the message is not
 * such a record or a named field is missing or not a `nat`, and the caller decodes it with
 * `IDL.decode`. Used for the management canister's `canister_status` reply (a record of ~30
 * fields of which the factory needs two).
 *
 * @example natFieldsOfRecord(reply, ['cycles', 'memory_size']) // { cycles: 5n, memory_size: 9n }
 */
export function natFieldsOfRecord(
    bytes: Uint8Array,
    names: readonly string[]
): Record<string, bigint> | undefined {
    try {
        const r = new AnyReader(bytes);
        r.readTable();
        const args = r.leb();
        if (args < 1) return undefined;
        const types: number[] = [];
        for (let i = 0; i < args; i++) types.push(r.sleb());
        const entry = r.table[types[0]];
        if (entry === undefined || entry.op !== RECORD) return undefined;
        const wanted = new Map(names.map((n) => [fieldHash(n), n]));
        const out: Record<string, bigint> = {};
        for (const [hash, t] of entry.fields) {
            const name = wanted.get(hash);
            if (name === undefined) {
                r.skip(t);
            } else {
                if (t !== NAT) return undefined;
                out[name] = r.natValue();
            }
        }
        return names.every((n) => n in out) ? out : undefined;
    } catch {
        return undefined;
    }
}
