#!/usr/bin/env bash
# `make run`: a LabServer on a cluster in one command, then the operator in the foreground.
# With no KUBECONFIG in the environment, the local cluster (make cluster-up) is started and used;
# with KUBECONFIG set, that cluster is used and nothing local is started.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KUBECONFIG:-}" ]; then
  make --no-print-directory cluster-up
  export KUBECONFIG="$PWD/.cluster/kubeconfig"
else
  echo "using the cluster of KUBECONFIG=$KUBECONFIG"
fi
kubectl="$(hack/build-bins.sh)/kubectl"
"$kubectl" apply --server-side -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/
"$kubectl" apply -f examples/labserver.yaml
cat <<MSG

The operator runs below (Ctrl-C stops it). In another terminal, watch it work:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/bin:\$PATH
  kubectl get lsrv -w
  kubectl wait --for=condition=Ready lsrv/hello --timeout=120s
  kubectl describe lsrv hello
Metrics: http://localhost:${LABOP_METRICS_PORT:-8080}/metrics  Health: http://localhost:${LABOP_HEALTH_PORT:-8081}/readyz

MSG
exec .venv/bin/kopf run operator/main.py --all-namespaces
