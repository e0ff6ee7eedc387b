#!/usr/bin/env bash
# Create (or reuse) .venv with pytest-dsrepro installed from this checkout; print its python.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${DSREPRO_VENV:-$here/.venv}
extras=${1:-test}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
stamp="$venv/.dsrepro-installed-$extras"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  if [ "$extras" = test ] || [ "$extras" = docs ]; then  # dependency groups, not extras
    "$venv/bin/python" -m pip install -q -e "$here" --group "$here/pyproject.toml:$extras" >&2
  else
    "$venv/bin/python" -m pip install -q -e "$here[$extras]" >&2
  fi
  touch "$stamp"
fi
printf '%s\n' "$venv/bin/python"
