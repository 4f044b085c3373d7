"""The peer clients' own virtualenv: cryptofeed and ccxt at pinned versions, kept apart from the
project's environment (their dependency pins are not ours), created on first use and reused."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

# The versions the published comparison used; cryptofeed 2.4.x is the reference.
PEER_REQUIREMENTS = ("cryptofeed==2.4.1", "ccxt==4.5.90")


class PeerSetupError(RuntimeError):
    """The peer virtualenv could not be created or installed (the message says which step)."""


def peer_python(directory: Path) -> Path:
    """The interpreter of the peer virtualenv at `directory`, creating and installing it if needed."""
    python = directory / "bin" / "python"
    marker = directory / "requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        try:
            venv.create(directory, with_pip=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise PeerSetupError(f"cannot create the peer virtualenv at {directory}: {exc}") from exc
    print(f"installing {', '.join(PEER_REQUIREMENTS)} into {directory} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PeerSetupError(f"pip install of {' '.join(PEER_REQUIREMENTS)} failed: " + " | ".join(tail))
    marker.write_text(wanted)
    return python
