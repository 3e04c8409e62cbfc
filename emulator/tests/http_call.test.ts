/**
 * `npm run call` (scripts/call.ts) end to end over HTTP: a served network with a factory, a router
 * and two shards (names and ids in the state folder's canister_ids.json, as `npm start -- --serve`
 * writes them) and an echo canister that carries its `candid:service` metadata. The CLI's `main`
 * reads the routing table from the factory, creates a loan through the router as a writer given by
 * a PEM file, reads it back, and gets typed errors as the anonymous caller; its replies parse
 * back into what the agent itself decodes. Bad arguments exit 2 with the position, rejects exit 1;
 * a canister outside canister_ids.json is typed by its metadata or by `--did`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Actor, AnonymousIdentity } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type Output } from '../../scripts/call';
import { identityFromPem } from '../../scripts/deploy';
import { parseCandidArgs } from '../../scripts/lib/candid_text';
import { serveNetwork, type ServedNetwork } from '../../scripts/serve';
import type { _SERVICE as FactoryService } from '../../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../../src/declarations/factory/factory.did.js';
import { idlFactory as routerIdl } from '../../src/declarations/router/router.did.js';
import { deployFactory } from '../../tests/integration/factory_support';
import { deploy, routerAs } from '../../tests/integration/fixtures/router_fixture';
import { ADMIN, ok } from '../../tests/integration/support';
import { agentFor, buildEchoCanister, withCustomSections } from './http_support';

/** The echo canister's interface as a `.did` file (what its metadata section holds). */
const ECHO_DID = `type Count = nat64;
service : {
    inc : () -> (Count);
    get : () -> (Count) query;
    whoami : () -> (principal) query;
    boom : () -> (nat64);
}`;

function sink(): Output & { text: () => string } {
    const parts: string[] = [];
    return { write: (t: string) => parts.push(t), text: () => parts.join('') };
}

/** Runs the CLI; returns its exit status and output. */
async function call(argv: string[]): Promise<{ status: number; out: string; err: string }> {
    const stdout = sink();
    const stderr = sink();
    const status = await main(argv, { stdout, stderr });
    return { status, out: stdout.text(), err: stderr.text() };
}

/** The method's Candid types in an interface factory. */
function func(factory: unknown, method: string): IDL.FuncClass {
    const service = (factory as IDL.InterfaceFactory)({ IDL }) as IDL.ServiceClass;
    return service._fields.find(([k]) => k === method)![1];
}

describe('npm run call over HTTP', () => {
    let net: ServedNetwork;
    let echoId: Principal;
    const scratch = mkdtempSync(join(tmpdir(), 'http-call-'));
    const stateDir = join(scratch, 'state');
    const writerPem = join(scratch, 'writer.pem');
    const { privateKey } = generateKeyPairSync('ed25519');
    const pemText = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const writer = identityFromPem(pemText).getPrincipal();
    const state = ['--state', stateDir];

    beforeAll(async () => {
        writeFileSync(writerPem, pemText);
        const echoWasm = withCustomSections(buildEchoCanister(), {
            'icp:public candid:service': ECHO_DID
        });
        net = await serveNetwork({
            port: 0,
            stateDir,
            persist: false,
            emulator: { countInstructions: true },
            deploySuite: async (ic) => {
                const { factoryId } = await deployFactory(ic, [ADMIN]);
                const d = await deploy(ic, { shardCount: 2 });
                ok(await routerAs(ic, d.routerId, ADMIN).add_writer(writer));
                echoId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
                await ic.installCode({ canisterId: echoId, wasm: echoWasm, sender: ADMIN });
                const ids: Record<string, Principal> = { factory: factoryId, router: d.routerId };
                for (const s of d.shards) ids[`data_shard_${s.shard_id}`] = s.canisterId;
                return ids;
            }
        });
    }, 120_000);

    afterAll(async () => {
        await net?.close();
        rmSync(scratch, { recursive: true, force: true });
    });

    it('reads the routing table from the factory as the agent decodes it', async () => {
        const { status, out, err } = await call([...state, 'factory', 'get_routing_table']);
        expect(err).toBe('');
        expect(status).toBe(0);
        expect(out).toMatch(/^\(\s*record \{/);
        const agent = await agentFor(net.url, new AnonymousIdentity());
        const factory = Actor.createActor<FactoryService>(factoryIdl, {
            agent,
            canisterId: net.canisterIds.factory
        });
        const f = func(factoryIdl, 'get_routing_table');
        expect(parseCandidArgs(out, f.retTypes)).toEqual([await factory.get_routing_table()]);
    });

    it('creates a loan through the router as the writer and reads it back', async () => {
        const application =
            `(record { borrower = principal "${writer.toText()}"; nft_id = 7; ` +
            'collateral_value_btc = 100_000; amount_requested = 1_000_000 : nat64; apr = 1_200 })';
        const created = await call([
            ...state,
            '--identity',
            writerPem,
            'router',
            'create_loan',
            application
        ]);
        expect(created.err).toBe('');
        expect(created.status).toBe(0);
        expect(created.out).toMatch(/variant \{\s*Ok = record \{/);
        const [result] = parseCandidArgs(created.out, func(routerIdl, 'create_loan').retTypes) as [
            { Ok: { id: bigint; borrower: Principal; amount_requested: bigint } }
        ];
        const loan = result.Ok;
        expect(loan.borrower.toText()).toBe(writer.toText());
        expect(loan.amount_requested).toBe(1_000_000n);

        // A query call (reply signature verified): the same loan.
        const read = await call([
            ...state,
            '--identity',
            writerPem,
            'router',
            'get_loan',
            `(${loan.id} : nat64)`
        ]);
        expect(read.status).toBe(0);
        const [again] = parseCandidArgs(read.out, func(routerIdl, 'get_loan').retTypes);
        expect(again).toEqual({ Ok: loan });
        // By name, with --network (the root key then fetched from the local URL).
        const viaUrl = await call([
            '--network',
            net.url,
            ...state,
            '--identity',
            writerPem,
            'router',
            'get_loan',
            String(loan.id)
        ]);
        expect(viaUrl.out).toBe(read.out);
        // By id outside canister_ids.json: no declarations, no metadata, no --did.
        const byId = await call([
            '--network',
            net.url,
            '--state',
            join(scratch, 'nowhere'),
            net.canisterIds.router,
            'get_loan',
            String(loan.id)
        ]);
        expect(byId.status).toBe(2);
        expect(byId.err).toContain('no candid:service metadata): pass --did FILE');
        const withDid = await call([
            '--network',
            net.url,
            '--did',
            'src/query_router/router.did',
            '--identity',
            writerPem,
            net.canisterIds.router,
            'get_loan',
            String(loan.id)
        ]);
        expect(withDid.out).toBe(read.out);
    });

    it('prints typed errors as replies, exit 0', async () => {
        const anonymous = await call([
            ...state,
            'router',
            'create_loan',
            '(record { borrower = principal "aaaaa-aa"; nft_id = 1; collateral_value_btc = 1; ' +
                'amount_requested = 1; apr = 1 })'
        ]);
        expect(anonymous.status).toBe(0);
        expect(anonymous.out).toBe('(variant { Err = variant { NotAuthorized } })\n');
        const missing = await call([
            ...state,
            '--identity',
            writerPem,
            'router',
            'get_loan',
            '(12_345 : nat64)'
        ]);
        expect(missing.status).toBe(0);
        expect(missing.out).toBe(
            [
                '(',
                '  variant {',
                '    Err = variant { NotFound = record { id = "12345"; what = "loan" } }',
                '  },',
                ')\n'
            ].join('\n')
        );
        const shard = await call([...state, 'data_shard_1', 'version']);
        expect(shard.err).toBe('');
        expect(shard.status).toBe(0);
        expect(shard.out).toMatch(/^\(".+"\)\n$/);
    });

    it('exits 2 on bad arguments, names and methods, with the position', async () => {
        const bad = await call([...state, 'router', 'get_loan', '(12_345 : nat32)']);
        expect(bad.status).toBe(2);
        expect(bad.err).toContain('annotation nat32 does not match the expected type nat64');
        expect(bad.err).toContain('at line 1, column 9');
        const syntax = await call([...state, 'router', 'get_loan', '(1']);
        expect(syntax.status).toBe(2);
        expect(syntax.err).toContain(
            'expected `)`, found the end of the input at line 1, column 3'
        );
        const name = await call([...state, 'nosuch', 'get_loan', '(1)']);
        expect(name.status).toBe(2);
        expect(name.err).toContain('known: factory, router, data_shard_1, data_shard_2');
        const method = await call([...state, 'router', 'nosuch']);
        expect(method.status).toBe(2);
        expect(method.err).toContain('router has no method nosuch (methods: add_shard_to_balancer');
        const flags = await call([...state, '--query', '--update', 'router', 'version']);
        expect(flags.status).toBe(2);
        const pem = await call([
            ...state,
            '--identity',
            join(scratch, 'none.pem'),
            'router',
            'version'
        ]);
        expect(pem.status).toBe(2);
    });

    it('types a canister by its candid:service metadata or --did; rejects exit 1', async () => {
        const id = echoId.toText();
        const inc = await call([...state, id, 'inc']);
        expect(inc.err).toBe('');
        expect([inc.status, inc.out]).toEqual([0, '(1 : nat64)\n']);
        expect((await call([...state, id, 'get'])).out).toBe('(1 : nat64)\n');
        // --update on a query method: an update call whose reply is certified.
        expect((await call([...state, '--update', id, 'get'])).out).toBe('(1 : nat64)\n');
        const who = await call([...state, '--identity', writerPem, id, 'whoami']);
        expect(who.out).toBe(`(principal "${writer.toText()}")\n`);
        const didFile = join(scratch, 'echo.did');
        writeFileSync(didFile, ECHO_DID.replace('boom : () -> (nat64);', ''));
        const viaDid = await call([...state, '--did', didFile, id, 'boom']);
        expect(viaDid.status).toBe(2);
        expect(viaDid.err).toContain('has no method boom');
        expect((await call([...state, '--did', didFile, id, 'get'])).out).toBe('(1 : nat64)\n');
        const boom = await call([...state, id, 'boom']);
        expect(boom.status).toBe(1);
        expect(boom.err).toMatch(/call failed: .*boom/s);
        expect((await call([...state, id, 'get'])).out).toBe('(1 : nat64)\n');
    });
});
