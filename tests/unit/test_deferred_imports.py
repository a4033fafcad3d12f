"""deferred_imports: the node daemon starts without OpenSSL and DEFERRED_MODULES, and each still works when used.

Every check runs in a fresh interpreter: what a process has imported is the subject.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys

from l2mesh.edge import deferred_imports


def run_python(program: str) -> str:
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_node_daemon_imports_neither_openssl_nor_the_deferred_modules() -> None:
    """What the daemon's own process (l2mesh/cli/daemon_start.py) imports before it starts (issue 17: idle RSS)."""
    probe = (
        "import json, sys, l2mesh.cli.daemon_start, l2mesh.edge.node.daemon\n"
        "from l2mesh.edge.deferred_imports import DEFERRED_MODULES, pending\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(json.dumps({'hashlib_binding': repr(sys.modules.get('_hashlib', 'absent')),\n"
        "                  'ssl_binding': '_ssl' in sys.modules,\n"
        "                  'difflib': 'difflib' in sys.modules,\n"
        "                  'cli': sorted(m for m in sys.modules if m in ('argparse', 'gettext', 'l2mesh.cli.common',\n"
        "                                                                'l2mesh.cli.node')),\n"
        "                  'pending': {name: pending(sys.modules.get(name)) for name in DEFERRED_MODULES},\n"
        "                  'libraries': [name for name in ('libcrypto', 'libssl', 'libbz2', 'liblzma', '/zlib.', '/unicodedata.',\n"
        "                                                  '/array.') if name in maps]}))\n"
    )
    state = json.loads(run_python(probe))
    assert state == {
        "hashlib_binding": "None",
        "ssl_binding": False,
        "difflib": False,  # rules' typo hints import it when there is a typo
        "cli": [],  # `l2mesh daemon` parsed the command line before it re-executed into start.py
        "pending": {name: True for name in deferred_imports.DEFERRED_MODULES},
        "libraries": [],  # libcrypto alone is 3.4 MiB resident; a stand-in for an extension module does not load it
    }


def test_digests_without_openssl_are_the_ones_openssl_gives() -> None:
    """Node ids, MACs, netconf digests and Noise's HMAC come out the same from CPython's built-in hashes."""
    program = (
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "import hashlib, hmac, sys\n"
        "assert sys.modules['_hashlib'] is None\n"
        "print(hashlib.sha256(b'abc').hexdigest())\n"
        "print(hashlib.blake2b(b'abc', digest_size=5, person=b'l2mesh-mac').hexdigest())\n"
        "print(hashlib.blake2s(b'abc', key=b'k' * 16, digest_size=16).hexdigest())\n"
        "print(hmac.new(b'key', b'abc', hashlib.blake2b).hexdigest())\n"
        "print(hmac.new(b'key', b'abc', 'sha256').hexdigest())\n"
    )
    expected = [
        hashlib.sha256(b"abc").hexdigest(),
        hashlib.blake2b(b"abc", digest_size=5, person=b"l2mesh-mac").hexdigest(),
        hashlib.blake2s(b"abc", key=b"k" * 16, digest_size=16).hexdigest(),
        hmac.new(b"key", b"abc", hashlib.blake2b).hexdigest(),
        hmac.new(b"key", b"abc", "sha256").hexdigest(),
    ]
    assert run_python(program).split() == expected


def test_a_deferred_module_works_in_full_once_used() -> None:
    """trio's and construct's references become the real modules on first use; a later import gets the real one."""
    program = (
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "import sys, trio, construct.debug\n"
        "from trio import _ssl\n"
        "context = _ssl._stdlib_ssl.create_default_context()\n"
        "import ssl\n"
        "assert isinstance(context, ssl.SSLContext) and _ssl._stdlib_ssl.SSLContext is ssl.SSLContext\n"
        "assert not deferred_imports.pending(_ssl._stdlib_ssl) and '_ssl' in sys.modules\n"
        "assert construct.debug.pdb.Pdb is __import__('pdb').Pdb\n"
        "import pickle\n"
        "assert pickle.loads(pickle.dumps({'a': [1, 2]})) == {'a': [1, 2]}\n"
        "from trio import _socket\n"
        "print(_socket._idna.encode('bücher.example', uts46=True).decode())\n"
    )
    assert run_python(program).strip() == "xn--bcher-kva.example"


def test_shutils_archives_still_compress_with_bz2_and_lzma_deferred() -> None:
    """shutil imports bz2 and lzma only to tell which archive formats it offers: they still show and work."""
    program = (
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "import shutil, sys, tempfile\n"
        "from pathlib import Path\n"
        "assert deferred_imports.pending(sys.modules['bz2']) and deferred_imports.pending(sys.modules['lzma'])\n"
        "formats = {name for name, _ in shutil.get_archive_formats()}\n"
        "with tempfile.TemporaryDirectory() as work:\n"
        "    (Path(work) / 'tree').mkdir()\n"
        "    (Path(work) / 'tree' / 'f').write_text('l2mesh')\n"
        "    for kind in ('bztar', 'xztar'):\n"
        "        archive = shutil.make_archive(str(Path(work) / kind), kind, str(Path(work) / 'tree'))\n"
        "        shutil.unpack_archive(archive, str(Path(work) / f'{kind}-out'))\n"
        "        assert (Path(work) / f'{kind}-out' / 'f').read_text() == 'l2mesh'\n"
        "print(sorted(formats & {'bztar', 'xztar'}), deferred_imports.pending(sys.modules['bz2']))\n"
    )
    assert run_python(program).split() == ["['bztar',", "'xztar']", "False"]


def test_deferred_extension_modules_work_once_used() -> None:
    program = (
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "import socket, sys, zlib, unicodedata\n"
        "assert all(deferred_imports.pending(sys.modules[name]) for name in ('zlib', 'unicodedata', 'array'))\n"
        "ours, theirs = socket.socketpair(socket.AF_UNIX)\n"
        "socket.send_fds(ours, [b'fd'], [ours.fileno()])  # socket's own `import array`: the stand-in\n"
        "message, fds, _, _ = socket.recv_fds(theirs, 16, 1)\n"
        "print(zlib.decompress(zlib.compress(b'l2mesh')).decode(), unicodedata.name('\u00e9').replace(' ', '_'),\n"
        "      message.decode(), len(fds), deferred_imports.pending(sys.modules['array']))\n"
    )
    assert run_python(program).split() == ["l2mesh", "LATIN_SMALL_LETTER_E_WITH_ACUTE", "fd", "1", "False"]


def test_probing_a_stand_in_for_dunders_does_not_import_it() -> None:
    """inspect.getmodule() and hasattr(module, '__wrapped__')-style probes walk sys.modules: they must not load ssl."""
    program = (
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "import inspect, sys\n"
        "inspect.getmodule(inspect.getmodule)\n"
        "ssl = sys.modules['ssl']\n"
        "print(hasattr(ssl, '__wrapped__'), ssl.__name__, ssl.__file__.endswith('ssl.py'), deferred_imports.pending(ssl))\n"
    )
    assert run_python(program).split() == ["False", "ssl", "True", "True"]


def test_modules_imported_before_install_are_left_alone() -> None:
    program = (
        "import pickle, hashlib, sys\n"
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.install()\n"
        "print(sys.modules['pickle'] is pickle, sys.modules['_hashlib'] is not None, deferred_imports.pending(sys.modules['pdb']))\n"
    )
    assert run_python(program).split() == ["True", "True", "True"]


def test_a_module_that_is_not_installed_is_not_given_a_stand_in() -> None:
    program = (
        "import sys\n"
        "from l2mesh.edge import deferred_imports\n"
        "deferred_imports.defer('l2mesh_no_such_module')\n"
        "print('l2mesh_no_such_module' in sys.modules)\n"
    )
    assert run_python(program).strip() == "False"
