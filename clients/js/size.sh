#!/usr/bin/env bash
# Measures the client's size beside socket.io-client's and centrifuge-js's the same
# way for all three: esbuild --bundle --minify (ESM, browser), then gzip -9. Installs
# the tools and the two peers from npm into a temporary folder (nothing in the tree).
# Usage: clients/js/size.sh   (prints a Markdown table for README.md)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error esbuild socket.io-client centrifuge >/dev/null
cp "$here/wshub.js" ./wshub.js
echo "export * from './wshub.js';" > e-wshub.js
echo "export * from 'socket.io-client';" > e-socketio.js
echo "export * from 'centrifuge';" > e-centrifuge.js
ver() { node -p "require('./node_modules/$1/package.json').version"; }
echo "| package | version | minified | minified + gzip -9 |"
echo "|---|---|---|---|"
for p in wshub socketio centrifuge; do
  npx esbuild "e-$p.js" --bundle --minify --format=esm --platform=browser --log-level=error --outfile="$p.min.js"
  min=$(stat -c %s "$p.min.js")
  gz=$(gzip -9 -c "$p.min.js" | wc -c)
  case $p in
    wshub) name="wshub-client (this)"; v=$(node -p "require('$here/package.json').version") ;;
    socketio) name="socket.io-client"; v=$(ver socket.io-client) ;;
    centrifuge) name="centrifuge"; v=$(ver centrifuge) ;;
  esac
  echo "| $name | $v | $min B | $gz B |"
done
echo
echo "esbuild $(ver esbuild), $(date -u +%Y-%m-%d)"
