"""A node with its HTTP API, started and stopped as one: what a process (or an application) runs."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from clusterkit.facade import ClusterKit, Hooks, Options

from .addr import http_bind
from .auth import ApiAuth, bind
from .http import make_app
from .kv_http import add_kv_routes
from .kv_service import KVOptions, KVService
from .log_limit import server_logger
from .node import NetNode, NodeConfig

log = logging.getLogger("clusterkit.net")


class NodeService:
    def __init__(
        self,
        options: Options,
        config: NodeConfig | None = None,
        *,
        hooks: Hooks | None = None,
        kit: ClusterKit | None = None,
        http_ssl: ssl.SSLContext | None = None,
        kv: KVOptions | None = None,
        auth: ApiAuth | None = None,
    ) -> None:
        """``kv``: also run the KV store (its data path on ``kv.addr``, its routes on the HTTP API).
        ``auth``: the API credential (net/auth.py); by default none, and one is required (so the
        data routes answer 401) when the node has a cluster secret or TLS."""
        self.node = NetNode(options, config, hooks=hooks, kit=kit)
        self.http_ssl = http_ssl
        cfg = self.node.config
        self.auth = auth if auth is not None else ApiAuth.configure(
            None, secret=cfg.secret is not None, tls=http_ssl is not None or cfg.client_ssl is not None)
        bind(self.node, self.auth)  # what the node presents when it joins or forwards, and checks
        self.kv_options = kv
        self.kv: KVService | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        await self.node.start()
        try:
            app = make_app(self.node, self.auth)
            if self.kv_options is not None:
                self.kv = KVService(self.node, self.kv_options)
                await self.kv.start()
                add_kv_routes(app, self.kv)
            # (malformed requests: one rate-limited line each, never aiohttp's traceback)
            self._runner = web.AppRunner(app, access_log=None, logger=server_logger())
            await self._runner.setup()
            host, port = http_bind(self.node.options.http_addr)
            await web.TCPSite(self._runner, host, port, ssl_context=self.http_ssl).start()
        except BaseException:
            await self.stop()
            raise
        log.info("%s: HTTP API on %s", self.node.id, self.node.options.http_addr)
        open_api = not self.auth.required or (self.auth.token is None and not self.auth.client_certs)
        log.log(logging.WARNING if open_api else logging.INFO, "%s: %s", self.node.id, self.auth.describe())

    async def stop(self) -> None:
        if self.kv is not None:
            await self.kv.stop()
        await self.node.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
