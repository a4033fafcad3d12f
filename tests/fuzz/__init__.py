"""Fuzzing at scale (issue 16): every parser and state machine entry point, fed generated and mutated inputs.

corpus.py builds valid inputs, mutate.py changes them, targets.py and
targets_cores.py are the entry points, runner.py drives them, and
`python -m tests.fuzz` prints the table (`make fuzz` runs 10^6 inputs).
"""
