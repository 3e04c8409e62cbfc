import { readFileSync } from 'node:fs';
import { IDL } from '@dfinity/candid';
import { beforeAll, describe, expect, it } from 'vitest';

import { buildFixtures, FIXTURE_NAMES, type FixtureName } from './fixtures/build';
import { callerIdl, counterIdl, factoryChildIdl } from './fixtures/idl';

const IDLS: Record<FixtureName, IDL.InterfaceFactory> = {
    counter: counterIdl,
    caller: callerIdl,
    factory_child: factoryChildIdl
};

/** `name: (...) -> (...) query;` lines of an Azle-generated service, as `name query|update`. */
function didMethods(did: string): string[] {
    return [...did.matchAll(/^\s+(\w+):\s*\(.*\)\s*->\s*\(.*\)(\s+query)?;$/gm)]
        .map((m) => `${m[1]} ${m[2] ? 'query' : 'update'}`)
        .sort();
}

/** The same view of a hand-written interface factory (a composite query is a query in the .did). */
function idlMethods(factory: IDL.InterfaceFactory): string[] {
    return factory({ IDL })
        ._fields.map(([name, func]) => {
            const query = func.annotations.some((a) => a === 'query' || a === 'composite_query');
            return `${name} ${query ? 'query' : 'update'}`;
        })
        .sort();
}

describe('fixture interfaces', () => {
    let paths: Record<FixtureName, string>;

    beforeAll(async () => {
        paths = await buildFixtures();
    });

    it.each(FIXTURE_NAMES)('declares every method of %s in idl.ts, with its mode', (name) => {
        const did = readFileSync(paths[name].replace(/\.wasm$/, '.did'), 'utf8');
        const fromDid = didMethods(did);
        expect(fromDid.length).toBeGreaterThan(3);
        expect(idlMethods(IDLS[name])).toEqual(fromDid);
    });
});
