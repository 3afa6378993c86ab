#!/bin/sh
# Install the autoscaler's runtime into a fresh venv from a built wheel: no extras (no numpy,
# matplotlib or compiler: the simulator is `pip install 'queue-autoscaler[sim]'`), then prove
# the install by validating a config. Used by deploy/container/Dockerfile and by
# tests/test_deploy_container.py, so the image's install step is the one the suite runs.
#   [EXTRAS=kubernetes,aws] install.sh WHEEL_DIR VENV [CONFIG]
# EXTRAS: the provider SDKs this deployment needs (kubernetes, aws, gcp, azure, keda); never sim.
set -eu
wheel_dir=$1
venv=$2
config=${3:-}
set -- "$wheel_dir"/queue_autoscaler-*.whl
[ "$#" -eq 1 ] && [ -f "$1" ] || { echo "install.sh: want one wheel in $wheel_dir" >&2; exit 2; }
spec=$1
[ -n "${EXTRAS:-}" ] && spec="$1[$EXTRAS]"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$spec"
"$venv/bin/autoscaler" --version
if [ -n "$config" ]; then
    "$venv/bin/autoscaler" validate "$config"
fi
# pip is not needed at run time; it is a third of a lean venv.
"$venv/bin/python" -m pip uninstall --quiet --yes pip
