/**
 * Capability gates for the canister tests, so the same files run on the emulator and on PocketIC
 * (`PIC_URL`). A test whose point is an emulator-only observation (message trace, fault injection,
 * rounds) skips itself there with the reason; a test that only adds such an observation to a
 * behaviour both back ends show keeps running and leaves that one check out, visibly.
 *
 * @example
 * it('delays replies', async (ctx) => { if (!hasCapability(ic, 'faults', ctx.skip)) return; ... });
 * if (observable(ic, 'trace', ctx, 'no call reached the shard')) expect(trace()).toEqual([]);
 */
import type { TestContext } from 'vitest';

import type { Capabilities, TestIc } from '../../emulator/harness';
import { hasCapability } from '../../emulator/tests/support';

export { hasCapability };

/**
 * Whether the test can check `what` through capability `name`. On the emulator it must (a missing
 * capability fails the test); on PocketIC the check is left out and the test is annotated with it.
 */
export function observable(
    ic: TestIc,
    name: keyof Capabilities,
    ctx: Pick<TestContext, 'annotate'>,
    what: string
): boolean {
    if (ic.capabilities[name]) return true;
    if (ic.backend === 'emulator') {
        throw new Error(`the emulator must provide capability '${name}'`);
    }
    void ctx.annotate(`not checked on ${ic.backend} ('${name}' is emulator-only): ${what}`);
    return false;
}
