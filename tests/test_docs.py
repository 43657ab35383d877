"""README stays truthful: CI runs its test command verbatim, and its Python example runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    test_command = _bash_blocks(readme)[1].strip()
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == [test_command]
    assert "pip install torch==2.13.0" in test_command


def test_readme_python_example_runs(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    code = code.replace("num_timesteps=100_000", "num_timesteps=512")
    code = code.replace("num_episodes=20", "num_episodes=2")
    exec(compile(code, "README.md", "exec"), {})


def test_readme_record_pretrain_walkthrough_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    code = next(
        c for c in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "pretrain(" in c
    )
    code = code.replace("num_timesteps=100_000", "num_timesteps=2000").replace(
        "start=200", "start=0"
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert len(list((tmp_path / "data" / "traces").glob("trace-*.npz"))) > 10


def test_readme_network_and_mask_snippets(tmp_path):
    import textwrap

    import yaml

    readme = (ROOT / "README.md").read_text()
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)]
    header = "import numpy as np\nfrom forceexp import Agent\n"
    for needle in ("policy=[", "action_mask="):
        code = next(b for b in blocks if needle in b)
        namespace: dict = {}
        exec(compile(header + code, "README.md", "exec"), namespace)
        assert namespace["agent"].spec["agent"] == "ppo"
    yaml_block = next(
        b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "type: layered" in b
    )
    conf = (ROOT / "conf" / "network" / "multi_input.yaml").read_text()
    assert yaml.safe_load(textwrap.dedent(yaml_block)) == yaml.safe_load(conf)
