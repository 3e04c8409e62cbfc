import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { IDL } from '@dfinity/candid';
import { idlLabelToId } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { canister_status_result } from 'azle/canisters/management/idl';

import {
    allShardsReply,
    decodeTextArg,
    encodeValues,
    MessageCodec,
    migrationReply,
    natFieldsOfRecord,
    OpaqueValue,
    fieldHash,
    NO_ARGS,
    routingTableMessage,
    SAMPLE_SHARD_INFO,
    scalabilityMetricsReply,
    scalingAdviceReply,
    shardInfoReply
} from '../../src/shared/factory_codec';
import { MigrationInfo, ScalabilityMetrics, ScalingAdvice } from '../../src/shared/factory_api';
import { SHARD_METHODS } from '../../src/shared/shard_api';
import { Loan, Result, RoutingTable, ShardInfo, UnitResult } from '../../src/shared/types';

/** Arbitrary values of an IDL type (the types the factory codec writes); `ascii` texts only. */
function arbitraryOf(type: IDL.Type, ascii = false): fc.Arbitrary<unknown> {
    if (type instanceof IDL.RecordClass) {
        const fields: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [name, t] of type._fields) fields[name] = arbitraryOf(t, ascii);
        return fc.record(fields).map((v) => ({ ...v }));
    }
    if (type instanceof IDL.VariantClass) {
        return fc.oneof(
            ...type._fields.map(([name, t]) => arbitraryOf(t, ascii).map((v) => ({ [name]: v })))
        );
    }
    if (type instanceof IDL.VecClass) {
        return fc.array(arbitraryOf(type._type, ascii), { maxLength: 5 });
    }
    if (type instanceof IDL.OptClass) {
        return fc
            .option(arbitraryOf(type._type), { nil: undefined })
            .map((v) => (v === undefined ? [] : [v]));
    }
    if (type instanceof IDL.TextClass) {
        return fc.string({ unit: ascii ? 'binary-ascii' : 'grapheme', maxLength: 12 });
    }
    if (type instanceof IDL.NatClass) return fc.bigInt(0n, 1n << 100n);
    if (type instanceof IDL.FixedNatClass && type._bits === 64)
        return fc.bigInt(0n, (1n << 64n) - 1n);
    if (type instanceof IDL.FixedNatClass && type._bits === 32) return fc.nat(0xffff_ffff);
    if (type instanceof IDL.FixedNatClass && type._bits === 8) return fc.nat(255);
    if (type instanceof IDL.FloatClass) return fc.double();
    if (type instanceof IDL.BoolClass) return fc.boolean();
    if (type instanceof IDL.NullClass) return fc.constant(null);
    if (type instanceof IDL.PrincipalClass) {
        return fc.uint8Array({ maxLength: 29 }).map((b) => Principal.fromUint8Array(b));
    }
    throw new Error(`no arbitrary for ${type.display()}`);
}

function encoded(types: IDL.Type[], values: unknown[]): Uint8Array {
    return new Uint8Array(IDL.encode(types, values));
}

describe('factory codec', () => {
    const cases: [string, MessageCodec<never>, IDL.Type][] = [
        ['get_scalability_metrics', scalabilityMetricsReply as never, ScalabilityMetrics],
        ['get_routing_table', routingTableMessage as never, RoutingTable],
        ['get_all_shards', allShardsReply as never, IDL.Vec(ShardInfo)],
        ['get_migration', migrationReply as never, Result(MigrationInfo)],
        ['get_active_shard', shardInfoReply as never, Result(ShardInfo)],
        ['get_scaling_recommendations', scalingAdviceReply as never, IDL.Vec(ScalingAdvice)]
    ];
    for (const [name, codec, type] of cases) {
        it(`encodes ${name} as IDL.encode does`, () => {
            fc.assert(
                fc.property(arbitraryOf(type), (value) => {
                    const bytes = codec.encode([value] as never);
                    expect(bytes).toEqual(encoded([type], [value]));
                    // And the bytes read back to the value.
                    expect(IDL.decode([type], bytes)).toHaveLength(1);
                }),
                { numRuns: 200 }
            );
        });
    }

    it('encodes errors of a Result like IDL.encode', () => {
        fc.assert(
            fc.property(arbitraryOf(UnitResult), (value) => {
                expect(encodeValues([UnitResult], [value])).toEqual(
                    encoded([UnitResult], [value]).slice(
                        -encodeValues([UnitResult], [value]).length
                    )
                );
                const codec = new MessageCodec([UnitResult], [value]);
                expect(codec.encode([value])).toEqual(encoded([UnitResult], [value]));
            }),
            { numRuns: 100 }
        );
    });

    it('writes a shard list with a large cycles balance and non-ASCII regions', () => {
        const shard = {
            ...SAMPLE_SHARD_INFO,
            shard_id: 7,
            cycles_balance: (1n << 90n) + 5n,
            region: 'europe-ü',
            canister_id: Principal.fromText('rrkah-fqaaa-aaaaa-aaaaq-cai')
        };
        expect(allShardsReply.encode([[shard, SAMPLE_SHARD_INFO]])).toEqual(
            encoded([IDL.Vec(ShardInfo)], [[shard, SAMPLE_SHARD_INFO]])
        );
    });

    it('refuses types it cannot write when built', () => {
        expect(() => new MessageCodec([IDL.Int], [0n])).toThrow(/no hand encoding/);
        expect(NO_ARGS).toEqual(encoded([], []));
    });
});

describe('decodeTextArg', () => {
    it('reads short ASCII text arguments and leaves the rest to IDL.decode', () => {
        fc.assert(
            fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (text) => {
                const arg = encoded([IDL.Text], [text]);
                const hand = decodeTextArg(arg);
                if (hand !== undefined) expect(hand).toBe(text);
                else
                    expect(
                        [...text].some((c) => c.charCodeAt(0) >= 0x80) || text.length > 127
                    ).toBe(true);
            })
        );
        expect(decodeTextArg(encoded([IDL.Text, IDL.Nat32], ['m-1', 1]))).toBeUndefined();
        expect(decodeTextArg(encoded([IDL.Nat32], [1]))).toBeUndefined();
    });
});

describe('MessageCodec.of: the shard methods the factory calls', () => {
    for (const [method, sig] of Object.entries(SHARD_METHODS)) {
        it(`encodes ${method}'s arguments and decodes its replies as @dfinity/candid does`, () => {
            const args = MessageCodec.of(sig.args);
            const ret = MessageCodec.of([sig.ret]);
            fc.assert(
                fc.property(
                    fc.tuple(...sig.args.map((t) => arbitraryOf(t, true))),
                    arbitraryOf(sig.ret, true),
                    (argValues, reply) => {
                        expect(args.encode(argValues)).toEqual(encoded(sig.args, argValues));
                        const bytes = encoded([sig.ret], [reply]);
                        expect(ret.decode(bytes)).toEqual(IDL.decode([sig.ret], bytes));
                        expect(args.decode(encoded(sig.args, argValues))).toEqual(
                            IDL.decode(sig.args, encoded(sig.args, argValues))
                        );
                    }
                ),
                { numRuns: 40 }
            );
        });
    }

    it('leaves truncated, trailing, foreign and non-ASCII messages to IDL.decode', () => {
        const ret = MessageCodec.of([SHARD_METHODS.span_checksum.ret]);
        const ok = encoded(
            [SHARD_METHODS.span_checksum.ret],
            [{ Ok: { count: 3n, checksum: 9n } }]
        );
        expect(ret.decode(ok)).toEqual([{ Ok: { count: 3n, checksum: 9n } }]);
        expect(ret.decode(ok.slice(0, ok.length - 1))).toBeUndefined();
        expect(ret.decode(new Uint8Array([...ok, 0]))).toBeUndefined();
        expect(ret.decode(encoded([IDL.Nat64], [3n]))).toBeUndefined();
        const err = encoded([UnitResult], [{ Err: { Busy: { reason: 'é' } } }]);
        expect(MessageCodec.of([UnitResult]).decode(err)).toBeUndefined();
        const ascii = encoded([UnitResult], [{ Err: { Busy: { reason: 'e' } } }]);
        expect(MessageCodec.of([UnitResult]).decode(ascii)).toEqual([
            { Err: { Busy: { reason: 'e' } } }
        ]);
    });
});

describe('natFieldsOfRecord', () => {
    it('reads cycles and memory_size of any canister_status reply as IDL.decode does', () => {
        fc.assert(
            fc.property(arbitraryOf(canister_status_result), (status) => {
                const bytes = encoded([canister_status_result], [status]);
                const decoded = IDL.decode([canister_status_result], bytes)[0] as unknown as {
                    cycles: bigint;
                    memory_size: bigint;
                };
                expect(natFieldsOfRecord(bytes, ['cycles', 'memory_size'])).toEqual({
                    cycles: decoded.cycles,
                    memory_size: decoded.memory_size
                });
            }),
            { numRuns: 200 }
        );
    });

    it('reads a record whose type table another encoder ordered differently', () => {
        // Same fields, a reply type with the record inside an extra table entry first.
        const Reply = IDL.Record({
            memory_size: IDL.Nat,
            extra: IDL.Vec(IDL.Opt(IDL.Text)),
            cycles: IDL.Nat
        });
        const bytes = encoded(
            [Reply, IDL.Nat32],
            [{ memory_size: 7n, extra: [[], ['x']], cycles: 1n << 80n }, 3]
        );
        expect(natFieldsOfRecord(bytes, ['cycles', 'memory_size'])).toEqual({
            cycles: 1n << 80n,
            memory_size: 7n
        });
    });

    it('answers undefined when a field is missing, not a nat, or the bytes are bad', () => {
        const NoCycles = IDL.Record({ memory_size: IDL.Nat });
        expect(
            natFieldsOfRecord(encoded([NoCycles], [{ memory_size: 1n }]), ['cycles'])
        ).toBeUndefined();
        const Wrong = IDL.Record({ cycles: IDL.Nat64 });
        expect(natFieldsOfRecord(encoded([Wrong], [{ cycles: 1n }]), ['cycles'])).toBeUndefined();
        const ok = encoded([IDL.Record({ cycles: IDL.Nat })], [{ cycles: 300n }]);
        expect(natFieldsOfRecord(ok, ['cycles'])).toEqual({ cycles: 300n });
        expect(natFieldsOfRecord(ok.slice(0, ok.length - 1), ['cycles'])).toBeUndefined();
        expect(natFieldsOfRecord(encoded([IDL.Nat], [1n]), ['cycles'])).toBeUndefined();
    });

    it('hashes field names as Candid does', () => {
        fc.assert(
            fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (name) => {
                expect(fieldHash(name)).toBe(idlLabelToId(name));
            })
        );
    });
});

describe('opaque values: export batch loans passed on to import_loans unread', () => {
    it('re-encodes the loans of an export batch as the import argument IDL.encode writes', () => {
        const exportReply = MessageCodec.of<[unknown]>([SHARD_METHODS.export_slot_batch.ret], Loan);
        const importArgs = MessageCodec.of<unknown[]>(SHARD_METHODS.import_loans.args);
        fc.assert(
            fc.property(arbitraryOf(SHARD_METHODS.export_slot_batch.ret, true), (reply) => {
                const bytes = encoded([SHARD_METHODS.export_slot_batch.ret], [reply]);
                const [passed] = exportReply.decode(bytes)! as [
                    { Ok: { loans: unknown[]; slot_seqs: unknown[] } } | { Err: unknown }
                ];
                const [decoded] = IDL.decode(
                    [SHARD_METHODS.export_slot_batch.ret],
                    bytes
                ) as unknown as [
                    { Ok: { loans: unknown[]; slot_seqs: unknown[] } } | { Err: unknown }
                ];
                if (!('Ok' in passed) || !('Ok' in decoded)) {
                    expect(passed).toEqual(decoded);
                    return;
                }
                for (const loan of passed.Ok.loans) expect(loan).toBeInstanceOf(OpaqueValue);
                expect(importArgs.encode([passed.Ok.loans, passed.Ok.slot_seqs])).toEqual(
                    encoded(SHARD_METHODS.import_loans.args, [
                        decoded.Ok.loans,
                        decoded.Ok.slot_seqs
                    ])
                );
            }),
            { numRuns: 100 }
        );
    });

    it('refuses a truncated loan instead of passing it on', () => {
        const exportReply = MessageCodec.of<[unknown]>([SHARD_METHODS.export_slot_batch.ret], Loan);
        const sample = fc.sample(arbitraryOf(Loan, true), { numRuns: 1, seed: 7 })[0];
        const bytes = encoded(
            [SHARD_METHODS.export_slot_batch.ret],
            [{ Ok: { loans: [sample], next_cursor: [], slot_seqs: [] } }]
        );
        expect(exportReply.decode(bytes)).toBeDefined();
        expect(exportReply.decode(bytes.slice(0, bytes.length - 3))).toBeUndefined();
    });
});
