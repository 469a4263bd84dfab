"""kopf's side of the ConfigMap key counter: `kopf run examples/configmap_counter/main.py -n NS`.

kopf puts this folder on sys.path (so `counter` imports); `labop` comes from the venv.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes
from counter import build


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    kubernetes.config.load_config()
    memo.counter = build(kubernetes.client.CoreV1Api())
    await memo.counter.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.counter.stop()


@kopf.on.event("", "v1", "configmaps")
async def configmap_event(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    await memo.counter.enqueue((namespace, name))
