/**
 * An agent loop executing model-written code: the "model" proposes Python,
 * the sandbox runs it, and the output goes back to the model until it answers.
 *
 * No language model is reachable from here, so `scriptedModel` below is a
 * stand-in that returns fixed replies in order. Swap it for a call to your
 * model provider; the loop around it stays the same.
 *
 *   npx tsx examples/agent-loop.ts
 */
import { type Execution, Sandbox } from '@warren/sdk';

type Message = { role: 'user' | 'assistant' | 'tool'; content: string };
type Reply = { kind: 'code'; code: string } | { kind: 'answer'; text: string };

/** A scripted stand-in for a model: it ignores what it is told and replays these steps. */
function scriptedModel(): (history: Message[]) => Promise<Reply> {
  const steps: Reply[] = [
    {
      kind: 'code',
      code: 'primes = [n for n in range(2, 200) if all(n % d for d in range(2, int(n ** 0.5) + 1))]\nlen(primes)',
    },
    // A mistake the loop reports back, as real models make them.
    { kind: 'code', code: 'print(sum(primes[:10])' },
    { kind: 'code', code: 'print(sum(primes[:10]))' },
    { kind: 'answer', text: 'There are 46 primes below 200; the first ten add up to 129.' },
  ];
  let i = 0;
  return async () => steps[Math.min(i++, steps.length - 1)] as Reply;
}

function describe(ex: Execution): string {
  if (!ex.success) return `error: ${ex.error ?? ex.stderr.trim().split('\n').at(-1)}`;
  return [ex.stdout.trim(), ex.text].filter(Boolean).join('\n') || '(no output)';
}

const model = scriptedModel();
const history: Message[] = [
  { role: 'user', content: 'How many primes are below 200, and what do the first ten add up to?' },
];

await using sandbox = await Sandbox.create({ template: 'code-interpreter' });
for (let turn = 1; turn <= 8; turn++) {
  const reply = await model(history);
  if (reply.kind === 'answer') {
    history.push({ role: 'assistant', content: reply.text });
    console.log(`answer after ${turn - 1} tool calls: ${reply.text}`);
    break;
  }
  history.push({ role: 'assistant', content: reply.code });
  // Model-written code runs in the sandbox, never on this machine; each call has a time limit.
  const ex = await sandbox.runCode(reply.code, { timeoutMs: 30_000 });
  const result = describe(ex);
  console.log(`turn ${turn}: ran ${JSON.stringify(reply.code.split('\n').at(-1))} -> ${result}`);
  history.push({ role: 'tool', content: result });
}
