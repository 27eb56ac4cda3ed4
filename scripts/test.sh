#!/usr/bin/env bash
# Sets up the machine, then runs the whole test suite (typecheck, lint, unit
# and end-to-end tests against a real server and real sandboxes). Prints a
# plain "N passed, N failed" line and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

failed_checks=0
printf '\n==> typecheck\n' >&2
npx tsc -p tsconfig.json || failed_checks=$((failed_checks + 1))
printf '\n==> lint\n' >&2
npx biome check . || failed_checks=$((failed_checks + 1))

printf '\n==> tests (vitest)\n' >&2
report=$(mktemp /tmp/warren-vitest-XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile.json="$report"
vitest_rc=$?

read -r passed failed skipped < <(node -e '
  const fs = require("node:fs");
  let r = {};
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch {}
  const passed = r.numPassedTests ?? 0;
  // A file that fails outside any test (import error, hook) counts once when no test failed.
  const failedTests = r.numFailedTests ?? 0;
  const failed = failedTests > 0 ? failedTests : (r.numFailedTestSuites ?? 0);
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(passed, failed, skipped);
' "$report")
rm -f "$report"

passed=$((passed + 2 - failed_checks))
failed=$((failed + failed_checks))
if [ "$vitest_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
