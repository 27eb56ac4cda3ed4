import { describe, expect, it } from 'vitest';
import { parseListeningPorts } from './commands/sandbox/ports.ts';
import { ago, fields, table } from './output.ts';

describe('table', () => {
  it('aligns columns, upper-cases headers and marks missing cells', () => {
    const text = table(
      ['id', 'status', 'note'],
      [
        ['sb1', 'running', 'x'],
        ['sandbox-two', null, 'multi\nline'],
      ],
    );
    expect(text.split('\n')).toEqual([
      'ID           STATUS   NOTE',
      'sb1          running  x',
      'sandbox-two  -        multi line',
    ]);
  });

  it('renders fields and ages', () => {
    expect(
      fields([
        ['id', 'a'],
        ['longer', null],
      ]),
    ).toBe('id:     a\nlonger: -');
    expect(ago('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:05:30Z'))).toBe('5m ago');
    expect(ago(null)).toBe('-');
  });
});

describe('parseListeningPorts', () => {
  it('reads LISTEN sockets of /proc/net/tcp and tcp6, one per port', () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1',
      '   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1',
      '   2: 0100007F:9C40 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 3 1',
      '  sl  local_address                         remote_address                        st',
      '   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 0',
      '   1: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 0',
    ].join('\n');
    expect(parseListeningPorts(text)).toEqual([
      { port: 80, address: '127.0.0.1' },
      { port: 3000, address: '::1' },
      { port: 8000, address: '0.0.0.0' },
    ]);
  });
});
