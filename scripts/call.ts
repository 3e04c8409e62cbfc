/**
 * `npm run call`: calls a canister method on a local network (or any IC HTTP endpoint) the way
 * `dfx canister call` does: arguments in Candid text, typed by the method's interface; the reply
 * printed in Candid text. Queries go through the agent's query call (node signatures verified),
 * updates through its update call (certificate verified against the root key).
 *
 *   npm run call -- [--network URL] [--state DIR] [--identity PEM] [--did FILE] [--query|--update]
 *                   <canister name or id> <method> ['<candid args>']
 *
 * Names resolve through `<state>/canister_ids.json` (default state folder `.emulator`, written by
 * `npm start -- --serve`), and so do the URL and root key (`network.json`, `root_key.der`) unless
 * `--network` is given (the root key is then fetched for a local URL only, as dfx does). The
 * interface comes from the declarations for `factory`, `router` and `data_shard_*`, else from
 * `--did FILE`, else from the canister's `candid:service` metadata. Exit status: 0 replied,
 * 1 rejected or unreachable, 2 bad command line or arguments.
 *
 * @example
 * npm run call -- router get_loan '(281_474_976_710_657 : nat64)'
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Actor, AnonymousIdentity, CanisterStatus, HttpAgent, type Identity } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

import { idlFactory as shardIdl } from '../src/declarations/data_shard/data_shard.did.js';
import { idlFactory as factoryIdl } from '../src/declarations/factory/factory.did.js';
import { idlFactory as routerIdl } from '../src/declarations/router/router.did.js';
import { identityFromPem } from './deploy';
import { CandidTextError, parseCandidArgs, parseDid, printCandidArgs } from './lib/candid_text';

export const USAGE = `Usage: npm run call -- [options] <canister name or id> <method> ['<candid args>']
  --network URL     the network (default: the url in <state>/network.json)
  --state DIR       state folder of npm start -- --serve (default .emulator): canister_ids.json,
                    network.json, root_key.der
  --identity PEM    caller's key (Ed25519 or secp256k1 PEM, as dfx identity export prints);
                    default anonymous
  --did FILE        the canister's .did file (default: the declarations, else the canister's
                    candid:service metadata)
  --query           send a query call (default for query methods)
  --update          send an update call (default for the others)
Example:
  npm run call -- router create_loan '(record { borrower = principal "aaaaa-aa"; nft_id = 1;
      collateral_value_btc = 100_000; amount_requested = 1_000_000; apr = 1_200 })'
`;

/** Where output goes (process.stdout/stderr, or a buffer in tests). */
export interface Output {
    write(text: string): unknown;
}

/** What the command line asks for. */
export interface CallArgs {
    network: string | null;
    stateDir: string;
    identity: string | null;
    did: string | null;
    mode: 'query' | 'update' | null;
    canister: string;
    method: string;
    args: string;
}

/** A bad command line or bad Candid arguments: exit status 2. */
export class UsageError extends Error {}

/** Parses the command line (without `node script`); throws `UsageError`. */
export function parseCallArgs(argv: string[]): CallArgs | 'help' {
    let parsed;
    try {
        parsed = parseArgs({
            args: argv,
            allowPositionals: true,
            options: {
                network: { type: 'string' },
                state: { type: 'string' },
                identity: { type: 'string' },
                did: { type: 'string' },
                query: { type: 'boolean' },
                update: { type: 'boolean' },
                help: { type: 'boolean', short: 'h' }
            }
        });
    } catch (e) {
        throw new UsageError((e as Error).message);
    }
    const { values, positionals } = parsed;
    if (values.help) return 'help';
    if (values.query && values.update)
        throw new UsageError('--query and --update exclude each other');
    if (positionals.length < 2) throw new UsageError('give a canister and a method');
    if (positionals.length > 3) {
        throw new UsageError(
            `too many arguments (${positionals.length}): quote the Candid arguments as one, '( … )'`
        );
    }
    return {
        network: values.network ?? null,
        stateDir: values.state ?? '.emulator',
        identity: values.identity ?? null,
        did: values.did ?? null,
        mode: values.query ? 'query' : values.update ? 'update' : null,
        canister: positionals[0],
        method: positionals[1],
        args: positionals[2] ?? ''
    };
}

/**
 * The declarations of the product canisters, by the name `npm start -- --serve` gives them
 * (src/declarations, generated from the built canisters: every method, `version` included).
 */
function declaredInterface(name: string): IDL.ServiceClass | null {
    const factory =
        name === 'factory'
            ? factoryIdl
            : name === 'router'
              ? routerIdl
              : /^data_shard(_\d+)?$/.test(name)
                ? shardIdl
                : null;
    return factory === null ? null : (factory({ IDL }) as IDL.ServiceClass);
}

function readJson(file: string): unknown {
    try {
        return JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
        throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
    }
}

/** The canister ids in `<state>/canister_ids.json` (dfx style, network `local`), by name. */
function canisterIds(stateDir: string): Map<string, string> {
    const file = join(stateDir, 'canister_ids.json');
    const out = new Map<string, string>();
    if (!existsSync(file)) return out;
    const ids = readJson(file) as Record<string, { local?: string }>;
    for (const [name, entry] of Object.entries(ids)) {
        if (typeof entry?.local === 'string') out.set(name, entry.local);
    }
    return out;
}

/** The canister's id and name (the name if it has one in canister_ids.json). */
export function resolveCanister(
    given: string,
    ids: Map<string, string>
): { id: Principal; name: string | null } {
    const byName = ids.get(given);
    if (byName !== undefined) return { id: Principal.fromText(byName), name: given };
    let id: Principal;
    try {
        id = Principal.fromText(given);
    } catch {
        const known = [...ids.keys()].join(', ') || 'none: no canister_ids.json';
        throw new UsageError(`${given} is neither a canister name (known: ${known}) nor an id`);
    }
    const name = [...ids.entries()].find(([, v]) => v === id.toText())?.[0] ?? null;
    return { id, name };
}

function isLocal(url: string): boolean {
    const host = new URL(url).hostname;
    return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '::1';
}

/** The agent: the state folder's network and root key, or `--network` (root key fetched if local). */
async function connect(args: CallArgs, identity: Identity): Promise<HttpAgent> {
    if (args.network !== null) {
        let url: URL;
        try {
            url = new URL(args.network);
        } catch {
            throw new UsageError(`--network: not a URL: ${args.network}`);
        }
        return HttpAgent.create({
            host: url.toString(),
            identity,
            shouldFetchRootKey: isLocal(url.toString()),
            verifyQuerySignatures: true
        });
    }
    const networkFile = join(args.stateDir, 'network.json');
    if (!existsSync(networkFile)) {
        throw new UsageError(
            `no ${networkFile}: start a network (npm start -- --serve) or pass --network URL`
        );
    }
    const network = readJson(networkFile) as { url?: string; root_key_hex?: string };
    if (typeof network.url !== 'string') throw new UsageError(`${networkFile} has no url`);
    const keyFile = join(args.stateDir, 'root_key.der');
    const rootKey = existsSync(keyFile)
        ? new Uint8Array(readFileSync(keyFile))
        : typeof network.root_key_hex === 'string'
          ? new Uint8Array(Buffer.from(network.root_key_hex, 'hex'))
          : null;
    if (rootKey === null) throw new UsageError(`no root key in ${args.stateDir}`);
    return HttpAgent.create({ host: network.url, identity, rootKey, verifyQuerySignatures: true });
}

/** The interface: declarations by name, else `--did`, else the `candid:service` metadata. */
async function serviceOf(
    args: CallArgs,
    canister: { id: Principal; name: string | null },
    agent: HttpAgent
): Promise<IDL.ServiceClass> {
    if (args.did !== null) {
        let text: string;
        try {
            text = readFileSync(args.did, 'utf8');
        } catch (e) {
            throw new UsageError(`cannot read --did ${args.did}: ${(e as Error).message}`);
        }
        try {
            return parseDid(text).service;
        } catch (e) {
            throw new UsageError(`${args.did}: ${(e as Error).message}`);
        }
    }
    const declared = canister.name === null ? null : declaredInterface(canister.name);
    if (declared !== null) return declared;
    const status = await CanisterStatus.request({
        agent,
        canisterId: canister.id,
        paths: ['candid']
    });
    const candid = status.get('candid');
    if (typeof candid !== 'string') {
        throw new UsageError(
            `no Candid interface for ${canister.id.toText()} (no candid:service metadata): pass --did FILE`
        );
    }
    try {
        return parseDid(candid).service;
    } catch (e) {
        throw new Error(`the canister's candid:service metadata: ${(e as Error).message}`, {
            cause: e
        });
    }
}

/**
 * Runs the command line `argv`; returns the exit status (0 replied, 1 rejected or failed, 2 bad
 * command line or arguments). The reply goes to `stdout` in Candid text.
 */
export async function main(
    argv: string[],
    out: { stdout?: Output; stderr?: Output } = {}
): Promise<number> {
    const stdout = out.stdout ?? process.stdout;
    const stderr = out.stderr ?? process.stderr;
    let args: CallArgs | 'help';
    try {
        args = parseCallArgs(argv);
    } catch (e) {
        stderr.write(`error: ${(e as Error).message}\n\n${USAGE}`);
        return 2;
    }
    if (args === 'help') {
        stdout.write(USAGE);
        return 0;
    }
    try {
        const identity: Identity =
            args.identity === null ? new AnonymousIdentity() : readIdentity(args.identity);
        const canister = resolveCanister(args.canister, canisterIds(resolve(args.stateDir)));
        const agent = await connect(args, identity);
        const service = await serviceOf(args, canister, agent);
        const func = service._fields.find(([name]) => name === args.method)?.[1];
        if (func === undefined) {
            const methods = service._fields.map(([name]) => name).join(', ');
            throw new UsageError(
                `${canister.name ?? canister.id.toText()} has no method ${args.method} (methods: ${methods})`
            );
        }
        let values: unknown[];
        try {
            values = parseCandidArgs(args.args, func.argTypes);
        } catch (e) {
            if (!(e instanceof CandidTextError)) throw e;
            throw new UsageError(`arguments of ${args.method} ${signature(func)}: ${e.message}`);
        }
        const isQuery =
            func.annotations.includes('query') || func.annotations.includes('composite_query');
        const asQuery = args.mode === null ? isQuery : args.mode === 'query';
        const method = IDL.Func(func.argTypes, func.retTypes, asQuery ? ['query'] : []);
        const actor = Actor.createActor<Record<string, (...a: unknown[]) => Promise<unknown>>>(
            () => IDL.Service({ [args.method]: method }),
            { agent, canisterId: canister.id }
        );
        const reply = await actor[args.method](...values);
        const replies =
            func.retTypes.length === 0
                ? []
                : func.retTypes.length === 1
                  ? [reply]
                  : (reply as unknown[]);
        stdout.write(`${printCandidArgs(func.retTypes, replies)}\n`);
        return 0;
    } catch (e) {
        if (e instanceof UsageError) {
            stderr.write(`error: ${e.message}\n`);
            return 2;
        }
        stderr.write(`call failed: ${(e as Error).message}\n`);
        return 1;
    }
}

function readIdentity(file: string): Identity {
    try {
        return identityFromPem(readFileSync(file, 'utf8'));
    } catch (e) {
        throw new UsageError(`--identity ${file}: ${(e as Error).message}`);
    }
}

function signature(func: IDL.FuncClass): string {
    return `(${func.argTypes.map((t) => t.display()).join(', ')})`;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    process.exitCode = await main(process.argv.slice(2));
}
