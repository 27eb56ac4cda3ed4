import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Finds `name` on a `PATH` string the way a shell would; undefined when absent.
 * The lookups are synchronous: each is an in-kernel check of microseconds,
 * where an async one costs a round trip through libuv's thread pool, and a
 * `PATH` search makes up to two per directory on every code run.
 */
export async function findExecutable(name: string, searchPath: string | undefined): Promise<string | undefined> {
  if (name.includes('/')) return isExecutableFile(name) ? name : undefined;
  for (const dir of (searchPath ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * A regular file this process may execute. `stat` comes first and reports a
 * missing file without throwing: most `PATH` directories do not hold the
 * name, and an exception per miss costs more than the lookup itself.
 */
function isExecutableFile(path: string): boolean {
  try {
    if (statSync(path, { throwIfNoEntry: false })?.isFile() !== true) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
