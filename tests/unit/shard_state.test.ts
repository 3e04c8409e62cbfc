import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
    admitWrite,
    illegalPiece,
    investorChanges,
    loanHash,
    ownedSlotCount,
    piecesOf,
    setRunState,
    SlotStateName,
    SlotStateOrAbsent,
    stateAt,
    StateRun
} from '../../src/shared/shard_state';
import { hash64 } from '../../src/shared/hash';
import { encodeLoanValue } from '../../src/shared/loan_codec';
import { loanArb, principal } from './arbitraries';

const STATES: SlotStateOrAbsent[] = [
    'Owned',
    'Migrating',
    'Frozen',
    'Importing',
    'Released',
    'Absent'
];
const SLOTS = 64; // a small universe keeps the per-slot model cheap; the code is size-independent

function model(runs: StateRun[]): SlotStateOrAbsent[] {
    const states: SlotStateOrAbsent[] = Array(SLOTS).fill('Absent');
    for (const run of runs) for (let s = run.start; s <= run.end; s++) states[s] = run.state;
    return states;
}

const op = fc.record({
    start: fc.integer({ min: 0, max: SLOTS - 1 }),
    length: fc.integer({ min: 1, max: 20 }),
    state: fc.constantFrom(...STATES)
});

describe('slot-state runs', () => {
    it('keeps one run for a shard that owns every slot', () => {
        expect(setRunState([], 0, 16_383, 'Owned')).toEqual([
            { start: 0, end: 16_383, state: 'Owned' }
        ]);
        expect(ownedSlotCount(setRunState([], 0, 16_383, 'Owned'))).toBe(16_384);
    });

    it('splits a run around a span and merges it back when the state returns', () => {
        const owned = setRunState([], 0, 99, 'Owned');
        const split = setRunState(owned, 10, 19, 'Migrating');
        expect(split).toEqual([
            { start: 0, end: 9, state: 'Owned' },
            { start: 10, end: 19, state: 'Migrating' },
            { start: 20, end: 99, state: 'Owned' }
        ]);
        expect(setRunState(split, 10, 19, 'Owned')).toEqual(owned);
    });

    it('matches a per-slot model after any sequence of span changes, canonical and sorted', () => {
        fc.assert(
            fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
                let runs: StateRun[] = [];
                const states: SlotStateOrAbsent[] = Array(SLOTS).fill('Absent');
                for (const { start, length, state } of ops) {
                    const end = Math.min(SLOTS - 1, start + length - 1);
                    runs = setRunState(runs, start, end, state);
                    for (let s = start; s <= end; s++) states[s] = state;
                }
                expect(model(runs)).toEqual(states);
                for (let s = 0; s < SLOTS; s++) expect(stateAt(runs, s)).toBe(states[s]);
                for (let i = 1; i < runs.length; i++) {
                    expect(runs[i].start).toBeGreaterThan(runs[i - 1].end);
                    const touching = runs[i].start === runs[i - 1].end + 1;
                    expect(touching && runs[i].state === runs[i - 1].state).toBe(false);
                }
                const pieces = piecesOf(runs, 0, SLOTS - 1);
                expect(pieces[0].start).toBe(0);
                expect(pieces[pieces.length - 1].end).toBe(SLOTS - 1);
                for (const p of pieces)
                    for (let s = p.start; s <= p.end; s++) expect(states[s]).toBe(p.state);
                expect(ownedSlotCount(runs)).toBe(
                    states.filter((s) => s === 'Owned' || s === 'Migrating' || s === 'Frozen')
                        .length
                );
            }),
            { numRuns: 300 }
        );
    });

    it('names the first piece of a span that may not make a move', () => {
        const runs = setRunState(setRunState([], 0, 9, 'Owned'), 5, 9, 'Migrating');
        expect(illegalPiece(runs, 0, 9, 'Frozen')).toMatchObject({ start: 0, state: 'Owned' });
        expect(illegalPiece(runs, 5, 9, 'Frozen')).toBeUndefined();
        expect(illegalPiece(runs, 8, 12, 'Migrating')).toMatchObject({
            start: 10,
            state: 'Absent'
        });
    });
});

describe('write admission', () => {
    it.each<[SlotStateOrAbsent, string]>([
        ['Absent', 'WrongShard'],
        ['Importing', 'WrongShard'],
        ['Released', 'WrongShard'],
        ['Frozen', 'ReadOnly'],
        ['Owned', 'Ok'],
        ['Migrating', 'Ok']
    ])('a write to a %s slot gets %s', (state, outcome) => {
        const result = admitWrite(7, state, false, 3n);
        expect(Object.keys('Err' in result ? result.Err : result)[0]).toBe(outcome);
    });

    it('a read-only shard refuses writes for good, a frozen slot for a moment', () => {
        expect(admitWrite(7, 'Owned' as SlotStateName, true, 3n)).toMatchObject({
            Err: { ReadOnly: { retriable: false } }
        });
        expect(admitWrite(7, 'Frozen', false, 3n)).toMatchObject({
            Err: { ReadOnly: { retriable: true } }
        });
        expect(admitWrite(7, 'Released', false, 3n)).toEqual({
            Err: { WrongShard: { slot: 7, epoch: 3n } }
        });
    });
});

describe('investorChanges', () => {
    it('names the investors added and removed, as a set difference of their texts', () => {
        // Funders drawn from a small pool, so before and after share some investors.
        const scenario = fc.array(principal, { minLength: 1, maxLength: 4 }).chain((pool) => {
            const funders = fc.array(fc.constantFrom(...pool), { maxLength: 6 });
            const side = fc.option(
                fc.tuple(loanArb(0, 0), funders).map(([loan, who]) => ({
                    ...loan,
                    funders: who.map((investor) => ({ investor, amount: 1n }))
                })),
                { nil: undefined }
            );
            return fc.tuple(side, side);
        });
        fc.assert(
            fc.property(scenario, ([before, after]) => {
                const texts = (l: typeof before) =>
                    new Set(l?.funders.map((f) => f.investor.toText()));
                const b = texts(before);
                const a = texts(after);
                const { added, removed } = investorChanges(before, after);
                expect(added.map((p) => p.toText()).sort()).toEqual(
                    [...a].filter((t) => !b.has(t)).sort()
                );
                expect(removed.map((p) => p.toText()).sort()).toEqual(
                    [...b].filter((t) => !a.has(t)).sort()
                );
            }),
            { numRuns: 300 }
        );
    });
});

describe('loanHash', () => {
    it('is hash64 (XXH64, seed 0) of the bytes, for every length and for loans', () => {
        for (let n = 0; n <= 300; n++) {
            const bytes = new Uint8Array(n).map((_, i) => (i * 37 + n * 11) & 0xff);
            expect(loanHash(bytes)).toBe(hash64(bytes));
        }
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
                expect(loanHash(bytes)).toBe(hash64(bytes));
            }),
            { numRuns: 2000 }
        );
        fc.assert(
            fc.property(loanArb(5, 5), (loan) => {
                const bytes = encodeLoanValue(loan);
                expect(loanHash(bytes)).toBe(hash64(bytes));
            }),
            { numRuns: 300 }
        );
    });

    it('reads a view at any offset of a larger buffer', () => {
        const whole = new Uint8Array(100).map((_, i) => i);
        for (const at of [0, 1, 3, 7]) {
            const view = whole.subarray(at, at + 64);
            expect(loanHash(view)).toBe(hash64(view.slice()));
        }
    });
});
