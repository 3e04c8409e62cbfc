/**
 * Hand codecs for the router's hottest small messages, so they skip `@dfinity/candid`'s generic
 * decoder and encoder (tens of millions of instructions per message in the canister's JS engine):
 * the arguments `(principal)` and `(nat64)`, and the `Ok` reply of `Result<principal>`. Also cheap
 * principal keys: `Principal.toText` (CRC-32 and base-32) costs about a million instructions there,
 * so heap keys use the bytes themselves (`principalKey`) and repeated texts are remembered.
 *
 * A decoder answers undefined for any encoding other than the one `@dfinity/candid` (agent, Azle)
 * writes; the caller then decodes with `IDL.decode`, so every valid message is still accepted and
 * every invalid one still rejected. Reply prefixes are computed with `IDL.encode` and checked
 * against the hand encoding (`candidPrefix`). `tests/unit/router_codec.test.ts` checks both ways.
 *
 * The dashboards' fan-out too: a shard's `Ok` loan page is scanned by hand into views of its loans
 * (`LoanView`: where each lies in the reply and where the few fields a dashboard sums are; no
 * `Loan` is built), farmer and investor dashboards and user-loan pages are encoded by hand with
 * those bytes spliced in (a run of a page's loans copied as one), and small records (system analytics, balancer statistics) go through `OkReplyCodec`,
 * driven by their IDL type. `Err` replies of every `Result` the router sends or reads go through
 * `ErrReplyCodec` (the `Ok` head with the `Err` index, then the `ApiError` value); fixed argument
 * lists (`(principal, opt Page)`, a shard's `()`) through `ArgsCodec`, and single values
 * (routing tables) through `ValueCodec`. Decoders read ASCII text only and leave anything else
 * to `IDL.decode`.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import { principal } from './candid';
import {
    candidFieldOrder,
    candidPrefix,
    concatBytes,
    encodeLoanPageValue,
    lebBytes,
    scanLoanPageValue,
    type LoanPageValue,
    Writer,
    type LoanView,
    type LoanViewPage
} from './loan_codec';
import { ShardLoanPage } from './shard_api';
import { TypedReader, writeTyped } from './typed_codec';
import {
    ApiError,
    FarmerDashboard,
    InvestorDashboard,
    LOAN_STATUSES,
    LoanPage,
    Result,
    RoutingTable,
    UnitResult,
    type StatusCount
} from './types';

/** `DIDL`, no type-table entries, one argument of the primitive type `code` (its SLEB byte). */
function argHead(code: number): Uint8Array {
    return new Uint8Array([0x44, 0x49, 0x44, 0x4c, 0x00, 0x01, code]);
}

const PRINCIPAL_ARG_HEAD = argHead(0x68);
const NAT64_ARG_HEAD = argHead(0x78);

/** Longest principal the IC issues (the Candid format allows no more than 29 bytes either). */
const MAX_PRINCIPAL_BYTES = 29;

function startsWith(bytes: Uint8Array, head: Uint8Array): boolean {
    if (bytes.length < head.length) return false;
    for (let i = 0; i < head.length; i++) if (bytes[i] !== head[i]) return false;
    return true;
}

/**
 * The principal of an argument `(principal)` in the usual encoding; undefined otherwise.
 *
 * @example decodePrincipalArg(new Uint8Array(IDL.encode([IDL.Principal], [p])))?.toText()
 */
export function decodePrincipalArg(arg: Uint8Array): Principal | undefined {
    const at = PRINCIPAL_ARG_HEAD.length;
    if (!startsWith(arg, PRINCIPAL_ARG_HEAD) || arg.length < at + 2) return undefined;
    if (arg[at] !== 1) return undefined;
    const length = arg[at + 1];
    if (length > MAX_PRINCIPAL_BYTES || arg.length !== at + 2 + length) return undefined;
    return Principal.fromUint8Array(arg.slice(at + 2));
}

/** The number of an argument `(nat64)` in the usual encoding; undefined otherwise. */
export function decodeNat64Arg(arg: Uint8Array): bigint | undefined {
    const at = NAT64_ARG_HEAD.length;
    if (!startsWith(arg, NAT64_ARG_HEAD) || arg.length !== at + 8) return undefined;
    return new DataView(arg.buffer, arg.byteOffset + at, 8).getBigUint64(0, true);
}

/** The Candid value bytes of a principal (what `IDL.encode([IDL.Principal], [p])` ends with). */
export function encodePrincipalValue(p: Principal): Uint8Array {
    const bytes = p.toUint8Array();
    return concatBytes([new Uint8Array([1]), lebBytes(bytes.length), bytes]);
}

/**
 * The head of a `Result<principal>` reply holding `Ok`. Computed with `IDL.encode` at load (about
 * 30 M instructions: the type table carries `ApiError`), never in a query, whose heap is discarded.
 */
export const OK_PRINCIPAL_PREFIX = candidPrefix(
    [Result(principal)],
    [{ Ok: Principal.anonymous() }],
    encodePrincipalValue(Principal.anonymous())
);

/** The whole reply `Result<principal>` = `Ok(p)`, as `IDL.encode` writes it. */
export function encodeOkPrincipalReply(p: Principal): Uint8Array {
    return concatBytes([OK_PRINCIPAL_PREFIX, encodePrincipalValue(p)]);
}

/** The whole reply `Result<principal>` = `Err(error)` (defined below, with `ErrReplyCodec`). */
export function encodeErrPrincipalReply(error: ApiError): Uint8Array {
    return ERR_PRINCIPAL.encode(error);
}

/**
 * Bytes as a string of the same length (one char per byte): built and compared by the JS engine's
 * native code, where a byte loop in JS costs about a thousand instructions per byte in a canister.
 */
export function latin1(bytes: Uint8Array): string {
    return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** Whether `bytes` begins with the bytes whose `latin1` is `head`. */
export function startsWithLatin1(bytes: Uint8Array, head: string): boolean {
    return bytes.length >= head.length && latin1(bytes.subarray(0, head.length)) === head;
}

/** A cheap, unique key of a principal for heap maps (cache keys and tags): its bytes as `latin1`. */
export function principalKey(p: Principal): string {
    return latin1(p.toUint8Array());
}

/** Principals whose text is remembered; the memo is emptied when full. */
const MAX_REMEMBERED_TEXTS = 1_024;
const texts = new Map<string, string>();

const principals = new Map<string, Principal>();

/**
 * `Principal.fromText(text)`, remembered: Azle's `call` takes a canister id as a principal or as
 * text, and text costs a CRC-32 and base-32 decoding on every call.
 */
export function principalFromText(text: string): Principal {
    const known = principals.get(text);
    if (known !== undefined) return known;
    const p = Principal.fromText(text);
    if (principals.size >= MAX_REMEMBERED_TEXTS) principals.clear();
    principals.set(text, p);
    return p;
}

/** `p.toText()`, remembered for the callers and shards a canister sees again and again. */
export function principalText(p: Principal): string {
    const key = principalKey(p);
    const known = texts.get(key);
    if (known !== undefined) return known;
    const text = p.toText();
    if (texts.size >= MAX_REMEMBERED_TEXTS) texts.clear();
    texts.set(key, text);
    return text;
}

// ---- Dashboards (helper K): shard loan pages decoded, dashboard replies encoded, by hand ----

/** The head of a shard's `Result<ShardLoanPage>` reply holding `Ok` (computed at load). */
const EMPTY_PAGE: LoanPageValue = { loans: [], next_cursor: [] };
const OK_LOAN_PAGE_PREFIX = candidPrefix(
    [Result(ShardLoanPage)],
    [{ Ok: EMPTY_PAGE }],
    encodeLoanPageValue(EMPTY_PAGE)
);
const OK_LOAN_PAGE_PREFIX_LATIN1 = latin1(OK_LOAN_PAGE_PREFIX);

/**
 * The page of a shard's `Result<ShardLoanPage>` reply holding `Ok` in the encoding
 * `@dfinity/candid` (Azle) writes, its loans as views over the reply's bytes (`LoanView`: checked
 * as a decode checks them, no `Loan` built); undefined for anything else (an `Err`, another valid
 * encoding, malformed bytes), which the caller decodes with `IDL.decode`.
 */
export function decodeOkLoanPageReply(reply: Uint8Array): LoanViewPage | undefined {
    if (!startsWithLatin1(reply, OK_LOAN_PAGE_PREFIX_LATIN1)) return undefined;
    try {
        return scanLoanPageValue(reply.subarray(OK_LOAN_PAGE_PREFIX.length));
    } catch {
        return undefined;
    }
}

/** A farmer's dashboard whose loans are views: the reply carries their bytes as they came. */
export type FarmerDashboardView = Omit<FarmerDashboard, 'loans'> & { loans: LoanView[] };
/** An investor's dashboard whose loans are views. */
export type InvestorDashboardView = Omit<InvestorDashboard, 'investments'> & {
    investments: LoanView[];
};
/** A router `LoanPage` whose loans are views. */
export type LoanPageView = Omit<LoanPage, 'loans'> & { loans: LoanView[] };

type Dashboard = FarmerDashboardView | InvestorDashboardView;

/** Dashboard fields the encoder writes as something other than `nat64`. */
const DASHBOARD_SPECIAL = new Set([
    'farmer',
    'investor',
    'loans',
    'investments',
    'by_status',
    'complete',
    'failed_shards'
]);

/** A record type's field names in Candid order; throws at load on a field the encoder can't write. */
function dashboardFields(type: IDL.Type): string[] {
    const fields = (type as unknown as IDL.RecordClass)._fields;
    for (const [name, t] of fields) {
        if (!DASHBOARD_SPECIAL.has(name) && t.display() !== IDL.Nat64.display()) {
            throw new Error(`router codec: dashboard field ${name} is not nat64`);
        }
    }
    return fields.map(([name]) => name);
}

const FARMER_FIELDS = dashboardFields(FarmerDashboard);
const INVESTOR_FIELDS = dashboardFields(InvestorDashboard);
const STATUS_ORDER = candidFieldOrder(LOAN_STATUSES);
const STATUS_COUNT_ORDER = candidFieldOrder(['status', 'count'] as const);

function nat64Bytes(value: bigint): Uint8Array {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, value, true);
    return out;
}

function nat32sBytes(values: readonly number[]): Uint8Array {
    const out = new Uint8Array(4 * values.length);
    const view = new DataView(out.buffer);
    values.forEach((v, i) => view.setUint32(4 * i, v, true));
    return out;
}

function statusCountsParts(counts: readonly StatusCount[], parts: Uint8Array[]): void {
    parts.push(lebBytes(counts.length));
    for (const c of counts) {
        for (const f of STATUS_COUNT_ORDER) {
            if (f === 'count') {
                parts.push(nat64Bytes(c.count));
            } else {
                const index = STATUS_ORDER.indexOf(Object.keys(c.status)[0] as never);
                if (index < 0) throw new Error('router codec: unknown status');
                parts.push(lebBytes(index));
            }
        }
    }
}

/**
 * The value bytes of `vec Loan` from views: the count, then the views' bytes, a run of views lying
 * one after another in the same bytes (a shard page, kept whole: the usual case) copied as one.
 */
function loansParts(loans: readonly LoanView[], parts: Uint8Array[]): void {
    parts.push(lebBytes(loans.length));
    let i = 0;
    while (i < loans.length) {
        const first = loans[i];
        let end = first.end;
        for (i += 1; i < loans.length; i++) {
            const next = loans[i];
            if (next.bytes !== first.bytes || next.start !== end) break;
            end = next.end;
        }
        parts.push(first.bytes.subarray(first.start, end));
    }
}

/** The Candid value bytes of a dashboard; the loans are their views' bytes. */
function encodeDashboardValue(fields: readonly string[], d: Dashboard): Uint8Array {
    const parts: Uint8Array[] = [];
    const value = d as unknown as Record<string, unknown>;
    for (const field of fields) {
        const v = value[field];
        switch (field) {
            case 'farmer':
            case 'investor':
                parts.push(encodePrincipalValue(v as Principal));
                break;
            case 'loans':
            case 'investments':
                loansParts(v as LoanView[], parts);
                break;
            case 'by_status':
                statusCountsParts(v as StatusCount[], parts);
                break;
            case 'complete':
                parts.push(new Uint8Array([v === true ? 1 : 0]));
                break;
            case 'failed_shards': {
                const ids = v as number[];
                parts.push(lebBytes(ids.length), nat32sBytes(ids));
                break;
            }
            default:
                parts.push(nat64Bytes(v as bigint));
        }
    }
    return concatBytes(parts);
}

/** The value bytes of a `FarmerDashboard` (what `IDL.encode([FarmerDashboard], [d])` ends with). */
export function encodeFarmerDashboardValue(d: FarmerDashboardView): Uint8Array {
    return encodeDashboardValue(FARMER_FIELDS, d);
}

/** The value bytes of an `InvestorDashboard`. */
export function encodeInvestorDashboardValue(d: InvestorDashboardView): Uint8Array {
    return encodeDashboardValue(INVESTOR_FIELDS, d);
}

const SAMPLE_FARMER: FarmerDashboardView = {
    farmer: Principal.anonymous(),
    loans: [],
    total_loans: 0n,
    active_loans: 0n,
    total_borrowed: 0n,
    total_repaid: 0n,
    outstanding_balance: 0n,
    by_status: [],
    complete: true,
    failed_shards: [],
    generated_at: 0n
};
const SAMPLE_INVESTOR: InvestorDashboardView = {
    investor: Principal.anonymous(),
    investments: [],
    total_investments: 0n,
    active_investments: 0n,
    total_invested: 0n,
    total_repaid_on_funded_loans: 0n,
    by_status: [],
    complete: true,
    failed_shards: [],
    generated_at: 0n
};

/** Heads of `Result<FarmerDashboard>` / `Result<InvestorDashboard>` replies holding `Ok` (at load). */
const OK_FARMER_PREFIX = candidPrefix(
    [Result(FarmerDashboard)],
    [{ Ok: SAMPLE_FARMER }],
    encodeFarmerDashboardValue(SAMPLE_FARMER)
);
const OK_INVESTOR_PREFIX = candidPrefix(
    [Result(InvestorDashboard)],
    [{ Ok: SAMPLE_INVESTOR }],
    encodeInvestorDashboardValue(SAMPLE_INVESTOR)
);

/** The whole reply `Result<FarmerDashboard>` = `Ok(d)`, as `IDL.encode` writes it. */
export function encodeOkFarmerReply(d: FarmerDashboardView): Uint8Array {
    return concatBytes([OK_FARMER_PREFIX, encodeFarmerDashboardValue(d)]);
}

/** The whole reply `Result<InvestorDashboard>` = `Ok(d)`, as `IDL.encode` writes it. */
export function encodeOkInvestorReply(d: InvestorDashboardView): Uint8Array {
    return concatBytes([OK_INVESTOR_PREFIX, encodeInvestorDashboardValue(d)]);
}

/** The whole reply `Result<FarmerDashboard>` = `Err(error)`, as `IDL.encode` writes it. */
export function encodeErrFarmerReply(error: ApiError): Uint8Array {
    return ERR_FARMER.encode(error);
}

/** The whole reply `Result<InvestorDashboard>` = `Err(error)`, as `IDL.encode` writes it. */
export function encodeErrInvestorReply(error: ApiError): Uint8Array {
    return ERR_INVESTOR.encode(error);
}

// ---- Small records by their type (helper K): shard stats in, system analytics out ----

/** Names this codec in its errors. */
const CODEC = 'router codec';

/**
 * The Candid value bytes of `value` of `type` (`writeTyped`, `typed_codec.ts`: a type it does not
 * know throws, so a new field of another type fails the load-time prefix check, not a reply).
 */
export function encodeTypedValue(type: IDL.Type, value: unknown): Uint8Array {
    const w = new Writer(64);
    writeTyped(type, value, w, CODEC);
    return w.done();
}

/** Decodes bytes written by `encodeTypedValue(type, …)`; throws on malformed or trailing bytes. */
export function decodeTypedValue(type: IDL.Type, bytes: Uint8Array): unknown {
    const r = new TypedReader(bytes, CODEC);
    const value = r.read(type);
    if (r.at !== bytes.length) throw new Error('router codec: trailing bytes');
    return value;
}

// ---- Errors (helper P3): `Err(ApiError)` replies written and read by hand ----

/** The cases of every `Result<T>` in Candid order (a variant sorts by hash): the same for any T. */
const RESULT_CASES = (Result(IDL.Null) as unknown as IDL.VariantClass)._fields.map(([n]) => n);
const OK_INDEX = RESULT_CASES.indexOf('Ok');
const ERR_INDEX = RESULT_CASES.indexOf('Err');

/**
 * The `Err` side of a `Result<T>` reply: `IDL.encode` writes the same head (`DIDL`, type table)
 * for `Ok` and `Err` and then the case's index, so the `Err` head is the `Ok` head with the other
 * index, and the error follows as typed value bytes. Encoding an error with `IDL.encode` costs
 * about 50 M instructions in a canister (the type table carries `ApiError`); this costs a few
 * hundred thousand. `decode` answers undefined for anything but an `Err` in `@dfinity/candid`'s
 * encoding with ASCII texts (the caller then uses `IDL.decode`).
 */
export class ErrReplyCodec {
    readonly prefix: Uint8Array;
    private readonly prefixLatin1: string;

    /** `okPrefix`: the head of the same `Result<T>` holding `Ok` (checked at load). */
    constructor(okPrefix: Uint8Array) {
        if (OK_INDEX > 0x7f || ERR_INDEX > 0x7f || okPrefix[okPrefix.length - 1] !== OK_INDEX) {
            throw new Error('router codec: the Ok head does not end with the Ok index');
        }
        this.prefix = okPrefix.slice();
        this.prefix[this.prefix.length - 1] = ERR_INDEX;
        this.prefixLatin1 = latin1(this.prefix);
    }

    encode(error: ApiError): Uint8Array {
        return concatBytes([this.prefix, encodeTypedValue(ApiError, error)]);
    }

    decode(reply: Uint8Array): ApiError | undefined {
        if (!startsWithLatin1(reply, this.prefixLatin1)) return undefined;
        try {
            return decodeTypedValue(ApiError, reply.subarray(this.prefix.length)) as ApiError;
        } catch {
            return undefined;
        }
    }
}

const ERR_PRINCIPAL = new ErrReplyCodec(OK_PRINCIPAL_PREFIX);
const ERR_FARMER = new ErrReplyCodec(OK_FARMER_PREFIX);
const ERR_INVESTOR = new ErrReplyCodec(OK_INVESTOR_PREFIX);

/**
 * A hand codec for replies `Result<T>`, for a small record type `T` (shard stats, analytics,
 * balancer statistics): the `Ok` head is computed with `IDL.encode` from `sample` at load and
 * checked against the hand encoding; `Err` replies go through `ErrReplyCodec`. `decodeOk`
 * answers undefined for an `Err`, another encoding or malformed bytes (the caller then uses
 * `IDL.decode`).
 */
export class OkReplyCodec<T> {
    private readonly prefix: Uint8Array;
    private readonly prefixLatin1: string;
    readonly err: ErrReplyCodec;

    constructor(
        private readonly type: IDL.Type,
        sample: T
    ) {
        this.prefix = candidPrefix(
            [Result(type)],
            [{ Ok: sample }],
            encodeTypedValue(type, sample)
        );
        this.prefixLatin1 = latin1(this.prefix);
        this.err = new ErrReplyCodec(this.prefix);
    }

    encodeOk(value: T): Uint8Array {
        return concatBytes([this.prefix, encodeTypedValue(this.type, value)]);
    }

    /** The reply for `result`, `Ok` or `Err`, as `IDL.encode([Result(type)], [result])` writes it. */
    encodeReply(result: { Ok: T } | { Err: ApiError }): Uint8Array {
        return 'Ok' in result ? this.encodeOk(result.Ok) : this.err.encode(result.Err);
    }

    decodeOk(reply: Uint8Array): T | undefined {
        if (!startsWithLatin1(reply, this.prefixLatin1)) return undefined;
        try {
            return decodeTypedValue(this.type, reply.subarray(this.prefix.length)) as T;
        } catch {
            return undefined;
        }
    }
}

/** `UnitResult` replies (`Ok(null)` is a constant; errors by hand). */
const UNIT_CODEC = new OkReplyCodec<null>(IDL.Null, null);
const UNIT_OK_REPLY = UNIT_CODEC.encodeOk(null);

/** The reply `UnitResult` for `result`, as `IDL.encode([UnitResult], [result])` writes it. */
export function encodeUnitReply(result: UnitResult): Uint8Array {
    return 'Ok' in result ? UNIT_OK_REPLY.slice() : UNIT_CODEC.err.encode(result.Err);
}

/**
 * A hand decoder of the Candid bytes of one value of a record type `T` as `@dfinity/candid`
 * writes them (a message argument `(T)`, or a reply of type `T`): the head is computed with
 * `IDL.encode` from `sample` at load and checked against the hand encoding. `decode` answers
 * undefined for any other encoding or malformed bytes; the caller then uses `IDL.decode`.
 */
export class ValueCodec<T> {
    private readonly prefix: Uint8Array;
    private readonly prefixLatin1: string;

    constructor(
        private readonly type: IDL.Type,
        sample: T
    ) {
        this.prefix = candidPrefix([type], [sample], encodeTypedValue(type, sample));
        this.prefixLatin1 = latin1(this.prefix);
    }

    encode(value: T): Uint8Array {
        return concatBytes([this.prefix, encodeTypedValue(this.type, value)]);
    }

    decode(bytes: Uint8Array): T | undefined {
        if (!startsWithLatin1(bytes, this.prefixLatin1)) return undefined;
        try {
            return decodeTypedValue(this.type, bytes.subarray(this.prefix.length)) as T;
        } catch {
            return undefined;
        }
    }
}

const ROUTING_TABLE_CODEC = new ValueCodec<RoutingTable>(RoutingTable, {
    epoch: 0n,
    ranges: [],
    shards: []
});

/**
 * A routing table's bytes (the argument of `update_routing_table`, the factory's reply to
 * `get_routing_table`) decoded by hand; undefined for another encoding (then use `IDL.decode`).
 */
export function decodeRoutingTableBytes(bytes: Uint8Array): RoutingTable | undefined {
    return ROUTING_TABLE_CODEC.decode(bytes);
}

/**
 * A hand codec of a message's arguments of fixed `types` (e.g. a shard page request
 * `(principal, opt nat64, opt nat32)`): the head is computed with `IDL.encode` from `sample` at
 * load and checked against the hand encoding, so `encode` writes exactly what `IDL.encode` writes.
 */
export class ArgsCodec {
    private readonly prefix: Uint8Array;
    private readonly prefixLatin1: string;

    constructor(
        private readonly types: readonly IDL.Type[],
        sample: readonly unknown[]
    ) {
        this.prefix = candidPrefix([...types], [...sample], this.values(sample));
        this.prefixLatin1 = latin1(this.prefix);
    }

    encode(args: readonly unknown[]): Uint8Array {
        return concatBytes([this.prefix, this.values(args)]);
    }

    /**
     * The arguments as `IDL.decode(types, bytes)` reads them, when `bytes` have the encoding
     * `@dfinity/candid` writes (ASCII texts); undefined otherwise (then use `IDL.decode`).
     */
    decode(bytes: Uint8Array): unknown[] | undefined {
        if (!startsWithLatin1(bytes, this.prefixLatin1)) return undefined;
        try {
            const r = new TypedReader(bytes.subarray(this.prefix.length), CODEC);
            const values = this.types.map((type) => r.read(type));
            return r.at === bytes.length - this.prefix.length ? values : undefined;
        } catch {
            return undefined;
        }
    }

    private values(args: readonly unknown[]): Uint8Array {
        if (args.length !== this.types.length) throw new Error('router codec: argument count');
        const w = new Writer(64);
        this.types.forEach((type, i) => writeTyped(type, args[i], w, CODEC));
        return w.done();
    }
}

const LOAN_PAGE_FIELDS = (LoanPage as unknown as IDL.RecordClass)._fields;
const SAMPLE_LOAN_PAGE: LoanPageView = {
    loans: [],
    next_cursor: [],
    complete: true,
    failed_shards: []
};

/** The value bytes of a router `LoanPage`; the loans are their views' bytes. */
function encodeLoanPageReplyValue(page: LoanPageView): Uint8Array {
    const parts: Uint8Array[] = [];
    const value = page as unknown as Record<string, unknown>;
    for (const [name, type] of LOAN_PAGE_FIELDS) {
        if (name === 'loans') {
            loansParts(page.loans, parts);
        } else {
            parts.push(encodeTypedValue(type, value[name]));
        }
    }
    return concatBytes(parts);
}

const OK_USER_PAGE_PREFIX = candidPrefix(
    [Result(LoanPage)],
    [{ Ok: SAMPLE_LOAN_PAGE }],
    encodeLoanPageReplyValue(SAMPLE_LOAN_PAGE)
);
const ERR_USER_PAGE = new ErrReplyCodec(OK_USER_PAGE_PREFIX);

/**
 * The reply `Result<LoanPage>` of the router's user-loan pages, as `IDL.encode` writes it, by
 * hand (the generic encoder cost about 100 M instructions for a page of 40 loans).
 */
export function encodeUserLoanPageReply(
    result: { Ok: LoanPageView } | { Err: ApiError }
): Uint8Array {
    return 'Ok' in result
        ? concatBytes([OK_USER_PAGE_PREFIX, encodeLoanPageReplyValue(result.Ok)])
        : ERR_USER_PAGE.encode(result.Err);
}
