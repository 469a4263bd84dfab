"""Condition types and the CamelCase reasons for conditions and Events of a LabServer.

Why one module: conditions, Events and the CRD's `Status` printer column (the Ready
condition's reason) speak the same words, and users script against them.

Plain strings (not an Enum) on purpose: they go straight into JSON/YAML and into the API.

When each condition is set (see `labop.status.compute_status`):

    Ready        True   Available            every replica of the current generation is
                                             updated, ready and available, and the Service exists
                 True   ScaledToZero         spec.replicas is 0 and no pod is left
                 False  Reconciling          a child (Deployment or Service) does not exist yet
                 False  RollingOut           the Deployment has not caught up with its spec yet
                                             (generation not observed, pods not updated, old
                                             pods still terminating)
                 False  ReplicasUnavailable  updated, but not every replica is ready/available
                 False  <problem reason>     InvalidSpec, ChildConflict or ReconcileError
                 False  WaitingForCleanup    a child of an earlier LabServer of the same name
                                             waits for the garbage collector
    Progressing  True   Reconciling          a child does not exist yet
                 True   WaitingForCleanup    as above: retried shortly, no Event, not Degraded
                 True   RollingOut           the Deployment is rolling out or scaling
                 True   Retrying             a retryable problem; the operator retries
                 False  RolloutComplete      nothing left to do
                 False  ProgressDeadlineExceeded  the Deployment gave up waiting
                 False  <problem reason>     a permanent problem (nothing will change by itself)
    Degraded     False  AsExpected           no problem known
                 True   <problem reason>     InvalidSpec, ChildConflict, ReconcileError
                 True   ProgressDeadlineExceeded  the Deployment's Progressing condition is False
                 True   ReplicaFailure       the Deployment cannot create pods (e.g. refused by
                                             Pod Security admission or a quota)
"""

from __future__ import annotations

from typing import Final

# Condition types: states, not activities (api-conventions).
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

# Reasons for a healthy or converging LabServer.
AVAILABLE: Final = "Available"
SCALED_TO_ZERO: Final = "ScaledToZero"
RECONCILING: Final = "Reconciling"
ROLLING_OUT: Final = "RollingOut"
REPLICAS_UNAVAILABLE: Final = "ReplicasUnavailable"
ROLLOUT_COMPLETE: Final = "RolloutComplete"
AS_EXPECTED: Final = "AsExpected"
RETRYING: Final = "Retrying"

# Reasons read from the Deployment's own conditions.
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
REPLICA_FAILURE: Final = "ReplicaFailure"

# Problem reasons: what the controller found wrong (see `labop.status.Problem`).
INVALID_SPEC: Final = "InvalidSpec"  # the spec fails validation (e.g. stored before a schema change)
CHILD_CONFLICT: Final = "ChildConflict"  # a same-named Deployment/Service not controlled by us
RECONCILE_ERROR: Final = "ReconcileError"  # an API call failed; retried with backoff
# A wait, not a problem: the previous incarnation's children are being garbage-collected.
WAITING_FOR_CLEANUP: Final = "WaitingForCleanup"

# Event reasons (posted on the LabServer by the controller). A problem's Warning Event has the
# problem's reason (InvalidSpec, ChildConflict, ReconcileError).
# Children were created. The reconciler records one Event per pass for all it created
# ("Created Deployment web; Created Service web"): one write per new LabServer, not two.
EVENT_CREATED: Final = "Created"
EVENT_READY: Final = "Ready"  # the Ready condition turned True
EVENT_NOT_READY: Final = "NotReady"  # the Ready condition turned False
