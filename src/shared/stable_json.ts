/**
 * Azle's default `StableBTreeMap` codec (`stableJson`), byte for byte, at a fraction of its cost.
 *
 * `stableJson` writes JSON with tagged special values (`{ "__bigint__": "5" }`, `__principal__`,
 * `__uint8array__`, `__undefined__`, …) through a JavaScript `TextEncoder`/`TextDecoder` polyfill
 * that costs millions of instructions per value in the canister's JS engine (a 700-byte shard
 * record took about 12 M to read). `azleJson` writes and reads the same bytes with the engine's
 * native JSON and the hand UTF-8 of `stable_keys.ts`, so maps written by `stableJson` read back
 * unchanged and a canister can switch codecs without migrating its stable memory.
 * `tests/unit/stable_json.test.ts` compares both codecs on arbitrary values.
 *
 * @example
 * new StableBTreeMap<string, Config>(0, azleJson, azleJson) // same layout as the default codecs
 */
import { Principal } from '@dfinity/principal';

import { utf8Text } from './stable_keys';

const UNDEFINED = { __undefined__: '__undefined__' };
const NAN = { __nan__: '__nan__' };
const INFINITY = { __infinity__: '__infinity__' };
const NEGATIVE_INFINITY = { __negative_infinity__: '__negative_infinity__' };
const NEGATIVE_ZERO = { __negative_zero__: '__negative_zero__' };

/** The tag Azle writes for a typed array (checked in Azle's order), or null. */
function typedArrayTag(value: object): string | null {
    if (value instanceof Int8Array) return '__int8array__';
    if (value instanceof Int16Array) return '__int16array__';
    if (value instanceof Int32Array) return '__int32array__';
    if (value instanceof BigInt64Array) return '__bigint64array__';
    if (value instanceof Uint8Array) return '__uint8array__';
    if (value instanceof Uint16Array) return '__uint16array__';
    if (value instanceof Uint32Array) return '__uint32array__';
    if (value instanceof BigUint64Array) return '__biguint64array__';
    if (value instanceof Float32Array) return '__float32array__';
    if (value instanceof Float64Array) return '__float64array__';
    return null;
}

/** Azle's `jsonReplacer`, with the common cases (strings, plain numbers, arrays) first. */
function replacer(_key: string, value: unknown): unknown {
    switch (typeof value) {
        case 'string':
        case 'boolean':
            return value;
        case 'number':
            if (value !== value) return NAN;
            if (value === Infinity) return INFINITY;
            if (value === -Infinity) return NEGATIVE_INFINITY;
            if (value === 0 && 1 / value < 0) return NEGATIVE_ZERO;
            return value;
        case 'bigint':
            return { __bigint__: value.toString() };
        case 'undefined':
            return UNDEFINED;
        case 'object': {
            if (value === null || Array.isArray(value)) return value;
            if ((value as { _isPrincipal?: unknown })._isPrincipal === true) {
                return { __principal__: value.toString() };
            }
            if (ArrayBuffer.isView(value)) {
                const tag = typedArrayTag(value);
                if (tag !== null) {
                    return { [tag]: Array.from(value as unknown as ArrayLike<number | bigint>) };
                }
                return value;
            }
            if (value instanceof Map) return { __map__: Array.from(value.entries()) };
            if (value instanceof Set) return { __set__: Array.from(value) };
            return value;
        }
        default:
            return value;
    }
}

/** Azle's `jsonReviver`: tagged objects back to their values, everything else as parsed. */
function reviver(_key: string, value: unknown): unknown {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
    const v = value as Record<string, unknown>;
    if (typeof v.__undefined__ === 'string') return undefined;
    if (typeof v.__bigint__ === 'string') return BigInt(v.__bigint__);
    if (typeof v.__principal__ === 'string') return Principal.fromText(v.__principal__);
    if (v.__nan__ === '__nan__') return NaN;
    if (v.__infinity__ === '__infinity__') return Infinity;
    if (v.__negative_infinity__ === '__negative_infinity__') return -Infinity;
    if (v.__negative_zero__ === '__negative_zero__') return -0;
    if (Array.isArray(v.__int8array__)) return Int8Array.from(v.__int8array__);
    if (Array.isArray(v.__int16array__)) return Int16Array.from(v.__int16array__);
    if (Array.isArray(v.__int32array__)) return Int32Array.from(v.__int32array__);
    if (Array.isArray(v.__bigint64array__)) return BigInt64Array.from(v.__bigint64array__);
    if (Array.isArray(v.__uint8array__)) return Uint8Array.from(v.__uint8array__);
    if (Array.isArray(v.__uint16array__)) return Uint16Array.from(v.__uint16array__);
    if (Array.isArray(v.__uint32array__)) return Uint32Array.from(v.__uint32array__);
    if (Array.isArray(v.__biguint64array__)) return BigUint64Array.from(v.__biguint64array__);
    if (Array.isArray(v.__float32array__)) return Float32Array.from(v.__float32array__);
    if (Array.isArray(v.__float64array__)) return Float64Array.from(v.__float64array__);
    if (Array.isArray(v.__map__)) return new Map(v.__map__ as [unknown, unknown][]);
    if (Array.isArray(v.__set__)) return new Set(v.__set__);
    return value;
}

/** A `StableBTreeMap` codec writing and reading exactly what Azle's `stableJson` does. */
export const azleJson = {
    toBytes(value: unknown): Uint8Array {
        return utf8Text.toBytes(JSON.stringify(value, replacer));
    },
    fromBytes(bytes: Uint8Array): unknown {
        return JSON.parse(utf8Text.fromBytes(bytes), reviver);
    }
};
