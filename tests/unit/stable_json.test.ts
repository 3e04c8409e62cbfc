import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { Principal } from '@dfinity/principal';
import { stableJson } from 'azle';

import { azleJson } from '../../src/shared/stable_json';

/** Values as the factory stores them: JSON plus bigints, principals, bytes and special numbers. */
const leaf = fc.oneof(
    fc.string(),
    fc.string({ unit: 'grapheme' }),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.bigInt(-(1n << 70n), 1n << 70n),
    fc.uint8Array({ maxLength: 40 }),
    fc.uint32Array({ maxLength: 5 }),
    fc.uint8Array({ minLength: 0, maxLength: 29 }).map((b) => Principal.fromUint8Array(b))
);
const value = fc.letrec((tie) => ({
    node: fc.oneof(
        { depthSize: 'small' },
        leaf,
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(fc.string({ maxLength: 6 }), tie('node'), { maxKeys: 4 })
    )
})).node;

describe('azleJson', () => {
    it('writes the bytes of Azle stableJson', () => {
        fc.assert(
            fc.property(value, (v) => {
                expect(azleJson.toBytes(v)).toEqual(stableJson.toBytes(v));
            }),
            { numRuns: 500 }
        );
    });

    it('reads back what Azle stableJson wrote, as stableJson reads it', () => {
        fc.assert(
            fc.property(value, (v) => {
                const bytes = stableJson.toBytes(v);
                expect(azleJson.fromBytes(bytes)).toEqual(stableJson.fromBytes(bytes));
            }),
            { numRuns: 500 }
        );
    });

    it('round-trips a shard record with bigints, bytes and an absent field', () => {
        const record = {
            shard_id: 3,
            canister_id: 'aaaaa-aa',
            created_at: 1_700_000_000_000_000_000n,
            subnet: undefined,
            metrics: { loan_count: 12n, storage_percentage: 0.5, is_read_only: false },
            hash: new Uint8Array([1, 2, 255]),
            detail: 'europe → asia'
        };
        const back = azleJson.fromBytes(azleJson.toBytes(record)) as typeof record;
        expect(back).toEqual(record);
        expect(back.hash).toBeInstanceOf(Uint8Array);
        expect('subnet' in back).toBe(false);
    });
});
