"""Training progress: one bar with one steps/s figure that ends at the real stop; log lines."""

from __future__ import annotations

import io
import logging
import re

from forceexp import Runner
from forceexp.execution.progress import Progress


def test_bar_shows_one_rate_and_shrinks_to_an_early_stop(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    progress = Progress(None, 1000, enabled=True, terminal=True)
    progress.step(300)
    progress.episodes([10.0, 20.0])
    progress.step(100)
    progress.close()  # stopped at 400 of 1000
    assert progress.bar.total == 400
    final = stream.getvalue().split("\r")[-1]
    assert "400/400" in final and "ret=15.0" in final
    assert len(re.findall(r"/s|sps", final)) == 1, final  # tqdm's own rate is not shown
    assert not final.endswith("\r")  # left on screen (leave=True)


def test_without_a_terminal_a_line_is_logged_every_interval(caplog):
    progress = Progress(None, 1000, enabled=True, interval=0.0, terminal=False)
    with caplog.at_level(logging.INFO, logger="forceexp.execution.progress"):
        progress.episodes([4.0, 6.0])
        progress.step(250)
    assert progress.bar is None
    (line,) = caplog.messages
    assert re.fullmatch(
        r"timesteps 250/1000 \(25%\) \| return 5\.0 \| \d+ steps/s \| ETA \d+:\d\d:\d\d", line
    ), line


def test_the_eta_follows_the_recent_rate(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("forceexp.execution.progress.time.perf_counter", lambda: now[0])
    progress = Progress(None, 1000, enabled=False, interval=0.0)
    now[0], progress.steps = 10.0, 500  # a fast warm-up: 500 steps in the first 10 s
    assert progress.line().endswith("| 50 steps/s | ETA 0:00:10")
    now[0], progress.steps = 20.0, 550  # then 50 steps in 10 s: 450 left take 90 s, not 16 s
    assert progress.line().endswith("| 28 steps/s | ETA 0:01:30")


def test_runner_logs_progress_off_a_terminal_only_when_enabled(caplog, monkeypatch):
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)  # a line after every step
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    with caplog.at_level(logging.INFO, logger="forceexp.execution.progress"):
        runner = Runner(agent="random", environment="CartPole-v1", seed=0)
        runner.run(num_timesteps=50, use_tqdm=False)
        assert caplog.messages == []
        runner.run(num_timesteps=50)
        runner.close()
    assert caplog.messages[-1].startswith("timesteps 50/50 (100%) | return")
