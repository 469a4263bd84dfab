"""The labhttp image runs as its pods run it: uid 65532, read-only root filesystem, no /tmp volume.

Its own entry point with the environment the operator sets (LABHTTP_LISTEN on 127.0.0.1 here):
`GET /` answers the message, `/health` and `/readyz` 200, `/metrics` on the metrics listener; SIGTERM
ends it with exit 0. Requests go to 127.0.0.1 only, a bounded number of times.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from tests.images.conftest import ImageRoot

pytestmark = pytest.mark.timeout(1800)

IMAGE = "LABHTTP"
DEFAULT_MESSAGE = "Hello, Kubernetes and Istio!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_until_serving(proc: subprocess.Popen[str], url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers; fail at once, with stderr, if the process ends first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"labhttp exited {proc.returncode} before serving:\n{err}")
        try:
            get(url)
            return
        except OSError as err:
            if time.monotonic() > deadline:
                pytest.fail(f"labhttp did not answer {url} within {timeout:.0f}s: {err}")
        time.sleep(0.2)


def test_the_image_entrypoint_serves_and_exits_0_on_sigterm(image_root: ImageRoot) -> None:
    api, metrics = free_port(), free_port()
    proc = image_root.popen(env={"LABHTTP_LISTEN": f"api=127.0.0.1:{api},metrics=127.0.0.1:{metrics}"})
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{api}/health")
        assert get(f"http://127.0.0.1:{api}/") == (200, DEFAULT_MESSAGE)
        assert get(f"http://127.0.0.1:{api}/health") == (200, "Server is healthy")
        assert get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200
        status, body = get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and "labhttp_http_requests_total" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_it_runs_python_3_11_as_65532_on_a_read_only_root(image_root: ImageRoot) -> None:
    probe = (
        "import errno, os, sys\n"
        "print(sys.version_info[:2], os.getuid(), os.getgid(), os.getgroups())\n"
        "try:\n    open('/tmp/probe', 'w')\nexcept OSError as err:\n    print(errno.errorcode[err.errno])\n"
    )
    done = image_root.run(["python", "-c", probe])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(3, 11) 65532 65532 []", "EROFS"]


def test_the_code_is_byte_compiled_and_the_wheels_stay_in_the_build_stage(image_root: ImageRoot) -> None:
    assert list((image_root.root / "app" / "labhttp" / "__pycache__").glob("__main__.cpython-311.pyc"))
    assert not (image_root.root / "tmp" / "wheels").exists()
    assert not (image_root.root / "tmp" / "requirements.txt").exists()
