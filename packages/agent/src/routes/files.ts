import {
  ErrorCode,
  fileListQuerySchema,
  filePathQuerySchema,
  fileWriteRequestSchema,
  mkdirRequestSchema,
  ServiceError,
  uploadFieldsSchema,
} from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { limitedRequest, parseWith, readJson, readQuery } from '../http/body.ts';

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

async function partText(part: unknown): Promise<string | undefined> {
  if (typeof part === 'string') return part;
  return part instanceof Blob ? await part.text() : undefined;
}

/** `/files/*`: the files API over the allowed roots (PROTOCOL §8.4). */
export function fileRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { files, config } = deps;

  app.get('/files/read', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.read(path));
  });

  app.get('/files/download', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    const file = await files.download(path);
    return new Response(file.stream, {
      status: 200,
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(file.size),
        'Content-Disposition': contentDisposition(file.name),
        'X-Request-ID': c.get('requestId'),
      },
    });
  });

  app.post('/files/write', async (c) => {
    const params = await readJson(c, fileWriteRequestSchema, config.maxBodyBytes);
    return c.json(await files.write(params));
  });

  app.get('/files/list', async (c) => {
    const { path } = readQuery(c, fileListQuerySchema);
    return c.json(await files.list(path ?? config.workdir));
  });

  app.get('/files/exists', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.exists(path));
  });

  app.delete('/files/remove', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.remove(path));
  });

  app.post('/files/mkdir', async (c) => {
    const { path } = await readJson(c, mkdirRequestSchema, config.maxBodyBytes);
    return c.json(await files.mkdir(path));
  });

  app.post('/files/upload', async (c) => {
    if (!/^multipart\/form-data\b/i.test(c.req.header('content-type') ?? '')) {
      throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid request: expected a multipart/form-data body');
    }
    const { request, exceeded } = limitedRequest(c, config.maxBodyBytes);
    let form: FormData;
    try {
      form = await request.formData();
    } catch (err) {
      if (exceeded()) {
        throw new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, `Request body exceeds ${config.maxBodyBytes} bytes`);
      }
      throw new ServiceError(ErrorCode.INVALID_REQUEST, `Invalid multipart body: ${(err as Error).message}`);
    }
    const { path } = parseWith(uploadFieldsSchema, { path: await partText(form.get('path')) });
    const part: unknown = form.get('file');
    const blob = typeof part === 'string' ? new Blob([part]) : part instanceof Blob ? part : undefined;
    if (!blob) throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid file: the "file" part is required');
    const name = part instanceof File ? part.name : '';
    return c.json(await files.upload(path, { name, stream: blob.stream() }));
  });

  return app;
}
