"""The long soak of issue 20: real ``clusterkit node`` processes on loopback, faults, fuzz, and a verdict.

A 3-node cluster (net/local.py LocalCluster, KV store on) runs, under two loads at once:

- registers: worker threads PUT and GET ``/registers/<key>`` on random nodes; every call and its
  outcome is a JSON line of a history (invoke / ok / fail / info, clusterkit/check/history.py; f
  "put"/"get", so ``clusterkit check linearizability FILE`` checks each key as a register that
  starts as "", the kv model), checked for linearizability at the end (keys rotate at every
  episode, so each key's history stays small enough to check exactly);
- KV SYNC through the SDK (net/client/ KVClient): each writer owns its keys and writes
  increasing values; an acknowledged write is remembered, and at the end every acknowledged key is
  read back. Lost: acknowledged, but neither its last acknowledged value nor a later one is read.
  Wrong: a read (during the run or at the end) returned a value that was never written.

and these episodes, in order: ``--kills`` SIGKILL/restart cycles (every other one on the leader),
``--pauses`` SIGSTOP/SIGCONT cycles (every other one on the leader), a wiped-disk rejoin (a follower
killed, its data dir removed, restarted with its id and JOIN_ADDR: it must be replaced and be a voter
again), ``--frames`` fuzzed Raft and KV frames with extreme values (bench/fuzz_frames.py, also used by
tests/test_net_fuzz_extreme.py) and ``--http`` malformed HTTP requests, then a disk-full episode (a
follower's data moved onto a 4 MiB tmpfs when this machine can mount one, filled: it must exit 74;
space freed, restarted, it must catch up).

It prints a progress line as it goes (logging) and, at the end, a summary: acknowledged writes, lost
writes, wrong reads, the linearizability verdict, node crashes (a process that exited on its own,
other than the disk-full episode's expected 74), tracebacks in the node logs, and each node's RSS
before and after. The last line is ``SOAK-SUMMARY {json}`` for scripts (tests/test_soak_smoke.py).
Exit status 0 only when lost, wrong, crashes and tracebacks are 0 and the history is linearizable;
1 otherwise; 130 when interrupted (Ctrl-C, SIGTERM: every node process is reaped either way).

    python bench/soak.py                      # the issue's numbers: 100 kills, 30 pauses, 20,000 frames, 2,000 HTTP
    python bench/soak.py --kills 10 --pauses 4 --frames 2000 --http 200
    python bench/soak.py --quick              # a minute: what the smoke test runs
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.check.history import read_history
from clusterkit.check.linearizability import check_operations
from clusterkit.check.models import model_for
from clusterkit.cli.codes import EXIT_STORAGE_FAILED
from clusterkit.net.local import PORTS_PER_NODE, LocalCluster, http_json

HERE = Path(__file__).resolve().parent
log = logging.getLogger("soak")


def _load_fuzz() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fuzz_frames", HERE / "fuzz_frames.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz_frames"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


class Interrupted(Exception):
    pass


# ------------------------------------------------------------------ register load and its history
class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("w")
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def add(self, process: int, type_: str, f: str, key: str, value: Any) -> None:
        line = json.dumps({"process": process, "type": type_, "f": f, "key": key, "value": value,
                           "time": round(time.monotonic() - self._t0, 6)}, separators=(",", ":"))
        with self._lock:
            self._f.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()


@dataclass
class Counts:
    reg_ok: int = 0
    reg_info: int = 0
    reg_reads: int = 0
    kv_acked: int = 0
    kv_unknown: int = 0
    kv_failed: int = 0
    kv_reads: int = 0
    wrong_reads: list[str] = field(default_factory=list)
    reg_unknown_statuses: Counter[int] = field(default_factory=Counter)


class RegisterLoad:
    """``workers`` threads, each one process of the history, writing unique values and reading."""

    def __init__(self, c: LocalCluster, history: History, counts: Counts, workers: int, seed: int) -> None:
        self.c, self.history, self.counts = c, history, counts
        self.workers = workers
        self.seed = seed
        self.epoch = 0  # the key window: moved on at every episode, so each key's history stays small
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        for p in range(self.workers):
            t = threading.Thread(target=self._run, args=(p,), name=f"reg-{p}", daemon=True)
            t.start()
            self.threads.append(t)

    def next_epoch(self) -> None:
        self.epoch += 1

    def _run(self, p: int) -> None:
        rng = random.Random(self.seed * 1000 + p)
        seq = 0
        nodes = list(self.c.nodes)
        t0 = time.monotonic()
        while not self.stop.is_set():
            # A new key window at every episode and every 2 s: a key's history is ~100 operations,
            # and the few of unknown outcome among them keep the exact check small.
            key = f"r{self.epoch}.{int((time.monotonic() - t0) / 2.0)}-{rng.randrange(8)}"
            url = self.c.nodes[rng.choice(nodes)].url + f"/registers/{key}"
            if rng.random() < 0.5:
                seq += 1
                value = f"{p}-{seq}"
                self.history.add(p, "invoke", "put", key, value)
                status, _ = http_json(url, "PUT", {"value": value}, timeout=3.0)
                # 200: it happened. Anything else may still happen (a forwarded write whose answer
                # was lost, a truncated entry that another leader commits): unknown, never "fail".
                self.history.add(p, "ok" if status == 200 else "info", "put", key, value)
                with self.lock:
                    if status == 200:
                        self.counts.reg_ok += 1
                    else:
                        self.counts.reg_info += 1
                        self.counts.reg_unknown_statuses[status] += 1  # 0: no answer (refused, timed out)
            else:
                self.history.add(p, "invoke", "get", key, None)
                status, doc = http_json(url, timeout=3.0)
                if status == 200 and isinstance(doc, dict):
                    self.history.add(p, "ok", "get", key, doc.get("value"))
                    with self.lock:
                        self.counts.reg_reads += 1
                else:
                    self.history.add(p, "fail", "get", key, None)
            time.sleep(0.005)  # (pacing, not synchronisation: the load leaves the machine some room)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


class KVLoad:
    """SYNC writes through the SDK: writer w owns keys ``kv/w/i`` and writes ``w:seq`` in order."""

    def __init__(self, c: LocalCluster, counts: Counts, writers: int, keys: int, seed: int) -> None:
        self.c, self.counts = c, counts
        self.writers, self.keys, self.seed = writers, keys, seed
        self.acked: dict[str, int] = {}  # key -> the highest acknowledged seq
        self.attempted: dict[str, set[int]] = {}  # key -> every seq ever sent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._thread, name="kv-load", daemon=True)
        self.error: BaseException | None = None
        self.final: dict[str, Any] = {}

    def start(self) -> None:
        self.thread.start()

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported in the summary
            self.error = exc
            log.exception("KV load failed")

    async def _main(self) -> None:
        from clusterkit.net.client import KVClient, KVError

        seeds = [n.http for n in self.c.nodes.values()]
        async with KVClient(seeds, strategy="sync", timeout=3.0) as kv:
            async def writer(w: int) -> None:
                rng = random.Random(self.seed * 7919 + w)
                seq = 0
                while not self.stop.is_set():
                    key = f"kv/{w}/{rng.randrange(self.keys)}"
                    if rng.random() < 0.8:
                        seq += 1
                        self.attempted.setdefault(key, set()).add(seq)
                        try:
                            await kv.set(key, f"{w}:{seq}")
                        except KVError as exc:
                            if type(exc).__name__ == "KVFailed":
                                self.counts.kv_failed += 1
                            else:
                                self.counts.kv_unknown += 1
                        else:
                            self.counts.kv_acked += 1
                            self.acked[key] = max(self.acked.get(key, 0), seq)
                    else:
                        try:
                            value = await kv.get(key)
                        except KVError:
                            pass
                        else:
                            self.counts.kv_reads += 1
                            self._check_read(key, value)
                    await asyncio.sleep(0.005)

            tasks = [asyncio.create_task(writer(w)) for w in range(self.writers)]
            while not self.stop.is_set():
                await asyncio.sleep(0.1)
            await asyncio.gather(*tasks, return_exceptions=True)
            # The read-back: every acknowledged key, with retries (a node may just have restarted).
            for key in sorted(self.acked):
                for attempt in range(20):
                    try:
                        self.final[key] = await kv.get(key)
                        break
                    except KVError:
                        await asyncio.sleep(0.25)
                else:
                    self.final[key] = "<unreadable>"

    def _check_read(self, key: str, value: Any) -> None:
        if value is None:
            return
        w, _, seq = str(value).partition(":")
        if key.split("/")[1] != w or not seq.isdigit() or int(seq) not in self.attempted.get(key, ()):
            self.counts.wrong_reads.append(f"{key}={value!r}")

    def finish(self) -> tuple[int, list[str]]:
        """Stop writing, read every acknowledged key back: (lost, details)."""
        self.stop.set()
        self.thread.join(timeout=300)
        lost = []
        for key, seq in sorted(self.acked.items()):
            value = self.final.get(key)
            if value == "<unreadable>":
                lost.append(f"{key}: unreadable at the end (last acknowledged {seq})")
                continue
            self._check_read(key, value)
            got = int(str(value).partition(":")[2]) if value is not None and ":" in str(value) else -1
            if got < seq:
                lost.append(f"{key}: read {value!r}, last acknowledged seq {seq}")
        return len(lost), lost


# ------------------------------------------------------------------ processes
def quiet_base_port(rng: random.Random, count: int) -> int:
    """``count`` consecutive loopback ports below the ephemeral range (32768 up on Linux), all free
    now. A node restarted hundreds of times must get its ports back: a free port picked inside the
    ephemeral range can meanwhile be the source port of one of the load's own connections."""
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free run of loopback ports below 32000")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="clusterkit-soak-"))
        base = quiet_base_port(random.Random(os.getpid()), 3 * PORTS_PER_NODE)
        self.c = LocalCluster(self.root / "cluster", size=3, kv=True, base_port=base)
        self.counts = Counts()
        self.history = History(self.root / "registers.jsonl")
        self.reg: RegisterLoad | None = None
        self.kvload: KVLoad | None = None
        self.crashes: list[str] = []
        self.expected_exits: dict[str, int] = {}  # node -> the exit code an episode expects of it
        self.paused: set[str] = set()
        self.mounted: Path | None = None
        self.notes: list[str] = []
        self.rss_before: dict[str, int] = {}
        self.frames_sent = 0
        self.frames_hung = 0
        self.http_sent = 0
        self.http_status: Counter[int] = Counter()
        self.stopping = False

    # ------------------------------------------------------------ helpers
    def check_stop(self) -> None:
        if self.stopping:
            raise Interrupted()

    def wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_stop()
            self.reap()
            if cond():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}; logs in {self.c.root}")

    def reap(self) -> None:
        """A node process that exited by itself is a crash, unless an episode expects it: restart it."""
        for nid, node in self.c.nodes.items():
            proc = node.process
            if proc is None or proc.poll() is None or proc.returncode == -9:
                continue
            code = proc.returncode
            if self.expected_exits.get(nid) == code:
                continue
            self.crashes.append(f"{nid} exited with code {code}")
            log.error("%s exited by itself with code %s: restarting it (see %s)", nid, code, node.log_path)
            node.process = None
            self.c.start(nid, join=None)

    def leader(self) -> str | None:
        live = [n for n in self.c.nodes if self.c.nodes[n].alive and n not in self.paused]
        seen = set()
        for nid in live:
            status, doc = self.c.get(nid, "/consensus/leader", timeout=2.0)
            if status != 200 or not doc:
                return None
            seen.add(doc.get("leader_id"))
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def settled(self) -> bool:
        """Every node up, one leader they all name, and every node an active member."""
        if not all(n.alive for n in self.c.nodes.values()):
            return False
        lead = self.leader()
        if lead is None:
            return False
        status, doc = self.c.get(lead, "/nodes", timeout=2.0)
        return status == 200 and {n["id"] for n in doc["nodes"] if n["status"] == "active"} == set(self.c.nodes)

    def progress(self, phase: str, i: int, n: int, extra: str = "") -> None:
        c = self.counts
        log.info("%s %d/%d%s | registers ok %d info %d reads %d | kv acked %d unknown %d | crashes %d",
                 phase, i, n, f" {extra}" if extra else "", c.reg_ok, c.reg_info, c.reg_reads, c.kv_acked,
                 c.kv_unknown, len(self.crashes))

    # ------------------------------------------------------------ episodes
    def kills(self, n: int) -> None:
        for i in range(n):
            self.check_stop()
            self.wait(self.settled, 60, "the cluster to settle before a kill")
            lead = self.leader()
            victim = lead if i % 2 == 0 and lead else self.rng.choice([x for x in self.c.nodes if x != lead])
            self.c.kill(victim)
            if victim == lead:
                self.wait(lambda: self.leader() not in (None, victim), 60, f"a new leader after killing {victim}")
            else:
                time.sleep(self.rng.uniform(0.1, 1.0))  # down a while, writes going on without it
            self.c.start(victim, join=None)
            if self.reg is not None:
                self.reg.next_epoch()
            self.progress("kill", i + 1, n, f"{victim}{' (leader)' if victim == lead else ''}")
        self.wait(self.settled, 60, "the cluster to settle after the kills")

    def pauses(self, n: int) -> None:
        for i in range(n):
            self.check_stop()
            self.wait(self.settled, 60, "the cluster to settle before a pause")
            lead = self.leader()
            victim = lead if i % 2 == 0 and lead else self.rng.choice([x for x in self.c.nodes if x != lead])
            proc = self.c.nodes[victim].process
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)
            self.paused.add(victim)
            try:
                hold = self.rng.uniform(0.5, 2.5)  # past an election timeout, often
                end = time.monotonic() + hold
                while time.monotonic() < end:
                    self.check_stop()
                    time.sleep(0.05)
            finally:
                proc.send_signal(signal.SIGCONT)
                self.paused.discard(victim)
            if self.reg is not None:
                self.reg.next_epoch()
            self.progress("pause", i + 1, n, f"{victim}{' (leader)' if victim == lead else ''} {hold:.1f} s")
        self.wait(self.settled, 60, "the cluster to settle after the pauses")

    def wipe(self) -> None:
        self.wait(self.settled, 60, "the cluster to settle before the wipe")
        lead = self.leader()
        first = next(iter(self.c.nodes))
        victim = next(n for n in sorted(self.c.nodes, reverse=True) if n not in (lead, first))
        log.info("wipe: killing %s, removing its data dir, restarting it with JOIN_ADDR %s", victim, lead)
        self.c.kill(victim)
        shutil.rmtree(self.c.nodes[victim].data_dir)
        self.c.start(victim, join=self.c.nodes[lead].http)

        def voter_again() -> bool:
            lead_now = self.leader()
            if lead_now is None:
                return False
            status, doc = self.c.get(lead_now, "/consensus/stats", timeout=2.0)
            return status == 200 and victim in doc.get("voters", []) and self.settled()

        self.wait(voter_again, 120, f"{victim} to be replaced and a voter again")
        replaced = "replaced" in self.c.logs(lead)
        how = f"replaced by {lead}" if replaced else "no replace line"
        self.notes.append(f"wipe: {victim} rejoined as a voter ({how})")
        if self.reg is not None:
            self.reg.next_epoch()
        self.progress("wipe", 1, 1, f"{victim} is a voter again")

    def frames(self, n: int) -> None:
        if n <= 0:
            return
        self.wait(self.settled, 60, "the cluster to settle before the fuzz")
        members = sorted(self.c.nodes)
        half = n // 2
        done = 0
        step = max(1, n // 20)
        for port_kind, count in (("raft", half), ("kv", n - half)):
            for j in range(count):
                if done % 200 == 0:
                    self.check_stop()
                    self.reap()
                target = members[done % len(members)]
                if port_kind == "raft":
                    case = next(fuzz.raft_cases(self.args.seed * 100_000 + done, 1, target, members,
                                                near_max=self.args.near_max_terms))
                    port = self.c.nodes[target].raft_port
                else:
                    case = next(fuzz.kv_cases(self.args.seed * 100_000 + done, 1, members, target=target))
                    port = self.c.nodes[target].kv_port
                try:
                    if fuzz.send_case(port, case, timeout=10.0) != "closed":
                        self.frames_hung += 1
                except OSError:
                    pass  # the node restarting (a crash is counted by reap)
                done += 1
                self.frames_sent += 1
                if done % step == 0:
                    self.progress("frames", done, n)
        self.wait(self.settled, 60, "the cluster to settle after the fuzz")

    def http(self, n: int) -> None:
        if n <= 0:
            return
        rng = random.Random(self.args.seed + 17)
        nested = b'{"a":' * 5000 + b"1" + b"}" * 5000
        bodies = [nested, b"{not json", b"\xff\xfe\x00", b"[1,2]", b'{"value": 5}', b'{"value": null}',
                  b'{"value": ["x"]}', b'{"key": 5, "value": "v"}', b'{"node": "x"}', b'{"node_id": 5}',
                  b'{"node_id": ["node-1"]}', b" " * (70 << 10), b'{"value": "' + b"v" * (80 << 10) + b'"}',
                  b"[" * 100_000, b'{"a":' * 100_000, b"", b"null", b"1e999999", b'"\\ud800"']
        leave_bodies = [nested, b"{not json", b"\xff\xfe\x00", b"[1,2]", b'{"node_id": 5}', b'{"node_id": ["node-1"]}',
                        b'{"node_id": null}', b'{"node_id": ""}', b" " * (70 << 10), b"[" * 100_000]
        routes = [("PUT", "/registers/fuzz-k"), ("POST", "/kv/set"), ("POST", "/join"), ("POST", "/leave"),
                  ("GET", "/kv/get?key="), ("GET", "/registers/" + "k" * 5000), ("GET", "/partitions/key"),
                  ("DELETE", "/health"), ("POST", "/nodes"), ("PATCH", "/registers/k"), ("GET", "/no/such/route"),
                  ("BREW", "/"), ("GET", "/kv/migrate?partition=-1"),
                  ("GET", "/kv/migrate?partition=99999999999999999999"),
                  ("POST", "/kv/delete?key="), ("GET", "/partitions/key?key=" + "%ff" * 100)]
        self.wait(self.settled, 60, "the cluster to settle before the HTTP fuzz")
        step = max(1, n // 10)
        for i in range(n):
            if i % 100 == 0:
                self.check_stop()
                self.reap()
            nid = rng.choice(sorted(self.c.nodes))
            method, path = rng.choice(routes)
            if path == "/leave":
                # (a /leave without a node_id is valid: the node leaves. Only malformed ones here.)
                body = rng.choice(leave_bodies)
            else:
                body = rng.choice(bodies) if method in ("PUT", "POST", "PATCH") or rng.random() < 0.2 else None
            big = rng.random() < 0.01
            status = self._raw_http(self.c.nodes[nid].http_port, method, path, body, big)
            self.http_status[status] += 1
            self.http_sent += 1
            if (i + 1) % step == 0:
                self.progress("http", i + 1, n, f"statuses {dict(sorted(self.http_status.items()))}")
        self.wait(self.settled, 60, "the cluster to settle after the HTTP fuzz")

    @staticmethod
    def _raw_http(port: int, method: str, path: str, body: bytes | None, big: bool) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            if big:  # 8 MiB announced and sent: the node must refuse it without keeping it
                conn.putrequest("PUT", "/registers/fuzz-big")
                conn.putheader("Content-Length", str(8 << 20))
                conn.putheader("Content-Type", "application/json")
                conn.endheaders()
                try:
                    for _ in range(128):
                        conn.send(b" " * (64 << 10))
                except OSError:
                    pass
            else:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException):
            return 0
        finally:
            conn.close()

    def disk_full(self) -> None:
        self.wait(self.settled, 60, "the cluster to settle before the disk-full episode")
        lead = self.leader()
        first = next(iter(self.c.nodes))
        victim = next(n for n in sorted(self.c.nodes) if n not in (lead, first))
        node = self.c.nodes[victim]
        where = self.root / "tmpfs"
        where.mkdir(exist_ok=True)
        size_mib = 4
        used = sum(f.stat().st_size for f in node.data_dir.rglob("*") if f.is_file()) if node.data_dir.exists() else 0
        if used > (3 << 20):
            size_mib = 4 + (used >> 20)
            self.notes.append(f"disk-full: {victim}'s data was {used >> 10} KiB: tmpfs of {size_mib} MiB")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            self.notes.append(f"disk-full: skipped, no tmpfs here ({done.stderr.strip()})")
            log.warning("disk-full episode skipped: cannot mount a tmpfs: %s", done.stderr.strip())
            return
        self.mounted = where
        log.info("disk-full: moving %s's data (%d KiB) onto a %d MiB tmpfs", victim, used >> 10, size_mib)
        self.c.terminate(victim)
        shutil.copytree(node.data_dir, where / "data")
        shutil.rmtree(node.data_dir)
        node.data_dir = where / "data"
        self.c.start(victim, join=None)
        self.wait(self.settled, 60, f"{victim} to run on the tmpfs")
        free = shutil.disk_usage(where).free
        filler = where / "filler"
        filler.write_bytes(b"\0" * max(0, free - (128 << 10)))
        self.expected_exits[victim] = EXIT_STORAGE_FAILED
        proc = node.process
        assert proc is not None
        # The load fills the rest; pad it with big register writes so that it doesn't take long.
        pad = "p" * (30 << 10)
        deadline = time.monotonic() + 120
        i = 0
        while proc.poll() is None and time.monotonic() < deadline:
            self.check_stop()
            http_json(self.c.nodes[lead].url + f"/registers/fuzz-pad-{i % 10}", "PUT", {"value": pad}, timeout=3.0)
            i += 1
        code = proc.poll()
        critical = [line for line in self.c.logs(victim).splitlines() if " CRITICAL " in line]
        if code != EXIT_STORAGE_FAILED:
            self.crashes.append(f"disk-full: {victim} did not exit 74 (exit code {code})")
        else:
            line = critical[-1].split(" CRITICAL ", 1)[-1][:200] if critical else "NO CRITICAL LINE"
            self.notes.append(f"disk-full: {victim} exited 74 after {i} padding writes: {line}")
        if not critical:
            self.crashes.append(f"disk-full: {victim} logged no CRITICAL line")
        if code is None:
            self.c.kill(victim)
        filler.unlink()
        del self.expected_exits[victim]
        self.c.start(victim, join=None)
        marker = f"after-disk-full-{os.getpid()}"

        def caught_up() -> bool:
            put = http_json(self.c.nodes[lead].url + "/registers/fuzz-marker", "PUT", {"value": marker}, timeout=3.0)
            if put[0] != 200:
                return False
            status, doc = http_json(node.url + "/registers/fuzz-marker", timeout=3.0)
            return status == 200 and doc.get("value") == marker and self.settled()

        self.wait(caught_up, 120, f"{victim} to rejoin after the disk was freed")
        self.notes.append(f"disk-full: {victim} restarted with space freed and caught up")
        self.progress("disk-full", 1, 1, f"{victim} exited {code} and rejoined")

    # ------------------------------------------------------------ the run
    def run(self) -> int:
        a = self.args
        log.info("soak in %s: kills %d, pauses %d, frames %d, http %d", self.root, a.kills, a.pauses, a.frames, a.http)
        t0 = time.monotonic()
        self.c.start_all()
        self.wait(self.settled, 60, "the cluster to form")
        self.rss_before = {nid: rss_kib(n.process.pid) for nid, n in self.c.nodes.items() if n.process}
        self.reg = RegisterLoad(self.c, self.history, self.counts, a.register_workers, a.seed)
        self.kvload = KVLoad(self.c, self.counts, a.kv_writers, a.kv_keys, a.seed)
        self.reg.start()
        self.kvload.start()
        lost, lost_detail = 0, []
        try:
            self.kills(a.kills)
            self.pauses(a.pauses)
            if a.wipe:
                self.wipe()
            self.frames(a.frames)
            self.http(a.http)
            if a.disk_full:
                self.disk_full()
            self.wait(self.settled, 60, "the cluster to settle at the end")
        finally:
            self.reg.join()
            lost, lost_detail = self.kvload.finish()
            self.history.close()
        self.reap()
        rss_after = {nid: rss_kib(n.process.pid) for nid, n in self.c.nodes.items() if n.process and n.alive}
        tracebacks = {nid: self.c.logs(nid).count("Traceback") for nid in self.c.nodes}
        ops = read_history(self.history.path.read_text(), "jsonl", str(self.history.path))
        result = check_operations(ops, model_for("kv"), budget_seconds=a.check_budget, clock=time.monotonic)
        c = self.counts
        summary = {
            "seconds": round(time.monotonic() - t0, 1),
            "kills": a.kills, "pauses": a.pauses, "frames": self.frames_sent, "frames_hung": self.frames_hung,
            "http": self.http_sent, "http_statuses": {str(k): v for k, v in sorted(self.http_status.items())},
            "register_writes_acknowledged": c.reg_ok, "register_writes_unknown": c.reg_info,
            "register_unknown_statuses": {str(k): v for k, v in sorted(c.reg_unknown_statuses.items())},
            "register_reads": c.reg_reads,
            "kv_writes_acknowledged": c.kv_acked, "kv_writes_unknown": c.kv_unknown, "kv_writes_failed": c.kv_failed,
            "kv_reads": c.kv_reads, "kv_keys_read_back": len(self.kvload.acked),
            "acknowledged_writes": c.reg_ok + c.kv_acked,
            "lost_writes": lost, "wrong_reads": len(c.wrong_reads),
            "linearizability": result.verdict.value if hasattr(result.verdict, "value") else str(result.verdict),
            "linearizable": result.ok, "history_operations": result.operations, "history_keys": result.keys,
            "crashes": len(self.crashes), "tracebacks": sum(tracebacks.values()),
            "rss_kib_before": self.rss_before, "rss_kib_after": rss_after,
            "kv_load_error": repr(self.kvload.error) if self.kvload.error else None,
            "notes": self.notes, "root": str(self.root),
        }
        lines = [
            "soak summary",
            f"  ran {summary['seconds']} s: {a.kills} kill/restart cycles, {a.pauses} pause cycles, "
            f"{self.frames_sent} fuzzed frames ({self.frames_hung} hung), {self.http_sent} malformed HTTP requests",
            f"  acknowledged writes: {summary['acknowledged_writes']} (registers {c.reg_ok}, KV {c.kv_acked}); "
            f"unknown outcome: registers {c.reg_info} (by status {dict(sorted(c.reg_unknown_statuses.items()))}), "
            f"KV {c.kv_unknown}; KV failed {c.kv_failed}",
            f"  lost writes:  {lost}   (KV keys read back: {len(self.kvload.acked)})",
            f"  wrong reads:  {len(c.wrong_reads)}   (register reads {c.reg_reads}, KV reads {c.kv_reads})",
            f"  linearizability (registers): {result.explain()}",
            f"  node crashes: {len(self.crashes)}",
            f"  tracebacks logged: {sum(tracebacks.values())} {tracebacks}",
            f"  HTTP statuses: {summary['http_statuses']}",
            "  RSS (KiB) before -> after: " + ", ".join(
                f"{nid} {self.rss_before.get(nid, 0)} -> {rss_after.get(nid, 0)}" for nid in sorted(self.c.nodes)),
            *[f"  note: {n}" for n in self.notes],
            *[f"  crash: {x}" for x in self.crashes],
            *[f"  lost: {x}" for x in lost_detail[:10]],
            *[f"  wrong: {x}" for x in c.wrong_reads[:10]],
            f"  history: {self.history.path}; node logs: {self.c.root}",
        ]
        print("\n".join(lines), flush=True)
        print("SOAK-SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
        good = (lost == 0 and not c.wrong_reads and not self.crashes and sum(tracebacks.values()) == 0
                and result.ok and self.kvload.error is None)
        return 0 if good else 1

    def cleanup(self) -> None:
        """Every node process reaped (paused ones resumed first), the tmpfs unmounted."""
        for nid in list(self.paused):
            proc = self.c.nodes[nid].process
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        self.paused.clear()
        if self.reg is not None:
            self.reg.stop.set()
        if self.kvload is not None:
            self.kvload.stop.set()
        self.c.stop()
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], capture_output=True)
            self.mounted = None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=100, help="SIGKILL/restart cycles, every other one on the leader")
    p.add_argument("--pauses", type=int, default=30, help="SIGSTOP/SIGCONT cycles, every other one on the leader")
    p.add_argument("--frames", type=int, default=20_000, help="fuzzed Raft and KV frames (half each)")
    p.add_argument("--http", type=int, default=2_000, help="malformed HTTP requests")
    p.add_argument("--no-wipe", dest="wipe", action="store_false", help="skip the wiped-disk rejoin")
    p.add_argument("--no-disk-full", dest="disk_full", action="store_false", help="skip the disk-full episode")
    p.add_argument("--near-max-terms", action="store_true",
                   help="let fuzzed Raft terms take 2**62-2 and 2**62-1 (as of 43ae4b1 that stops elections for good)")
    p.add_argument("--register-workers", type=int, default=4)
    p.add_argument("--kv-writers", type=int, default=8)
    p.add_argument("--kv-keys", type=int, default=50, help="keys per KV writer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-budget", type=float, default=120.0, help="seconds for the linearizability check")
    p.add_argument("--root", default="", help="where the nodes' data and logs go (default: a new temp dir)")
    p.add_argument("--quick", action="store_true", help="tiny numbers, every episode once: the smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.pauses, args.frames, args.http = 4, 2, 300, 100
        args.kv_keys = 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    soak = Soak(args)

    def on_signal(signum: int, _frame: Any) -> None:
        soak.stopping = True
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return soak.run()
    except Interrupted:
        log.warning("interrupted: stopping every node")
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
