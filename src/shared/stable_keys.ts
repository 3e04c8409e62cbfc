/**
 * Byte codecs for `StableBTreeMap` keys and values (Azle's `Serializable` shape). Integers are
 * big-endian so a map's key order is numeric order; these are plain functions, usable anywhere.
 */
import { Principal } from '@dfinity/principal';

/** `bigint` in 0..2^64 as 8 big-endian bytes (loan ids, audit sequence numbers). */
export const u64Key = {
    toBytes(value: bigint): Uint8Array {
        const bytes = new Uint8Array(8);
        new DataView(bytes.buffer).setBigUint64(0, value);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): bigint {
        return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
    }
};

/** `number` in 0..2^32 as 4 big-endian bytes (shard ids, slots). */
export const u32Key = {
    toBytes(value: number): Uint8Array {
        const bytes = new Uint8Array(4);
        new DataView(bytes.buffer).setUint32(0, value);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): number {
        return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
    }
};

/** Bytes stored as they are (values already encoded, e.g. Candid). */
export const rawBytes = {
    toBytes: (bytes: Uint8Array): Uint8Array => bytes,
    fromBytes: (bytes: Uint8Array): Uint8Array => bytes
};

/**
 * Text as UTF-8, written by hand: the global `TextEncoder` of Azle's JS engine is a JavaScript
 * polyfill that costs millions of instructions per call. Lone surrogates become U+FFFD, as with
 * `TextEncoder`. Keys sort by their UTF-8 bytes.
 */
export const utf8Text = {
    toBytes(text: string): Uint8Array {
        const out = new Uint8Array(text.length * 3);
        let n = 0;
        for (let i = 0; i < text.length; i++) {
            let c = text.charCodeAt(i);
            if (c < 0x80) {
                out[n++] = c;
                continue;
            }
            if (c >= 0xd800 && c <= 0xdfff) {
                const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
                if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
                    const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
                    i++;
                    out[n++] = 0xf0 | (cp >> 18);
                    out[n++] = 0x80 | ((cp >> 12) & 0x3f);
                    out[n++] = 0x80 | ((cp >> 6) & 0x3f);
                    out[n++] = 0x80 | (cp & 0x3f);
                    continue;
                }
                c = 0xfffd;
            }
            if (c < 0x800) {
                out[n++] = 0xc0 | (c >> 6);
                out[n++] = 0x80 | (c & 0x3f);
            } else {
                out[n++] = 0xe0 | (c >> 12);
                out[n++] = 0x80 | ((c >> 6) & 0x3f);
                out[n++] = 0x80 | (c & 0x3f);
            }
        }
        return out.slice(0, n);
    },
    fromBytes(bytes: Uint8Array): string {
        let ascii = true;
        for (let i = 0; i < bytes.length; i++) {
            if (bytes[i] >= 0x80) {
                ascii = false;
                break;
            }
        }
        if (ascii) return asciiText(bytes);
        let text = '';
        for (let i = 0; i < bytes.length;) {
            const b = bytes[i];
            let cp: number;
            if (b < 0x80) {
                cp = b;
                i += 1;
            } else if (b < 0xe0) {
                cp = ((b & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
                i += 2;
            } else if (b < 0xf0) {
                cp = ((b & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
                i += 3;
            } else {
                cp =
                    ((b & 0x07) << 18) |
                    ((bytes[i + 1] & 0x3f) << 12) |
                    ((bytes[i + 2] & 0x3f) << 6) |
                    (bytes[i + 3] & 0x3f);
                i += 4;
            }
            text += String.fromCodePoint(cp);
        }
        return text;
    }
};

/** Characters per `String.fromCharCode` call (engines bound the number of arguments). */
const CHARS_PER_CALL = 4_096;

/** Bytes below 0x80 as text, in a few native calls (no per-character loop). */
export function asciiText(bytes: Uint8Array): string {
    let text = '';
    for (let at = 0; at < bytes.length; at += CHARS_PER_CALL) {
        const part = bytes.subarray(at, Math.min(bytes.length, at + CHARS_PER_CALL));
        text += String.fromCharCode.apply(null, part as unknown as number[]);
    }
    return text;
}

/** Text of characters below 0x80 as bytes; throws on any other character. */
export function asciiBytes(text: string): Uint8Array {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) throw new RangeError('asciiBytes: not ASCII');
        out[i] = c;
    }
    return out;
}

/**
 * JSON values with `bigint` and principals (tagged `{ __bigint__ }` / `{ __principal__ }`, the tags
 * Azle's default codec uses), through the engine's native JSON and `utf8Text`: the same shape of
 * data as Azle's default `stableJson`, at a fraction of its cost per value.
 */
export const taggedJson = {
    toBytes(value: unknown): Uint8Array {
        return utf8Text.toBytes(
            JSON.stringify(value, (_key, v: unknown) =>
                typeof v === 'bigint' ? { __bigint__: v.toString() } : v
            )
        );
    },
    fromBytes(bytes: Uint8Array): unknown {
        return JSON.parse(utf8Text.fromBytes(bytes), (_key, v: unknown) => {
            if (v === null || typeof v !== 'object') return v;
            const tagged = v as { __bigint__?: unknown; __principal__?: unknown };
            if (typeof tagged.__bigint__ === 'string') return BigInt(tagged.__bigint__);
            if (typeof tagged.__principal__ === 'string') {
                return Principal.fromText(tagged.__principal__);
            }
            return v;
        });
    }
};
