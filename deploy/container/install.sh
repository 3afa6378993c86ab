#!/bin/sh
# Install the autoscaler's runtime into a fresh venv from a built wheel: no extras (no numpy,
# matplotlib or compiler: the simulator is `pip install 'queue-autoscaler[sim]'`), then prove
# the install by validating a config. Used by deploy/container/Dockerfile and by
# tests/test_deploy_container.py, so the image's install step is the one the suite runs.
#   install.sh WHEEL_DIR VENV [CONFIG]
set -eu
wheel_dir=$1
venv=$2
config=${3:-}
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check \
    "$wheel_dir"/queue_autoscaler-*.whl
"$venv/bin/autoscaler" --version
if [ -n "$config" ]; then
    "$venv/bin/autoscaler" validate "$config"
fi
# pip is not needed at run time; it is a third of a lean venv.
"$venv/bin/python" -m pip uninstall --quiet --yes pip
