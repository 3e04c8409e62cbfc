/**
 * The management canister over the IC HTTP interface, as a deploy tool uses it through
 * `@dfinity/agent`: create a canister (the effective canister id picks the subnet), upload the
 * Wasm in chunks, install it chunked, read its status; controller checks and effective-id rules.
 */
import { Actor, type ActorSubclass, type HttpAgent } from '@dfinity/agent';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
import { sha256 } from '@noble/hashes/sha2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canisterIdFromIndex, type LocalIc, managementIdlFactory } from '../index';
import type { IcHttpServer } from '../src/http/server';
import {
    agentFor,
    buildEchoCanister,
    echoIdl,
    type EchoService,
    NO_ARGS,
    startNetwork
} from './http_support';

const CHUNK_BYTES = 1_000_000;

interface Management {
    provisional_create_canister_with_cycles(a: {
        amount: [] | [bigint];
        settings: [];
        specified_id: [];
        sender_canister_version: [];
    }): Promise<{ canister_id: Principal }>;
    upload_chunk(a: { canister_id: Principal; chunk: Uint8Array }): Promise<{ hash: Uint8Array }>;
    install_chunked_code(a: {
        mode: { install: null };
        target_canister: Principal;
        store_canister: [];
        chunk_hashes_list: { hash: Uint8Array }[];
        wasm_module_hash: Uint8Array;
        arg: Uint8Array;
        sender_canister_version: [];
    }): Promise<void>;
    install_code(a: {
        mode: { reinstall: null };
        canister_id: Principal;
        wasm_module: Uint8Array;
        arg: Uint8Array;
        sender_canister_version: [];
    }): Promise<void>;
    canister_status(a: { canister_id: Principal }): Promise<{
        status: Record<string, null>;
        module_hash: [] | [Uint8Array];
        settings: { controllers: Principal[] };
    }>;
}

function management(agent: HttpAgent, effectiveCanisterId: Principal): ActorSubclass<Management> {
    return Actor.createActor<Management>(managementIdlFactory, {
        agent,
        canisterId: Principal.fromText('aaaaa-aa'),
        effectiveCanisterId
    });
}

async function rejectOf(p: Promise<unknown>): Promise<{ status?: number; rejectCode?: number }> {
    const e = await p.then(
        () => null,
        (err: unknown) => err
    );
    if (e === null) throw new Error('expected a failure');
    const code = (e as { cause?: { code?: Record<string, unknown> } }).cause?.code ?? {};
    return { status: code.status as number | undefined, rejectCode: code.rejectCode as number };
}

describe('the management canister over HTTP', () => {
    let ic: LocalIc;
    let server: IcHttpServer;
    let wasm: Uint8Array;
    const owner = Ed25519KeyIdentity.generate();
    const stranger = Ed25519KeyIdentity.generate();
    let created: Principal;

    beforeAll(async () => {
        wasm = buildEchoCanister();
        ({ ic, server } = await startNetwork({ subnets: 2 }));
    }, 240_000);

    afterAll(async () => {
        await server?.close();
        await ic?.tearDown();
    });

    it('creates a canister on the subnet of the effective canister id', async () => {
        const [, second] = await ic.getApplicationSubnets();
        const onSecond = canisterIdFromIndex(1n << 20n);
        const mgmt = management(await agentFor(server.url, owner), onSecond);
        const r = await mgmt.provisional_create_canister_with_cycles({
            amount: [10_000_000_000_000n],
            settings: [],
            specified_id: [],
            sender_canister_version: []
        });
        created = r.canister_id;
        expect((await ic.getCanisterSubnetId(created))?.toText()).toBe(second.id.toText());
        expect((await ic.getControllers(created)).map((p) => p.toText())).toEqual([
            owner.getPrincipal().toText()
        ]);
    });

    it('uploads the Wasm in chunks and installs it chunked; the canister then answers', async () => {
        const agent = await agentFor(server.url, owner);
        const mgmt = management(agent, created);
        const hashes: { hash: Uint8Array }[] = [];
        for (let off = 0; off < wasm.length; off += CHUNK_BYTES) {
            const chunk = wasm.subarray(off, off + CHUNK_BYTES);
            const { hash } = await mgmt.upload_chunk({ canister_id: created, chunk });
            expect([...hash]).toEqual([...sha256(chunk)]);
            hashes.push({ hash });
        }
        expect(hashes.length).toBeGreaterThan(1);
        await mgmt.install_chunked_code({
            mode: { install: null },
            target_canister: created,
            store_canister: [],
            chunk_hashes_list: hashes,
            wasm_module_hash: sha256(wasm),
            arg: NO_ARGS,
            sender_canister_version: []
        });
        const echo = Actor.createActor<EchoService>(echoIdl, { agent, canisterId: created });
        expect((await echo.whoamiUpdate()).toText()).toBe(owner.getPrincipal().toText());
        const status = await mgmt.canister_status({ canister_id: created });
        expect('running' in status.status).toBe(true);
        expect([...(status.module_hash[0] ?? [])]).toEqual([...sha256(wasm)]);
    });

    it('refuses management by a non-controller with a certified reject', async () => {
        const mgmt = management(await agentFor(server.url, stranger), created);
        expect((await rejectOf(mgmt.canister_status({ canister_id: created }))).rejectCode).toBe(5);
        const r = await rejectOf(
            mgmt.install_code({
                mode: { reinstall: null },
                canister_id: created,
                wasm_module: new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
                arg: NO_ARGS,
                sender_canister_version: []
            })
        );
        expect(r.rejectCode).toBe(5);
        expect(
            await ic.canisterStatus({ canisterId: created, sender: owner.getPrincipal() })
        ).toMatchObject({
            moduleHash: sha256(wasm)
        });
    });

    it('answers 400 when the effective canister id is not the canister managed', async () => {
        const other = canisterIdFromIndex(5n);
        const mgmt = management(await agentFor(server.url, owner), other);
        expect((await rejectOf(mgmt.canister_status({ canister_id: created }))).status).toBe(400);
    });
});
