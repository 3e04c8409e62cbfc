/**
 * Provisions a factory and router already deployed with `dfx deploy` (local replica or mainnet):
 * tells the factory its router, uploads the data_shard Wasm to the factory in ≤ 1 MiB chunks,
 * creates the shards (each new one filled by a migration), optionally allows applications to write
 * through the router, and checks that the router holds the factory's routing table.
 *
 * The work is `provisionShards` (scripts/lib/provision.ts), a function over actors; this file adds
 * the command line, the `@dfinity/agent` wiring (HttpAgent, identity from a PEM file) and progress
 * output. `main(argv, deps)` takes the actors from `deps.connect`, so the tests run it against the
 * local emulator; the agent wiring itself is only exercised against a real network.
 *
 * @example
 * dfx identity export default > /tmp/id.pem
 * npx tsx scripts/deploy.ts --network http://127.0.0.1:4943 --fetch-root-key \
 *     --factory $(dfx canister id factory) --router $(dfx canister id router) \
 *     --identity /tmp/id.pem --shards 4 --regions asia,europe
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
    Actor,
    AnonymousIdentity,
    HttpAgent,
    SignIdentity,
    type DerEncodedPublicKey,
    type Identity,
    type PublicKey,
    type Signature
} from '@dfinity/agent';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
import { secp256k1 } from '@noble/curves/secp256k1';
import { sha256 } from '@noble/hashes/sha2';
import cliProgress from 'cli-progress';

import type { _SERVICE as FactoryService } from '../src/declarations/factory/factory.did';
import { idlFactory as factoryIdl } from '../src/declarations/factory/factory.did.js';
import type { _SERVICE as RouterService } from '../src/declarations/router/router.did';
import { idlFactory as routerIdl } from '../src/declarations/router/router.did.js';
import { describeValue } from '../src/shared/errors';
import { MAX_SHARDS } from '../src/shared/limits';
import { MAX_WRITERS } from '../src/shared/router_api';
import type { RoutingTable, ShardInfo } from '../src/shared/types';
import { artifacts } from './build';
import {
    okOr,
    provisionShards,
    type FactoryApi,
    type ProvisionProgress,
    type ProvisionResult
} from './lib/provision';

export const USAGE = `Usage: npx tsx scripts/deploy.ts --network <url> --factory <canister id> --router <canister id>
                                [--identity <pem file>] [--shards N] [--regions r1,r2,...]
                                [--writer <principal>]... [--fetch-root-key] [--reuse-wasm]
                                [--wasm <file>] [--poll-ms N] [--max-polls N]

  --network         the replica's URL: http://127.0.0.1:4943 (dfx start) or https://icp-api.io
  --factory         the factory's canister id (dfx canister id factory)
  --router          the router's canister id, deployed with this factory in its init argument
  --identity        PEM file of an admin of both (dfx identity export <name>); Ed25519 or secp256k1
  --shards          shards the factory should have in the end, 1..=${MAX_SHARDS} (default 4); existing count
  --regions         the i-th shard is created in region i mod count (labels, or CMC placement)
  --writer          an application principal allowed to write loans through the router (repeatable)
  --fetch-root-key  trust the network's root key (local replica only; never on mainnet)
  --reuse-wasm      keep a shard Wasm the factory already committed instead of uploading again
  --wasm            the gzipped data_shard Wasm (default .azle/data_shard/data_shard.wasm.gz)
  --poll-ms         wait between migration polls (default 2000)
  --max-polls       polls per migration before giving up (default 900)
`;

const DEFAULT_SHARDS = 4;
const DEFAULT_POLL_MS = 2_000;
const DEFAULT_MAX_POLLS = 900;
const MAX_POLL_MS = 60_000;
const MAX_POLLS = 100_000;
/** Regions on the command line (the factory's placement table holds 64). */
const MAX_REGIONS = 64;

/** The command line, validated. */
export interface DeployArgs {
    network: string;
    factory: Principal;
    router: Principal;
    identity?: string;
    shards: number;
    regions: string[];
    writers: Principal[];
    fetchRootKey: boolean;
    reuseWasm: boolean;
    wasm: string;
    pollMs: number;
    maxPolls: number;
}

/** A bad command line: `main` prints it with the usage and exits with status 2. */
export class UsageError extends Error {}

/** The router methods the deployment calls, as plain functions (emulator and agent actors fit). */
export interface RouterApi {
    add_writer(
        ...a: Parameters<RouterService['add_writer']>
    ): ReturnType<RouterService['add_writer']>;
    get_routing_table(): ReturnType<RouterService['get_routing_table']>;
    refresh_routing_table(): ReturnType<RouterService['refresh_routing_table']>;
}

/** The factory methods the deployment calls. */
export type DeployFactoryApi = FactoryApi & {
    get_routing_table(): ReturnType<FactoryService['get_routing_table']>;
};

/** Actors on the deployed canisters, called by an admin of both, and how to wait between polls. */
export interface Connection {
    factory: DeployFactoryApi;
    router: RouterApi;
    settle: () => Promise<void>;
    /** The principal the calls come from (printed, so a NotAuthorized is easy to diagnose). */
    caller: Principal;
}

/** Where text goes; progress bars are drawn only when `isTTY`. */
export interface Output {
    write(text: string): unknown;
    isTTY?: boolean;
}

export interface DeployDeps {
    /** Builds the actors (default: `connectAgent`, an HttpAgent to `--network`). */
    connect?: (args: DeployArgs) => Promise<Connection>;
    stdout?: Output;
    stderr?: Output;
}

export interface DeployOutcome extends ProvisionResult {
    writers: Principal[];
    routingEpoch: bigint;
}

function principalArg(name: string, value: string | undefined): Principal {
    if (value === undefined) throw new UsageError(`--${name} is required`);
    try {
        return Principal.fromText(value);
    } catch {
        throw new UsageError(`--${name}: not a principal: ${value}`);
    }
}

function integerArg(
    name: string,
    value: string | undefined,
    fallback: number,
    max: number
): number {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) {
        throw new UsageError(`--${name}: an integer in 1..=${max}, got ${value}`);
    }
    return n;
}

function parseOptions(argv: string[]) {
    return parseArgs({
        args: argv,
        strict: true,
        allowPositionals: false,
        options: {
            network: { type: 'string' },
            factory: { type: 'string' },
            router: { type: 'string' },
            identity: { type: 'string' },
            shards: { type: 'string' },
            regions: { type: 'string' },
            writer: { type: 'string', multiple: true },
            'fetch-root-key': { type: 'boolean' },
            'reuse-wasm': { type: 'boolean' },
            wasm: { type: 'string' },
            'poll-ms': { type: 'string' },
            'max-polls': { type: 'string' },
            help: { type: 'boolean', short: 'h' }
        }
    });
}

/** Parses and validates the command line; throws `UsageError` on anything wrong. */
export function parseDeployArgs(argv: string[]): DeployArgs | 'help' {
    let values: ReturnType<typeof parseOptions>['values'];
    try {
        ({ values } = parseOptions(argv));
    } catch (e) {
        throw new UsageError((e as Error).message, { cause: e });
    }
    if (values.help === true) return 'help';
    if (values.network === undefined) throw new UsageError('--network is required');
    let url: URL;
    try {
        url = new URL(values.network);
    } catch {
        throw new UsageError(`--network: not a URL: ${values.network}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new UsageError(`--network: http or https, got ${url.protocol}`);
    }
    const regions = (values.regions ?? '')
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r !== '');
    if (regions.length > MAX_REGIONS) throw new UsageError(`--regions: at most ${MAX_REGIONS}`);
    const writers = (values.writer ?? []).map((w) => principalArg('writer', w));
    if (writers.length > MAX_WRITERS) throw new UsageError(`--writer: at most ${MAX_WRITERS}`);
    return {
        network: values.network,
        factory: principalArg('factory', values.factory),
        router: principalArg('router', values.router),
        identity: values.identity,
        shards: integerArg('shards', values.shards, DEFAULT_SHARDS, MAX_SHARDS),
        regions,
        writers,
        fetchRootKey: values['fetch-root-key'] === true,
        reuseWasm: values['reuse-wasm'] === true,
        wasm: values.wasm ?? artifacts('data_shard').wasmGz,
        pollMs: integerArg('poll-ms', values['poll-ms'], DEFAULT_POLL_MS, MAX_POLL_MS),
        maxPolls: integerArg('max-polls', values['max-polls'], DEFAULT_MAX_POLLS, MAX_POLLS)
    };
}

/** The public key of a secp256k1 identity: DER `SubjectPublicKeyInfo`, as the IC expects. */
class DerPublicKey implements PublicKey {
    constructor(readonly derKey: DerEncodedPublicKey) {}
    toDer(): DerEncodedPublicKey {
        return this.derKey;
    }
}

/**
 * A secp256k1 identity (what `dfx identity new --storage-mode plaintext` can hold): ECDSA over
 * sha256 of the message, 64-byte r ‖ s with low s, as the IC verifies it.
 */
export class Secp256k1PemIdentity extends SignIdentity {
    private readonly publicKey: DerPublicKey;
    constructor(
        private readonly secretKey: Uint8Array,
        spkiDer: Uint8Array
    ) {
        super();
        this.publicKey = new DerPublicKey(spkiDer as DerEncodedPublicKey);
    }
    getPublicKey(): PublicKey {
        return this.publicKey;
    }
    async sign(blob: Uint8Array): Promise<Signature> {
        const signature = secp256k1.sign(sha256(blob), this.secretKey, { lowS: true });
        return signature.toCompactRawBytes() as Signature;
    }
}

function base64Url(text: string | undefined, what: string): Uint8Array {
    if (text === undefined) throw new Error(`PEM key without ${what}`);
    return new Uint8Array(Buffer.from(text, 'base64url'));
}

/** PKCS#8 Ed25519 up to the 32-byte seed: version 0 or 1, algorithm 1.3.101.112, octet string. */
const ED25519_PKCS8_SEED_PREFIX = /^30..02010[01]300506032b657004220420/;

/**
 * The seed of an Ed25519 PKCS#8 key, by its fixed layout. dfx has written the optional public key
 * as `[1] EXPLICIT`, which OpenSSL refuses, so such files are read here rather than by `crypto`.
 */
function ed25519Seed(pem: string): Uint8Array | null {
    const body = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem)?.[1];
    if (body === undefined) return null;
    const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    if (der.length < 48 || !ED25519_PKCS8_SEED_PREFIX.test(der.subarray(0, 16).toString('hex'))) {
        return null;
    }
    return new Uint8Array(der.subarray(16, 48));
}

/**
 * The identity in a PEM private key: Ed25519 (PKCS#8, `BEGIN PRIVATE KEY`) or secp256k1 (SEC1,
 * `BEGIN EC PRIVATE KEY`), the two kinds `dfx identity export` prints.
 */
export function identityFromPem(pem: string): SignIdentity {
    const seed = ed25519Seed(pem);
    if (seed !== null) return Ed25519KeyIdentity.fromSecretKey(seed);
    let key: KeyObject;
    try {
        key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (e) {
        throw new Error(`not a PEM private key: ${(e as Error).message}`, { cause: e });
    }
    const jwk = key.export({ format: 'jwk' });
    if (key.asymmetricKeyType === 'ec' && jwk.crv === 'secp256k1') {
        const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
        return new Secp256k1PemIdentity(base64Url(jwk.d, 'a private key'), new Uint8Array(spki));
    }
    const kind = key.asymmetricKeyType === 'ec' ? `ec ${jwk.crv}` : key.asymmetricKeyType;
    throw new Error(`unsupported key type ${kind}: use an Ed25519 or secp256k1 key`);
}

function sleep(ms: number): Promise<void> {
    return new Promise((done) => setTimeout(done, ms));
}

/** Actors over `@dfinity/agent` for a real network (replica or mainnet). */
export async function connectAgent(args: DeployArgs): Promise<Connection> {
    const identity: Identity =
        args.identity === undefined
            ? new AnonymousIdentity()
            : identityFromPem(await readFile(args.identity, 'utf8'));
    const agent = await HttpAgent.create({
        host: args.network,
        identity,
        shouldFetchRootKey: args.fetchRootKey
    });
    return {
        factory: Actor.createActor<FactoryService>(factoryIdl, {
            agent,
            canisterId: args.factory
        }),
        router: Actor.createActor<RouterService>(routerIdl, { agent, canisterId: args.router }),
        settle: () => sleep(args.pollMs),
        caller: identity.getPrincipal()
    };
}

/**
 * Progress on `out`: a bar per phase on a terminal, otherwise a line when the phase or the detail
 * changes and at every tenth of the phase's total (so a long migration prints a bounded number).
 */
export function progressPrinter(out: Output): {
    onProgress: (p: ProvisionProgress) => void;
    stop: () => void;
} {
    let bar: cliProgress.SingleBar | null = null;
    let last: { phase: string; decile: number; detail: string } | null = null;
    const stop = () => {
        bar?.stop();
        bar = null;
    };
    const onProgress = (p: ProvisionProgress) => {
        const detail = p.detail ?? '';
        if (out.isTTY === true) {
            if (bar === null || last?.phase !== p.phase) {
                stop();
                bar = new cliProgress.SingleBar(
                    {
                        format: '{phase} [{bar}] {value}/{total} {detail}',
                        stream: out as unknown as NodeJS.WritableStream,
                        hideCursor: true
                    },
                    cliProgress.Presets.shades_classic
                );
                bar.start(p.total, p.done, { phase: p.phase.padEnd(7), detail });
            } else {
                bar.setTotal(p.total);
                bar.update(p.done, { phase: p.phase.padEnd(7), detail });
            }
            last = { phase: p.phase, decile: 0, detail };
            return;
        }
        const decile = p.total > 0 ? Math.floor((10 * p.done) / p.total) : 0;
        if (
            last === null ||
            last.phase !== p.phase ||
            last.detail !== detail ||
            decile > last.decile
        ) {
            out.write(`${p.phase} ${p.done}/${p.total}${detail === '' ? '' : ` ${detail}`}\n`);
        }
        last = { phase: p.phase, decile, detail };
    };
    return { onProgress, stop };
}

function sameTable(a: RoutingTable, b: RoutingTable): boolean {
    const text = (t: RoutingTable) =>
        JSON.stringify(t, (_k, v: unknown) =>
            typeof v === 'bigint' ? v.toString() : v instanceof Principal ? v.toText() : v
        );
    return text(a) === text(b);
}

/**
 * The deployment over actors: provisioning, writers, and the check that the router holds the
 * factory's routing table (asking it to pull once when a push was missed).
 */
export async function deployShards(
    conn: Connection,
    args: DeployArgs,
    shardWasm: Uint8Array,
    onProgress?: (p: ProvisionProgress) => void
): Promise<DeployOutcome> {
    const result = await provisionShards({
        factory: conn.factory,
        routerId: args.router,
        shardWasm,
        shards: args.shards,
        regions: args.regions,
        settle: conn.settle,
        maxPolls: args.maxPolls,
        reuseCommittedWasm: args.reuseWasm,
        onProgress
    });
    for (const writer of args.writers) {
        okOr(`add_writer ${writer.toText()}`, await conn.router.add_writer(writer));
    }
    const expected = (await conn.factory.get_routing_table()) as RoutingTable;
    let held = (await conn.router.get_routing_table()) as RoutingTable;
    if (!sameTable(held, expected)) {
        const refreshed = await conn.router.refresh_routing_table();
        if ('Ok' in refreshed) held = (await conn.router.get_routing_table()) as RoutingTable;
        if (!sameTable(held, expected)) {
            const why =
                'Err' in refreshed
                    ? ` (refresh_routing_table: ${describeValue(refreshed.Err)})`
                    : '';
            throw new Error(
                `the router holds routing epoch ${held.epoch}, the factory ${expected.epoch}${why}: ` +
                    `was the router deployed with factory = principal "${args.factory.toText()}" ` +
                    `in its init argument?`
            );
        }
    }
    return { ...result, writers: args.writers, routingEpoch: expected.epoch };
}

function summary(outcome: DeployOutcome, args: DeployArgs): string {
    const lines = [
        `shard Wasm: ${outcome.chunks === 0 ? 'kept the committed one' : `${outcome.chunks} chunk(s) uploaded`}`,
        `shards: ${outcome.created.length} created, ${outcome.shards.length} in total`
    ];
    for (const s of outcome.shards as ShardInfo[]) {
        lines.push(
            `  shard ${s.shard_id}  ${s.region.padEnd(10)} ${s.canister_id.toText()}  ` +
                `slots ${s.slot_count}  loans ${s.loan_count}  cycles ${s.cycles_balance}`
        );
    }
    lines.push(
        `migrations: ${outcome.migrations.length === 0 ? 'none' : outcome.migrations.join(', ')}`
    );
    if (outcome.writers.length > 0) {
        lines.push(`router writers added: ${outcome.writers.map((w) => w.toText()).join(', ')}`);
    }
    lines.push(
        `routing epoch ${outcome.routingEpoch}: router ${args.router.toText()} holds the ` +
            `factory's table`
    );
    return lines.join('\n') + '\n';
}

/**
 * Runs the command line `argv` (without `node script`); returns the exit status: 0 done, 1 the
 * deployment failed (the typed error is printed), 2 a bad command line.
 */
export async function main(argv: string[], deps: DeployDeps = {}): Promise<number> {
    const stdout = deps.stdout ?? process.stdout;
    const stderr = deps.stderr ?? process.stderr;
    let parsed: DeployArgs | 'help';
    try {
        parsed = parseDeployArgs(argv);
    } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        stderr.write(`error: ${e.message}\n\n${USAGE}`);
        return 2;
    }
    if (parsed === 'help') {
        stdout.write(USAGE);
        return 0;
    }
    const args = parsed;
    const progress = progressPrinter(stderr);
    try {
        const wasm = await readFile(args.wasm).catch((e: Error) => {
            throw new Error(`cannot read the shard Wasm (run npm run build): ${e.message}`, {
                cause: e
            });
        });
        const conn = await (deps.connect ?? connectAgent)(args);
        stdout.write(
            `factory ${args.factory.toText()}, router ${args.router.toText()} at ` +
                `${args.network} as ${conn.caller.toText()}\n`
        );
        if (conn.caller.isAnonymous()) {
            stderr.write('warning: no --identity: the anonymous principal is no admin\n');
        }
        const outcome = await deployShards(conn, args, new Uint8Array(wasm), progress.onProgress);
        progress.stop();
        stdout.write(summary(outcome, args));
        return 0;
    } catch (e) {
        progress.stop();
        stderr.write(`deploy failed: ${(e as Error).message}\n`);
        return 1;
    }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    process.exitCode = await main(process.argv.slice(2));
}
