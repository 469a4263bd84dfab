"""Starting a test's real node on a shared machine: one real node per machine, so wait for another's.

Why: the bridge, the cgroup root and the iptables chains are machine-wide (``localcluster.nodehost``),
and on a shared machine another run's ``make test`` may hold the real node for a few minutes. A
test run then polls until that node is gone (up to ``BUSY_WAIT``) instead of failing or skipping;
any other reason a node cannot start is raised at once.
"""

from __future__ import annotations

import time

from localcluster import LocalCluster, nodehost
from localcluster.cluster import RealNodeUnavailable

BUSY_WAIT = (
    420.0  # another run's `make test` holds the node for 2 to 3 minutes; within pytest-timeout (600 s)
)


def start_real_node(
    local: LocalCluster, *, taint_self: bool, taint_kwok: bool, busy_wait: float = BUSY_WAIT
) -> None:
    """``local.start_real_node(...)``, waiting while another cluster's real node is up on this machine."""
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            local.start_real_node(taint_self=taint_self, taint_kwok=taint_kwok)
            return
        except RealNodeUnavailable as err:
            busy = nodehost.owner() is not None or nodehost.bridge_exists()
            if not busy or time.monotonic() > deadline:
                raise
            print(f"waiting for the machine's real node to be free: {err}", flush=True)
            time.sleep(10)  # polling another run's node, not synchronising with our own work
