"""hack/image_requirements.py: the images' requirements files are what it derives from requirements.lock.

Reads files and the venv's package metadata only (no network, no cluster). On failure the message
is the diff: ``make image-requirements`` rewrites both files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hack import image_requirements
from hack.image_requirements import IMAGES, LOCK, Image

DEV_ONLY = {"pytest", "mypy", "ruff", "hypothesis", "cryptography", "packaging", "setuptools"}


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)
def test_the_image_requirements_file_is_what_the_lock_gives(image: Image) -> None:
    problem = image_requirements.check(image)
    assert problem is None, problem


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)
def test_it_pins_every_root_with_hashes_and_no_dev_dependency(image: Image) -> None:
    text = image_requirements.render(image, LOCK.read_text())
    pinned = set(re.findall(r"^([a-z0-9._-]+)==\S+ \\$", text, re.M))
    assert set(image.roots) <= pinned
    assert not pinned & DEV_ONLY
    assert text.count("--hash=sha256:") >= len(pinned)


def test_a_drifted_file_is_reported_with_its_name_and_a_diff(tmp_path: Path) -> None:
    drifted = tmp_path / "requirements.txt"
    drifted.write_text(image_requirements.SERVERS.path.read_text().replace("aiohttp==", "aiohttp===", 1))
    problem = image_requirements.check(image_requirements.SERVERS, drifted)
    assert problem is not None
    assert problem.startswith(f"{drifted} differs from requirements.lock: run `make image-requirements`")
    assert "\n-aiohttp===" in problem and "\n+aiohttp==" in problem
