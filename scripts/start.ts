/**
 * The main job (`npm start`). Today it builds the canisters and prints the run it will perform; the
 * end-to-end run over the local IC emulator lands with the main-job issue.
 */
import { artifacts, buildAll, CANISTERS } from './build';

const PLAN = [
    'start the local IC emulator with two subnets tagged `asia` and `europe`',
    'deploy `factory` and `router`, upload the shard Wasm to the factory in 1 MiB chunks',
    'create 4 shards (2 per region) and register the router as a writer',
    'run 20,000 loans from 2,000 farmers (Zipf activity) with 300 investors funding them',
    'scale out automatically when a shard passes 80% of max_loans_per_shard, migrating slots live',
    'stop one shard midway (its breaker opens) and restart it (the breaker closes)',
    'report shards, routing epoch, migrations, balancer and cache statistics, and invariant checks'
];

await buildAll({ log: (line) => console.log(`build: ${line}`) });
for (const { name } of CANISTERS) console.log(`wasm: ${artifacts(name).wasmGz}`);
console.log('\nThe full run (not yet wired to the emulator) will:');
PLAN.forEach((step, i) => console.log(`  ${i + 1}. ${step}`));
