/**
 * The capability gates of the canister tests (tests/integration/capabilities.ts), on stand-ins for
 * the two back ends: on PocketIC an emulator-only test is skipped with its reason and an
 * emulator-only check is left out with an annotation; on the emulator a missing capability fails.
 */
import { describe, expect, it } from 'vitest';

import type { Capabilities, TestIc } from '../../emulator/harness';
import { hasCapability, observable } from '../integration/capabilities';

function backend(name: TestIc['backend'], capabilities: Partial<Capabilities>): TestIc {
    const all: Capabilities = { faults: false, trace: false, instructionCounting: false };
    return { backend: name, capabilities: { ...all, ...capabilities } } as TestIc;
}

describe('capability gates', () => {
    it('skips an emulator-only test on PocketIC, saying which capability it needs', () => {
        const notes: (string | undefined)[] = [];
        const pic = backend('pocket-ic', {});
        expect(hasCapability(pic, 'trace', (note) => notes.push(note))).toBe(false);
        expect(notes).toEqual(["'trace' is emulator-only"]);
    });

    it('leaves an emulator-only check out on PocketIC and annotates the test', () => {
        const annotations: string[] = [];
        const ctx = {
            annotate: async (message: string) => {
                annotations.push(message);
                return { message, type: 'notice' } as never;
            }
        };
        const pic = backend('pocket-ic', {});
        expect(observable(pic, 'trace', ctx as never, 'three retries')).toBe(false);
        expect(annotations).toEqual([
            "not checked on pocket-ic ('trace' is emulator-only): three retries"
        ]);
    });

    it('runs the check where the capability exists, and fails on an emulator without it', () => {
        const ctx = { annotate: () => Promise.reject(new Error('must not annotate')) };
        const emulator = backend('emulator', { trace: true, faults: true });
        const never = () => {
            throw new Error('must not skip');
        };
        expect(hasCapability(emulator, 'faults', never)).toBe(true);
        expect(observable(emulator, 'trace', ctx as never, 'x')).toBe(true);
        expect(() => hasCapability(emulator, 'instructionCounting', never)).toThrow(
            "the emulator must provide capability 'instructionCounting'"
        );
        expect(() => observable(emulator, 'instructionCounting', ctx as never, 'x')).toThrow(
            "the emulator must provide capability 'instructionCounting'"
        );
    });
});
