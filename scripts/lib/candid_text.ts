/**
 * Candid's textual syntax, driven by IDL types: a value parser (`parseCandidArgs`), a value
 * printer (`printCandidArgs`) and a `.did` service parser (`parseDid`), for `npm run call`.
 * `@dfinity/candid` encodes and decodes binary Candid but reads no text, so this file does what
 * `dfx canister call` does with its argument: the expected types decide what a literal means
 * (`5` is a nat32, a nat64, an int or a float64 by position), and values come out in the forms
 * `IDL.encode` takes and `IDL.decode` gives (bigint for nat/int/64-bit, typed arrays for vectors
 * of fixed-size integers, `[]`/`[v]` for opt, `{ Label: v }` for variants, arrays for tuples).
 *
 * @example
 * const [loan] = parseCandidArgs('(record { borrower = principal "aaaaa-aa"; amount = 1_000 })', [T]);
 * printCandidArgs([IDL.Nat64], [5n]); // '(5 : nat64)'
 */
import { IDL } from '@dfinity/candid';
import { idlLabelToId } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

/** Longest text parsed (a 2 MiB ingress message written with escapes, and some). */
export const MAX_CANDID_TEXT_CHARS = 16 * 1024 * 1024;
/** Deepest nesting of values or types (keeps recursion far from the stack limit). */
export const MAX_CANDID_DEPTH = 200;
/** Width under which a composite value is printed on one line. */
const LINE_WIDTH = 80;

/** A syntax or type error in Candid text, with its position (offset, 1-based line and column). */
export class CandidTextError extends Error {
    constructor(
        readonly reason: string,
        readonly offset: number,
        readonly line: number,
        readonly column: number,
        excerpt: string
    ) {
        super(`${reason} at line ${line}, column ${column}\n${excerpt}`);
        this.name = 'CandidTextError';
    }
}

type TokenKind = 'id' | 'num' | 'text' | 'punct' | 'eof';

interface Token {
    kind: TokenKind;
    /** Identifier, punctuation, the number as written, or the text literal's raw bytes. */
    value: string;
    bytes?: Uint8Array;
    start: number;
}

const PUNCT = ['->', '(', ')', '{', '}', ';', ',', '=', ':', '.'];
const KEYWORDS = new Set([
    'type',
    'import',
    'service',
    'func',
    'query',
    'composite_query',
    'oneway',
    'opt',
    'vec',
    'record',
    'variant',
    'blob',
    'principal',
    'null',
    'true',
    'false',
    'reserved',
    'empty',
    'bool',
    'text',
    'nat',
    'int',
    'nat8',
    'nat16',
    'nat32',
    'nat64',
    'int8',
    'int16',
    'int32',
    'int64',
    'float32',
    'float64'
]);

/** A lexer with arbitrary lookahead over the text; comments and whitespace are skipped. */
class Lexer {
    private readonly tokens: Token[] = [];

    /** Reads `src` from offset `pos` (a `.did` definition body is read again from its start). */
    constructor(
        readonly src: string,
        private pos = 0
    ) {
        if (src.length > MAX_CANDID_TEXT_CHARS) {
            throw this.error(`input longer than ${MAX_CANDID_TEXT_CHARS} characters`, 0);
        }
    }

    peek(n = 0): Token {
        while (this.tokens.length <= n) this.tokens.push(this.scan());
        return this.tokens[n];
    }

    next(): Token {
        const t = this.peek();
        this.tokens.shift();
        return t;
    }

    /** Consumes the keyword or punctuation `value`, or throws. */
    expect(value: string): Token {
        const t = this.peek();
        if ((t.kind === 'punct' || t.kind === 'id') && t.value === value) return this.next();
        throw this.error(`expected \`${value}\`, found ${describe(t)}`, t.start);
    }

    /** Consumes the keyword or punctuation `value` if it comes next. */
    accept(value: string): boolean {
        const t = this.peek();
        if ((t.kind === 'punct' || t.kind === 'id') && t.value === value) {
            this.next();
            return true;
        }
        return false;
    }

    error(reason: string, offset: number): CandidTextError {
        const before = this.src.slice(0, offset);
        const line = before.split('\n').length;
        const lineStart = before.lastIndexOf('\n') + 1;
        const lineEnd = this.src.indexOf('\n', offset);
        const text = this.src.slice(lineStart, lineEnd === -1 ? undefined : lineEnd);
        const column = offset - lineStart + 1;
        // Show at most 60 characters around the position.
        const from = Math.max(0, column - 1 - 40);
        const shown = text.slice(from, from + 60);
        const excerpt = `  ${shown}\n  ${' '.repeat(column - 1 - from)}^`;
        return new CandidTextError(reason, offset, line, column, excerpt);
    }

    private skipBlank(): void {
        const s = this.src;
        for (;;) {
            while (this.pos < s.length && /\s/.test(s[this.pos])) this.pos++;
            if (s.startsWith('//', this.pos)) {
                const end = s.indexOf('\n', this.pos);
                this.pos = end === -1 ? s.length : end + 1;
            } else if (s.startsWith('/*', this.pos)) {
                const end = s.indexOf('*/', this.pos + 2);
                if (end === -1) throw this.error('unterminated comment', this.pos);
                this.pos = end + 2;
            } else return;
        }
    }

    private scan(): Token {
        this.skipBlank();
        const s = this.src;
        const start = this.pos;
        if (start >= s.length) return { kind: 'eof', value: '', start };
        const c = s[start];
        const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(start, start + 256));
        if (id) {
            this.pos += id[0].length;
            return { kind: 'id', value: id[0], start };
        }
        const num =
            /^[+-]?(inf(?![A-Za-z0-9_])|0x[0-9a-fA-F][0-9a-fA-F_]*|[0-9][0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9][0-9_]*)?)/.exec(
                s.slice(start, start + 4096)
            );
        if (num) {
            this.pos += num[0].length;
            return { kind: 'num', value: num[0], start };
        }
        if (c === '"') return this.scanText(start);
        for (const p of PUNCT) {
            if (s.startsWith(p, start)) {
                this.pos += p.length;
                return { kind: 'punct', value: p, start };
            }
        }
        throw this.error(`unexpected character ${JSON.stringify(c)}`, start);
    }

    /** A text literal: its bytes (UTF-8 of the characters, `\HH` one raw byte). */
    private scanText(start: number): Token {
        const s = this.src;
        const bytes: number[] = [];
        const encoder = new TextEncoder();
        let i = start + 1;
        for (;;) {
            if (i >= s.length) throw this.error('unterminated text literal', start);
            const c = s[i];
            if (c === '"') break;
            if (c !== '\\') {
                const cp = s.codePointAt(i)!;
                const ch = String.fromCodePoint(cp);
                for (const b of encoder.encode(ch)) bytes.push(b);
                i += ch.length;
                continue;
            }
            const e = s[i + 1];
            const simple: Record<string, number> = {
                n: 10,
                r: 13,
                t: 9,
                '\\': 92,
                '"': 34,
                "'": 39
            };
            if (e !== undefined && e in simple) {
                bytes.push(simple[e]);
                i += 2;
            } else if (e === 'u' && s[i + 2] === '{') {
                const close = s.indexOf('}', i + 3);
                const hex = close === -1 ? '' : s.slice(i + 3, close).replace(/_/g, '');
                const cp = /^[0-9a-fA-F]{1,6}$/.test(hex) ? parseInt(hex, 16) : -1;
                if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                    throw this.error('bad \\u{…} escape', i);
                }
                for (const b of encoder.encode(String.fromCodePoint(cp))) bytes.push(b);
                i = close + 1;
            } else if (/^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
                bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
                i += 3;
            } else {
                throw this.error('bad escape (use \\n \\r \\t \\\\ \\" \\\' \\u{HEX} or \\HH)', i);
            }
        }
        this.pos = i + 1;
        return { kind: 'text', value: s.slice(start, i + 1), bytes: new Uint8Array(bytes), start };
    }
}

/** The type behind `IDL.Rec` indirections. */
function unwrap(t: IDL.Type): IDL.Type {
    for (let i = 0; i < MAX_CANDID_DEPTH && t instanceof IDL.RecClass; i++) {
        const inner = t.getType();
        if (inner === undefined) throw new Error('recursive Candid type was never filled');
        t = inner;
    }
    return t;
}

function isTuple(t: IDL.Type): t is IDL.TupleClass<IDL.Type[]> {
    return t instanceof IDL.TupleClass;
}

/** Fields of a record/variant with their Candid ids. */
function fieldsOf(
    t: IDL.RecordClass | IDL.VariantClass
): { key: string; id: number; type: IDL.Type }[] {
    return t._fields.map(([key, type]) => ({ key, id: idlLabelToId(key), type }));
}

/** The default a missing record field or argument takes, or `undefined` if it has none. */
function defaultOf(t: IDL.Type): unknown {
    const u = unwrap(t);
    if (u instanceof IDL.OptClass) return [];
    if (u instanceof IDL.NullClass || u instanceof IDL.ReservedClass) return null;
    return undefined;
}

const TYPED_ARRAYS: Record<string, (xs: never[]) => unknown> = {
    nat8: (xs) => Uint8Array.from(xs),
    nat16: (xs) => Uint16Array.from(xs),
    nat32: (xs) => Uint32Array.from(xs),
    nat64: (xs) => BigUint64Array.from(xs),
    int8: (xs) => Int8Array.from(xs),
    int16: (xs) => Int16Array.from(xs),
    int32: (xs) => Int32Array.from(xs),
    int64: (xs) => BigInt64Array.from(xs)
};

/** The value parser: one instance per input text. */
class ValueParser {
    constructor(private readonly lex: Lexer) {}

    /** `( v, … )`, or one value without parentheses, or nothing for `()`. */
    args(types: IDL.Type[]): unknown[] {
        const first = this.lex.peek();
        const values: unknown[] = [];
        if (first.kind === 'eof') {
            // Nothing given: as `()`.
        } else if (first.kind === 'punct' && first.value === '(') {
            this.lex.next();
            while (!this.lex.accept(')')) {
                const t = this.lex.peek();
                if (values.length >= types.length) {
                    throw this.lex.error(
                        `too many arguments: the method takes ${types.length}`,
                        t.start
                    );
                }
                values.push(this.value(types[values.length], 0));
                if (!this.lex.accept(',')) {
                    this.lex.expect(')');
                    break;
                }
            }
        } else {
            if (types.length === 0)
                throw this.lex.error('the method takes no arguments', first.start);
            values.push(this.value(types[0], 0));
        }
        const end = this.lex.peek();
        if (end.kind !== 'eof')
            throw this.lex.error(`unexpected ${describe(end)} after the arguments`, end.start);
        for (let i = values.length; i < types.length; i++) {
            const d = defaultOf(types[i]);
            if (d === undefined) {
                throw this.lex.error(
                    `missing argument ${i + 1} of type ${types[i].display()} (the method takes ${types.length})`,
                    end.start
                );
            }
            values.push(d);
        }
        return values;
    }

    /** A value of type `type`, with an optional `: type` annotation that must name that type. */
    value(type: IDL.Type, depth: number): unknown {
        const at = this.lex.peek();
        if (depth > MAX_CANDID_DEPTH) throw this.lex.error('value nests too deeply', at.start);
        let v: unknown;
        if (at.kind === 'punct' && at.value === '(') {
            // `(5 : nat32)`: a parenthesized (usually annotated) value.
            this.lex.next();
            v = this.value(type, depth + 1);
            this.lex.expect(')');
        } else v = this.bare(unwrap(type), depth + 1);
        if (this.lex.peek().kind === 'punct' && this.lex.peek().value === ':') {
            const colon = this.lex.next();
            const annotated = new TypeParser(this.lex, emptyScope()).datatype(depth + 1);
            const want = unwrap(type).display();
            if (unwrap(annotated).display() !== want) {
                throw this.lex.error(
                    `annotation ${annotated.display()} does not match the expected type ${want}`,
                    colon.start
                );
            }
        }
        return v;
    }

    private bare(t: IDL.Type, depth: number): unknown {
        const tok = this.lex.peek();
        const wrong = (what: string) =>
            this.lex.error(
                `expected ${what} (type ${t.display()}), found ${describe(tok)}`,
                tok.start
            );
        if (t instanceof IDL.NullClass || t instanceof IDL.ReservedClass) {
            if (!this.lex.accept('null')) throw wrong('null');
            return null;
        }
        if (t instanceof IDL.BoolClass) {
            if (this.lex.accept('true')) return true;
            if (this.lex.accept('false')) return false;
            throw wrong('true or false');
        }
        if (
            t instanceof IDL.NatClass ||
            t instanceof IDL.IntClass ||
            t instanceof IDL.FixedNatClass ||
            t instanceof IDL.FixedIntClass
        ) {
            return this.integer(t);
        }
        if (t instanceof IDL.FloatClass) return this.float(t);
        if (t instanceof IDL.TextClass) {
            if (tok.kind !== 'text') throw wrong('a text literal');
            this.lex.next();
            return utf8(tok, this.lex);
        }
        if (t instanceof IDL.PrincipalClass || t instanceof IDL.ServiceClass) {
            const kw = t instanceof IDL.PrincipalClass ? 'principal' : 'service';
            if (!this.lex.accept(kw)) throw wrong(`${kw} "<id>"`);
            return this.principal();
        }
        if (t instanceof IDL.FuncClass) {
            if (!this.lex.accept('func')) throw wrong('func "<id>".<method>');
            const p = this.principal();
            this.lex.expect('.');
            const m = this.lex.next();
            if (m.kind === 'id') return [p, m.value];
            if (m.kind === 'text') return [p, utf8(m, this.lex)];
            throw this.lex.error(`expected a method name, found ${describe(m)}`, m.start);
        }
        if (t instanceof IDL.OptClass) {
            if (this.lex.accept('null')) return [];
            if (!this.lex.accept('opt')) throw wrong('`opt <value>` or `null`');
            return [this.value(t._type, depth)];
        }
        if (t instanceof IDL.VecClass) return this.vec(t, depth);
        if (t instanceof IDL.RecordClass) return this.record(t, depth);
        if (t instanceof IDL.VariantClass) return this.variant(t, depth);
        if (t instanceof IDL.EmptyClass) throw this.lex.error('no value has type empty', tok.start);
        throw this.lex.error(`cannot read values of type ${t.display()}`, tok.start);
    }

    private principal(): Principal {
        const tok = this.lex.next();
        if (tok.kind !== 'text')
            throw this.lex.error(
                `expected a principal in quotes, found ${describe(tok)}`,
                tok.start
            );
        const text = utf8(tok, this.lex);
        try {
            return Principal.fromText(text);
        } catch (e) {
            throw this.lex.error(`not a principal: ${(e as Error).message}`, tok.start);
        }
    }

    private integer(t: IDL.Type): number | bigint {
        const tok = this.lex.peek();
        if (tok.kind !== 'num') {
            throw this.lex.error(
                `expected a number of type ${t.display()}, found ${describe(tok)}`,
                tok.start
            );
        }
        this.lex.next();
        const raw = tok.value.replace(/_/g, '');
        const negative = raw.startsWith('-');
        const digits = raw.replace(/^[+-]/, '');
        if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(digits)) {
            // A float literal or `inf` where an integer type is expected.
            throw this.lex.error(`${tok.value} is not an integer (type ${t.display()})`, tok.start);
        }
        const n = negative ? -BigInt(digits) : BigInt(digits);
        let min: bigint | null = null;
        let max: bigint | null = null;
        if (t instanceof IDL.NatClass) min = 0n;
        if (t instanceof IDL.FixedNatClass) {
            min = 0n;
            max = (1n << BigInt(t._bits)) - 1n;
        }
        if (t instanceof IDL.FixedIntClass) {
            min = -(1n << BigInt(t._bits - 1));
            max = (1n << BigInt(t._bits - 1)) - 1n;
        }
        if ((min !== null && n < min) || (max !== null && n > max)) {
            throw this.lex.error(`${tok.value} is out of range for ${t.display()}`, tok.start);
        }
        const small =
            (t instanceof IDL.FixedNatClass || t instanceof IDL.FixedIntClass) && t._bits <= 32;
        return small ? Number(n) : n;
    }

    /** A float: any number literal (hex, exponent, underscores), `nan`, `inf`, `-inf`. */
    private float(t: IDL.FloatClass): number {
        const tok = this.lex.next();
        let v: number;
        if (tok.kind === 'num') {
            const raw = tok.value.replace(/_/g, '');
            const sign = raw.startsWith('-') ? -1 : 1;
            const digits = raw.replace(/^[+-]/, '');
            if (digits === 'inf') v = sign * Infinity;
            else if (digits.startsWith('0x')) v = sign * Number(BigInt(digits));
            else v = Number(digits) * sign;
        } else if (tok.kind === 'id' && (tok.value === 'nan' || tok.value === 'inf')) {
            v = tok.value === 'nan' ? NaN : Infinity;
        } else {
            throw this.lex.error(
                `expected a number of type ${t.display()}, found ${describe(tok)}`,
                tok.start
            );
        }
        return t._bits === 32 ? Math.fround(v) : v;
    }

    private vec(t: IDL.VecClass<unknown>, depth: number): unknown {
        const inner = unwrap(t._type);
        const tok = this.lex.peek();
        const fixed =
            inner instanceof IDL.FixedNatClass || inner instanceof IDL.FixedIntClass
                ? `${inner instanceof IDL.FixedNatClass ? 'nat' : 'int'}${inner._bits}`
                : null;
        if (fixed === 'nat8' && this.lex.accept('blob')) {
            const lit = this.lex.next();
            if (lit.kind !== 'text')
                throw this.lex.error(`expected a blob literal, found ${describe(lit)}`, lit.start);
            return lit.bytes!;
        }
        if (!this.lex.accept('vec')) {
            throw this.lex.error(
                `expected ${fixed === 'nat8' ? '`blob "…"` or ' : ''}\`vec { … }\` (type ${t.display()}), found ${describe(tok)}`,
                tok.start
            );
        }
        this.lex.expect('{');
        const items: unknown[] = [];
        while (!this.lex.accept('}')) {
            items.push(this.value(t._type, depth));
            if (!this.lex.accept(';')) {
                this.lex.expect('}');
                break;
            }
        }
        return fixed ? TYPED_ARRAYS[fixed](items as never[]) : items;
    }

    /** A field label if the next tokens are `label =`: its Candid id and how it was written. */
    private label(): { id: number; text: string; start: number } | null {
        const tok = this.lex.peek();
        const eq = this.lex.peek(1);
        if (eq.kind !== 'punct' || eq.value !== '=') return null;
        if (tok.kind === 'id') {
            this.lex.next();
            this.lex.next();
            return { id: idlLabelToId(tok.value), text: tok.value, start: tok.start };
        }
        if (tok.kind === 'num' && /^[0-9][0-9_]*$/.test(tok.value)) {
            const n = BigInt(tok.value.replace(/_/g, ''));
            if (n >= 1n << 32n)
                throw this.lex.error('field id out of range (max 2^32-1)', tok.start);
            this.lex.next();
            this.lex.next();
            return { id: Number(n), text: tok.value, start: tok.start };
        }
        if (tok.kind === 'text') {
            const name = utf8(tok, this.lex);
            this.lex.next();
            this.lex.next();
            return { id: idlLabelToId(name), text: JSON.stringify(name), start: tok.start };
        }
        return null;
    }

    private record(t: IDL.RecordClass, depth: number): unknown {
        this.lex.expect('record');
        this.lex.expect('{');
        const fields = fieldsOf(t);
        const byId = new Map(fields.map((f) => [f.id, f]));
        const got = new Map<number, unknown>();
        let nextId = 0;
        while (!this.lex.accept('}')) {
            const at = this.lex.peek();
            const label = this.label();
            const id = label ? label.id : nextId;
            const field = byId.get(id);
            if (!field) {
                const known = fields.map((f) => labelText(f.key)).join(', ');
                throw this.lex.error(
                    `the record has no field ${label ? label.text : `number ${id}`} (fields: ${known || 'none'})`,
                    label ? label.start : at.start
                );
            }
            if (got.has(id))
                throw this.lex.error(`field ${labelText(field.key)} given twice`, at.start);
            got.set(id, this.value(field.type, depth));
            nextId = id + 1;
            if (!this.lex.accept(';')) {
                this.lex.expect('}');
                break;
            }
        }
        const end = this.lex.peek();
        const values = fields.map((f) => {
            if (got.has(f.id)) return got.get(f.id);
            const d = defaultOf(f.type);
            if (d === undefined) {
                throw this.lex.error(
                    `missing field ${labelText(f.key)} : ${f.type.display()}`,
                    end.start
                );
            }
            return d;
        });
        if (isTuple(t)) return values;
        return Object.fromEntries(fields.map((f, i) => [f.key, values[i]]));
    }

    private variant(t: IDL.VariantClass, depth: number): unknown {
        this.lex.expect('variant');
        const open = this.lex.expect('{');
        const fields = fieldsOf(t);
        const tok = this.lex.peek();
        let id: number;
        let text: string;
        const label = this.label();
        if (label) {
            id = label.id;
            text = label.text;
        } else if (
            tok.kind === 'id' ||
            tok.kind === 'text' ||
            (tok.kind === 'num' && /^[0-9_]+$/.test(tok.value))
        ) {
            this.lex.next();
            text = tok.kind === 'text' ? JSON.stringify(utf8(tok, this.lex)) : tok.value;
            id =
                tok.kind === 'num'
                    ? Number(tok.value.replace(/_/g, ''))
                    : idlLabelToId(tok.kind === 'text' ? utf8(tok, this.lex) : tok.value);
        } else {
            throw this.lex.error(`expected a variant tag, found ${describe(tok)}`, tok.start);
        }
        const field = fields.find((f) => f.id === id);
        if (!field) {
            const known = fields.map((f) => labelText(f.key)).join(', ');
            throw this.lex.error(
                `the variant has no tag ${text} (tags: ${known})`,
                label ? label.start : tok.start
            );
        }
        let value: unknown;
        if (label) value = this.value(field.type, depth);
        else {
            value = defaultOf(field.type);
            if (value === undefined || unwrap(field.type) instanceof IDL.OptClass) {
                throw this.lex.error(
                    `tag ${text} carries a ${field.type.display()}: write \`${text} = <value>\``,
                    tok.start
                );
            }
        }
        this.lex.accept(';');
        if (!this.lex.accept('}')) {
            const more = this.lex.peek();
            throw this.lex.error(
                more.kind === 'eof' ? 'unclosed variant' : 'a variant value has exactly one tag',
                more.kind === 'eof' ? open.start : more.start
            );
        }
        return { [field.key]: value };
    }
}

function utf8(tok: Token, lex: Lexer): string {
    try {
        return new TextDecoder('utf-8', { fatal: true }).decode(tok.bytes!);
    } catch {
        throw lex.error('text literal is not valid UTF-8', tok.start);
    }
}

function describe(t: Token): string {
    if (t.kind === 'eof') return 'the end of the input';
    if (t.kind === 'text') return 'a text literal';
    return `\`${t.value}\``;
}

/**
 * Parses Candid arguments `( v1, v2, … )` (or one value without parentheses, or nothing for
 * `()`) against the method's argument types; missing trailing `opt` arguments are `null`.
 * Throws `CandidTextError` with the position on a syntax or type error.
 *
 * @example
 * parseCandidArgs('(opt 5, "x")', [IDL.Opt(IDL.Nat32), IDL.Text]); // [[5], 'x']
 */
export function parseCandidArgs(text: string, types: IDL.Type[]): unknown[] {
    return new ValueParser(new Lexer(text)).args(types);
}

/** Parses one Candid value of type `type` (the whole text). */
export function parseCandidValue(text: string, type: IDL.Type): unknown {
    const lex = new Lexer(text);
    const v = new ValueParser(lex).value(type, 0);
    const end = lex.peek();
    if (end.kind !== 'eof')
        throw lex.error(`unexpected ${describe(end)} after the value`, end.start);
    return v;
}

/** A record/variant label as written in Candid text: `name`, `"quoted name"` or a number. */
function labelText(key: string): string {
    const n = /^_(\d+)_$/.exec(key);
    if (n) return n[1];
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) && !KEYWORDS.has(key)) return key;
    return quoteText(key);
}

/** A text literal: printable characters as they are, the rest escaped. */
function quoteText(s: string): string {
    let out = '"';
    for (const ch of s) {
        const cp = ch.codePointAt(0)!;
        if (ch === '"') out += '\\"';
        else if (ch === '\\') out += '\\\\';
        else if (ch === '\n') out += '\\n';
        else if (ch === '\r') out += '\\r';
        else if (ch === '\t') out += '\\t';
        else if (
            cp < 0x20 ||
            cp === 0x7f ||
            (cp >= 0x80 && cp < 0xa0) ||
            (cp >= 0xd800 && cp <= 0xdfff)
        ) {
            out += `\\u{${cp.toString(16)}}`;
        } else out += ch;
    }
    return out + '"';
}

function blobText(bytes: Uint8Array): string {
    let out = 'blob "';
    for (const b of bytes) {
        if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) out += String.fromCharCode(b);
        else out += `\\${b.toString(16).padStart(2, '0')}`;
    }
    return out + '"';
}

/** Digits in groups of three, as dfx prints them: 1_000_000. */
function grouped(n: bigint | number): string {
    const s = BigInt(n).toString();
    const sign = s.startsWith('-') ? '-' : '';
    const digits = sign ? s.slice(1) : s;
    return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, '_');
}

function floatText(v: number): string {
    if (Number.isNaN(v)) return 'nan';
    if (v === Infinity) return 'inf';
    if (v === -Infinity) return '-inf';
    if (Object.is(v, -0)) return '-0.0';
    const s = String(v);
    return /[.e]/.test(s) ? s : `${s}.0`;
}

/** A printed value: its one-line form, or lines when that is too wide. */
interface Doc {
    flat: string;
    /** Composite values: opening text, items, closing text. */
    items?: { open: string; parts: Doc[]; close: string; sep: string };
}

function layout(doc: Doc, indent: number): string {
    if (!doc.items || indent + doc.flat.length <= LINE_WIDTH) return doc.flat;
    const pad = ' '.repeat(indent + 2);
    const inner = doc.items.parts.map((p) => `${pad}${layout(p, indent + 2)}${doc.items!.sep}`);
    return `${doc.items.open}\n${inner.join('\n')}\n${' '.repeat(indent)}${doc.items.close}`;
}

function composite(open: string, parts: Doc[], close: string, sep: string): Doc {
    if (parts.length === 0) return { flat: `${open}${close}` };
    const flat = `${open} ${parts.map((p) => p.flat).join(`${sep} `)} ${close}`;
    return { flat, items: { open, parts, close, sep } };
}

function labelled(label: string, d: Doc): Doc {
    const head = `${label} = `;
    return d.items
        ? { flat: head + d.flat, items: { ...d.items, open: head + d.items.open } }
        : { flat: head + d.flat };
}

function docOf(type: IDL.Type, v: unknown, depth: number): Doc {
    if (depth > MAX_CANDID_DEPTH) throw new Error('value nests too deeply to print');
    const t = unwrap(type);
    const d = depth + 1;
    if (t instanceof IDL.NullClass || t instanceof IDL.ReservedClass) return { flat: 'null' };
    if (t instanceof IDL.BoolClass) return { flat: v ? 'true' : 'false' };
    if (t instanceof IDL.NatClass || t instanceof IDL.IntClass)
        return { flat: grouped(v as bigint) };
    if (t instanceof IDL.FixedNatClass || t instanceof IDL.FixedIntClass) {
        return { flat: `${grouped(v as bigint)} : ${t.display()}` };
    }
    if (t instanceof IDL.FloatClass) return { flat: `${floatText(v as number)} : ${t.display()}` };
    if (t instanceof IDL.TextClass) return { flat: quoteText(v as string) };
    if (t instanceof IDL.PrincipalClass)
        return { flat: `principal ${quoteText((v as Principal).toText())}` };
    if (t instanceof IDL.ServiceClass)
        return { flat: `service ${quoteText((v as Principal).toText())}` };
    if (t instanceof IDL.FuncClass) {
        const [p, m] = v as [Principal, string];
        return { flat: `func ${quoteText(p.toText())}.${labelText(m)}` };
    }
    if (t instanceof IDL.OptClass) {
        const o = v as unknown[];
        if (o.length === 0) return { flat: 'null' };
        const inner = docOf(t._type, o[0], d);
        return inner.items
            ? {
                  flat: `opt ${inner.flat}`,
                  items: { ...inner.items, open: `opt ${inner.items.open}` }
              }
            : { flat: `opt ${inner.flat}` };
    }
    if (t instanceof IDL.VecClass) {
        const inner = unwrap(t._type);
        if (inner instanceof IDL.FixedNatClass && inner._bits === 8) {
            return { flat: blobText(v instanceof Uint8Array ? v : Uint8Array.from(v as number[])) };
        }
        const parts = Array.from(v as ArrayLike<unknown>, (x) => docOf(t._type, x, d));
        return composite('vec {', parts, '}', ';');
    }
    if (t instanceof IDL.RecordClass) {
        if (isTuple(t)) {
            const xs = v as unknown[];
            return composite(
                'record {',
                (t as unknown as { _components: IDL.Type[] })._components.map((c, i) =>
                    docOf(c, xs[i], d)
                ),
                '}',
                ';'
            );
        }
        const r = v as Record<string, unknown>;
        const parts = t._fields.map(([k, ft]) => labelled(labelText(k), docOf(ft, r[k], d)));
        return composite('record {', parts, '}', ';');
    }
    if (t instanceof IDL.VariantClass) {
        const [tag] = Object.keys(v as object);
        const field = t._fields.find(([k]) => k === tag);
        if (!field) throw new Error(`variant value ${tag} is not a tag of ${t.display()}`);
        const ft = unwrap(field[1]);
        const label = labelText(tag);
        if (ft instanceof IDL.NullClass) return { flat: `variant { ${label} }` };
        const inner = labelled(label, docOf(field[1], (v as Record<string, unknown>)[tag], d));
        return composite('variant {', [inner], '}', '');
    }
    throw new Error(`cannot print values of type ${t.display()}`);
}

/** Prints one value of type `type` in Candid text (one line if it fits in 80 columns). */
export function printCandidValue(type: IDL.Type, value: unknown): string {
    return layout(docOf(type, value, 0), 0);
}

/**
 * Prints a reply or argument list `( v1, v2 )` as dfx does: numbers of fixed-size types carry
 * their type (`5 : nat64`), blobs are `blob "…"`, long values are spread over indented lines.
 *
 * @example
 * printCandidArgs([IDL.Opt(IDL.Nat64), IDL.Text], [[5n], 'x']); // '(opt 5 : nat64, "x")'
 */
export function printCandidArgs(types: IDL.Type[], values: unknown[]): string {
    const parts = types.map((t, i) => docOf(t, values[i], 0));
    const flat = `(${parts.map((p) => p.flat).join(', ')})`;
    if (flat.length <= LINE_WIDTH) return flat;
    return `(\n${parts.map((p) => `  ${layout(p, 2)},`).join('\n')}\n)`;
}

/** A service read from a `.did` file: its methods and, for a class, its init arguments. */
export interface DidService {
    service: IDL.ServiceClass;
    init: IDL.Type[] | null;
}

const PRIMITIVES: Record<string, IDL.Type> = {
    null: IDL.Null,
    bool: IDL.Bool,
    text: IDL.Text,
    nat: IDL.Nat,
    int: IDL.Int,
    nat8: IDL.Nat8,
    nat16: IDL.Nat16,
    nat32: IDL.Nat32,
    nat64: IDL.Nat64,
    int8: IDL.Int8,
    int16: IDL.Int16,
    int32: IDL.Int32,
    int64: IDL.Int64,
    float32: IDL.Float32,
    float64: IDL.Float64,
    principal: IDL.Principal,
    reserved: IDL.Reserved,
    empty: IDL.Empty
};

/** Named types of a `.did` file: where each definition's body starts, and what is resolved. */
interface Scope {
    defs: Map<string, number>;
    resolved: Map<string, IDL.Type>;
    resolving: Map<string, IDL.RecClass | null>;
}

function emptyScope(): Scope {
    return { defs: new Map(), resolved: new Map(), resolving: new Map() };
}

/** The type parser (`.did` files and value annotations); names resolve through the scope. */
class TypeParser {
    constructor(
        private readonly lex: Lexer,
        private readonly scope: Scope
    ) {}

    /** The type a name stands for; recursive definitions become `IDL.Rec`. */
    named(name: string, at: number): IDL.Type {
        const { resolved, resolving } = this.scope;
        const done = resolved.get(name);
        if (done) return done;
        if (resolving.has(name)) {
            let rec = resolving.get(name)!;
            if (!rec) {
                rec = IDL.Rec();
                resolving.set(name, rec);
            }
            return rec;
        }
        const start = this.scope.defs.get(name);
        if (start === undefined) throw this.lex.error(`unknown type ${name}`, at);
        resolving.set(name, null);
        const t = new TypeParser(new Lexer(this.lex.src, start), this.scope).datatype(0);
        const rec = resolving.get(name);
        resolving.delete(name);
        let out: IDL.Type = t;
        if (rec) {
            rec.fill(t as IDL.ConstructType);
            out = rec;
        }
        resolved.set(name, out);
        return out;
    }

    datatype(depth: number): IDL.Type {
        const tok = this.lex.next();
        if (depth > MAX_CANDID_DEPTH) throw this.lex.error('type nests too deeply', tok.start);
        const d = depth + 1;
        if (tok.kind !== 'id')
            throw this.lex.error(`expected a type, found ${describe(tok)}`, tok.start);
        if (tok.value in PRIMITIVES) return PRIMITIVES[tok.value];
        switch (tok.value) {
            case 'blob':
                return IDL.Vec(IDL.Nat8);
            case 'opt':
                return IDL.Opt(this.datatype(d));
            case 'vec':
                return IDL.Vec(this.datatype(d));
            case 'record':
                return this.fields(false, d);
            case 'variant':
                return this.fields(true, d);
            case 'func':
                return this.functype(d);
            case 'service':
                return this.actortype(d);
            default:
                if (KEYWORDS.has(tok.value))
                    throw this.lex.error(`\`${tok.value}\` is not a type`, tok.start);
                return this.named(tok.value, tok.start);
        }
    }

    private fields(variant: boolean, depth: number): IDL.Type {
        this.lex.expect('{');
        const fields: [string, number, IDL.Type][] = [];
        let nextId = 0;
        while (!this.lex.accept('}')) {
            const tok = this.lex.peek();
            const colon = this.lex.peek(1);
            let key: string;
            if (colon.kind === 'punct' && colon.value === ':') {
                if (tok.kind === 'id') key = tok.value;
                else if (tok.kind === 'text') key = utf8(tok, this.lex);
                else if (tok.kind === 'num' && /^[0-9_]+$/.test(tok.value)) {
                    key = `_${BigInt(tok.value.replace(/_/g, ''))}_`;
                } else throw this.lex.error(`bad field label ${describe(tok)}`, tok.start);
                this.lex.next();
                this.lex.next();
                fields.push([key, idlLabelToId(key), this.datatype(depth)]);
            } else if (variant) {
                // `variant { A; B; 3 }`: tags of type null.
                this.lex.next();
                if (tok.kind === 'id') key = tok.value;
                else if (tok.kind === 'text') key = utf8(tok, this.lex);
                else if (tok.kind === 'num' && /^[0-9_]+$/.test(tok.value)) {
                    key = `_${BigInt(tok.value.replace(/_/g, ''))}_`;
                } else
                    throw this.lex.error(
                        `expected a variant tag, found ${describe(tok)}`,
                        tok.start
                    );
                fields.push([key, idlLabelToId(key), IDL.Null]);
            } else {
                fields.push([`_${nextId}_`, nextId, this.datatype(depth)]);
            }
            const id = fields[fields.length - 1][1];
            if (fields.some((f, i) => i < fields.length - 1 && f[1] === id)) {
                throw this.lex.error(
                    `duplicate field ${labelText(fields[fields.length - 1][0])}`,
                    tok.start
                );
            }
            nextId = id + 1;
            if (!this.lex.accept(';')) {
                this.lex.expect('}');
                break;
            }
        }
        const types = fields.map((f) => f[2]);
        if (!variant && fields.length > 0 && fields.every((f, i) => f[1] === i))
            return IDL.Tuple(...types);
        const record = Object.fromEntries(fields.map(([k, , t]) => [k, t]));
        return variant ? IDL.Variant(record) : IDL.Record(record);
    }

    tuple(depth: number): IDL.Type[] {
        this.lex.expect('(');
        const out: IDL.Type[] = [];
        while (!this.lex.accept(')')) {
            // An argument may be named: `(borrower : principal)`.
            const colon = this.lex.peek(1);
            if (
                colon.kind === 'punct' &&
                colon.value === ':' &&
                ['id', 'text'].includes(this.lex.peek().kind)
            ) {
                this.lex.next();
                this.lex.next();
            }
            out.push(this.datatype(depth));
            if (!this.lex.accept(',')) {
                this.lex.expect(')');
                break;
            }
        }
        return out;
    }

    functype(depth: number): IDL.FuncClass {
        const args = this.tuple(depth);
        this.lex.expect('->');
        const rets = this.tuple(depth);
        const annotations: string[] = [];
        for (;;) {
            const t = this.lex.peek();
            if (t.kind === 'id' && ['query', 'composite_query', 'oneway'].includes(t.value)) {
                annotations.push(this.lex.next().value);
            } else break;
        }
        return IDL.Func(
            args as IDL.GenericIdlFuncArgs,
            rets as IDL.GenericIdlFuncRets,
            annotations
        );
    }

    actortype(depth: number): IDL.ServiceClass {
        this.lex.expect('{');
        const methods: Record<string, IDL.FuncClass> = {};
        while (!this.lex.accept('}')) {
            const name = this.lex.next();
            if (name.kind !== 'id' && name.kind !== 'text')
                throw this.lex.error(`expected a method name, found ${describe(name)}`, name.start);
            const key = name.kind === 'id' ? name.value : utf8(name, this.lex);
            this.lex.expect(':');
            const at = this.lex.peek();
            let f: IDL.Type;
            if (at.kind === 'punct' && at.value === '(') f = this.functype(depth);
            else f = unwrap(this.datatype(depth));
            if (!(f instanceof IDL.FuncClass))
                throw this.lex.error(`method ${key} is not a function type`, at.start);
            if (key in methods) throw this.lex.error(`method ${key} declared twice`, name.start);
            methods[key] = f;
            if (!this.lex.accept(';')) {
                this.lex.expect('}');
                break;
            }
        }
        return IDL.Service(methods);
    }
}

/**
 * Parses a `.did` file (type definitions and a `service : (init) -> { … }` or
 * `service : { … }` declaration). `import` is not supported (a fetched `candid:service` has none).
 *
 * @example
 * const { service } = parseDid('service : { get : () -> (nat64) query }');
 */
export function parseDid(text: string): DidService {
    const lex = new Lexer(text);
    const scope = emptyScope();
    const parser = new TypeParser(lex, scope);
    // First pass: where each definition starts (bodies skipped): names may be used before their definition.
    const bodies: { name: string; start: number }[] = [];
    let serviceAt: Token | null = null;
    for (;;) {
        const t = lex.peek();
        if (t.kind === 'eof') break;
        if (t.kind === 'id' && t.value === 'type') {
            lex.next();
            const name = lex.next();
            if (name.kind !== 'id' || KEYWORDS.has(name.value))
                throw lex.error(`expected a type name, found ${describe(name)}`, name.start);
            lex.expect('=');
            if (scope.defs.has(name.value))
                throw lex.error(`type ${name.value} defined twice`, name.start);
            const start = lex.peek().start;
            scope.defs.set(name.value, start);
            bodies.push({ name: name.value, start });
            skipTo(lex, ';');
            continue;
        }
        if (t.kind === 'id' && t.value === 'import')
            throw lex.error('`import` is not supported', t.start);
        if (t.kind === 'id' && t.value === 'service') {
            serviceAt = t;
            break;
        }
        throw lex.error(`expected \`type\` or \`service\`, found ${describe(t)}`, t.start);
    }
    // Resolve every definition (reports errors even in unused ones).
    for (const b of bodies) parser.named(b.name, b.start);
    if (!serviceAt) throw lex.error('no `service` declaration', lex.peek().start);
    lex.next();
    if (lex.peek().kind === 'id' && lex.peek(1).value === ':') lex.next();
    lex.expect(':');
    let init: IDL.Type[] | null = null;
    const at = lex.peek();
    if (at.kind === 'punct' && at.value === '(') {
        init = parser.tuple(0);
        lex.expect('->');
    }
    const body = lex.peek();
    let service: IDL.Type;
    if (body.kind === 'punct' && body.value === '{') service = parser.actortype(0);
    else if (body.kind === 'id') {
        lex.next();
        service = unwrap(parser.named(body.value, body.start));
    } else throw lex.error(`expected a service body, found ${describe(body)}`, body.start);
    if (!(service instanceof IDL.ServiceClass))
        throw lex.error('the service is not a service type', body.start);
    lex.accept(';');
    const end = lex.peek();
    if (end.kind !== 'eof')
        throw lex.error(`unexpected ${describe(end)} after the service`, end.start);
    return { service, init };
}

/** Skips tokens up to and including `;` at nesting depth 0. */
function skipTo(lex: Lexer, stop: string): void {
    let depth = 0;
    for (;;) {
        const t = lex.next();
        if (t.kind === 'eof') throw lex.error(`expected \`${stop}\``, t.start);
        if (t.kind === 'punct' && (t.value === '{' || t.value === '(')) depth++;
        if (t.kind === 'punct' && (t.value === '}' || t.value === ')')) depth--;
        if (depth === 0 && t.kind === 'punct' && t.value === stop) return;
    }
}
