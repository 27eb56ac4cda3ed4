import type { Readable } from 'node:stream';

/** Chunks a stream may run ahead of its reader before it is paused. */
const MAX_PENDING_CHUNKS = 8;

/**
 * Each chunk of a Node stream as it arrived. Unlike the stream's own async
 * iterator, which joins every chunk buffered meanwhile into a new buffer
 * (a copy of most of a large body), no chunk is copied. The stream is paused
 * while `MAX_PENDING_CHUNKS` wait to be read, and is left open (not destroyed)
 * when the reader stops early.
 * @throws the stream's error, or an Error when it closed before its end.
 */
export async function* chunksOf(stream: Readable): AsyncGenerator<Buffer> {
  const pending: Buffer[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer) => {
    pending.push(chunk);
    if (pending.length >= MAX_PENDING_CHUNKS) stream.pause();
    wake?.();
  };
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  const onError = (err: unknown) => {
    failure ??= err;
    wake?.();
  };
  const onClose = () => onError(new Error('the stream closed before its end'));
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('error', onError);
  stream.once('close', onClose);
  try {
    for (;;) {
      const chunk = pending.shift();
      if (chunk !== undefined) {
        if (pending.length === 0 && stream.isPaused()) stream.resume();
        yield chunk;
      } else if (ended) {
        return;
      } else if (failure !== undefined) {
        throw failure;
      } else {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onClose);
    // Not flowing once nobody listens: what is left is for whoever reads (or drains) the stream next.
    stream.pause();
  }
}
