"""Four processes starting at once on a fresh MLflow sqlite store all succeed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from forceexp.observers.tracker import MlflowTracker

    uri, go, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    while not go.exists():  # all processes are imported and waiting: start together
        time.sleep(0.01)
    tracker = MlflowTracker(uri, "race", run_name=f"run-{index}")
    tracker.log_metrics({"x": float(index)}, step=0)
    tracker.end()
    print("ok", flush=True)
    """
)


@pytest.mark.slow
def test_four_first_writers_on_a_fresh_store(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, str(go), str(i)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    time.sleep(8)  # imports (mlflow is slow to import)
    go.touch()
    outputs = [process.communicate(timeout=240) for process in processes]
    codes = [process.returncode for process in processes]
    assert codes == [0] * 4, [err[-1500:] for _, err in outputs]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("race")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.metrics["x"] for run in runs) == [0.0, 1.0, 2.0, 3.0]
