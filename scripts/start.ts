/**
 * The main job (`npm start`): builds what is stale, starts the local IC emulator with two subnets
 * tagged `asia` and `europe`, deploys the factory and the router, provisions shards through the
 * factory, runs the workload with a scale-out and a shard failure, and prints the report. Exit
 * status 0 only if every invariant check holds.
 *
 *   npm start -- [--loans N] [--farmers N] [--investors N] [--shards N]
 *                [--seed N] [--no-faults] [--count-instructions] [--json FILE]
 *                [--serve [--port N] [--state DIR] [--workload]]
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Principal } from '@dfinity/principal';

import { buildAll } from './build';
import {
    DEFAULT_MAIN_JOB,
    deploySuite,
    emulatorOptions,
    runMainJob,
    runOnSuite,
    type MainJobOptions
} from './lib/main_job';
import { consoleProgress } from './lib/progress';
import { formatReport, reportJson, type Report } from './lib/report';
import { identityFromPem } from './deploy';
import { DEFAULT_STATE_DIR, serveNetwork, untilStopSignal } from './serve';

/**
 * The operator's key in the state folder (`operator.pem`, Ed25519 PKCS#8 as `dfx identity export`
 * writes), made once: the served suite makes it an admin of factory and router and a router
 * writer, so `npm run call -- --identity <state>/operator.pem ...` can write and administer.
 */
export function operatorKey(stateDir: string): { pemFile: string; principal: Principal } {
    const pemFile = join(stateDir, 'operator.pem');
    if (!existsSync(pemFile)) {
        mkdirSync(stateDir, { recursive: true });
        const { privateKey } = generateKeyPairSync('ed25519');
        const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
        writeFileSync(pemFile, pem, { mode: 0o600 });
    }
    return { pemFile, principal: identityFromPem(readFileSync(pemFile, 'utf8')).getPrincipal() };
}

export const USAGE = `usage: npm start -- [options]
  --loans N              loans to create (default ${DEFAULT_MAIN_JOB.loans})
  --farmers N            farmers, Zipf-distributed activity (default ${DEFAULT_MAIN_JOB.farmers})
  --investors N          investors funding loans (default ${DEFAULT_MAIN_JOB.investors})
  --shards N             shards provisioned before the run; one more by scale-out (default ${DEFAULT_MAIN_JOB.shards})
  --seed N               seed of the workload and the emulator (default ${DEFAULT_MAIN_JOB.seed})
  --no-faults            do not stop and restart a shard midway
  --count-instructions   count instructions during the whole run (about twice as slow) and add its
                         per-method table; otherwise only the per-operation figures are counted
  --json FILE            also write the report as JSON
  --serve                leave a local network running over HTTP (see scripts/serve.ts)
    --port N             its port (default 4943)
    --state DIR          its state folder
    --workload           run the workload on it before serving`;

export interface StartArgs {
    job: MainJobOptions;
    json: string | null;
    serve: { port: number; state: string | null; workload: boolean } | null;
}

function integer(flag: string, value: string | undefined, min: number, max: number): number {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min || n > max) {
        throw new Error(`${flag} needs an integer in ${min}..=${max}, got ${value ?? 'nothing'}`);
    }
    return n;
}

/** Parses the command line; throws with a one-line reason on a bad flag. */
export function parseArgs(argv: string[]): StartArgs {
    const job: MainJobOptions = { ...DEFAULT_MAIN_JOB };
    let json: string | null = null;
    let serve = false;
    let port = 4943;
    let state: string | null = null;
    let workload = false;
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = (): string | undefined => argv[++i];
        switch (flag) {
            case '--loans':
                job.loans = integer(flag, value(), 1, 1_000_000);
                break;
            case '--farmers':
                job.farmers = integer(flag, value(), 1, 100_000);
                break;
            case '--investors':
                job.investors = integer(flag, value(), 1, 100_000);
                break;
            case '--shards':
                job.shards = integer(flag, value(), 1, 64);
                break;
            case '--seed':
                job.seed = integer(flag, value(), 0, 2 ** 32 - 1);
                break;
            case '--no-faults':
                job.faults = false;
                break;
            case '--count-instructions':
                job.countInstructions = true;
                break;
            case '--json': {
                const file = value();
                if (file === undefined || file.startsWith('--'))
                    throw new Error('--json needs a file');
                json = file;
                break;
            }
            case '--serve':
                serve = true;
                break;
            case '--port':
                port = integer(flag, value(), 0, 65_535);
                break;
            case '--state': {
                const dir = value();
                if (dir === undefined || dir.startsWith('--'))
                    throw new Error('--state needs a folder');
                state = dir;
                break;
            }
            case '--workload':
                workload = true;
                break;
            default:
                throw new Error(`unknown option ${flag}`);
        }
    }
    if (job.faults && job.shards < 2)
        throw new Error('faults need at least 2 shards (or --no-faults)');
    if (!serve && (state !== null || workload))
        throw new Error('--state and --workload go with --serve');
    return { job, json, serve: serve ? { port, state, workload } : null };
}

/**
 * `--serve`: the suite deployed on a local network over HTTP (scripts/serve.ts), optionally after
 * the workload; runs until Ctrl-C.
 */
async function serve(args: StartArgs): Promise<number> {
    const { job } = args;
    const options = args.serve!;
    const progress = consoleProgress();
    let report: Report | null = null;
    const operator = operatorKey(resolvePath(options.state ?? DEFAULT_STATE_DIR));
    const net = await serveNetwork({
        port: options.port,
        stateDir: options.state ?? undefined,
        emulator: emulatorOptions(job),
        log: (line) => console.log(line),
        deploySuite: async (ic) => {
            const started = Date.now();
            const suite = await deploySuite(ic, {
                ...job,
                progress,
                operators: [operator.principal]
            });
            if (options.workload) {
                report = await runOnSuite(
                    suite,
                    { ...job, progress },
                    {
                        started,
                        deployed: Date.now()
                    }
                );
            }
            progress.stop();
            const ids: Record<string, Principal> = {
                factory: suite.factoryId,
                router: suite.routerId
            };
            for (const shard of suite.provision.shards)
                ids[`data_shard_${shard.shard_id}`] = shard.canister_id;
            return ids;
        }
    });
    if (report !== null) {
        console.log(`\n${formatReport(report)}`);
        if (args.json !== null) await writeFile(args.json, `${reportJson(report)}\n`);
    }
    console.log(
        `operator ${operator.principal.toText()} (admin, router writer): --identity ${operator.pemFile}`
    );
    console.log(`\nServing ${net.url} (Ctrl-C to stop).`);
    await untilStopSignal();
    await net.close();
    return report === null || (report as Report).ok ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
    let args: StartArgs;
    try {
        args = parseArgs(argv);
    } catch (e) {
        console.error(`${(e as Error).message}\n\n${USAGE}`);
        return 2;
    }
    await buildAll({ log: (line) => console.log(`build: ${line}`) });
    if (args.serve !== null) return await serve(args);
    const progress = consoleProgress();
    const report = await runMainJob({ ...args.job, progress });
    console.log(`\n${formatReport(report)}`);
    if (args.json !== null) {
        await writeFile(args.json, `${reportJson(report)}\n`);
        console.log(`\nreport written to ${args.json}`);
    }
    return report.ok ? 0 : 1;
}

if (
    process.argv[1] !== undefined &&
    resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)
) {
    process.exitCode = await main(process.argv.slice(2));
}
