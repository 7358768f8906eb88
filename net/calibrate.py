"""Measure this machine's real latencies, for a simulator profile fitted to them.

`clusterkit sim calibrate` times what the simulator models as distributions: a message's one-way
trip over loopback TCP (half a round trip of a small frame, as the nodes' transport sends them),
a disk sync (a 4 KiB append and fsync, as a Raft log's), and the CPU to encode and decode a
typical append (reported; the simulator does not charge CPU yet). Each is fitted to a lognormal
(median and spread), clipped to what was seen, and written as a profile: the ``[network]`` and
``[disk]`` tables a scenario names with ``profile = "NAME"``.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from clusterkit.raft.codec import decode, encode
from clusterkit.raft.messages import AppendEntries, Entry


@dataclass(frozen=True)
class Fit:
    """A lognormal fitted to samples (seconds): median, sigma of the log, and the range seen."""

    median: float
    sigma: float
    low: float
    p99: float
    high: float
    samples: int

    @classmethod
    def of(cls, samples: list[float]) -> Fit:
        ordered = sorted(max(s, 1e-9) for s in samples)
        logs = [math.log(s) for s in ordered]
        return cls(median=statistics.median(ordered), sigma=statistics.pstdev(logs) if len(logs) > 1 else 0.0,
                   low=ordered[0], p99=ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
                   high=ordered[-1], samples=len(ordered))

    def latency_toml(self) -> str:
        cap = max(self.high, 2 * self.p99)
        return (f'{{dist = "lognormal", mean = {self.median:.7g}, sigma = {min(self.sigma, 3.0):.4g}, '
                f'low = {self.low:.7g}, high = {cap:.7g}, cap = {cap:.7g}}}')


@dataclass(frozen=True)
class Calibration:
    one_way: Fit
    fsync: Fit
    codec_seconds: float  # encode + decode of one append of 10 small entries, mean

    def profile(self, name: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return "\n".join([
            f"# {name}: measured by `clusterkit sim calibrate` on {platform.node() or 'this machine'}, {stamp}",
            f"# {os.cpu_count()} CPUs, load {load:.2f}; {platform.python_implementation()} {platform.python_version()}",
            f"# one-way loopback message: median {self.one_way.median * 1e6:.0f} us, p99 "
            f"{self.one_way.p99 * 1e6:.0f} us ({self.one_way.samples} samples)",
            f"# fsync of a 4 KiB append: median {self.fsync.median * 1e3:.3f} ms, p99 {self.fsync.p99 * 1e3:.3f} ms "
            f"({self.fsync.samples} samples)",
            f"# encode + decode of an append of 10 entries: {self.codec_seconds * 1e6:.1f} us (not simulated yet)",
            "",
            "[network]",
            f"latency = {self.one_way.latency_toml()}",
            "",
            "[disk]",
            f"fsync = {self.fsync.latency_toml()}",
            "",
        ])


def measure_one_way(samples: int) -> Fit:
    """Half the round trip of a 64-byte frame over a loopback TCP connection (Nagle off, as the transport)."""

    async def run() -> list[float]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.readexactly(64):
                    writer.write(data)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass  # the client is done
            finally:
                writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        frame = b"x" * 64
        for _ in range(samples):
            t0 = time.perf_counter()
            writer.write(frame)
            await reader.readexactly(64)
            out.append((time.perf_counter() - t0) / 2)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return out

    return Fit.of(asyncio.run(run()))


def measure_fsync(samples: int, directory: Path | None = None) -> Fit:
    """A 4 KiB append and fsync, ``samples`` times, in ``directory`` (a temporary one by default)."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="clusterkit-calibrate-") as tmp:
        out = []
        with open(Path(tmp) / "log", "ab") as f:
            block = os.urandom(4096)
            for _ in range(samples):
                f.write(block)
                f.flush()
                t0 = time.perf_counter()
                os.fsync(f.fileno())
                out.append(time.perf_counter() - t0)
    return Fit.of(out)


def measure_codec(rounds: int, clock: Callable[[], float] = time.perf_counter) -> float:
    msg = AppendEntries(term=7, src="n1", dst="n2", index=100, log_term=7, commit=99,
                        entries=[Entry(term=7, index=101 + i, data=b"k" * 40) for i in range(10)])
    t0 = clock()
    for _ in range(rounds):
        decode(encode(msg))
    return (clock() - t0) / rounds


def calibrate(samples: int = 2000, directory: Path | None = None) -> Calibration:
    return Calibration(measure_one_way(samples), measure_fsync(max(20, samples // 10), directory),
                       measure_codec(samples))
