"""The operator image runs as its Deployment runs it: uid 65532, read-only root, an emptyDir on /tmp.

No cluster here, so the entry point itself is not started (it would wait for an API server); what
it needs is: `kopf` on PATH, /app/operator/main.py importing with every handler (what `kopf run`
does first), and a passwd name for uid 65532 (kopf's getpass.getuser() at start).
"""

from __future__ import annotations

import pytest
from tests.images.conftest import ImageRoot

pytestmark = pytest.mark.timeout(1800)

IMAGE = "OPERATOR"


def test_kopf_runs_from_the_image(image_root: ImageRoot) -> None:
    done = image_root.run(["kopf", "--help"], tmp_volume=True)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout


def test_the_operator_imports_as_kopf_run_imports_it_and_knows_its_user(image_root: ImageRoot) -> None:
    probe = (
        "import getpass, os, sys\n"
        "sys.path.insert(0, '/app/operator')\n"
        "import main, labop.handlers\n"
        "print(getpass.getuser(), os.getuid(), os.getgid(), sys.version_info[:2])\n"
    )
    done = image_root.run(["python", "-c", probe], tmp_volume=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nonroot 65532 65532 (3, 11)"


def test_python_m_labop_help_works(image_root: ImageRoot) -> None:
    done = image_root.run(
        ["python", "-m", "labop", "--help"], env={"PYTHONPATH": "/app/operator"}, tmp_volume=True
    )
    assert done.returncode == 0, done.stderr
    assert "--default-image" in done.stdout


def test_the_code_is_byte_compiled_and_the_wheels_stay_in_the_build_stage(image_root: ImageRoot) -> None:
    assert list((image_root.root / "app" / "operator" / "labop" / "__pycache__").glob("*.cpython-311.pyc"))
    assert not (image_root.root / "tmp" / "wheels").exists()
