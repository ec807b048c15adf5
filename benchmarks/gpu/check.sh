#!/usr/bin/env bash
# The GPU checks in one run on the lent machine (about 8 minutes there, of the 15 a session gets):
# the CUDA-graph tests of every scheme (tests/test_cuda.py) and bench_scaling.py on CUDA for a
# 9-atom ML region in the ~3k and ~30k atom boxes, the TorchForce and CUDA-graph configurations.
# Prepare here, from the repository root:
#     bash benchmarks/gpu/wheels.sh           # cp312 wheels of OpenMM, its CUDA plugin, openmm-torch, openmm-ml
#     bash benchmarks/gpu/slim-tree.sh off    # the tree must travel in 64 MiB
# then call the device tool's run with
#     command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=560
# and afterwards `bash benchmarks/gpu/slim-tree.sh on`. Its $OUT brings back gpu.txt (GPU, OpenMM
# platforms), test_cuda.log, bench.log and scaling-cuda.json/.md/.png; copy the last three to
# benchmarks/results/ to commit them. mlmm runs from the source tree. PYTHON (default python3,
# the one holding torch there) and the time limits can be set, e.g. for a dry run here with
# PYVER=3.11 wheels and PYTHON=.venv/bin/python (the CUDA tests skip, the CUDA configurations fail).
set -uo pipefail
: "${OUT:?set OUT to a folder for the results}"
PYTHON=${PYTHON:-python3}
TEST_SECONDS=${TEST_SECONDS:-150}
BENCH_SECONDS=${BENCH_SECONDS:-330}
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{
    nvidia-smi -L || echo "no nvidia-smi"
    "$PYTHON" - <<'PY'
import torch, openmm  # torch first: OpenMM then also loads the openmm-torch plugins
names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
print("OpenMM", openmm.__version__, "platforms", names, "torch", torch.__version__, "cuda", torch.cuda.is_available())
print("plugin load failures:", openmm.Platform.getPluginLoadFailures())
PY
} 2>&1 | tee "$OUT/gpu.txt"
timeout "$TEST_SECONDS" "$PYTHON" -m pytest -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
configs=("pure MM" "mechanical, TorchForce" "mechanical, CUDA graphs" "mechanical-ml-charges, CUDA graphs"
         "electrostatic, TorchForce" "electrostatic, CUDA graphs" "buffer, TorchForce" "buffer, CUDA graphs")
timeout "$BENCH_SECONDS" "$PYTHON" benchmarks/bench_scaling.py --platform CUDA --mm-atoms 3000 30000 --ml-waters 3 \
    --steps 200 --worker-timeout 120 --configs "${configs[@]}" --output-dir "$OUT" > "$OUT/bench.log" 2>&1
status=$?
if [ ! -f "$OUT/scaling-cuda.md" ] && [ -f "$OUT/scaling-cuda.json" ]; then  # stopped by timeout: report what ran
    "$PYTHON" benchmarks/bench_scaling.py --platform CUDA --report-only --output-dir "$OUT" > /dev/null
fi
tail -n 5 "$OUT/bench.log"
cat "$OUT/scaling-cuda.md" 2>/dev/null | sed -n '/## Targets/,/## All/p'
exit $status
