"""Every bound the harness runs under, in one place: a run that reaches one ends as cut short
("bound" in its history) and is reported, never left to hang.

Steps count the controlled loop's callbacks; virtual time costs nothing real (timers jump).
"""

from __future__ import annotations

LOOP_MAX_STEPS = 100_000
"""Callbacks one bare controlled-loop run (`harness.scheduler.run`) may take."""
LOOP_MAX_VIRTUAL_TIME = 24 * 3600.0
"""Virtual seconds one bare controlled-loop run may last."""
SHUTDOWN_STEPS = 10_000
"""Callbacks the loop may spend cancelling what is left when it shuts down."""

RUN_MAX_STEPS = 10_000
"""Callbacks one scenario run (a program, a scenario function, a replay) may take, unless its
profile or the failure being replayed says otherwise."""
RUN_MAX_VIRTUAL_TIME = 3_600.0
"""Virtual seconds one scenario run may last."""

SCRIPT_MAX_STEPS = 20_000
"""Steps the loop of a standalone reproduction script may take (its loop is simpler than the
controlled loop and counts its steps differently)."""

SETTLE_SECONDS = 60.0
"""Virtual seconds the system gets, after the scenario, to deliver what it owes."""
SETTLE_ROUNDS = 5
"""Settling rounds at most: a task taken over while the system settles is finished in the next."""

SHUTDOWN_GRACE = 5.0
"""Virtual seconds a simulated process shutting down gracefully gives its cancelled coroutines to
clean up (uvicorn's own default is to wait for open connections without a bound; a deployment's
orchestrator sends SIGKILL after its grace period, commonly 30 s, often less)."""

OFFLOAD_TIMEOUT = 60.0
"""Real seconds a call sent to the worker thread (a database call) may take."""
FOREIGN_GRACE = 1.0
"""Real seconds the loop waits for a callback from a thread of the implementation's own."""
