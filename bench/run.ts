/**
 * Runs every benchmark: imports each `*.js` module beside this one (except itself) and
 * awaits its exported `run()` in turn, in file-name order. `npm run bench` builds, then
 * runs this. Pass names to run only some: `node dist/bench/run.js apply accept`.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMain } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Runs the selected (default: all) bench modules in sequence; returns the number that failed. */
export async function runAll(only: readonly string[] = []): Promise<number> {
  const files = readdirSync(here)
    .filter((f) => f.endsWith('.js') && f !== 'run.js')
    .filter((f) => only.length === 0 || only.includes(f.slice(0, -3)))
    .sort();
  let failed = 0;
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(here, file)).href)) as { run?: () => Promise<void> };
    if (typeof mod.run !== 'function') {
      console.error(`bench/${file}: no exported run(), skipped`);
      continue;
    }
    console.log(`\n# ${file.slice(0, -3)}`);
    try {
      await mod.run();
    } catch (error) {
      failed++;
      console.error(`bench/${file} failed:`, error);
    }
  }
  return failed;
}

if (isMain(import.meta.url)) {
  process.exitCode = (await runAll(process.argv.slice(2))) ? 1 : 0;
}
