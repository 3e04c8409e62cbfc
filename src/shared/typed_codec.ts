/**
 * Candid value bytes written and read by walking one IDL type: the part the hand codecs of the
 * factory (`factory_codec.ts`) and the router (`router_codec.ts`) share. It knows the types their
 * messages hold: records, variants, vectors, options, text, nat, nat64/nat32/nat8, float64, bool,
 * null and principal. Any other type throws: a writer's caller then fails its load-time head check
 * (`candidPrefix`), a reader's caller falls back to `IDL.decode`, so every valid message is still
 * read and every invalid one still refused. Both codecs' tests compare with `IDL.encode` and
 * `IDL.decode` on arbitrary values.
 *
 * @example
 * const w = new Writer(64);
 * writeTyped(ShardStats, stats, w, 'router codec');
 * new TypedReader(w.done(), 'router codec').read(ShardStats); // deep-equals `stats`
 */
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';

import { ValueReader, type Writer } from './loan_codec';
import { asciiText, utf8Text } from './stable_keys';

/**
 * Value bytes passed through unread (a `TypedReader` with `opaque`), e.g. the loans of a shard's
 * export batch on their way to another shard's import: written back as they are.
 */
export class OpaqueValue {
    constructor(readonly bytes: Uint8Array) {}
}

/**
 * Appends the value bytes of `value` of `type` (an `OpaqueValue`: its bytes). Throws, naming
 * `what`, on a type outside the list above.
 */
export function writeTyped(type: IDL.Type, value: unknown, w: Writer, what: string): void {
    // nat64 first: most fields of the hot replies are nat64, and each test costs hundreds of
    // instructions in the canister; an `OpaqueValue` may stand for a value of any type.
    if (type instanceof IDL.FixedNatClass && type._bits === 64) {
        if (value instanceof OpaqueValue) w.raw(value.bytes);
        else w.nat64(typeof value === 'bigint' ? value : BigInt(value as number));
    } else if (value instanceof OpaqueValue) {
        w.raw(value.bytes);
    } else if (type instanceof IDL.RecordClass) {
        const record = value as Record<string, unknown>;
        for (const [name, t] of type._fields) writeTyped(t, record[name], w, what);
    } else if (type instanceof IDL.VariantClass) {
        const tag = Object.keys(value as object)[0];
        const index = type._fields.findIndex(([name]) => name === tag);
        if (index < 0) throw new Error(`${what}: unknown variant case ${tag}`);
        w.leb(index);
        writeTyped(type._fields[index][1], (value as Record<string, unknown>)[tag], w, what);
    } else if (type instanceof IDL.VecClass) {
        const items = value as ArrayLike<unknown>;
        w.leb(items.length);
        if (type._type instanceof IDL.FixedNatClass && type._type._bits === 8) {
            w.raw(Uint8Array.from(items as ArrayLike<number>));
            return;
        }
        for (let i = 0; i < items.length; i++) writeTyped(type._type, items[i], w, what);
    } else if (type instanceof IDL.OptClass) {
        const opt = value as unknown[];
        w.byte(opt.length === 0 ? 0 : 1);
        if (opt.length !== 0) writeTyped(type._type, opt[0], w, what);
    } else if (type instanceof IDL.FixedNatClass && type._bits === 32) {
        w.nat32(Number(value));
    } else if (type instanceof IDL.FixedNatClass && type._bits === 8) {
        w.byte(Number(value));
    } else if (type instanceof IDL.NatClass) {
        w.natValue(BigInt(value as bigint), what);
    } else if (type instanceof IDL.FloatClass && type._bits === 64) {
        w.float64(value as number);
    } else if (type instanceof IDL.BoolClass) {
        w.byte(value === true ? 1 : 0);
    } else if (type instanceof IDL.NullClass) {
        // no bytes
    } else if (type instanceof IDL.PrincipalClass) {
        w.principal(value as Principal);
    } else if (type instanceof IDL.TextClass) {
        const bytes = utf8Text.toBytes(value as string);
        w.leb(bytes.length);
        w.raw(bytes);
    } else {
        throw new Error(`${what}: no hand encoding for ${type.display()}`);
    }
}

/**
 * A bounds-checked reader of value bytes by IDL type, answering what `IDL.decode` answers; throws
 * on malformed input and on text beyond ASCII (left to `IDL.decode`, which validates UTF-8).
 * Values of the type `opaque` (compared by identity) are read as `OpaqueValue`s.
 */
export class TypedReader extends ValueReader {
    constructor(
        bytes: Uint8Array,
        what: string,
        private readonly opaque: IDL.Type | null = null
    ) {
        super(bytes, what);
    }

    read(type: IDL.Type): unknown {
        if (type === this.opaque) {
            const start = this.at;
            this.skip(type);
            return new OpaqueValue(this.bytes.slice(start, this.at));
        }
        if (type instanceof IDL.RecordClass) {
            const record: Record<string, unknown> = {};
            for (const [name, t] of type._fields) record[name] = this.read(t);
            return record;
        }
        if (type instanceof IDL.VariantClass) {
            const field = type._fields[this.leb()];
            if (field === undefined) throw new Error(`${this.what}: bad variant index`);
            return { [field[0]]: this.read(field[1]) };
        }
        if (type instanceof IDL.VecClass) return this.vec(type._type);
        if (type instanceof IDL.OptClass) {
            const tag = this.byte();
            if (tag > 1) throw new Error(`${this.what}: bad opt tag`);
            return tag === 0 ? [] : [this.read(type._type)];
        }
        if (type instanceof IDL.FixedNatClass && type._bits === 64) return this.nat64();
        if (type instanceof IDL.FixedNatClass && type._bits === 32) {
            this.need(4);
            this.at += 4;
            return this.view.getUint32(this.at - 4, true);
        }
        if (type instanceof IDL.FixedNatClass && type._bits === 8) return this.byte();
        if (type instanceof IDL.TextClass) {
            const n = this.count(1);
            for (let i = this.at; i < this.at + n; i++) {
                if (this.bytes[i] >= 0x80) throw new Error(`${this.what}: text beyond ASCII`);
            }
            this.at += n;
            return asciiText(this.bytes.subarray(this.at - n, this.at));
        }
        if (type instanceof IDL.NatClass) return this.natValue();
        if (type instanceof IDL.FloatClass && type._bits === 64) {
            this.need(8);
            this.at += 8;
            return this.view.getFloat64(this.at - 8, true);
        }
        if (type instanceof IDL.BoolClass) {
            const b = this.byte();
            if (b > 1) throw new Error(`${this.what}: bad bool`);
            return b === 1;
        }
        if (type instanceof IDL.NullClass) return null;
        if (type instanceof IDL.PrincipalClass) return this.principal();
        throw new Error(`${this.what}: no hand decoding for ${type.display()}`);
    }

    /** Steps over a value of `type`, checking it as `read` does, without building it. */
    skip(type: IDL.Type): void {
        if (type instanceof IDL.RecordClass) {
            for (const [, t] of type._fields) this.skip(t);
        } else if (type instanceof IDL.VariantClass) {
            const field = type._fields[this.leb()];
            if (field === undefined) throw new Error(`${this.what}: bad variant index`);
            this.skip(field[1]);
        } else if (type instanceof IDL.VecClass) {
            const n = this.count(1);
            for (let i = 0; i < n; i++) this.skip(type._type);
        } else if (type instanceof IDL.OptClass) {
            const tag = this.byte();
            if (tag > 1) throw new Error(`${this.what}: bad opt tag`);
            if (tag === 1) this.skip(type._type);
        } else if (type instanceof IDL.FixedNatClass && type._bits === 64) {
            this.need(8);
            this.at += 8;
        } else if (type instanceof IDL.PrincipalClass) {
            if (this.byte() !== 1) throw new Error(`${this.what}: opaque principal reference`);
            const n = this.count(1);
            if (n > 29) throw new Error(`${this.what}: principal longer than 29 bytes`);
            this.at += n;
        } else {
            this.read(type);
        }
    }

    /** A vector; `nat8`/`nat32`/`nat64` elements in a typed array, as `IDL.decode` answers. */
    private vec(element: IDL.Type): unknown {
        if (element instanceof IDL.FixedNatClass && [8, 32, 64].includes(element._bits)) {
            const width = element._bits / 8;
            const n = this.count(width);
            const bytes = this.bytes.slice(this.at, this.at + n * width);
            this.at += n * width;
            if (width === 1) return bytes;
            return width === 4 ? new Uint32Array(bytes.buffer) : new BigUint64Array(bytes.buffer);
        }
        const n = this.count(1);
        const items: unknown[] = [];
        for (let i = 0; i < n; i++) items.push(this.read(element));
        return items;
    }
}
