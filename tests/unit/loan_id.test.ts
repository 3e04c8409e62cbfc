import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    decodeLoanId,
    encodeLoanId,
    parseLoanId,
    MAX_LOAN_ID,
    MAX_SEQ,
    SEQ_BITS
} from '../../src/shared/loan_id';
import { SLOT_COUNT } from '../../src/shared/hash';

describe('loan ids', () => {
    it('puts the slot in the bits above 48 and the seq below', () => {
        expect(SEQ_BITS).toBe(48);
        expect(MAX_SEQ).toBe(281474976710655);
        expect(encodeLoanId(0, 0)).toEqual({ ok: true, value: 0n });
        expect(encodeLoanId(1, 0)).toEqual({ ok: true, value: 281474976710656n });
        expect(encodeLoanId(3, 7)).toEqual({ ok: true, value: 844424930131975n });
        expect(encodeLoanId(16383, MAX_SEQ)).toEqual({ ok: true, value: (1n << 62n) - 1n });
        expect(MAX_LOAN_ID).toBe((1n << 62n) - 1n);
    });

    it('round-trips every valid slot and seq', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 0, max: SLOT_COUNT - 1 }),
                fc.integer({ min: 0, max: MAX_SEQ }),
                (slot, seq) => {
                    const id = encodeLoanId(slot, seq);
                    expect(id.ok).toBe(true);
                    if (!id.ok) return;
                    expect(decodeLoanId(id.value)).toEqual({ ok: true, value: { slot, seq } });
                    expect(parseLoanId(id.value.toString())).toEqual({
                        ok: true,
                        value: { slot, seq }
                    });
                }
            ),
            { numRuns: 500 }
        );
    });

    it('orders ids by slot, then by seq', () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 0, max: SLOT_COUNT - 2 }),
                fc.integer({ min: 0, max: MAX_SEQ }),
                fc.integer({ min: 0, max: MAX_SEQ }),
                (slot, seqA, seqB) => {
                    const a = encodeLoanId(slot, seqA);
                    const b = encodeLoanId(slot + 1, seqB);
                    if (!a.ok || !b.ok) throw new Error('valid inputs must encode');
                    expect(a.value < b.value).toBe(true);
                }
            ),
            { numRuns: 200 }
        );
    });

    it('rejects out-of-range or fractional slots and seqs with a typed error', () => {
        expect(encodeLoanId(-1, 0)).toMatchObject({ ok: false, field: 'slot' });
        expect(encodeLoanId(SLOT_COUNT, 0)).toMatchObject({ ok: false, field: 'slot' });
        expect(encodeLoanId(1.5, 0)).toMatchObject({ ok: false, field: 'slot' });
        expect(encodeLoanId(Number.NaN, 0)).toMatchObject({ ok: false, field: 'slot' });
        expect(encodeLoanId(0, -1)).toMatchObject({ ok: false, field: 'seq' });
        expect(encodeLoanId(0, MAX_SEQ + 1)).toMatchObject({ ok: false, field: 'seq' });
        expect(encodeLoanId(0, 0.5)).toMatchObject({ ok: false, field: 'seq' });
        expect(encodeLoanId(0, Infinity)).toMatchObject({ ok: false, field: 'seq' });
    });

    it('rejects user-supplied ids outside 0..2^62-1 without throwing', () => {
        const bad: unknown[] = [
            -1n,
            1n << 62n,
            (1n << 64n) - 1n,
            1n << 80n,
            5,
            '5',
            null,
            undefined
        ];
        for (const id of bad) {
            const result = decodeLoanId(id);
            expect(result).toMatchObject({ ok: false, field: 'id' });
        }
        fc.assert(
            fc.property(fc.bigInt({ min: 1n << 62n, max: 1n << 70n }), (id) => {
                expect(decodeLoanId(id).ok).toBe(false);
            }),
            { numRuns: 200 }
        );
    });

    it('rejects malformed decimal text without throwing', () => {
        for (const text of [
            '',
            '-1',
            '1e3',
            '0x10',
            ' 1',
            '12a',
            '9'.repeat(21),
            '4611686018427387904'
        ]) {
            expect(parseLoanId(text)).toMatchObject({ ok: false, field: 'id' });
        }
        fc.assert(
            fc.property(fc.string({ maxLength: 30 }), (text) => {
                const result = parseLoanId(text);
                if (result.ok) expect(/^[0-9]+$/.test(text)).toBe(true);
            }),
            { numRuns: 300 }
        );
    });
});
