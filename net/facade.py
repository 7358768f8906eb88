"""The ClusterKit facade as a real node: ``start()``/``stop()``, ``async with``, and a blocking wrapper.

``clusterkit.net.ClusterKit`` is the core facade (the seed's API, hooks and
all) that also runs its node: Raft over TCP, the durable log and the HTTP
API. The same hooks fire, in the same order, as in the simulator, because
it is the same facade on the same node host.

    async with ClusterKit(Options(node_id="node-1", http_addr=":8080")) as ck:
        ck.on_partition_change(copy_my_data)
        print(ck.get_partition("user:123"))

``BlockingClusterKit`` runs the same in a background event loop for
synchronous programs (the seed's examples are synchronous).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from clusterkit import facade
from clusterkit.facade import Hooks, Options

from .auth import ApiAuth
from .node import NodeConfig, node_options
from .service import NodeService

T = TypeVar("T")


class ClusterKit(facade.ClusterKit):
    def __init__(
        self,
        options: Options,
        hooks: Hooks | None = None,
        config: NodeConfig | None = None,
        http_ssl: ssl.SSLContext | None = None,
        api_token: str | None = None,
    ) -> None:
        """``api_token``: the bearer token the HTTP API's data and membership routes require (and
        this node presents to others); see docs/security.md."""
        config = config or NodeConfig()
        super().__init__(node_options(options, config), hooks=hooks)
        auth = None
        if api_token is not None:
            auth = ApiAuth.configure(api_token, secret=config.secret is not None,
                                     tls=http_ssl is not None or config.client_ssl is not None)
        self.service = NodeService(self.options, config, kit=self, http_ssl=http_ssl, auth=auth)

    @property
    def node(self) -> Any:
        return self.service.node

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()

    async def __aenter__(self) -> ClusterKit:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a leader is known and this node's cluster state holds the config."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.node.host is not None and self.node.host.leader and self.state.config is not None):
            if loop.time() > deadline:
                raise TimeoutError(f"{self.options.node_id} not ready within {timeout} s")
            await asyncio.sleep(0.05)


class BlockingClusterKit:
    """The facade for synchronous code: the node runs in a background event loop thread, and every
    call runs on that loop (the node's state is only ever touched from one thread)."""

    def __init__(self, options: Options, hooks: Hooks | None = None, config: NodeConfig | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clusterkit-node", daemon=True)
        self._thread.start()
        self.kit: ClusterKit = self._call(lambda: ClusterKit(options, hooks, config))

    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def start(self, wait_ready: float | None = 30.0) -> None:
        asyncio.run_coroutine_threadsafe(self.kit.start(), self._loop).result()
        if wait_ready:
            asyncio.run_coroutine_threadsafe(self.kit.wait_ready(wait_ready), self._loop).result()

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.kit.stop(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> BlockingClusterKit:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __getattr__(self, name: str) -> Any:
        """The seed's API (get_partition, is_primary, on_partition_change, ...), run on the node's loop."""
        attr = getattr(self.kit, name)
        if not callable(attr):
            return self._call(lambda: getattr(self.kit, name))
        return lambda *args, **kwargs: self._call(lambda: attr(*args, **kwargs))
