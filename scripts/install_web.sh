#!/usr/bin/env bash
# Installs the browser page's one dependency, three.js, into web/node_modules with npm: the
# exact version and integrity hash of web/package-lock.json (`npm ci` refuses anything
# else). `moshiface serve` and the web_head node serve it from there, so the page needs no
# CDN. Without npm it installs nothing, says in one line what is missing and exits 0: the
# rest of the package (make demo, make test's other tests) works without the page.
#
#   bash scripts/install_web.sh
set -euo pipefail

cd "${BASH_SOURCE[0]%/*}/../web"
if ! command -v npm >/dev/null 2>&1; then
    echo "note: npm is missing, so the browser page (moshiface serve) has no three.js; install Node.js 20 with npm, then run make install again" >&2
    exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
