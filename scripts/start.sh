#!/usr/bin/env bash
# Starts the studio: generates the offline assets (GPT-2 tokenizer, the built-in demo model),
# builds the page, and serves it on http://localhost:5173 (WebGPU needs localhost or https).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent gen
npx vite build --logLevel warn
echo "WebGPU Fine-Tuning Studio: open http://localhost:5173/ in a WebGPU browser (Ctrl-C stops it)."
exec npx vite preview --port 5173 --strictPort --host localhost
