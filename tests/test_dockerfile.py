"""The Dockerfile builds one slim, pinned, non-root image, checked statically (no engine here)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass

from tests.servers import repo_root

ROOT = repo_root()


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def _instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _build_args() -> dict[str, str]:
    return dict(i.args.split("=", 1) for i in _instructions() if i.keyword == "ARG" and "=" in i.args)


def test_base_image_is_python_3_11_slim_pinned_by_full_version() -> None:
    base = _build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-bookworm)?(@sha256:[0-9a-f]{64})?", base), base
    froms = [i.args for i in _instructions() if i.keyword == "FROM"]
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms


def test_build_is_multi_stage_and_the_runtime_installs_only_prebuilt_wheels() -> None:
    froms = [i.args for i in _instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert any("pip wheel" in i.args for i in _instructions() if i.stage == 0 and i.keyword == "RUN")
    runtime_runs = [i.args for i in _final_stage() if i.keyword == "RUN"]
    installs = [r for r in runtime_runs if "pip install" in r]
    assert installs
    assert all("--no-index" in r for r in installs)
    assert not any(i.keyword == "COPY" and "--from" not in i.args for i in _final_stage()), \
        "the runtime stage must not copy the source tree"


def test_runtime_runs_as_a_non_root_user() -> None:
    users = [i.args for i in _final_stage() if i.keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_health_check_uses_python_not_curl() -> None:
    checks = [i.args for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert re.search(r"--interval=\d+s", checks[0])
    assert re.search(r"--timeout=\d+s", checks[0])
    command = json.loads(checks[0].split("CMD", 1)[1].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")
    assert "curl" not in checks[0]
    assert "wget" not in checks[0]


def test_default_command_is_a_real_component_entry_point() -> None:
    cmd = json.loads(next(i.args for i in _final_stage() if i.keyword == "CMD"))
    assert cmd[:2] == ["python", "-m"]
    assert (ROOT / cmd[2] / "__main__.py").is_file()


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    allowed = [line.strip()[1:].rstrip("/") for line in
               (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip().startswith("!")]
    for i in _instructions():
        if i.keyword != "COPY" or "--from" in i.args:
            continue
        *sources, _dest = i.args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_build_context_never_holds_secrets_or_local_state() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in lines, "allow-list: everything is excluded unless named"
    first_allowed = next(n for n, line in enumerate(lines) if line.startswith("!"))
    assert lines.index("*") < first_allowed
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert not allowed & {".env", ".git", ".venv", "var", "tests"}


def test_every_package_the_project_installs_is_copied_into_the_build() -> None:
    copied = {i.args.split()[0].rstrip("/") for i in _instructions()
              if i.stage == 0 and i.keyword == "COPY"}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    include = re.search(r'include = \[([^\]]*)\]', pyproject)
    assert include is not None
    packages = {p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")}
    assert packages <= copied | {"pyproject.toml"}, packages - copied


def test_no_secret_or_credential_is_baked_into_the_image() -> None:
    for i in _instructions():
        if i.keyword in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", i.args, re.IGNORECASE), i.args


def test_every_file_the_package_build_reads_is_copied_into_the_build() -> None:
    # pip fails the image build when the readme or a license file named in pyproject is missing.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needed = {project["readme"], *project.get("license-files", []), "setup.py"}
    copies = [i for i in _instructions() if i.stage == 0 and i.keyword == "COPY" and "--from" not in i.args]
    copied = {source for i in copies for source in i.args.split()[:-1]}
    assert needed <= copied, needed - copied


def test_the_image_builds_the_ingests_c_scanner_and_fails_without_it() -> None:
    """setup.py's extension is optional (a machine without a compiler installs the pure path), so
    the image must bring its own compiler to the build stage and refuse a wheel without it."""
    build = [i for i in _instructions() if i.stage == 0]
    install = next(n for n, i in enumerate(build) if i.keyword == "RUN" and "gcc" in i.args)
    wheel = next(n for n, i in enumerate(build) if i.keyword == "RUN" and "pip wheel" in i.args)
    assert install < wheel
    assert "libc6-dev" in build[install].args
    runtime = [i for i in _final_stage() if i.keyword == "RUN"]
    assert any('python -c "import ingest._scan"' in i.args for i in runtime)
    assert not any("gcc" in i.args for i in runtime)  # no compiler in the image that runs
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "**/*.so" in ignored  # a host's build never reaches the image
