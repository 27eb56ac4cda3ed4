import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PacedSender } from './paced-sender.ts';

/** Just enough of a ws socket: records sends with their time. */
class FakeSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly sent: Array<{ at: number; frame: Record<string, unknown> }> = [];
  send(text: string): void {
    this.sent.push({ at: performance.now(), frame: JSON.parse(text) as Record<string, unknown> });
  }
  close(): void {
    this.readyState = WebSocket.CLOSED;
    this.emit('close');
  }
}

function sender(socket: FakeSocket, options: ConstructorParameters<typeof PacedSender>[1] = {}) {
  return new PacedSender(socket as unknown as WebSocket, options);
}

describe('PacedSender', () => {
  it('sends frames at least intervalMs apart, in order', async () => {
    const socket = new FakeSocket();
    const s = sender(socket, { intervalMs: 20 });
    for (let i = 0; i < 5; i++) s.send({ type: 'n', i });
    await s.drained();
    expect(socket.sent.map((x) => x.frame.i)).toEqual([0, 1, 2, 3, 4]);
    for (let i = 1; i < socket.sent.length; i++) {
      expect((socket.sent[i]?.at ?? 0) - (socket.sent[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(19);
    }
  });

  it('merges queued chunks of one type up to the frame size, keeping stdout/stderr order', async () => {
    const socket = new FakeSocket();
    const s = sender(socket, { intervalMs: 5, maxFrameBytes: 10 });
    s.send({ type: 'first' });
    for (const part of ['ab', 'cd', 'efghij', 'kl']) s.sendData('stdout', part);
    s.sendData('stderr', 'E');
    s.sendData('stdout', 'mn');
    await s.drained();
    expect(socket.sent.map((x) => [x.frame.type, x.frame.data])).toEqual([
      ['first', undefined],
      ['stdout', 'abcdefghij'],
      ['stdout', 'kl'],
      ['stderr', 'E'],
      ['stdout', 'mn'],
    ]);
  });

  it('asks the producer to pause above the high-water mark and to go on once drained', async () => {
    const socket = new FakeSocket();
    const events: boolean[] = [];
    const s = sender(socket, {
      intervalMs: 1,
      highWaterBytes: 100,
      maxFrameBytes: 50,
      onPressure: (p) => events.push(p),
    });
    for (let i = 0; i < 10; i++) s.sendData('stdout', 'x'.repeat(30));
    expect(events).toEqual([true]);
    await s.drained();
    expect(events).toEqual([true, false]);
    expect(s.queuedBytes).toBe(0);
  });

  it('drops the queue when the socket closes', async () => {
    const socket = new FakeSocket();
    const s = sender(socket, { intervalMs: 50 });
    s.send({ type: 'a' });
    s.send({ type: 'b' });
    socket.close();
    await s.drained();
    expect(s.queuedBytes).toBe(0);
    expect(socket.sent.length).toBeLessThanOrEqual(1);
  });

  it('finish: sends the last frame again while the client has not closed, then closes', async () => {
    const quiet = new FakeSocket();
    await sender(quiet, { intervalMs: 1 }).finish({ type: 'complete' }, { repeatAfterMs: 20, repeats: 2 });
    expect(quiet.sent.map((x) => x.frame.type)).toEqual(['complete', 'complete', 'complete']);
    expect(quiet.readyState).toBe(WebSocket.CLOSED);

    // A client that closes on the first copy gets exactly one.
    const prompt = new FakeSocket();
    const s = sender(prompt, { intervalMs: 1 });
    const sent = prompt.send.bind(prompt);
    prompt.send = (text: string) => {
      sent(text);
      setTimeout(() => prompt.close(), 2);
    };
    await s.finish({ type: 'complete' }, { repeatAfterMs: 50, repeats: 2 });
    expect(prompt.sent.map((x) => x.frame.type)).toEqual(['complete']);
  });
});
