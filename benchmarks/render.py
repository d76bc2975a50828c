"""Merge the per-implementation benchmark JSON into reports/bench.md and a PNG plot.

    python benchmarks/render.py [raw JSON files ...] [--out reports] [--previous FILE]

Without files it reads reports/bench/raw/*.json (what `run.py` wrote); a figure measured in
several passes keeps its best value. Writes:

- reports/bench/results.json: every figure by key and contender, with each process's metadata;
- reports/bench.md: absolute figures, ratios reference/upstream and reference/raw, the targets
  with their verdicts, and the changes since the previous run (reports/bench/previous.json);
- reports/bench-fanout.png: in-process deliveries/s against clients for every contender.

A regression is a figure of the reference that got worse than in the previous run by more than
REGRESSION_THRESHOLD, judged on its ratio to the baseline of its own run (raw, else upstream), so
that a machine slower as a whole is not read as a regression; the absolute change is shown too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
REF, UP, RAW = "reference", "upstream", "raw"
REF_NATIVE = f"{REF}-native"
"""The reference with its own client type (`Subscription`) instead of asyncio.Queue clients."""
REGRESSION_THRESHOLD = 0.15
WALL_REGRESSION_THRESHOLD = 0.40
"""Wall-clock figures (latencies, HTTP times) move more with the machine's load than CPU-time ones."""
TAIL_REGRESSION_THRESHOLD = 1.0
"""p99 latencies: a handful of samples decide them; only a doubling counts."""
MAIN_ORDER = (REF, UP, RAW)
HIGHER_IS_BETTER = "higher"


# -- loading ------------------------------------------------------------------------------------------


def merge(paths: list[Path]) -> dict[str, Any]:
    figures: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    runs: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        meta = data.get("streamspec", {})
        label = meta.get("sut", path.stem)
        runs.setdefault(label, {
            "implementation": meta.get("implementation"), "settings": meta.get("settings"),
            "versions": meta.get("versions"), "sizes": meta.get("sizes"),
            "python": data.get("machine_info", {}).get("python_version"),
            "machine": {k: data.get("machine_info", {}).get(k) for k in ("machine", "system", "release")},
            "cpu": data.get("machine_info", {}).get("cpu", {}).get("brand_raw"),
            "datetime": data.get("datetime"),
        })
        for bench in data.get("benchmarks", []):
            for fig in bench.get("extra_info", {}).get("figures", []):
                entry = {"value": fig["value"], "unit": fig["unit"], "better": fig["better"],
                         "clock": fig.get("clock"), "extra": fig.get("extra", {})}
                seen = figures[fig["key"]].get(fig["contender"])
                if seen is None or _better(entry, seen):  # several passes: keep the best
                    figures[fig["key"]][fig["contender"]] = entry
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs,
            "figures": dict(figures)}


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    if old["value"] is None:
        return new["value"] is not None
    if new["value"] is None:
        return False
    return new["value"] > old["value"] if new["better"] == "higher" else new["value"] < old["value"]


def value(results: dict[str, Any], key: str, contender: str) -> float | None:
    entry = results.get("figures", {}).get(key, {}).get(contender)
    if entry is None or entry["value"] is None or not math.isfinite(entry["value"]):
        return None
    return float(entry["value"])


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# -- formatting ---------------------------------------------------------------------------------------


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if unit in ("B",) and abs(x) >= 1024 * 1024:
        return f"{x / 1024 / 1024:,.2f} MiB"
    if unit in ("B",) and abs(x) >= 1024:
        return f"{x / 1024:,.2f} KiB"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def _sort_key(key: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in key.split("/"))


def contenders_of(results: dict[str, Any]) -> list[str]:
    seen = {c for per in results["figures"].values() for c in per}
    return [c for c in MAIN_ORDER if c in seen] + sorted(seen - set(MAIN_ORDER))


# -- targets ------------------------------------------------------------------------------------------


def best_reference(results: dict[str, Any], key: str) -> tuple[float | None, str]:
    """The reference's better figure of its two in-process client types (asyncio.Queue and its own
    `Subscription`), and which one: each implementation is judged with the best client it offers
    (upstream has only the queue)."""
    candidates = [(v, c) for c in (REF, REF_NATIVE) if (v := value(results, key, c)) is not None]
    if not candidates:
        return None, REF
    better = results["figures"][key][candidates[0][1]]["better"]
    pick = max if better == HIGHER_IS_BETTER else min
    return pick(candidates, key=lambda vc: vc[0])


def _client_note(contender: str) -> str:
    return " (Subscription clients)" if contender == REF_NATIVE else " (queue clients)"


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of the benchmark issue that has figures."""
    rows: list[tuple[str, str, bool | None]] = []
    fanout_sizes = sorted(int(k.split("/")[1]) for k in results["figures"] if k.startswith("fanout/"))
    for n in [n for n in fanout_sizes if 100 <= n <= 10_000]:
        key = f"fanout/{n}"
        best, who = best_reference(results, key)
        up = ratio(best, value(results, key, UP))
        raw = ratio(best, value(results, key, RAW))
        rows.append((f"fan-out, {n:,} clients: reference ≥ 3x upstream", fmt_ratio(up) + _client_note(who),
                     _ge(up, 3)))
        rows.append((f"fan-out, {n:,} clients: reference ≥ 80% of raw put_nowait",
                     "—" if raw is None else f"{raw:.0%}" + _client_note(who), _ge(raw, 0.8)))
    best, who = best_reference(results, "memory/idle-client")
    mem = ratio(best, value(results, "memory/idle-client", UP))
    rows.append(("memory per idle in-process client ≤ 1/3 of upstream's", fmt_ratio(mem) + _client_note(who),
                 None if mem is None else mem <= 1 / 3))
    for state in ("idle", "busy"):
        prefix = f"latejoin/{state}/"
        sizes = sorted({int(k.split("/")[2]) for k in results["figures"] if k.startswith(prefix)})
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]
            for q in ("p50", "p99"):
                high = results["figures"].get(f"latejoin/{state}/{hi}/{q}", {}).get(REF)
                low = results["figures"].get(f"latejoin/{state}/{lo}/{q}", {}).get(REF)
                if high is None or low is None:
                    continue
                growth = ratio(high["value"], low["value"])
                cpu_growth = ratio(high["extra"].get("cpu_us"), low["extra"].get("cpu_us"))
                raw_high = results["figures"].get(f"latejoin/{state}/{hi}/{q}", {}).get(RAW)
                raw_low = results["figures"].get(f"latejoin/{state}/{lo}/{q}", {}).get(RAW)
                raw_growth = None
                if raw_high is not None and raw_low is not None:
                    raw_growth = ratio(raw_high["extra"].get("cpu_us"), raw_low["extra"].get("cpu_us"))
                limit = 1.5 if q == "p50" else 3.0
                # Judged on the loop's CPU time where measured (wall time also counts preemption),
                # relative to the growth of the raw baseline (what a larger heap costs any program).
                judged = cpu_growth if cpu_growth is not None else growth
                if judged is not None and raw_growth:
                    judged = judged / max(raw_growth, 1.0)
                met = None if judged is None else judged <= limit
                rows.append((f"late-join {q} ({state} loop) independent of clients: growth from {lo:,} "
                             f"to {hi:,} clients within {limit}x of raw's",
                             f"{fmt_ratio(growth)} wall, {fmt_ratio(cpu_growth)} CPU; "
                             f"raw {fmt_ratio(raw_growth)} CPU", met))
    http = ratio(value(results, "http/deliveries/500", REF), value(results, "http/deliveries/500", UP))
    rows.append(("HTTP deliveries/s with 500 clients ≥ 2x upstream", fmt_ratio(http), _ge(http, 2)))
    cpu = ratio(value(results, "http/server-cpu/500", REF), value(results, "http/server-cpu/500", UP))
    if cpu is not None:
        rows.append(("(same, per CPU-second of the server process: load-independent companion)",
                     fmt_ratio(cpu), _ge(cpu, 2)))
    headers = results["figures"].get("http/headers", {}).get(REF)
    if headers is not None:
        delay_ms = headers["extra"].get("first_event_delay_s", 0) * 1000
        keepalives = headers["extra"].get("keepalives_before_first_event", 0)
        at_once = headers["value"] is not None and headers["value"] < 0.1 * delay_ms and keepalives > 0
        rows.append((f"response headers at once (first event after {delay_ms:.0f} ms), with keep-alives",
                     f"{fmt(headers['value'])} ms, {keepalives:g} keep-alives", at_once))
    push = results["figures"].get("workers/latency-p99/other-worker", {}).get("reference-push")
    if push is not None:
        poll = results["figures"]["workers/latency-p99/other-worker"].get("reference-poll")
        clients = push.get("extra", {}).get("clients", "?")
        rows.append((f"cross-worker delivery latency p99 ≤ 20 ms, {clients} clients over 2 workers (push)",
                     f"{fmt(push['value'])} ms (polling: {fmt(poll['value']) if poll else '—'} ms)",
                     push["value"] is not None and push["value"] <= 20))
    idle = sorted(k for k in results["figures"] if k.startswith("http/memory-idle/"))
    if idle:
        key = idle[-1]
        ref, up, raw = (value(results, key, who) for who in (REF, UP, RAW))
        mem = ratio(ref, up)
        above = ratio(None if ref is None or raw is None else ref - raw,
                      None if up is None or raw is None else up - raw)
        rows.append((f"memory per idle SSE connection (server RSS, {key.rsplit('/', 1)[1]} connections) "
                     "≤ 1/3 of upstream's", f"{fmt_ratio(mem)}; above uvicorn's floor (raw): "
                     f"{fmt_ratio(above)}", None if mem is None else mem <= 1 / 3))
    harness = value(results, "harness/scenarios", REF)
    rows.append(("harness ≥ 200 in-process scenarios/s (reference)", fmt(harness), _ge(harness, 200)))
    return rows


def _ge(x: float | None, limit: float) -> bool | None:
    return None if x is None else x >= limit


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**missed**")


# -- regressions --------------------------------------------------------------------------------------


def baseline_of(results: dict[str, Any], key: str) -> str | None:
    per = results["figures"].get(key, {})
    return RAW if RAW in per else (UP if UP in per else None)


def _comparable(entry: dict[str, Any], old_entry: dict[str, Any]) -> tuple[float, float] | None:
    """(new, old) to compare: the CPU-time percentile where both runs have one, else the value."""
    new, old = entry["value"], old_entry.get("value")
    if "cpu_us" in entry["extra"] and "cpu_us" in old_entry.get("extra", {}):
        new, old = entry["extra"]["cpu_us"], old_entry["extra"]["cpu_us"]
    if new is None or old is None or not math.isfinite(new) or not math.isfinite(old) or old == 0:
        return None
    return float(new), float(old)


def _threshold(key: str, entry: dict[str, Any], base: float) -> float:
    if key.endswith("/p99"):
        return max(base, TAIL_REGRESSION_THRESHOLD)
    if entry.get("clock") == "wall":  # latencies (even compared on CPU time) and HTTP wall times
        return max(base, WALL_REGRESSION_THRESHOLD)
    return base


def regressions(now: dict[str, Any], before: dict[str, Any],
                threshold: float = REGRESSION_THRESHOLD) -> list[dict[str, Any]]:
    rows = []
    for key, per in sorted(now["figures"].items(), key=lambda kv: _sort_key(kv[0])):
        for contender, entry in per.items():
            if contender in (RAW, UP):
                continue
            old_entry = before["figures"].get(key, {}).get(contender)
            if old_entry is None or old_entry.get("clock") != entry.get("clock"):
                continue  # not measured before, or with another clock: not comparable
            pair = _comparable(entry, old_entry)
            if pair is None:
                continue
            new, old = pair
            higher = entry["better"] == "higher"
            absolute = (new / old - 1) if higher else (old / new - 1 if new else 0.0)
            base, normalised = baseline_of(now, key), None
            if base is not None and base in before["figures"].get(key, {}):
                now_base = _comparable(now["figures"][key][base], before["figures"][key][base])
                if now_base is not None:
                    new_r, old_r = new / now_base[0], old / now_base[1]
                    normalised = (new_r / old_r - 1) if higher else (old_r / new_r - 1)
            if normalised is None:
                base = None
            judged = normalised if normalised is not None else absolute
            limit = _threshold(key, entry, threshold)
            floor = entry["extra"].get("noise_floor", 0)
            meaningful = abs(new - old) >= floor
            rows.append({"key": key, "contender": contender, "old": old, "new": new, "unit": entry["unit"],
                         "absolute": absolute, "normalised": normalised, "baseline": base,
                         "regression": meaningful and judged < -limit,
                         "improvement": meaningful and judged > limit})
    return rows


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.0%}"


# -- the report ---------------------------------------------------------------------------------------


def markdown(results: dict[str, Any], previous: dict[str, Any] | None, plot: str | None,
             threshold: float = REGRESSION_THRESHOLD) -> str:
    everyone = contenders_of(results)
    lines = ["# Benchmarks: reference vs upstream vs raw asyncio", ""]
    lines += [f"Generated {results['created']} by `benchmarks/render.py` from one run of "
              "`benchmarks/run.py`; every implementation measured in a process of its own, "
              "the raw-asyncio baseline in the reference's. Ratios compare contenders of the same run. "
              "For figures where lower is better (↓) a ratio below 1 favours the reference.", ""]
    lines += ["## Targets", "", "| target | measured | verdict |", "| --- | --- | --- |"]
    for target, measured, met in targets(results):
        lines.append(f"| {target} | {measured} | {verdict(met)} |")
    lines += ["", "## Figures", ""]
    variants = [c for c in everyone if c not in MAIN_ORDER]
    header = ["figure", "unit", "clock", *everyone, "ref/upstream", "ref/raw"]
    header += [f"{v}/{base}" for v in variants for base in (UP, RAW)]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for key in sorted(results["figures"], key=_sort_key):
        per = results["figures"][key]
        any_entry = next(iter(per.values()))
        unit = any_entry["unit"] + (" ↑" if any_entry["better"] == "higher" else " ↓")
        cells = [fmt(value(results, key, c), any_entry["unit"]) for c in everyone]
        for who in (REF, *variants):
            mine = value(results, key, who)
            cells += [fmt_ratio(ratio(mine, value(results, key, UP))),
                      fmt_ratio(ratio(mine, value(results, key, RAW)))]
        clock = any_entry.get("clock") or ""
        lines.append(f"| `{key}` | {unit} | {clock} | " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![in-process deliveries/s against clients]({plot})"]
    lines += ["", "## Changes since the previous run", ""]
    if previous is None:
        lines.append("No previous run (reports/bench/previous.json) to compare with.")
    else:
        rows = regressions(results, previous, threshold)
        bad = [r for r in rows if r["regression"]]
        lines.append(f"Previous run: {previous.get('created', '?')}. A regression is a figure "
                     f"{threshold:.0%} worse ({WALL_REGRESSION_THRESHOLD:.0%} for wall-clock figures, "
                     f"{TAIL_REGRESSION_THRESHOLD:.0%} for p99 latencies, compared on CPU time where "
                     f"measured), judged on its ratio to the same run's baseline (raw, else upstream) "
                     f"when both runs have it. On a machine shared with other work, expect some "
                     f"flags from load alone: rerun before acting on one. **{len(bad)} regression(s).**")
        lines += ["", "| figure | contender | previous | now | change | change vs baseline | |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            flag = "**regression**" if r["regression"] else ("improvement" if r["improvement"] else "")
            against = f" (vs {r['baseline']})" if r["baseline"] else ""
            lines.append(f"| `{r['key']}` | {r['contender']} | {fmt(r['old'], r['unit'])} | "
                         f"{fmt(r['new'], r['unit'])} | {pct(r['absolute'])} | "
                         f"{pct(r['normalised'])}{against} | {flag} |")
    lines += ["", "## Runs", "",
              "| contender | implementation | settings | python | django | uvicorn | sizes |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, run in results["runs"].items():
        impl = run.get("implementation") or {}
        versions = run.get("versions") or {}
        lines.append(f"| {label} | {impl.get('implementation', '?')} {impl.get('version', '')} | "
                     f"`{json.dumps(run.get('settings') or {})}` | {run.get('python')} | "
                     f"{versions.get('django', '?')} | {versions.get('uvicorn', '?')} | "
                     f"{'quick' if (run.get('sizes') or {}).get('quick') else 'full'} |")
    first = next(iter(results["runs"].values()), {})
    if first:
        lines += ["", f"Machine: {first.get('cpu') or '?'}, {first['machine'].get('system')} "
                  f"{first['machine'].get('machine')}. Sizes: `{json.dumps(first.get('sizes'))}`."]
    lines += ["", "Figure keys: `fanout/N` in-process deliveries (events x clients) per second to N clients; "
              "`latejoin/STATE/N/pQ` time from `add_client` to the joiner holding the replayed event with N "
              "clients attached; `lookup/hot|cold` one `get_task_instance`; `memory/idle-client` bytes per "
              "idle in-process client (queue + consumer + registration), `memory/registration` the part "
              "added by `add_client`, `memory/stuck-client` bytes still held after a client that never "
              "reads saw the events; `http/*` real `runserver_stream` processes; `workers/*` several "
              "server processes on one PostgreSQL database (latency from before `send_event` to a "
              "client on the task's own server or on another; deliveries/s with --workers N); "
              "`harness/scenarios` "
              "The contender `reference-native` is the reference with its own "
              "client type (`Subscription`, a position in the task's shared ring of events) instead of "
              "asyncio.Queue clients; targets judge each implementation by its better client. "
              "scenario runs per second. Definitions: the docstrings of `benchmarks/test_*.py`.", ""]
    return "\n".join(lines)


def plot_fanout(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = sorted((k for k in results["figures"] if k.startswith("fanout/")), key=_sort_key)
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = {REF: ("tab:green", "-", "o"), REF_NATIVE: ("tab:blue", "-", "D"), UP: ("tab:red", "-", "s"),
              RAW: ("tab:gray", "--", "^")}
    for contender in contenders_of(results):
        points = [(int(k.split("/")[1]), value(results, k, contender)) for k in keys]
        points = [(n, v) for n, v in points if v is not None]
        if not points:
            continue
        color, line, marker = styles.get(contender, (None, ":", "d"))
        label = "raw put_nowait" if contender == RAW else contender
        ax.plot([p[0] for p in points], [p[1] for p in points], line, marker=marker, color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients")
    ax.set_ylabel("deliveries / s (events x clients)")
    ax.set_title("In-process fan-out")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def render(paths: list[Path], out: Path, previous_path: Path | None = None,
           threshold: float = REGRESSION_THRESHOLD) -> Path:
    results = merge(paths)
    bench_dir = out / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    previous = None
    if previous_path is not None and Path(previous_path).exists():
        previous = json.loads(Path(previous_path).read_text())
    png = out / "bench-fanout.png"
    plotted = plot_fanout(results, png)
    report = out / "bench.md"
    report.write_text(markdown(results, previous, png.name if plotted else None, threshold))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="render benchmark JSON into reports/bench.md")
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--previous", type=Path, default=None,
                        help="merged results of an earlier run (default: OUT/bench/previous.json)")
    parser.add_argument("--threshold", type=float, default=REGRESSION_THRESHOLD,
                        help=f"relative change that counts as a regression (default {REGRESSION_THRESHOLD})")
    args = parser.parse_args(argv)
    files = args.files or sorted((args.out / "bench" / "raw").glob("*.json"))
    if not files:
        print(f"no benchmark JSON in {args.out / 'bench' / 'raw'}: run benchmarks/run.py first",
              file=sys.stderr)
        return 2
    previous = args.previous or args.out / "bench" / "previous.json"
    print(render(files, args.out, previous, args.threshold))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
