/**
 * Writes src/manifests/validators.generated.ts, the validation code compiled
 * from schemas/ (see src/manifests/compile.ts). Run after editing a schema:
 *   npm run schemas
 */
import { writeFileSync } from 'node:fs';
import { GENERATED_FILE, generateValidators } from '../src/manifests/compile.js';

const target = new URL(`../../src/manifests/${GENERATED_FILE}`, import.meta.url);
writeFileSync(target, generateValidators());
console.log(`wrote ${target.pathname}`);
