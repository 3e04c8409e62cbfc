/**
 * A fuzz pass over the HTTP interface's input handling: random bodies and corrupted copies of a
 * validly signed `inc` call (fields dropped, retyped or altered, signature or key bytes flipped)
 * always get a 4xx with a message, never a 5xx or an accepted call, and the canister's state
 * does not change. The unaltered envelope is then accepted once, as a control.
 */
import { Cbor, requestIdOf } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import type { Principal } from '@dfinity/principal';
import { concatBytes } from '@noble/hashes/utils';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalIc } from '../index';
import type { IcHttpServer } from '../src/http/server';
import { buildEchoCanister, echoIdl, NO_ARGS, startNetwork } from './http_support';

const OWNER = Ed25519KeyIdentity.generate();

type Envelope = {
    content: Record<string, unknown>;
    sender_pubkey: Uint8Array;
    sender_sig: Uint8Array;
};

async function signedInc(canisterId: Principal, nonce = [1, 2, 3]): Promise<Envelope> {
    const content = {
        request_type: 'call',
        canister_id: canisterId.toUint8Array(),
        method_name: 'inc',
        arg: NO_ARGS,
        sender: OWNER.getPrincipal().toUint8Array(),
        ingress_expiry: BigInt(Date.now() + 120_000) * 1_000_000n,
        nonce: new Uint8Array(nonce)
    };
    const sig = await OWNER.sign(
        concatBytes(new TextEncoder().encode('\x0Aic-request'), requestIdOf(content))
    );
    return {
        content,
        sender_pubkey: new Uint8Array(OWNER.getPublicKey().toDer()),
        sender_sig: new Uint8Array(sig)
    };
}

const CONTENT_FIELDS = [
    'request_type',
    'canister_id',
    'method_name',
    'arg',
    'sender',
    'ingress_expiry',
    'nonce'
];

/** One corruption of a valid envelope (each one must invalidate it). */
const corruption = fc.oneof(
    fc.record({ kind: fc.constant('drop'), field: fc.constantFrom(...CONTENT_FIELDS) }),
    fc.record({
        kind: fc.constant('retype'),
        field: fc.constantFrom(...CONTENT_FIELDS),
        value: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean())
    }),
    fc.record({
        kind: fc.constant('alter'),
        field: fc.constantFrom('arg', 'method_name', 'nonce', 'ingress_expiry', 'sender'),
        salt: fc.integer({ min: 1, max: 255 })
    }),
    fc.record({
        kind: fc.constant('flip'),
        part: fc.constantFrom('sender_sig', 'sender_pubkey'),
        index: fc.nat(),
        bit: fc.integer({ min: 0, max: 7 })
    }),
    fc.record({ kind: fc.constant('unsign'), part: fc.constantFrom('sender_sig', 'sender_pubkey') })
);

function corrupt(e: Envelope, c: Record<string, unknown>): Record<string, unknown> {
    const content = { ...e.content };
    const env: Record<string, unknown> = { ...e, content };
    const field = c.field as string;
    switch (c.kind) {
        case 'drop':
            delete content[field];
            break;
        case 'retype':
            content[field] = c.value;
            break;
        case 'alter': {
            const v = content[field];
            const salt = c.salt as number;
            if (typeof v === 'bigint') content[field] = v + BigInt(salt);
            else if (typeof v === 'string')
                content[field] = v + String.fromCharCode(65 + (salt % 26));
            else {
                const b = new Uint8Array(v as Uint8Array);
                b[b.length - 1] ^= salt;
                content[field] = b;
            }
            break;
        }
        case 'flip': {
            const b = new Uint8Array(e[c.part as 'sender_sig']);
            b[(c.index as number) % b.length] ^= 1 << (c.bit as number);
            env[c.part as string] = b;
            break;
        }
        case 'unsign':
            delete env[c.part as string];
            break;
    }
    return env;
}

describe('fuzzing the HTTP interface with bad envelopes', () => {
    let ic: LocalIc;
    let server: IcHttpServer;
    let canisterId: Principal;

    const post = async (body: Uint8Array, endpoint = 'call') => {
        const version = endpoint === 'call' ? 'v3' : 'v2';
        const res = await fetch(
            `${server.url}/api/${version}/canister/${canisterId.toText()}/${endpoint}`,
            {
                method: 'POST',
                headers: { 'Content-Type': 'application/cbor' },
                body
            }
        );
        return { status: res.status, text: await res.text() };
    };
    const count = async () =>
        IDL.decode([IDL.Nat64], await ic.queryCall({ canisterId, method: 'get' }))[0] as bigint;

    beforeAll(async () => {
        const wasm = buildEchoCanister();
        ({ ic, server } = await startNetwork());
        ({ canisterId } = await ic.setupCanister({ idlFactory: echoIdl, wasm }));
    }, 240_000);

    afterAll(async () => {
        await server?.close();
        await ic?.tearDown();
    });

    it('answers every corrupted call with a 4xx and runs nothing', async () => {
        const valid = await signedInc(canisterId);
        const before = await count();
        await fc.assert(
            fc.asyncProperty(corruption, async (c) => {
                const r = await post(Cbor.encode(corrupt(valid, c)));
                expect(r.status, `${JSON.stringify(c)} → ${r.text}`).toBeGreaterThanOrEqual(400);
                expect(r.status).toBeLessThan(500);
                expect(r.text.length).toBeGreaterThan(0);
            }),
            { numRuns: 150, seed: 7 }
        );
        await ic.tick(2);
        expect(await count()).toBe(before);
        // Control: the unaltered envelope is accepted and runs once, even if sent twice.
        expect((await post(Cbor.encode(valid as never))).status).toBe(200);
        expect((await post(Cbor.encode(valid as never))).status).toBe(200);
        expect(await count()).toBe(before + 1n);
    });

    it('answers random bodies on every endpoint with a 4xx', async () => {
        await fc.assert(
            fc.asyncProperty(
                fc.uint8Array({ maxLength: 256 }),
                fc.constantFrom('call', 'query', 'read_state'),
                async (body, endpoint) => {
                    const r = await post(body, endpoint);
                    expect(r.status).toBeGreaterThanOrEqual(400);
                    expect(r.status).toBeLessThan(500);
                }
            ),
            { numRuns: 100, seed: 11 }
        );
    });

    it('serves the newer paths icp-cli uses: v4 synchronous call, v3 query and read_state', async () => {
        const at = (path: string, body: Uint8Array) =>
            fetch(`${server.url}/api/${path}`, {
                method: 'POST',
                headers: { 'Content-Type': 'application/cbor' },
                body
            });
        const before = await count();
        const call = await at(
            `v4/canister/${canisterId.toText()}/call`,
            Cbor.encode((await signedInc(canisterId, [9])) as never)
        );
        expect(call.status).toBe(200);
        const answer = Cbor.decode<{ status: string; certificate: Uint8Array }>(
            new Uint8Array(await call.arrayBuffer())
        );
        expect(answer.status).toBe('replied');
        expect(answer.certificate.length).toBeGreaterThan(0);
        expect(await count()).toBe(before + 1n);
        const query = {
            content: {
                request_type: 'query',
                canister_id: canisterId.toUint8Array(),
                method_name: 'get',
                arg: NO_ARGS,
                sender: new Uint8Array([4]),
                ingress_expiry: BigInt(Date.now() + 120_000) * 1_000_000n
            }
        };
        const q = await at(`v3/canister/${canisterId.toText()}/query`, Cbor.encode(query));
        expect(q.status).toBe(200);
        const reply = Cbor.decode<{ status: string; reply: { arg: Uint8Array } }>(
            new Uint8Array(await q.arrayBuffer())
        );
        expect(reply.status).toBe('replied');
        expect(IDL.decode([IDL.Nat64], reply.reply.arg)[0]).toBe(before + 1n);
        // v4 has only the call; a v4 query is not a path.
        expect(
            (await at(`v4/canister/${canisterId.toText()}/query`, Cbor.encode(query))).status
        ).toBe(404);
    });
});
