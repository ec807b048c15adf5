#!/usr/bin/env bash
# Wheels for the lent GPU machine, saved in .whl/ (ignored by git) for gpu/check.sh to install there.
#
# That machine has Python 3.12 and torch 2.11 (cu130) but no OpenMM; nothing can be fetched on it.
# This takes the versions installed in .venv here (the ones CI tests), as cp312 wheels:
# openmm, openmm-cuda-13, acellera-openmmtorch-cu13, and openmmml (built from its source
# distribution), about 18 MB. Run from the repository root after `make install`:
#     bash benchmarks/gpu/wheels.sh            # PYVER=3.11 for a dry run of check.sh on this machine
set -euo pipefail
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir .whl
platforms=()
for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014; do
    platforms+=(--platform "${tag}_x86_64")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${platforms[@]}" -d .whl "openmm==$(version openmm)" "openmm-cuda-13==$(version openmm-cuda-13)" \
    "acellera-openmmtorch-cu13==$(version acellera-openmmtorch-cu13)"
"$PY" -m pip wheel --quiet --no-deps -w .whl "openmmml==$(version openmmml)"
ls -l .whl
du -sh .whl
