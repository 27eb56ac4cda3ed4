import { mkdtemp, rm } from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import { sandboxCgroupsEverywhere } from './leaks.ts';
import { removeTestNetwork, startServer, stopServer, testNetwork } from './server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    warren: { baseURL: string; apiKey: string; dataDir: string; cgroupParent: string; bridge: string; gateway: string };
  }
}

/** Starts one real Warren server for the whole suite; tears it down and removes its host state afterwards. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = await mkdtemp('/var/tmp/warren-test-');
  // WARREN_TEST_SLOT lets two suites run at once on one machine without sharing a bridge or cgroups.
  const net = testNetwork(Number(process.env.WARREN_TEST_SLOT ?? 0));
  const handle = await startServer({
    dataDir,
    ...net,
    apiKey: 'wrn_test_suite_key_0123456789',
    // A small page size so the SDK's iterator really crosses pages.
    env: { WARREN_LIST_PAGE_MAX: '5' },
  });
  project.provide('warren', {
    baseURL: handle.baseURL,
    apiKey: handle.apiKey,
    dataDir,
    cgroupParent: net.cgroupParent,
    bridge: net.bridge,
    gateway: net.cidr.replace(/\.0\.0\/16$/, '.0.1'),
  });
  return async () => {
    await stopServer(handle, { deleteSandboxes: true });
    const left = await sandboxCgroupsEverywhere(net.cgroupParent);
    if (left.length > 0) throw new Error(`sandbox cgroups left after the suite: ${left.join(', ')}`);
    await removeTestNetwork(net);
    await rm(dataDir, { recursive: true, force: true });
  };
}
