/**
 * A web app on a preview URL: write a small Python web server into the
 * sandbox, start it in the background, and open it through a signed preview
 * URL (the kind you can paste into a browser).
 *
 *   npx tsx examples/web-app.ts
 */
import { Sandbox } from '@warren/sdk';

const app = `
from http.server import BaseHTTPRequestHandler, HTTPServer
import json, platform

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"hello": "from the sandbox", "path": self.path, "python": platform.python_version()})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
`;

await using sandbox = await Sandbox.create({ template: 'base' });
await sandbox.files.write('/workspace/app.py', app);

// The command keeps running; its handle lets us stop it later.
const server = sandbox.commands.run('python3 /workspace/app.py', { reject: false });

// A URL with its own token, valid for ten minutes.
const url = await sandbox.createPreviewURL(8000, { ttlMs: 10 * 60_000 });
console.log(`preview URL: ${url}`);

// The server needs a moment to start listening.
let answer: unknown;
for (let attempt = 0; attempt < 100 && answer === undefined; attempt++) {
  const res = await fetch(url).catch(() => undefined);
  if (res?.ok) answer = await res.json();
  else await new Promise((r) => setTimeout(r, 100));
}
if (answer === undefined) throw new Error('the web app did not answer');
console.log('the app answered:', JSON.stringify(answer));

await server.kill();
console.log(`server stopped (killed: ${(await server).killed})`);
