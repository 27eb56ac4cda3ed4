/**
 * Quickstart: create a sandbox, run code and a command in it, and kill it.
 *
 *   WARREN_URL=http://127.0.0.1:8080 WARREN_API_KEY=... npx tsx examples/quickstart.ts
 */
import { Sandbox } from '@warren/sdk';

// `await using` kills the sandbox when this scope ends, even if something throws.
await using sandbox = await Sandbox.create({ template: 'code-interpreter', timeoutMs: 5 * 60_000 });
console.log(`sandbox ${sandbox.sandboxId} is ${sandbox.info.status}`);

// Python runs in a persistent kernel: variables survive between calls.
await sandbox.runCode('import platform\nanswer = 6 * 7');
const execution = await sandbox.runCode('print(f"python {platform.python_version()} says {answer}")\nanswer');
console.log(execution.stdout.trim());
console.log(`last expression: ${execution.text}`);

// Commands stream their output; awaiting the handle gives the result.
const { stdout } = await sandbox.commands.run('uname -sm && ls /workspace | wc -l');
console.log(stdout.trim());

// A failing command rejects with CommandExitError unless { reject: false }.
const failed = await sandbox.commands.run('exit 3', { reject: false });
console.log(`exit code ${failed.exitCode}`);
console.log('quickstart: done');
