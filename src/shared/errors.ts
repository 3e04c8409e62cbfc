/**
 * Building and printing the shared `ApiError`, so every canister words its errors the same way.
 */
import { MAX_TEXT_FIELD_LENGTH_CHARS } from './limits';
import type { ApiError } from './types';

/**
 * `InvalidInput { field; reason }`, with the reason bounded so an error never grows unboundedly.
 *
 * @example invalidInput('limit', 'must be in 1..=500') // { Err: { InvalidInput: { field: 'limit', … } } }
 */
export function invalidInput(field: string, reason: string): { Err: ApiError } {
    return {
        Err: { InvalidInput: { field, reason: reason.slice(0, MAX_TEXT_FIELD_LENGTH_CHARS) } }
    };
}

/** An error (or any Candid value) as one line of JSON, bigints as decimal text: for audit logs. */
export function describeValue(value: unknown): string {
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}
