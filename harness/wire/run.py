"""One example over the wire: server processes, the control channel, clients, and the history.

`WireRun` performs operations (the in-process programs' vocabulary, see `scenarios.program`, with
a server named by its position) against real servers and records the same history as the
in-process engine. What the wire cannot show is not invented: no object tokens (a request's lookup
is inside the server), no resource counts, no buffer sizes; the verdicts that need them are
UNKNOWN (see `harness.checkers.UNOBSERVABLE`).

Nothing here controls the order in which the servers run: the operation sequence is the caller's,
the interleavings inside and between the servers are the operating system's. `finish` waits until
nothing has happened for `quiet` seconds (bounded), so "the system drained" is judged in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from harness.adapters import spellings_of, stream_path_of
from harness.conventions import Conventions
from harness.errors import UsageError
from harness.recorder import Recorder
from harness.records import (
    HARNESS,
    Complete,
    Connections,
    Fault,
    Invoke,
    Response,
    RunEnd,
    Snapshot,
    StreamEnd,
)
from harness.runner import persisted_task
from harness.spec import HEAD_BOUND, LEAVE_BOUND
from harness.wire.clients import WireClient, judged_headers
from harness.wire.control import ControlServer
from harness.wire.servers import SHUTDOWN_BOUND, Server
from harness.wire.steps import HOSTILE_HEADERS, hostile_paths

QUIET_SECONDS = 0.6
"""The system has drained when nothing was recorded for this long (longer than a relay's poll)."""
SETTLE_BOUND = 10.0
"""Seconds `finish` waits at most for quiet; past it the run ends as a hang."""
SETTLE_ROUNDS = 3
REQUEST_TIMEOUT = 5.0
"""Seconds a malformed or hostile request waits for its response (W4: never a hang)."""
BODY_KEPT = 300
"""Characters of a refused request's answer kept in its Response record (W7 compares them)."""
BODY_SECONDS = 0.5
"""How long a refused request's body is read: a stream it should not have got says so at once."""
MISSING_OFFSET = 10**6
"""A refused request is also made for the task's pk plus this: a task that does not exist."""


class WireRun:
    """Drive one example: `open`, then one method call per operation, then `finish`; `close` always."""

    def __init__(self, adapter: Any, sut: str, database_url: str, log_dir: str, *, processes: int = 1,
                 quiet: float = QUIET_SECONDS) -> None:
        self.adapter, self.sut, self.database_url, self.log_dir = adapter, sut, database_url, log_dir
        self.initial_processes = processes
        self.quiet = quiet
        self._t0 = time.monotonic()
        self.recorder = Recorder(lambda: round(time.monotonic() - self._t0, 6))
        self.control = ControlServer(self._add, self._token_of_pk)
        self.conventions = Conventions.of(adapter)
        self.servers: dict[str, Server] = {}
        self.tasks: list[str] = []
        self.pks: dict[str, Any] = {}
        self._tokens: dict[str, str] = {}
        self.clients: list[WireClient] = []
        self._ops = 0
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))
        from harness.probe.models import ProbeTask

        self.model = ProbeTask

    # -- lifecycle --

    def _add(self, kind: type, process: str, **fields: Any) -> Any:
        return self.recorder.add(kind, process, **fields)

    def _token_of_pk(self, pk: str) -> str | None:
        return self._tokens.get(str(pk))

    async def open(self) -> None:
        await self.control.start()
        await asyncio.gather(*(self._start_server() for _ in range(self.initial_processes)))

    async def _start_server(self) -> Server:
        name = f"p{len(self.servers)}"
        server = Server(name, self.adapter, self.sut, self.database_url, self.control.address, self.log_dir)
        self.servers[name] = server
        await server.start()
        return server

    def server(self, index: int) -> Server:
        names = list(self.servers)
        if not 0 <= index < len(names):
            raise UsageError(f"no server process {index}: the example has {len(names)}")
        return self.servers[names[index]]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self._http.aclose()
        for server in self.servers.values():
            server.kill()
        await self.control.close()

    # -- operations --

    def _invoke(self, op: str, task: str | None, args: dict[str, Any], process: str) -> str:
        self._ops += 1
        op_id = f"op{self._ops}"
        self.recorder.add(Invoke, process, op_id=op_id, op=op, task=task, args=args)
        return op_id

    def _done(self, op_id: str, process: str = HARNESS, **fields: Any) -> None:
        self.recorder.add(Complete, process, op_id=op_id, status=fields.pop("status", "ok"), **fields)

    async def create(self) -> str:
        op_id = self._invoke("create", None, {}, HARNESS)
        row = await self.model._default_manager.acreate()
        token = f"T{len(self.tasks) + 1}"
        self.tasks.append(token)
        self.pks[token] = row.pk
        self._tokens[str(row.pk)] = token
        self._done(op_id, value=token)
        return token

    def stream_url(self, server: Server, task: str, spelling: int = 0) -> str:
        """The URL of `task`'s stream on `server`, its row named the `spelling`-th way the
        implementation accepts (0: the canonical one; see `harness.adapters.spellings_of`)."""
        spellings = spellings_of(self.adapter, self.model, self.pks[task])
        app_label, model_name, pk = spellings[spelling % len(spellings)]
        return server.base_url + stream_path_of(self.adapter, app_label, model_name, pk)

    async def attach(self, task: str, process: int = 0, headers: dict[str, str] | None = None,
                     resumes: WireClient | None = None, spelling: int = 0) -> WireClient:
        server = self.server(process)
        name = f"c{len(self.clients) + 1}"
        args: dict[str, Any] = {"client": name, "via": None}
        url = self.stream_url(server, task, spelling)
        if spelling:
            # The same row named another way (the model's letter case, a leading zero): still the
            # one task, run once (S4), with every event (S2).
            args["spelling"] = url.removeprefix(server.base_url)
        if headers:
            args["headers"] = dict(headers)
        if resumes is not None:
            # W5 and S3 read these: which stream this one resumes, and the last event it had.
            args["resumes"] = resumes.name
            args["after_seq"] = resumes.last_seq
        op_id = self._invoke("attach", task, args, server.name)
        client = WireClient(name, task, server.name, url, op_id, self._add,
                            self.conventions, lambda: server.state, self._http, headers)
        self.clients.append(client)  # before any await: clients of a crowd get distinct names
        client.open()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.answered.wait(), HEAD_BOUND + 0.5)
        return client

    async def crowd(self, task: str, process: int, count: int) -> list[WireClient]:
        """`count` clients at once on one server (past its limit of open streams, if it has a small
        one): each must be streamed to or refused cleanly, and those already there served on."""
        return list(await asyncio.gather(*(self.attach(task, process) for _ in range(count))))

    def client(self, index: int) -> WireClient:
        if not 0 <= index < len(self.clients):
            raise UsageError(f"no client {index}: the example has {len(self.clients)}")
        return self.clients[index]

    async def detach(self, index: int) -> None:
        client = self.client(index)
        op_id = self._invoke("detach", client.task, {"client": client.name}, client.process)
        ended = client.ended
        await client.close(detaching=True)
        if not ended:
            self.recorder.add(StreamEnd, client.process, client=client.name, reason="detached")
        self._done(op_id, client.process)

    async def reconnect(self, index: int, process: int) -> WireClient:
        """The client's connection drops and it reconnects, on server `process`, as an EventSource
        does: with ``Last-Event-ID`` set to the last event id it received (none if it got none)."""
        old = self.client(index)
        await self.detach(index)
        headers = {"Last-Event-ID": old.last_event_id} if old.last_event_id is not None else None
        return await self.attach(old.task, process, headers=headers, resumes=old)

    def stall(self, index: int) -> None:
        client = self.client(index)
        op_id = self._invoke("stall", client.task, {"client": client.name}, client.process)
        client.stall()
        self._done(op_id, client.process)

    def release(self, task: str, count: int = 1) -> None:
        op_id = self._invoke("release", task, {} if count == 1 else {"count": count}, HARNESS)
        for _ in range(count):
            self.control.command(task, "send")
        self._done(op_id)

    def finish_task(self, task: str, ok: bool, how: str | None = None) -> None:
        op_id = self._invoke("finish_ok" if ok else "finish_fail", task, {"how": how} if how else {}, HARNESS)
        self.control.command(task, "return" if ok else "fail", how)
        self._done(op_id)

    def _streams_end(self, server: Server, reason: str) -> None:
        for client in self.clients:
            if client.process == server.name and not client.ended:
                client.ended = True
                self.recorder.add(StreamEnd, server.name, client=client.name, reason=reason)

    async def crash(self, process: int) -> str:
        server = self.server(process)
        op_id = self._invoke("crash", None, {"process": server.name}, HARNESS)
        server.kill()
        self.control.run_gone(server.name)
        self.recorder.add(Fault, server.name, fault="crash")
        self._streams_end(server, "crashed")
        self._done(op_id)
        return server.name

    async def shutdown(self, process: int) -> float | None:
        """SIGTERM, and the seconds the server took to exit (None: past `SHUTDOWN_BOUND`, killed)."""
        server = self.server(process)
        op_id = self._invoke("shutdown", None, {"process": server.name}, HARNESS)
        self.recorder.add(Fault, server.name, fault="shutdown")
        took = await server.terminate(SHUTDOWN_BOUND)
        self.control.run_gone(server.name)
        self._streams_end(server, "shutdown")
        self._done(op_id, value={"seconds": None if took is None else round(took, 3)})
        return took

    async def restart(self, process: int) -> str:
        """kill -9 of the server at position `process`, and a new one in its place."""
        await self.crash(process)
        return await self.replace(process)

    async def replace(self, process: int) -> str:
        """A new server in the place of the (dead or stopped) one at position `process`: later
        steps naming that position reach the new one, as a deploy's replacement takes its traffic."""
        old = self.server(process)
        new = await self._start_server()
        names = [n for n in self.servers if n != new.name]
        names[names.index(old.name)] = new.name
        self.servers = {n: self.servers[n] for n in [*names, old.name]}
        op_id = self._invoke("restart", None, {"process": new.name, "replaces": old.name}, HARNESS)
        self.recorder.add(Fault, new.name, fault="restart", replaces=old.name)
        self._done(op_id)
        return new.name

    async def wait(self, seconds: float) -> None:
        op_id = self._invoke("wait", None, {"seconds": seconds}, HARNESS)
        await asyncio.sleep(seconds)
        self._done(op_id)

    async def request(self, process: int, method: str, path: str,
                      headers: dict[str, str] | None = None, may_stream: bool = False) -> int | None:
        """A malformed or hostile request (W4): its status, or None if none came within the bound.
        `may_stream`: a valid stream request with a bad header the implementation may ignore."""
        server = self.server(process)
        name = f"r{self._ops + 1}"
        args = {"client": name, "method": method, "path": path, "headers": dict(headers or {})}
        if may_stream:
            args["may_stream"] = True
        op_id = self._invoke("request", None, args, server.name)
        return await self._answered(op_id, server, name, method, path, headers)

    async def _answered(self, op_id: str, server: Server, name: str, method: str, path: str,
                        headers: dict[str, str] | None = None, keep_body: bool = False) -> int | None:
        """Send request `op_id` (bounded by REQUEST_TIMEOUT), record its response head, with
        `keep_body` also the start of its body (read for `BODY_SECONDS` at most), and complete the
        operation: the status, or None if no answer came."""
        began = time.monotonic()
        try:
            async with self._http.stream(method, server.base_url + path, headers=headers,
                                         timeout=REQUEST_TIMEOUT) as response:
                after = round(time.monotonic() - began, 6)
                body = None
                if keep_body:
                    kept = bytearray()
                    with contextlib.suppress(TimeoutError, httpx.HTTPError):
                        async with asyncio.timeout(BODY_SECONDS):
                            async for chunk in response.aiter_bytes():
                                kept += chunk
                                if len(kept) >= BODY_KEPT:
                                    break
                    body = kept[:BODY_KEPT].decode("utf-8", "replace")
                self.recorder.add(Response, server.name, client=name, status=response.status_code,
                                  headers=judged_headers(response), after=after, body=body)
        except httpx.HTTPError as exc:
            self._done(op_id, server.name, status="unknown", error=f"{type(exc).__name__}: {exc}")
            return None
        self._done(op_id, server.name, value={"status": response.status_code})
        return response.status_code

    async def hostile_request(self, process: int, task: str, which: int) -> int | None:
        """The `which`-th hostile request for `task` (W4) to server `process`: one of
        `hostile_paths`, then the task's own stream with one of `HOSTILE_HEADERS`."""
        meta = self.model._meta
        paths = hostile_paths(meta.app_label, meta.object_name, self.pks[task])
        which %= len(paths) + len(HOSTILE_HEADERS)
        if which < len(paths):
            method, path = paths[which]
            return await self.request(process, method, path)
        server = self.server(process)
        path = self.stream_url(server, task).removeprefix(server.base_url)
        return await self.request(process, "GET", path, HOSTILE_HEADERS[which - len(paths)], may_stream=True)

    async def intrude(self, task: str, process: int, which: int) -> None:
        """W7: request the task's stream the way the adapter says the implementation refuses
        (its ``refused_paths``, the `which`-th), and the same way for a task that does not exist:
        both answers are recorded with their bodies, for the checker to compare."""
        server = self.server(process)
        hook = getattr(self.adapter, "refused_paths", None)
        meta = self.model._meta
        pk = self.pks[task]
        if not callable(hook):
            op_id = self._invoke("intrude", task, {"how": None}, server.name)
            self._done(op_id, server.name, status="fail",
                       error="the adapter names no request its implementation refuses (refused_paths)")
            return
        ways = list(hook(meta.app_label, meta.object_name, str(pk)).items())
        if not ways:
            raise UsageError(f"{self.adapter.name}: refused_paths() names no request")
        how, path = ways[which % len(ways)]
        missing = dict(hook(meta.app_label, meta.object_name, str(pk + MISSING_OFFSET)))[how]
        for target, is_missing in ((path, False), (missing, True)):
            name = f"r{self._ops + 1}"
            op_id = self._invoke("intrude", task, {"client": name, "how": how, "path": target,
                                                    "missing": is_missing}, server.name)
            await self._answered(op_id, server, name, "GET", target, {"Accept": "text/event-stream"},
                                 keep_body=True)

    # -- the end --

    async def _quiet(self, bound: float) -> bool:
        """Wait until nothing was recorded for `self.quiet` seconds (or, after a kill while clients
        wait, for the adapter's takeover time); False if `bound` passed first."""
        quiet = self.quiet
        killed = any(s.state == "killed" for s in self.servers.values())
        if killed and any(not c.ended for c in self.clients):
            quiet = max(quiet, float(getattr(self.adapter, "http_takeover_seconds", 0.0)))
        deadline = time.monotonic() + max(bound, quiet + 1.0)
        seen = len(self.recorder.records)
        last = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = len(self.recorder.records)
            if now != seen:
                seen, last = now, time.monotonic()
            elif time.monotonic() - last >= quiet:
                return True
        return False

    async def finish(self) -> None:
        """Settle (finish every live run, let the system deliver), snapshot the rows, end the run."""
        drained = True
        for _ in range(SETTLE_ROUNDS):
            live = self.control.live_runs()
            for run in live:
                if not self.control.pending(run.task):
                    self.control.command(run.task, "return")
            drained = await self._quiet(SETTLE_BOUND)
            if not self.control.live_runs():
                break
        for client in self.clients:
            client.resume()  # the stalled read again: what waited is delivered
        drained = await self._quiet(SETTLE_BOUND) and drained
        persisted = {}
        for task in self.tasks:
            row = await self.adapter.persisted(self.model, self.pks[task])
            persisted[task] = persisted_task(row, self.conventions)
        self.recorder.add(Snapshot, HARNESS, persisted=persisted)
        waiting = [c.name for c in self.clients if not c.ended]
        await self._connections_after_leaving()
        self.recorder.close(RunEnd, HARNESS, reason="done" if drained else "hang", waiting=waiting)

    async def _connections_after_leaving(self) -> None:
        """W6: every client leaves; each running server gets `LEAVE_BOUND` seconds to let their
        connections go, and what it still holds then is recorded."""
        for client in self.clients:
            await client.close()
        began = time.monotonic()
        for server in self.servers.values():
            if server.state != "up":
                continue
            held = server.open_connections()
            while held and time.monotonic() - began < LEAVE_BOUND:
                await asyncio.sleep(0.05)
                held = server.open_connections()
            if held is not None:
                self.recorder.add(Connections, server.name, held=held,
                                  waited=round(time.monotonic() - began, 3))

