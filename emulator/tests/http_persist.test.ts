/**
 * Persistence of a served network (`serveNetwork` with a state folder): stop it and start it
 * again, and everything acknowledged is still there: heap state, stable memory, a pending timer,
 * controllers, canister ids (new ones do not collide), the root key; the restored canisters keep
 * working.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Actor, HttpAgent } from '@dfinity/agent';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
import { afterAll, describe, expect, it } from 'vitest';
import { serveNetwork, type ServedNetwork } from '../../scripts/serve';
import { counterIdl, type CounterService } from './fixtures/idl';
import { buildEchoCanister, echoIdl, type EchoService } from './http_support';
import { EMPTY_ARGS, fixtureWasms } from './support';

const OWNER = Ed25519KeyIdentity.generate();

async function actors(net: ServedNetwork) {
    const agent = await HttpAgent.create({
        host: net.url,
        identity: OWNER,
        rootKey: net.rootKey,
        retryTimes: 0
    });
    return {
        echo: Actor.createActor<EchoService>(echoIdl, { agent, canisterId: net.canisterIds.echo }),
        counter: Actor.createActor<CounterService>(counterIdl, {
            agent,
            canisterId: net.canisterIds.counter
        })
    };
}

describe('a served network with a state folder', () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'emu-persist-'));
    afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

    it('keeps heap, stable memory, timers, controllers and ids across a restart', async () => {
        const echoWasm = buildEchoCanister();
        const { counter: counterWasm } = await fixtureWasms();
        const owner = OWNER.getPrincipal();
        const first = await serveNetwork({
            port: 0,
            stateDir,
            deploySuite: async (ic) => {
                const echo = await ic.setupCanister({
                    idlFactory: echoIdl,
                    wasm: echoWasm,
                    sender: owner,
                    controllers: [owner]
                });
                const counter = await ic.setupCanister({
                    idlFactory: counterIdl,
                    wasm: counterWasm,
                    arg: EMPTY_ARGS,
                    sender: owner,
                    controllers: [owner]
                });
                return { echo: echo.canisterId, counter: counter.canisterId };
            }
        });
        const ids = { ...first.canisterIds };
        try {
            const { echo, counter } = await actors(first);
            for (let i = 0; i < 3; i++) await echo.inc();
            expect(await counter.put('loan-1', 'farmer 7, 500 USD')).toEqual([]);
            await echo.arm(3);
        } finally {
            await first.close();
        }

        const second = await serveNetwork({ port: 0, stateDir });
        try {
            expect(second.canisterIds).toEqual(ids);
            expect(Buffer.from(second.rootKey)).toEqual(Buffer.from(first.rootKey));
            const { echo, counter } = await actors(second);
            expect(await echo.get()).toBe(3n);
            expect(await counter.lookup('loan-1')).toEqual(['farmer 7, 500 USD']);
            expect(await echo.inc()).toBe(4n);
            expect(
                (await second.ic.getControllers(Principal.fromText(ids.echo))).map((p) =>
                    p.toText()
                )
            ).toEqual([owner.toText()]);
            const deadline = Date.now() + 15_000;
            while ((await echo.getTicks()) === 0 && Date.now() < deadline) {
                await new Promise((r) => setTimeout(r, 250));
            }
            expect(await echo.getTicks()).toBe(1);
            const fresh = await second.ic.createCanister({ sender: owner });
            expect(Object.values(ids)).not.toContain(fresh.toText());
        } finally {
            await second.close();
        }
    }, 240_000);
});
