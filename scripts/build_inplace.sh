#!/usr/bin/env bash
# Builds fastattr._core for development into build/dev and links it into python/fastattr/.
# Usage: scripts/build_inplace.sh [python]   (default: /work/venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-}"
if [ -z "$py" ]; then
  if [ -x /work/venv/bin/python ]; then py=/work/venv/bin/python; else py=python3; fi
fi
pybind11_dir="$("$py" -m pybind11 --cmakedir)"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S . -B build/dev "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$py" -Dpybind11_DIR="$pybind11_dir" >/dev/null
cmake --build build/dev -j 2
so="$(ls build/dev/_core*.so | head -n 1)"
# Copy then rename, so a running interpreter that already mapped the old file keeps a valid one.
cp "$so" "python/fastattr/.$(basename "$so").tmp"
mv "python/fastattr/.$(basename "$so").tmp" "python/fastattr/$(basename "$so")"
echo "built python/fastattr/$(basename "$so")"
