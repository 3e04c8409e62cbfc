/**
 * The emulator over the IC HTTP interface, through the unmodified `@dfinity/agent` with
 * certificate and query-signature verification on: status and root key, signed queries,
 * certified updates (v3, and v2 with polling), sender authentication (Ed25519, ECDSA P-256 and
 * secp256k1, delegation chains), bad signatures and expiry (400, nothing executes), request-status
 * privacy (403), a foreign root key, certified rejects, read_state paths and wall-clock timers.
 */
import {
    Actor,
    AnonymousIdentity,
    CanisterStatus,
    Cbor,
    HttpAgent,
    SignIdentity,
    polling,
    requestIdOf,
    type ActorSubclass,
    type PublicKey,
    type Signature
} from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import {
    DelegationChain,
    DelegationIdentity,
    ECDSAKeyIdentity,
    Ed25519KeyIdentity
} from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
import { secp256k1 } from '@noble/curves/secp256k1';
import { sha256 } from '@noble/hashes/sha2';
import { concatBytes } from '@noble/hashes/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalIc } from '../index';
import { DER_PREFIX, wrapDer } from '../src/http/encoding';
import { NetworkKeys } from '../src/http/keys';
import type { IcHttpServer } from '../src/http/server';
import {
    agentFor,
    buildEchoCanister,
    echoIdl,
    type EchoService,
    NO_ARGS,
    startNetwork,
    withCustomSections
} from './http_support';

const OWNER = Ed25519KeyIdentity.generate();

/** An ECDSA secp256k1 identity over @noble/curves (the agent packages ship none). */
class Secp256k1Identity extends SignIdentity {
    private readonly secret = secp256k1.utils.randomPrivateKey();
    private readonly der = wrapDer('secp256k1', secp256k1.getPublicKey(this.secret, false));
    getPublicKey(): PublicKey {
        return {
            toDer: () => this.der,
            rawKey: this.der.subarray(DER_PREFIX.secp256k1.length)
        } as PublicKey;
    }
    async sign(blob: Uint8Array): Promise<Signature> {
        return secp256k1
            .sign(sha256(blob), this.secret, { prehash: false, lowS: true })
            .toCompactRawBytes() as Signature;
    }
}

/** An Ed25519 identity whose signatures are corrupted (one bit flipped). */
class TamperingIdentity extends SignIdentity {
    constructor(private readonly inner: Ed25519KeyIdentity) {
        super();
    }
    getPublicKey(): PublicKey {
        return this.inner.getPublicKey();
    }
    async sign(blob: Uint8Array): Promise<Signature> {
        const sig = new Uint8Array(await this.inner.sign(blob));
        sig[0] ^= 1;
        return sig as Signature;
    }
}

/** The agent error's HTTP status or reject details, whatever the error kind. */
function details(e: unknown): {
    status?: number;
    text: string;
    rejectCode?: number;
    certified?: boolean;
} {
    const code = (e as { cause?: { code?: Record<string, unknown> } }).cause?.code ?? {};
    return {
        status: code.status as number | undefined,
        text: `${String((e as Error).message)} ${String(code.responseBody ?? '')}`,
        rejectCode: code.rejectCode as number | undefined,
        certified: code.isCertified as boolean | undefined
    };
}

async function failure(p: Promise<unknown>): Promise<ReturnType<typeof details>> {
    const outcome = await p.then(
        (v) => ({ ok: true as const, v }),
        (e: unknown) => ({ ok: false as const, e })
    );
    if (outcome.ok) throw new Error(`expected a failure, got ${String(outcome.v)}`);
    return details(outcome.e);
}

describe('the emulator over the IC HTTP interface', () => {
    let ic: LocalIc;
    let server: IcHttpServer;
    let canisterId: Principal;
    let wasm: Uint8Array;

    const actorFor = async (identity?: SignIdentity | AnonymousIdentity) =>
        Actor.createActor<EchoService>(echoIdl, {
            agent: await agentFor(server.url, identity),
            canisterId
        }) as ActorSubclass<EchoService>;

    beforeAll(async () => {
        wasm = withCustomSections(buildEchoCanister(), {
            'icp:public candid:service': 'service : { whoami : () -> (principal) query }',
            'icp:private secret': 'for controllers only'
        });
        ({ ic, server } = await startNetwork());
        ({ canisterId } = await ic.setupCanister({
            idlFactory: echoIdl,
            wasm,
            sender: OWNER.getPrincipal(),
            controllers: [OWNER.getPrincipal()]
        }));
    }, 240_000);

    afterAll(async () => {
        await server?.close();
        await ic?.tearDown();
    });

    it('serves the status with the 133-byte DER BLS root key the agent fetches', async () => {
        const agent = await agentFor(server.url);
        const status = (await agent.status()) as unknown as { root_key: Uint8Array };
        expect(status.root_key.length).toBe(133);
        expect([...status.root_key.subarray(0, 37)]).toEqual([...DER_PREFIX.bls]);
        expect([...status.root_key]).toEqual([...server.rootKey]);
        await agent.fetchRootKey();
        expect([...agent.rootKey!]).toEqual([...server.rootKey]);
    });

    it('answers a signed query and a certified update with verification on', async () => {
        const echo = await actorFor(OWNER);
        const before = await echo.get();
        expect(await echo.inc()).toBe(before + 1n);
        expect(await echo.get()).toBe(before + 1n);
    });

    it('shows the canister the caller of an Ed25519, P-256, secp256k1 and anonymous sender', async () => {
        const p256 = await ECDSAKeyIdentity.generate();
        const k1 = new Secp256k1Identity();
        for (const id of [OWNER, p256, k1]) {
            const echo = await actorFor(id);
            expect((await echo.whoamiUpdate()).toText()).toBe(id.getPrincipal().toText());
            expect((await echo.whoami()).toText()).toBe(id.getPrincipal().toText());
        }
        const anon = await actorFor(new AnonymousIdentity());
        expect((await anon.whoamiUpdate()).toText()).toBe(Principal.anonymous().toText());
    });

    it('accepts a delegation chain as its root principal, and enforces its targets', async () => {
        const session = Ed25519KeyIdentity.generate();
        const chain = await DelegationChain.create(
            OWNER,
            session.getPublicKey(),
            new Date(Date.now() + 60_000)
        );
        const delegated = DelegationIdentity.fromDelegation(session, chain);
        const echo = await actorFor(delegated);
        expect((await echo.whoamiUpdate()).toText()).toBe(OWNER.getPrincipal().toText());
        expect((await echo.whoami()).toText()).toBe(OWNER.getPrincipal().toText());

        const elsewhere = await DelegationChain.create(
            OWNER,
            session.getPublicKey(),
            new Date(Date.now() + 60_000),
            {
                targets: [Principal.fromText('ryjl3-tyaaa-aaaaa-aaaba-cai')]
            }
        );
        const restricted = await actorFor(DelegationIdentity.fromDelegation(session, elsewhere));
        const f = await failure(restricted.inc());
        expect(f.status).toBe(400);
        expect(f.text).toContain('not one of the delegation');
    });

    it('refuses a tampered signature with 400 and executes nothing', async () => {
        const echo = await actorFor(OWNER);
        const before = await echo.get();
        const tampered = await actorFor(new TamperingIdentity(OWNER));
        const f = await failure(tampered.inc());
        expect(f.status).toBe(400);
        expect(f.text).toContain('Invalid signature');
        await ic.tick(3);
        expect(await echo.get()).toBe(before);
    });

    it('refuses an expired request with the replica 400 text and executes nothing', async () => {
        const echo = await actorFor(OWNER);
        const before = await echo.get();
        const content = {
            request_type: 'call',
            canister_id: canisterId,
            method_name: 'inc',
            arg: NO_ARGS,
            sender: OWNER.getPrincipal(),
            ingress_expiry: BigInt(Date.now() - 60_000) * 1_000_000n
        };
        const sig = await OWNER.sign(
            concatBytes(new TextEncoder().encode('\x0Aic-request'), requestIdOf(content))
        );
        const body = Cbor.encode({
            content,
            sender_pubkey: OWNER.getPublicKey().toDer(),
            sender_sig: sig
        });
        const res = await fetch(`${server.url}/api/v3/canister/${canisterId.toText()}/call`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/cbor' },
            body
        });
        expect(res.status).toBe(400);
        expect(await res.text()).toMatch(/^Invalid request expiry: /);
        await ic.tick(3);
        expect(await echo.get()).toBe(before);
    });

    it('lets only the sender read a request status (others get 403)', async () => {
        const agent = await agentFor(server.url, OWNER);
        const { requestId } = await agent.call(canisterId, {
            methodName: 'inc',
            arg: NO_ARGS,
            callSync: false
        });
        const path = [new TextEncoder().encode('request_status'), requestId];
        const other = await agentFor(server.url, Ed25519KeyIdentity.generate());
        const f = await failure(other.readState(canisterId, { paths: [path] }));
        expect(f.status).toBe(403);
        const { reply } = await polling.pollForResponse(agent, canisterId, requestId);
        expect(IDL.decode([IDL.Nat64], reply!)[0]).toBeGreaterThan(0n);
    });

    it('falls back to v2 and polling when v3 answers 404', async () => {
        const v2 = await startNetwork({ syncCall: false });
        try {
            const { canisterId: id } = await v2.ic.setupCanister({ idlFactory: echoIdl, wasm });
            const echo = Actor.createActor<EchoService>(echoIdl, {
                agent: await agentFor(v2.server.url, OWNER),
                canisterId: id
            });
            expect(await echo.inc()).toBe(1n);
            expect(await echo.get()).toBe(1n);
        } finally {
            await v2.server.close();
            await v2.ic.tearDown();
        }
    });

    it('is refused by an agent that trusts another root key', async () => {
        const agent = await HttpAgent.create({
            host: server.url,
            identity: OWNER,
            rootKey: NetworkKeys.generate().rootKeyDer,
            verifyQuerySignatures: true,
            retryTimes: 0
        });
        const echo = Actor.createActor<EchoService>(echoIdl, { agent, canisterId });
        const f = await failure(echo.inc());
        expect(f.text).toMatch(/signature/i);
        const q = await failure(echo.get());
        expect(q.text).toMatch(/signature|certificate/i);
    });

    it('certifies a trap as a reject with code 5 and rolls it back', async () => {
        const echo = await actorFor(OWNER);
        const before = await echo.get();
        const f = await failure(echo.boom());
        expect(f.rejectCode).toBe(5);
        expect(f.certified).toBe(true);
        expect(await echo.get()).toBe(before);
        const q = await failure(echo.boomQuery());
        expect(q.rejectCode).toBe(5);
    });

    it('answers an inspect_message refusal as an uncertified reject', async () => {
        const f = await failure((await actorFor(OWNER)).forbidden());
        expect(f.rejectCode).toBe(4);
        expect(f.certified).toBe(false);
    });

    it('certifies controllers, module hash, candid metadata, time and subnet node keys', async () => {
        const agent = await agentFor(server.url, OWNER);
        const status = await CanisterStatus.request({
            canisterId,
            agent,
            paths: ['controllers', 'module_hash', 'candid', 'time', 'subnet']
        });
        const controllers = status.get('controllers') as Principal[];
        expect(controllers.map((p) => p.toText())).toEqual([OWNER.getPrincipal().toText()]);
        expect(status.get('module_hash')).toBe(Buffer.from(sha256(wasm)).toString('hex'));
        expect(status.get('candid')).toContain('whoami');
        expect(Math.abs((status.get('time') as Date).getTime() - Date.now())).toBeLessThan(60_000);
        const subnet = status.get('subnet') as {
            subnetId: string;
            nodeKeys: Map<string, Uint8Array>;
        };
        expect(subnet.subnetId).toBe(server.keys.subnetId.toText());
        expect([...subnet.nodeKeys.keys()]).toEqual([server.keys.nodeId.toText()]);
    });

    it('certifies private metadata to controllers only (others get 403)', async () => {
        const path = [
            new TextEncoder().encode('canister'),
            canisterId.toUint8Array(),
            new TextEncoder().encode('metadata'),
            new TextEncoder().encode('secret')
        ];
        const stranger = await agentFor(server.url, Ed25519KeyIdentity.generate());
        expect((await failure(stranger.readState(canisterId, { paths: [path] }))).status).toBe(403);
        const status = await CanisterStatus.request({
            canisterId,
            agent: await agentFor(server.url, OWNER),
            paths: [{ key: 'secret', path: 'secret', decodeStrategy: 'utf-8' }]
        });
        expect(status.get('secret')).toBe('for controllers only');
    });

    it('follows wall-clock time and fires timers as time passes', async () => {
        const echo = await actorFor(OWNER);
        expect(Number((await echo.now()) / 1_000_000n)).toBeGreaterThan(Date.now() - 5_000);
        const ticks = await echo.getTicks();
        await echo.arm(1);
        const deadline = Date.now() + 10_000;
        while ((await echo.getTicks()) === ticks && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 200));
        }
        expect(await echo.getTicks()).toBe(ticks + 1);
    });
});
