"""py-spy profiles of a benchmarked process (`marketdata bench collector --profile`): sample it for the
measuring window and keep the top functions as a small text table (docs/profiles/collector-*.txt).

py-spy is not a project dependency: the one next to this interpreter (`pip install py-spy`), on PATH,
or in the peer virtualenv is used. It samples with --nonblocking, so the target is never paused.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

TOP = 40
SAMPLE_RATE = 200  # per second


class PySpyMissing(RuntimeError):
    """No py-spy binary was found."""


def binary() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    peers = Path.home() / ".cache" / "marketdata" / "bench-peers" / "bin" / "py-spy"
    for candidate in (beside, shutil.which("py-spy"), peers):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise PySpyMissing("py-spy not found: `pip install py-spy` into the project's virtualenv")


async def record(pid: int, seconds: float) -> str:
    """Sample `pid` for `seconds`; the summary table (see summarize)."""
    with tempfile.TemporaryDirectory(prefix="marketdata-pyspy-") as directory:
        raw = Path(directory) / "profile.txt"
        process = await asyncio.create_subprocess_exec(
            binary(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(SAMPLE_RATE),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(raw),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0 or not raw.exists():
            return (
                f"py-spy failed (exit {process.returncode}): {err.decode(errors='replace').strip()[-400:]}\n"
            )
        return summarize(raw.read_text())


def save(path: Path, title: str, table: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{table}")


def summarize(raw: str, top: int = TOP) -> str:
    """Sample shares from py-spy's raw format (`frame;frame;... count`, outermost first): per function,
    self (innermost frame) and total (on the stack at all, once per sample); and the hottest lines."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    lines_self: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        samples += count
        function, at_line = frames[-1]
        own[function] += count
        lines_self[at_line] += count
        for name in {f for f, _ in frames}:
            total[name] += count
    if not samples:
        return "no samples\n"
    out = [f"samples: {samples} at {SAMPLE_RATE}/s, running threads only (py-spy without --idle)", ""]
    for title, counter, limit in (
        ("self", own, top),
        ("total (self + callees)", total, top),
        ("self, per line", lines_self, top // 2),
    ):
        out += [
            f"## top {limit} by {title}",
            "",
            "| % | samples | function (file) |",
            "| ---: | ---: | --- |",
        ]
        for name, count in counter.most_common(limit):
            out.append(f"| {100 * count / samples:.1f} | {count} | {name} |")
        out.append("")
    return "\n".join(out)


def _short(frame: str) -> tuple[str, str]:
    """`fn (/abs/.../site-packages/pkg/mod.py:12)` -> (`fn (pkg/mod.py)`, `fn (pkg/mod.py:12)`)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "services/", "lib/python3.11/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    if not where:
        return name, name
    file = where.rsplit(":", 1)[0]
    return f"{name} ({file})", f"{name} ({where})"
