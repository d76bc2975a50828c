import os

import uvicorn
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEFAULT_SOCKET = "/tmp/django-stream.sock"
APP = "reference_impl.streaming.server:app"
"""Workers import the app by name: each is a process of its own, with its own coordinator."""
MAX_WORKERS = 64


def _port(value: str | int) -> int:
    # Checked in handle(), not as an argparse `type`: a CommandError raised while parsing escapes
    # Django's handling and ends the command with a traceback instead of a one-line error.
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 1 <= port <= 65535:
        raise CommandError(f"--port must be a number from 1 to 65535, got {value!r}")
    return port


def _workers(value: str | int) -> int:
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = 0
    if not 1 <= workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be a number from 1 to {MAX_WORKERS}, got {value!r}")
    return workers


def _reach_the_database() -> None:
    """Stop at start-up, with the reason, when the database cannot be reached: every stream needs
    it (the task rows, the event log and, on PostgreSQL, the notifications of push.py)."""
    from django.db import DatabaseError, connections

    from reference_impl.streaming.models import StreamEvent

    settings_dict = connections.settings["default"]
    engine = settings_dict["ENGINE"].rsplit(".", 1)[-1]
    where = f"{engine} {settings_dict.get('HOST') or settings_dict.get('NAME')}"
    connection = None
    try:
        connection = connections["default"]  # its driver is imported here, and may be missing
        table = connection.ops.quote_name(StreamEvent._meta.db_table)
        connection.ensure_connection()
        with connection.cursor() as cursor:  # the tables exist: `migrate` was run
            cursor.execute(f"SELECT 1 FROM {table} WHERE 1 = 0")
    except (DatabaseError, ImproperlyConfigured) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CommandError(f"cannot use the database {where}: {reason} "
                           "(is it running, is its driver installed, and was `migrate` run?)") from None
    finally:
        if connection is not None:
            connection.close()


def _supervise(config: uvicorn.Config, workers: int) -> None:
    """Bind the socket once, here, and run `workers` worker processes on it, each a
    `StreamingServer`; SIGTERM or SIGINT here is passed on to every worker (which ends its own
    streams), and this process waits for them. Not uvicorn's own supervisor: from 0.3x on it builds
    its workers' servers itself, and a worker must be a StreamingServer to end its streams."""
    import signal
    import threading

    from uvicorn._subprocess import get_subprocess

    sock = config.bind_socket()
    processes = [get_subprocess(config, target=StreamingServer(config).run, sockets=[sock])
                 for _ in range(workers)]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for process in processes:
        process.start()
    try:
        while not stop.is_set() and any(p.is_alive() for p in processes):
            stop.wait(0.1)
    finally:
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(10)
            if process.is_alive():  # past uvicorn's own graceful bound: nothing more to wait for
                process.kill()
        sock.close()


class StreamingServer(uvicorn.Server):
    """uvicorn's server, which first ends the open streams when it shuts down: its own graceful
    shutdown waits for every response to finish, and an SSE stream never does by itself. At module
    level: with --workers, each worker process is started with this server's bound `run`."""

    async def shutdown(self, sockets=None) -> None:
        from reference_impl.streaming.server import app

        app.stop()
        await super().shutdown(sockets)


class Command(BaseCommand):
    help = "Serve task streams over SSE with uvicorn, on a TCP port (--port) or a Unix socket."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", default=DEFAULT_SOCKET,
                            help=f"Unix socket path, used unless --port is given (default: {DEFAULT_SOCKET})")
        parser.add_argument("--host", default="127.0.0.1", help="Host to bind with --port")
        parser.add_argument("--port", help="TCP port; without it the Unix socket is used")
        parser.add_argument("--log-level", default="info",
                            choices=["critical", "error", "warning", "info", "debug"])
        parser.add_argument("--workers", default="1",
                            help="worker processes sharing the socket (default 1); each runs its own "
                                 "coordinator, so give them a shared database (DATABASE_URL)")

    def check(self, *args, **kwargs) -> None:
        # Before Django's system checks: from Django 6.0 on they open the database connection
        # themselves, and a database that cannot be reached would end in their traceback.
        _reach_the_database()
        super().check(*args, **kwargs)

    def handle(self, *args, **options) -> None:
        from reference_impl.streaming.conf import streaming_settings
        from reference_impl.streaming.server import app

        port = None if options["port"] is None else _port(options["port"])
        workers = _workers(options["workers"])
        socket_path = options["socket"]
        try:  # a bad STREAMING_* setting stops the server now, not at its first stream (a 500)
            streaming_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if options.get("skip_checks"):
            _reach_the_database()  # check() did it otherwise
        common = {"log_level": options["log_level"], "lifespan": "on", "timeout_graceful_shutdown": 5,
                  "workers": workers}
        many = f" with {workers} workers" if workers > 1 else ""
        if port:
            where = {"host": options["host"], "port": port}
            said = f"Starting streaming server on {options['host']}:{port}{many}"
        else:
            directory = os.path.dirname(os.path.abspath(socket_path))
            if not os.path.isdir(directory):
                raise CommandError(f"--socket: directory {directory} does not exist")
            if os.path.exists(socket_path):
                os.remove(socket_path)
            where = {"uds": socket_path}
            said = f"Starting streaming server on Unix socket: {socket_path}{many}"
        self.stdout.write(self.style.SUCCESS(said))
        if workers == 1:
            StreamingServer(uvicorn.Config(app, **where, **common)).run()
            return
        _supervise(uvicorn.Config(APP, **where, **common), workers)
