/**
 * `scripts/deploy.ts` against the local emulator: its command line, its error paths, and the whole
 * deployment over emulator actors (the same logic that runs over `@dfinity/agent` actors on a
 * replica): factory and router deployed, the shard Wasm uploaded in chunks, shards created in
 * regions, an application allowed to write, and a loan written and read back through the router.
 */
import { generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import {
    identityFromPem,
    main,
    parseDeployArgs,
    UsageError,
    type Connection,
    type Output
} from '../../scripts/deploy';
import { artifacts } from '../../scripts/build';
import { MAX_WASM_CHUNK_BYTES, SLOT_COUNT } from '../../src/shared/limits';
import { RouterInit } from '../../src/shared/router_api';
import type { RoutingTable, ShardInfo } from '../../src/shared/types';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { deployFactory } from './factory_support';
import { routerAs, routerInitArg } from './fixtures/router_fixture';
import { ADMIN, application, ok, principalOf, STRANGER, user, wasmOf } from './support';

/** An output that keeps what was written; not a terminal, so progress comes as lines. */
function sink(): Output & { text: () => string } {
    const parts: string[] = [];
    return { write: (t: string) => parts.push(t), isTTY: false, text: () => parts.join('') };
}

const NETWORK = 'http://127.0.0.1:4943';
/** An application the deployment allows to write through the router. */
const SHOP = principalOf('shop');

describe('scripts/deploy.ts command line', () => {
    const factory = principalOf('factory').toText();
    const router = principalOf('router').toText();

    it('parses the flags, with defaults for the optional ones', () => {
        const args = parseDeployArgs([
            '--network',
            NETWORK,
            '--factory',
            factory,
            '--router',
            router,
            '--shards',
            '3',
            '--regions',
            'asia, europe',
            '--writer',
            SHOP.toText(),
            '--writer',
            STRANGER.toText(),
            '--fetch-root-key'
        ]);
        expect(args).toMatchObject({
            network: NETWORK,
            shards: 3,
            regions: ['asia', 'europe'],
            fetchRootKey: true,
            reuseWasm: false,
            pollMs: 2_000,
            wasm: artifacts('data_shard').wasmGz
        });
        if (args === 'help') throw new Error('parsed as --help');
        expect(args.factory.toText()).toBe(factory);
        expect(args.writers.map((w) => w.toText())).toEqual([SHOP.toText(), STRANGER.toText()]);
        const minimal = parseDeployArgs([
            '--network',
            NETWORK,
            '--factory',
            factory,
            '--router',
            router
        ]);
        expect(minimal).toMatchObject({ shards: 4, regions: [], writers: [], identity: undefined });
    });

    it.each([
        [[], '--network is required'],
        [['--network', NETWORK, '--router', router], '--factory is required'],
        [['--network', NETWORK, '--factory', factory], '--router is required'],
        [['--network', 'ftp://x', '--factory', factory, '--router', router], 'http or https'],
        [['--network', NETWORK, '--factory', 'not-an-id', '--router', router], 'not a principal'],
        [
            ['--network', NETWORK, '--factory', factory, '--router', router, '--shards', '0'],
            '--shards'
        ],
        [
            ['--network', NETWORK, '--factory', factory, '--router', router, '--shards', '2.5'],
            '--shards'
        ],
        [['--network', NETWORK, '--factory', factory, '--router', router, '--colour'], 'colour'],
        [['--network', NETWORK, '--factory', factory, '--router', router, 'extra'], 'extra']
    ])('refuses %j with a usage error', (argv, message) => {
        expect(() => parseDeployArgs(argv)).toThrow(UsageError);
        expect(() => parseDeployArgs(argv)).toThrow(message);
    });

    it('exits with status 2 and the usage on a bad command line, connecting to nothing', async () => {
        const stderr = sink();
        let connected = false;
        const status = await main(['--factory', factory], {
            stderr,
            stdout: sink(),
            connect: async () => {
                connected = true;
                throw new Error('must not connect');
            }
        });
        expect(status).toBe(2);
        expect(connected).toBe(false);
        expect(stderr.text()).toContain('error: --network is required');
        expect(stderr.text()).toContain('Usage: npx tsx scripts/deploy.ts');
        const stdout = sink();
        expect(await main(['--help'], { stdout, stderr: sink() })).toBe(0);
        expect(stdout.text()).toContain('--fetch-root-key');
    });

    it('reads Ed25519 and secp256k1 PEM keys: self-authenticating principals, valid signatures', async () => {
        const message = new TextEncoder().encode('request id');
        const ed = generateKeyPairSync('ed25519');
        const edIdentity = identityFromPem(
            ed.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
        );
        const edDer = new Uint8Array(ed.publicKey.export({ type: 'spki', format: 'der' }));
        expect(edIdentity.getPrincipal().toText()).toBe(
            Principal.selfAuthenticating(edDer).toText()
        );
        expect(verify(null, message, ed.publicKey, await edIdentity.sign(message))).toBe(true);

        // dfx's own layout: PKCS#8 v2 with the public key as [1] EXPLICIT (OpenSSL refuses it).
        const seed = Buffer.from(ed.privateKey.export({ format: 'jwk' }).d!, 'base64url');
        const pub = Buffer.from(ed.privateKey.export({ format: 'jwk' }).x!, 'base64url');
        const dfxDer = Buffer.concat([
            Buffer.from('3053020101300506032b657004220420', 'hex'),
            seed,
            Buffer.from('a123032100', 'hex'),
            pub
        ]);
        const dfxPem = `-----BEGIN PRIVATE KEY-----\n${dfxDer.toString('base64')}\n-----END PRIVATE KEY-----\n`;
        expect(identityFromPem(dfxPem).getPrincipal().toText()).toBe(
            edIdentity.getPrincipal().toText()
        );

        const k = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
        const kIdentity = identityFromPem(
            k.privateKey.export({ type: 'sec1', format: 'pem' }) as string
        );
        const kDer = new Uint8Array(k.publicKey.export({ type: 'spki', format: 'der' }));
        expect(kIdentity.getPrincipal().toText()).toBe(Principal.selfAuthenticating(kDer).toText());
        const signature = await kIdentity.sign(message);
        expect(signature.length).toBe(64);
        expect(
            verify('sha256', message, { key: k.publicKey, dsaEncoding: 'ieee-p1363' }, signature)
        ).toBe(true);
        // Low s: the upper half of the order would be refused by the IC's verifier.
        const s = BigInt(`0x${Buffer.from(signature.subarray(32)).toString('hex')}`);
        const order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
        expect(s <= order / 2n).toBe(true);

        const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        expect(() =>
            identityFromPem(p256.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
        ).toThrow('unsupported key type ec P-256');
        expect(() => identityFromPem('not a key')).toThrow('not a PEM private key');
    });
});

describe('scripts/deploy.ts over emulator actors', () => {
    let ic: TestIc;
    let factoryId: Principal;
    let routerId: Principal;
    let scratch: string;
    let emptyWasm: string;

    /** Actors as `caller`; settling advances the clock and runs rounds, as time passes on a replica. */
    function connectAs(caller: Principal, router = routerId): () => Promise<Connection> {
        return async () => {
            const factory = ic.createActor<FactoryService>(factoryIdl, factoryId);
            factory.setPrincipal(caller);
            return {
                factory,
                router: routerAs(ic, router, caller),
                settle: async () => {
                    await ic.advanceTime(500);
                    await ic.tick(5);
                },
                caller
            };
        };
    }

    function argv(...extra: string[]): string[] {
        return [
            '--network',
            NETWORK,
            '--factory',
            factoryId.toText(),
            '--router',
            routerId.toText(),
            ...extra
        ];
    }

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        ({ factoryId } = await deployFactory(ic, [ADMIN]));
        routerId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: routerId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 0, factory: factoryId }),
            sender: ADMIN
        });
        scratch = await mkdtemp(join(tmpdir(), 'deploy-test-'));
        emptyWasm = join(scratch, 'empty.wasm.gz');
        await writeFile(emptyWasm, new Uint8Array(0));
    }, 120_000);

    afterAll(async () => {
        await ic?.tearDown();
        if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
    });

    it('stops with status 1 and the typed error when the caller is no factory admin', async () => {
        const stdout = sink();
        const stderr = sink();
        const status = await main(argv('--shards', '2'), {
            connect: connectAs(STRANGER),
            stdout,
            stderr
        });
        expect(status).toBe(1);
        expect(stderr.text()).toContain(
            'deploy failed: set_router_canister: {"NotAuthorized":null}'
        );
        const factory = ic.createActor<FactoryService>(factoryIdl, factoryId);
        expect(await factory.get_all_shards()).toEqual([]);
        expect((await factory.get_scalability_metrics()).wasm_committed).toBe(false);
    });

    it('stops with status 1 on an empty or missing Wasm file', async () => {
        const stderr = sink();
        const status = await main(argv('--shards', '2', '--wasm', emptyWasm), {
            connect: connectAs(ADMIN),
            stdout: sink(),
            stderr
        });
        expect(status).toBe(1);
        expect(stderr.text()).toContain('deploy failed: shard Wasm is empty');
        const missing = sink();
        expect(
            await main(argv('--wasm', '/nonexistent/shard.wasm.gz'), {
                connect: connectAs(ADMIN),
                stdout: sink(),
                stderr: missing
            })
        ).toBe(1);
        expect(missing.text()).toContain('cannot read the shard Wasm (run npm run build)');
    });

    it('uploads the Wasm in chunks, creates 2 shards in 2 regions, and a loan goes through the router', async () => {
        const stdout = sink();
        const stderr = sink();
        const status = await main(
            argv('--shards', '2', '--regions', 'asia,europe', '--writer', SHOP.toText()),
            { connect: connectAs(ADMIN), stdout, stderr }
        );
        expect(stderr.text()).not.toContain('deploy failed');
        expect(status).toBe(0);

        const wasmBytes = (await wasmOf('data_shard')).length;
        const chunks = Math.ceil(wasmBytes / MAX_WASM_CHUNK_BYTES);
        expect(chunks).toBeGreaterThan(1);
        expect(stdout.text()).toContain(`shard Wasm: ${chunks} chunk(s) uploaded`);
        expect(stderr.text()).toContain(`upload ${chunks}/${chunks}`);
        expect(stderr.text()).toContain('create 2/2');

        const factory = ic.createActor<FactoryService>(factoryIdl, factoryId);
        const shards = (await factory.get_all_shards()) as ShardInfo[];
        expect(shards.map((s) => [s.shard_id, s.region])).toEqual([
            [1, 'asia'],
            [2, 'europe']
        ]);
        const table = (await factory.get_routing_table()) as RoutingTable;
        const owned = new Map<number, number>();
        for (const r of table.ranges) {
            owned.set(r.shard_id, (owned.get(r.shard_id) ?? 0) + r.end - r.start + 1);
        }
        expect(owned.get(1)! + owned.get(2)!).toBe(SLOT_COUNT);
        expect(owned.get(2)).toBeGreaterThan(0);
        const router = routerAs(ic, routerId, SHOP);
        expect(await router.get_routing_table()).toEqual(table);
        expect(stdout.text()).toContain(
            `routing epoch ${table.epoch}: router ${routerId.toText()}`
        );

        // The application added with --writer writes a loan and reads it back through the router.
        const farmer = user(42);
        const loan = ok(await router.create_loan(application(farmer, 1)));
        expect(ok(await router.get_loan(loan.id))).toEqual(loan);
        // Its id names its slot, and the router sends it to the shard owning that slot.
        const slot = Number(loan.id >> 48n);
        const range = table.ranges.find((r) => r.start <= slot && slot <= r.end)!;
        const owner = table.shards.find((s) => s.shard_id === range.shard_id)!;
        expect(ok(await router.route_loan_query(loan.id)).toText()).toBe(
            owner.canister_id.toText()
        );
    });

    it('re-runs without creating more shards or uploading again (--reuse-wasm)', async () => {
        const stdout = sink();
        const status = await main(argv('--shards', '2', '--reuse-wasm'), {
            connect: connectAs(ADMIN),
            stdout,
            stderr: sink()
        });
        expect(status).toBe(0);
        expect(stdout.text()).toContain('shard Wasm: kept the committed one');
        expect(stdout.text()).toContain('shards: 0 created, 2 in total');
    });

    it('says how to fix a router deployed without the factory in its init argument', async () => {
        // `dfx deploy router` without an argument: the installer becomes the router's factory.
        const stray = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: stray,
            wasm: await wasmOf('router'),
            arg: new Uint8Array(IDL.encode([IDL.Opt(RouterInit)], [[]])),
            sender: ADMIN
        });
        const stderr = sink();
        const status = await main(
            [
                '--network',
                NETWORK,
                '--factory',
                factoryId.toText(),
                '--router',
                stray.toText(),
                '--shards',
                '2',
                '--reuse-wasm'
            ],
            { connect: connectAs(ADMIN, stray), stdout: sink(), stderr }
        );
        expect(status).toBe(1);
        expect(stderr.text()).toContain(
            `was the router deployed with factory = principal "${factoryId.toText()}" in its init argument?`
        );
        expect((await routerAs(ic, stray, ADMIN).get_routing_table()).epoch).toBe(0n);
    });
});
