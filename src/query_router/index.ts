import { IDL, query } from 'azle';

import { VERSION } from '../shared/version';

/**
 * The router canister: the query router (this folder) and the load balancer (`src/load_balancer`)
 * in one canister, so balancing decisions and breaker state sit next to the calls they protect.
 */
export default class {
    /** The canister's version. Example: `dfx canister call router version` → `("0.1.0")`. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }
}
