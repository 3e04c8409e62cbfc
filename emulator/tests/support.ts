/**
 * Shared helpers of the emulator suite: fixture Wasm, actors per fixture, reject codes from either
 * back end, and the capability gate for emulator-only features.
 */
import { readFileSync } from 'node:fs';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { expect } from 'vitest';

import type { Capabilities, TestIc } from '../harness';
import { buildFixtures, type FixtureName } from './fixtures/build';
import {
    callerIdl,
    type CallerService,
    counterIdl,
    type CounterService,
    factoryChildIdl,
    type FactoryChildService,
    type Result
} from './fixtures/idl';

export const MIB = 1024 * 1024;
/** 100 T cycles: enough for a fixture to pay for children and long tests. */
export const FIXTURE_CYCLES = 100_000_000_000_000n;
export const EMPTY_ARGS = new Uint8Array(IDL.encode([], []));
/** A principal that controls nothing. */
export const STRANGER = Principal.fromText('2vxsx-fae');
/** The principal that sets up every canister in this suite (and so controls it). */
export const OWNER = Principal.fromUint8Array(new Uint8Array([0xad, 0x31, 0x07, 0x01]));

/** Builds the fixtures if needed (no-op when up to date) and reads their Wasm. */
export async function fixtureWasms(): Promise<Record<FixtureName, Uint8Array>> {
    const paths = await buildFixtures();
    return {
        counter: new Uint8Array(readFileSync(paths.counter)),
        caller: new Uint8Array(readFileSync(paths.caller)),
        factory_child: new Uint8Array(readFileSync(paths.factory_child))
    };
}

const IDLS = { counter: counterIdl, caller: callerIdl, factory_child: factoryChildIdl };
type Services = {
    counter: CounterService;
    caller: CallerService;
    factory_child: FactoryChildService;
};

/** Installs a fixture (controlled by OWNER) on a subnet, or the first application subnet. */
export async function install<N extends FixtureName>(
    ic: TestIc,
    wasms: Record<FixtureName, Uint8Array>,
    name: N,
    options: { targetSubnetId?: Principal; controllers?: Principal[] } = {}
): Promise<{ canisterId: Principal; actor: Services[N] & ActorControls }> {
    const fixture = await ic.setupCanister<Services[N]>({
        idlFactory: IDLS[name],
        wasm: wasms[name],
        arg: EMPTY_ARGS,
        sender: OWNER,
        controllers: options.controllers ?? [OWNER],
        cycles: FIXTURE_CYCLES,
        targetSubnetId: options.targetSubnetId
    });
    fixture.actor.setPrincipal(OWNER);
    return fixture as { canisterId: Principal; actor: Services[N] & ActorControls };
}

export type ActorControls = { setPrincipal(principal: Principal): void };

/** Reject code carried by an error from either back end (the emulator sets `reject_code`). */
export function rejectCodeOf(error: unknown): number | undefined {
    const code = (error as { reject_code?: unknown }).reject_code;
    if (typeof code === 'number') return code;
    const match = /Reject code: (\w+)/.exec(String((error as Error).message ?? error));
    if (match === null || match[1] === undefined) return undefined;
    const byName: Record<string, number> = {
        SysFatal: 1,
        SysTransient: 2,
        DestinationInvalid: 3,
        CanisterReject: 4,
        CanisterError: 5,
        SysUnknown: 6
    };
    return byName[match[1]] ?? Number(match[1]);
}

/** Awaits a call that must be rejected; returns the error, checking its reject code if given. */
export async function expectReject(call: Promise<unknown>, code?: number): Promise<Error> {
    const outcome = await call.then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error })
    );
    if (outcome.ok) {
        throw new Error(`expected a reject, got a reply: ${stringify(outcome.value)}`);
    }
    if (code !== undefined) expect(rejectCodeOf(outcome.error)).toBe(code);
    return outcome.error as Error;
}

/** Unwraps an `Ok`, failing the test with the reject otherwise. */
export function ok<T>(result: Result<T>): T {
    if ('Err' in result) throw new Error(`expected Ok, got Err ${stringify(result.Err)}`);
    return result.Ok;
}

/** Unwraps an `Err`, failing the test with the value otherwise. */
export function err<T>(result: Result<T>): { code: number; message: string } {
    if ('Ok' in result) throw new Error(`expected Err, got Ok ${stringify(result.Ok)}`);
    return result.Err;
}

/**
 * Gate for emulator-only features. On the emulator a missing capability fails the test; on
 * PocketIC the test is reported as skipped.
 *
 * @example
 * it('delays replies', async (ctx) => { if (!hasCapability(ic, 'faults', ctx.skip)) return; ... });
 */
export function hasCapability(
    ic: TestIc,
    name: keyof Capabilities,
    skip: (note?: string) => void
): boolean {
    if (ic.capabilities[name]) return true;
    if (ic.backend === 'emulator')
        throw new Error(`the emulator must provide capability '${name}'`);
    skip(`'${name}' is emulator-only`);
    return false;
}

function stringify(value: unknown): string {
    return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
}
