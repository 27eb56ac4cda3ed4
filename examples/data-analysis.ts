/**
 * Data analysis: upload a CSV, summarise it with pandas in the sandbox, draw a
 * plot with matplotlib, and save the plot on this machine.
 *
 *   npx tsx examples/data-analysis.ts          # writes ./sales-plot.png
 *   EXAMPLE_OUTPUT_DIR=/tmp npx tsx examples/data-analysis.ts
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox } from '@warren/sdk';

const outputDir = process.env.EXAMPLE_OUTPUT_DIR ?? process.cwd();

// Twelve months of made-up sales for three regions.
const rows = ['month,region,sales'];
for (let month = 1; month <= 12; month++) {
  for (const [i, region] of ['north', 'south', 'west'].entries()) {
    rows.push(`${month},${region},${100 + month * (10 + i * 5) + ((month * 37 + i * 11) % 23)}`);
  }
}

await using sandbox = await Sandbox.create({ template: 'code-interpreter' });
await sandbox.files.write('/workspace/sales.csv', `${rows.join('\n')}\n`);

const summary = await sandbox.runCode(`
import pandas as pd
df = pd.read_csv('/workspace/sales.csv')
totals = df.groupby('region')['sales'].sum().sort_values(ascending=False)
print(totals.to_string())
print('best region:', totals.idxmax())
`);
if (!summary.success) throw new Error(`analysis failed:\n${summary.stderr}`);
console.log(summary.stdout.trim());

const plot = await sandbox.runCode(`
import matplotlib.pyplot as plt
pivot = df.pivot(index='month', columns='region', values='sales')
pivot.plot(title='Sales by region', marker='o')
plt.ylabel('sales')
plt.show()
`);
const png = plot.results.find((r) => r.png !== undefined)?.png;
if (png === undefined) throw new Error(`no plot came back:\n${plot.stderr}`);
const file = join(outputDir, 'sales-plot.png');
await writeFile(file, Buffer.from(png, 'base64'));
console.log(`plot saved to ${file}`);
