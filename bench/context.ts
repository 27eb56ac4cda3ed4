import type { Api } from './api.ts';
import type { BareContainers } from './host.ts';
import type { BenchServer } from './server.ts';

/** How many samples each benchmark takes. */
export interface Scale {
  name: string;
  /** Sequential creates, warm and cold (row 1). */
  createN: number;
  /** `Sandbox.create` + `runCode` rounds, warm and cold (row 2). */
  firstResultN: number;
  /** Round trips per kind (row 3). */
  execN: number;
  /** Concurrent create→runCode→kill bursts (row 4); the warm pool is sized to the largest. */
  bursts: number[];
  /** Most idle sandboxes to hold at once (row 5); fewer when memory would pass 80 %. */
  densityMax: number;
  /** Creates timed at each density level. */
  densityProbes: number;
  /** Transfers per file size (row 6): 1 KiB, 1 MiB, 100 MiB. */
  filesN: [number, number, number];
  /** Pause/resume cycles (row 7). */
  pauseN: number;
  /** Streams of `streamLines` prints each (row 8). */
  streamRuns: number;
  streamLines: number;
}

export const SCALES: Record<string, Scale> = {
  full: {
    name: 'full',
    createN: 100,
    firstResultN: 20,
    execN: 1000,
    bursts: [10, 50, 100],
    densityMax: 500,
    densityProbes: 10,
    filesN: [50, 20, 3],
    pauseN: 100,
    streamRuns: 5,
    streamLines: 20,
  },
  quick: {
    name: 'quick',
    createN: 20,
    firstResultN: 5,
    execN: 100,
    bursts: [10],
    densityMax: 30,
    densityProbes: 3,
    filesN: [10, 5, 1],
    pauseN: 20,
    streamRuns: 2,
    streamLines: 10,
  },
  smoke: {
    name: 'smoke',
    createN: 2,
    firstResultN: 1,
    execN: 3,
    bursts: [2],
    densityMax: 3,
    densityProbes: 1,
    filesN: [1, 1, 1],
    pauseN: 2,
    streamRuns: 1,
    streamLines: 3,
  },
};

/** What every benchmark gets. */
export interface BenchContext {
  server: BenchServer;
  api: Api;
  /** Options for `Sandbox.create` of the official SDK. */
  sdk: { baseURL: string; apiKey: string };
  bare: BareContainers;
  scale: Scale;
  /** Scratch directory on the same disk as the server's data directory. */
  workDir: string;
  progress: (message: string) => void;
}
