"""PROMETHEUS_MULTIPROC_DIR's housekeeping, importable before Django's settings and prometheus_client."""

from pathlib import Path


def multiprocess_dir_reset(path: str | Path) -> None:
    """Create the directory or empty it of a previous run's files (their pids are gone; summed, their
    counts would carry on as if those processes still ran). Only before any process writes there."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for file in directory.glob("*.db"):
        file.unlink(missing_ok=True)
