/**
 * What a data shard decides, as pure functions: whether a write to a slot is admitted, how a slot's
 * count and checksum follow its loans, and how per-status totals follow a loan's changes. The shard
 * canister reads its stable maps, calls these, and writes back the result.
 */

import type { Principal } from '@dfinity/principal';

import { Infer, empty, tagOf, variant } from './candid';
import { hash64 } from './hash';
import { decodeLoanValue, encodeLoanValue } from './loan_codec';
import { SLOT_COUNT } from './limits';
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

/** Where a slot's state is `Absent`, the shard knows nothing of it. */
export type SlotStateOrAbsent = SlotStateName | 'Absent';

/**
 * Slot states as sorted, non-overlapping, inclusive runs: a shard that owns 16384 slots keeps one
 * entry, not 16384, so install and span moves cost O(runs), not O(slots). Adjacent runs in the same
 * state are merged, so the table is canonical.
 */
export interface StateRun {
    start: number;
    end: number;
    state: SlotStateName;
}

/** The most runs a table can hold (one per slot); every loop below is bounded by it. */
export const MAX_STATE_RUNS = SLOT_COUNT;

/** The state of `slot`, by binary search over the runs. */
export function stateAt(runs: readonly StateRun[], slot: number): SlotStateOrAbsent {
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const run = runs[mid];
        if (slot < run.start) hi = mid - 1;
        else if (slot > run.end) lo = mid + 1;
        else return run.state;
    }
    return 'Absent';
}

/** The pieces of `[start, end]` with their states, in order, gaps reported as `Absent`. */
export function piecesOf(
    runs: readonly StateRun[],
    start: number,
    end: number
): { start: number; end: number; state: SlotStateOrAbsent }[] {
    const pieces: { start: number; end: number; state: SlotStateOrAbsent }[] = [];
    let at = start;
    for (const run of runs) {
        if (run.end < at) continue;
        if (run.start > end) break;
        if (run.start > at) pieces.push({ start: at, end: run.start - 1, state: 'Absent' });
        const pieceEnd = Math.min(run.end, end);
        pieces.push({ start: Math.max(run.start, at), end: pieceEnd, state: run.state });
        at = pieceEnd + 1;
        if (at > end) break;
    }
    if (at <= end) pieces.push({ start: at, end, state: 'Absent' });
    return pieces;
}

/** The table with `[start, end]` set to `state` (`Absent` removes it), merged and sorted. */
export function setRunState(
    runs: readonly StateRun[],
    start: number,
    end: number,
    state: SlotStateOrAbsent
): StateRun[] {
    const out: StateRun[] = [];
    const push = (run: StateRun): void => {
        const last = out[out.length - 1];
        if (last !== undefined && last.state === run.state && last.end + 1 === run.start) {
            last.end = run.end;
        } else {
            out.push({ ...run });
        }
    };
    let placed = false;
    for (const run of runs) {
        if (run.end < start) {
            push(run);
            continue;
        }
        if (run.start > end) {
            if (!placed && state !== 'Absent') push({ start, end, state });
            placed = true;
            push(run);
            continue;
        }
        if (run.start < start) push({ start: run.start, end: start - 1, state: run.state });
        if (!placed && state !== 'Absent') push({ start, end, state });
        placed = true;
        if (run.end > end) push({ start: end + 1, end: run.end, state: run.state });
    }
    if (!placed && state !== 'Absent') push({ start, end, state });
    return out;
}

/** How many slots the runs route to this shard (owned, migrating or frozen). */
export function ownedSlotCount(runs: readonly StateRun[]): number {
    let count = 0;
    for (const run of runs) if (isOwnedState(run.state)) count += run.end - run.start + 1;
    return count;
}

/** Which slot-state changes the factory may make; anything else is a protocol error. */
export const ALLOWED_SLOT_TRANSITIONS: Record<SlotStateOrAbsent, readonly SlotStateName[]> = {
    Absent: ['Importing'],
    Importing: ['Importing', 'Owned'],
    Owned: ['Owned', 'Migrating'],
    Migrating: ['Migrating', 'Frozen', 'Owned'],
    Frozen: ['Frozen', 'Migrating', 'Owned', 'Released'],
    Released: ['Released']
};

/** The first piece of the span that may not move to `target`, if any. */
export function illegalPiece(
    runs: readonly StateRun[],
    start: number,
    end: number,
    target: SlotStateName
): { start: number; state: SlotStateOrAbsent } | undefined {
    return piecesOf(runs, start, end).find(
        (p) => !ALLOWED_SLOT_TRANSITIONS[p.state].includes(target)
    );
}

/**
 * A slot's data on a shard, kept only once the slot has held a loan; `checksum` is the order-free
 * sum of its loans' hashes.
 */
export interface SlotData {
    /** The next sequence number this slot hands out; moves with the slot. */
    next_seq: number;
    /** Every sequence number below this one is absent here (deletion advances it). */
    low_seq: number;
    count: number;
    checksum: bigint;
}

export function newSlotData(): SlotData {
    return { next_seq: 1, low_seq: 1, count: 0, checksum: 0n };
}

/**
 * Whether a user write to `slot` is admitted given its state. `epoch` is the newest routing epoch
 * this shard has seen, returned with `WrongShard` so the router knows its table is older.
 */
export function admitWrite(
    slot: number,
    state: SlotStateOrAbsent,
    read_only: boolean,
    epoch: bigint
): { Ok: null } | { Err: ApiError } {
    if (!isOwnedState(state)) {
        return { Err: { WrongShard: { slot, epoch } } };
    }
    if (read_only) {
        return { Err: { ReadOnly: { reason: 'the shard is read-only', retriable: false } } };
    }
    if (state === 'Frozen') {
        return {
            Err: { ReadOnly: { reason: `slot ${slot} is pausing for migration`, retriable: true } }
        };
    }
    return { Ok: null };
}

/** Whether a slot in this state belongs to this shard (is routed here). */
export function isOwnedState(state: SlotStateOrAbsent | undefined): boolean {
    return state === 'Owned' || state === 'Migrating' || state === 'Frozen';
}

/**
 * The Candid value bytes of a loan (`loan_codec.ts`): what is stored, copied, hashed, and sent
 * after a constant prefix in replies.
 */
export function encodeLoan(loan: Loan): Uint8Array {
    return encodeLoanValue(loan);
}

/** Decodes bytes written by `encodeLoan`. */
export function decodeLoan(bytes: Uint8Array): Loan {
    return decodeLoanValue(bytes);
}

/**
 * A loan's contribution to its slot's checksum: `hash64` (XXH64, seed 0) of its stored bytes.
 * Stored checksums are sums of these, so the function must never change.
 */
export function loanHash(encoded: Uint8Array): bigint {
    return hash64(encoded);
}

/**
 * The slot record after a loan's bytes changed from `before` (absent: a new loan) to `after`
 * (absent: deleted). Sums wrap modulo 2^64, so the checksum is independent of write order.
 */
export function applyToSlot(
    record: SlotData,
    before: Uint8Array | undefined,
    after: Uint8Array | undefined
): SlotData {
    return applyHashesToSlot(
        record,
        before === undefined ? undefined : loanHash(before),
        after === undefined ? undefined : loanHash(after)
    );
}

/** `applyToSlot` given the loans' hashes (`loanHash`) instead of their bytes. */
export function applyHashesToSlot(
    record: SlotData,
    before: bigint | undefined,
    after: bigint | undefined
): SlotData {
    let { count, checksum } = record;
    if (before !== undefined) {
        count -= 1;
        checksum = BigInt.asUintN(64, checksum - before);
    }
    if (after !== undefined) {
        count += 1;
        checksum = BigInt.asUintN(64, checksum + after);
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
    // Written out (no closure, no BigInt multiplications): this runs on every loan write.
    const by_status = { ...totals.by_status };
    let { total_requested, total_approved, total_repaid } = totals;
    if (before !== undefined) {
        by_status[tagOf(before.status)] -= 1;
        total_requested -= before.amount_requested;
        total_approved -= before.amount_approved;
        total_repaid -= before.total_repaid;
    }
    if (after !== undefined) {
        by_status[tagOf(after.status)] += 1;
        total_requested += after.amount_requested;
        total_approved += after.amount_approved;
        total_repaid += after.total_repaid;
    }
    return { by_status, total_requested, total_approved, total_repaid };
}

/** Whether an imported copy should replace what the shard holds: only a newer version does. */
export function shouldImport(existing: Loan | undefined, incoming: Loan): boolean {
    return existing === undefined || incoming.version > existing.version;
}

/** A principal's bytes as a string (one char per byte): a cheap, exact key for comparisons. */
export function principalBytesKey(p: Principal): string {
    return String.fromCharCode.apply(null, p.toUint8Array() as unknown as number[]);
}

/**
 * The investors a loan change adds to or removes from its funders (either side may be absent),
 * compared by their bytes: a change that keeps the funders (a repayment) touches no index entry.
 */
export function investorChanges(
    before: Loan | undefined,
    after: Loan | undefined
): {
    added: Principal[];
    removed: Principal[];
} {
    const beforeKeys = new Set<string>();
    const afterKeys = new Set<string>();
    for (const f of before?.funders ?? []) beforeKeys.add(principalBytesKey(f.investor));
    const added: Principal[] = [];
    for (const f of after?.funders ?? []) {
        const key = principalBytesKey(f.investor);
        if (afterKeys.has(key)) continue;
        afterKeys.add(key);
        if (!beforeKeys.has(key)) added.push(f.investor);
    }
    const removed: Principal[] = [];
    for (const f of before?.funders ?? []) {
        const key = principalBytesKey(f.investor);
        if (!afterKeys.has(key)) {
            afterKeys.add(key);
            removed.push(f.investor);
        }
    }
    return { added, removed };
}
