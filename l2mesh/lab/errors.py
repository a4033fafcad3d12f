"""What the lab raises: one-line messages a test, a benchmark or the demo can print as they are."""

from __future__ import annotations


class LabError(Exception):
    """A lab step failed: a command, a timeout, a name that cannot be used."""


class TeardownError(LabError):
    """Teardown went through every step but could not remove everything; `problems` says what is left."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("teardown left things behind: " + "; ".join(problems))
        self.problems = problems
