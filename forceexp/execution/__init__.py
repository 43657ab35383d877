"""Execution: the runner loop and evaluation."""

from __future__ import annotations

from forceexp.execution.evaluation import evaluate
from forceexp.execution.runner import Runner

__all__ = ["Runner", "evaluate"]
