/**
 * Byte codecs for `StableBTreeMap` keys and values (Azle's `Serializable` shape). Integers are
 * big-endian so a map's key order is numeric order; these are plain functions, usable anywhere.
 */

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
