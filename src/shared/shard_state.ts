/**
 * What a data shard decides, as pure functions: whether a write to a slot is admitted, how a slot's
 * count and checksum follow its loans, and how per-status totals follow a loan's changes. The shard
 * canister reads its stable maps, calls these, and writes back the result.
 */
import { IDL } from '@dfinity/candid';

import { Infer, empty, tagOf, variant } from './candid';
import { hash64 } from './hash';
import { ApiError, Loan, LOAN_STATUSES, LoanStatusName } from './types';

/**
 * A slot's state on one shard (DESIGN.md §4):
 * - `Owned`: takes writes.
 * - `Migrating`: takes writes and remembers the changed loan ids, so the migration can catch up.
 * - `Frozen`: the short cutover pause; writes get a retriable `ReadOnly`.
 * - `Importing`: the target of a migration, filled by the factory; not yet routed to.
 * - `Released`: the slot now lives elsewhere; its loans here await deletion.
 */
export const SlotState = variant({
    Owned: empty,
    Migrating: empty,
    Frozen: empty,
    Importing: empty,
    Released: empty
});
export type SlotState = Infer<typeof SlotState>;
export type SlotStateName = 'Owned' | 'Migrating' | 'Frozen' | 'Importing' | 'Released';

/** A slot's bookkeeping on a shard; `checksum` is the order-free sum of its loans' hashes. */
export interface SlotRecord {
    state: SlotStateName;
    /** The next sequence number this slot hands out; moves with the slot. */
    next_seq: number;
    /** Every sequence number below this one is absent here (deletion advances it). */
    low_seq: number;
    count: number;
    checksum: bigint;
}

/** An empty slot record in the given state. */
export function newSlotRecord(state: SlotStateName): SlotRecord {
    return { state, next_seq: 1, low_seq: 1, count: 0, checksum: 0n };
}

/**
 * Whether a user write to `slot` is admitted. `record` is undefined when the shard knows nothing of
 * the slot. `epoch` is the newest routing epoch this shard has seen, returned with `WrongShard` so
 * the router knows its table is older.
 */
export function admitWrite(
    slot: number,
    record: SlotRecord | undefined,
    read_only: boolean,
    epoch: bigint
): { Ok: null } | { Err: ApiError } {
    if (record === undefined || record.state === 'Importing' || record.state === 'Released') {
        return { Err: { WrongShard: { slot, epoch } } };
    }
    if (read_only) {
        return { Err: { ReadOnly: { reason: 'the shard is read-only', retriable: false } } };
    }
    if (record.state === 'Frozen') {
        return {
            Err: { ReadOnly: { reason: `slot ${slot} is pausing for migration`, retriable: true } }
        };
    }
    return { Ok: null };
}

/** Whether a slot in this state belongs to this shard (is routed here). */
export function isOwnedState(state: SlotStateName | undefined): boolean {
    return state === 'Owned' || state === 'Migrating' || state === 'Frozen';
}

/** The Candid bytes of a loan: what is stored, copied and hashed. */
export function encodeLoan(loan: Loan): Uint8Array {
    return new Uint8Array(IDL.encode([Loan], [loan]));
}

/** Decodes bytes written by `encodeLoan`. */
export function decodeLoan(bytes: Uint8Array): Loan {
    return IDL.decode([Loan], bytes)[0] as unknown as Loan;
}

/** A loan's contribution to its slot's checksum: the hash of its stored bytes. */
export function loanHash(encoded: Uint8Array): bigint {
    return hash64(encoded);
}

/**
 * The slot record after a loan's bytes changed from `before` (absent: a new loan) to `after`
 * (absent: deleted). Sums wrap modulo 2^64, so the checksum is independent of write order.
 */
export function applyToSlot(
    record: SlotRecord,
    before: Uint8Array | undefined,
    after: Uint8Array | undefined
): SlotRecord {
    let { count, checksum } = record;
    if (before !== undefined) {
        count -= 1;
        checksum = BigInt.asUintN(64, checksum - loanHash(before));
    }
    if (after !== undefined) {
        count += 1;
        checksum = BigInt.asUintN(64, checksum + loanHash(after));
    }
    return { ...record, count, checksum };
}

/** Per-shard totals kept incrementally, so analytics never scans loans. */
export interface ShardTotals {
    by_status: Record<LoanStatusName, number>;
    total_requested: bigint;
    total_approved: bigint;
    total_repaid: bigint;
}

export function emptyTotals(): ShardTotals {
    const by_status = Object.fromEntries(LOAN_STATUSES.map((s) => [s, 0])) as Record<
        LoanStatusName,
        number
    >;
    return { by_status, total_requested: 0n, total_approved: 0n, total_repaid: 0n };
}

/** Totals after a loan changed from `before` to `after` (either may be absent). */
export function applyToTotals(
    totals: ShardTotals,
    before: Loan | undefined,
    after: Loan | undefined
): ShardTotals {
    const next: ShardTotals = { ...totals, by_status: { ...totals.by_status } };
    const add = (loan: Loan, sign: 1 | -1): void => {
        const s = tagOf(loan.status);
        next.by_status[s] += sign;
        const big = BigInt(sign);
        next.total_requested += big * loan.amount_requested;
        next.total_approved += big * loan.amount_approved;
        next.total_repaid += big * loan.total_repaid;
    };
    if (before !== undefined) add(before, -1);
    if (after !== undefined) add(after, 1);
    return next;
}

/** Whether an imported copy should replace what the shard holds: only a newer version does. */
export function shouldImport(existing: Loan | undefined, incoming: Loan): boolean {
    return existing === undefined || incoming.version > existing.version;
}
