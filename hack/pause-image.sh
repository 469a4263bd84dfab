#!/usr/bin/env bash
# Builds the local cluster's sandbox ("pause") image from hack/images/pause (a static Go program
# of ours) as an OCI image archive that `ctr images import` reads; `make cluster-up` does the same
# on its own when it starts the real node. Usage: hack/pause-image.sh [FOLDER]  (default: .)
# Prints the archive's path; the image is localhost/k8s-lab/pause:1.0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-.}")
mkdir -p "$out"
PYTHONPATH="$here" python3 -c 'import sys; from pathlib import Path
from localcluster import ociimage
print(ociimage.pause_archive(Path(sys.argv[1])))' "$out"
