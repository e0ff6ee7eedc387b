#!/usr/bin/env bash
# The documentation site, built with warnings as errors (as CI builds it) into site/.
# Extra arguments go to mkdocs build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
python=$(bash scripts/venv.sh docs)
export NO_MKDOCS_2_WARNING=1
exec "$python" -m mkdocs build --strict "$@"
