#!/usr/bin/env bash
# The test suite, on a real Docker engine: provision it, install the plugin, run pytest.
# Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/provision.sh --browser --podman --ssh --registry --slurm
python=$(bash scripts/venv.sh test)
export DSREPRO_REQUIRE_DOCKER=${DSREPRO_REQUIRE_DOCKER:-1}
exec "$python" -m pytest tests "$@"
