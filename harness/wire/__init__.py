"""The black-box HTTP mode's engine: the implementation runs as real server processes, clients are
real SSE connections, and the probe task takes its steps when the harness says so over a control
channel. It records the same history as the in-process engine (`harness.records`), plus what only
the wire shows (responses, framing), so the same checkers judge both.

- `servers`: start, health-check, stop and kill server processes; nothing left behind.
- `server_settings`: the Django settings module a server process runs under.
- `control`: the harness's end of the control channel; `link` is the probe's end, in the server.
- `clients`: SSE clients that record what they receive.
- `run`: one example over the wire, operation by operation, into a history.
"""
