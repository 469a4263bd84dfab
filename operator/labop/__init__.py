"""labop: the LabServer operator's own code, loaded by `kopf run operator/main.py`.

Neighbours: kopf handlers (in the operator's main module) turn watch events into keys and feed
`labop.workqueue.WorkQueue`; `labop.workers.WorkerPool` drains it into the reconciler.
"""
