#!/usr/bin/env bash
# The main job: prove that example_project reproduces in its own image.
# Provisions what is missing, installs the plugin, runs `pytest --in-docker` in
# example_project. Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/provision.sh"
python=$(bash "$here/scripts/venv.sh" test)
cd "$here/example_project"
exec "$python" -m pytest --in-docker "$@"
