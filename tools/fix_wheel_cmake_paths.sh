#!/usr/bin/env bash
# The ROS 2 wheels' exported CMake files hard-code the manylinux build interpreter's paths
# (/opt/python/cp311-cp311/...). Point them at this virtual environment's Python and numpy headers
# so that rosidl can build msg/ against them.
set -euo pipefail
venv=$1
py="$venv/bin/python"
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())")
# (nothing left to fix, e.g. when requirements.txt changed after set-up, is not an error)
{ grep -rl '/opt/python/cp311-cp311' "$venv/share" --include='*.cmake' || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g"
