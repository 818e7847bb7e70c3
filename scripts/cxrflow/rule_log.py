"""One way for a rule's job to log: its own log file, with any failure's traceback in it.

Jobs run as threads of the Snakemake process (`run:`, :func:`job_log`) or as
scripts (`script:`, :func:`run_rule`); either way the log file is opened before
any work, so a failed job always leaves its log, and an exception that ends the
job is written there with its traceback before it propagates to Snakemake.

A rule script is two lines: choose what must be chosen before imports (the Keras
backend), then ``run_rule(snakemake.log[0], library_function, ...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

FORMAT = "%(asctime)s %(levelname)s %(message)s"
Result = TypeVar("Result")


def open_log(log_path: str | Path, name: str = "cxrflow") -> logging.Logger:
    """The package's logger, also writing to the rule's log file (appending: a resumed job keeps the first run's lines).

    Every ``cxrflow.*`` module logger propagates here, and Python warnings are captured too.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    target = str(Path(log_path).resolve())
    if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        return logger  # already attached (train and evaluate in one process): no doubled lines
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(handler)
    return logger


def run_rule(log_path: str | Path, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """A rule script's one call: open its log, run ``function(*args, **kwargs)``, and write an exception's
    traceback to the log before it propagates to Snakemake (which then names the log)."""
    log = open_log(log_path)
    try:
        return function(*args, **kwargs)
    except Exception:
        log.exception("%s failed", getattr(function, "__name__", "job"))
        raise


@contextmanager
def job_log(path: str | Path) -> Iterator[logging.Logger]:
    """A logger of its own for the job writing to ``path`` (appending: a resumed job keeps the first lines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"cxrflow.job.{path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    try:
        yield logger
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
