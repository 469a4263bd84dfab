"""servers/ and operator/Dockerfile build both with Docker (online) and with `make images` (offline).

Reads the two files only. What keeps both paths one file: the base is a build ARG whose default is
the python:3.11-slim image Docker users pull (make images passes its local base); dependencies are
installed from wheels/, which the repository keeps empty (pip goes to PyPI) and hack/build-images.sh
fills (pip installs offline), and every pip install requires hashes either way. tests/images builds
and runs the images themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "servers" / "Dockerfile", REPO / "operator" / "Dockerfile"]


def instructions(path: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_base_is_an_arg_defaulting_to_python_3_11_slim(path: Path) -> None:
    lines = instructions(path)
    arg = next(line for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11-slim(-bookworm)?", arg)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all(line.split()[1] == "${PYTHON_IMAGE}" for line in froms)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_pip_installs_with_hashes_from_wheels_in_the_build_stage_only(path: Path) -> None:
    lines = instructions(path)
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    pips = [line for line in lines if "pip install" in line]
    assert pips and all("--require-hashes" in line and "--only-binary=:all:" in line for line in pips)
    assert all("--no-index --find-links /tmp/wheels" in line for line in pips)
    copies = [i for i, line in enumerate(lines) if line.startswith(f"COPY {path.parent.name}/wheels/")]
    assert copies and all(i < final for i in copies), "the wheels would reach the final image"
    assert not any("pip install" in line for line in lines[final:])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_wheels_is_kept_empty_in_the_repository(path: Path) -> None:
    assert (path.parent / "wheels" / "README.md").is_file()
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert f"/{path.parent.name}/wheels/*.whl" in ignored


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_root_context_lets_in_what_the_dockerfile_copies_and_shared_labkit(path: Path) -> None:
    """Both build from the repository's root (for shared/labkit); .dockerignore admits only a list."""
    admitted = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = [
        line.split()[1].rstrip("/")
        for line in instructions(path)
        if line.startswith("COPY ") and not line.startswith("COPY --from")
    ]
    assert "shared/labkit" in sources
    assert sources and all(source in admitted for source in sources), (sources, admitted)
