/**
 * Builds a one-file Azle canister from source in a scratch folder (with Azle offline, ~5 s),
 * reusing the last build while the source is unchanged. For tests that need a canister shaped
 * for one check (the engine smoke test, the HTTP interface's echo canister).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Wasm of canister `name` built from `source` (its `index.ts`) in `dir`. */
export function buildScratchCanister(dir: string, name: string, source: string): Uint8Array {
    const wasmPath = join(dir, '.azle', name, `${name}.wasm`);
    const stamp = join(dir, 'source.sha256');
    const hash = createHash('sha256').update(source).digest('hex');
    if (existsSync(wasmPath) && existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) {
        return new Uint8Array(readFileSync(wasmPath));
    }
    mkdirSync(dir, { recursive: true });
    const link = join(dir, 'node_modules');
    if (!existsSync(link)) {
        rmSync(link, { force: true }); // a dangling link from an interrupted build
        symlinkSync(join(REPO_DIR, 'node_modules'), link);
    }
    writeFileSync(join(dir, 'index.ts'), source);
    writeFileSync(
        join(dir, 'dfx.json'),
        JSON.stringify({
            canisters: {
                [name]: {
                    type: 'azle',
                    main: 'index.ts',
                    candid: `${name}.did`,
                    custom: { experimental: false, candid_gen: 'automatic' }
                }
            }
        })
    );
    execFileSync(
        process.execPath,
        [
            '--import',
            'tsx',
            join(REPO_DIR, 'node_modules', 'azle', 'src', 'build.ts'),
            'build',
            name
        ],
        {
            cwd: dir,
            env: { ...process.env, CANISTER_CANDID_PATH: `${name}.did` },
            stdio: 'pipe',
            timeout: 180_000
        }
    );
    writeFileSync(stamp, hash);
    return new Uint8Array(readFileSync(wasmPath));
}
