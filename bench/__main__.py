"""`python -m bench [--quick] [--only training,memory] [--out PATH]`: run the benches and write
bench/RESULTS.md (a table of figure | target | measured | ok, the machine and the command).

A bench that fails does not stop the others: it becomes a row saying what went wrong, and the
exit status is 1. A missed target is a "no" in the table, not a failure of the command: on a
machine shared with other work, timings miss for reasons that are not the code's.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench.common import ROOT, machine_description, row

BENCHES = (
    "training",
    "quality",
    "memory",
    "projection",
    "gpu",
    "startup",
    "store",
    "watching",
    "uploads",
)  # bench_<name>.py, in running order
OPTIONAL_BENCHES = {"projection"}  # written separately; may not exist yet
RESULTS_PATH = ROOT / "bench" / "RESULTS.md"


def run_bench(name: str, quick: bool) -> tuple[list[dict], float, bool]:
    """The rows of bench_<name>, the seconds it took and whether it crashed; a missing optional bench
    or a crash is a row."""
    started = time.perf_counter()
    module_name = f"bench.bench_{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if name in OPTIONAL_BENCHES and error.name == module_name:
            return [row(f"{name} bench", "-", f"skipped: {module_name} does not exist yet", None)], 0.0, False
        return [failure_row(name, error)], time.perf_counter() - started, True
    try:
        rows = call_run(module, quick)
    except Exception as error:  # one broken bench must not cost the results of the others
        traceback.print_exc()
        return [failure_row(name, error)], time.perf_counter() - started, True
    return rows, time.perf_counter() - started, False


def call_run(module, quick: bool) -> list[dict]:
    """`module.run(quick=...)`, or `module.run()` for a bench that has no quick variant."""
    if "quick" in inspect.signature(module.run).parameters:
        return module.run(quick=quick)
    return module.run()


def failure_row(name: str, error: BaseException) -> dict:
    return row(f"{name} bench", "-", f"failed: {type(error).__name__}: {error}", False)


def ok_mark(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[ok]


def cell(value: object) -> str:
    """A table cell: None (no target) as a dash, and nothing that would break the markdown row."""
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def render(results: list[tuple[str, list[dict], float]], command: str, quick: bool, total_seconds: float) -> str:
    machine = machine_description()
    lines = [
        "# Benchmark results" + (" (quick variants)" if quick else ""),
        "",
        f"Command: `{command}` (from the project root); took {total_seconds / 60:.1f} min "
        f"({', '.join(f'{name} {seconds / 60:.1f}' for name, _, seconds in results)}).",
        "",
        "Machine: " + "; ".join(f"{key} {value}" for key, value in machine.items()) + ".",
        "Timings are wall-clock on a machine other processes share; speed comparisons interleave their",
        "candidates round by round and report medians (ratios: medians of per-round ratios).",
        "",
        "| figure | target | measured | ok |",
        "| --- | --- | --- | --- |",
    ]
    for _, rows, _ in results:
        lines += [
            f"| {cell(r['figure'])} | {cell(r['target'])} | {cell(r['measured'])} | {ok_mark(r['ok'])} |" for r in rows
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run VAE Studio's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="the short variants (minutes, not tens of minutes)")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the markdown table")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")

    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results, crashed = [], False
    for name in names:
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        rows, seconds, bench_crashed = run_bench(name, args.quick)
        results.append((name, rows, seconds))
        crashed |= bench_crashed
        for item in rows:
            print(f"  {ok_mark(item['ok']):6} {item['figure']}: {item['measured']}", file=sys.stderr, flush=True)
    args.out.write_text(render(results, command.strip(), args.quick, time.perf_counter() - started))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
