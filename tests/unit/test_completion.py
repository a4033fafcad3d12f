"""Bash completion for both CLIs: the generated script is valid bash and completes what the parsers accept,
checked by a real bash sourcing it and calling its function as bash's completion does (COMP_WORDS, COMP_CWORD)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from l2mesh.cli import ctl, node
from l2mesh.cli.completion import bash_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")

SCRIPTS = {"l2mesh": bash_script(node.build_parser()), "l2mesh-ctl": bash_script(ctl.build_parser())}


def complete(line: str) -> list[str]:
    """What <TAB> at the end of line offers (a trailing space: a new, empty word)."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    prog = words[0]
    function = f"_{prog.replace('-', '_')}_complete"
    program = (
        f"{SCRIPTS[prog]}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"{function}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, timeout=10, check=True)
    return [w for w in result.stdout.splitlines() if w]


@pytest.mark.parametrize("prog", sorted(SCRIPTS))
def test_the_script_is_valid_bash(prog: str) -> None:
    subprocess.run(["bash", "-n"], input=SCRIPTS[prog], text=True, check=True, timeout=10)


def test_subcommands_complete_from_a_prefix() -> None:
    assert complete("l2mesh jo") == ["join"]
    assert sorted(complete("l2mesh n")) == ["netcheck", "networks"]
    assert "ping" in complete("l2mesh ")
    assert complete("l2mesh-ctl network cr") == ["create"]
    assert sorted(complete("l2mesh-ctl member de")) == ["deauthorize", "delete"]


def test_options_complete_for_the_subcommand_in_use() -> None:
    assert complete("l2mesh join --c") == ["--controller"]
    assert complete("l2mesh ping --co") == ["--count"]
    assert "--pool" in complete("l2mesh-ctl network create --")
    assert complete("l2mesh --ver") == ["--version"]


def test_an_options_value_is_left_to_file_name_completion_and_skipped_afterwards() -> None:
    assert complete("l2mesh status --state-dir ") == []  # bash falls back to file names (-o default)
    assert complete("l2mesh status --state-dir /tmp/x --j") == ["--json"]
    assert complete("l2mesh-ctl network --json cr") == ["create"]


def test_positional_choices_complete() -> None:
    assert complete("l2mesh completion ") == ["bash"]


def test_the_completion_command_prints_the_script() -> None:
    result = subprocess.run([sys.executable, "-c", "from l2mesh.cli.node import main; main()", "completion", "bash"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == SCRIPTS["l2mesh"]
    assert "complete -o bashdefault -o default -F _l2mesh_complete l2mesh" in result.stdout
