// The package name resolves through package.json "exports" at the
// repository root (a package may import itself by name) to the same
// declarations as the relative import: what `npm install` users get.

import Default, { Switchboard, SwitchboardError, type SwitchboardEventMap } from '@switchboardhq/switchboard';
import * as direct from '../static/switchboard.js';

const sameClass: typeof direct.Switchboard = Switchboard;
const sameDefault: typeof direct.default = Default;
const sameError: typeof direct.SwitchboardError = SwitchboardError;
const sameEvents: direct.SwitchboardEventMap | null = null as SwitchboardEventMap | null;
export { sameClass, sameDefault, sameError, sameEvents };
