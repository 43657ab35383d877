"""Run Tensorforce's own test suite against forceexp, with only the import changed.

Takes a Tensorforce checkout (a work tree, or a bare git directory whose ``HEAD`` is read),
copies its ``test/`` folder (with ``--examples`` also ``examples/`` and ``benchmarks/``, whose
configs the examples read) into a temporary directory, rewrites ``tensorforce`` imports to
``forceexp`` (import lines only, nothing else) and runs each test file with pytest, one process
per file, and each example as a script. Prints a table: file, passed / failed / skipped, and
the first line of each failure's error so the cause can be triaged. Nothing is fetched.

Usage::

    python tools/tensorforce_audit.py /path/to/tensorforce [--files test_runner.py ...]
        [--timeout 600] [--keep DIR] [--details] [--examples]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

IMPORT = re.compile(r"^(\s*)(from|import)(\s+)tensorforce(?=[\s.])", re.MULTILINE)


@dataclass
class FileResult:
    """Outcome of one upstream test file."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # "test: first error line"
    note: str = ""


def copy_folders(checkout: Path, target: Path, folders: list[str]) -> None:
    """Copy ``folders`` from a work tree, or from ``HEAD`` of a bare git directory."""
    if (checkout / folders[0]).is_dir():
        for folder in folders:
            shutil.copytree(checkout / folder, target / folder)
        return
    archive = subprocess.run(
        ["git", "-C", str(checkout), "archive", "HEAD", *folders],
        capture_output=True,
        check=False,
    )
    if not archive.stdout:
        raise SystemExit(f"{checkout}: no {folders[0]}/ folder and no git HEAD holding one")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")  # objects git cannot read are left out


def rewrite_imports(folder: Path) -> int:
    """Replace ``tensorforce`` with ``forceexp`` in import lines; return the files changed."""
    changed = 0
    for path in folder.rglob("*.py"):
        text = path.read_text()
        new = IMPORT.sub(r"\1\2\3forceexp", text)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


def run_file(root: Path, name: str, timeout: float) -> FileResult:
    """Run one test file with pytest (its own process) and read the JUnit report back."""
    result = FileResult(name)
    report = root / f"{name}.xml"
    command = [sys.executable, "-m", "pytest", f"test/{name}", "-q", "-p", "no:cacheprovider"]
    command += [f"--junitxml={report}", "-o", "addopts=", "--rootdir", str(root)]
    try:
        subprocess.run(command, cwd=root, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.note = f"timed out after {timeout:.0f} s"
    if not report.exists():
        result.note = result.note or "no report (collection crashed)"
        return result
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            result.skipped += 1
        elif problem is not None:
            result.failed += 1
            result.errors.append(f"{case.get('name')}: {first_error(problem)}")
        else:
            result.passed += 1
    return result


def run_example(root: Path, name: str, timeout: float) -> FileResult:
    """Run one example as a script from the copy's root (where its relative paths point)."""
    result = FileResult(name)
    try:
        done = subprocess.run(
            [sys.executable, f"examples/{name}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result.note = f"timed out after {timeout:.0f} s"
        return result
    if done.returncode == 0:
        result.passed = 1
    else:
        result.failed = 1
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        result.errors.append(f"{name}: {lines[-1][:200] if lines else done.returncode}")
    return result


def first_error(problem: ET.Element) -> str:
    """The error a failure report names: its first ``E   `` line, else its message."""
    for line in (problem.text or "").splitlines():
        if line.startswith("E   "):
            return line[4:].strip()[:200]
    lines = (problem.get("message") or "?").strip().splitlines()
    return lines[0][:200] if lines else "?"


def print_table(results: list[FileResult], details: bool) -> None:
    """Print one row per file (and, with ``details``, each failure's first error line)."""
    width = max([len(r.name) for r in results] + [5])
    print(f"{'file':<{width}} {'passed':>6} {'failed':>6} {'skipped':>7}  note")
    for r in results:
        print(f"{r.name:<{width}} {r.passed:>6} {r.failed:>6} {r.skipped:>7}  {r.note}")
        if details:
            for line in r.errors:
                print(f"    {line}")
    total = Counter()
    for r in results:
        total.update(passed=r.passed, failed=r.failed, skipped=r.skipped)
    print(f"{'total':<{width}} {total['passed']:>6} {total['failed']:>6} {total['skipped']:>7}")


def main(argv: list[str] | None = None) -> int:
    """Copy, rewrite, run and report; returns 0 (the table is the result, not the exit code)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="Tensorforce work tree or bare git dir")
    parser.add_argument("--files", nargs="*", help="test files to run (default: all test_*.py)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--details", action="store_true", help="print each failure's error")
    parser.add_argument("--examples", action="store_true", help="run examples/*.py instead")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="tfaudit-"))
    folder = "examples" if args.examples else "test"
    try:
        if not (root / folder).is_dir():
            extra = ["benchmarks"] if args.examples else []
            copy_folders(args.checkout.resolve(), root, [folder, *extra])
            rewrite_imports(root / folder)
        pattern = "*.py" if args.examples else "test_*.py"
        names = args.files or sorted(p.name for p in (root / folder).glob(pattern))
        run = run_example if args.examples else run_file
        results = []
        for name in names:
            results.append(run(root, name, args.timeout))
            print(f"ran {name}", file=sys.stderr, flush=True)
        print_table(results, args.details)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
