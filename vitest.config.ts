import { defineConfig } from 'vitest/config';

export default defineConfig({
    test: {
        include: ['tests/**/*.test.ts', 'emulator/tests/**/*.test.ts'],
        globalSetup: ['tests/global-setup.ts'],
        testTimeout: 60_000,
        hookTimeout: 300_000,
        pool: 'forks'
    }
});
