"""Short commands run to completion (in the root namespace or inside a lab namespace), and polling with a deadline."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from l2mesh.lab.errors import LabError

COMMAND_TIMEOUT_S = 30.0

T = TypeVar("T")

# How a lab runs a short command: argv and a timeout in, the finished process out. The lab's own
# tests pass one that fails on purpose, to prove that a failed set-up step still tears down.
Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


def run_command(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The real Runner: output captured as text, stdin closed; a timeout or a missing program is a LabError."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LabError(f"`{shlex.join(argv)}` timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def run(
    argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True, runner: Runner = run_command
) -> subprocess.CompletedProcess[str]:
    """argv to completion; with check, a non-zero exit is a LabError naming the command and its last output line."""
    result = runner(argv, timeout_s)
    if check and result.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed ({result.returncode}): {last_line(result.stderr or result.stdout)}")
    return result


def in_namespace(namespace: str, argv: Sequence[str]) -> list[str]:
    """argv run inside a network namespace; `ip netns exec` execs it, so a Popen's PID is the program's own."""
    return ["ip", "netns", "exec", namespace, *argv]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    what: str = "condition",
    error: Callable[[str], BaseException] = LabError,
) -> T:
    """Call predicate until it returns something truthy and return that; error("timed out ... waiting for what") after timeout_s.

    Tests pass error=AssertionError, the demo and the benchmarks their own error types.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
