#!/usr/bin/env bash
# The real-SLURM CI target, apart from the default suite (.ci/run): installs the slurm extra
# into the project's venv and runs tests/slurm, which starts a single-node SLURM with
# accounting (tools/slurm/single_node.sh; root, apt-get) and runs the reduced DAG through
# workflows/profiles/slurm against a local run. A few minutes on two cores.
#   bash tools/slurm/ci_target.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d .venv ] || python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
pip install -q -e '.[test,slurm]'
python -m pytest -q -s tests/slurm
