/**
 * A loan's Candid value bytes, encoded and decoded by hand: the bytes `IDL.encode([Loan], [loan])`
 * ends with (after the `DIDL` header and type table), without `@dfinity/candid`'s generic encoder,
 * which costs tens of millions of instructions per loan in the canister's JS engine.
 *
 * The shard stores these bytes, so a reply that carries loans is a constant prefix (header, type
 * table, `Ok` tag) followed by stored bytes, with no decode/encode round trip (`CandidReply`).
 * The router reads loan pages without decoding them: `scanLoanPageValue` finds each loan's bytes,
 * id, status and the offsets of the amounts a dashboard sums (`LoanView`), checking the bytes as a
 * decode does. `tests/unit/loan_codec.test.ts` checks the bytes against `IDL.encode` on random
 * loans, and that the scan accepts exactly what a decode accepts.
 */
import { IDL, idlLabelToId } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import {
    LOAN_STATUSES,
    Loan,
    LoanStatus,
    LoanStatusName,
    LoanUpdate,
    NewLoan,
    Result
} from './types';

type Field = keyof Loan;

/** Candid orders record fields and variant cases by the 32-bit hash of their names. */
function byHash<T extends string>(names: readonly T[]): T[] {
    return [...names].sort((a, b) => idlLabelToId(a) - idlLabelToId(b));
}

/** Loan fields in Candid order, from the one definition of `Loan` (a record sorts by hash). */
const LOAN_FIELDS = (Loan as unknown as IDL.RecordClass)._fields.map(([name]) => name as Field);
const STATUS_ORDER: readonly LoanStatusName[] = byHash(LOAN_STATUSES);
const STATUS_INDEX = new Map<string, number>(STATUS_ORDER.map((s, i) => [s, i]));
const REPAYMENT_ORDER = byHash(['amount', 'timestamp'] as const);
const FUNDING_ORDER = byHash(['investor', 'amount'] as const);
/** Fields the codec writes as something other than `nat64`; every other field must be `nat64`. */
const SPECIAL_FIELDS = new Set<Field>([
    'borrower',
    'status',
    'due_date',
    'last_payment_date',
    'repayment_history',
    'funders'
]);
for (const [name, type] of (Loan as unknown as IDL.RecordClass)._fields) {
    if (!SPECIAL_FIELDS.has(name as Field) && type.display() !== IDL.Nat64.display()) {
        throw new Error(`loan codec: field ${name} is not nat64; teach the codec its type`);
    }
}

/** A growable byte writer (LEB128, little-endian nat32/nat64/float64, principals). */
export class Writer {
    private bytes: Uint8Array;
    private view: DataView;
    length = 0;

    constructor(capacity: number) {
        this.bytes = new Uint8Array(capacity);
        this.view = new DataView(this.bytes.buffer);
    }

    private room(n: number): void {
        if (this.length + n <= this.bytes.length) return;
        const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
        grown.set(this.bytes.subarray(0, this.length));
        this.bytes = grown;
        this.view = new DataView(grown.buffer);
    }

    byte(b: number): void {
        this.room(1);
        this.bytes[this.length++] = b;
    }

    leb(value: number): void {
        let v = value;
        for (;;) {
            const low = v & 0x7f;
            v = Math.floor(v / 128);
            if (v === 0) {
                this.byte(low);
                return;
            }
            this.byte(low | 0x80);
        }
    }

    /** An unbounded `nat` (LEB128 of any size); throws, naming `what`, below zero. */
    natValue(value: bigint, what: string): void {
        if (value < 0n) throw new RangeError(`${what}: nat below zero`);
        let v = value;
        for (;;) {
            const low = Number(v & 0x7fn);
            v >>= 7n;
            if (v === 0n) return this.byte(low);
            this.byte(low | 0x80);
        }
    }

    nat32(value: number): void {
        this.room(4);
        this.view.setUint32(this.length, value, true);
        this.length += 4;
    }

    nat64(value: bigint): void {
        this.room(8);
        this.view.setBigUint64(this.length, value, true);
        this.length += 8;
    }

    float64(value: number): void {
        this.room(8);
        this.view.setFloat64(this.length, value, true);
        this.length += 8;
    }

    raw(bytes: Uint8Array): void {
        this.room(bytes.length);
        this.bytes.set(bytes, this.length);
        this.length += bytes.length;
    }

    principal(p: Principal): void {
        const bytes = p.toUint8Array();
        this.byte(1);
        this.leb(bytes.length);
        this.raw(bytes);
    }

    optNat64(value: [] | [bigint]): void {
        if (value.length === 0) {
            this.byte(0);
        } else {
            this.byte(1);
            this.nat64(value[0]);
        }
    }

    done(): Uint8Array {
        return this.bytes.slice(0, this.length);
    }
}

/**
 * A byte reader over Candid value bytes; throws on truncated or malformed input, naming `what`.
 * Shared by the loan codec and the router's typed codec.
 */
export class ValueReader {
    readonly view: DataView;
    at = 0;

    constructor(
        readonly bytes: Uint8Array,
        protected readonly what = 'loan bytes'
    ) {
        this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }

    need(n: number): void {
        if (n < 0 || this.at + n > this.bytes.length) throw new Error(`${this.what}: truncated`);
    }

    byte(): number {
        this.need(1);
        return this.bytes[this.at++];
    }

    leb(): number {
        let result = 0;
        let scale = 1;
        for (let i = 0; i < 8; i++) {
            const b = this.byte();
            result += (b & 0x7f) * scale;
            if ((b & 0x80) === 0) return result;
            scale *= 128;
        }
        throw new Error(`${this.what}: LEB128 too long`);
    }

    /** An unbounded `nat` (LEB128, at most 64 bytes) as a bigint. */
    natValue(): bigint {
        let result = 0n;
        let shift = 0n;
        for (let i = 0; i < 64; i++) {
            const b = this.byte();
            result |= BigInt(b & 0x7f) << shift;
            if ((b & 0x80) === 0) return result;
            shift += 7n;
        }
        throw new Error(`${this.what}: nat too long`);
    }

    nat64(): bigint {
        this.need(8);
        const value = this.view.getBigUint64(this.at, true);
        this.at += 8;
        return value;
    }

    principal(): Principal {
        if (this.byte() !== 1) throw new Error(`${this.what}: opaque principal reference`);
        const n = this.leb();
        if (n > 29) throw new Error(`${this.what}: principal longer than 29 bytes`);
        this.need(n);
        const p = Principal.fromUint8Array(this.bytes.slice(this.at, this.at + n));
        this.at += n;
        return p;
    }

    optNat64(): [] | [bigint] {
        const tag = this.byte();
        if (tag === 0) return [];
        if (tag !== 1) throw new Error(`${this.what}: bad opt tag`);
        return [this.nat64()];
    }

    optNat32(): [] | [number] {
        const tag = this.byte();
        if (tag === 0) return [];
        if (tag !== 1) throw new Error(`${this.what}: bad opt tag`);
        this.need(4);
        this.at += 4;
        return [this.view.getUint32(this.at - 4, true)];
    }

    /** Steps over `n` bytes (checked). */
    skipBytes(n: number): void {
        this.need(n);
        this.at += n;
    }

    /** Steps over a principal, checked as `principal()` checks it. */
    skipPrincipal(): void {
        if (this.byte() !== 1) throw new Error(`${this.what}: opaque principal reference`);
        const n = this.leb();
        if (n > 29) throw new Error(`${this.what}: principal longer than 29 bytes`);
        this.skipBytes(n);
    }

    count(elementBytes: number): number {
        const n = this.leb();
        if (n * elementBytes > this.bytes.length - this.at)
            throw new Error(`${this.what}: bad length`);
        return n;
    }
}

function writeField(w: Writer, loan: Loan, field: Field): void {
    switch (field) {
        case 'borrower':
            w.principal(loan.borrower);
            return;
        case 'status': {
            const index = STATUS_INDEX.get(Object.keys(loan.status)[0]);
            if (index === undefined) throw new Error('loan: unknown status');
            w.leb(index);
            return;
        }
        case 'due_date':
        case 'last_payment_date':
            w.optNat64(loan[field]);
            return;
        case 'repayment_history':
            w.leb(loan.repayment_history.length);
            for (const r of loan.repayment_history) {
                for (const f of REPAYMENT_ORDER) w.nat64(r[f]);
            }
            return;
        case 'funders':
            w.leb(loan.funders.length);
            for (const f of loan.funders) {
                for (const name of FUNDING_ORDER) {
                    if (name === 'investor') w.principal(f.investor);
                    else w.nat64(f.amount);
                }
            }
            return;
        default:
            w.nat64(loan[field]);
    }
}

/**
 * The Candid value bytes of `loan` (what `IDL.encode([Loan], [loan])` ends with).
 *
 * @example decodeLoanValue(encodeLoanValue(loan)) // deep-equals loan
 */
export function encodeLoanValue(loan: Loan): Uint8Array {
    const w = new Writer(160 + 48 * (loan.funders.length + loan.repayment_history.length));
    for (const field of LOAN_FIELDS) writeField(w, loan, field);
    return w.done();
}

/** Reads one loan's value bytes at the reader's position (see `decodeLoanValue`). */
export function readLoanValue(r: ValueReader): Loan {
    return readLoanFrom(r);
}

function readLoanFrom(r: ValueReader): Loan {
    const loan: Record<string, unknown> = {};
    for (const field of LOAN_FIELDS) {
        switch (field) {
            case 'borrower':
                loan.borrower = r.principal();
                break;
            case 'status': {
                const name = STATUS_ORDER[r.leb()];
                if (name === undefined) throw new Error('loan bytes: bad status');
                loan.status = { [name]: null };
                break;
            }
            case 'due_date':
            case 'last_payment_date':
                loan[field] = r.optNat64();
                break;
            case 'repayment_history': {
                const n = r.count(16);
                const history = [];
                for (let i = 0; i < n; i++) {
                    const entry: Record<string, bigint> = {};
                    for (const f of REPAYMENT_ORDER) entry[f] = r.nat64();
                    history.push(entry);
                }
                loan.repayment_history = history;
                break;
            }
            case 'funders': {
                const n = r.count(10);
                const funders = [];
                for (let i = 0; i < n; i++) {
                    const entry: Record<string, unknown> = {};
                    for (const f of FUNDING_ORDER) {
                        entry[f] = f === 'investor' ? r.principal() : r.nat64();
                    }
                    funders.push(entry);
                }
                loan.funders = funders;
                break;
            }
            default:
                loan[field] = r.nat64();
        }
    }
    return loan as unknown as Loan;
}

/** Decodes bytes written by `encodeLoanValue`; throws on malformed or trailing bytes. */
export function decodeLoanValue(bytes: Uint8Array): Loan {
    const r = new ValueReader(bytes);
    const loan = readLoanFrom(r);
    if (r.at !== bytes.length) throw new Error('loan bytes: trailing bytes');
    return loan;
}

/** The parts one after another in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
        out.set(p, at);
        at += p.length;
    }
    return out;
}

/** LEB128 of a non-negative integer. */
export function lebBytes(value: number): Uint8Array {
    const w = new Writer(4);
    w.leb(value);
    return w.done();
}

/**
 * The constant part of a Candid message (`DIDL`, type table, argument types and any leading value
 * bytes such as a variant tag) before `tail`, found by encoding a sample with `IDL.encode`; throws
 * when the encoding does not end with `tail` (a codec bug caught at load time, never at run time).
 *
 * @example const prefix = candidPrefix([Result(Loan)], [{ Ok: sample }], encodeLoanValue(sample));
 */
export function candidPrefix(types: IDL.Type[], values: unknown[], tail: Uint8Array): Uint8Array {
    const full = new Uint8Array(IDL.encode(types, values));
    const start = full.length - tail.length;
    for (let i = 0; i < tail.length; i++) {
        if (full[start + i] !== tail[i]) {
            throw new Error('candidPrefix: the hand encoding differs from IDL.encode');
        }
    }
    return full.slice(0, start);
}

/** The order of a record's fields in Candid value bytes. */
export function candidFieldOrder<T extends string>(names: readonly T[]): T[] {
    return byHash(names);
}

/**
 * The constant head of a `Result<Loan>` reply holding `Ok`: header, type table and the `Ok` tag.
 * A loan's value bytes follow it. Computed with `IDL.encode` once (at canister load).
 */
export function okLoanPrefix(): Uint8Array {
    const sample: Loan = {
        id: 0n,
        borrower: Principal.anonymous(),
        nft_id: 0n,
        collateral_value_btc: 0n,
        amount_requested: 0n,
        amount_approved: 0n,
        apr: 0n,
        status: { PendingApplication: null },
        created_at: 0n,
        due_date: [],
        total_repaid: 0n,
        repayment_history: [],
        last_payment_date: [],
        funders: [],
        updated_at: 0n,
        version: 0n
    };
    return candidPrefix([Result(Loan)], [{ Ok: sample }], encodeLoanValue(sample));
}

/**
 * The loan bytes after `prefix` when `reply` starts with it, else undefined. Compared as text
 * (`latin1At`: native code), since a byte loop costs about a thousand instructions a byte here.
 */
export function afterPrefix(reply: Uint8Array, prefix: Uint8Array): Uint8Array | undefined {
    if (reply.length < prefix.length) return undefined;
    const n = prefix.length;
    if (latin1At(reply, 0, n) !== latin1At(prefix, 0, n)) return undefined;
    return reply.subarray(n);
}

/** `NewLoan` fields in Candid order; all `nat64` except the two named below. */
const NEW_LOAN_FIELDS = (NewLoan as unknown as IDL.RecordClass)._fields.map(
    ([name]) => name as keyof NewLoan
);
for (const [name, type] of (NewLoan as unknown as IDL.RecordClass)._fields) {
    if (name !== 'borrower' && name !== 'due_date' && type.display() !== IDL.Nat64.display()) {
        throw new Error(`loan codec: NewLoan field ${name} is not nat64; teach the codec its type`);
    }
}

/** The Candid value bytes of a `NewLoan` (what `IDL.encode([NewLoan], [x])` ends with). */
export function encodeNewLoanValue(application: NewLoan): Uint8Array {
    const w = new Writer(64);
    for (const field of NEW_LOAN_FIELDS) {
        if (field === 'borrower') w.principal(application.borrower);
        else if (field === 'due_date') w.optNat64(application.due_date);
        else w.nat64(application[field]);
    }
    return w.done();
}

/** The head `IDL.encode([NewLoan], …)` writes before the value bytes (computed once, at load). */
const NEW_LOAN_ARG_PREFIX = candidPrefix(
    [NewLoan],
    [
        {
            borrower: Principal.anonymous(),
            nft_id: 0n,
            collateral_value_btc: 0n,
            amount_requested: 0n,
            apr: 0n,
            due_date: []
        }
    ],
    encodeNewLoanValue({
        borrower: Principal.anonymous(),
        nft_id: 0n,
        collateral_value_btc: 0n,
        amount_requested: 0n,
        apr: 0n,
        due_date: []
    })
);

/** The whole argument `(NewLoan)` as `IDL.encode([NewLoan], [application])` writes it, by hand. */
export function encodeNewLoanArg(application: NewLoan): Uint8Array {
    return concatBytes([NEW_LOAN_ARG_PREFIX, encodeNewLoanValue(application)]);
}

/**
 * Decodes a message argument `(NewLoan)` by hand when it has the encoding `@dfinity/candid` (agent,
 * Azle, this router) writes for it, the common case; undefined for any other valid encoding (e.g.
 * another type-table order), which the caller decodes with `IDL.decode`.
 */
export function decodeNewLoanArg(arg: Uint8Array): NewLoan | undefined {
    const body = afterPrefix(arg, NEW_LOAN_ARG_PREFIX);
    if (body === undefined) return undefined;
    try {
        const r = new ValueReader(body);
        const application: Record<string, unknown> = {};
        for (const field of NEW_LOAN_FIELDS) {
            if (field === 'borrower') application.borrower = r.principal();
            else if (field === 'due_date') application.due_date = r.optNat64();
            else application[field] = r.nat64();
        }
        return r.at === body.length ? (application as unknown as NewLoan) : undefined;
    } catch {
        return undefined;
    }
}

// ---- Loan pages (helper K): a shard's `record { loans: vec Loan; next_cursor: opt nat64 }` ----

/** A shard's page of loans, as `get_loans_by_borrower` / `get_loans_by_investor` answer it. */
export interface LoanPageValue {
    loans: Loan[];
    next_cursor: [] | [bigint];
}

/** The page's fields in Candid order (a record sorts by hash). */
const PAGE_ORDER = byHash(['loans', 'next_cursor'] as const);

/** The Candid value bytes of a loan page (what `IDL.encode([ShardLoanPage], [page])` ends with). */
export function encodeLoanPageValue(page: LoanPageValue): Uint8Array {
    const w = new Writer(16 + 192 * page.loans.length);
    for (const field of PAGE_ORDER) {
        if (field === 'next_cursor') {
            w.optNat64(page.next_cursor);
        } else {
            w.leb(page.loans.length);
            for (const loan of page.loans) w.raw(encodeLoanValue(loan));
        }
    }
    return w.done();
}

// ---- Loan views (helper R): the fields a dashboard reads, found in a loan's value bytes ----

/**
 * A loan as the router's dashboards and pages see it: where its value bytes lie (passed on as
 * they are), its id as two 32-bit halves, its status, and where the amounts a dashboard sums
 * begin. A scan (`scanLoanValue`) checks the bytes as `decodeLoanValue` does but builds no `Loan`:
 * each BigInt, principal and object costs thousands of instructions in the canister's JS engine,
 * and a dashboard reads four fields of sixteen.
 */
export interface LoanView {
    /** The bytes the loan lies in (a whole page: shared by its loans) and a view over them. */
    bytes: Uint8Array;
    data: DataView;
    start: number;
    end: number;
    idHi: number;
    idLo: number;
    /** The status's index in Candid order (`LOAN_STATUS_ORDER`). */
    status: number;
    approvedAt: number;
    aprAt: number;
    repaidAt: number;
    fundersAt: number;
}

/** Loan statuses in Candid order: `LoanView.status` indexes this. */
export const LOAN_STATUS_ORDER: readonly LoanStatusName[] = STATUS_ORDER;

const SCAN_NAT64 = 0;
const SCAN_ID = 1;
const SCAN_APPROVED = 2;
const SCAN_APR = 3;
const SCAN_REPAID = 4;
const SCAN_PRINCIPAL = 5;
const SCAN_STATUS = 6;
const SCAN_OPT_NAT64 = 7;
const SCAN_HISTORY = 8;
const SCAN_FUNDERS = 9;

/** What the scan does at each field, in Candid order (numbers: a switch on them is cheap). */
const SCAN_PLAN: readonly number[] = LOAN_FIELDS.map((field) => {
    switch (field) {
        case 'id':
            return SCAN_ID;
        case 'amount_approved':
            return SCAN_APPROVED;
        case 'apr':
            return SCAN_APR;
        case 'total_repaid':
            return SCAN_REPAID;
        case 'borrower':
            return SCAN_PRINCIPAL;
        case 'status':
            return SCAN_STATUS;
        case 'due_date':
        case 'last_payment_date':
            return SCAN_OPT_NAT64;
        case 'repayment_history':
            return SCAN_HISTORY;
        case 'funders':
            return SCAN_FUNDERS;
        default:
            return SCAN_NAT64;
    }
});
const INVESTOR_FIRST = FUNDING_ORDER[0] === 'investor';

/** Steps over one `Funding` record, checked. */
function skipFunding(r: ValueReader): void {
    if (INVESTOR_FIRST) {
        r.skipPrincipal();
        r.skipBytes(8);
    } else {
        r.skipBytes(8);
        r.skipPrincipal();
    }
}

/**
 * Scans one loan's value bytes at the reader's position: throws where `readLoanValue` throws
 * (truncated bytes, a bad principal, status or option tag, a bad length), builds no `Loan`.
 */
export function scanLoanValue(r: ValueReader, bytes: Uint8Array): LoanView {
    const fast = FAST_LAYOUT ? scanFast(bytes, r.view, r.at) : undefined;
    if (fast !== undefined) {
        r.at = fast.end;
        return fast;
    }
    return scanChecked(r, bytes);
}

/** The field order `scanFast` is written for: `Loan`'s Candid order (checked at load). */
const FAST_ORDER =
    'id apr nft_id status updated_at amount_requested total_repaid created_at borrower ' +
    'repayment_history version due_date last_payment_date collateral_value_btc funders ' +
    'amount_approved';
const FAST_LAYOUT = LOAN_FIELDS.join(' ') === FAST_ORDER && !INVESTOR_FIRST;
const STATUS_COUNT = STATUS_ORDER.length;

/**
 * The scan in straight-line code for bytes whose lengths and tags are single bytes (every loan
 * `@dfinity/candid` or this codec writes): each JS operation costs hundreds of instructions in
 * the canister, so fixed-width fields are stepped over by arithmetic. Undefined for anything
 * else, including every malformed input (a read past the end gives undefined, which fails each
 * test); `scanChecked` then decides, so the two accept the same bytes.
 */
function scanFast(bytes: Uint8Array, data: DataView, start: number): LoanView | undefined {
    const status = bytes[start + 24];
    if (!(status < STATUS_COUNT)) return undefined;
    const borrowerBytes = bytes[start + 58];
    if (bytes[start + 57] !== 1 || !(borrowerBytes <= 29)) return undefined;
    let at = start + 59 + borrowerBytes;
    const repayments = bytes[at];
    if (!(repayments < 0x80)) return undefined;
    at += 9 + 16 * repayments; // the count, the entries, `version`
    const dueTag = bytes[at];
    if (dueTag === 0) at += 1;
    else if (dueTag === 1) at += 9;
    else return undefined;
    const lastTag = bytes[at];
    if (lastTag === 0)
        at += 9; // the tag, then `collateral_value_btc`
    else if (lastTag === 1) at += 17;
    else return undefined;
    const fundersAt = at;
    const funders = bytes[at];
    if (!(funders < 0x80)) return undefined;
    at += 1;
    for (let i = 0; i < funders; i++) {
        const investorBytes = bytes[at + 9];
        if (bytes[at + 8] !== 1 || !(investorBytes <= 29)) return undefined;
        at += 10 + investorBytes;
    }
    const end = at + 8;
    if (end > bytes.length) return undefined;
    return {
        bytes,
        data,
        start,
        end,
        idHi: data.getUint32(start + 4, true),
        idLo: data.getUint32(start, true),
        status,
        approvedAt: at,
        aprAt: start + 8,
        repaidAt: start + 41,
        fundersAt
    };
}

/** The scan field by field through the reader's checks (any field order, any LEB128 form). */
function scanChecked(r: ValueReader, bytes: Uint8Array): LoanView {
    const start = r.at;
    let idAt = 0;
    let approvedAt = 0;
    let aprAt = 0;
    let repaidAt = 0;
    let fundersAt = 0;
    let status = 0;
    for (const op of SCAN_PLAN) {
        switch (op) {
            case SCAN_PRINCIPAL:
                r.skipPrincipal();
                break;
            case SCAN_STATUS:
                status = r.leb();
                if (status >= STATUS_ORDER.length) throw new Error('loan bytes: bad status');
                break;
            case SCAN_OPT_NAT64: {
                const tag = r.byte();
                if (tag > 1) throw new Error('loan bytes: bad opt tag');
                if (tag === 1) r.skipBytes(8);
                break;
            }
            case SCAN_HISTORY:
                r.skipBytes(16 * r.count(16));
                break;
            case SCAN_FUNDERS: {
                fundersAt = r.at;
                const n = r.count(10);
                for (let i = 0; i < n; i++) skipFunding(r);
                break;
            }
            default:
                if (op === SCAN_ID) idAt = r.at;
                else if (op === SCAN_APPROVED) approvedAt = r.at;
                else if (op === SCAN_APR) aprAt = r.at;
                else if (op === SCAN_REPAID) repaidAt = r.at;
                r.skipBytes(8);
        }
    }
    const data = r.view;
    return {
        bytes,
        data,
        start,
        end: r.at,
        idHi: data.getUint32(idAt + 4, true),
        idLo: data.getUint32(idAt, true),
        status,
        approvedAt,
        aprAt,
        repaidAt,
        fundersAt
    };
}

/** The view of `loan` over its freshly encoded bytes (tests, and replies read generically). */
export function loanViewOf(loan: Loan): LoanView {
    const bytes = encodeLoanValue(loan);
    return scanLoanValue(new ValueReader(bytes), bytes);
}

/** The value bytes a view lies in (a subarray: no copy). */
export function viewBytes(v: LoanView): Uint8Array {
    return v.bytes.subarray(v.start, v.end);
}

/** A view's loan id. */
export function viewId(v: LoanView): bigint {
    return (BigInt(v.idHi) << 32n) | BigInt(v.idLo);
}

/** A view's `nat64` field at `at` (an offset the scan recorded). */
export function viewNat64(v: LoanView, at: number): bigint {
    return v.data.getBigUint64(at, true);
}

/** Orders views by loan id. */
export function compareViewIds(a: LoanView, b: LoanView): number {
    if (a.idHi !== b.idHi) return a.idHi < b.idHi ? -1 : 1;
    return a.idLo < b.idLo ? -1 : a.idLo > b.idLo ? 1 : 0;
}

/**
 * A `nat64` from the sums of many values' high and low 32-bit halves, summed apart as numbers
 * (exact below 2^53, i.e. for up to 2^21 values): an exact sum without a BigInt per value.
 */
export function nat64FromHalves(hi: number, lo: number): bigint {
    return BigInt(hi) * 4_294_967_296n + BigInt(lo);
}

/**
 * Adds to `sum` (`[hi, lo]` halves, as `nat64FromHalves` takes them) the amounts the investor
 * whose principal bytes are `investor` (as `latin1`-style text: one char per byte) funded in the
 * loan of `v`. The view's bytes were checked by its scan. Lengths in one byte (the usual form)
 * are read in place; any other form through a reader.
 */
export function addFundingOf(v: LoanView, investor: string, sum: [number, number]): void {
    const bytes = v.bytes;
    const n = bytes[v.fundersAt];
    if (INVESTOR_FIRST || n >= 0x80) {
        addFundingChecked(v, investor, sum);
        return;
    }
    let at = v.fundersAt + 1;
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < n; i++) {
        const length = bytes[at + 9];
        if (length >= 0x80) {
            addFundingChecked(v, investor, sum);
            return;
        }
        if (length === investor.length && latin1At(bytes, at + 10, length) === investor) {
            hi += v.data.getUint32(at + 4, true);
            lo += v.data.getUint32(at, true);
        }
        at += 10 + length;
    }
    sum[0] += hi;
    sum[1] += lo;
}

/** Bytes as text, one char per byte (compared natively: a byte loop costs far more here). */
function latin1At(bytes: Uint8Array, at: number, length: number): string {
    return String.fromCharCode.apply(null, bytes.subarray(at, at + length) as unknown as number[]);
}

/** `addFundingOf` through a reader: any LEB128 form, either field order. */
function addFundingChecked(v: LoanView, investor: string, sum: [number, number]): void {
    const r = new ValueReader(v.bytes);
    r.at = v.fundersAt;
    const n = r.leb();
    for (let i = 0; i < n; i++) {
        let amountAt = r.at;
        if (!INVESTOR_FIRST) r.at += 8;
        r.at += 1;
        const length = r.leb();
        const mine = length === investor.length && latin1At(v.bytes, r.at, length) === investor;
        r.at += length;
        if (INVESTOR_FIRST) {
            amountAt = r.at;
            r.at += 8;
        }
        if (mine) {
            sum[0] += v.data.getUint32(amountAt + 4, true);
            sum[1] += v.data.getUint32(amountAt, true);
        }
    }
}

/**
 * The principals of a loan (its value bytes), borrower first, then each funder's, as
 * `latin1`-style keys (one char per byte: what `principalKey` gives), read in place; undefined
 * when the bytes are not in the usual form (the caller then decodes the loan).
 */
export function loanPeopleKeys(bytes: Uint8Array): string[] | undefined {
    if (!FAST_LAYOUT) return undefined;
    const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = scanFast(bytes, data, 0);
    if (v === undefined || v.end !== bytes.length) return undefined;
    const keys = [latin1At(bytes, 59, bytes[58])];
    const n = bytes[v.fundersAt];
    let at = v.fundersAt + 1;
    for (let i = 0; i < n; i++) {
        const length = bytes[at + 9];
        keys.push(latin1At(bytes, at + 10, length));
        at += 10 + length;
    }
    return keys;
}

/** A shard's page of loans as views over the reply's bytes. */
export interface LoanViewPage {
    loans: LoanView[];
    next_cursor: [] | [bigint];
}

/**
 * Scans bytes written by `encodeLoanPageValue` into views (no `Loan` built); throws on malformed
 * or trailing bytes, as a full decode would.
 */
export function scanLoanPageValue(bytes: Uint8Array): LoanViewPage {
    const r = new ValueReader(bytes);
    const page: LoanViewPage = { loans: [], next_cursor: [] };
    for (const field of PAGE_ORDER) {
        if (field === 'next_cursor') {
            page.next_cursor = r.optNat64();
        } else {
            const n = r.count(80);
            for (let i = 0; i < n; i++) {
                const fast = FAST_LAYOUT ? scanFast(bytes, r.view, r.at) : undefined;
                const loan = fast ?? scanChecked(r, bytes);
                r.at = loan.end;
                page.loans.push(loan);
            }
        }
    }
    if (r.at !== bytes.length) throw new Error('loan page bytes: trailing bytes');
    return page;
}

// ---- update_loan's arguments `(nat64, LoanUpdate)`, decoded by hand ----

/** How each `LoanUpdate` case's payload is read: nothing, or a record of nat64/principal fields. */
type UpdatePayload = null | { name: string; principal: boolean }[];

/** The cases in Candid order (a variant sorts by hash), each with its payload plan (at load). */
const UPDATE_CASES: { name: string; payload: UpdatePayload }[] = (
    LoanUpdate as unknown as IDL.VariantClass
)._fields.map(([name, type]) => {
    if (type.display() === IDL.Null.display()) return { name, payload: null };
    if (!(type instanceof IDL.RecordClass)) {
        throw new Error(`loan codec: LoanUpdate case ${name} is not a record; teach the codec`);
    }
    return {
        name,
        payload: type._fields.map(([field, t]) => {
            const principal = t.display() === IDL.Principal.display();
            if (!principal && t.display() !== IDL.Nat64.display()) {
                throw new Error(
                    `loan codec: LoanUpdate ${name}.${field} is neither nat64 nor principal`
                );
            }
            return { name: field, principal };
        })
    };
});

/** The value bytes of `(id, change)` after the head (what `IDL.encode([nat64, LoanUpdate], …)` ends with). */
export function encodeUpdateLoanArgValues(id: bigint, change: LoanUpdate): Uint8Array {
    const w = new Writer(48);
    w.nat64(id);
    const tag = Object.keys(change)[0];
    const index = UPDATE_CASES.findIndex((c) => c.name === tag);
    if (index < 0) throw new Error('loan codec: unknown LoanUpdate case');
    w.leb(index);
    const payload = UPDATE_CASES[index].payload;
    const value = (change as Record<string, Record<string, unknown>>)[tag];
    for (const field of payload ?? []) {
        if (field.principal) w.principal(value[field.name] as Principal);
        else w.nat64(value[field.name] as bigint);
    }
    return w.done();
}

const UPDATE_ARG_PREFIX = candidPrefix(
    [IDL.Nat64, LoanUpdate],
    [0n, { SubmitForApproval: null }],
    encodeUpdateLoanArgValues(0n, { SubmitForApproval: null })
);

/** The whole argument `(nat64, LoanUpdate)` as `IDL.encode` writes it, by hand. */
export function encodeUpdateLoanArgs(id: bigint, change: LoanUpdate): Uint8Array {
    return concatBytes([UPDATE_ARG_PREFIX, encodeUpdateLoanArgValues(id, change)]);
}

/**
 * Decodes `update_loan`'s argument `(nat64, LoanUpdate)` by hand when it has the encoding
 * `@dfinity/candid` writes (the router, agents); undefined for any other encoding or malformed bytes,
 * which the caller decodes with `IDL.decode` (so it accepts and rejects exactly what that does).
 */
export function decodeUpdateLoanArgs(arg: Uint8Array): [bigint, LoanUpdate] | undefined {
    const body = afterPrefix(arg, UPDATE_ARG_PREFIX);
    if (body === undefined) return undefined;
    try {
        const r = new ValueReader(body, 'update_loan arguments');
        const id = r.nat64();
        const chosen = UPDATE_CASES[r.leb()];
        if (chosen === undefined) return undefined;
        let payload: Record<string, unknown> | null = null;
        if (chosen.payload !== null) {
            payload = {};
            for (const field of chosen.payload) {
                payload[field.name] = field.principal ? r.principal() : r.nat64();
            }
        }
        if (r.at !== body.length) return undefined;
        return [id, { [chosen.name]: payload } as LoanUpdate];
    } catch {
        return undefined;
    }
}

/** `DIDL`, no type table, one `nat64` argument: the head of `(nat64)` as `@dfinity/candid` writes it. */
const NAT64_ARG_HEAD = new Uint8Array([0x44, 0x49, 0x44, 0x4c, 0x00, 0x01, 0x78]);

/**
 * A loan id argument `(nat64)` in the usual encoding; undefined otherwise (the caller then decodes
 * with `IDL.decode`).
 */
export function decodeLoanIdArg(arg: Uint8Array): bigint | undefined {
    const body = afterPrefix(arg, NAT64_ARG_HEAD);
    if (body === undefined || body.length !== 8) return undefined;
    return new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0, true);
}

// ---- The paged reads' arguments `(principal | LoanStatus, opt nat64, opt nat32)`, by hand ----

/** A paged read's arguments: the index key (a principal or a status), cursor and limit. */
export interface PageArgs<K> {
    key: K;
    cursor: [] | [bigint];
    limit: [] | [number];
}

const PAGE_ARG_TYPES_PRINCIPAL = [IDL.Principal, IDL.Opt(IDL.Nat64), IDL.Opt(IDL.Nat32)];
const PAGE_ARG_TYPES_STATUS = [LoanStatus, IDL.Opt(IDL.Nat64), IDL.Opt(IDL.Nat32)];

/** The value bytes of a paged read's cursor and limit (after the key's). */
function pageTailValue(w: Writer, cursor: [] | [bigint], limit: [] | [number]): void {
    w.optNat64(cursor);
    if (limit.length === 0) {
        w.byte(0);
    } else {
        w.byte(1);
        w.nat32(limit[0]);
    }
}

/** The value bytes of `(principal, opt nat64, opt nat32)`. */
export function encodePrincipalPageArgValues(args: PageArgs<Principal>): Uint8Array {
    const w = new Writer(48);
    w.principal(args.key);
    pageTailValue(w, args.cursor, args.limit);
    return w.done();
}

/** The value bytes of `(LoanStatus, opt nat64, opt nat32)`. */
export function encodeStatusPageArgValues(args: PageArgs<LoanStatus>): Uint8Array {
    const w = new Writer(24);
    const index = STATUS_INDEX.get(Object.keys(args.key)[0]);
    if (index === undefined) throw new Error('loan codec: unknown status');
    w.leb(index);
    pageTailValue(w, args.cursor, args.limit);
    return w.done();
}

const SAMPLE_PAGE_TAIL = { cursor: [] as [], limit: [] as [] };
const PRINCIPAL_PAGE_ARG_PREFIX = candidPrefix(
    PAGE_ARG_TYPES_PRINCIPAL,
    [Principal.anonymous(), [], []],
    encodePrincipalPageArgValues({ key: Principal.anonymous(), ...SAMPLE_PAGE_TAIL })
);
const STATUS_PAGE_ARG_PREFIX = candidPrefix(
    PAGE_ARG_TYPES_STATUS,
    [{ Active: null }, [], []],
    encodeStatusPageArgValues({ key: { Active: null }, ...SAMPLE_PAGE_TAIL })
);

/**
 * The whole argument `(principal, opt nat64, opt nat32)` of `get_loans_by_borrower`/`_investor`,
 * as `IDL.encode` writes it, by hand (the router's fan-out sends one per shard call).
 */
export function encodePrincipalPageArgs(args: PageArgs<Principal>): Uint8Array {
    return concatBytes([PRINCIPAL_PAGE_ARG_PREFIX, encodePrincipalPageArgValues(args)]);
}

/**
 * `(principal, opt nat64, opt nat32)` (`get_loans_by_borrower`/`_investor`) decoded by hand in the
 * encoding `@dfinity/candid` writes; undefined otherwise (the caller then uses `IDL.decode`).
 */
export function decodePrincipalPageArgs(arg: Uint8Array): PageArgs<Principal> | undefined {
    const body = afterPrefix(arg, PRINCIPAL_PAGE_ARG_PREFIX);
    if (body === undefined) return undefined;
    try {
        const r = new ValueReader(body, 'page arguments');
        const key = r.principal();
        const cursor = r.optNat64();
        const limit = r.optNat32();
        return r.at === body.length ? { key, cursor, limit } : undefined;
    } catch {
        return undefined;
    }
}

/** `(LoanStatus, opt nat64, opt nat32)` (`get_loans_by_status`) decoded by hand; see above. */
export function decodeStatusPageArgs(arg: Uint8Array): PageArgs<LoanStatus> | undefined {
    const body = afterPrefix(arg, STATUS_PAGE_ARG_PREFIX);
    if (body === undefined) return undefined;
    try {
        const r = new ValueReader(body, 'page arguments');
        const name = STATUS_ORDER[r.leb()];
        if (name === undefined) return undefined;
        const cursor = r.optNat64();
        const limit = r.optNat32();
        if (r.at !== body.length) return undefined;
        return { key: { [name]: null } as LoanStatus, cursor, limit };
    } catch {
        return undefined;
    }
}
