"""Where the control-plane binaries are.

Role: ``KUBEBUILDER_ASSETS`` (the envtest convention) if set, else the per-machine cache that
``hack/build-bins.sh`` fills, building what is missing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "build-bins.sh"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kubectl")
FULL_CLUSTER = (*CONTROL_PLANE, "kube-controller-manager", "kube-scheduler", "kwok")


class BinariesMissing(RuntimeError):
    pass


def bin_dir(needed: tuple[str, ...] = FULL_CLUSTER) -> Path:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        folder = Path(assets)
    else:
        # build-bins.sh prints the folder on stdout; its progress goes to stderr, shown as it goes.
        out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
        folder = Path(out.stdout.strip().splitlines()[-1])
    missing = [b for b in needed if not (folder / b).is_file()]
    if missing:
        raise BinariesMissing(f"{folder} lacks {', '.join(missing)} (unset KUBEBUILDER_ASSETS to build them)")
    return folder
