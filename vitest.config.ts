import { defineConfig } from 'vitest/config';

// Unit tests of the pure core need no Wasm; canister tests build it once per run (global setup).
export default defineConfig({
    test: {
        pool: 'forks',
        projects: [
            {
                test: {
                    name: 'unit',
                    include: ['tests/unit/**/*.test.ts'],
                    testTimeout: 60_000
                }
            },
            {
                test: {
                    name: 'canisters',
                    include: ['tests/integration/**/*.test.ts', 'emulator/tests/**/*.test.ts'],
                    globalSetup: ['tests/global-setup.ts'],
                    testTimeout: 120_000,
                    hookTimeout: 600_000
                }
            }
        ]
    }
});
