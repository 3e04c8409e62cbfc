import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { stableJson } from 'azle';

import { shardRecordCodec, type ShardRecord } from '../../src/factory/store';

const metrics = fc.record({
    loan_count: fc.bigInt(0n, (1n << 64n) - 1n),
    storage_used_bytes: fc.bigInt(0n, (1n << 64n) - 1n),
    storage_percentage: fc.double({ noNaN: true }),
    message_count: fc.bigInt(0n, (1n << 64n) - 1n),
    error_count: fc.bigInt(0n, (1n << 64n) - 1n),
    avg_instructions_per_call: fc.bigInt(0n, (1n << 64n) - 1n),
    max_instructions_per_call: fc.bigInt(0n, (1n << 64n) - 1n),
    avg_response_time_ms: fc.double({ noNaN: true }),
    owned_slots: fc.nat(0xffff_ffff),
    is_read_only: fc.boolean(),
    collected_at: fc.bigInt(0n, (1n << 64n) - 1n)
});

const shardRecord: fc.Arbitrary<ShardRecord> = fc
    .record({
        shard_id: fc.nat(0xffff_ffff),
        canister_id: fc.string({ maxLength: 63 }),
        created_at: fc.bigInt(0n, (1n << 64n) - 1n),
        region: fc.string({ unit: 'grapheme', maxLength: 16 }),
        is_active: fc.boolean(),
        is_read_only: fc.boolean(),
        installed: fc.boolean(),
        subnet: fc.option(fc.string({ maxLength: 63 }), { nil: null }),
        memory_size_bytes: fc.bigInt(0n, (1n << 64n) - 1n),
        cycles_balance: fc.bigInt(0n, 1n << 100n),
        metrics: fc.option(metrics, { nil: null })
    })
    .map((r) => ({ ...r, metrics: r.metrics === null ? null : { ...r.metrics } }));

describe('the factory stores shard records as Candid', () => {
    it('round-trips every record', () => {
        fc.assert(
            fc.property(shardRecord, (r) => {
                expect(shardRecordCodec.fromBytes(shardRecordCodec.toBytes(r))).toEqual(r);
            })
        );
    });

    it('still reads records an earlier version wrote as JSON', () => {
        fc.assert(
            fc.property(shardRecord, (r) => {
                expect(shardRecordCodec.fromBytes(stableJson.toBytes(r))).toEqual(r);
            })
        );
    });

    it('reads a record without a subnet field (written before placement existed)', () => {
        const legacy = {
            ...fc.sample(shardRecord, { numRuns: 1, seed: 3 })[0]
        } as Partial<ShardRecord>;
        delete legacy.subnet;
        const back = shardRecordCodec.fromBytes(stableJson.toBytes(legacy)) as ShardRecord;
        expect(back.subnet ?? null).toBeNull();
        const again = shardRecordCodec.fromBytes(shardRecordCodec.toBytes(back)) as ShardRecord;
        expect(again.subnet).toBeNull();
    });
});
