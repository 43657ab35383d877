#!/usr/bin/env bash
# The CUDA tests (pytest -m gpu) in one call on a lent GPU machine, whose image has torch but
# not forceexp's pure-Python dependencies and cannot reach a package index.
#
#   tools/gpu_check.sh fetch    here: download those dependencies as wheels into .whl/
#                               (git-ignored through .git/info/exclude; ~0.9 MB)
#   tools/gpu_check.sh run      there: install .whl/ into /tmp/site and run the gpu tests;
#                               and three short train.py runs with device=cuda
#                               (GPU_CHECK_DEVICE=cpu tries the script without a GPU); the
#                               log goes to $OUT/gpu_tests.log (or /tmp without $OUT)
#
# With the device tool: run(command="bash tools/gpu_check.sh run", carry=[".whl"],
# timeout_s=420). The wheels are for any Python 3 (py3-none-any); antlr4's runtime has no
# wheel on PyPI, so `fetch` builds one.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=.whl

fetch() {
    mkdir -p .git/info "$wheels"
    grep -qx "/$wheels/" .git/info/exclude 2>/dev/null || echo "/$wheels/" >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" \
        "hydra-core==1.3.2" "omegaconf==2.3.0" "gymnasium==1.4.0" "farama-notifications==0.0.4"
    python3 -m pip wheel -q --no-deps -w "$wheels" "antlr4-python3-runtime==4.9.3"
    ls "$wheels"
}

run() {
    local out="${OUT:-/tmp}"
    ls "$wheels"/*.whl > /dev/null  # fails with a clear message when .whl was not carried
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')" | tee "$out/gpu_tests.log"
    python3 -m pytest -q -p no:cacheprovider -m gpu \
        tests/test_gpu.py tests/test_preprocessing_pipelines.py 2>&1 | tee -a "$out/gpu_tests.log"
    # the whole pipeline (runner, evaluation, results) on the device, with short budgets
    local device="${GPU_CHECK_DEVICE:-cuda}" job n=0 log
    mkdir -p /tmp/gpu_runs
    for job in "agent=ppo env=cartpole runner.num_timesteps=20000" \
        "agent=dqn env=cartpole runner.num_timesteps=5000" \
        "agent=sac env=pendulum runner.num_timesteps=2000"; do
        n=$((n + 1))
        log="/tmp/gpu_runs/$n.log"
        # shellcheck disable=SC2086  # the job's overrides are separate words
        python3 train.py $job "device=$device" "hydra.run.dir=/tmp/gpu_runs/$n" > "$log" 2>&1 ||
            echo "$job: train.py exited with $?" | tee -a "$out/gpu_tests.log"
        { grep -E "Results:" "$log" || tail -n 5 "$log"; } | cut -c1-300 | sed "s|^|$job: |" |
            tee -a "$out/gpu_tests.log"
    done
}

case "${1:-}" in
    fetch) fetch ;;
    run) run ;;
    *) echo "usage: tools/gpu_check.sh fetch|run" >&2; exit 2 ;;
esac
