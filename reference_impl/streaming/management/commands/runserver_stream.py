import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEFAULT_SOCKET = "/tmp/django-stream.sock"


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


def _server_class() -> type:
    import uvicorn

    class StreamingServer(uvicorn.Server):
        """uvicorn's server, which first ends the open streams when it shuts down: its own graceful
        shutdown waits for every response to finish, and an SSE stream never does by itself."""

        async def shutdown(self, sockets=None) -> None:
            from reference_impl.streaming.server import app

            app.stop()
            await super().shutdown(sockets)

    return StreamingServer


class Command(BaseCommand):
    help = "Serve task streams over SSE with uvicorn, on a TCP port (--port) or a Unix socket."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", default=DEFAULT_SOCKET,
                            help=f"Unix socket path, used unless --port is given (default: {DEFAULT_SOCKET})")
        parser.add_argument("--host", default="127.0.0.1", help="Host to bind with --port")
        parser.add_argument("--port", help="TCP port; without it the Unix socket is used")
        parser.add_argument("--log-level", default="info",
                            choices=["critical", "error", "warning", "info", "debug"])

    def handle(self, *args, **options) -> None:
        import uvicorn

        from reference_impl.streaming.conf import streaming_settings
        from reference_impl.streaming.server import app

        port = None if options["port"] is None else _port(options["port"])
        socket_path = options["socket"]
        try:  # a bad STREAMING_* setting stops the server now, not at its first stream (a 500)
            streaming_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        common = {"log_level": options["log_level"], "lifespan": "on", "timeout_graceful_shutdown": 5}
        if port:
            self.stdout.write(self.style.SUCCESS(f"Starting streaming server on {options['host']}:{port}"))
            _server_class()(uvicorn.Config(app, host=options["host"], port=port, **common)).run()
            return
        directory = os.path.dirname(os.path.abspath(socket_path))
        if not os.path.isdir(directory):
            raise CommandError(f"--socket: directory {directory} does not exist")
        if os.path.exists(socket_path):
            os.remove(socket_path)
        self.stdout.write(self.style.SUCCESS(f"Starting streaming server on Unix socket: {socket_path}"))
        _server_class()(uvicorn.Config(app, uds=socket_path, **common)).run()
