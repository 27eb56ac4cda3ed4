import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** Finds `name` on a `PATH` string the way a shell would; undefined when absent. */
export async function findExecutable(name: string, searchPath: string | undefined): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutableFile(name)) ? name : undefined;
  for (const dir of (searchPath ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
