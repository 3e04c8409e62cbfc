import { describe, expect, it } from 'vitest';

import {
    advance,
    FREEZE_WHEN_REMAINING,
    isInFlight,
    MAX_CATCH_UP_ROUNDS,
    MAX_SPAN_SLOTS,
    MigrationState,
    nextAction,
    planEvenSlots,
    planSpans,
    seqFloors,
    shareMoves,
    slotsDone,
    slotTotal,
    startMigration,
    StepOutcome,
    validateMigrationRequest
} from '../../src/shared/migration';
import { SLOT_COUNT } from '../../src/shared/limits';
import { createSlotMap } from '../../src/shared/slot_map';

const span = { start: 10, end: 19, from: 1, to: 2 };

function run(state: MigrationState, outcome: StepOutcome): MigrationState {
    return advance(state, outcome, state.updated_at_ms + 1);
}

describe('migration state machine', () => {
    it('walks one span through every phase in order, verifying before the flip', () => {
        let s = startMigration({ id: 'm-1', spans: [span], now_ms: 0, reason: 'manual' });
        const seen: string[] = [];
        const outcomes: Record<string, StepOutcome> = {
            SetSlotState: { kind: 'Applied' },
            Flip: { kind: 'Applied' },
            CopyBatch: { kind: 'Copied', loans: 3, next_cursor: null },
            CatchUpBatch: { kind: 'CaughtUp', loans: 1, remaining: 0 },
            Verify: { kind: 'Verified', equal: true, detail: '' },
            DeleteBatch: { kind: 'Deleted', deleted: 4, remaining: 0 }
        };
        for (let i = 0; i < 20 && isInFlight(s); i++) {
            const action = nextAction(s);
            seen.push(
                action.kind === 'SetSlotState' ? `${action.state}@${action.shard}` : action.kind
            );
            s = run(s, outcomes[action.kind]);
        }
        expect(seen).toEqual([
            'Importing@2',
            'Migrating@1',
            'CopyBatch',
            'CatchUpBatch',
            'Frozen@1',
            'CatchUpBatch',
            'Verify',
            'Flip',
            'Owned@2',
            'Released@1',
            'DeleteBatch'
        ]);
        expect(s.phase).toBe('Done');
        expect(s.loans_copied).toBe(3);
        expect(s.loans_caught_up).toBe(2);
        expect(s.loans_deleted).toBe(4);
        expect(slotsDone(s)).toBe(10);
    });

    it('continues a copy from the returned cursor until none is left', () => {
        let s = startMigration({ id: 'm', spans: [span], now_ms: 0, reason: 'manual' });
        s = run(run(s, { kind: 'Applied' }), { kind: 'Applied' });
        s = run(s, { kind: 'Copied', loans: 500, next_cursor: { slot: 12, seq: 7 } });
        expect(nextAction(s)).toEqual({ kind: 'CopyBatch', span, cursor: { slot: 12, seq: 7 } });
        s = run(s, { kind: 'Copied', loans: 2, next_cursor: null });
        expect(s.phase).toBe('CatchingUp');
        expect(s.loans_copied).toBe(502);
    });

    it('freezes after a bounded number of catch-up rounds even if writes keep coming', () => {
        let s = startMigration({ id: 'm', spans: [span], now_ms: 0, reason: 'manual' });
        s = { ...s, phase: 'CatchingUp' };
        const busy: StepOutcome = {
            kind: 'CaughtUp',
            loans: 500,
            remaining: FREEZE_WHEN_REMAINING + 1
        };
        for (let i = 0; i < MAX_CATCH_UP_ROUNDS - 1; i++) {
            s = run(s, busy);
            expect(s.phase).toBe('CatchingUp');
        }
        s = run(s, busy);
        expect(s.phase).toBe('Freezing');
        // While frozen, draining goes on until the catch-up set is empty.
        s = run(s, { kind: 'Applied' });
        s = run(s, { kind: 'CaughtUp', loans: 500, remaining: 3 });
        expect(s.phase).toBe('Draining');
        s = run(s, { kind: 'CaughtUp', loans: 3, remaining: 0 });
        expect(s.phase).toBe('Verifying');
    });

    it('unfreezes the source and fails when checksums differ, never flipping', () => {
        let s = startMigration({ id: 'm', spans: [span], now_ms: 0, reason: 'manual' });
        s = { ...s, phase: 'Verifying' };
        s = run(s, { kind: 'Verified', equal: false, detail: 'count 3 vs 2' });
        expect(s.phase).toBe('Aborting');
        expect(nextAction(s)).toEqual({ kind: 'SetSlotState', shard: 1, span, state: 'Owned' });
        s = run(s, { kind: 'Applied' });
        expect(s.phase).toBe('Failed');
        expect(s.failure).toMatch(/count 3 vs 2/);
        expect(nextAction(s)).toEqual({ kind: 'None' });
    });

    it('keeps the phase on an error and counts errors in a row', () => {
        let s = startMigration({ id: 'm', spans: [span], now_ms: 0, reason: 'manual' });
        s = run(s, { kind: 'Error', message: 'shard down' });
        s = run(s, { kind: 'Error', message: 'shard down' });
        expect(s.phase).toBe('Importing');
        expect(s.step_errors).toBe(2);
        expect(s.last_error).toBe('shard down');
        s = run(s, { kind: 'Applied' });
        expect(s.step_errors).toBe(0);
        expect(s.phase).toBe('Tracking');
    });

    it('treats an outcome that does not fit the phase as an error', () => {
        const s = startMigration({ id: 'm', spans: [span], now_ms: 0, reason: 'manual' });
        const next = run(s, { kind: 'Deleted', deleted: 1, remaining: 0 });
        expect(next.phase).toBe('Importing');
        expect(next.step_errors).toBe(1);
    });

    it('deletes in batches, then starts the next span', () => {
        const second = { start: 20, end: 29, from: 1, to: 3 };
        let s = startMigration({ id: 'm', spans: [span, second], now_ms: 0, reason: 'manual' });
        s = { ...s, phase: 'Cleaning' };
        s = run(s, { kind: 'Deleted', deleted: 500, remaining: 10 });
        expect(s.phase).toBe('Cleaning');
        s = run(s, { kind: 'Deleted', deleted: 10, remaining: 0 });
        expect(s.span_index).toBe(1);
        expect(s.phase).toBe('Importing');
        expect(nextAction(s)).toEqual({
            kind: 'SetSlotState',
            shard: 3,
            span: second,
            state: 'Importing'
        });
    });

    it('is done at once with no spans', () => {
        const s = startMigration({ id: 'm', spans: [], now_ms: 0, reason: 'manual' });
        expect(s.phase).toBe('Done');
        expect(isInFlight(s)).toBe(false);
    });
});

describe('migration planning', () => {
    it('groups moves into contiguous spans per (from, to), cut at the span bound', () => {
        const moves = [
            ...[5, 6, 7].map((slot) => ({ slot, from: 1, to: 2 })),
            { slot: 8, from: 3, to: 2 },
            { slot: 10, from: 1, to: 2 }
        ];
        expect(planSpans(moves.reverse())).toEqual([
            { start: 5, end: 7, from: 1, to: 2 },
            { start: 8, end: 8, from: 3, to: 2 },
            { start: 10, end: 10, from: 1, to: 2 }
        ]);
        const many = Array.from({ length: 10 }, (_, slot) => ({ slot, from: 1, to: 2 }));
        expect(planSpans(many, 4).map((s) => [s.start, s.end])).toEqual([
            [0, 3],
            [4, 7],
            [8, 9]
        ]);
    });

    it("takes the share of the source's highest slots", () => {
        const map = createSlotMap([1, 2]);
        if (!map.ok) throw new Error('map');
        const moves = shareMoves(map.value, 1, 2, 50);
        expect(moves).toHaveLength(SLOT_COUNT / 4);
        expect(moves[0].slot).toBe(SLOT_COUNT / 4);
        expect(moves[moves.length - 1].slot).toBe(SLOT_COUNT / 2 - 1);
        expect(slotTotal(planSpans(moves))).toBe(SLOT_COUNT / 4);
        expect(shareMoves(map.value, 1, 2, 0.001)).toHaveLength(1);
        expect(shareMoves(map.value, 1, 2, 100)).toHaveLength(SLOT_COUNT / 2);
    });

    it('evens out slot counts with few contiguous spans, moving only the surplus', () => {
        const one = createSlotMap([1]);
        if (!one.ok) throw new Error('map');
        const moves = planEvenSlots(one.value, [1, 2, 3]);
        expect(moves).toHaveLength(2 * 5461);
        expect(moves.every((m) => m.from === 1)).toBe(true);
        expect(moves.filter((m) => m.to === 2)).toHaveLength(5461);
        expect(planSpans(moves).length).toBeLessThanOrEqual(2 * Math.ceil(5461 / MAX_SPAN_SLOTS));
        const even = createSlotMap([1, 2, 3]);
        if (!even.ok) throw new Error('map');
        expect(planEvenSlots(even.value, [1, 2, 3])).toEqual([]);
        expect(planEvenSlots(even.value, [])).toEqual([]);
    });

    it('validates a migration request field by field', () => {
        const known = new Set([1, 2]);
        const base = { source: 1, target: 2, percentage: 50, known, sourceSlots: 10 };
        expect(validateMigrationRequest(base)).toBeNull();
        expect(validateMigrationRequest({ ...base, source: 9 })?.field).toBe('source');
        expect(validateMigrationRequest({ ...base, target: 9 })?.field).toBe('target');
        expect(validateMigrationRequest({ ...base, target: 1 })?.field).toBe('target');
        for (const percentage of [0, -1, 100.01, Number.NaN, Infinity]) {
            expect(validateMigrationRequest({ ...base, percentage })?.field).toBe('percentage');
        }
        expect(validateMigrationRequest({ ...base, sourceSlots: 0 })?.field).toBe('source');
    });

    it('raises each slot sequence above every caught-up loan id', () => {
        const id = (slot: number, seq: number): bigint => (BigInt(slot) << 48n) | BigInt(seq);
        expect(seqFloors([id(3, 7), id(3, 2), id(1, 1)])).toEqual([
            { slot: 1, next_seq: 2n },
            { slot: 3, next_seq: 8n }
        ]);
    });
});
