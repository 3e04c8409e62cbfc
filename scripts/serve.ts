/**
 * A local IC network over HTTP: the emulator (wall-clock time, timers firing as time passes)
 * behind the IC HTTP interface, so `@dfinity/agent`, deploy scripts and CLIs talk to it as to a
 * replica. Writes where tools look for them, in the state folder (default `.emulator/`):
 * `canister_ids.json` (dfx style, network `local`), `root_key.der`, and `network.json`
 * (`{ url, root_key_hex, subnet_id }`). The root key is generated once per state folder.
 *
 *   npx tsx scripts/serve.ts [--port 4943] [--host 127.0.0.1] [--state DIR]
 *
 * serves an empty network (create canisters through the management canister); `npm start --
 * --serve` deploys the suite on it through `serveNetwork({ deploySuite })`. With `--state DIR`
 * the canisters persist there (`emulator/src/http/persist.ts`): restored on start, checkpointed
 * every 30 s and on Ctrl-C, which closes it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Principal } from '@dfinity/principal';
import { LocalIc, type LocalIcOptions } from '../emulator';
import { NetworkKeys } from '../emulator/src/http/keys';
import { quiescent, restoreState, savedSubnets, saveState } from '../emulator/src/http/persist';
import { IcHttpServer } from '../emulator/src/http/server';

/** Default port (dfx's). */
export const DEFAULT_PORT = 4943;
/** Default state folder. */
export const DEFAULT_STATE_DIR = '.emulator';
/** Rounds `close()` runs to finish accepted messages before the last checkpoint. */
const MAX_DRAIN_ROUNDS = 10_000;

/** Options of `serveNetwork`. */
export interface ServeOptions {
    /** Port (default 4943; 0 = a free one) and host (default 127.0.0.1). */
    port?: number;
    host?: string;
    /** Where keys and canister ids go (default `.emulator`). */
    stateDir?: string;
    /**
     * Persist the canisters in the state folder (default: when `stateDir` is given): restored on
     * start (then `deploySuite` is skipped), saved every `saveIntervalMs` and on `close()`.
     */
    persist?: boolean;
    /** Checkpoint interval while serving (default 30 s). */
    saveIntervalMs?: number;
    /** Emulator options (subnets, seed, …); `wallClock` is always on. */
    emulator?: Omit<LocalIcOptions, 'wallClock'>;
    /** Deploys canisters on a fresh network; returns their names and ids for canister_ids.json. */
    deploySuite?: (ic: LocalIc) => Promise<Record<string, Principal | string> | void>;
    /** Progress lines (default: none). */
    log?: (line: string) => void;
}

/** A running network. */
export interface ServedNetwork {
    url: string;
    /** DER of the BLS root key agents must trust (`HttpAgent.create({ rootKey })`). */
    rootKey: Uint8Array;
    ic: LocalIc;
    canisterIds: Record<string, string>;
    stateDir: string;
    close(): Promise<void>;
}

/**
 * Starts a network, deploys with `deploySuite` if given, writes the state files.
 *
 * @example
 * const net = await serveNetwork({ port: 0, deploySuite: async (ic) => ({ router: routerId }) });
 * const agent = await HttpAgent.create({ host: net.url, rootKey: net.rootKey });
 * await net.close();
 */
export async function serveNetwork(options: ServeOptions = {}): Promise<ServedNetwork> {
    const log = options.log ?? (() => undefined);
    const stateDir = resolve(options.stateDir ?? DEFAULT_STATE_DIR);
    mkdirSync(stateDir, { recursive: true });
    const keys = NetworkKeys.loadOrCreate(stateDir);
    const persist = options.persist ?? options.stateDir !== undefined;
    const saved = persist ? savedSubnets(stateDir) : null;
    const ic = await LocalIc.create({
        maxRoundsPerCall: 1_000_000,
        ...options.emulator,
        ...(saved ? { subnets: saved } : {}),
        wallClock: true
    });
    const canisterIds: Record<string, string> = {};
    if (saved && restoreState(ic.raw, stateDir)) {
        const idsFile = join(stateDir, 'canister_ids.json');
        const ids = existsSync(idsFile)
            ? (JSON.parse(readFileSync(idsFile, 'utf8')) as Record<string, { local: string }>)
            : {};
        for (const [name, id] of Object.entries(ids)) canisterIds[name] = id.local;
        log(`restored ${ic.raw.canisters.size} canister(s) from ${stateDir}`);
    } else if (options.deploySuite) {
        log('deploying…');
        const ids = (await options.deploySuite(ic)) ?? {};
        for (const [name, id] of Object.entries(ids)) {
            canisterIds[name] = typeof id === 'string' ? id : id.toText();
        }
    }
    const server = await IcHttpServer.start({
        ic,
        keys,
        port: options.port ?? DEFAULT_PORT,
        host: options.host
    });
    writeStateFiles(stateDir, server, canisterIds);
    log(`network: ${server.url}`);
    log(`root key (DER hex): ${Buffer.from(keys.rootKeyDer).toString('hex')}`);
    for (const [name, id] of Object.entries(canisterIds)) log(`  ${name.padEnd(16)} ${id}`);
    log(`state: ${stateDir} (canister_ids.json, root_key.der, network.json)`);
    let closed = false;
    let savedRound = -1;
    const checkpoint = () => {
        if (!persist || ic.raw.round === savedRound || !quiescent(ic.raw)) return;
        saveState(ic.raw, stateDir);
        savedRound = ic.raw.round;
    };
    if (persist) checkpoint();
    const saver = persist
        ? setInterval(() => {
              try {
                  checkpoint();
              } catch (e) {
                  log(`checkpoint failed: ${(e as Error).message}`);
              }
          }, options.saveIntervalMs ?? 30_000)
        : null;
    saver?.unref();
    return {
        url: server.url,
        rootKey: keys.rootKeyDer,
        ic,
        canisterIds,
        stateDir,
        close: async () => {
            if (closed) return;
            closed = true;
            if (saver) clearInterval(saver);
            await server.close();
            if (persist) {
                // Finish what was accepted (bounded), then checkpoint: nothing acknowledged is lost.
                for (let i = 0; i < MAX_DRAIN_ROUNDS && !quiescent(ic.raw); i++) await ic.tick();
                if (!quiescent(ic.raw))
                    log('not quiescent after draining: keeping the last checkpoint');
                else checkpoint();
            }
            await ic.tearDown();
        }
    };
}

function writeStateFiles(
    dir: string,
    server: IcHttpServer,
    canisterIds: Record<string, string>
): void {
    const dfxIds = Object.fromEntries(
        Object.entries(canisterIds).map(([name, id]) => [name, { local: id }])
    );
    writeFileSync(join(dir, 'canister_ids.json'), JSON.stringify(dfxIds, null, 2) + '\n');
    writeFileSync(join(dir, 'root_key.der'), server.rootKey);
    writeFileSync(
        join(dir, 'network.json'),
        JSON.stringify(
            {
                url: server.url,
                root_key_hex: Buffer.from(server.rootKey).toString('hex'),
                subnet_id: server.keys.subnetId.toText()
            },
            null,
            2
        ) + '\n'
    );
}

/** Parses `--port N --host H --state DIR`. */
export function parseServeArgs(argv: string[]): {
    port: number;
    host: string;
    state: string | null;
} {
    const out: { port: number; host: string; state: string | null } = {
        port: DEFAULT_PORT,
        host: '127.0.0.1',
        state: null
    };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = argv[i + 1];
        if (value === undefined) throw new Error(`${flag} needs a value`);
        if (flag === '--port') {
            const port = Number(value);
            if (!Number.isInteger(port) || port < 0 || port > 65_535) {
                throw new Error(`--port must be 0..65535, got ${value}`);
            }
            out.port = port;
        } else if (flag === '--host') out.host = value;
        else if (flag === '--state') out.state = value;
        else throw new Error(`unknown option ${flag}`);
        i++;
    }
    return out;
}

/**
 * Resolves at the first SIGINT, SIGTERM or SIGHUP, and keeps handling them afterwards: Ctrl-C
 * reaches npm, tsx and node at once and tsx relays it again, and the wrappers' exit can send
 * SIGHUP; a later signal must not kill the process while the network drains and saves.
 */
export function untilStopSignal(): Promise<void> {
    return new Promise((resolve) => {
        for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, resolve);
    });
}

async function main(): Promise<void> {
    const args = parseServeArgs(process.argv.slice(2));
    const net = await serveNetwork({
        port: args.port,
        host: args.host,
        stateDir: args.state ?? undefined,
        // As `npm start -- --serve` runs it, so a network it saved restores here: the product
        // canisters read performance_counter (instruction counting) and the factory uses the CMC.
        emulator: { countInstructions: true, cmc: true },
        log: (l) => console.log(l)
    });
    console.log('serving; Ctrl-C to stop');
    await untilStopSignal();
    try {
        await net.close();
        process.exit(0);
    } catch (e) {
        console.error(e);
        process.exit(1);
    }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    main().catch((e) => {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
    });
}
