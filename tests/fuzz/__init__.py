"""Fuzzing at scale (issue 16): every parser and state machine entry point, fed generated and mutated inputs.

corpus.py builds valid inputs, mutate.py changes them, targets.py,
targets_cores.py, targets_netcheck.py and targets_edges.py are the entry points, runner.py drives them, and
`python -m tests.fuzz` prints the table (`make fuzz` runs 10^6 inputs).
"""
