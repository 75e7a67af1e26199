"""Every file under infra/ parses: YAML, JSON, Dockerfiles (lint level), shell scripts, the hostfile."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from ._infra import INFRA, ROOT, infra_files

DOCKERFILES = sorted(p for p in INFRA.glob("docker/Dockerfile.*") if p.suffix != ".dockerignore")
SCRIPTS = [p for p in infra_files() if p.suffix in {".sh", ".sbatch"}]
KNOWN_KINDS = {
    ".yaml": "yaml",
    ".json": "json",
    ".sh": "shell",
    ".sbatch": "shell",
    ".md": "doc",
    ".py": "python",
    ".dockerignore": "dockerignore",
}
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def _kind(path) -> str:
    if path.name.startswith("Dockerfile."):
        return "dockerignore" if path.name.endswith(".dockerignore") else "dockerfile"
    if path.name == "hostfile.example":
        return "hostfile"
    return KNOWN_KINDS.get(path.suffix, "unknown")


def test_every_infra_file_has_a_parser() -> None:
    files = infra_files()
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda"]
    assert len(files) >= 20
    unknown = [str(p.relative_to(ROOT)) for p in files if _kind(p) == "unknown"]
    assert not unknown, f"no parser/test covers: {unknown}"


@pytest.mark.parametrize("path", [p for p in infra_files() if _kind(p) == "yaml"], ids=lambda p: p.name)
def test_yaml_parses(path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", [p for p in infra_files() if _kind(p) == "json"], ids=lambda p: p.name)
def test_json_parses(path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(path) -> None:
    ins = _instructions(path.read_text())
    assert {w for w, _ in ins} <= INSTRUCTIONS, "unknown instruction"
    first = next(w for w, _ in ins if w != "ARG")
    assert first == "FROM", "FROM must be the first instruction (only ARG may precede it)"
    for word, args in ins:
        if word == "ADD":
            assert not re.search(r"(https?|ftp)://", args), "ADD from a URL: download in RUN with a checksum"
        if word == "FROM":
            assert ":latest" not in args
    users = [args for w, args in ins if w == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must end as a non-root user"
    run = " ".join(args for w, args in ins if w == "RUN")
    # The same install logic as scripts/setup.sh: one resolve pinned by the lock, descript-* without deps.
    assert "-c requirements/constraints.txt" in run
    assert re.search(r"--no-deps[^&]*descript-audio-codec==1\.0\.0 descript-audiotools==0\.7\.2", run)
    copies = [args for w, args in ins if w == "COPY"]
    assert any("requirements/constraints.txt" in c for c in copies)
    assert (ROOT / "requirements/constraints.txt").exists()
    assert (path.parent / f"{path.name}.dockerignore").exists()


def test_cuda_image_builds_flash_attn() -> None:
    run = " ".join(a for w, a in _instructions((INFRA / "docker/Dockerfile.cuda").read_text()) if w == "RUN")
    assert "flash-attn==" in run and "--no-build-isolation" in run
    # the venv's Python is the build arg, one of the Pythons pyproject.toml supports
    assert re.search(r"python\$\{?PYTHON_VERSION\}? -m venv", run), run
    text = (INFRA / "docker/Dockerfile.cuda").read_text()
    (version,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", text, flags=re.M)
    assert version in {"3.11", "3.12"}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(path) -> None:
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = path.read_text()
    if path.name != "common.sh":  # sourced, not run
        assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
        assert path.stat().st_mode & 0o111, f"{path.name} is not executable"


def test_hostfile_parses_with_deepspeed() -> None:
    from deepspeed.launcher.runner import _parse_hostfile

    lines = (INFRA / "launch/hostfile.example").read_text().splitlines(keepends=True)
    pool = _parse_hostfile(lines)
    assert len(pool) >= 2 and all(slots >= 1 for slots in pool.values())
    with pytest.raises(ValueError):  # the parser is strict: the check can fail
        _parse_hostfile(["node-a slots=8\n", "node-a slots=8\n"])


@pytest.mark.parametrize(
    "path", [p for p in infra_files() if _kind(p) == "dockerignore"], ids=lambda p: p.name
)
def test_dockerignore_keeps_the_build_inputs(path) -> None:
    patterns = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    for needed in ("requirements", "pyproject.toml", "setup.py", "accord", "pipeline"):
        assert needed not in patterns


def test_python_helpers_compile() -> None:
    for path in (p for p in infra_files() if p.suffix == ".py"):
        compile(path.read_text(), str(path), "exec")


def test_docs_point_at_real_files() -> None:
    readme = (INFRA / "README.md").read_text()
    for ref in set(re.findall(r"`(infra/[\w./-]+)`", readme)):
        assert (ROOT / ref.rstrip(".")).exists(), ref
    assert "accord ingest" in readme and "--address" in readme
