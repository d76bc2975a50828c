"""What clients saw in a history recorded over the wire, one line per thing, with its time: the
story of an example, as the HTTP mode's reports and standalone scripts tell it."""

from __future__ import annotations

from harness.history import History

__all__ = ["client_timeline"]


def client_timeline(history: History) -> list[str]:
    """One line per fault and per thing a client saw, with its time: the story of an example."""
    lines = []
    for r in history.records:
        at = f"{r.time:8.3f}s"
        if r.kind == "fault":
            replaces = f" (replaces {r.replaces})" if r.replaces else ""
            lines.append(f"{at}  {r.process}: {r.fault}{replaces}")
        elif r.kind == "response":
            lines.append(f"{at}  {r.client} on {r.process}: HTTP {r.status} "
                         f"{r.headers.get('content-type', '')} after {r.after:.3f}s")
        elif r.kind == "deliver":
            seq = "" if r.seq is None else f" #{r.seq}"
            lines.append(f"{at}  {r.client}: {r.event_type}{seq}")
        elif r.kind == "stream_end":
            lines.append(f"{at}  {r.client}: stream ended ({r.reason})")
        elif r.kind == "connections" and r.held:
            lines.append(f"{at}  {r.process}: still holds {r.held} connection(s) of clients that left")
        elif r.kind == "wire_error":
            lines.append(f"{at}  {r.client}: {r.problem}")
        elif r.kind == "process_enter":
            lines.append(f"{at}  {r.process}: process() of {r.task} begins")
        elif r.kind == "invoke" and r.op == "intrude" and r.args.get("client"):
            missing = " for a task that does not exist" if r.args.get("missing") else ""
            lines.append(f"{at}  {r.args['client']}: a request with {r.args['how']}{missing} on {r.process}")
        elif r.kind == "invoke" and r.op in ("attach", "detach") and r.args.get("client"):
            resumes = f" resuming {r.args['resumes']}" if r.args.get("resumes") else ""
            lines.append(f"{at}  {r.args['client']}: {r.op} on {r.process}{resumes}")
    return lines
