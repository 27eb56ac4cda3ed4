import { executeRequestSchema } from '@warren/protocol';
import { describe, expect, it } from 'vitest';
import { warmUpJsonBody } from './body.ts';

describe('warmUpJsonBody', () => {
  it('reads, parses and validates a body held in memory', async () => {
    await expect(warmUpJsonBody(executeRequestSchema, { code: 'print(1)', language: 'python' }, 1024)).resolves.toBe(
      undefined,
    );
  });

  it('fails like readJson: a body the schema refuses, a body over the cap', async () => {
    await expect(warmUpJsonBody(executeRequestSchema, { code: 42 }, 1024)).rejects.toMatchObject({
      code: 'INVALID_REQUEST',
    });
    await expect(warmUpJsonBody(executeRequestSchema, { code: 'x'.repeat(100) }, 64)).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });
  });
});
