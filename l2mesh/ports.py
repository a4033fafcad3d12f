"""Default ports, as DESIGN.md's CLI contract fixes them (ZeroTier's 9993 for nodes, the next two for the controller)."""

DEFAULT_NODE_PORT = 9993
DEFAULT_CONTROLLER_PORT = 9994
DEFAULT_API_PORT = 9995
# A root answers where ZeroTier's roots do: a root's host runs no node of its own.
DEFAULT_ROOT_PORT = 9993
