/**
 * Starts a registry holding the pull benchmark's image and keeps it running,
 * for profiling berth by hand: prints the reference, stops on SIGINT/SIGTERM.
 */
import { startRegistry } from '../../helpers/registry.js';
import { benchImage, pushBenchImage } from '../common/image.js';
import { benchLayers, DEFAULT_CACHE_DIR } from '../common/layers.js';

const layers = await benchLayers({ count: 8, mib: 128, cacheDir: DEFAULT_CACHE_DIR });
const reg = await startRegistry();
await pushBenchImage(reg.url, 'bench/big', '1', benchImage(layers));
console.log(`${reg.host}/bench/big:1`);
const stop = (): void => void reg.stop().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
