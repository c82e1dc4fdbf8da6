"""Build and load small C libraries at run time: the one home for cgkit's compiled kernels.

:func:`build_library` compiles a C source with the system C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``; ``-O3``, first with ``-march=native``, then generic flags) into a cache
folder (``$CGKIT_CACHE_DIR/kernels`` or ``~/.cache/cgkit/kernels``, else a per-user temporary
folder) and loads it with :mod:`ctypes`. The file name holds a hash of the source, compiler,
flags and — for a ``-march=native`` build — the CPU's model and feature flags, so an edited
kernel is rebuilt and a cache folder shared between machines never hands one CPU's build to
another. A finished library is moved into place atomically (concurrent builders agree).
``$CGKIT_KERNEL_CFLAGS`` replaces the flag sets (e.g. ``-O2`` for a generic build).

Users: :mod:`cgkit.forcematch.pair_kernel` (tabulated pair forces and the fused MD loop) and
:mod:`cgkit.nn.conv_kernel` (the ENNP edge convolution).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["build_library", "CompiledLibrary", "cache_dir", "cpu_tag"]

#: default flag sets, tried in order
FLAG_SETS = (["-march=native", "-fno-math-errno", "-fopenmp-simd"], ["-fno-math-errno", "-fopenmp-simd"], [])


def cache_dir() -> Path:
    env = os.environ.get("CGKIT_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "cgkit"
    return base / "kernels"


def cpu_tag() -> str:
    """CPU model and feature flags (the cache key of a ``-march=native`` build)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.machine() + platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def build_library(name: str, source: str) -> tuple[ctypes.CDLL | None, str]:
    """``(library, "")`` once ``source`` is compiled (or found in the cache) and loaded, else
    ``(None, reason)``. ``name`` prefixes the cached file (``<name>_<hash>.so``)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None, "no C compiler (cc/gcc/clang) on PATH"
    extra = os.environ.get("CGKIT_KERNEL_CFLAGS")
    flag_sets = [extra.split()] if extra is not None else [list(f) for f in FLAG_SETS]
    reason = ""
    for flags in flag_sets:
        key = source + cc + sys.platform + " ".join(flags) + ("\n" + cpu_tag() if "-march=native" in flags else "")
        tag = hashlib.sha256(key.encode()).hexdigest()[:16]
        for d in (cache_dir(), Path(tempfile.gettempdir()) / f"cgkit-kernels-{os.getuid()}"):
            lib = d / f"{name}_{tag}.so"
            try:
                if not lib.exists():
                    d.mkdir(parents=True, exist_ok=True)
                    with tempfile.TemporaryDirectory(dir=d) as tmp:
                        src = Path(tmp) / f"{name}.c"
                        src.write_text(source)
                        out = Path(tmp) / lib.name
                        r = subprocess.run([cc, "-O3", *flags, "-fPIC", "-shared", "-o", str(out), str(src), "-lm"],
                                           capture_output=True, text=True, timeout=120)
                        if r.returncode != 0:
                            reason = f"{cc} {' '.join(flags)} failed: {r.stderr.strip()[:300]}"
                            break  # the next flag set
                        os.replace(out, lib)  # atomic: concurrent builders agree on the result
                return ctypes.CDLL(str(lib)), ""
            except OSError as exc:
                reason = f"cannot build or load the kernel in {d}: {exc}"
                continue
    return None, reason


class CompiledLibrary:
    """A C library built on first use: ``get()`` the loaded :class:`ctypes.CDLL` (or None),
    ``reason`` why it is unavailable. ``declare(lib)`` sets the functions' ``argtypes`` and
    ``restype`` once after loading. ``$CGKIT_NO_KERNEL`` (any value) disables every compiled
    kernel (callers then use their PyTorch/NumPy paths)."""

    def __init__(self, name: str, source: str, declare):
        self.name, self.source, self._declare = name, source, declare
        self._lib, self._tried, self.reason = None, False, ""

    def get(self) -> ctypes.CDLL | None:
        if not self._tried:
            self._tried = True
            if os.environ.get("CGKIT_NO_KERNEL"):
                self.reason = "CGKIT_NO_KERNEL is set"
            else:
                self._lib, self.reason = build_library(self.name, self.source)
                if self._lib is not None:
                    self._declare(self._lib)
        return self._lib

    def available(self) -> bool:
        """True when the library could be built (or was cached) and loaded."""
        return self.get() is not None

    def unavailable_reason(self) -> str:
        """Why :meth:`get` returns None ("" when the library is loaded)."""
        self.get()
        return self.reason
