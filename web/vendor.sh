#!/usr/bin/env bash
# Re-copies the chart library pinned in web/package.json (+ package-lock.json) into
# web/static/vendor/, with its licences. The copies are committed and embedded in the binary,
# so nothing is fetched at run time and a build needs no npm. To upgrade:
#   (cd web && npm install --save-exact chart.js@<version>)   # updates package.json and the lock
#   web/vendor.sh                                              # npm ci from the lock, then copy
# then look at the dashboard and commit package.json, package-lock.json and static/vendor together.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
out=static/vendor
mkdir -p "$out"
cp node_modules/chart.js/dist/chart.umd.min.js "$out/chart.umd.min.js"
cp node_modules/chart.js/LICENSE.md "$out/chart.js.LICENSE.md"
# chart.umd.min.js bundles @kurkle/color (MIT): its licence travels with it.
cp node_modules/@kurkle/color/LICENSE.md "$out/kurkle-color.LICENSE.md"
{
  echo "chart.js@$(node -p 'require("./node_modules/chart.js/package.json").version')"
  echo "bundled inside it: $(grep -o '@kurkle/color v[0-9.]*' "$out/chart.umd.min.js" | head -1)"
} >"$out/VERSIONS"
echo "vendored: $(tr '\n' ' ' <"$out/VERSIONS")"
