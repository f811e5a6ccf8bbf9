# Sourced by scripts/demo and scripts/test: create ./.venv if needed and install fastattr into it.
# torch is pinned first because on these machines any other torch version pulls a multi-GB CUDA build.
set -euo pipefail
extras="${1:-cpu,train}"
if [ ! -x .venv/bin/python ]; then
  echo "[fastattr] creating .venv" >&2
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
echo "[fastattr] installing torch==2.13.0 and fastattr[$extras] into .venv" >&2
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check ".[$extras]"
