"""labop: the LabServer operator, loaded by `kopf run operator/main.py` (or `python -m labop`).

`labop.runtime` is the generic controller machinery (queue, workers, metrics, builder) and
knows nothing of LabServers; the rest of the package is the LabServer controller built on it.
"""
