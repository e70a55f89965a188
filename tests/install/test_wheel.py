"""The install users do (docs/options.md, "In another project"): a wheel built from this
checkout holds every package and shipped file of the tree, and, installed non-editable into a
fresh virtualenv, runs the shipped suite from a folder that is not the checkout.

The wheel's contents are checked in make test (one build, about two seconds). The fresh
virtualenv (torch and every dependency: about a minute, 1.6 GB, removed afterwards) carries the
marker ``install``: ``make install-check``, which .ci/run calls.

The build is ``pip wheel --no-deps --no-build-isolation`` from a copy of the checkout: no index
is needed (setuptools is in .venv, a dependency of torch), and the checkout gets no build/ or
egg-info folder while other tests run in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# The packages whose folders are elsewhere (pyproject.toml's [tool.setuptools.package-dir]):
# package -> its folder in the checkout
MAPPED = {"lm_probes.fixtures": "fixtures", "lm_probes.suite": "tests/behaviour"}
# What fixtures/ ships: the cards, the probe inputs, the CPU snapshots and the card schema.
# fixtures/machines/ (measurements of other machines, read by no code) stays in the repository.
SHIPPED_FIXTURES = ("card.schema.json", "cards", "inputs", "snapshots")
# A fresh clone's files: the .gitignore's entries, .git, and what tests leave behind
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "reports", "build", "dist", "mutants", ".benchmarks", ".pytest_cache", ".hypothesis",
    ".tox", ".whl", "*.egg-info", "__pycache__", "*.pyc",
)  # fmt: skip
STEP_TIMEOUT_S = 900  # one install step; a hang must not eat CI's 90 minutes


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def source_packages(root: Path) -> set[str]:
    """Every package of the tree: each folder of lm_probes/ holding an __init__.py, and the mapped two."""
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "lm_probes").rglob("__init__.py")}
    return found | set(MAPPED)


def expected_wheel_files(root: Path) -> set[str]:
    """The files a wheel of ``root`` must hold, under the names they are installed as."""
    expected = {str(p.relative_to(root)) for p in _files(root / "lm_probes")}
    for package, folder in MAPPED.items():
        installed_as = package.replace(".", "/")
        names = SHIPPED_FIXTURES if package == "lm_probes.fixtures" else (".",)
        for name in names:
            source = root / folder / name
            for path in [source] if source.is_file() else _files(source):
                expected.add(f"{installed_as}/{path.relative_to(root / folder)}")
    return expected


def missing_from_wheel(root: Path, wheel_names: set[str]) -> list[str]:
    """One line per package, then per file, of ``root`` that the wheel's names lack."""
    problems = []
    for package in sorted(source_packages(root)):
        prefix = package.replace(".", "/") + "/"
        if not any(name.startswith(prefix) for name in wheel_names):
            problems.append(f"package {package} is not in the wheel")
    problems += [f"file {name} is not in the wheel" for name in sorted(expected_wheel_files(root) - wheel_names)]
    return problems


def _run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False, **kwargs
    )


def _tail(result: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of this checkout, as a fresh clone would build it."""
    work = tmp_path_factory.mktemp("wheel-build")
    source = work / "lm-probes"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_IN_A_CLONE, symlinks=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    built = _run([*command, "--wheel-dir", work / "dist", source], cwd=source)
    assert built.returncode == 0, f"pip wheel failed:\n{_tail(built)}"
    (found,) = (work / "dist").glob("lm_probes-*.whl")
    return found


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_every_package_module_and_shipped_file_of_the_tree(wheel):
    """Every package folder of lm_probes/ (lm_probes.served was once left out of a hand-written list),
    the suite, the cards, inputs, snapshots, schema and report templates; and the two entry points."""
    names = _names(wheel)
    problems = missing_from_wheel(REPO_ROOT, names)
    assert not problems, "the wheel does not hold the tree:\n" + "\n".join(problems)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        declared = archive.read(entry_points).decode()
    assert "lm-probes = lm_probes.cli.main:main" in declared
    assert "lm_probes = lm_probes.plugin.hooks" in declared


def test_the_wheel_holds_nothing_but_the_package(wheel):
    """The twin: the expected list is not padded. Outside lm_probes/ only the .dist-info; no unit
    tests, no fixtures/machines, no compiled files, no top-level tests or fixtures package."""
    names = _names(wheel)
    outside = sorted(n for n in names if not n.startswith("lm_probes/") and ".dist-info/" not in n)
    assert not outside, f"the wheel installs files outside lm_probes/: {outside}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("lm_probes/fixtures/machines/") or "/unit/" in n]
    assert expected_wheel_files(REPO_ROOT) == {n for n in names if n.startswith("lm_probes/")}


def test_the_contents_check_names_a_package_left_out():
    """The check can fail: a complete wheel's names less lm_probes/served/ (what c2cfe94's
    hand-written list built) give one line naming the package, and one per module of it."""
    complete = expected_wheel_files(REPO_ROOT)
    assert not missing_from_wheel(REPO_ROOT, complete)
    problems = missing_from_wheel(REPO_ROOT, {n for n in complete if not n.startswith("lm_probes/served/")})
    modules = sorted(p.name for p in (REPO_ROOT / "lm_probes" / "served").glob("*.py"))
    assert problems == ["package lm_probes.served is not in the wheel"] + [
        f"file lm_probes/served/{m} is not in the wheel" for m in modules
    ]


def _torch_spec() -> str:
    """The torch that scripts/setup.sh installs first (its TORCH_SPEC, the same variable honoured)."""
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    default = re.search(r"TORCH_SPEC=\$\{TORCH_SPEC:-([^}]+)\}", setup)
    assert default, "scripts/setup.sh no longer sets TORCH_SPEC=${TORCH_SPEC:-...}"
    return os.environ.get("TORCH_SPEC", default.group(1))


def _fresh_environment(venv: Path, cache: Path) -> dict[str, str]:
    """This process's environment without what points at .venv or this pytest session; the
    index settings (PIP_*) stay, as a user's would."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", HF_HUB_OFFLINE="1", LM_PROBES_CACHE=str(cache))
    return env


@pytest.fixture(scope="module")
def fresh_virtualenv(wheel, tmp_path_factory):
    """docs/options.md's "In another project", as written there: torch pinned first, then the
    wheel with -c constraints.txt; then the plugins ML projects commonly have beside it
    (pyproject.toml's coexistence extra, pinned by constraints.txt). Yields (venv, project folder,
    run); removed after the module (1.6 GB)."""
    venv = tmp_path_factory.mktemp("fresh-venv")
    project = tmp_path_factory.mktemp("another-project")
    env = _fresh_environment(venv, project / "lm-probes-cache")
    python = venv / "bin" / "python"

    def run(*command: str | Path, cwd: Path = project, extra_env: dict[str, str] | None = None):
        started = time.monotonic()
        done = _run(list(command), cwd=cwd, env={**env, **(extra_env or {})})
        print(f"{' '.join(map(str, command))[:100]}: {time.monotonic() - started:.1f} s")  # shown with -s
        return done

    plugins = _coexistence_plugins()
    try:
        for name, command in {
            "venv": [sys.executable, "-m", "venv", "--clear", venv],
            "torch": [python, "-m", "pip", "install", "--quiet", _torch_spec()],
            "wheel": [python, "-m", "pip", "install", "--quiet", "-c", REPO_ROOT / "constraints.txt", wheel],
            "plugins": [python, "-m", "pip", "install", "--quiet", "-c", REPO_ROOT / "constraints.txt", *plugins],
        }.items():
            done = run(*command)
            assert done.returncode == 0, f"{name} install failed:\n{_tail(done)}"
        yield venv, project, run
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def _coexistence_plugins() -> list[str]:
    """pyproject.toml's coexistence extra: syrupy, pytest-randomly, pytest-cov, pytest-asyncio, hypothesis
    (read with a pattern: tomllib is Python 3.11's, and the project runs on 3.10)."""
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^coexistence = \[(.*?)^\]", text, flags=re.M | re.S)
    assert block, "pyproject.toml has no coexistence extra"
    return re.findall(r'^\s*"([^"]+)"', block.group(1), flags=re.M)


@pytest.mark.install
def test_a_wheel_in_a_fresh_virtualenv_runs_the_shipped_suite_from_another_folder(fresh_virtualenv):
    """From a folder that is not the checkout, beside the other plugins: ``pytest --pyargs
    lm_probes.suite --lm-probes-card mistral-tokenizer`` and ``lm-probes --help``."""
    venv, project, run = fresh_virtualenv
    where = run(venv / "bin" / "python", "-c", _WHERE_IT_IMPORTS_FROM)
    assert where.returncode == 0, _tail(where)
    paths = {k: Path(v).resolve() for k, v in json.loads(where.stdout).items()}
    site_packages = paths.pop("site-packages")
    for name, path in paths.items():
        assert path.is_relative_to(site_packages), f"{name} imports from {path}, not the fresh virtualenv"
        assert not path.is_relative_to(REPO_ROOT), f"{name} imports from the checkout: {path}"

    pytest_command = ["--pyargs", "lm_probes.suite", "--lm-probes-card", "mistral-tokenizer", "-p", "no:cacheprovider"]
    suite = run(venv / "bin" / "pytest", *pytest_command)
    assert suite.returncode == 0, f"the installed suite failed:\n{_tail(suite)}"
    summary = suite.stdout.strip().splitlines()[-1]
    passed = re.search(r"\b(\d+) passed\b", summary)
    assert passed and int(passed.group(1)) > 0, f"no test passed: {summary}"
    assert not re.search(r"\b(failed|errors?)\b", summary), summary
    assert "syrupy" in suite.stdout and "randomly" in suite.stdout  # it ran beside them

    cli = run(venv / "bin" / "lm-probes", "--help")
    assert cli.returncode == 0, _tail(cli)
    assert cli.stdout.startswith("usage: lm-probes"), cli.stdout[:200]


# Where the fresh interpreter finds the package, the suite and the shipped cards
_WHERE_IT_IMPORTS_FROM = """
import json, sysconfig
import lm_probes, lm_probes.paths, lm_probes.suite
print(json.dumps({
    "site-packages": sysconfig.get_paths()["purelib"],
    "lm_probes": lm_probes.__file__,
    "lm_probes.suite": lm_probes.suite.__file__,
    "fixtures": str(lm_probes.paths.FIXTURES_DIR),
}))
"""


# ------------------------------------------------------------------ host projects
# Projects as users have them (tests/install/hosts/README.md), each run with its own command line
# in the fresh virtualenv where lm-probes is installed beside the other plugins.

HOSTS = REPO_ROOT / "tests" / "install" / "hosts"
HOST_RUNS = {
    # syrupy records with its own --snapshot-update, then compares; coverage, randomly, asyncio,
    # hypothesis and benchmark all active
    "plugins_host": [["--snapshot-update", "--cov=hostlib"], ["--cov=hostlib"]],
    # the host's own --device, --model, --seed and fixtures subject / model_subject, in 2 workers
    "options_host": [["-n", "2", "--device", "cuda:1", "--model", "org/host-model", "--seed", "7"]],
    # its own top-level package named probes, as `pytest` and as `python -m pytest` import it
    "probes_host": [[], ["MODULE"]],
}


@pytest.mark.install
@pytest.mark.parametrize("host", sorted(HOST_RUNS))
def test_a_host_project_passes_its_own_tests_with_lm_probes_installed(fresh_virtualenv, host, tmp_path):
    """Each host's tests pass unchanged (at 0.1 every one stopped before a test: syrupy's
    --snapshot-update and a conftest's --device collided with ours, and a host's `probes` package
    with our import name)."""
    venv, _, run = fresh_virtualenv
    folder = tmp_path / host
    shutil.copytree(HOSTS / host, folder)
    for arguments in HOST_RUNS[host]:
        command = [venv / "bin" / "pytest", "-p", "no:cacheprovider"]
        if arguments[:1] == ["MODULE"]:
            command, arguments = [venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider"], arguments[1:]
        done = run(*command, *arguments, cwd=folder)
        assert done.returncode == 0, f"{host} {' '.join(arguments)}:\n{_tail(done)}"
        assert re.search(r"\b\d+ passed\b", done.stdout) and "lm-probes" in done.stdout  # the plugin was loaded


@pytest.mark.install
def test_an_unused_plugin_costs_a_host_session_under_a_tenth_of_a_second(fresh_virtualenv, tmp_path):
    """The options host's session with lm-probes loaded (unused) against the same with -p
    no:lm_probes, alternated, 9 of each. Compared by their fastest run, as timeit does: a 1.5 s
    session on a shared 2-core machine varies by ±0.5 s from run to run, and interference only ever
    adds time, so the fastest run is the session's own cost. Bound: 0.1 s (docs/benchmarks.md)."""
    venv, _, run = fresh_virtualenv
    folder = tmp_path / "options_host"
    shutil.copytree(HOSTS / "options_host", folder)
    base = [venv / "bin" / "pytest", "-q", "-p", "no:cacheprovider", "--device", "cuda:1", "--model", "org/host-model"]
    seconds: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(9):
        for side, extra in (("with", []), ("without", ["-p", "no:lm_probes"])):
            started = time.monotonic()
            done = run(*base, "--seed", "7", *extra, cwd=folder)
            seconds[side].append(time.monotonic() - started)
            assert done.returncode == 0, _tail(done)
    fastest = {side: min(values) for side, values in seconds.items()}
    median = {side: sorted(values)[4] for side, values in seconds.items()}
    print(f"host session: fastest {fastest['with']:.3f} s with lm-probes, {fastest['without']:.3f} s without; "
          f"median {median['with']:.3f} / {median['without']:.3f} s")  # fmt: skip
    assert fastest["with"] - fastest["without"] <= 0.1, seconds


@pytest.mark.install
def test_the_ci_recipe_of_docs_ci_md_passes_on_its_baseline_and_fails_on_a_regression(fresh_virtualenv, tmp_path):
    """docs/ci.md's "Behaviour tests" step, as written there, in a project with a card of its own
    (the tokenizer card, renamed) and its recorded baseline: exit 0 and a one-line summary; with
    a recorded id edited, exit 1 and the summary names the card and the difference."""
    venv, _, run = fresh_virtualenv
    page = (REPO_ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    step = re.search(r"- name: Behaviour tests\n\s+run: \|\n(.*?)\n\s+- uses:", page, flags=re.S)
    assert step, "docs/ci.md has no 'Behaviour tests' step"
    command = " ".join(line.strip().rstrip("\\") for line in step.group(1).splitlines())
    project = tmp_path / "user-project"
    (project / "cards").mkdir(parents=True)
    card = (REPO_ROOT / "fixtures" / "cards" / "mistral-tokenizer.yaml").read_text(encoding="utf-8")
    (project / "cards" / "my-model.yaml").write_text(card.replace("name: mistral-tokenizer", "name: my-model"))
    bash = ["bash", "-c", f"export PATH={venv / 'bin'}:$PATH; {command}"]
    recorded = run(*bash[:2], bash[2] + " --lm-probes-snapshot-update", cwd=project)
    assert recorded.returncode == 0, _tail(recorded)
    passed = run(*bash, cwd=project)
    assert passed.returncode == 0, _tail(passed)
    summary = (project / "reports" / "lm-probes.md").read_text(encoding="utf-8")
    assert summary.startswith("**lm-probes: passed**: my-model") and (project / "reports" / "lm-probes.html").is_file()
    for path in (project / "snapshots" / "my-model").glob("*.json"):
        snapshot = json.loads(path.read_text(encoding="utf-8"))
        snapshot["observed"]["tokenizer"]["bos_token_id"] = 7
        path.write_text(json.dumps(snapshot), encoding="utf-8")
    regressed = run(*bash, cwd=project)
    assert regressed.returncode == 1, _tail(regressed)
    summary = (project / "reports" / "lm-probes.md").read_text(encoding="utf-8")
    assert "| my-model | failed" in summary and "tokenizer.bos_token_id" in summary
