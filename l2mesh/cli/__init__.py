"""The command-line tools: `l2mesh` (node) and `l2mesh-ctl` (controller)."""
