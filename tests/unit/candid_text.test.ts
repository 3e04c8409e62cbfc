/**
 * Candid text (scripts/lib/candid_text.ts), the argument parser and reply printer of
 * `npm run call`: printing any value of a random Candid type and parsing the text back gives the
 * same value (and the same bytes on the wire); literals take their meaning from the expected type;
 * bad text fails with a `CandidTextError` naming the line and column; `.did` files parse into
 * the services the declarations describe.
 */
import { readFileSync } from 'node:fs';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { idlFactory as routerIdl } from '../../src/declarations/router/router.did.js';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { idlFactory as shardIdl } from '../../src/declarations/data_shard/data_shard.did.js';
import {
    CandidTextError,
    MAX_CANDID_DEPTH,
    parseCandidArgs,
    parseCandidValue,
    parseDid,
    printCandidArgs,
    printCandidValue
} from '../../scripts/lib/candid_text';

/** Labels that exercise identifiers, keywords, quoted names and numeric ids. */
const LABELS = [
    'a',
    'b',
    'borrower',
    'Ok',
    'Err',
    'opt',
    'type',
    '_1_',
    '_7_',
    'with space',
    'é',
    ''
];

const LEAVES: IDL.Type[] = [
    IDL.Null,
    IDL.Bool,
    IDL.Nat,
    IDL.Int,
    IDL.Nat8,
    IDL.Nat16,
    IDL.Nat32,
    IDL.Nat64,
    IDL.Int8,
    IDL.Int16,
    IDL.Int32,
    IDL.Int64,
    IDL.Float32,
    IDL.Float64,
    IDL.Text,
    IDL.Principal,
    IDL.Reserved
];

/** Random Candid types, at most 4 levels deep. */
const typeArb: fc.Arbitrary<IDL.Type> = fc.letrec<{ type: IDL.Type }>((tie) => ({
    type: fc.oneof(
        { depthSize: 'small', maxDepth: 4, withCrossShrink: true },
        fc.constantFrom(...LEAVES),
        tie('type').map((t) => IDL.Opt(t)),
        tie('type').map((t) => IDL.Vec(t)),
        fc
            .uniqueArray(fc.tuple(fc.constantFrom(...LABELS), tie('type')), {
                selector: ([k]) => k,
                maxLength: 4
            })
            .map((fs) => IDL.Record(Object.fromEntries(fs))),
        fc.array(tie('type'), { minLength: 1, maxLength: 3 }).map((ts) => IDL.Tuple(...ts)),
        fc
            .uniqueArray(fc.tuple(fc.constantFrom(...LABELS), tie('type')), {
                selector: ([k]) => k,
                minLength: 1,
                maxLength: 4
            })
            .map((fs) => IDL.Variant(Object.fromEntries(fs)))
    )
})).type;

/** Random values of a type (then canonicalised through encode/decode). */
function valueArb(t: IDL.Type): fc.Arbitrary<unknown> {
    if (t instanceof IDL.NullClass || t instanceof IDL.ReservedClass) return fc.constant(null);
    if (t instanceof IDL.BoolClass) return fc.boolean();
    if (t instanceof IDL.TextClass) return fc.string({ unit: 'grapheme', maxLength: 12 });
    if (t instanceof IDL.NatClass) return fc.bigInt({ min: 0n, max: 1n << 100n });
    if (t instanceof IDL.IntClass) return fc.bigInt({ min: -(1n << 100n), max: 1n << 100n });
    if (t instanceof IDL.FixedNatClass) {
        const max = (1n << BigInt(t._bits)) - 1n;
        return t._bits <= 32
            ? fc.integer({ min: 0, max: Number(max) })
            : fc.bigInt({ min: 0n, max });
    }
    if (t instanceof IDL.FixedIntClass) {
        const half = 1n << BigInt(t._bits - 1);
        return t._bits <= 32
            ? fc.integer({ min: -Number(half), max: Number(half) - 1 })
            : fc.bigInt({ min: -half, max: half - 1n });
    }
    if (t instanceof IDL.FloatClass) return fc.double();
    if (t instanceof IDL.PrincipalClass) {
        return fc.uint8Array({ maxLength: 29 }).map((b) => Principal.fromUint8Array(b));
    }
    if (t instanceof IDL.OptClass) {
        return fc.oneof(
            fc.constant([]),
            valueArb(t._type).map((v) => [v])
        );
    }
    if (t instanceof IDL.VecClass) return fc.array(valueArb(t._type), { maxLength: 3 });
    if (t instanceof IDL.TupleClass) {
        const cs = (t as unknown as { _components: IDL.Type[] })._components;
        return fc.tuple(...cs.map(valueArb));
    }
    if (t instanceof IDL.RecordClass) {
        return fc
            .record(Object.fromEntries(t._fields.map(([k, ft]) => [k, valueArb(ft)])))
            .map((r) => ({ ...(r as object) }));
    }
    if (t instanceof IDL.VariantClass) {
        return fc.oneof(...t._fields.map(([k, ft]) => valueArb(ft).map((v) => ({ [k]: v }))));
    }
    throw new Error(`no generator for ${t.display()}`);
}

const argsArb = fc
    .array(typeArb, { maxLength: 3 })
    .chain((types) =>
        fc.tuple(fc.constant(types), fc.tuple(...types.map(valueArb)) as fc.Arbitrary<unknown[]>)
    )
    .map(([types, values]) => {
        const bytes = IDL.encode(types, values);
        return { types, values: IDL.decode(types, bytes), bytes };
    });

/** The error a parse throws (fails the test if it does not throw one). */
function errorOf(run: () => unknown): CandidTextError {
    try {
        run();
    } catch (e) {
        if (e instanceof CandidTextError) return e;
        throw e;
    }
    throw new Error('expected a CandidTextError');
}

describe('Candid text round trip', () => {
    it('parses what it prints: same values, same bytes', () => {
        fc.assert(
            fc.property(argsArb, ({ types, values, bytes }) => {
                const text = printCandidArgs(types, values);
                const parsed = parseCandidArgs(text, types);
                expect(parsed).toEqual(values);
                expect(new Uint8Array(IDL.encode(types, parsed))).toEqual(new Uint8Array(bytes));
            }),
            { numRuns: 400 }
        );
    });

    it('round-trips every argument and reply type of the product canisters', () => {
        for (const factory of [routerIdl, factoryIdl, shardIdl]) {
            const service = (factory as IDL.InterfaceFactory)({ IDL }) as IDL.ServiceClass;
            for (const [, func] of service._fields)
                for (const types of [func.argTypes, func.retTypes]) {
                    fc.assert(
                        fc.property(fc.tuple(...types.map(valueArb)), (values) => {
                            const decoded = IDL.decode(types, IDL.encode(types, values));
                            const text = printCandidArgs(types, decoded);
                            expect(parseCandidArgs(text, types)).toEqual(decoded);
                        }),
                        { numRuns: 10 }
                    );
                }
        }
    });
});

describe('Candid text parser', () => {
    it('reads a literal by the expected type', () => {
        expect(parseCandidValue('5', IDL.Nat32)).toBe(5);
        expect(parseCandidValue('5', IDL.Nat64)).toBe(5n);
        expect(parseCandidValue('-5', IDL.Int)).toBe(-5n);
        expect(parseCandidValue('5', IDL.Float64)).toBe(5);
        expect(parseCandidValue('1_000_000', IDL.Nat)).toBe(1_000_000n);
        expect(parseCandidValue('0xff', IDL.Nat8)).toBe(255);
        expect(parseCandidValue('18_446_744_073_709_551_615 : nat64', IDL.Nat64)).toBe(
            2n ** 64n - 1n
        );
        expect(parseCandidValue('1.5e3', IDL.Float64)).toBe(1500);
    });

    it('reads records by name, by number and as tuples, with opt fields defaulting to null', () => {
        const Loan = IDL.Record({
            borrower: IDL.Principal,
            amount: IDL.Nat64,
            due: IDL.Opt(IDL.Nat64)
        });
        expect(
            parseCandidValue(
                'record { borrower = principal "aaaaa-aa"; amount = 1_000 : nat64 }',
                Loan
            )
        ).toEqual({ borrower: Principal.fromText('aaaaa-aa'), amount: 1000n, due: [] });
        const Pair = IDL.Tuple(IDL.Text, IDL.Nat32);
        expect(parseCandidValue('record { "x"; 2 }', Pair)).toEqual(['x', 2]);
        expect(parseCandidValue('record { 1 = 2; 0 = "x" }', Pair)).toEqual(['x', 2]);
    });

    it('reads variants with and without a value, opt and null, vec and blob', () => {
        const R = IDL.Variant({
            Ok: IDL.Null,
            Err: IDL.Variant({ NotFound: IDL.Record({ id: IDL.Text }) })
        });
        expect(parseCandidValue('variant { Ok }', R)).toEqual({ Ok: null });
        expect(
            parseCandidValue('variant { Err = variant { NotFound = record { id = "7" } } }', R)
        ).toEqual({
            Err: { NotFound: { id: '7' } }
        });
        expect(parseCandidValue('opt opt 3', IDL.Opt(IDL.Opt(IDL.Nat)))).toEqual([[3n]]);
        expect(parseCandidValue('opt (50 : nat32)', IDL.Opt(IDL.Nat32))).toEqual([50]);
        expect(parseCandidValue('null', IDL.Opt(IDL.Nat))).toEqual([]);
        expect(parseCandidValue('vec { 1; 2; }', IDL.Vec(IDL.Nat))).toEqual([1n, 2n]);
        expect(parseCandidValue('blob "a\\00\\ff"', IDL.Vec(IDL.Nat8))).toEqual(
            new Uint8Array([97, 0, 255])
        );
        expect(parseCandidValue('vec { 1; 2 }', IDL.Vec(IDL.Nat8))).toEqual(new Uint8Array([1, 2]));
    });

    it('reads text escapes and comments', () => {
        expect(parseCandidValue('"a\\n\\t\\"\\u{1F600}\\e2\\82\\ac" // note', IDL.Text)).toBe(
            'a\n\t"😀€'
        );
        expect(parseCandidArgs('( /* first */ 1, "x", )', [IDL.Nat, IDL.Text])).toEqual([1n, 'x']);
    });

    it('fills missing trailing opt arguments with null and reads one bare value', () => {
        expect(parseCandidArgs('(1)', [IDL.Nat, IDL.Opt(IDL.Nat)])).toEqual([1n, []]);
        expect(parseCandidArgs('', [IDL.Opt(IDL.Text)])).toEqual([[]]);
        expect(parseCandidArgs('"x"', [IDL.Text])).toEqual(['x']);
        expect(parseCandidArgs('()', [])).toEqual([]);
    });

    it('rejects bad text with the line and column', () => {
        const cases: [string, IDL.Type[], string, number, number][] = [
            ['(1', [IDL.Nat], 'expected `)`', 1, 3],
            ['(256)', [IDL.Nat8], '256 is out of range for nat8', 1, 2],
            ['(-1)', [IDL.Nat], 'out of range for nat', 1, 2],
            ['(1.5)', [IDL.Int], 'not an integer', 1, 2],
            ['(\n  record { x = 1 })', [IDL.Record({ y: IDL.Nat })], 'no field x', 2, 12],
            ['(record {})', [IDL.Record({ y: IDL.Nat })], 'missing field y', 1, 11],
            ['("abc)', [IDL.Text], 'unterminated text literal', 1, 2],
            ['("\\q")', [IDL.Text], 'bad escape', 1, 3],
            ['(principal "not a principal")', [IDL.Principal], 'not a principal', 1, 12],
            ['(1, 2)', [IDL.Nat], 'too many arguments', 1, 5],
            ['()', [IDL.Nat], 'missing argument 1', 1, 3],
            [
                '(variant { A; B })',
                [IDL.Variant({ A: IDL.Null, B: IDL.Null })],
                'exactly one tag',
                1,
                15
            ],
            ['(variant { C })', [IDL.Variant({ A: IDL.Null })], 'no tag C', 1, 12],
            ['(variant { A })', [IDL.Variant({ A: IDL.Nat })], 'carries a nat', 1, 12],
            ['(5 : nat32)', [IDL.Nat64], 'annotation nat32 does not match', 1, 4],
            ['(5) x', [IDL.Nat], 'unexpected `x`', 1, 5],
            ['(opt 5)', [IDL.Nat], 'expected a number of type nat', 1, 2],
            ['(5)', [IDL.Opt(IDL.Nat)], '`opt <value>` or `null`', 1, 2],
            ['(record { a = 1; a = 2 })', [IDL.Record({ a: IDL.Nat })], 'given twice', 1, 18],
            ['(#)', [IDL.Nat], 'unexpected character "#"', 1, 2],
            ['(blob "\\ff")', [IDL.Text], 'expected a text literal', 1, 2],
            ['("\\ff")', [IDL.Text], 'not valid UTF-8', 1, 2]
        ];
        for (const [text, types, reason, line, column] of cases) {
            const e = errorOf(() => parseCandidArgs(text, types));
            expect(e.reason, text).toContain(reason);
            expect([e.line, e.column], text).toEqual([line, column]);
            expect(e.message, text).toContain(`at line ${line}, column ${column}`);
        }
    });

    it('bounds nesting instead of overflowing the stack', () => {
        const List = IDL.Rec();
        List.fill(IDL.Opt(List));
        const deep = `${'opt '.repeat(MAX_CANDID_DEPTH + 10)}null`;
        expect(errorOf(() => parseCandidValue(deep, List)).reason).toContain('nests too deeply');
        const ok = `${'opt '.repeat(50)}null`;
        expect(printCandidValue(List, parseCandidValue(ok, List))).toBe(ok);
    });
});

describe('README examples', () => {
    it("type-check against the declarations: every `dfx canister call` line's arguments parse", () => {
        const services: Record<string, IDL.ServiceClass> = {
            router: (routerIdl as IDL.InterfaceFactory)({ IDL }) as IDL.ServiceClass,
            factory: (factoryIdl as IDL.InterfaceFactory)({ IDL }) as IDL.ServiceClass,
            data_shard: (shardIdl as IDL.InterfaceFactory)({ IDL }) as IDL.ServiceClass
        };
        // Arguments in single quotes, or in double quotes with \" and $(dfx canister id …).
        const line =
            /dfx canister call (?:--\S+ )*(\w+) (\w+)(?: '([^']*)'| "((?:[^"\\]|\\.)*)")?/g;
        let checked = 0;
        for (const m of readFileSync('README.md', 'utf8').matchAll(line)) {
            const [, canister, method, single, double] = m;
            const service = services[canister];
            if (!service) continue;
            const func = service._fields.find(([k]) => k === method)?.[1];
            expect(func, `${canister}.${method}`).toBeDefined();
            const shell =
                single ?? (double ?? '').replace(/\\"/g, '"').replace(/\$\([^)]*\)/g, 'aaaaa-aa');
            // Placeholders such as "<farmer>" stand for principals.
            const text = shell.replace(/"<[^>"]+>"/g, '"aaaaa-aa"');
            let values: unknown[] = [];
            expect(() => (values = parseCandidArgs(text, func!.argTypes)), m[0]).not.toThrow();
            expect(() => IDL.encode(func!.argTypes, values), m[0]).not.toThrow();
            checked++;
        }
        expect(checked).toBeGreaterThan(30);
    });
});

describe('Candid text printer', () => {
    it('prints like dfx: typed fixed-size numbers, grouped digits, blobs, unit variants', () => {
        expect(
            printCandidArgs([IDL.Nat64, IDL.Nat, IDL.Int8], [2n ** 64n - 1n, 1234567n, -5])
        ).toBe('(18_446_744_073_709_551_615 : nat64, 1_234_567, -5 : int8)');
        expect(printCandidValue(IDL.Vec(IDL.Nat8), new Uint8Array([104, 105, 0, 34]))).toBe(
            'blob "hi\\00\\22"'
        );
        expect(printCandidValue(IDL.Variant({ Ok: IDL.Null }), { Ok: null })).toBe(
            'variant { Ok }'
        );
        expect(printCandidValue(IDL.Float64, 2)).toBe('2.0 : float64');
        expect(
            printCandidValue(IDL.Record({ 'a b': IDL.Text, _3_: IDL.Bool }), {
                'a b': 'x',
                _3_: true
            })
        ).toBe('record { 3 = true; "a b" = "x" }');
        expect(printCandidArgs([], [])).toBe('()');
    });

    it('spreads wide values over indented lines within 80 columns', () => {
        const T = IDL.Vec(IDL.Record({ borrower: IDL.Principal, amount_requested: IDL.Nat64 }));
        const v = Array.from({ length: 3 }, (_, i) => ({
            borrower: Principal.fromText('aaaaa-aa'),
            amount_requested: BigInt(i)
        }));
        const text = printCandidArgs([T], [v]);
        expect(text.split('\n').length).toBeGreaterThan(3);
        for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
        expect(parseCandidArgs(text, [T])).toEqual([v]);
    });
});

describe('.did parser', () => {
    it('reads the checked-in .did files into the declarations services', () => {
        const cases: [string, IDL.InterfaceFactory][] = [
            ['src/query_router/router.did', routerIdl as IDL.InterfaceFactory],
            ['src/factory/factory.did', factoryIdl as IDL.InterfaceFactory],
            ['src/data_shard/data_shard.did', shardIdl as IDL.InterfaceFactory]
        ];
        for (const [file, factory] of cases) {
            const { service, init } = parseDid(readFileSync(file, 'utf8'));
            const declared = factory({ IDL }) as IDL.ServiceClass;
            expect(service._fields.map(([k]) => k)).toEqual(declared._fields.map(([k]) => k));
            for (const [name, func] of declared._fields) {
                const parsed = service._fields.find(([k]) => k === name)![1];
                expect(parsed.display(), `${file} ${name}`).toBe(func.display());
            }
            expect(init).toHaveLength(1);
        }
    });

    it('reads recursive types, named arguments, tuples and annotations', () => {
        const { service, init } = parseDid(`
            // a list
            type List = opt record { head : int; tail : List };
            type Pair = record { nat; text };
            type E = variant { A; B : blob; 3 };
            service : (config : Pair) -> {
                sum : (list : List) -> (int) query;
                "send" : (E) -> () oneway;
                peek : (Pair) -> (vec Pair, opt List) composite_query;
            }`);
        expect(init!.map((t) => t.display())).toEqual(['record {nat; text}']);
        const sum = service._fields.find(([k]) => k === 'sum')![1];
        expect(sum.annotations).toEqual(['query']);
        const list = parseCandidArgs(
            '(opt record { head = 1; tail = opt record { head = -2; tail = null } })',
            sum.argTypes
        );
        expect(list).toEqual([[{ head: 1n, tail: [{ head: -2n, tail: [] }] }]]);
        expect(IDL.decode(sum.argTypes, IDL.encode(sum.argTypes, list))).toEqual(list);
        const send = service._fields.find(([k]) => k === 'send')![1];
        expect(parseCandidArgs('(variant { 3 })', send.argTypes)).toEqual([{ _3_: null }]);
        expect(send.annotations).toEqual(['oneway']);
    });

    it('rejects bad .did text with the position', () => {
        expect(errorOf(() => parseDid('service : { f : (Missing) -> () }')).reason).toContain(
            'unknown type Missing'
        );
        expect(
            errorOf(() => parseDid('type A = nat; type A = int; service : {}')).reason
        ).toContain('defined twice');
        expect(errorOf(() => parseDid('type A = nat;')).reason).toContain('no `service`');
        const e = errorOf(() =>
            parseDid('service : {\n  f : (nat) -> (nat) query;\n  f : () -> ();\n}')
        );
        expect([e.reason, e.line, e.column]).toEqual(['method f declared twice', 3, 3]);
    });
});
