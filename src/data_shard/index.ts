/**
 * The data shard: the loans of the slots it owns, with secondary indexes, in stable memory.
 *
 * Writes come only from the factory and the router (the router checks the user); reads only from
 * them and the shard's controllers. Every rule lives in `src/shared` (`loan.ts` for transitions,
 * `shard_state.ts` for slot admission and checksums); this file reads state, calls those, writes back.
 */
import {
    IDL,
    init,
    msgArgData,
    msgCaller,
    msgReply,
    isController,
    performanceCounter,
    postUpgrade,
    Principal,
    query,
    time,
    update
} from 'azle';

import { bool, nat32, nat64, opt, principal, vec } from '../shared/candid';
import { slotOf } from '../shared/hash';
import {
    DEFAULT_PAGE_SIZE,
    MAX_MIGRATION_BATCH_BYTES,
    MAX_MIGRATION_BATCH_LOANS,
    MAX_PAGE_SIZE,
    SLOT_COUNT
} from '../shared/limits';
import { applyLoanUpdate, newLoanRecord, validateNewLoan } from '../shared/loan';
import {
    candidFieldOrder,
    candidPrefix,
    concatBytes,
    decodeLoanIdArg,
    decodeNewLoanArg,
    decodePrincipalPageArgs,
    decodeStatusPageArgs,
    decodeUpdateLoanArgs,
    lebBytes,
    okLoanPrefix,
    PageArgs
} from '../shared/loan_codec';
import { decodeLoanId, encodeLoanId } from '../shared/loan_id';
import {
    DeleteResult,
    ExportBatch,
    ExportCursor,
    ImportResult,
    LoanVersion,
    ShardInit,
    ShardLoanPage,
    ShardStats,
    SlotSeq,
    SlotSpan,
    SpanChecksum
} from '../shared/shard_api';
import {
    admitWrite,
    applyHashesToSlot,
    applyToTotals,
    decodeLoan,
    encodeLoan,
    illegalPiece,
    investorChanges,
    loanHash,
    newSlotData,
    ownedSlotCount,
    piecesOf,
    principalBytesKey,
    setRunState,
    shouldImport,
    SlotData,
    SlotState,
    SlotStateName,
    SlotStateOrAbsent,
    stateAt
} from '../shared/shard_state';
import { tagOf } from '../shared/candid';
import {
    ApiError,
    Loan,
    LOAN_STATUSES,
    LoanStatus,
    LoanUpdate,
    NewLoan,
    Result,
    ShardMetrics,
    UnitResult
} from '../shared/types';
import { SortedIdIndex } from '../shared/sorted_index';
import {
    decodeImportLoansArgs,
    deleteResultReply,
    encodeErrReply,
    encodeShardMetricsReply,
    encodeShardStatsReply,
    exportBatchReply,
    importResultReply,
    nat64Reply,
    slotCountPageReply,
    spanChecksumReply,
    storedLoansReply,
    StoredExportBatch,
    unitReply
} from '../shared/shard_reply_codec';
import { VERSION } from '../shared/version';
// get_slot_counts (helper F): its own import, to stay clear of the block above.
import { MAX_SLOT_COUNT_PAGE, SlotCountPage } from '../shared/shard_api';
import {
    byBorrower,
    byInvestor,
    byStatus,
    dirty,
    getConfig,
    getStats,
    isFactory,
    isRouter,
    dataSlotsIn,
    loanHashes,
    getRuns,
    getSlotData,
    loans,
    putSlotData,
    recentLoan,
    rememberLoan,
    setConfig,
    setRuns,
    setStats,
    stageStats,
    warmCaches
} from './store';
import { invalidInput } from '../shared/errors';

type Res<T> = { Ok: T } | { Err: ApiError };

const NOT_AUTHORIZED = { Err: { NotAuthorized: null } } as const;
/** Limits of a shard deployed by hand (the factory passes its configured ones). */
const DEFAULT_MAX_LOANS = 100_000n;
const DEFAULT_STORAGE_CAPACITY_BYTES = 96n * 1024n ** 3n;
/** Sequence numbers an export batch may probe past gaps before it answers. */
const MAX_EXPORT_PROBES = 4 * MAX_MIGRATION_BATCH_LOANS;
const SEQ_MASK = (1n << 48n) - 1n;
/** Pages of the catch-up set one call may walk: the set never exceeds the shard's loans. */
const MAX_DIRTY_PAGES = 1_000;

const invalid = invalidInput;

function canWrite(caller: Principal): boolean {
    return isFactory(caller) || isRouter(caller);
}

function canRead(caller: Principal): boolean {
    return canWrite(caller) || isController(caller);
}

function pageLimit(limit: [] | [number]): Res<number> {
    const value = limit[0] ?? DEFAULT_PAGE_SIZE;
    if (value < 1 || value > MAX_PAGE_SIZE) {
        return invalid('limit', `must be in 1..=${MAX_PAGE_SIZE}`);
    }
    return { Ok: value };
}

function validSpan(span: SlotSpan): Res<null> {
    if (span.start > span.end || span.end >= SLOT_COUNT) {
        return invalid('span', `must satisfy start <= end < ${SLOT_COUNT}`);
    }
    return { Ok: null };
}

/** The catch-up set's key in its index (a shard is the source of one migration at a time). */
const DIRTY_KEY = 'dirty';

/** Drops the span's ids from the catch-up set; bounded by the set's size. */
function forgetDirty(span: SlotSpan): void {
    let after: bigint | null = null;
    for (let pages = 0; pages <= MAX_DIRTY_PAGES; pages++) {
        const { ids, has_more } = dirty.page(DIRTY_KEY, after, MAX_MIGRATION_BATCH_LOANS);
        for (const id of ids) {
            const slot = Number(id >> 48n);
            if (slot >= span.start && slot <= span.end) dirty.remove(DIRTY_KEY, id);
        }
        if (!has_more || ids.length === 0) return;
        after = ids[ids.length - 1];
    }
}

/**
 * Runs an update's body and records its outcome and instruction count; writes the statistics
 * (counters and the totals the body staged) to stable memory once per call.
 */
function metered<T>(body: () => Res<T>): Res<T> {
    const result = body();
    const { counters, totals } = getStats();
    const instructions = performanceCounter(0);
    setStats({
        totals,
        counters: {
            ...counters,
            message_count: counters.message_count + 1n,
            error_count: counters.error_count + ('Err' in result ? 1n : 0n),
            instructions_total: counters.instructions_total + instructions,
            instructions_max:
                instructions > counters.instructions_max ? instructions : counters.instructions_max
        }
    });
    return result;
}

/** The constant head of an `Ok` reply carrying one loan: stored loan bytes follow it. */
const OK_LOAN_PREFIX = okLoanPrefix();
/** Field order of `ShardLoanPage` in Candid value bytes. */
const PAGE_FIELDS = candidFieldOrder(['loans', 'next_cursor'] as const);
/** The constant head of an `Ok` page reply: the page's value bytes follow it. */
const OK_PAGE_PREFIX = candidPrefix(
    [Result(ShardLoanPage)],
    [{ Ok: { loans: [], next_cursor: [] } }],
    pageValue([], null)
);

/** Value bytes of a `ShardLoanPage` from stored loan bytes. */
function pageValue(stored: readonly Uint8Array[], next_cursor: bigint | null): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const field of PAGE_FIELDS) {
        if (field === 'loans') {
            parts.push(lebBytes(stored.length), ...stored);
        } else if (next_cursor === null) {
            parts.push(new Uint8Array([0]));
        } else {
            const cursor = new Uint8Array(9);
            cursor[0] = 1;
            new DataView(cursor.buffer).setBigUint64(1, next_cursor, true);
            parts.push(cursor);
        }
    }
    return concatBytes(parts);
}

/** The message's arguments, decoded as Azle would (for `manual` methods). */
function args<T extends unknown[]>(types: IDL.Type[]): T {
    return IDL.decode(types, msgArgData()) as unknown as T;
}

/**
 * Replies `Result<Loan>` from a loan's stored bytes without decoding or re-encoding the loan
 * (Azle's generic Candid encoder costs tens of millions of instructions per loan).
 */
function replyLoan(result: Res<Uint8Array>): void {
    msgReply(
        'Ok' in result ? concatBytes([OK_LOAN_PREFIX, result.Ok]) : encodeErrReply(Loan, result.Err)
    );
}

/** Replies `Result<ShardLoanPage>` the same way. */
function replyPage(result: Res<{ stored: Uint8Array[]; next_cursor: bigint | null }>): void {
    msgReply(
        'Ok' in result
            ? concatBytes([OK_PAGE_PREFIX, pageValue(result.Ok.stored, result.Ok.next_cursor)])
            : encodeErrReply(ShardLoanPage, result.Err)
    );
}

/** Principals whose text and slot are remembered; the memo is emptied when full. */
const MAX_REMEMBERED_PRINCIPALS = 4_096;
/** What is known of a principal, by its bytes: its text and its slot, each once computed. */
const principals = new Map<string, { text: string | undefined; slot: number | undefined }>();

/** The principal `factsOf` answered last, by identity: a create asks for its borrower twice. */
let lastPrincipal: Principal | undefined;
let lastFacts: { text: string | undefined; slot: number | undefined } | undefined;

function factsOf(p: Principal): { text: string | undefined; slot: number | undefined } {
    if (p === lastPrincipal && lastFacts !== undefined) return lastFacts;
    const key = principalBytesKey(p);
    let facts = principals.get(key);
    if (facts === undefined) {
        if (principals.size >= MAX_REMEMBERED_PRINCIPALS) principals.clear();
        facts = { text: undefined, slot: undefined };
        principals.set(key, facts);
    }
    lastPrincipal = p;
    lastFacts = facts;
    return facts;
}

/**
 * `p.toText()` (CRC-32 and base-32, about a million instructions in the canister's JS engine),
 * remembered for the borrowers and investors a shard sees again and again (index keys).
 */
function textOf(p: Principal): string {
    const facts = factsOf(p);
    if (facts.text === undefined) facts.text = p.toText();
    return facts.text;
}

/** `slotOf` a borrower (XXH64 of its bytes, about 150 K instructions), remembered the same way. */
function slotOfPrincipal(p: Principal): number {
    const facts = factsOf(p);
    if (facts.slot === undefined) facts.slot = slotOf(p.toUint8Array());
    return facts.slot;
}

function statusKey(status: LoanStatus): string {
    return tagOf(status);
}

/** The checksum hash of a stored loan: remembered at its last write here, else computed. */
function storedHash(id: bigint, version: bigint, bytes: Uint8Array): bigint {
    const known = loanHashes.get(id);
    return known !== undefined && known.version === version ? known.hash : loanHash(bytes);
}

function readLoan(id: bigint): Loan | undefined {
    return readStored(id)?.loan;
}

/** A loan's stored bytes: from the heap when it was written recently (`recentLoan`). */
function storedBytes(id: bigint): Uint8Array | undefined {
    return recentLoan(id)?.bytes ?? loans.get(id);
}

/** A stored loan, decoded, with the bytes it was decoded from and their hash when known. */
interface StoredLoan {
    loan: Loan;
    bytes: Uint8Array;
    hash?: bigint;
}

/**
 * `readLoan` keeping the stored bytes, for a write that replaces them: from the heap when the loan
 * was written recently (`recentLoan`), else one read and a decode.
 */
function readStored(id: bigint): StoredLoan | undefined {
    const recent = recentLoan(id);
    if (recent !== undefined) return recent;
    const bytes = loans.get(id);
    return bytes === undefined ? undefined : { loan: decodeLoan(bytes), bytes };
}

/**
 * Writes `after` in place of `before` (either may be absent) and keeps everything derived from loans
 * in step: the slot's count and checksum, the totals, the indexes, the catch-up set, storage bytes.
 */
function writeLoan(
    slot: number,
    state: SlotStateOrAbsent,
    record: SlotData,
    stored: StoredLoan | undefined,
    after: Loan | undefined
): { slot: SlotData; stored: Uint8Array | undefined } {
    const before = stored?.loan;
    const beforeBytes = stored?.bytes;
    const id = (after ?? before)!.id;
    const afterBytes = after === undefined ? undefined : encodeLoan(after);
    const beforeHash =
        before === undefined || beforeBytes === undefined
            ? undefined
            : (stored!.hash ?? storedHash(id, before.version, beforeBytes));
    const afterHash = afterBytes === undefined ? undefined : loanHash(afterBytes);
    if (afterBytes === undefined) {
        loans.remove(id);
        loanHashes.remove(id);
        rememberLoan(id, undefined);
    } else {
        // A new id that is already taken means the slot's sequence counter is behind its loans:
        // a bug. The trap rolls the whole call back (checked here, not with a lookup before).
        if (loans.insert(id, afterBytes) !== undefined && before === undefined) {
            throw new Error(`slot ${slot}'s sequence counter is behind its stored loans`);
        }
        loanHashes.insert(id, { hash: afterHash!, version: after!.version });
        rememberLoan(id, { loan: after!, bytes: afterBytes, hash: afterHash! });
    }

    const next = applyHashesToSlot(record, beforeHash, afterHash);
    putSlotData(slot, next);
    const { counters, totals } = getStats();
    const entryBytes = before === undefined ? 8 : after === undefined ? -8 : 0;
    const delta = (afterBytes?.length ?? 0) - (beforeBytes?.length ?? 0) + entryBytes;
    stageStats({
        totals: applyToTotals(totals, before, after),
        counters: { ...counters, storage_used_bytes: counters.storage_used_bytes + BigInt(delta) }
    });

    if (before === undefined && after !== undefined) byBorrower.add(textOf(after.borrower), id);
    if (after === undefined && before !== undefined) byBorrower.remove(textOf(before.borrower), id);
    const beforeStatus = before === undefined ? undefined : statusKey(before.status);
    const afterStatus = after === undefined ? undefined : statusKey(after.status);
    if (beforeStatus !== afterStatus) {
        if (beforeStatus !== undefined) byStatus.remove(beforeStatus, id);
        if (afterStatus !== undefined) byStatus.add(afterStatus, id);
    }
    const { added, removed } = investorChanges(before, after);
    for (const investor of removed) byInvestor.remove(textOf(investor), id);
    for (const investor of added) byInvestor.add(textOf(investor), id);
    if (state === 'Migrating' || state === 'Frozen') dirty.add(DIRTY_KEY, id);
    return { slot: next, stored: afterBytes };
}

/** One page of an index for the caller, after access and bound checks (the three paged reads). */
function indexPage(
    index: SortedIdIndex,
    key: string,
    cursor: [] | [bigint],
    limit: [] | [number]
): void {
    if (!canRead(msgCaller())) return replyPage(NOT_AUTHORIZED);
    const size = pageLimit(limit);
    if ('Err' in size) return replyPage(size);
    const { ids, has_more } = index.page(key, cursor[0] ?? null, size.Ok);
    const stored: Uint8Array[] = [];
    for (const id of ids) {
        const bytes = storedBytes(id);
        if (bytes !== undefined) stored.push(bytes);
    }
    const last = ids[ids.length - 1];
    replyPage({ Ok: { stored, next_cursor: has_more && last !== undefined ? last : null } });
}

/** Data slots a span scan reads per step; the loops below are bounded by the span's length. */
const SCAN_STEP_SLOTS = 1_000;

/** Calls `visit` for each slot in `[start, end]` (from `after`) that holds data, until it returns false. */
function forEachDataSlot(
    start: number,
    end: number,
    visit: (slot: number, data: SlotData) => boolean,
    after?: number
): void {
    let from = after;
    for (let steps = 0; steps <= SLOT_COUNT / SCAN_STEP_SLOTS + 1; steps++) {
        const found = dataSlotsIn(start, end, SCAN_STEP_SLOTS, from);
        for (const slot of found) {
            const data = getSlotData(slot);
            if (data !== undefined && !visit(slot, data)) return;
        }
        if (found.length < SCAN_STEP_SLOTS) return;
        from = found[found.length - 1];
    }
}

/** Stores a new loan (see `create_loan`); answers its stored bytes. */
function createLoan(application: NewLoan): Res<Uint8Array> {
    if (!canWrite(msgCaller())) return NOT_AUTHORIZED;
    const now = time();
    const valid = validateNewLoan(application, now);
    if ('Err' in valid) return valid;
    const config = getConfig();
    const slot = slotOfPrincipal(application.borrower);
    const state = stateAt(getRuns(), slot);
    const admitted = admitWrite(slot, state, config.read_only, config.epoch);
    if ('Err' in admitted) return admitted;
    const record = getSlotData(slot) ?? newSlotData();
    if (BigInt(loans.len()) >= config.max_loans) {
        return { Err: { CapacityExceeded: { resource: 'loans', limit: config.max_loans } } };
    }
    if (getStats().counters.storage_used_bytes >= config.storage_capacity_bytes) {
        return {
            Err: {
                CapacityExceeded: {
                    resource: 'storage_bytes',
                    limit: config.storage_capacity_bytes
                }
            }
        };
    }
    const id = encodeLoanId(slot, record.next_seq);
    if (!id.ok) {
        return { Err: { CapacityExceeded: { resource: 'loans_per_slot', limit: 2n ** 48n } } };
    }
    const loan = newLoanRecord(id.value, application, now);
    const next = { ...record, next_seq: record.next_seq + 1 };
    return { Ok: writeLoan(slot, state, next, undefined, loan).stored! };
}

/** Applies one transition (see `update_loan`); answers the loan's new stored bytes. */
function updateLoan(id: bigint, change: LoanUpdate): Res<Uint8Array> {
    if (!canWrite(msgCaller())) return NOT_AUTHORIZED;
    const parts = decodeLoanId(id);
    if (!parts.ok) return invalid('id', parts.reason);
    const slot = parts.value.slot;
    const config = getConfig();
    const state = stateAt(getRuns(), slot);
    const admitted = admitWrite(slot, state, config.read_only, config.epoch);
    if ('Err' in admitted) return admitted;
    const before = readStored(id);
    const record = getSlotData(slot);
    if (before === undefined) return { Err: { NotFound: { what: 'loan', id: String(id) } } };
    const after = applyLoanUpdate(before.loan, change, time());
    if ('Err' in after) return after;
    if (record === undefined) throw new Error(`slot ${slot} holds a loan but no data`);
    return { Ok: writeLoan(slot, state, record, before, after.Ok).stored! };
}

/** The shard's own figures (see `get_shard_metrics`). */
function shardMetrics(): Res<ShardMetrics> {
    if (!canRead(msgCaller())) return NOT_AUTHORIZED;
    const config = getConfig();
    const { counters } = getStats();
    const capacity = config.storage_capacity_bytes;
    return {
        Ok: {
            loan_count: BigInt(loans.len()),
            storage_used_bytes: counters.storage_used_bytes,
            storage_percentage:
                capacity === 0n
                    ? 0
                    : (Number(counters.storage_used_bytes) / Number(capacity)) * 100,
            message_count: counters.message_count,
            error_count: counters.error_count,
            avg_instructions_per_call:
                counters.message_count === 0n
                    ? 0n
                    : counters.instructions_total / counters.message_count,
            max_instructions_per_call: counters.instructions_max,
            avg_response_time_ms: 0,
            owned_slots: ownedSlotCount(getRuns()),
            is_read_only: config.read_only,
            collected_at: time()
        }
    };
}

/** Per-status counts and amount totals (see `get_shard_stats`). */
function shardStats(): Res<ShardStats> {
    if (!canRead(msgCaller())) return NOT_AUTHORIZED;
    const config = getConfig();
    const { totals } = getStats();
    return {
        Ok: {
            shard_id: config.shard_id,
            loan_count: BigInt(loans.len()),
            owned_slots: ownedSlotCount(getRuns()),
            by_status: LOAN_STATUSES.map((s) => ({
                status: { [s]: null } as LoanStatus,
                count: BigInt(totals.by_status[s])
            })),
            total_requested: totals.total_requested,
            total_approved: totals.total_approved,
            total_repaid: totals.total_repaid,
            read_only: config.read_only,
            epoch: config.epoch
        }
    };
}

/** Argument types of the three paged index reads (the key's type differs for statuses). */
const PAGE_ARGS = [principal, opt(nat64), opt(nat32)];

/** A paged read's arguments by a principal: by hand in the usual encoding, else `IDL.decode`. */
function principalPageArgs(): PageArgs<Principal> {
    const arg = msgArgData();
    const mine = decodePrincipalPageArgs(arg);
    if (mine !== undefined) return mine;
    const [key, cursor, limit] = IDL.decode(PAGE_ARGS, arg) as unknown as [
        Principal,
        [] | [bigint],
        [] | [number]
    ];
    return { key, cursor, limit };
}

/** A paged read's arguments by a status, the same way. */
function statusPageArgs(): PageArgs<LoanStatus> {
    const arg = msgArgData();
    const mine = decodeStatusPageArgs(arg);
    if (mine !== undefined) return mine;
    const [key, cursor, limit] = IDL.decode(
        [LoanStatus, opt(nat64), opt(nat32)],
        arg
    ) as unknown as [LoanStatus, [] | [bigint], [] | [number]];
    return { key, cursor, limit };
}

/** The body of `export_slot_batch` (see there). */
function exportSlotBatch(
    span: SlotSpan,
    cursor: [] | [ExportCursor],
    limit: number
): Res<StoredExportBatch> {
    if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
    const valid = validSpan(span);
    if ('Err' in valid) return valid;
    if (limit < 1 || limit > MAX_MIGRATION_BATCH_LOANS) {
        return invalid('limit', `must be in 1..=${MAX_MIGRATION_BATCH_LOANS}`);
    }
    const from = cursor[0];
    if (from !== undefined && (from.slot < span.start || from.slot > span.end)) {
        return invalid('cursor', 'must point into the span');
    }
    const batch: Uint8Array[] = [];
    const slot_seqs: SlotSeq[] = [];
    let bytes = 0;
    let probes = 0;
    let stoppedAt: ExportCursor | undefined;
    const visit = (slot: number, record: SlotData): boolean => {
        let seq = from !== undefined && slot === from.slot ? Number(from.seq) : record.low_seq - 1;
        while (seq + 1 < record.next_seq) {
            const id = encodeLoanId(slot, seq + 1);
            if (!id.ok) break;
            const encoded = storedBytes(id.value);
            const full =
                batch.length >= limit ||
                probes >= MAX_EXPORT_PROBES ||
                (encoded !== undefined && bytes + encoded.length > MAX_MIGRATION_BATCH_BYTES);
            if (full) {
                stoppedAt = { slot, seq: BigInt(seq) };
                return false;
            }
            seq += 1;
            probes += 1;
            if (encoded !== undefined) {
                bytes += encoded.length;
                batch.push(encoded);
            }
        }
        slot_seqs.push({ slot, next_seq: BigInt(record.next_seq) });
        return true;
    };
    forEachDataSlot(span.start, span.end, visit, from === undefined ? undefined : from.slot - 1);
    return { Ok: { loans: batch, next_cursor: stoppedAt ? [stoppedAt] : [], slot_seqs } };
}

/** `import_loans`'s arguments through `IDL.decode` (any encoding the hand decoder declines). */
function importArgs(arg: Uint8Array): { loans: Loan[]; slot_seqs: SlotSeq[] } {
    const [batch, slot_seqs] = IDL.decode([vec(Loan), vec(SlotSeq)], arg) as unknown as [
        Loan[],
        SlotSeq[]
    ];
    return { loans: batch, slot_seqs };
}

/** The body of `import_loans` (see there). */
function importLoans(batch: Loan[], slot_seqs: SlotSeq[]): Res<ImportResult> {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        if (batch.length > MAX_MIGRATION_BATCH_LOANS || slot_seqs.length > SLOT_COUNT) {
            return invalid('loans', `at most ${MAX_MIGRATION_BATCH_LOANS} loans per batch`);
        }
        const runs = getRuns();
        for (const loan of batch) {
            const parts = decodeLoanId(loan.id);
            if (!parts.ok) return invalid('loans', `loan id ${loan.id}: ${parts.reason}`);
            const slot = parts.value.slot;
            if (stateAt(runs, slot) !== 'Importing') {
                return invalid(
                    'loans',
                    `slot ${slot} of loan ${loan.id} is not being imported here`
                );
            }
            if (slotOfPrincipal(loan.borrower) !== slot) {
                return invalid('loans', `loan ${loan.id}'s borrower is not in slot ${slot}`);
            }
        }
        for (const { slot } of slot_seqs) {
            if (slot >= SLOT_COUNT || stateAt(runs, slot) !== 'Importing') {
                return invalid('slot_seqs', `slot ${slot} is not being imported here`);
            }
        }
        let imported = 0;
        for (const loan of batch) {
            const existing = readStored(loan.id);
            if (!shouldImport(existing?.loan, loan)) continue;
            const slot = Number(loan.id >> 48n);
            const record = getSlotData(slot) ?? newSlotData();
            // A copied loan's seq is taken: the counter must pass it even before slot_seqs arrive.
            const seqAfter = Number(loan.id & SEQ_MASK) + 1;
            writeLoan(
                slot,
                'Importing',
                { ...record, next_seq: Math.max(record.next_seq, seqAfter) },
                existing,
                loan
            );
            imported += 1;
        }
        for (const { slot, next_seq } of slot_seqs) {
            const record = getSlotData(slot) ?? newSlotData();
            if (Number(next_seq) > record.next_seq) {
                putSlotData(slot, { ...record, next_seq: Number(next_seq) });
            }
        }
        return { Ok: { imported, skipped: batch.length - imported } };
    });
}

/** The body of `span_checksum` (see there). */
function spanChecksum(span: SlotSpan): Res<SpanChecksum> {
    if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
    const valid = validSpan(span);
    if ('Err' in valid) return valid;
    let count = 0n;
    let checksum = 0n;
    forEachDataSlot(span.start, span.end, (_slot, record) => {
        count += BigInt(record.count);
        checksum = BigInt.asUintN(64, checksum + record.checksum);
        return true;
    });
    return { Ok: { count, checksum } };
}

/** The body of `set_slot_state` (see there). */
function setSlotState(span: SlotSpan, state: SlotState, epoch: bigint): UnitResult {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        const valid = validSpan(span);
        if ('Err' in valid) return valid;
        const target = tagOf(state) as SlotStateName;
        const runs = getRuns();
        const illegal = illegalPiece(runs, span.start, span.end, target);
        if (illegal !== undefined) {
            return invalid(
                'state',
                `slot ${illegal.start} cannot go from ${illegal.state} to ${target}`
            );
        }
        const config = getConfig();
        if (epoch > config.epoch) setConfig({ ...config, epoch });
        const leftMigration =
            (target === 'Owned' || target === 'Released') &&
            piecesOf(runs, span.start, span.end).some(
                (p) => p.state === 'Migrating' || p.state === 'Frozen'
            );
        setRuns(setRunState(runs, span.start, span.end, target));
        if (leftMigration) forgetDirty(span);
        return { Ok: null };
    });
}

/** The body of `export_dirty_batch` (see there). */
function exportDirtyBatch(limit: number): Res<Uint8Array[]> {
    if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
    if (limit < 1 || limit > MAX_MIGRATION_BATCH_LOANS) {
        return invalid('limit', `must be in 1..=${MAX_MIGRATION_BATCH_LOANS}`);
    }
    const { ids } = dirty.page(DIRTY_KEY, null, limit);
    const stored: Uint8Array[] = [];
    for (const id of ids) {
        const bytes = storedBytes(id);
        if (bytes !== undefined) stored.push(bytes);
    }
    return { Ok: stored };
}

/** The body of `ack_dirty` (see there). */
function ackDirty(copied: LoanVersion[]): Res<bigint> {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        if (copied.length > MAX_MIGRATION_BATCH_LOANS) {
            return invalid('copied', `at most ${MAX_MIGRATION_BATCH_LOANS} per call`);
        }
        for (const { id, version } of copied) {
            const loan = readLoan(id);
            if (loan === undefined || loan.version === version) dirty.remove(DIRTY_KEY, id);
        }
        return { Ok: BigInt(dirty.count(DIRTY_KEY)) };
    });
}

/** The body of `delete_slot_batch` (see there). */
function deleteSlotBatch(span: SlotSpan, limit: number): Res<DeleteResult> {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        const valid = validSpan(span);
        if ('Err' in valid) return valid;
        if (limit < 1 || limit > MAX_MIGRATION_BATCH_LOANS) {
            return invalid('limit', `must be in 1..=${MAX_MIGRATION_BATCH_LOANS}`);
        }
        const runs = getRuns();
        const held = piecesOf(runs, span.start, span.end).find(
            (p) => p.state !== 'Released' && p.state !== 'Absent'
        );
        if (held !== undefined) {
            return invalid(
                'span',
                `slot ${held.start} must be released before its loans are deleted`
            );
        }
        let deleted = 0;
        let probes = 0;
        let remaining = 0n;
        forEachDataSlot(span.start, span.end, (slot, data) => {
            let record = data;
            let seq = record.low_seq;
            while (
                record.count > 0 &&
                deleted < limit &&
                probes < MAX_EXPORT_PROBES &&
                seq < record.next_seq
            ) {
                const id = encodeLoanId(slot, seq);
                if (!id.ok) break;
                seq += 1;
                probes += 1;
                const stored = readStored(id.value);
                if (stored !== undefined) {
                    record = writeLoan(slot, 'Released', record, stored, undefined).slot;
                    deleted += 1;
                }
            }
            // The slot lives elsewhere now, with its sequence counter: forget it here.
            putSlotData(slot, record.count === 0 ? undefined : { ...record, low_seq: seq });
            remaining += BigInt(record.count);
            return true;
        });
        if (remaining === 0n) setRuns(setRunState(runs, span.start, span.end, 'Absent'));
        return { Ok: { deleted, remaining } };
    });
}

/** The body of `set_read_only` (see there). */
function setReadOnly(read_only: boolean): UnitResult {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        setConfig({ ...getConfig(), read_only });
        return { Ok: null };
    });
}

/** The body of `set_router` (see there). */
function setRouter(router: Principal): UnitResult {
    return metered(() => {
        if (!isFactory(msgCaller())) return NOT_AUTHORIZED;
        setConfig({ ...getConfig(), router: router.toText() });
        return { Ok: null };
    });
}

/** The body of `get_slot_counts` (see there). */
function slotCounts(cursor: [] | [number], limit: [] | [number]): Res<SlotCountPage> {
    if (!canRead(msgCaller())) return NOT_AUTHORIZED;
    const size = limit[0] ?? MAX_SLOT_COUNT_PAGE;
    if (size < 1 || size > MAX_SLOT_COUNT_PAGE) {
        return invalid('limit', `must be in 1..=${MAX_SLOT_COUNT_PAGE}`);
    }
    const after = cursor[0];
    if (after !== undefined && after >= SLOT_COUNT) {
        return invalid('cursor', `must be a slot below ${SLOT_COUNT}`);
    }
    const found = dataSlotsIn(0, SLOT_COUNT - 1, size + 1, after);
    const page = found.slice(0, size);
    return {
        Ok: {
            counts: page.map((slot) => ({
                slot,
                count: BigInt(getSlotData(slot)?.count ?? 0)
            })),
            next_cursor: found.length > size ? [page[page.length - 1]] : []
        }
    };
}

export default class {
    /**
     * Installs the shard: its id, the factory and router allowed to write, its initial slots. The
     * factory always passes the argument; a shard deployed by hand without one (`dfx deploy`) starts
     * empty with its installer as factory.
     */
    @init([opt(ShardInit)])
    init(arg: [] | [ShardInit]): void {
        const given = arg[0] ?? {
            shard_id: 0,
            factory: msgCaller(),
            router: [] as [] | [Principal],
            slots: [],
            epoch: 0n,
            max_loans: DEFAULT_MAX_LOANS,
            storage_capacity_bytes: DEFAULT_STORAGE_CAPACITY_BYTES
        };
        setConfig({
            shard_id: given.shard_id,
            factory: given.factory.toText(),
            router: given.router[0]?.toText() ?? null,
            epoch: given.epoch,
            max_loans: given.max_loans,
            storage_capacity_bytes: given.storage_capacity_bytes,
            read_only: false
        });
        let runs = getRuns();
        for (const range of given.slots) {
            const clash = illegalPiece(runs, range.start, range.end, 'Importing');
            if (range.start > range.end || range.end >= SLOT_COUNT || clash !== undefined) {
                throw new Error(`invalid or overlapping slot range ${range.start}..=${range.end}`);
            }
            runs = setRunState(runs, range.start, range.end, 'Owned');
        }
        setRuns(runs);
        warmCaches();
    }

    /**
     * Everything lives in stable maps, so an upgrade restores nothing. Azle requires the init
     * argument type here too; when given it must name this shard (a mixed-up upgrade traps and so
     * changes nothing).
     */
    @postUpgrade([opt(ShardInit)])
    postUpgrade(arg: [] | [ShardInit]): void {
        const config = getConfig();
        if (arg[0] !== undefined && arg[0].shard_id !== config.shard_id) {
            throw new Error(
                `upgrade argument names shard ${arg[0].shard_id}, this is ${config.shard_id}`
            );
        }
        warmCaches();
    }

    /** The canister's version. `dfx canister call data_shard version` → `("0.1.0")`. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }

    /**
     * Stores a new loan under id `slot << 48 | seq` (slot of the borrower). Factory or router only.
     * `WrongShard` when this shard does not own the borrower's slot; `ReadOnly` when frozen.
     */
    @update([NewLoan], Result(Loan), { manual: true })
    create_loan(): void {
        const application = decodeNewLoanArg(msgArgData()) ?? args<[NewLoan]>([NewLoan])[0];
        replyLoan(metered(() => createLoan(application)));
    }

    /** Applies one typed transition to a loan (see `src/shared/loan.ts`). Factory or router only. */
    @update([nat64, LoanUpdate], Result(Loan), { manual: true })
    update_loan(): void {
        const [id, change] =
            decodeUpdateLoanArgs(msgArgData()) ?? args<[bigint, LoanUpdate]>([nat64, LoanUpdate]);
        replyLoan(metered(() => updateLoan(id, change)));
    }

    /** One loan by id. Query; factory, router or controllers. */
    @query([nat64], Result(Loan), { manual: true })
    get_loan(): void {
        const id = decodeLoanIdArg(msgArgData()) ?? args<[bigint]>([nat64])[0];
        if (!canRead(msgCaller())) return replyLoan(NOT_AUTHORIZED);
        const bytes = storedBytes(id);
        replyLoan(
            bytes === undefined
                ? { Err: { NotFound: { what: 'loan', id: String(id) } } }
                : { Ok: bytes }
        );
    }

    /** A borrower's loans in id order after `cursor`, at most `limit` (≤ 500). Query. */
    @query([principal, opt(nat64), opt(nat32)], Result(ShardLoanPage), { manual: true })
    get_loans_by_borrower(): void {
        const { key, cursor, limit } = principalPageArgs();
        indexPage(byBorrower, textOf(key), cursor, limit);
    }

    /** Loans an investor funded, in id order after `cursor`, at most `limit` (≤ 500). Query. */
    @query([principal, opt(nat64), opt(nat32)], Result(ShardLoanPage), { manual: true })
    get_loans_by_investor(): void {
        const { key, cursor, limit } = principalPageArgs();
        indexPage(byInvestor, textOf(key), cursor, limit);
    }

    /** Loans in a status, in id order after `cursor`, at most `limit` (≤ 500). Query. */
    @query([LoanStatus, opt(nat64), opt(nat32)], Result(ShardLoanPage), { manual: true })
    get_loans_by_status(): void {
        const { key, cursor, limit } = statusPageArgs();
        indexPage(byStatus, statusKey(key), cursor, limit);
    }

    /**
     * The shard's own figures; counters cover update calls (queries cannot persist counts). Query;
     * the reply is encoded by hand (`shard_reply_codec.ts`).
     */
    @query([], Result(ShardMetrics), { manual: true })
    get_shard_metrics(): void {
        msgReply(encodeShardMetricsReply(shardMetrics()));
    }

    /** Per-status counts and amount totals, kept incrementally. Query; encoded by hand. */
    @query([], Result(ShardStats), { manual: true })
    get_shard_stats(): void {
        msgReply(encodeShardStatsReply(shardStats()));
    }

    /**
     * Migration: a batch of a span's loans in (slot, sequence) order after `cursor`, bounded by count
     * and by bytes so the reply stays far below 2 MiB. Query; factory only.
     */
    @query([SlotSpan, opt(ExportCursor), nat32], Result(ExportBatch), { manual: true })
    export_slot_batch(): void {
        const [span, cursor, limit] = args<[SlotSpan, [] | [ExportCursor], number]>([
            SlotSpan,
            opt(ExportCursor),
            nat32
        ]);
        msgReply(exportBatchReply.encodeReply(exportSlotBatch(span, cursor, limit)));
    }

    /**
     * Migration: upserts copies of loans into slots this shard is importing; a copy replaces what is
     * here only when its version is newer, so repeating a batch changes nothing. `slot_seqs` raise
     * the slots' sequence counters. Factory only.
     */
    @update([vec(Loan), vec(SlotSeq)], Result(ImportResult), { manual: true })
    import_loans(): void {
        const arg = msgArgData();
        const { loans: batch, slot_seqs } = decodeImportLoansArgs(arg) ?? importArgs(arg);
        msgReply(importResultReply.encodeReply(importLoans(batch, slot_seqs)));
    }

    /** A span's loan count and order-free checksum, for migration verification. Query; factory only. */
    @query([SlotSpan], Result(SpanChecksum), { manual: true })
    span_checksum(): void {
        const [span] = args<[SlotSpan]>([SlotSpan]);
        msgReply(spanChecksumReply.encodeReply(spanChecksum(span)));
    }

    /**
     * Moves every slot of a span through the migration states (see `SlotState`) and records the
     * routing epoch the factory is at. If any slot may not make the move, nothing changes and the
     * answer is `InvalidInput`. Factory only.
     */
    @update([SlotSpan, SlotState, nat64], UnitResult, { manual: true })
    set_slot_state(): void {
        const [span, state, epoch] = args<[SlotSpan, SlotState, bigint]>([
            SlotSpan,
            SlotState,
            nat64
        ]);
        msgReply(unitReply.encodeReply(setSlotState(span, state, epoch)));
    }

    /** Migration catch-up: loans written in migrating slots since their copy began. Factory only. */
    @query([nat32], Result(vec(Loan)), { manual: true })
    export_dirty_batch(): void {
        const [limit] = args<[number]>([nat32]);
        msgReply(storedLoansReply.encodeReply(exportDirtyBatch(limit)));
    }

    /**
     * Migration catch-up: forgets dirty ids whose copy the target now holds; an id written again
     * since (a newer version) stays dirty. Returns how many remain. Factory only.
     */
    @update([vec(LoanVersion)], Result(nat64), { manual: true })
    ack_dirty(): void {
        const [copied] = args<[LoanVersion[]]>([vec(LoanVersion)]);
        msgReply(nat64Reply.encodeReply(ackDirty(copied)));
    }

    /**
     * Deletes up to `limit` loans of the span's released slots; a slot is forgotten when empty.
     * `remaining` counts the loans still held in released slots of the span. Factory only.
     */
    @update([SlotSpan, nat32], Result(DeleteResult), { manual: true })
    delete_slot_batch(): void {
        const [span, limit] = args<[SlotSpan, number]>([SlotSpan, nat32]);
        msgReply(deleteResultReply.encodeReply(deleteSlotBatch(span, limit)));
    }

    /** Stops or resumes all writes (e.g. before retiring the shard). Factory only. */
    @update([bool], UnitResult, { manual: true })
    set_read_only(): void {
        const [read_only] = args<[boolean]>([bool]);
        msgReply(unitReply.encodeReply(setReadOnly(read_only)));
    }

    /** Names the router allowed to write. Factory only. */
    @update([principal], UnitResult, { manual: true })
    set_router(): void {
        const [router] = args<[Principal]>([principal]);
        msgReply(unitReply.encodeReply(setRouter(router)));
    }

    // ---- get_slot_counts (helper F, issue 4) -------------------------------------------------

    /**
     * Loan counts of the slots that hold data here, ascending by slot, after slot `cursor`, at most
     * `limit` (default and maximum 500) per page: what the factory weighs slots by when it
     * rebalances. Counts include slots being imported or released; the factory trusts a count only
     * from the slot's owner. Query; readers (factory, router, controllers), like the metrics.
     */
    @query([opt(nat32), opt(nat32)], Result(SlotCountPage), { manual: true })
    get_slot_counts(): void {
        const [cursor, limit] = args<[[] | [number], [] | [number]]>([opt(nat32), opt(nat32)]);
        msgReply(slotCountPageReply.encodeReply(slotCounts(cursor, limit)));
    }
}
