/**
 * Progress of the main job: a cli-progress bar (phase, loans, loans/s, shards, breaker states) on
 * a TTY, plain lines elsewhere (CI logs, pipes), at most one line per `plainIntervalMs`; silent in
 * tests.
 */
import { Presets, SingleBar } from 'cli-progress';

export interface ProgressState {
    phase: string;
    done: number;
    total: number;
    loansPerS: number;
    shards: number;
    /** e.g. `1:C 2:C 3:O 4:C` (Closed, Open, HalfOpen …). */
    breakers: string;
}

export interface Progress {
    /** Starts or re-targets the bar for a phase. */
    phase(name: string, total: number): void;
    update(state: Partial<ProgressState>): void;
    /** A line that stays above the bar (events: scale-out, shard stopped, …). */
    log(line: string): void;
    stop(): void;
}

/** No output at all (tests, `--json -`). */
export function silentProgress(): Progress {
    return { phase() {}, update() {}, log() {}, stop() {} };
}

/** A bar on a TTY, else plain lines to `write` (default stdout). */
export function consoleProgress(
    o: { tty?: boolean; write?: (line: string) => void; plainIntervalMs?: number } = {}
): Progress {
    const tty = o.tty ?? process.stdout.isTTY === true;
    const write = o.write ?? ((line: string) => process.stdout.write(`${line}\n`));
    const state: ProgressState = {
        phase: '',
        done: 0,
        total: 1,
        loansPerS: 0,
        shards: 0,
        breakers: ''
    };
    if (!tty) {
        let last = 0;
        const interval = o.plainIntervalMs ?? 5_000;
        const line = (): string =>
            `[${state.phase}] ${state.done}/${state.total} loans/s=${state.loansPerS.toFixed(0)} ` +
            `shards=${state.shards} breakers=${state.breakers || '-'}`;
        return {
            phase(name, total) {
                Object.assign(state, { phase: name, total: Math.max(total, 1), done: 0 });
                last = Date.now();
                write(line());
            },
            update(s) {
                Object.assign(state, s);
                if (Date.now() - last >= interval) {
                    last = Date.now();
                    write(line());
                }
            },
            log(text) {
                write(text);
            },
            stop() {}
        };
    }
    const bar = new SingleBar(
        {
            format: '{phase} |{bar}| {value}/{total} | {loansPerS} loans/s | shards {shards} | breakers {breakers}',
            hideCursor: true,
            clearOnComplete: false,
            etaBuffer: 50
        },
        Presets.shades_classic
    );
    let running = false;
    const payload = () => ({
        phase: state.phase.padEnd(10),
        loansPerS: state.loansPerS.toFixed(0),
        shards: state.shards,
        breakers: state.breakers || '-'
    });
    return {
        phase(name, total) {
            Object.assign(state, { phase: name, total: Math.max(total, 1), done: 0 });
            if (running) bar.stop();
            bar.start(state.total, 0, payload());
            running = true;
        },
        update(s) {
            Object.assign(state, s);
            if (!running) return;
            bar.setTotal(Math.max(state.total, 1));
            bar.update(state.done, payload());
        },
        log(text) {
            if (running) {
                // cli-progress redraws on the next update; clear the line first.
                process.stdout.write('\r\x1b[K');
            }
            write(text);
            if (running) bar.update(state.done, payload());
        },
        stop() {
            if (running) bar.stop();
            running = false;
        }
    };
}
