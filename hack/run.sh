#!/usr/bin/env bash
# `make run`: a LabServer on a cluster in one command, then the operator in the foreground.
# With no KUBECONFIG in the environment, the local cluster is used: on a root Linux machine the images
# are built first (`make images`, cached) and `make cluster-up` starts a real node and imports them,
# so LabServer `hello` runs real pods of localhost/k8s-lab/labhttp (the operator's default image here,
# read from images.env); elsewhere the local cluster runs on kwok alone (pods are marked Running, no
# container starts) and this says so in one line. With KUBECONFIG set, that cluster is used as it is.
# The operator runs as a child of this script until `hello` is Ready (then how to reach it is
# printed), and on in the foreground; Ctrl-C (or SIGTERM) stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
log() { printf '[run] %s\n' "$*"; }

if [ -z "${KUBECONFIG:-}" ]; then
  if [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ] && [ "${REAL_NODE:-auto}" != off ]; then
    log "building the labhttp and operator images (make images; cached after the first time) ..."
    if ! make --no-print-directory images; then
      log "images could not be built: LabServer pods will not start on the real node"
    fi
  fi
  make --no-print-directory cluster-up
  export KUBECONFIG="$PWD/.cluster/kubeconfig"
else
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
fi
kubectl="$(hack/build-bins.sh)/kubectl"

# The real node carries the label type=real (hack/localcluster/node.py).
real_node=$("$kubectl" get nodes -l type=real -o name 2>/dev/null | head -n1 || true)
if [ -n "$real_node" ]; then
  images_env=$($PY -c 'from localcluster import labimages; i = labimages.current(); print(i.labhttp if i else "")')
  if [ -n "$images_env" ]; then
    export LABOP_DEFAULT_IMAGE="$images_env"
    log "real node: LabServer pods run containers of $LABOP_DEFAULT_IMAGE (LABOP_DEFAULT_IMAGE)"
  fi
else
  log "no real node: pods run on kwok (marked Running and Ready, no container starts, nothing to curl)"
fi

"$kubectl" apply --server-side -f crds/ >/dev/null
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$kubectl" apply -f examples/labserver.yaml

# Health and metrics on loopback: the defaults 0.0.0.0 and 8080 would take the port that
# `kubectl port-forward svc/hello 8080:8080` wants.
export LABOP_BIND_ADDRESS=${LABOP_BIND_ADDRESS:-127.0.0.1}
export LABOP_METRICS_PORT=${LABOP_METRICS_PORT:-18080}
export LABOP_HEALTH_PORT=${LABOP_HEALTH_PORT:-18081}
log "starting the operator (Ctrl-C stops it) ..."
.venv/bin/kopf run operator/main.py --all-namespaces &
operator=$!
stop() { kill -TERM "$operator" 2>/dev/null || true; }
trap stop INT TERM

ready=no
for _ in $(seq 90); do
  kill -0 "$operator" 2>/dev/null || break
  if "$kubectl" wait --for=condition=Ready lsrv/hello --timeout=2s >/dev/null 2>&1; then
    ready=yes
    break
  fi
done
if [ "$ready" = yes ]; then
  cluster_ip=$("$kubectl" get svc hello -o jsonpath='{.spec.clusterIP}')
  message=$("$kubectl" get lsrv hello -o jsonpath='{.spec.message}')
  pods=$("$kubectl" get pods -l app.kubernetes.io/instance=hello -o jsonpath='{range .items[*]}{.metadata.name}@{.spec.nodeName} {end}' 2>/dev/null || true)
  cat <<MSG

================================================================================
LabServer hello is Ready (pods: ${pods:-see kubectl get pods}), message: "$message"
In another terminal:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/bin:\$PATH
  kubectl get lsrv,deploy,pods,svc
MSG
  if [ -n "$real_node" ]; then
    cat <<MSG
  curl http://$cluster_ip:8080/            # the Service's ClusterIP, from this machine
  kubectl port-forward svc/hello 8080:8080  # then: curl localhost:8080/
MSG
  else
    echo "  (kwok only: no container runs, so there is nothing to curl; see README Troubleshooting)"
  fi
  cat <<MSG
Operator metrics: http://$LABOP_BIND_ADDRESS:$LABOP_METRICS_PORT/metrics  health: http://$LABOP_BIND_ADDRESS:$LABOP_HEALTH_PORT/readyz
The operator runs below; Ctrl-C stops it (make cluster-down stops the cluster).
================================================================================

MSG
elif kill -0 "$operator" 2>/dev/null; then
  log "hello is not Ready after 3 minutes: kubectl describe lsrv hello; kubectl get pods -o wide"
fi
# `wait` returns early when a trapped signal arrives: wait again until the operator is gone.
status=0
while kill -0 "$operator" 2>/dev/null; do
  wait "$operator" || status=$?
done
exit "$status"
