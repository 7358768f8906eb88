"""Run one node as a process: the Raft node, its HTTP API, clean shutdown on SIGTERM and Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

from clusterkit.facade import Options

from .auth import ApiAuth
from .gc_policy import LongLivedGC
from .join import NodeRemoved, NotAMember, on_join_refused
from .kv_service import KVOptions
from .node import NodeConfig
from .service import NodeService

log = logging.getLogger("clusterkit.net")


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str | None = None

    def contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """(server, client) contexts: peers present the certificate; with a CA, both sides verify."""
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        server.load_cert_chain(self.cert, self.key)
        if self.ca:
            server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: only nodes with a CA-signed cert get in
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        client.load_cert_chain(self.cert, self.key)
        if not self.ca:
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE  # encryption only: say so in the docs
        return server, client

    def kv_context(self) -> ssl.SSLContext:
        """For the KV port: SDK clients and curl present no certificate, peer nodes present theirs.
        With a CA a certificate is checked whenever one is shown (and the KV service requires one
        of a peer); without, encryption only."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        if self.ca:
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def http_context(self) -> ssl.SSLContext:
        """For the HTTP API: the same certificate; a client certificate asked for but not required.
        Its clients (curl, browsers, scripts) may present none (the peer port's mutual TLS context
        would refuse them all, /join included, so no node could ever join); with a CA, one that is
        presented is verified, and is then a credential for the data routes (net/auth.py): nodes
        forwarding to the leader present theirs."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        if self.ca:
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


async def serve(options: Options, config: NodeConfig, stop: asyncio.Event | None = None,
                http_ssl: ssl.SSLContext | None = None, kv: KVOptions | None = None,
                gc_policy: LongLivedGC | None = None, auth: ApiAuth | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then shut down cleanly. ``gc_policy``: the process
    is this node's own (``clusterkit node``): keep the garbage collector off its long-lived data."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests): the caller stops us
            pass
    collector: asyncio.Task[None] | None = None
    if gc_policy is not None:
        gc_policy.install()
        collector = loop.create_task(gc_policy.run())
    try:
        service = NodeService(options, config, http_ssl=http_ssl, kv=kv, auth=auth)
        await service.start()
        node = service.node
        # A final refusal of our join (or our own removal, replayed from the log) stops the node:
        # raised below once it has shut down, for the command to turn into its exit code.
        refusals: list[NotAMember] = []
        if node.removed:
            refusals.append(NodeRemoved(node.id, str(node.options.data_dir)))
            stop.set()

        def refused(exc: NotAMember) -> None:
            refusals.append(exc)
            stop.set()

        on_join_refused(node, refused)
        try:
            waits = [loop.create_task(stop.wait()), loop.create_task(node.halt_event.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            log.info("%s: stopping", node.id)
        finally:
            await service.stop()
        if node.halted is not None:
            raise node.halted
        if refusals:
            raise refusals[0]
    finally:
        if collector is not None:
            collector.cancel()
            gc_policy.uninstall()


def read_secret(path: str) -> bytes:
    data = Path(path).read_bytes().strip()
    if len(data) < 16:
        raise ValueError(f"the cluster secret in {path} is too short: use at least 16 bytes")
    return data
