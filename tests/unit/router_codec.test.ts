import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
    decodeNat64Arg,
    decodePrincipalArg,
    encodeOkPrincipalReply,
    encodePrincipalValue,
    principalKey,
    principalText
} from '../../src/shared/router_codec';
import { Result } from '../../src/shared/types';

const nat64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const principal = fc
    .uint8Array({ minLength: 0, maxLength: 29 })
    .map((bytes) => Principal.fromUint8Array(bytes));

function encoded(types: IDL.Type[], values: unknown[]): Uint8Array {
    return new Uint8Array(IDL.encode(types, values));
}

describe('router codec', () => {
    it('decodes a (principal) argument as IDL.decode does', () => {
        fc.assert(
            fc.property(principal, (p) => {
                const arg = encoded([IDL.Principal], [p]);
                const mine = decodePrincipalArg(arg);
                const theirs = IDL.decode([IDL.Principal], arg)[0] as unknown as Principal;
                expect(mine?.toText()).toBe(theirs.toText());
            })
        );
    });

    it('decodes a (nat64) argument as IDL.decode does', () => {
        fc.assert(
            fc.property(nat64, (n) => {
                expect(decodeNat64Arg(encoded([IDL.Nat64], [n]))).toBe(n);
            })
        );
    });

    it('leaves every other encoding to IDL.decode (undefined, never a wrong value)', () => {
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 48 }), principal, nat64, (junk, p, n) => {
                const pArg = encoded([IDL.Principal], [p]);
                const nArg = encoded([IDL.Nat64], [n]);
                // Truncated, extended, or another type: not the usual encoding of the argument.
                expect(decodePrincipalArg(pArg.slice(0, pArg.length - 1))).toBeUndefined();
                expect(decodePrincipalArg(new Uint8Array([...pArg, 0]))).toBeUndefined();
                expect(decodeNat64Arg(nArg.slice(0, nArg.length - 1))).toBeUndefined();
                expect(decodeNat64Arg(new Uint8Array([...nArg, 0]))).toBeUndefined();
                expect(decodePrincipalArg(nArg)).toBeUndefined();
                expect(decodeNat64Arg(pArg)).toBeUndefined();
                // Arbitrary bytes decode to what IDL.decode says, or are left to it.
                const mine = decodePrincipalArg(junk);
                if (mine !== undefined) {
                    const theirs = IDL.decode([IDL.Principal], junk)[0] as unknown as Principal;
                    expect(mine.toText()).toBe(theirs.toText());
                }
                const num = decodeNat64Arg(junk);
                if (num !== undefined) expect(num).toBe(IDL.decode([IDL.Nat64], junk)[0]);
            })
        );
    });

    it('refuses a (principal) longer than 29 bytes', () => {
        const arg = new Uint8Array([
            0x44,
            0x49,
            0x44,
            0x4c,
            0,
            1,
            0x68,
            1,
            30,
            ...new Array(30).fill(7)
        ]);
        expect(decodePrincipalArg(arg)).toBeUndefined();
    });

    it('encodes Ok(principal) as IDL.encode does, and the reply decodes back', () => {
        fc.assert(
            fc.property(principal, (p) => {
                const expected = encoded([Result(IDL.Principal as never)], [{ Ok: p }]);
                const reply = encodeOkPrincipalReply(p);
                expect([...reply]).toEqual([...expected]);
                const back = IDL.decode([Result(IDL.Principal as never)], reply)[0] as unknown as {
                    Ok: Principal;
                };
                expect(back.Ok.toText()).toBe(p.toText());
                expect(encodePrincipalValue(p).length).toBeLessThan(reply.length);
            })
        );
    });

    it('keys principals by their bytes and remembers their text', () => {
        fc.assert(
            fc.property(principal, principal, (a, b) => {
                expect(principalKey(a) === principalKey(b)).toBe(a.toText() === b.toText());
                expect(principalText(a)).toBe(a.toText());
                expect(principalText(a)).toBe(a.toText());
            })
        );
    });
});
