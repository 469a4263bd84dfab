"""A real, Docker-free local Kubernetes control plane, run as plain processes.

Role: start etcd and kube-apiserver (the envtest tier) and, on demand, kube-controller-manager,
kube-scheduler and kwok with fake nodes (the full tier, where Deployments get Ready pods and
garbage collection runs), and a real node where containers run (containerd, kubelet,
kube-proxy) when the machine allows it. Used by the pytest fixtures in ``tests/conftest.py`` and by
``python -m localcluster`` behind ``make cluster-up / cluster-down / cluster-status``.

Neighbours: ``pki`` makes the certificates, ``components`` holds each binary's command line,
``processes`` starts/stops/watches the processes, ``cluster`` puts them together,
``binaries`` finds the binaries that ``hack/build-bins.sh`` builds; ``node`` (the real node's
files and argv), ``nodehost`` (its host-side set-up, teardown and leftovers), ``ociimage`` (the
pause image, no registry) and ``forward`` (pods to the apiserver) serve the real node;
``labimages`` finds the labhttp and operator images ``make images`` built and imports them into it.
"""

from localcluster.cluster import ClusterSettings, LocalCluster

__all__ = ["ClusterSettings", "LocalCluster"]
