/**
 * Hand codecs for the router's hottest small messages, so they skip `@dfinity/candid`'s generic
 * decoder and encoder (tens of millions of instructions per message in the canister's JS engine):
 * the arguments `(principal)` and `(nat64)`, and the `Ok` reply of `Result<principal>`. Also cheap
 * principal keys: `Principal.toText` (CRC-32 and base-32) costs about a million instructions there,
 * so heap keys use the bytes themselves (`principalKey`) and repeated texts are remembered.
 *
 * A decoder answers undefined for any encoding other than the one `@dfinity/candid` (agent, Azle)
 * writes; the caller then decodes with `IDL.decode`, so every valid message is still accepted and
 * every invalid one still rejected. Reply prefixes are computed with `IDL.encode` and checked
 * against the hand encoding (`candidPrefix`). `tests/unit/router_codec.test.ts` checks both ways.
 */
import { Principal } from '@dfinity/principal';

import { principal } from './candid';
import { candidPrefix, concatBytes, lebBytes } from './loan_codec';
import { Result } from './types';

/** `DIDL`, no type-table entries, one argument of the primitive type `code` (its SLEB byte). */
function argHead(code: number): Uint8Array {
    return new Uint8Array([0x44, 0x49, 0x44, 0x4c, 0x00, 0x01, code]);
}

const PRINCIPAL_ARG_HEAD = argHead(0x68);
const NAT64_ARG_HEAD = argHead(0x78);

/** Longest principal the IC issues (the Candid format allows no more than 29 bytes either). */
const MAX_PRINCIPAL_BYTES = 29;

function startsWith(bytes: Uint8Array, head: Uint8Array): boolean {
    if (bytes.length < head.length) return false;
    for (let i = 0; i < head.length; i++) if (bytes[i] !== head[i]) return false;
    return true;
}

/**
 * The principal of an argument `(principal)` in the usual encoding; undefined otherwise.
 *
 * @example decodePrincipalArg(new Uint8Array(IDL.encode([IDL.Principal], [p])))?.toText()
 */
export function decodePrincipalArg(arg: Uint8Array): Principal | undefined {
    const at = PRINCIPAL_ARG_HEAD.length;
    if (!startsWith(arg, PRINCIPAL_ARG_HEAD) || arg.length < at + 2) return undefined;
    if (arg[at] !== 1) return undefined;
    const length = arg[at + 1];
    if (length > MAX_PRINCIPAL_BYTES || arg.length !== at + 2 + length) return undefined;
    return Principal.fromUint8Array(arg.slice(at + 2));
}

/** The number of an argument `(nat64)` in the usual encoding; undefined otherwise. */
export function decodeNat64Arg(arg: Uint8Array): bigint | undefined {
    const at = NAT64_ARG_HEAD.length;
    if (!startsWith(arg, NAT64_ARG_HEAD) || arg.length !== at + 8) return undefined;
    return new DataView(arg.buffer, arg.byteOffset + at, 8).getBigUint64(0, true);
}

/** The Candid value bytes of a principal (what `IDL.encode([IDL.Principal], [p])` ends with). */
export function encodePrincipalValue(p: Principal): Uint8Array {
    const bytes = p.toUint8Array();
    return concatBytes([new Uint8Array([1]), lebBytes(bytes.length), bytes]);
}

/**
 * The head of a `Result<principal>` reply holding `Ok`. Computed with `IDL.encode` at load (about
 * 30 M instructions: the type table carries `ApiError`), never in a query, whose heap is discarded.
 */
export const OK_PRINCIPAL_PREFIX = candidPrefix(
    [Result(principal)],
    [{ Ok: Principal.anonymous() }],
    encodePrincipalValue(Principal.anonymous())
);

/** The whole reply `Result<principal>` = `Ok(p)`, as `IDL.encode` writes it. */
export function encodeOkPrincipalReply(p: Principal): Uint8Array {
    return concatBytes([OK_PRINCIPAL_PREFIX, encodePrincipalValue(p)]);
}

/**
 * Bytes as a string of the same length (one char per byte): built and compared by the JS engine's
 * native code, where a byte loop in JS costs about a thousand instructions per byte in a canister.
 */
export function latin1(bytes: Uint8Array): string {
    return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** Whether `bytes` begins with the bytes whose `latin1` is `head`. */
export function startsWithLatin1(bytes: Uint8Array, head: string): boolean {
    return bytes.length >= head.length && latin1(bytes.subarray(0, head.length)) === head;
}

/** A cheap, unique key of a principal for heap maps (cache keys and tags): its bytes as `latin1`. */
export function principalKey(p: Principal): string {
    return latin1(p.toUint8Array());
}

/** Principals whose text is remembered; the memo is emptied when full. */
const MAX_REMEMBERED_TEXTS = 1_024;
const texts = new Map<string, string>();

/** `p.toText()`, remembered for the callers and shards a canister sees again and again. */
export function principalText(p: Principal): string {
    const key = principalKey(p);
    const known = texts.get(key);
    if (known !== undefined) return known;
    const text = p.toText();
    if (texts.size >= MAX_REMEMBERED_TEXTS) texts.clear();
    texts.set(key, text);
    return text;
}
