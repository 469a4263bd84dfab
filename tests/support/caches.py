"""Caches for unit tests: a ``labop.cache.Cache`` whose initial listings are over (synced)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labop.cache import DEPLOYMENTS, LABSERVERS, SERVICES, Cache


def list_into(cache: Cache, kind: str, objects: Iterable[Mapping[str, Any]] = ()) -> None:
    """One complete initial listing of ``kind`` (a ``labop.cache`` kind name), as kopf's would
    go: announced, each object listed and put into its store, then over."""
    store = {LABSERVERS: cache.labservers, DEPLOYMENTS: cache.deployments, SERVICES: cache.services}[kind]
    stream = object()
    cache.sync.listing_started(stream, kind)
    for obj in objects:
        cache.sync.listed(stream, str(obj["metadata"].get("uid", "")))
        store.apply(None, obj)
    cache.sync.listing_done(stream)


def a_synced_cache(
    labservers: Iterable[Mapping[str, Any]] = (),
    deployments: Iterable[Mapping[str, Any]] = (),
    services: Iterable[Mapping[str, Any]] = (),
) -> Cache:
    cache = Cache()
    list_into(cache, LABSERVERS, labservers)
    list_into(cache, DEPLOYMENTS, deployments)
    list_into(cache, SERVICES, services)
    assert cache.sync.synced.is_set()
    return cache
