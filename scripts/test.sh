#!/usr/bin/env bash
# Runs every test tier — unit (no GPU), gpu (real WGSL on a software adapter through Dawn),
# e2e (the production build in headless Chromium) — prints each tier's summary, and ends
# with the totals over all tiers alone on the last line: `N passed, N failed`.
# As root it first installs the missing system packages (scripts/setup-system.sh);
# otherwise it says exactly what to install.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-system.sh || { echo "0 passed, 1 failed"; exit 1; }
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund || { echo "0 passed, 1 failed"; exit 1; }; fi
npm run --silent gen || { echo "0 passed, 1 failed"; exit 1; }

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# Lavapipe is the fastest software Vulkan driver here; SwiftShader (from chromium) the fallback.
if [ -z "${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/share/vulkan/icd.d/lvp_icd.json /usr/lib/chromium/vk_swiftshader_icd.json; do
    [ -f "$icd" ] && { export VK_ICD_FILENAMES=$icd; break; }
  done
fi

tiers=${TIERS:-"unit gpu e2e"}
mkdir -p test-artifacts
total_pass=0; total_fail=0; summary=()
for tier in $tiers; do
  echo "=== tier: $tier"
  start=$(date +%s)
  report=test-artifacts/$tier.json
  rm -f "$report"
  npx vitest run --project "$tier" --reporter=default --reporter=json --outputFile.json="$report"
  rc=$?
  secs=$(( $(date +%s) - start ))
  read -r pass fail <<<"$(node -e '
    const fs = require("fs");
    try { const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
          console.log(r.numPassedTests, r.numFailedTests + (r.numTotalTests - r.numPassedTests - r.numFailedTests - r.numPendingTests - (r.numTodoTests||0))); }
    catch { console.log("0 0"); }' "$report")"
  if [ "$rc" != 0 ] && [ "$fail" = 0 ]; then fail=1; echo "tier $tier: the runner failed (exit $rc) outside any test"; fi
  if [ "$pass" = 0 ] && [ "$fail" = 0 ]; then fail=1; echo "tier $tier: ran no test"; fi
  summary+=("$tier: $pass passed, $fail failed (${secs}s)")
  total_pass=$((total_pass + pass)); total_fail=$((total_fail + fail))
done

echo "=== summary"
for s in "${summary[@]}"; do echo "$s"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
