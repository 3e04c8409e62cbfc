/**
 * `scripts/deploy.ts` end to end over HTTP: its own `@dfinity/agent` wiring (`connectAgent`, PEM
 * identity, `--fetch-root-key`) against a served network holding a factory and a router; the
 * shard Wasm is uploaded in chunks, 4 shards are created, and an application allowed with
 * `--writer` writes a loan and reads it back through the router, over HTTP too. The network has a
 * state folder: stopped and started again, the loan is still there. Then a fuzz pass calls every
 * router and factory method through the agent with arguments generated from their Candid types,
 * as an anonymous caller and as the writer: each answer is a reply of the declared type
 * (`Ok` or a typed `Err` where the type is a result), never a reject, and the invariants hold.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Actor, AnonymousIdentity, type Identity } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import fc from 'fast-check';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityFromPem, main, type Output } from '../../scripts/deploy';
import type { _SERVICE as RouterService } from '../../src/declarations/router/router.did';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { SLOT_COUNT } from '../../src/shared/limits';
import type { RoutingTable } from '../../src/shared/types';
import { idlFactory as routerIdl } from '../../src/declarations/router/router.did.js';
import { deployFactory } from '../../tests/integration/factory_support';
import { routerInitArg } from '../../tests/integration/fixtures/router_fixture';
import { application, ok, user, wasmOf } from '../../tests/integration/support';
import { serveNetwork, type ServedNetwork } from '../../scripts/serve';
import { agentFor } from './http_support';

/** Bound on generated collections and recursion (messages stay small, generation terminates). */
const MAX_FUZZ_ITEMS = 4;
const MAX_FUZZ_DEPTH = 6;
/** Generated calls per method and caller. */
const FUZZ_RUNS = 2;

/** A fast-check arbitrary of the values of a Candid type. */
function arbitraryOf(t: IDL.Type, depth = 0): fc.Arbitrary<unknown> {
    if (depth > MAX_FUZZ_DEPTH) throw new Error(`type ${t.display()} nests too deeply`);
    const d = depth + 1;
    if (t instanceof IDL.RecClass) return arbitraryOf(t.getType()!, d);
    if (t instanceof IDL.BoolClass) return fc.boolean();
    if (t instanceof IDL.NullClass) return fc.constant(null);
    if (t instanceof IDL.TextClass) return fc.string({ maxLength: 40 });
    if (t instanceof IDL.NatClass) return fc.bigInt({ min: 0n, max: 1n << 70n });
    if (t instanceof IDL.IntClass) return fc.bigInt({ min: -(1n << 70n), max: 1n << 70n });
    if (t instanceof IDL.FixedNatClass) {
        const max = (1n << BigInt(t._bits)) - 1n;
        return t._bits <= 32
            ? fc.integer({ min: 0, max: Number(max) })
            : fc.bigInt({ min: 0n, max });
    }
    if (t instanceof IDL.FixedIntClass) {
        const half = 1n << BigInt(t._bits - 1);
        return t._bits <= 32
            ? fc.integer({ min: -Number(half), max: Number(half) - 1 })
            : fc.bigInt({ min: -half, max: half - 1n });
    }
    if (t instanceof IDL.FloatClass) return fc.double({ noNaN: true });
    if (t instanceof IDL.PrincipalClass) {
        return fc.uint8Array({ maxLength: 29 }).map((b) => Principal.fromUint8Array(b));
    }
    if (t instanceof IDL.VecClass) {
        const inner = t._type;
        if (inner instanceof IDL.FixedNatClass && inner._bits === 8) {
            return fc.uint8Array({ maxLength: 64 });
        }
        return fc.array(arbitraryOf(inner, d), { maxLength: MAX_FUZZ_ITEMS });
    }
    if (t instanceof IDL.OptClass) {
        return fc.oneof(
            fc.constant([]),
            arbitraryOf(t._type, d).map((v) => [v])
        );
    }
    if (t instanceof IDL.TupleClass)
        return fc.tuple(
            ...(t as unknown as { _components: IDL.Type[] })._components.map((c) =>
                arbitraryOf(c, d)
            )
        );
    if (t instanceof IDL.RecordClass) {
        return fc
            .record(Object.fromEntries(t._fields.map(([k, ft]) => [k, arbitraryOf(ft, d)])))
            .map((r) => ({ ...(r as object) }));
    }
    if (t instanceof IDL.VariantClass) {
        return fc.oneof(...t._fields.map(([k, ft]) => arbitraryOf(ft, d).map((v) => ({ [k]: v }))));
    }
    throw new Error(`no generator for Candid type ${t.display()}`);
}

/** True when a Candid type is a `variant { Ok; Err }` result. */
function isResult(t: IDL.Type | undefined): boolean {
    const v = t instanceof IDL.RecClass ? t.getType() : t;
    if (!(v instanceof IDL.VariantClass)) return false;
    const keys = v._fields.map(([k]) => k).sort();
    return keys.length === 2 && keys[0] === 'Err' && keys[1] === 'Ok';
}

function sink(): Output & { text: () => string } {
    const parts: string[] = [];
    return { write: (t: string) => parts.push(t), isTTY: false, text: () => parts.join('') };
}

describe('scripts/deploy.ts over HTTP', () => {
    let net: ServedNetwork;
    let factoryId: Principal;
    let routerId: Principal;
    const scratch = mkdtempSync(join(tmpdir(), 'http-deploy-'));
    const stateDir = join(scratch, 'state');
    const pem = join(scratch, 'admin.pem');
    const shop = Ed25519KeyIdentity.generate();
    /** The loan written in the first test, read again after the fuzz pass. */
    let savedLoan: { id: bigint } | null = null;
    const emulator = {
        countInstructions: true,
        subnets: [{ region: 'asia' }, { region: 'europe' }]
    };

    beforeAll(async () => {
        const { privateKey } = generateKeyPairSync('ed25519');
        const pemText = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
        writeFileSync(pem, pemText);
        const admin = identityFromPem(pemText).getPrincipal();
        net = await serveNetwork({
            port: 0,
            stateDir,
            emulator,
            deploySuite: async (ic) => {
                ({ factoryId } = await deployFactory(ic, [admin]));
                routerId = await ic.createCanister({ sender: admin, controllers: [admin] });
                await ic.installCode({
                    canisterId: routerId,
                    wasm: await wasmOf('router'),
                    arg: routerInitArg({ shardCount: 0, factory: factoryId }),
                    sender: admin
                });
                return { factory: factoryId, router: routerId };
            }
        });
    }, 240_000);

    afterAll(async () => {
        await net?.close();
        rmSync(scratch, { recursive: true, force: true });
    });

    const routerOver = async (n: ServedNetwork) =>
        Actor.createActor<RouterService>(routerIdl, {
            agent: await agentFor(n.url, shop),
            canisterId: routerId
        });

    it('deploys 4 shards through the agent; a loan round-trips and survives a restart', async () => {
        const stdout = sink();
        const stderr = sink();
        const status = await main(
            [
                '--network',
                net.url,
                '--factory',
                factoryId.toText(),
                '--router',
                routerId.toText(),
                '--identity',
                pem,
                '--shards',
                '4',
                '--regions',
                'asia,europe',
                '--writer',
                shop.getPrincipal().toText(),
                '--fetch-root-key',
                '--poll-ms',
                '100'
            ],
            { stdout, stderr }
        );
        expect(stderr.text()).not.toContain('deploy failed');
        expect(status).toBe(0);
        expect(stdout.text()).toMatch(/shard Wasm: \d+ chunk\(s\) uploaded/);
        expect(stderr.text()).toContain('create 4/4');

        const loan = ok(await (await routerOver(net)).create_loan(application(user(7), 1)));
        expect(ok(await (await routerOver(net)).get_loan(loan.id))).toEqual(loan);

        await net.close();
        net = await serveNetwork({ port: 0, stateDir, emulator });
        expect(net.canisterIds).toEqual({
            factory: factoryId.toText(),
            router: routerId.toText()
        });
        expect(ok(await (await routerOver(net)).get_loan(loan.id))).toEqual(loan);
        savedLoan = loan;
    }, 600_000);

    it('answers fuzzed router and factory calls with their declared types, invariants intact', async () => {
        const factoryOver = async (id: Identity) =>
            Actor.createActor<FactoryService>(factoryIdl, {
                agent: await agentFor(net.url, id),
                canisterId: factoryId
            });
        const before = (await (await factoryOver(shop)).get_routing_table()) as RoutingTable;
        const callers: Identity[] = [new AnonymousIdentity(), shop];
        const targets: [IDL.InterfaceFactory, Principal][] = [
            [routerIdl as IDL.InterfaceFactory, routerId],
            [factoryIdl as IDL.InterfaceFactory, factoryId]
        ];
        let calls = 0;
        for (const [idl, canisterId] of targets) {
            const service = idl({ IDL });
            for (const caller of callers) {
                const agent = await agentFor(net.url, caller);
                const actor = Actor.createActor<
                    Record<string, (...a: unknown[]) => Promise<unknown>>
                >(idl, { agent, canisterId });
                for (const [method, func] of service._fields) {
                    const args = fc.sample(fc.tuple(...func.argTypes.map((t) => arbitraryOf(t))), {
                        numRuns: FUZZ_RUNS,
                        seed: 42
                    });
                    for (const a of args) {
                        calls++;
                        const what = `${canisterId.toText()}.${method} as ${caller.getPrincipal().toText()}`;
                        const value = await actor[method](...(a as unknown[])).catch((e: Error) => {
                            throw new Error(`${what} was rejected: ${e.message}`);
                        });
                        if (isResult(func.retTypes[0])) {
                            expect(Object.keys(value as object), what).toHaveLength(1);
                            expect(['Ok', 'Err'], what).toContain(Object.keys(value as object)[0]);
                        }
                    }
                }
            }
        }
        expect(calls).toBeGreaterThan(100);
        const after = (await (await factoryOver(shop)).get_routing_table()) as RoutingTable;
        expect(after.epoch >= before.epoch).toBe(true);
        const covered = new Array<number>(SLOT_COUNT).fill(0);
        for (const r of after.ranges) for (let s = r.start; s <= r.end; s++) covered[s]++;
        expect(covered.every((n) => n === 1)).toBe(true);
        expect(ok(await (await routerOver(net)).get_loan(savedLoan!.id))).toEqual(savedLoan);
    }, 600_000);
});
