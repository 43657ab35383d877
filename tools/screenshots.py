"""Reproduce docs/images/{mlflow-runs,tensorboard-scalars,tensorboard-hparams}.png.

Runs a small real sweep, starts real ``mlflow server`` and ``tensorboard`` processes on
127.0.0.1, and screenshots them in headless Chromium driven over the DevTools protocol
(tools/cdp.py), which closes side panels and widens the run-name column first::

    python tools/screenshots.py               # needs chromium (Debian: apt-get install chromium)
    python tools/screenshots.py --skip-sweep  # reuse the sweep of the last call

The sweep and its MLflow store live in outputs/screenshots/ (replaced by each sweep).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cdp import Page

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
WORK = ROOT / "outputs" / "screenshots"
STORE = WORK / "mlflow.db"
SWEEP = [
    f"hydra.sweep.dir={WORK / 'sweep'}",
    f"tracker.tracking_uri=sqlite:///{STORE}",
    "agent.learning_rate=1e-3,3e-4",
    "seed=0,1",
    "tracker=mlflow",
    "summarizer=tensorboard",
    "task_name=shots",
    "runner.num_timesteps=20000",
    "evaluation.frequency=5000",
    "evaluation.num_episodes=5",
    "eval_episodes=10",
    "runner.use_tqdm=false",
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``command`` in its own session for the block (output to a log); terminate it after."""
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def wait_for(url: str, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer from {url}")
        time.sleep(0.5)


def centre(
    page: Page, selector: str, text: str | None = None, timeout: float = 30
) -> tuple[float, float]:
    """Viewport centre of the first element matching ``selector`` (and exact ``text``)."""
    wanted = json.dumps(text)
    found = page.wait_for(
        f"""(() => {{
        const hits = Array.from(document.querySelectorAll({json.dumps(selector)}))
            .filter(e => {wanted} === null || e.innerText.trim() === {wanted});
        if (!hits.length) return null;
        const r = hits[0].getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2, r.right];
        }})()""",
        timeout=timeout,
    )
    return found[0], found[1]


def mlflow_runs(page: Page, port: int, experiment_id: str, path: Path) -> None:
    """The experiment's runs list: run names, user, source, key metrics and params."""
    page.open(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs", 1400, 420)
    page.wait_for("document.body.innerText.includes('ppo-cartpole')")
    time.sleep(1)
    with contextlib.suppress(TimeoutError):  # the assistant panel (open in a new profile)
        page.click(*centre(page, "button[aria-label='Close']", timeout=3))
    if page.evaluate("document.body.innerText.includes('Observability')"):  # sidebar open
        page.click(*centre(page, "button[aria-label='Toggle sidebar']"))
    time.sleep(1)
    page.click(*centre(page, "button", "Columns"))
    for column in ("Dataset", "Models", "User", "agent.learning_rate", "eval/mean_return"):
        page.click(*centre(page, "input[placeholder='Search columns']"))
        page.evaluate("document.activeElement.select()")
        page.call("Input.insertText", text=column)  # replaces the selected text
        time.sleep(0.8)
        page.click(*centre(page, "[role=dialog] span", column))
        time.sleep(0.5)
    page.click(700, 60)  # close the dropdown
    time.sleep(0.5)
    header = page.evaluate(
        """(() => { const h = Array.from(document.querySelectorAll('.ag-header-cell'))
        .find(e => e.innerText.trim() === 'Run Name');
        return h.getBoundingClientRect().right; })()"""
    )
    page.drag(header - 2, 233, header + 130, 233)
    time.sleep(1)
    page.screenshot(path)


def tensorboard_scalars(page: Page, port: int, path: Path) -> None:
    """The Time Series dashboard filtered to episodic return, evaluation return and SPS."""
    tags = "episodic_return%7Cmean_return%7CSPS"
    page.open(f"http://127.0.0.1:{port}/?tagFilter={tags}#timeseries", 1400, 620)
    page.wait_for("document.body.innerText.includes('3 cards')")
    with contextlib.suppress(TimeoutError):
        page.click(*centre(page, "button[aria-label='Close side pane']", timeout=3))
    page.call("Input.dispatchMouseEvent", type="mouseMoved", x=1390, y=610)  # no tooltip
    time.sleep(10)  # the charts draw their lines after loading the data
    page.screenshot(path)


def tensorboard_hparams(page: Page, port: int, path: Path) -> None:
    """The HParams table: one row per run with its hyperparameters and final metrics."""
    page.open(f"http://127.0.0.1:{port}/#hparams", 1900, 330)
    time.sleep(10)  # the plugin draws inside an iframe
    page.screenshot(path)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (unless skipped), start the servers and write the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if not args.skip_sweep:
        shutil.rmtree(WORK, ignore_errors=True)
        subprocess.run([sys.executable, "train.py", "-m", *SWEEP], cwd=ROOT, env=env, check=True)
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(f"sqlite:///{STORE}").get_experiment_by_name("shots").experiment_id
    mlflow = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "5055"]
    mlflow += ["--workers", "1", "--backend-store-uri", f"sqlite:///{STORE}"]
    board = [sys.executable, "-m", "tensorboard.main", "--logdir", str(WORK / "sweep")]
    board += ["--host", "127.0.0.1", "--port", "6066"]
    profile = tempfile.mkdtemp()
    chromium = [args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    chromium += ["--remote-debugging-port=9333", "about:blank"]
    IMAGES.mkdir(parents=True, exist_ok=True)
    with process(mlflow, env), process(board, env), process(chromium):
        wait_for("http://127.0.0.1:5055/health")
        wait_for("http://127.0.0.1:6066/")
        page = Page(9333)
        mlflow_runs(page, 5055, experiment_id, IMAGES / "mlflow-runs.png")
        tensorboard_scalars(page, 6066, IMAGES / "tensorboard-scalars.png")
        tensorboard_hparams(page, 6066, IMAGES / "tensorboard-hparams.png")
    shutil.rmtree(profile, ignore_errors=True)
    for name in ("mlflow-runs", "tensorboard-scalars", "tensorboard-hparams"):
        image = IMAGES / f"{name}.png"
        print(f"wrote {image.relative_to(ROOT)} ({image.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
