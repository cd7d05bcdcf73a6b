"""The package installs what it has, and CI fails when nothing is tested."""
import os
import pathlib
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "distgraph").rglob("__init__.py")}
    found |= {"distgraph_launch"} if (ROOT / "launch" / "__init__.py").exists() else set()
    assert found == listed, f"pyproject packages {sorted(listed)} != package folders {sorted(found)}"


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Set up")[1].split("```bash\n")[1].split("```")[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in commands:
        assert cmd in ci, f"README command {cmd!r} is not run verbatim by .ci/run"


def test_pytest_with_no_tests_exits_5_which_ci_treats_as_failure(tmp_path):
    (tmp_path / "test_nothing.py").write_text("x = 1\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTEST_ADDOPTS": ""})
    assert r.returncode == 5, r.stdout + r.stderr
    assert 'if [ "$rc" -eq 5 ]' in (ROOT / ".ci" / "run").read_text()
