#!/usr/bin/env bash
# The long fuzz runs of docs/reliability.md, then their corpora replayed through the C++ core built
# with ASan+UBSan. Usage: scripts/reliability/fuzz_long.sh [WORK_DIR]   (needs .venv with the fuzz extra)
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-/tmp/fastattr-fuzz-long}"
mkdir -p "$work"
export OMP_NUM_THREADS=1
py=.venv/bin/python
for spec in index:1000000 index-header:1000000 bundle:100000; do
  target=${spec%%:*} runs=${spec##*:}
  echo "== $target: $runs executions" >&2
  start=$(date +%s)
  "$py" fuzz/loaders.py "$target" -atheris_runs="$runs" -timeout=10 "$work/corpus-$target" \
    > "$work/$target.log" 2>&1 || { echo "FINDING in $target: see $work/$target.log" >&2; exit 1; }
  grep -E "^(Done|#[0-9]+ +DONE)" "$work/$target.log" | tail -2 >&2
  echo "   $(( $(date +%s) - start )) s, corpus $(ls "$work/corpus-$target" | wc -l) inputs" >&2
done
echo "== ASan+UBSan build of cpp/tests, replaying the index corpora" >&2
cmake -S cpp/tests -B "$work/build-asan" -DFASTATTR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug > /dev/null
cmake --build "$work/build-asan" > /dev/null
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1
"$work/build-asan/core_tests" | tail -1
"$work/build-asan/core_tests" replay "$work/corpus-index"
"$work/build-asan/core_tests" replay --reseal "$work/corpus-index"
"$py" fuzz/loaders.py materialize "$work/corpus-index-header" "$work/files-index-header" 2>/dev/null | tail -1
"$work/build-asan/core_tests" replay "$work/files-index-header"
"$py" fuzz/loaders.py random-headers 20000 "$work/files-random-headers" 2>/dev/null | tail -1
"$work/build-asan/core_tests" replay "$work/files-random-headers"
