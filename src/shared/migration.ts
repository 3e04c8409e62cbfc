/**
 * Slot migration as a pure, resumable state machine (DESIGN.md §4).
 *
 * A migration moves a list of spans (contiguous slot runs, each from one shard to another), one
 * span at a time, through: Importing on the target → Migrating on the source → copy batches →
 * catch-up batches → Frozen on the source → drain the catch-up set → verify count and checksum on
 * both sides (the source is frozen and the target not yet routed to, so neither changes) → flip the
 * span in the slot map (epoch + 1) → target Owned, source Released → delete the source's copy in
 * batches. A checksum mismatch unfreezes the source (it stays the owner) and fails the migration. The factory keeps `MigrationState` in stable memory, asks `nextAction`
 * what to do, performs it (an inter-canister call), and stores `advance(state, outcome)`. Every
 * action is idempotent on the shards, so repeating one after a trap or an upgrade is safe.
 *
 * @example
 * let state = startMigration({ id: 'm-1', spans, now_ms });
 * const action = nextAction(state);           // { kind: 'SetSlotState', ... }
 * state = advance(state, { kind: 'Applied' }, now_ms);
 */
import { SLOT_COUNT } from './limits';
import type { SlotMap, SlotMove } from './slot_map';

/**
 * Slots per span: the unit that freezes together at cutover (a short write pause: the drain of
 * writes made since the last catch-up). Shards change slot states per run of slots, so a larger
 * span costs little more than a small one and saves round trips.
 */
export const MAX_SPAN_SLOTS = 1_024;
/**
 * Spans per migration at most: the state is read and written at every step, so it stays small.
 * A plan with more spans moves its first MAX_SPANS now; the next rebalance moves the rest.
 */
export const MAX_SPANS = 256;
/** Loans per copy or catch-up batch (the shard also bounds a batch by bytes). */
export const MIGRATION_BATCH_LOANS = 500;
/** Catch-up rounds before the freeze even if writes keep coming (the freeze then drains the rest). */
export const MAX_CATCH_UP_ROUNDS = 8;
/** The catch-up set is small enough to freeze when at most this many loans remain. */
export const FREEZE_WHEN_REMAINING = MIGRATION_BATCH_LOANS;
/** Errors of one step in a row before the migration records itself as stalled (it still retries). */
export const MAX_STEP_ERRORS_BEFORE_STALL = 20;

/** One span moving from shard `from` to shard `to`; `start..=end`. */
export interface SpanMove {
    start: number;
    end: number;
    from: number;
    to: number;
}

export type MigrationPhase =
    | 'Importing'
    | 'Tracking'
    | 'Copying'
    | 'CatchingUp'
    | 'Freezing'
    | 'Draining'
    | 'Verifying'
    | 'Flipping'
    | 'Activating'
    | 'Releasing'
    | 'Cleaning'
    | 'Aborting'
    | 'Done'
    | 'Failed';

/** Where a copy stopped: the last sequence number exported in `slot`. */
export interface CopyCursor {
    slot: number;
    seq: number;
}

/** Everything a migration needs to resume; plain data (numbers, strings), kept in stable memory. */
export interface MigrationState {
    id: string;
    spans: SpanMove[];
    /** The span in progress; `spans.length` when done. */
    span_index: number;
    phase: MigrationPhase;
    cursor: CopyCursor | null;
    catch_up_rounds: number;
    loans_copied: number;
    loans_caught_up: number;
    loans_deleted: number;
    started_at_ms: number;
    updated_at_ms: number;
    /** Failed steps in a row (reset by any success). */
    step_errors: number;
    last_error: string | null;
    /** Why the migration failed (Failed phase only). */
    failure: string | null;
    /** Which operation started it: 'manual', 'scale_out', 'rebalance', 'new_shard'. */
    reason: string;
    /** Set by `requestStop`: the migration ends after the span in progress. */
    stop_requested: boolean;
}

/** Slot states the factory asks a shard for (mirrors the shard's `SlotState`). */
export type TargetSlotState = 'Importing' | 'Migrating' | 'Frozen' | 'Owned' | 'Released';

/** What the factory must do next. */
export type MigrationAction =
    | { kind: 'SetSlotState'; shard: number; span: SpanMove; state: TargetSlotState }
    | { kind: 'CopyBatch'; span: SpanMove; cursor: CopyCursor | null }
    | { kind: 'CatchUpBatch'; span: SpanMove }
    | { kind: 'Flip'; span: SpanMove }
    | { kind: 'Verify'; span: SpanMove }
    | { kind: 'DeleteBatch'; span: SpanMove }
    | { kind: 'None' };

/** What came of an action. */
export type StepOutcome =
    | { kind: 'Applied' }
    | { kind: 'Copied'; loans: number; next_cursor: CopyCursor | null }
    | { kind: 'CaughtUp'; loans: number; remaining: number }
    | { kind: 'Verified'; equal: boolean; detail: string }
    | { kind: 'Deleted'; deleted: number; remaining: number }
    | { kind: 'Error'; message: string };

/** A migration whose phase is not terminal is in flight. */
export function isInFlight(state: MigrationState): boolean {
    return state.phase !== 'Done' && state.phase !== 'Failed';
}

/** Whether the current span's slots already route to the target (cutover done). */
export function isPastCutover(phase: MigrationPhase): boolean {
    return ['Activating', 'Releasing', 'Cleaning', 'Done'].includes(phase);
}

/** A new migration over `spans`, starting with the first span's Importing step. */
export function startMigration(input: {
    id: string;
    spans: SpanMove[];
    now_ms: number;
    reason: string;
}): MigrationState {
    return {
        id: input.id,
        spans: input.spans,
        span_index: 0,
        phase: input.spans.length === 0 ? 'Done' : 'Importing',
        cursor: null,
        catch_up_rounds: 0,
        loans_copied: 0,
        loans_caught_up: 0,
        loans_deleted: 0,
        started_at_ms: input.now_ms,
        updated_at_ms: input.now_ms,
        step_errors: 0,
        last_error: null,
        failure: null,
        reason: input.reason,
        stop_requested: false
    };
}

/** The action the current phase calls for. */
export function nextAction(state: MigrationState): MigrationAction {
    const span = state.spans[state.span_index];
    if (span === undefined || !isInFlight(state)) return { kind: 'None' };
    switch (state.phase) {
        case 'Importing':
            return { kind: 'SetSlotState', shard: span.to, span, state: 'Importing' };
        case 'Tracking':
            return { kind: 'SetSlotState', shard: span.from, span, state: 'Migrating' };
        case 'Copying':
            return { kind: 'CopyBatch', span, cursor: state.cursor };
        case 'CatchingUp':
        case 'Draining':
            return { kind: 'CatchUpBatch', span };
        case 'Freezing':
            return { kind: 'SetSlotState', shard: span.from, span, state: 'Frozen' };
        case 'Flipping':
            return { kind: 'Flip', span };
        case 'Activating':
            return { kind: 'SetSlotState', shard: span.to, span, state: 'Owned' };
        case 'Releasing':
            return { kind: 'SetSlotState', shard: span.from, span, state: 'Released' };
        case 'Verifying':
            return { kind: 'Verify', span };
        case 'Aborting':
            return { kind: 'SetSlotState', shard: span.from, span, state: 'Owned' };
        case 'Cleaning':
            return { kind: 'DeleteBatch', span };
        default:
            return { kind: 'None' };
    }
}

const SIMPLE_NEXT: Partial<Record<MigrationPhase, MigrationPhase>> = {
    Importing: 'Tracking',
    Tracking: 'Copying',
    Freezing: 'Draining',
    Flipping: 'Activating',
    Activating: 'Releasing',
    Releasing: 'Cleaning'
};

/** The state after `outcome` of the current action. Unexpected outcomes count as errors. */
export function advance(
    state: MigrationState,
    outcome: StepOutcome,
    now_ms: number
): MigrationState {
    if (!isInFlight(state)) return state;
    const base = { ...state, updated_at_ms: now_ms };
    if (outcome.kind === 'Error') {
        return { ...base, step_errors: state.step_errors + 1, last_error: outcome.message };
    }
    const ok = { ...base, step_errors: 0 };
    const simple = SIMPLE_NEXT[state.phase];
    if (simple !== undefined && outcome.kind === 'Applied') return { ...ok, phase: simple };
    switch (state.phase) {
        case 'Copying':
            if (outcome.kind !== 'Copied') break;
            return {
                ...ok,
                loans_copied: state.loans_copied + outcome.loans,
                cursor: outcome.next_cursor,
                phase: outcome.next_cursor === null ? 'CatchingUp' : 'Copying',
                catch_up_rounds: 0
            };
        case 'CatchingUp': {
            if (outcome.kind !== 'CaughtUp') break;
            const rounds = state.catch_up_rounds + 1;
            const small = outcome.remaining <= FREEZE_WHEN_REMAINING;
            return {
                ...ok,
                loans_caught_up: state.loans_caught_up + outcome.loans,
                catch_up_rounds: rounds,
                phase: small || rounds >= MAX_CATCH_UP_ROUNDS ? 'Freezing' : 'CatchingUp'
            };
        }
        case 'Draining':
            if (outcome.kind !== 'CaughtUp') break;
            return {
                ...ok,
                loans_caught_up: state.loans_caught_up + outcome.loans,
                phase: outcome.remaining === 0 ? 'Verifying' : 'Draining'
            };
        case 'Verifying':
            if (outcome.kind !== 'Verified') break;
            if (!outcome.equal) {
                // The source stays the owner and keeps its copy; nothing was routed elsewhere.
                return {
                    ...ok,
                    phase: 'Aborting',
                    failure: `verification failed: ${outcome.detail}`
                };
            }
            return { ...ok, phase: 'Flipping' };
        case 'Aborting':
            if (outcome.kind !== 'Applied') break;
            return { ...ok, phase: 'Failed' };
        case 'Cleaning':
            if (outcome.kind !== 'Deleted') break;
            if (outcome.remaining > 0) {
                return { ...ok, loans_deleted: state.loans_deleted + outcome.deleted };
            }
            return nextSpan({ ...ok, loans_deleted: state.loans_deleted + outcome.deleted });
        default:
            break;
    }
    return {
        ...base,
        step_errors: state.step_errors + 1,
        last_error: `unexpected outcome ${outcome.kind} in phase ${state.phase}`
    };
}

function nextSpan(state: MigrationState): MigrationState {
    const span_index = state.span_index + 1;
    const done = span_index >= state.spans.length || state.stop_requested;
    return {
        ...state,
        span_index,
        cursor: null,
        catch_up_rounds: 0,
        phase: done ? 'Done' : 'Importing'
    };
}

/**
 * Asks the migration to stop once the span in progress is complete (never mid-span, so no slot is
 * left half-moved); the spans not started stay with their sources.
 */
export function requestStop(state: MigrationState): MigrationState {
    return isInFlight(state) ? { ...state, stop_requested: true } : state;
}

/** Whether the migration has failed steps in a row for long enough to report it as stalled. */
export function isStalled(state: MigrationState): boolean {
    return state.step_errors >= MAX_STEP_ERRORS_BEFORE_STALL;
}

/**
 * Groups slot moves into spans: maximal runs of consecutive slots with the same source and
 * target, cut at `maxSpanSlots`. Moves need not be sorted; each slot may appear once.
 *
 * @example planSpans([{slot: 0, from: 1, to: 2}, {slot: 1, from: 1, to: 2}]) // [{start: 0, end: 1, from: 1, to: 2}]
 */
export function planSpans(moves: readonly SlotMove[], maxSpanSlots = MAX_SPAN_SLOTS): SpanMove[] {
    // Planners usually hand over moves in slot order already; a sort costs a JS call per comparison.
    let ascending = true;
    for (let i = 1; i < moves.length && ascending; i++) {
        ascending = moves[i - 1].slot <= moves[i].slot;
    }
    const sorted = ascending ? moves : [...moves].sort((a, b) => a.slot - b.slot);
    const spans: SpanMove[] = [];
    for (const move of sorted) {
        const last = spans[spans.length - 1];
        const extends_ =
            last !== undefined &&
            last.end + 1 === move.slot &&
            last.from === move.from &&
            last.to === move.to &&
            last.end - last.start + 1 < maxSpanSlots;
        if (extends_) last.end = move.slot;
        else spans.push({ start: move.slot, end: move.slot, from: move.from, to: move.to });
    }
    return spans;
}

/**
 * The moves that give `percentage` percent (0 < p ≤ 100) of `source`'s slots to `target`: the
 * source's highest slots, so the moved share is contiguous where the source's slots are.
 */
export function shareMoves(
    map: SlotMap,
    source: number,
    target: number,
    percentage: number
): SlotMove[] {
    const owned: number[] = [];
    for (let slot = 0; slot < SLOT_COUNT; slot++) if (map.owners[slot] === source) owned.push(slot);
    const count = Math.min(owned.length, Math.ceil((owned.length * percentage) / 100));
    return owned.slice(owned.length - count).map((slot) => ({ slot, from: source, to: target }));
}

/**
 * Moves that even out slot counts over `shardIds`: each ends with ⌊16384/n⌋ or ⌈16384/n⌉ slots
 * (the extra slots stay with the shards that hold most, so fewest move). Shards over their target
 * give their highest slots and shards under it receive them in order, so the moves form few
 * contiguous spans. Shards of the map not in `shardIds` keep their slots.
 *
 * @example planEvenSlots(map, [1, 2]) // shard 1 owning everything gives 8192 slots to shard 2
 */
export function planEvenSlots(map: SlotMap, shardIds: readonly number[]): SlotMove[] {
    const ids = [...new Set(shardIds)].sort((a, b) => a - b);
    if (ids.length === 0) return [];
    const owned = new Map<number, number[]>(ids.map((id) => [id, []]));
    for (let slot = 0; slot < SLOT_COUNT; slot++) owned.get(map.owners[slot])?.push(slot);
    const total = ids.reduce((sum, id) => sum + owned.get(id)!.length, 0);
    const base = Math.floor(total / ids.length);
    let extra = total % ids.length;
    const byCount = [...ids].sort((a, b) => owned.get(b)!.length - owned.get(a)!.length || a - b);
    const target = new Map<number, number>();
    for (const id of byCount) {
        target.set(id, base + (extra > 0 ? 1 : 0));
        if (extra > 0) extra -= 1;
    }
    const given: { slot: number; from: number }[] = [];
    for (const id of ids) {
        const slots = owned.get(id)!;
        const surplus = slots.length - target.get(id)!;
        for (const slot of slots.slice(slots.length - Math.max(0, surplus))) {
            given.push({ slot, from: id });
        }
    }
    given.sort((a, b) => a.slot - b.slot);
    const moves: SlotMove[] = [];
    let next = 0;
    for (const id of ids) {
        const deficit = target.get(id)! - owned.get(id)!.length;
        for (let k = 0; k < deficit && next < given.length; k++, next++) {
            moves.push({ slot: given[next].slot, from: given[next].from, to: id });
        }
    }
    return moves;
}

/** Validates a `migrate_shard_data` request; returns the offending field and why, or null. */
export function validateMigrationRequest(input: {
    source: number;
    target: number;
    percentage: number;
    known: ReadonlySet<number>;
    sourceSlots: number;
}): { field: string; reason: string } | null {
    const { source, target, percentage, known, sourceSlots } = input;
    if (!known.has(source)) return { field: 'source', reason: `unknown shard ${source}` };
    if (!known.has(target)) return { field: 'target', reason: `unknown shard ${target}` };
    if (source === target) return { field: 'target', reason: 'must differ from source' };
    if (!Number.isFinite(percentage) || percentage <= 0 || percentage > 100) {
        return { field: 'percentage', reason: 'must be in (0, 100]' };
    }
    if (sourceSlots === 0) return { field: 'source', reason: `shard ${source} owns no slots` };
    return null;
}

/** Slots of all spans (for progress reports). */
export function slotTotal(spans: readonly SpanMove[]): number {
    return spans.reduce((sum, s) => sum + s.end - s.start + 1, 0);
}

/** Slots of the spans fully done. */
export function slotsDone(state: MigrationState): number {
    return slotTotal(state.spans.slice(0, Math.min(state.span_index, state.spans.length)));
}

/**
 * The catch-up import's sequence floors: for each slot of `ids` (loan ids `slot << 48 | seq`), the
 * smallest next sequence number above every id, so the target never hands out an id that exists.
 */
export function seqFloors(ids: readonly bigint[]): { slot: number; next_seq: bigint }[] {
    const floors = new Map<number, bigint>();
    for (const id of ids) {
        const slot = Number(id >> 48n);
        const next = (id & 0xffff_ffff_ffffn) + 1n;
        if ((floors.get(slot) ?? 0n) < next) floors.set(slot, next);
    }
    return [...floors.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([slot, next_seq]) => ({ slot, next_seq }));
}
