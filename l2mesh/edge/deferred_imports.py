"""Keep out of the node daemon what its dependencies import but an ordinary run never uses (issue 17: idle RSS).

- OpenSSL's hashes: with `_hashlib` unavailable, hashlib and hmac use CPython's
  built-in BLAKE2 and SHA-2 (the same digests; l2mesh's BLAKE2 is the built-in
  one either way, and its HMAC is hmac's pure-Python one for a callable
  digestmod). libcrypto then stays unloaded: 3.4 MiB resident.
- Standard-library modules imported at import time and used only by features
  the node daemon does not use: ssl (trio's SSLStream, which also maps
  libcrypto and libssl), pdb (construct's Debugger), pickle (construct's
  Pickled), idna (trio, for non-ASCII host names), bz2 and lzma (shutil's
  archives, with libbz2 and liblzma; shutil itself is used: argparse asks
  it for the terminal's width), tempfile (ctypes.util, which trio imports
  to name its threads, needs it only where ldconfig finds no library).
  Extension modules too: zlib (shutil checks it is there), unicodedata
  (attrs' make_class), array (socket's send_fds and recv_fds). Each is
  replaced in sys.modules by a stand-in that imports the real module on its
  first attribute access, so anything that does use one still gets all of
  it.

install() must run before those imports: first thing in the process's entry
module. Modules already imported are left as they are (a test process, say).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

DEFERRED_MODULES = ("ssl", "pdb", "pickle", "idna", "bz2", "lzma", "tempfile", "zlib", "unicodedata", "array")
_load_lock = threading.Lock()


def install() -> None:
    """Block OpenSSL's hash binding and defer DEFERRED_MODULES, where not imported yet."""
    if "_hashlib" not in sys.modules:
        sys.modules["_hashlib"] = None  # type: ignore[assignment]  # None: `import _hashlib` raises ImportError
    for name in DEFERRED_MODULES:
        if name not in sys.modules:
            defer(name)


def defer(name: str) -> None:
    """Put a stand-in for top-level module name in sys.modules that imports it on first use."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return  # not installed: `import name` fails as it would have
    # __name__, __spec__, __file__, __loader__ as the real module will have them: import statements and
    # inspect.getmodule() read those without loading anything. Not module_from_spec: an extension
    # module's loader would load the library for it.
    stand_in = types.ModuleType(name)
    stand_in.__spec__ = spec
    stand_in.__loader__ = spec.loader
    stand_in.__package__ = spec.parent
    if spec.has_location:
        stand_in.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = spec.submodule_search_locations
    stand_in.__getattr__ = _Loader(name, stand_in)  # type: ignore[method-assign]  # PEP 562's module __getattr__
    sys.modules[name] = stand_in


def pending(module: types.ModuleType | None) -> bool:
    """Whether module is a stand-in whose real module has not been imported yet."""
    loader = vars(module).get("__getattr__") if module is not None else None
    return isinstance(loader, _Loader) and loader.real is None


class _Loader:
    """A stand-in's __getattr__: imports the real module on the first attribute the stand-in lacks."""

    def __init__(self, name: str, stand_in: types.ModuleType) -> None:
        self.name = name
        self.stand_in = stand_in
        self.real: types.ModuleType | None = None

    def __call__(self, attribute: str) -> object:
        if self.real is None:
            if attribute.startswith("__") and attribute.endswith("__") and attribute != "__all__":
                # Probes such as hasattr(module, "__wrapped__") do not need the module.
                raise AttributeError(f"module {self.name!r} has no attribute {attribute!r} (not imported yet)")
            self._load()
        return getattr(self.real, attribute)

    def _load(self) -> None:
        with _load_lock:
            if self.real is not None:
                return
            if sys.modules.get(self.name) is self.stand_in:
                del sys.modules[self.name]
            real = importlib.import_module(self.name)
            # Whoever imported the stand-in (trio, construct) keeps it: it gets the real module's
            # attributes, so their reads no longer come here.
            self.stand_in.__dict__.update({k: v for k, v in vars(real).items() if k != "__getattr__"})
            self.real = real
