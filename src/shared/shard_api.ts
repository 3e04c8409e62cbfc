/**
 * The data shard's Candid interface: its own record types, and the method signatures the factory and
 * the router use to call it. Defined once here; the shard's decorators and its callers share them.
 */
import { IDL } from '@dfinity/candid';

import { bool, Infer, nat32, nat64, opt, principal, record, Typed, vec } from './candid';
import { SlotState } from './shard_state';
import {
    Loan,
    LoanStatus,
    LoanUpdate,
    NewLoan,
    Result,
    ShardMetrics,
    SlotRange,
    StatusCount,
    UnitResult
} from './types';

/** The shard's init argument, given by the factory when it installs the shard. */
export const ShardInit = record({
    shard_id: nat32,
    factory: principal,
    router: opt(principal),
    /** Slots this shard owns from the start (a new shard usually starts with none). */
    slots: vec(SlotRange),
    epoch: nat64,
    max_loans: nat64,
    storage_capacity_bytes: nat64
});
export type ShardInit = Infer<typeof ShardInit>;

/** One page of a shard's loans; `next_cursor` is the last id returned when more may follow. */
export const ShardLoanPage = record({ loans: vec(Loan), next_cursor: opt(nat64) });
export type ShardLoanPage = Infer<typeof ShardLoanPage>;

/** An inclusive run of slots `[start, end]`: the unit a migration moves. */
export const SlotSpan = record({ start: nat32, end: nat32 });
export type SlotSpan = Infer<typeof SlotSpan>;

/** Where an export stopped: the last sequence number scanned in `slot`. */
export const ExportCursor = record({ slot: nat32, seq: nat64 });
export type ExportCursor = Infer<typeof ExportCursor>;

/** A slot's next sequence number, which moves with the slot. */
export const SlotSeq = record({ slot: nat32, next_seq: nat64 });
export type SlotSeq = Infer<typeof SlotSeq>;

/** A batch of a span's loans in (slot, sequence) order, for migration. */
export const ExportBatch = record({
    loans: vec(Loan),
    /** Pass back to continue; none when the whole span has been exported. */
    next_cursor: opt(ExportCursor),
    /** The sequence counters of the slots this batch finished. */
    slot_seqs: vec(SlotSeq)
});
export type ExportBatch = Infer<typeof ExportBatch>;

/** A span's loan count and order-free checksum, compared on both sides before the source deletes. */
export const SpanChecksum = record({ count: nat64, checksum: nat64 });
export type SpanChecksum = Infer<typeof SpanChecksum>;

export const ImportResult = record({ imported: nat32, skipped: nat32 });
export type ImportResult = Infer<typeof ImportResult>;

export const DeleteResult = record({ deleted: nat32, remaining: nat64 });
export type DeleteResult = Infer<typeof DeleteResult>;

export const LoanVersion = record({ id: nat64, version: nat64 });
export type LoanVersion = Infer<typeof LoanVersion>;

/** Counters for analytics, kept incrementally by the shard. */
export const ShardStats = record({
    shard_id: nat32,
    loan_count: nat64,
    owned_slots: nat32,
    by_status: vec(StatusCount),
    total_requested: nat64,
    total_approved: nat64,
    total_repaid: nat64,
    read_only: bool,
    epoch: nat64
});
export type ShardStats = Infer<typeof ShardStats>;

// ---- get_slot_counts (helper F, issue 4) ----
/** Slots per `get_slot_counts` page at most (and by default). */
export const MAX_SLOT_COUNT_PAGE = 500;
/** One slot's loan count on a shard. */
export const SlotCount = record({ slot: nat32, count: nat64 });
export type SlotCount = Infer<typeof SlotCount>;
/** A page of slot counts, ascending by slot; `next_cursor` is the last slot when more may follow. */
export const SlotCountPage = record({ counts: vec(SlotCount), next_cursor: opt(nat32) });
export type SlotCountPage = Infer<typeof SlotCountPage>;
// ---- end get_slot_counts ----

/** A method signature: argument types, return type, and whether it is a query. */
export interface MethodSig {
    args: Typed<unknown, unknown>[];
    ret: Typed<unknown, unknown>;
    query: boolean;
}

const m = (
    args: Typed<unknown, unknown>[],
    ret: Typed<unknown, unknown>,
    query = false
): MethodSig => ({
    args,
    ret,
    query
});

/** Every public method of the data shard, as the factory and router call them. */
export const SHARD_METHODS = {
    create_loan: m([NewLoan], Result(Loan)),
    update_loan: m([nat64, LoanUpdate], Result(Loan)),
    get_loan: m([nat64], Result(Loan), true),
    get_loans_by_borrower: m([principal, opt(nat64), opt(nat32)], Result(ShardLoanPage), true),
    get_loans_by_investor: m([principal, opt(nat64), opt(nat32)], Result(ShardLoanPage), true),
    get_loans_by_status: m([LoanStatus, opt(nat64), opt(nat32)], Result(ShardLoanPage), true),
    get_shard_metrics: m([], Result(ShardMetrics), true),
    get_shard_stats: m([], Result(ShardStats), true),
    set_slot_state: m([SlotSpan, SlotState, nat64], UnitResult),
    export_slot_batch: m([SlotSpan, opt(ExportCursor), nat32], Result(ExportBatch), true),
    import_loans: m([vec(Loan), vec(SlotSeq)], Result(ImportResult)),
    span_checksum: m([SlotSpan], Result(SpanChecksum), true),
    export_dirty_batch: m([nat32], Result(vec(Loan)), true),
    ack_dirty: m([vec(LoanVersion)], Result(nat64)),
    delete_slot_batch: m([SlotSpan, nat32], Result(DeleteResult)),
    set_read_only: m([bool], UnitResult),
    set_router: m([principal], UnitResult),
    get_slot_counts: m([opt(nat32), opt(nat32)], Result(SlotCountPage), true)
} satisfies Record<string, MethodSig>;

export type ShardMethod = keyof typeof SHARD_METHODS;

/** The shard's service type, for clients that build actors (tests, scripts). */
export const shardIdlFactory: IDL.InterfaceFactory = () =>
    IDL.Service(
        Object.fromEntries(
            Object.entries(SHARD_METHODS).map(([name, sig]) => [
                name,
                IDL.Func(sig.args as [IDL.Type], [sig.ret], sig.query ? ['query'] : [])
            ])
        )
    );
