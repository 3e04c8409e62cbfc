/**
 * What a data shard decides, as pure functions: whether a write to a slot is admitted, how a slot's
 * count and checksum follow its loans, and how per-status totals follow a loan's changes. The shard
 * canister reads its stable maps, calls these, and writes back the result.
 */

import type { Principal } from '@dfinity/principal';

import { Infer, empty, tagOf, variant } from './candid';
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
 * A loan's contribution to its slot's checksum: the hash of its stored bytes, `hash64` (XXH64,
 * seed 0) computed by `xxh64Inlined` below, which gives the same bits (`shard_state.test.ts`).
 */
export function loanHash(encoded: Uint8Array): bigint {
    return xxh64Inlined(encoded);
}

// ---- XXH64 (seed 0) for loan bytes, with the 64-bit steps inlined (helper P2) ----
// `hash.ts`'s port routes every 64-bit step through helper calls and a typed-array register,
// which costs about 6,000 instructions per input byte in the canister's JS engine; a loan's
// 150-250 bytes are hashed on every write. This form (fewer calls, native 32-bit reads) costs
// about half; its output is `hash64`'s, bit for bit, so checksums stored by earlier builds stay
// valid. Candidate to replace the port in `hash.ts`.

const P1_HI = 0x9e3779b1;
const P1_LO = 0x85ebca87;
const P2_HI = 0xc2b2ae3d;
const P2_LO = 0x27d4eb4f;
const P3_HI = 0x165667b1;
const P3_LO = 0x9e3779f9;
const P4_HI = 0x85ebca77;
const P4_LO = 0xc2b2ae63;
const P5_HI = 0x27d4eb2f;
const P5_LO = 0x165667c5;
const P1_LO0 = P1_LO & 0xffff;
const P1_LO1 = P1_LO >>> 16;
const P2_LO0 = P2_LO & 0xffff;
const P2_LO1 = P2_LO >>> 16;

/** High 32 bits of a * b for uint32 a and b = b1 * 2^16 + b0. */
function mulHi(a: number, b0: number, b1: number): number {
    const a0 = a & 0xffff;
    const a1 = a >>> 16;
    const t = a0 * b0;
    const m1 = a1 * b0 + (t >>> 16);
    const m2 = a0 * b1 + (m1 & 0xffff);
    return a1 * b1 + (m1 >>> 16) + (m2 >>> 16);
}

let outHi = 0;
let outLo = 0;

/** acc = rotl(acc + input * P2, 31) * P1, into (outHi, outLo). */
function round(accHi: number, accLo: number, inHi: number, inLo: number): void {
    const pLo = Math.imul(inLo, P2_LO) >>> 0;
    const pHi = mulHi(inLo, P2_LO0, P2_LO1) + Math.imul(inHi, P2_LO) + Math.imul(inLo, P2_HI);
    const s = accLo + pLo;
    const aLo = s >>> 0;
    const aHi = (accHi + pHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
    const rHi = ((aHi << 31) | (aLo >>> 1)) >>> 0;
    const rLo = ((aLo << 31) | (aHi >>> 1)) >>> 0;
    outLo = Math.imul(rLo, P1_LO) >>> 0;
    outHi = (mulHi(rLo, P1_LO0, P1_LO1) + Math.imul(rHi, P1_LO) + Math.imul(rLo, P1_HI)) >>> 0;
}

function mul(hi: number, lo: number, bHi: number, bLo: number): void {
    outLo = Math.imul(lo, bLo) >>> 0;
    outHi = (mulHi(lo, bLo & 0xffff, bLo >>> 16) + Math.imul(hi, bLo) + Math.imul(lo, bHi)) >>> 0;
}

function xxh64Inlined(bytes: Uint8Array): bigint {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const len = bytes.length;
    let p = 0;
    let hHi: number;
    let hLo: number;
    if (len >= 32) {
        // v1 = P1 + P2, v2 = P2, v3 = 0, v4 = -P1 (seed 0)
        let s = P1_LO + P2_LO;
        let v1Lo = s >>> 0;
        let v1Hi = (P1_HI + P2_HI + (s > 0xffffffff ? 1 : 0)) >>> 0;
        let v2Hi = P2_HI;
        let v2Lo = P2_LO;
        let v3Hi = 0;
        let v3Lo = 0;
        s = (~P1_LO >>> 0) + 1;
        let v4Lo = s >>> 0;
        let v4Hi = ((~P1_HI >>> 0) + (s > 0xffffffff ? 1 : 0)) >>> 0;
        const limit = len - 32;
        while (p <= limit) {
            round(v1Hi, v1Lo, view.getUint32(p + 4, true), view.getUint32(p, true));
            v1Hi = outHi;
            v1Lo = outLo;
            round(v2Hi, v2Lo, view.getUint32(p + 12, true), view.getUint32(p + 8, true));
            v2Hi = outHi;
            v2Lo = outLo;
            round(v3Hi, v3Lo, view.getUint32(p + 20, true), view.getUint32(p + 16, true));
            v3Hi = outHi;
            v3Lo = outLo;
            round(v4Hi, v4Lo, view.getUint32(p + 28, true), view.getUint32(p + 24, true));
            v4Hi = outHi;
            v4Lo = outLo;
            p += 32;
        }
        // h = rotl(v1,1) + rotl(v2,7) + rotl(v3,12) + rotl(v4,18)
        let aHi = ((v1Hi << 1) | (v1Lo >>> 31)) >>> 0;
        let aLo = ((v1Lo << 1) | (v1Hi >>> 31)) >>> 0;
        let bHi = ((v2Hi << 7) | (v2Lo >>> 25)) >>> 0;
        let bLo = ((v2Lo << 7) | (v2Hi >>> 25)) >>> 0;
        s = aLo + bLo;
        hLo = s >>> 0;
        hHi = (aHi + bHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
        aHi = ((v3Hi << 12) | (v3Lo >>> 20)) >>> 0;
        aLo = ((v3Lo << 12) | (v3Hi >>> 20)) >>> 0;
        s = hLo + aLo;
        hLo = s >>> 0;
        hHi = (hHi + aHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
        bHi = ((v4Hi << 18) | (v4Lo >>> 14)) >>> 0;
        bLo = ((v4Lo << 18) | (v4Hi >>> 14)) >>> 0;
        s = hLo + bLo;
        hLo = s >>> 0;
        hHi = (hHi + bHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
        const lanes = [v1Hi, v1Lo, v2Hi, v2Lo, v3Hi, v3Lo, v4Hi, v4Lo];
        for (let i = 0; i < 8; i += 2) {
            round(0, 0, lanes[i], lanes[i + 1]);
            mul((hHi ^ outHi) >>> 0, (hLo ^ outLo) >>> 0, P1_HI, P1_LO);
            s = outLo + P4_LO;
            hLo = s >>> 0;
            hHi = (outHi + P4_HI + (s > 0xffffffff ? 1 : 0)) >>> 0;
        }
    } else {
        hHi = P5_HI;
        hLo = P5_LO;
    }
    let s = hLo + len;
    hLo = s >>> 0;
    hHi = (hHi + (s > 0xffffffff ? 1 : 0)) >>> 0;
    while (p + 8 <= len) {
        round(0, 0, view.getUint32(p + 4, true), view.getUint32(p, true));
        const xHi = (hHi ^ outHi) >>> 0;
        const xLo = (hLo ^ outLo) >>> 0;
        mul(((xHi << 27) | (xLo >>> 5)) >>> 0, ((xLo << 27) | (xHi >>> 5)) >>> 0, P1_HI, P1_LO);
        s = outLo + P4_LO;
        hLo = s >>> 0;
        hHi = (outHi + P4_HI + (s > 0xffffffff ? 1 : 0)) >>> 0;
        p += 8;
    }
    if (p + 4 <= len) {
        mul(0, view.getUint32(p, true), P1_HI, P1_LO);
        const xHi = (hHi ^ outHi) >>> 0;
        const xLo = (hLo ^ outLo) >>> 0;
        mul(((xHi << 23) | (xLo >>> 9)) >>> 0, ((xLo << 23) | (xHi >>> 9)) >>> 0, P2_HI, P2_LO);
        s = outLo + P3_LO;
        hLo = s >>> 0;
        hHi = (outHi + P3_HI + (s > 0xffffffff ? 1 : 0)) >>> 0;
        p += 4;
    }
    while (p < len) {
        mul(0, bytes[p], P5_HI, P5_LO);
        const xHi = (hHi ^ outHi) >>> 0;
        const xLo = (hLo ^ outLo) >>> 0;
        mul(((xHi << 11) | (xLo >>> 21)) >>> 0, ((xLo << 11) | (xHi >>> 21)) >>> 0, P1_HI, P1_LO);
        hHi = outHi;
        hLo = outLo;
        p += 1;
    }
    // avalanche
    let lo = (hLo ^ (hHi >>> 1)) >>> 0;
    mul(hHi, lo, P2_HI, P2_LO);
    let hi = outHi;
    lo = (outLo ^ ((hi << 3) | (outLo >>> 29))) >>> 0;
    hi = (hi ^ (hi >>> 29)) >>> 0;
    mul(hi, lo, P3_HI, P3_LO);
    lo = (outLo ^ outHi) >>> 0;
    return (BigInt(outHi) << 32n) | BigInt(lo);
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
