import { IDL } from '@dfinity/candid';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { encodeLoanValue } from '../../src/shared/loan_codec';
import {
    DeleteResult,
    ExportBatch,
    ImportResult,
    ShardStats,
    SlotCountPage,
    SlotSeq,
    SpanChecksum
} from '../../src/shared/shard_api';
import {
    decodeImportLoansArgs,
    decodeOkShardMetricsReply,
    decodeOkShardStatsReply,
    decodeShardMetricsReply,
    decodeShardStatsReply,
    encodeApiErrorValue,
    encodeErrReply,
    encodeShardMetricsReply,
    encodeShardStatsReply,
    deleteResultReply,
    exportBatchReply,
    importResultReply,
    nat64Reply,
    shardMetricsCodec,
    shardStatsCodec,
    slotCountPageReply,
    spanChecksumReply,
    storedLoansReply,
    unitReply
} from '../../src/shared/shard_reply_codec';
import { ShardLoanPage } from '../../src/shared/shard_api';
import { ApiError, Loan, Result, ShardMetrics } from '../../src/shared/types';
import { loanArb, loanStatus, nat64, principal } from './arbitraries';

const nat32 = fc.nat({ max: 0xffff_ffff });
const float64 = fc.double();

const statsArb: fc.Arbitrary<ShardStats> = fc
    .record({
        shard_id: nat32,
        loan_count: nat64,
        owned_slots: nat32,
        by_status: fc.array(
            fc.record({ status: loanStatus, count: nat64 }).map((c) => ({
                status: { ...c.status },
                count: c.count
            })),
            { maxLength: 140 }
        ),
        total_requested: nat64,
        total_approved: nat64,
        total_repaid: nat64,
        read_only: fc.boolean(),
        epoch: nat64
    })
    .map((s) => ({ ...s }));

const metricsArb: fc.Arbitrary<ShardMetrics> = fc
    .record({
        loan_count: nat64,
        storage_used_bytes: nat64,
        storage_percentage: float64,
        message_count: nat64,
        error_count: nat64,
        avg_instructions_per_call: nat64,
        max_instructions_per_call: nat64,
        avg_response_time_ms: float64,
        owned_slots: nat32,
        is_read_only: fc.boolean(),
        collected_at: nat64
    })
    .map((m) => ({ ...m }));

const errors: ApiError[] = [
    { NotAuthorized: null },
    { InvalidInput: { field: 'limit', reason: 'too big' } },
    { WrongShard: { slot: 7, epoch: 3n } }
];

function idlEncode(type: IDL.Type, value: unknown): Uint8Array {
    return new Uint8Array(IDL.encode([Result(type)], [value]));
}

describe('shard reply codec', () => {
    it('writes get_shard_stats replies as IDL.encode does and reads them as IDL.decode does', () => {
        fc.assert(
            fc.property(statsArb, (stats) => {
                const theirs = idlEncode(ShardStats, { Ok: stats });
                const ours = encodeShardStatsReply({ Ok: stats });
                expect(ours).toEqual(theirs);
                const viaIdl = IDL.decode([Result(ShardStats)], theirs)[0];
                expect(decodeOkShardStatsReply(theirs)).toEqual((viaIdl as { Ok: unknown }).Ok);
                expect(decodeShardStatsReply(theirs)).toEqual(viaIdl);
                expect(decodeOkShardStatsReply(ours)).toEqual(stats);
            }),
            { numRuns: 300 }
        );
    });

    it('writes get_shard_metrics replies as IDL.encode does and reads them as IDL.decode does', () => {
        fc.assert(
            fc.property(metricsArb, (metrics) => {
                const theirs = idlEncode(ShardMetrics, { Ok: metrics });
                const ours = encodeShardMetricsReply({ Ok: metrics });
                expect(ours).toEqual(theirs);
                const viaIdl = IDL.decode([Result(ShardMetrics)], theirs)[0];
                expect(decodeOkShardMetricsReply(theirs)).toEqual((viaIdl as { Ok: unknown }).Ok);
                expect(decodeShardMetricsReply(theirs)).toEqual(viaIdl);
                expect(decodeOkShardMetricsReply(ours)).toEqual(metrics);
            }),
            { numRuns: 300 }
        );
    });

    it('encodes and decodes Err replies through IDL', () => {
        for (const error of errors) {
            const stats = encodeShardStatsReply({ Err: error });
            expect(stats).toEqual(idlEncode(ShardStats, { Err: error }));
            expect(decodeOkShardStatsReply(stats)).toBeUndefined();
            expect(decodeShardStatsReply(stats)).toEqual({ Err: error });
            const metrics = encodeShardMetricsReply({ Err: error });
            expect(metrics).toEqual(idlEncode(ShardMetrics, { Err: error }));
            expect(decodeOkShardMetricsReply(metrics)).toBeUndefined();
            expect(decodeShardMetricsReply(metrics)).toEqual({ Err: error });
        }
    });

    it('answers undefined for truncated, padded or corrupted Ok replies, and IDL.decode rejects them too', () => {
        fc.assert(
            fc.property(
                metricsArb,
                statsArb,
                fc.nat(),
                fc.integer({ min: 0, max: 255 }),
                (metrics, stats, cut, junk) => {
                    for (const [codec, reply, type] of [
                        [shardMetricsCodec, encodeShardMetricsReply({ Ok: metrics }), ShardMetrics],
                        [shardStatsCodec, encodeShardStatsReply({ Ok: stats }), ShardStats]
                    ] as const) {
                        const prefixLength = codec.okPrefix.length;
                        const truncated = reply.slice(
                            0,
                            prefixLength + (cut % (reply.length - prefixLength))
                        );
                        expect(codec.decodeOk(truncated)).toBeUndefined();
                        expect(() => codec.decodeReply(truncated)).toThrow();
                        const padded = new Uint8Array([...reply, junk]);
                        expect(codec.decodeOk(padded)).toBeUndefined();
                        expect(() => IDL.decode([Result(type as IDL.Type)], padded)).toThrow();
                    }
                }
            ),
            { numRuns: 100 }
        );
    });

    it('rejects a bad bool or status index where IDL.decode does', () => {
        const metrics = encodeShardMetricsReply({
            Ok: {
                loan_count: 1n,
                storage_used_bytes: 2n,
                storage_percentage: 0.5,
                message_count: 3n,
                error_count: 0n,
                avg_instructions_per_call: 4n,
                max_instructions_per_call: 5n,
                avg_response_time_ms: 0,
                owned_slots: 6,
                is_read_only: true,
                collected_at: 7n
            }
        });
        // Find the bool by flipping it: the only byte whose change to 0 gives is_read_only false.
        const boolAt = [...metrics.keys()].find((i) => {
            if (metrics[i] !== 1 || i < shardMetricsCodec.okPrefix.length) return false;
            const copy = metrics.slice();
            copy[i] = 0;
            return decodeOkShardMetricsReply(copy)?.is_read_only === false;
        })!;
        const bad = metrics.slice();
        bad[boolAt] = 2;
        expect(decodeOkShardMetricsReply(bad)).toBeUndefined();
        expect(() => decodeShardMetricsReply(bad)).toThrow();

        const stats = encodeShardStatsReply({
            Ok: {
                shard_id: 1,
                loan_count: 0n,
                owned_slots: 0,
                by_status: [{ status: { Active: null }, count: 9n }],
                total_requested: 0n,
                total_approved: 0n,
                total_repaid: 0n,
                read_only: false,
                epoch: 0n
            }
        });
        const decoded = decodeOkShardStatsReply(stats);
        expect(decoded?.by_status).toEqual([{ status: { Active: null }, count: 9n }]);
        for (let i = shardStatsCodec.okPrefix.length; i < stats.length; i++) {
            const copy = stats.slice();
            copy[i] = 6;
            let idl: unknown;
            try {
                idl = IDL.decode([Result(ShardStats)], copy)[0];
            } catch {
                idl = undefined;
            }
            const ours = decodeOkShardStatsReply(copy);
            if (idl === undefined) expect(ours).toBeUndefined();
            else expect({ Ok: ours }).toEqual(idl);
        }
    });

    it('writes the migration and control replies as IDL.encode does', () => {
        const slotSeq = fc.record({ slot: nat32, next_seq: nat64 }).map((x) => ({ ...x }));
        const cursor = fc
            .option(
                fc.record({ slot: nat32, seq: nat64 }).map((x) => ({ ...x })),
                { nil: undefined }
            )
            .map((c) => (c === undefined ? ([] as []) : ([c] as [typeof c])));
        fc.assert(
            fc.property(
                fc.array(loanArb(3, 3), { maxLength: 5 }),
                cursor,
                fc.array(slotSeq, { maxLength: 5 }),
                nat32,
                nat32,
                nat64,
                nat64,
                (loans, next_cursor, slot_seqs, a, b, x, y) => {
                    const stored = loans.map(encodeLoanValue);
                    const batch = { loans, next_cursor, slot_seqs };
                    expect(
                        exportBatchReply.encodeOk({ loans: stored, next_cursor, slot_seqs })
                    ).toEqual(idlEncode(ExportBatch, { Ok: batch }));
                    expect(storedLoansReply.encodeOk(stored)).toEqual(
                        idlEncode(IDL.Vec(Loan), { Ok: loans })
                    );
                    expect(nat64Reply.encodeOk(x)).toEqual(idlEncode(IDL.Nat64, { Ok: x }));
                    const imported = { imported: a, skipped: b };
                    expect(importResultReply.encodeOk(imported)).toEqual(
                        idlEncode(ImportResult, { Ok: imported })
                    );
                    const deleted = { deleted: a, remaining: x };
                    expect(deleteResultReply.encodeOk(deleted)).toEqual(
                        idlEncode(DeleteResult, { Ok: deleted })
                    );
                    const sum = { count: x, checksum: y };
                    expect(spanChecksumReply.encodeOk(sum)).toEqual(
                        idlEncode(SpanChecksum, { Ok: sum })
                    );
                }
            ),
            { numRuns: 200 }
        );
        expect(unitReply.encodeOk(null)).toEqual(idlEncode(IDL.Null, { Ok: null }));
        for (const error of errors) {
            expect(unitReply.encodeReply({ Err: error })).toEqual(
                idlEncode(IDL.Null, { Err: error })
            );
            expect(exportBatchReply.encodeReply({ Err: error })).toEqual(
                idlEncode(ExportBatch, { Err: error })
            );
        }
    });

    it('decodes import_loans arguments as IDL.decode does, and leaves other encodings to it', () => {
        const slotSeq = fc.record({ slot: nat32, next_seq: nat64 }).map((x) => ({ ...x }));
        const types = [IDL.Vec(Loan), IDL.Vec(SlotSeq)];
        fc.assert(
            fc.property(
                fc.array(loanArb(3, 3), { maxLength: 5 }),
                fc.array(slotSeq, { maxLength: 5 }),
                (loans, slot_seqs) => {
                    const arg = new Uint8Array(IDL.encode(types, [loans, slot_seqs]));
                    const [l, s] = IDL.decode(types, arg);
                    expect(decodeImportLoansArgs(arg)).toEqual({ loans: l, slot_seqs: s });
                    expect(decodeImportLoansArgs(arg)).toEqual({ loans, slot_seqs });
                    expect(decodeImportLoansArgs(arg.slice(0, arg.length - 1))).toBeUndefined();
                    expect(decodeImportLoansArgs(new Uint8Array([...arg, 0]))).toBeUndefined();
                    const one = new Uint8Array(IDL.encode([types[0]], [loans]));
                    expect(decodeImportLoansArgs(one)).toBeUndefined();
                }
            ),
            { numRuns: 200 }
        );
    });

    it('writes Err replies of any Ok type as IDL.encode does', () => {
        const text = fc.oneof(
            fc.string(),
            fc.string({ unit: 'grapheme' }),
            fc.string({ unit: 'binary' })
        );
        const apiError: fc.Arbitrary<ApiError> = fc.oneof(
            fc.constant({ NotAuthorized: null }),
            fc.record({ field: text, reason: text }).map((x) => ({ InvalidInput: { ...x } })),
            fc.record({ what: text, id: text }).map((x) => ({ NotFound: { ...x } })),
            fc
                .record({ shard_id: nat32, reason: text })
                .map((x) => ({ ShardUnavailable: { ...x } })),
            fc.record({ slot: nat32, epoch: nat64 }).map((x) => ({ WrongShard: { ...x } })),
            fc
                .record({ reason: text, retriable: fc.boolean() })
                .map((x) => ({ ReadOnly: { ...x } })),
            fc
                .record({ resource: text, limit: nat64 })
                .map((x) => ({ CapacityExceeded: { ...x } })),
            fc
                .record({ from: loanStatus, action: text })
                .map((x) => ({ InvalidTransition: { from: { ...x.from }, action: x.action } })),
            fc.record({ reason: text }).map((x) => ({ Busy: { ...x } })),
            fc
                .record({ callee: principal, reject_code: nat32, message: text })
                .map((x) => ({ CallFailed: { ...x } }))
        );
        fc.assert(
            fc.property(apiError, (error) => {
                expect(encodeApiErrorValue(error)).toEqual(
                    new Uint8Array(IDL.encode([ApiError], [error])).slice(
                        -encodeApiErrorValue(error).length
                    )
                );
                for (const type of [Loan, ShardLoanPage, ShardStats, IDL.Null, IDL.Nat64]) {
                    expect(encodeErrReply(type, error)).toEqual(idlEncode(type, { Err: error }));
                }
            }),
            { numRuns: 300 }
        );
    });

    it('writes get_slot_counts pages as IDL.encode does', () => {
        const page = fc
            .record({
                counts: fc.array(
                    fc.record({ slot: nat32, count: nat64 }).map((c) => ({ ...c })),
                    { maxLength: 20 }
                ),
                next_cursor: fc
                    .option(nat32, { nil: undefined })
                    .map((c): [] | [number] => (c === undefined ? [] : [c]))
            })
            .map((p) => ({ ...p }));
        fc.assert(
            fc.property(page, (p) => {
                expect(slotCountPageReply.encodeOk(p)).toEqual(idlEncode(SlotCountPage, { Ok: p }));
            }),
            { numRuns: 200 }
        );
    });
});
