import { describe, expect, it } from 'vitest';

import { DEFAULT_FACTORY_CONFIG, validateFactoryConfig } from '../../src/shared/factory_api';

describe('factory config', () => {
    it('accepts the defaults', () => {
        expect(validateFactoryConfig(DEFAULT_FACTORY_CONFIG)).toEqual([]);
    });

    it('names each field out of range', () => {
        const cases: [Partial<typeof DEFAULT_FACTORY_CONFIG>, string][] = [
            [{ max_shards: 0 }, 'max_shards'],
            [{ max_storage_threshold: 0 }, 'max_storage_threshold'],
            [{ max_loans_per_shard: 0n }, 'max_loans_per_shard'],
            [{ scaling_check_interval_ms: 999n }, 'scaling_check_interval_ms'],
            [{ shard_storage_capacity_bytes: 1n }, 'shard_storage_capacity_bytes'],
            [{ shard_creation_cycles: 500_000_000_000n }, 'shard_creation_cycles'],
            [{ top_up_cycles: 10n ** 30n }, 'top_up_cycles'],
            [{ min_shard_cycles: 10n ** 30n }, 'min_shard_cycles']
        ];
        for (const [change, field] of cases) {
            const errors = validateFactoryConfig({ ...DEFAULT_FACTORY_CONFIG, ...change });
            expect(errors.map((e) => e.field)).toEqual([field]);
        }
    });
});
