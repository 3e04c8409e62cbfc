/**
 * Typed Candid: IDL constructors that also carry the TypeScript type of their values, so every
 * Candid type is written once and its TypeScript type is derived from it (`Infer<typeof Loan>`).
 *
 * The values are ordinary `@dfinity/candid` IDL types (Azle's decorators and `IDL.encode` take them
 * as they are); the TypeScript type rides along as a phantom property that never exists at run time.
 *
 * @example
 * const Point = record({ x: nat32, y: nat32 });
 * type Point = Infer<typeof Point>; // { x: number; y: number }
 */
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';

declare const phantom: unique symbol;
declare const vecPhantom: unique symbol;

/**
 * An IDL type whose decoded values have TypeScript type `T`; `V` is how a `vec` of it decodes
 * (`@dfinity/candid` returns typed arrays for fixed-width integers, plain arrays otherwise).
 */
export type Typed<T, V = T[]> = IDL.Type & { readonly [phantom]?: T; readonly [vecPhantom]?: V };

/** The TypeScript type of the values of a typed IDL type. */
export type Infer<X> = X extends { readonly [phantom]?: infer T } ? T : never;

type Fields = Record<string, Typed<unknown, unknown>>;
type VecOf<X> = X extends { readonly [vecPhantom]?: infer V } ? V : never;
type RecordOf<F extends Fields> = { [K in keyof F]: Infer<F[K]> };
type VariantOf<F extends Fields> = {
    [K in keyof F]: { [P in K]: Infer<F[K]> };
}[keyof F];

export const nat8 = IDL.Nat8 as Typed<number, Uint8Array | number[]>;
export const nat16 = IDL.Nat16 as Typed<number, Uint16Array | number[]>;
export const nat32 = IDL.Nat32 as Typed<number, Uint32Array | number[]>;
export const nat64 = IDL.Nat64 as Typed<bigint, BigUint64Array | bigint[]>;
export const nat = IDL.Nat as Typed<bigint>;
export const int64 = IDL.Int64 as Typed<bigint, BigInt64Array | bigint[]>;
export const float64 = IDL.Float64 as Typed<number>;
export const text = IDL.Text as Typed<string>;
export const bool = IDL.Bool as Typed<boolean>;
export const principal = IDL.Principal as Typed<Principal>;
export const empty = IDL.Null as Typed<null>;
/** `blob` (vec nat8): decoded as `Uint8Array`; `number[]` is also accepted when encoding. */
export const blob = IDL.Vec(IDL.Nat8) as Typed<Uint8Array>;

/** `opt T`, represented in TypeScript as `[] | [T]` (as `@dfinity/candid` does). */
export function opt<T>(t: Typed<T, unknown>): Typed<[] | [T]> {
    return IDL.Opt(t) as Typed<[] | [T]>;
}

/** `vec T`. */
export function vec<X extends Typed<unknown, unknown>>(t: X): Typed<VecOf<X>> {
    return IDL.Vec(t) as Typed<VecOf<X>>;
}

/** `record { … }` with named fields. */
export function record<F extends Fields>(fields: F): Typed<RecordOf<F>> {
    return IDL.Record(fields) as Typed<RecordOf<F>>;
}

/** `variant { … }`; use `empty` for tags without a payload (`{ Closed: null }`). */
export function variant<F extends Fields>(fields: F): Typed<VariantOf<F>> {
    return IDL.Variant(fields) as Typed<VariantOf<F>>;
}

/** `record { T0; T1 }` (a Candid tuple). */
export function tuple<A, B>(a: Typed<A, unknown>, b: Typed<B, unknown>): Typed<[A, B]> {
    return IDL.Tuple(a, b) as Typed<[A, B]>;
}

/** `variant { Ok: T; Err: E }`, the shape every fallible public method returns. */
export function result<T, E>(
    ok: Typed<T, unknown>,
    err: Typed<E, unknown>
): Typed<{ Ok: T } | { Err: E }> {
    return IDL.Variant({ Ok: ok, Err: err }) as Typed<{ Ok: T } | { Err: E }>;
}

/** The tag names of a variant type: `Tag<{ A: null } | { B: number }>` is `'A' | 'B'`. */
export type Tag<V> = V extends unknown ? keyof V & string : never;

/** The tag of a variant value: `tagOf({ Open: null }) === 'Open'`. */
export function tagOf<V extends object>(value: V): Tag<V> {
    const keys = Object.keys(value);
    if (keys.length !== 1) {
        throw new Error(`a variant value has exactly one tag, got ${keys.length}`);
    }
    return keys[0] as Tag<V>;
}
