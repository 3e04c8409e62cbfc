import { buildFixtures } from '../emulator/tests/fixtures/build';
import { buildAll } from '../scripts/build';

/**
 * Builds every canister Wasm once per test run, before any test file starts: the product canisters
 * and the emulator's fixtures. A canister whose sources did not change since its last build is skipped.
 */
export default async function setup(): Promise<void> {
    await buildAll({ log: (line) => console.log(`[build] ${line}`) });
    await buildFixtures();
}
