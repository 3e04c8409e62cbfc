/**
 * Builds the three canisters offline with Azle (no dfx needed) and derives what clients need:
 *
 *   .azle/<name>/<name>.wasm       the canister module
 *   .azle/<name>/<name>.wasm.gz    the same, gzipped (what the factory stores and installs)
 *   src/<folder>/<name>.did        the Candid interface (checked in)
 *   src/declarations/<name>/       dfx-style `idlFactory`/`init` declarations (by @icp-sdk/bindgen)
 *
 * A canister whose inputs (its sources, `src/shared`, the lock file) did not change since its last
 * build is skipped. Usage: `npm run build [-- NAME ...] [-- --force]`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const run = promisify(execFile);

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** One canister of dfx.json and the source folders its Wasm depends on. */
export interface CanisterBuild {
    name: string;
    /** Folder of the entry file and of the checked-in `.did`. */
    folder: string;
    sources: string[];
}

export const CANISTERS: readonly CanisterBuild[] = [
    { name: 'factory', folder: 'src/factory', sources: ['src/factory', 'src/shared'] },
    { name: 'data_shard', folder: 'src/data_shard', sources: ['src/data_shard', 'src/shared'] },
    {
        name: 'router',
        folder: 'src/query_router',
        sources: ['src/query_router', 'src/load_balancer', 'src/shared']
    }
];

/** Paths of a canister's build outputs. */
export function artifacts(name: string): { wasm: string; wasmGz: string; did: string } {
    const canister = CANISTERS.find((c) => c.name === name);
    if (canister === undefined) throw new Error(`unknown canister ${name}`);
    return {
        wasm: join(ROOT, '.azle', name, `${name}.wasm`),
        wasmGz: join(ROOT, '.azle', name, `${name}.wasm.gz`),
        did: join(ROOT, canister.folder, `${name}.did`)
    };
}

const MAX_SOURCE_FILES = 10_000;

async function listFiles(dir: string, out: string[]): Promise<void> {
    if (!existsSync(dir)) return;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await listFiles(path, out);
        else if (/\.(ts|js|json)$/.test(entry.name)) out.push(path);
        if (out.length > MAX_SOURCE_FILES) throw new Error(`more than ${MAX_SOURCE_FILES} sources`);
    }
}

/** A digest of everything the canister's Wasm is built from. */
async function inputDigest(canister: CanisterBuild): Promise<string> {
    const files: string[] = [];
    for (const dir of canister.sources) await listFiles(join(ROOT, dir), files);
    files.sort();
    const hash = createHash('sha256');
    for (const file of [...files, join(ROOT, 'package-lock.json'), join(ROOT, 'dfx.json')]) {
        hash.update(relative(ROOT, file));
        hash.update(await readFile(file));
    }
    return hash.digest('hex');
}

const BINDGEN_IMPORTS: [RegExp, string][] = [
    [/'@icp-sdk\/core\/agent'/g, "'@dfinity/agent'"],
    [/'@icp-sdk\/core\/candid'/g, "'@dfinity/candid'"],
    [/'@icp-sdk\/core\/principal'/g, "'@dfinity/principal'"]
];

/** Generates `src/declarations/<name>/<name>.did.{js,d.ts}`, pointed at the @dfinity packages. */
async function generateDeclarations(name: string, did: string): Promise<void> {
    const outDir = join(ROOT, 'src', 'declarations', name);
    await run(
        process.execPath,
        [
            join(
                ROOT,
                'node_modules',
                '@icp-sdk',
                'bindgen',
                'dist',
                'esm',
                'cli',
                'icp-bindgen.js'
            ),
            '--did-file',
            did,
            '--out-dir',
            outDir,
            '--declarations-flat',
            '--actor-disabled',
            '--force'
        ],
        { cwd: ROOT }
    );
    // The project uses @dfinity/{agent,candid,principal}; bindgen 0.3 names their successor package.
    for (const file of [`${name}.did.js`, `${name}.did.d.ts`]) {
        const path = join(outDir, file);
        let source = await readFile(path, 'utf8');
        for (const [from, to] of BINDGEN_IMPORTS) source = source.replace(from, to);
        await writeFile(path, source);
    }
}

/** Builds one canister unless its stamp says the inputs are unchanged. Returns whether it built. */
export async function buildCanister(
    canister: CanisterBuild,
    options: { force?: boolean; log?: (line: string) => void } = {}
): Promise<boolean> {
    const log = options.log ?? (() => {});
    const out = artifacts(canister.name);
    const stampPath = join(ROOT, '.azle', canister.name, 'build-stamp.json');
    const digest = await inputDigest(canister);
    if (!options.force && existsSync(stampPath) && existsSync(out.wasmGz) && existsSync(out.did)) {
        const stamp = JSON.parse(await readFile(stampPath, 'utf8')) as { digest: string };
        if (stamp.digest === digest) {
            log(`${canister.name}: up to date`);
            return false;
        }
    }
    const started_ms = Date.now();
    // Azle's bin is a TypeScript file with a `npx tsx` shebang, so it is executed, not passed to node.
    await run(join(ROOT, 'node_modules', '.bin', 'azle'), ['build', canister.name], {
        cwd: ROOT,
        env: { ...process.env, CANISTER_CANDID_PATH: out.did },
        maxBuffer: 64 * 1024 * 1024
    });
    const wasm = await readFile(out.wasm);
    await writeFile(out.wasmGz, gzipSync(wasm, { level: 9 }));
    await generateDeclarations(canister.name, out.did);
    await mkdir(dirname(stampPath), { recursive: true });
    await writeFile(stampPath, JSON.stringify({ digest }));
    const gz = await readFile(out.wasmGz);
    log(
        `${canister.name}: built in ${Date.now() - started_ms} ms, ` +
            `${(wasm.length / 1e6).toFixed(2)} MB wasm, ${(gz.length / 1e6).toFixed(2)} MB gzipped`
    );
    return true;
}

const LOCK_DIR = join(ROOT, '.azle', '.build-lock');
const LOCK_WAIT_MS = 600_000;
const LOCK_POLL_MS = 200;

function processAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

/**
 * Runs `body` holding the build lock: Azle deletes `.azle/<name>` before it writes, so two builds at
 * once (two test runs, or a test run and `npm run build`) would remove each other's output.
 */
async function withBuildLock<T>(body: () => Promise<T>): Promise<T> {
    const started_ms = Date.now();
    await mkdir(dirname(LOCK_DIR), { recursive: true });
    for (;;) {
        try {
            await mkdir(LOCK_DIR);
            await writeFile(join(LOCK_DIR, 'pid'), String(process.pid));
            break;
        } catch {
            const holder = Number(await readFile(join(LOCK_DIR, 'pid'), 'utf8').catch(() => 'NaN'));
            if (Number.isInteger(holder) && !processAlive(holder)) {
                await rm(LOCK_DIR, { recursive: true, force: true });
                continue;
            }
            if (Date.now() - started_ms > LOCK_WAIT_MS) {
                throw new Error(`waited ${LOCK_WAIT_MS} ms for ${LOCK_DIR}; remove it if stale`);
            }
            await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
        }
    }
    try {
        return await body();
    } finally {
        await rm(LOCK_DIR, { recursive: true, force: true });
    }
}

/** Builds the named canisters (all by default), one after another, under the build lock. */
export async function buildAll(
    options: { names?: string[]; force?: boolean; log?: (line: string) => void } = {}
): Promise<void> {
    const names = options.names?.length ? options.names : CANISTERS.map((c) => c.name);
    await withBuildLock(async () => {
        for (const name of names) {
            const canister = CANISTERS.find((c) => c.name === name);
            if (canister === undefined) throw new Error(`unknown canister ${name}`);
            await buildCanister(canister, options);
        }
    });
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const args = process.argv.slice(2);
    await buildAll({
        names: args.filter((a) => !a.startsWith('--')),
        force: args.includes('--force'),
        log: (line) => console.log(line)
    });
}
