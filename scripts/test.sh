#!/usr/bin/env bash
# The test suite, on a real Docker engine: provision it, install the plugin, run pytest.
# Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/provision.sh --browser --podman --ssh --registry --slurm
python=$(bash scripts/venv.sh test)
export DSREPRO_REQUIRE_DOCKER=${DSREPRO_REQUIRE_DOCKER:-1}
# Two pytest-xdist processes, each taking whole test files (module fixtures stay shared): the
# engine tests mostly wait on the engine, so two take about half the time on two cores.
# DSREPRO_TEST_PROCESSES=0 runs the suite in one process.
processes=${DSREPRO_TEST_PROCESSES:-2}
if [ "$processes" = 0 ]; then
    exec "$python" -m pytest tests "$@"
fi
exec "$python" -m pytest tests -n "$processes" --dist loadfile "$@"
