/**
 * Loan ids that carry their slot: `id = slot << 48 | seq`.
 *
 * The router finds a loan's shard from the id alone (slot → owner in the slot map), with no
 * directory, and the id stays valid when the slot migrates because `seq` is kept per slot and
 * moves with it. Slots are 14 bits, so every valid id is below 2^62 and fits a Candid `nat64`.
 */
import { SLOT_COUNT } from './hash';

/** Bits of the per-slot sequence number. */
export const SEQ_BITS = 48;

/** Largest per-slot sequence number, 2^48 - 1 (exact as a JS number). */
export const MAX_SEQ = 2 ** SEQ_BITS - 1;

/** Largest valid loan id: slot 16383, seq 2^48 - 1. */
export const MAX_LOAN_ID = (BigInt(SLOT_COUNT - 1) << BigInt(SEQ_BITS)) | BigInt(MAX_SEQ);

/** Longest decimal text `parseLoanId` looks at (2^64 has 20 digits); bounds work on user text. */
const MAX_LOAN_ID_TEXT_CHARS = 20;

/** The two parts of a loan id. */
export interface LoanIdParts {
    slot: number;
    seq: number;
}

/** Result of a loan-id operation; the error names the offending field, ready for `InvalidInput`. */
export type LoanIdResult<T> =
    { ok: true; value: T } | { ok: false; field: 'slot' | 'seq' | 'id'; reason: string };

function fail<T>(field: 'slot' | 'seq' | 'id', reason: string): LoanIdResult<T> {
    return { ok: false, field, reason };
}

/**
 * Builds the id of the `seq`-th loan of `slot`.
 *
 * @example encodeLoanId(3, 7) // { ok: true, value: 0x3_0000_0000_0007n }
 */
export function encodeLoanId(slot: number, seq: number): LoanIdResult<bigint> {
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
        return fail('slot', `slot must be an integer in 0..${SLOT_COUNT - 1}`);
    }
    if (!Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) {
        return fail('seq', `seq must be an integer in 0..${MAX_SEQ}`);
    }
    return { ok: true, value: (BigInt(slot) << BigInt(SEQ_BITS)) | BigInt(seq) };
}

/**
 * Splits a loan id into slot and seq. Never throws: the id usually comes from a user, so any
 * value (wrong type, negative, too large) yields a typed error.
 *
 * @example decodeLoanId(0x3_0000_0000_0007n) // { ok: true, value: { slot: 3, seq: 7 } }
 */
export function decodeLoanId(id: unknown): LoanIdResult<LoanIdParts> {
    if (typeof id !== 'bigint') {
        return fail('id', 'loan id must be a nat64');
    }
    if (id < 0n || id > MAX_LOAN_ID) {
        return fail('id', `loan id must be in 0..${MAX_LOAN_ID} (slot < ${SLOT_COUNT})`);
    }
    const slot = Number(id >> BigInt(SEQ_BITS));
    const seq = Number(id & BigInt(MAX_SEQ));
    return { ok: true, value: { slot, seq } };
}

/**
 * Parses a decimal loan id as typed on a command line, then decodes it. Never throws.
 *
 * @example parseLoanId('844424930131975') // { ok: true, value: { slot: 3, seq: 7 } }
 */
export function parseLoanId(text: string): LoanIdResult<LoanIdParts> {
    if (typeof text !== 'string' || text.length === 0 || text.length > MAX_LOAN_ID_TEXT_CHARS) {
        return fail('id', `loan id must be 1..${MAX_LOAN_ID_TEXT_CHARS} decimal digits`);
    }
    if (!/^[0-9]+$/.test(text)) {
        return fail('id', 'loan id must be decimal digits only');
    }
    return decodeLoanId(BigInt(text));
}
