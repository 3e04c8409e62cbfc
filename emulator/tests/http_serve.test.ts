/**
 * `scripts/serve.ts`: a served network deploys through its callback, writes dfx-style
 * `canister_ids.json`, the root key and the URL into its state folder, answers an agent that
 * trusts the key from that folder, and keeps the same root key across restarts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Actor, HttpAgent } from '@dfinity/agent';
import { afterAll, describe, expect, it } from 'vitest';
import { parseServeArgs, serveNetwork } from '../../scripts/serve';
import { buildEchoCanister, echoIdl, type EchoService } from './http_support';

describe('serveNetwork', () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'emu-serve-'));
    afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

    it('deploys, writes the state files and serves agents that trust the written key', async () => {
        const wasm = buildEchoCanister();
        const net = await serveNetwork({
            port: 0,
            stateDir,
            deploySuite: async (ic) => {
                const { canisterId } = await ic.setupCanister({ idlFactory: echoIdl, wasm });
                return { echo: canisterId };
            }
        });
        try {
            const ids = JSON.parse(readFileSync(join(stateDir, 'canister_ids.json'), 'utf8'));
            expect(ids).toEqual({ echo: { local: net.canisterIds.echo } });
            const info = JSON.parse(readFileSync(join(stateDir, 'network.json'), 'utf8'));
            expect(info.url).toBe(net.url);
            const rootKey = new Uint8Array(readFileSync(join(stateDir, 'root_key.der')));
            expect(Buffer.from(rootKey).toString('hex')).toBe(info.root_key_hex);

            const agent = await HttpAgent.create({ host: info.url, rootKey, retryTimes: 0 });
            const echo = Actor.createActor<EchoService>(echoIdl, {
                agent,
                canisterId: ids.echo.local
            });
            expect(await echo.inc()).toBe(1n);
            expect(await echo.get()).toBe(1n);
        } finally {
            await net.close();
        }
        const again = await serveNetwork({ port: 0, stateDir });
        try {
            expect(Buffer.from(again.rootKey).toString('hex')).toBe(
                Buffer.from(net.rootKey).toString('hex')
            );
        } finally {
            await again.close();
        }
    }, 240_000);

    it('parses its command line and refuses bad values', () => {
        expect(parseServeArgs(['--port', '0', '--state', 'x'])).toEqual({
            port: 0,
            host: '127.0.0.1',
            state: 'x'
        });
        expect(() => parseServeArgs(['--port', '70000'])).toThrow(/--port/);
        expect(() => parseServeArgs(['--bogus', '1'])).toThrow(/unknown option/);
    });
});
