#!/usr/bin/env bash
# One command for a GPU slot: does minidiff's GPU path work on this machine, and how fast is it
# against PyTorch CUDA? Creates a venv, installs the gpu extra and torch, runs tests/gpu, the
# benchmark, the spiral and one MNIST epoch on the GPU, and writes outputs/gpu_check/summary.{json,md}.
# tools/gpu_check.py says what each step runs and why; --help lists the flags. Without a GPU
# (or with --dry-run) every step is skipped with its reason and the summary is still written.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3 || command -v python || true)
if [ -z "$PY" ]; then
    echo "gpu_check: needs python3 (3.8 or newer) on PATH" >&2
    exit 2
fi
exec "$PY" tools/gpu_check.py "$@"
