/**
 * Helpers of the HTTP-interface tests: a tiny Azle canister that echoes its caller (built into
 * /tmp/emu-http, cached by source hash), a served network on a free port, and agents for it.
 */
import { HttpAgent, type Identity } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import type { Principal } from '@dfinity/principal';
import { LocalIc } from '../index';
import { IcHttpServer } from '../src/http/server';
import { buildScratchCanister } from './scratch_build';

const BUILD_DIR = '/tmp/emu-http';

const SOURCE = `import { IDL, query, update, msgCaller, setTimer, trap, inspectMessage, time } from 'azle';
export default class {
    counter = 0n;
    ticks = 0;
    @inspectMessage
    inspect(methodName: string): boolean { return methodName !== 'forbidden'; }
    @update([], IDL.Nat64) inc(): bigint { this.counter += 1n; return this.counter; }
    @update([], IDL.Nat64) forbidden(): bigint { return 0n; }
    @query([], IDL.Nat64) get(): bigint { return this.counter; }
    @query([], IDL.Principal) whoami(): any { return msgCaller(); }
    @update([], IDL.Principal) whoamiUpdate(): any { return msgCaller(); }
    @update([], IDL.Nat64) boom(): bigint { this.counter += 100n; trap('boom'); }
    @query([], IDL.Nat64) boomQuery(): bigint { trap('boom in query'); }
    @update([IDL.Nat32], IDL.Nat32) arm(seconds: number): number {
        setTimer(seconds, () => { this.ticks += 1; });
        return seconds;
    }
    @query([], IDL.Nat32) getTicks(): number { return this.ticks; }
    @query([], IDL.Nat64) now(): bigint { return time(); }
}
`;

/** The echo canister's interface. */
export const echoIdl: IDL.InterfaceFactory = ({ IDL: I }) =>
    I.Service({
        inc: I.Func([], [I.Nat64], []),
        forbidden: I.Func([], [I.Nat64], []),
        get: I.Func([], [I.Nat64], ['query']),
        whoami: I.Func([], [I.Principal], ['query']),
        whoamiUpdate: I.Func([], [I.Principal], []),
        boom: I.Func([], [I.Nat64], []),
        boomQuery: I.Func([], [I.Nat64], ['query']),
        arm: I.Func([I.Nat32], [I.Nat32], []),
        getTicks: I.Func([], [I.Nat32], ['query']),
        now: I.Func([], [I.Nat64], ['query'])
    });

export interface EchoService {
    inc(): Promise<bigint>;
    forbidden(): Promise<bigint>;
    get(): Promise<bigint>;
    whoami(): Promise<Principal>;
    whoamiUpdate(): Promise<Principal>;
    boom(): Promise<bigint>;
    boomQuery(): Promise<bigint>;
    arm(seconds: number): Promise<number>;
    getTicks(): Promise<number>;
    now(): Promise<bigint>;
}

/** Builds the echo canister unless a build of the same source exists (~5 s). */
export function buildEchoCanister(): Uint8Array {
    return buildScratchCanister(BUILD_DIR, 'echo', SOURCE);
}

/** A wall-clock network served on a free port. */
export async function startNetwork(
    options: { syncCall?: boolean; subnets?: number; countInstructions?: boolean } = {}
): Promise<{ ic: LocalIc; server: IcHttpServer }> {
    const ic = await LocalIc.create({
        wallClock: true,
        countInstructions: options.countInstructions,
        subnets: Array.from({ length: options.subnets ?? 1 }, () => ({}))
    });
    const server = await IcHttpServer.start({ ic, port: 0, syncCall: options.syncCall });
    return { ic, server };
}

/**
 * An agent for the network that fetched the root key from `/api/v2/status` (tests then check it
 * against the key the server holds, as a user would pin it), verification left on, no retries.
 */
export async function agentFor(url: string, identity?: Identity): Promise<HttpAgent> {
    return HttpAgent.create({
        host: url,
        identity,
        shouldFetchRootKey: true,
        verifyQuerySignatures: true,
        retryTimes: 0
    });
}

/** Empty Candid arguments. */
export const NO_ARGS = new Uint8Array(IDL.encode([], []));

/** A copy of a Wasm module with custom sections appended (e.g. `icp:public candid:service`). */
export function withCustomSections(wasm: Uint8Array, sections: Record<string, string>): Uint8Array {
    const parts: Uint8Array[] = [wasm];
    for (const [name, text] of Object.entries(sections)) {
        const n = new TextEncoder().encode(name);
        const content = new TextEncoder().encode(text);
        const payload = new Uint8Array([...uleb(n.length), ...n, ...content]);
        parts.push(new Uint8Array([0, ...uleb(payload.length), ...payload]));
    }
    return new Uint8Array(Buffer.concat(parts));
}

function uleb(n: number): number[] {
    const out: number[] = [];
    do {
        const b = n & 0x7f;
        n >>>= 7;
        out.push(n === 0 ? b : b | 0x80);
    } while (n !== 0);
    return out;
}
