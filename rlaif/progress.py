"""Progress for long work: rich bars on a terminal, plain periodic lines everywhere else.

Rich draws nothing until the end when its console is not a terminal (CI logs, ``| tee``), so a
long command would look dead. :func:`make_progress` returns rich's ``Progress`` on a terminal and
a :class:`LineProgress` otherwise: one line when a stage starts, a count at most every
``interval`` seconds, and one line when it ends.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

#: seconds between two count lines of one stage when the output is not a terminal
DEFAULT_INTERVAL = 10.0


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last_line: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)
    finished: bool = False


class LineProgress:
    """The subset of ``rich.progress.Progress`` the package uses, printed as plain lines."""

    def __init__(self, stream: IO[str] | None = None, interval: float = DEFAULT_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.tasks: dict[int, _Task] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to draw before the first task; kept for rich's interface."""

    def stop(self) -> None:
        """Print the closing line of every task that has not printed one."""
        for task in self.tasks.values():
            if not task.finished:
                self._finish(task)

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        """Start a stage: prints ``description: started`` with its size when known."""
        task_id = len(self.tasks)
        self.tasks[task_id] = _Task(description, total, fields=dict(fields))
        size = "" if total is None else f" ({_count(total)} to do)"
        self._print(f"{description.strip()}: started{size}")
        return task_id

    def remove_task(self, task_id: int) -> None:
        """End a stage as rich's ``remove_task`` does: its closing line if it has not printed
        one, then nothing more for it (the task keeps its id, so ids stay unique)."""
        task = self.tasks[task_id]
        if not task.finished:
            self._finish(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count ``advance`` more units of work done."""
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Change a task like rich does; prints a count line when ``interval`` has passed."""
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        if task.finished:
            return
        if task.total is not None and task.completed >= task.total:
            self._finish(task)
        elif time.monotonic() - task.last_line >= self.interval:
            task.last_line = time.monotonic()
            self._print(f"{task.description.strip()}: {self._done(task)}{self._info(task)}")

    def _finish(self, task: _Task) -> None:
        task.finished = True
        elapsed = time.monotonic() - task.started
        self._print(
            f"{task.description.strip()}: {self._done(task)} in {elapsed:.1f} s{self._info(task)}"
        )

    @staticmethod
    def _done(task: _Task) -> str:
        total = "?" if task.total is None else _count(task.total)
        return f"{_count(task.completed)}/{total}"

    @staticmethod
    def _info(task: _Task) -> str:
        info = task.fields.get("info")
        return f" ({info})" if info else ""

    def _print(self, line: str) -> None:
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def make_progress(*columns: Any, console: Any = None, disable: bool = False, **kwargs: Any):
    """A rich ``Progress`` on a terminal; a :class:`LineProgress` when output goes elsewhere.

    ``console`` is the rich console to draw on (default: stdout); ``disable`` silences both.
    """
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console()
    if disable or console.is_terminal:
        return Progress(*columns, console=console, disable=disable, **kwargs)
    return LineProgress(stream=console.file)
