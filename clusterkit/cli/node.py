"""``clusterkit node``: run one real node (Raft over TCP, a durable log, the HTTP API).

Every flag has the seed's environment variable as its default, so the Go
README's commands work with ``clusterkit node`` in place of ``go run main.go``.
The seed's KV examples give ports instead of addresses (``HTTP_PORT=8080
KV_PORT=9080``): each is read as ``:PORT`` (every interface, as the Go server
listens) when its address variable is not set.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from ..kv.strategies import STRATEGIES
from .args import bounded_int
from .codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, error

PROG = "clusterkit node"
ENV = {
    "node_id": "NODE_ID",
    "node_name": "NODE_NAME",
    "http_addr": "HTTP_ADDR",
    "raft_addr": "RAFT_ADDR",
    "join_addr": "JOIN_ADDR",
    "data_dir": "DATA_DIR",
    "bootstrap": "BOOTSTRAP",
    "cluster_name": "CLUSTER_NAME",
    "partition_count": "PARTITION_COUNT",
    "replication_factor": "REPLICATION_FACTOR",
    "cluster_secret_file": "CLUSTER_SECRET_FILE",
    "api_token_file": "API_TOKEN_FILE",
    "allow_remote_peers": "ALLOW_REMOTE_PEERS",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    """A logging level name in any case (LOG_LEVEL=debug); WARN is WARNING."""
    value = text.strip().upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 3600 or value != value:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {text!r}")
    return value


def _tick(text: str) -> float:
    value = _seconds(text)
    if value < 0.001:
        raise argparse.ArgumentTypeError(f"a tick must be at least 0.001 s, got {text!r}")
    return value


_PORT = re.compile(r"[0-9]{1,5}")


def seed_addr(given: str | None, env: Mapping[str, str], addr_var: str, port_var: str, lowest: int) -> str | None:
    """The address to use: ``given`` (the flag, or ``addr_var``'s value as its default), else
    ``:PORT`` from ``port_var`` (the seed's KV examples name only the port). ValueError, one line,
    for a port that is no port, or one that disagrees with ``addr_var`` set next to it (a flag
    overrides both, as every flag overrides its variable)."""
    port = env.get(port_var, "").strip()
    if not port:
        return given
    if not _PORT.fullmatch(port) or not lowest <= int(port) <= 65535:
        raise ValueError(f"{port_var}={port!r} is not a port: expected a whole number from {lowest} to 65535 "
                         f"({port_var}=N means {addr_var}=:N)")
    if given is None:
        return f":{int(port)}"
    if given == env.get(addr_var) and given.rpartition(":")[2] != str(int(port)):
        raise ValueError(f"{addr_var}={given} and {port_var}={port} disagree: set one of them")
    return given


def add_parser(sub: Any) -> None:
    env = os.environ
    p = sub.add_parser(
        "node", help="run one real node: Raft over TCP, a durable log, the HTTP API",
        description="Run a node. Each flag defaults to the environment variable in brackets (the seed's names).",
    )
    p.add_argument("--node-id", default=env.get("NODE_ID"), help="this node's id [NODE_ID] (required)")
    p.add_argument("--node-name", default=env.get("NODE_NAME", ""), help="display name [NODE_NAME]")
    p.add_argument("--http-addr", default=env.get("HTTP_ADDR") or None,
                   help="HTTP API address, e.g. :8080 [HTTP_ADDR, or :$HTTP_PORT] (required)")
    p.add_argument("--raft-addr", default=env.get("RAFT_ADDR", ""), help="Raft address [RAFT_ADDR] (default: HTTP port + 921)")
    p.add_argument("--join-addr", default=env.get("JOIN_ADDR", ""), help="HTTP address of any node to join [JOIN_ADDR]")
    p.add_argument("--data-dir", default=env.get("DATA_DIR", "./clusterkit-data"), help="where the log lives [DATA_DIR]")
    # Env values are defaults as strings: argparse converts them (with the flag's type) only when
    # this subcommand runs, so a bad BOOTSTRAP is this command's one-line usage error, not a
    # traceback in every command (`clusterkit --version` included) while the parser is built.
    p.add_argument("--bootstrap", type=_bool, default=env.get("BOOTSTRAP") or None,
                   help="start a new cluster [BOOTSTRAP] (default: true when no join address)")
    p.add_argument("--cluster-name", default=env.get("CLUSTER_NAME", "clusterkit-cluster"), help="[CLUSTER_NAME]")
    p.add_argument("--partition-count", type=bounded_int(1, 65536), default=env.get("PARTITION_COUNT", "16"),
                   help="[PARTITION_COUNT] (default 16)")
    p.add_argument("--replication-factor", type=bounded_int(1, 16), default=env.get("REPLICATION_FACTOR", "3"),
                   help="[REPLICATION_FACTOR] (default 3)")
    p.add_argument("--cluster-secret-file", default=env.get("CLUSTER_SECRET_FILE"),
                   help="a file holding the cluster secret: peers must prove they know it [CLUSTER_SECRET_FILE]")
    p.add_argument("--api-token-file", default=env.get("API_TOKEN_FILE"), metavar="FILE",
                   help="a file holding the HTTP API's bearer token (16+ printable ASCII characters): the data"
                        " and membership routes need it; give every node the same file [API_TOKEN_FILE]")
    p.add_argument("--allow-remote-peers", type=_bool, nargs="?", const=True, metavar="BOOL",
                   default=env.get("ALLOW_REMOTE_PEERS") or False,
                   help="without a cluster secret, take Raft and KV peer connections from other hosts too"
                        " (default: loopback only) [ALLOW_REMOTE_PEERS]")
    p.add_argument("--tls-cert", help="PEM certificate: TLS on peer and HTTP connections")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--tls-ca", help="CA bundle: verify peers (mutual TLS)")
    p.add_argument("--fail-after", type=_seconds, default=3.0, help="mark a node failed after this long unheard (0: never)")
    p.add_argument("--tick", type=_tick, default=0.05, help="seconds per Raft tick (heartbeat); elections after 10-20 ticks")
    p.add_argument("--leave-on-stop", action="store_true", help="on SIGTERM, leave the cluster gracefully first")
    p.add_argument("--fault-injection", action="store_true",
                   help="for test harnesses only: let POST /debug/faults cut this node's links, skew its clock"
                        " and stall its disk (needs --api-token-file)")
    kv = p.add_argument_group("KV store", "run the reference KV store on this node (off unless --kv-addr or KV_PORT)")
    kv.add_argument("--kv-addr", default=env.get("KV_ADDR") or None,
                    help="address of the KV data port, e.g. :9080 or 127.0.0.1:0 for any free port"
                         " [KV_ADDR, or :$KV_PORT]")
    kv.add_argument("--kv-strategy", default=env.get("KV_STRATEGY", "sync"), choices=list(STRATEGIES),
                    help="replication strategy [KV_STRATEGY] (default sync)")
    kv.add_argument("--kv-w", type=bounded_int(0, 16), default=env.get("KV_W", "0"),
                    help="write quorum W (0: a majority of the replication factor) [KV_W]")
    kv.add_argument("--kv-r", type=bounded_int(0, 16), default=env.get("KV_R", "0"),
                    help="read quorum R (0: a majority of the replication factor) [KV_R]")
    kv.add_argument("--kv-gc-seconds", type=_seconds, default=env.get("KV_GC_SECONDS", "30"),
                    help="how often a partition's primary collects the tombstones every owner holds; a "
                         "tombstone goes once it is at least this old [KV_GC_SECONDS] (default 30)"),
    p.add_argument("--log-level", type=_log_level, default=env.get("LOG_LEVEL") or "INFO", metavar="LEVEL",
                   help=f"{', '.join(LOG_LEVELS)}, any case [LOG_LEVEL] (default INFO)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from clusterkit.facade import ConfigError, Options

    return _start(args, Options, ConfigError)


def _start(args: argparse.Namespace, Options: Any, ConfigError: Any) -> int:
    from clusterkit.net.gc_policy import LongLivedGC
    from clusterkit.net.node import NodeConfig
    from clusterkit.net.auth import ApiAuth, read_token
    from clusterkit.net.runner import TlsFiles, read_secret, serve

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # (read here, not as parser defaults: a bad value is this command's error, not every command's)
        args.http_addr = seed_addr(args.http_addr, os.environ, "HTTP_ADDR", "HTTP_PORT", 1)
        args.kv_addr = seed_addr(args.kv_addr, os.environ, "KV_ADDR", "KV_PORT", 0)
    except ValueError as exc:
        return error(PROG, str(exc), EXIT_USAGE)
    if not args.node_id or not args.http_addr:
        return error(PROG, "--node-id (NODE_ID) and --http-addr (HTTP_ADDR or HTTP_PORT) are required", EXIT_USAGE)
    if bool(args.tls_cert) != bool(args.tls_key):
        return error(PROG, "--tls-cert and --tls-key go together", EXIT_USAGE)
    try:
        options = Options(
            node_id=args.node_id, http_addr=args.http_addr, node_name=args.node_name, raft_addr=args.raft_addr,
            join_addr=args.join_addr, bootstrap=args.bootstrap, data_dir=args.data_dir,
            cluster_name=args.cluster_name, partition_count=int(args.partition_count),
            replication_factor=int(args.replication_factor),
        ).resolved()
        secret = read_secret(args.cluster_secret_file) if args.cluster_secret_file else None
        token = read_token(args.api_token_file) if args.api_token_file else None
        server_ssl = client_ssl = http_ssl = None
        kv = _kv_options(args, options)
        if args.tls_cert:
            tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca)
            server_ssl, client_ssl = tls.contexts()
            http_ssl = tls.http_context()
            if kv is not None:
                kv = dataclasses.replace(kv, ssl=tls.kv_context(), http_tls=True)
    except (ConfigError, ValueError, OSError) as exc:
        return error(PROG, str(exc), EXIT_BAD_INPUT if isinstance(exc, OSError) else EXIT_USAGE)
    if args.fault_injection and token is None:
        return error(PROG, "--fault-injection needs --api-token-file: whoever can inject faults can take the node"
                     " down", EXIT_USAGE)
    # With the KV store a node confirms each copy once its data is pulled, never at once.
    config = NodeConfig(tick=args.tick, fail_after=args.fail_after, secret=secret, server_ssl=server_ssl,
                        client_ssl=client_ssl, leave_on_stop=args.leave_on_stop, auto_confirm=kv is None,
                        allow_remote_peers=bool(args.allow_remote_peers), fault_injection=args.fault_injection)
    auth = ApiAuth.configure(token, secret=secret is not None, tls=http_ssl is not None,
                             client_certs=bool(args.tls_cert and args.tls_ca))
    from clusterkit.net.node import NodeHalted
    from clusterkit.net.join import NotAMember
    from clusterkit.net.disk import StorageDamaged
    from clusterkit.raft.errors import StorageError

    from .codes import EXIT_STORAGE_DAMAGED

    try:
        # (this process is the node's own: it may tune the garbage collector for its data)
        asyncio.run(serve(options, config, http_ssl=http_ssl, kv=kv, gc_policy=LongLivedGC(), auth=auth))
    except NodeHalted as exc:  # it stopped itself (its storage failed): the CRITICAL line said why
        return error(PROG, exc.reason, exc.code)
    except NotAMember as exc:  # its join refused for good, or it was removed: asking again can't help
        return error(PROG, str(exc), EXIT_REFUSED)
    except StorageDamaged as exc:  # it lost synced data: never start on it (README, "Damaged storage")
        logging.getLogger("clusterkit.net").critical("%s", exc)  # one line: file, offset, what is lost, the way back
        return EXIT_STORAGE_DAMAGED
    except (OSError, StorageError) as exc:  # the port is taken, the data dir is locked or unreadable...
        return error(PROG, str(exc), EXIT_BAD_INPUT)
    return EXIT_OK


def _kv_options(args: argparse.Namespace, options: Any) -> Any:
    """The KV store's options from the flags (None: no KV store); ValueError for a bad combination."""
    if not args.kv_addr:
        return None
    from clusterkit.facade import _split_host_port
    from clusterkit.kv.server import ServerConfig
    from clusterkit.net.kv_service import BREAK_MIGRATION_ENV, KVOptions

    _split_host_port(args.kv_addr if not args.kv_addr.endswith(":0") else args.kv_addr[:-1] + "1", "kv_addr")
    gc_ticks = max(1, round(float(args.kv_gc_seconds) / KVOptions.tick))  # (the KV server ticks every 0.1 s)
    server = ServerConfig(strategy=args.kv_strategy, w=int(args.kv_w), r=int(args.kv_r), gc_ticks=gc_ticks)
    # W and R must fit the replication factor, and the strategy (ALL: W is RF)
    server.policy.quorums(options.replication_factor, server.w, server.r)
    return KVOptions(args.kv_addr, server, break_migration=os.environ.get(BREAK_MIGRATION_ENV) == "1")
