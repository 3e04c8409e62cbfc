import { buildAll } from '../scripts/build';

/**
 * Builds every canister Wasm once per test run, before any test file starts; a canister whose
 * sources did not change since its last build is skipped (see scripts/build.ts).
 */
export default async function setup(): Promise<void> {
    await buildAll({ log: (line) => console.log(`[build] ${line}`) });
}
