import { IDL, query, update, msgCaller } from 'azle';

export default class {
    counter = 0n;
    @query([], IDL.Text)
    version(): string {
        return '0.1.0';
    }
    @update([], IDL.Nat64)
    inc(): bigint {
        this.counter += 1n;
        return this.counter;
    }
    @query([], IDL.Principal)
    whoami() { return msgCaller(); }
}
