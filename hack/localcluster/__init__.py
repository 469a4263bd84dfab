"""A real, Docker-free local Kubernetes control plane, run as plain processes.

Role: start etcd and kube-apiserver (the envtest tier) and, on demand, kube-controller-manager,
kube-scheduler and kwok with fake nodes (the full tier, where Deployments get Ready pods and
garbage collection runs), and a real node where containers run (containerd, kubelet,
kube-proxy) when the machine allows it. Used by the integration tier's pytest fixtures and by
``python -m localcluster`` behind ``make cluster-up / cluster-down / cluster-status``.
Why not kind or envtest: no Docker on the CI machine, and envtest has no scheduler, garbage
collector or nodes, which the operator's end-to-end tests need.
"""

from localcluster.cluster import ClusterSettings, LocalCluster

__all__ = ["ClusterSettings", "LocalCluster"]
