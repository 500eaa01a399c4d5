"""Pushing a DICOM series with a real sender: dcmtk ``storescu`` where installed, else
pynetdicom's ``storescu`` application (so a user without root can run the demo).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from spinemets.errors import SpineMetsError


def store_command(files_dir: Path, host: str, port: int, called: str, calling: str) -> list[str]:
    """The command line that sends every file under ``files_dir``."""
    if shutil.which("storescu"):
        return ["storescu", "-aet", calling, "-aec", called, "+sd", "+r", host, str(port),
                str(files_dir)]
    return [sys.executable, "-m", "pynetdicom", "storescu", host, str(port), str(files_dir),
            "-r", "-aet", calling, "-aec", called]


def push(files_dir: Path, host: str, port: int, called: str, calling: str,
         timeout: float = 600.0) -> str:
    """Send a folder of DICOM files; returns the sender's name; raises on failure."""
    command = store_command(files_dir, host, port, called, calling)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise SpineMetsError(f"{command[0]} failed ({result.returncode}): "
                             f"{result.stderr.strip()[-500:]}")
    return Path(command[0]).name if command[0] != sys.executable else "pynetdicom storescu"
