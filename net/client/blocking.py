"""The SDK for synchronous code: :class:`~.kv.KVClient` on an event loop thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from clusterkit.kv.records import Record, Value

from .kv import KVClient

T = TypeVar("T")


class BlockingKVClient:
    """The SDK for synchronous code: the client runs on its own event loop thread."""

    def __init__(self, seeds: list[str], **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clusterkit-kv-client", daemon=True)
        self._thread.start()
        self.client = KVClient(seeds, **kwargs)
        try:
            self._run(self.client.start())
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def set(self, key: str, value: Value, quorum: int | None = None) -> Record:
        return self._run(self.client.set(key, value, quorum))

    def get(self, key: str) -> Value | None:
        return self._run(self.client.get(key))

    def delete(self, key: str, quorum: int | None = None) -> Record:
        return self._run(self.client.delete(key, quorum))

    def close(self) -> None:
        if self._loop.is_running():
            try:
                self._run(self.client.close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BlockingKVClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
