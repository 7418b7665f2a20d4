"""The OS sandbox the Python tool runs in: bubblewrap (``bwrap``) namespaces, made anew for every run.

Inside, the script sees:

- **no network**: a new, empty network namespace (only its own loopback, which bwrap brings up), so
  neither the web nor a server on the host's loopback can be reached. With network asked for, the
  caller binds the web policy's proxy socket in (``binds``), and that socket is the only way out
  (see ``sidekick.tools.python``);
- **a filesystem of its own**: ``/usr`` (and the ``/bin``, ``/lib``… links into it), the
  interpreter's install prefix and ``/etc/ld.so.cache`` read-only, with the interpreter's
  site-packages hidden (the standard library only); the session's workspace read-write at its own
  path; a private, size-bounded ``/tmp``; a minimal ``/dev``; a ``/proc`` of its own PID namespace.
  Nothing else of the host: no home folders (the interpreter's prefix is bound alone, even when it
  lies under one), no data folder, no other sessions' workspaces;
- **its own user, PID, IPC, UTS and cgroup namespaces**, every capability dropped, no new user
  namespaces, a new session (no terminal to inject keystrokes into). When the namespace's init dies,
  the kernel kills everything left inside it, so killing bwrap ends the whole tree; bwrap also
  dies with its parent (``--die-with-parent``), so a Sidekick that is killed leaves nothing behind.

The environment is cleared and only what the caller passes is set. Resource limits are not set
here: the caller's bootstrap sets them inside (see ``sidekick.tools.python``).

Whether the sandbox can be made is probed once per process (:func:`default`) by running the
interpreter in it; when it cannot, :class:`SandboxUnavailable` says why and how to enable it, and
the Python tool is off. There is never a fallback to an unsandboxed process.

Not covered when Sidekick runs as root (the sandbox's uid 0 is then the host's root, without
capabilities): the number of processes, since ``RLIMIT_NPROC`` does not apply to root, so a fork bomb
is bounded only by the timeout, which kills all of it; and the modes of workspace files, so a script
can leave a setuid-root file (or open the workspace's permissions) for other local users to find.
Running Sidekick as an unprivileged user closes both.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sidekick.errors import ToolError

INSTALL_HINT = "bubblewrap (bwrap) is not installed: run `make` as root or `apt-get install bubblewrap`"
NAMESPACE_HINT = (
    "bwrap needs user, PID and network namespaces; allow them (Debian: `sysctl "
    "kernel.unprivileged_userns_clone=1`; Ubuntu 24.04: `sysctl kernel.apparmor_restrict_unprivileged_userns=0`; "
    "a container: run it with namespaces allowed)"
)
PROBE_SECONDS = 5.0
# /tmp lives in memory, outside the interpreter's RLIMIT_AS: bound it so it cannot fill the host's RAM.
TMP_BYTES = 64 * 1024 * 1024
_SYSTEM_ROOTS = ("/usr",)
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# ld.so.cache: the dynamic loader finds libraries fast and where the host put them; localtime: time.localtime().
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")


class SandboxUnavailable(ToolError):
    """The sandbox cannot be made here; the message says why and how to enable it."""


@dataclass(frozen=True)
class Sandbox:
    """A bwrap seen to work, and the interpreter (outside any virtual environment) to run in it."""

    bwrap: str
    python: str

    def command(
        self,
        argv: Sequence[str],
        *,
        workspace: Path,
        env: Mapping[str, str],
        binds: Sequence[tuple[Path, str]] = (),
    ) -> list[str]:
        """The command that runs ``argv`` in a fresh sandbox with ``workspace`` (an existing folder).

        ``binds``: more host paths (files or sockets) to show read-only, each at its path inside."""
        extra = [arg for source, inside in binds for arg in ("--ro-bind", str(source), inside)]
        args = [
            self.bwrap,
            "--unshare-all",
            # As root, --unshare-all's "user namespace if possible" is skipped and the capabilities kept.
            "--unshare-user",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            *_system_mounts(self.python),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # multiprocessing's semaphores need a writable /dev/shm; in memory too, so bounded as well.
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/tmp",
            # After /tmp: a workspace under /tmp must be bound over the private one, not hidden by it.
            "--bind",
            str(workspace),
            str(workspace),
            "--chdir",
            str(workspace),
            *extra,
            # bwrap's own root (where it made the mount points) is a tmpfs: read-only, so no memory fills it.
            "--remount-ro",
            "/",
            "--clearenv",
        ]
        for name, value in env.items():
            args += ["--setenv", name, value]
        return [*args, "--", *argv]


def probe(search_path: str | None = None, timeout: float = PROBE_SECONDS) -> Sandbox:
    """A working :class:`Sandbox`, found on ``search_path`` (default ``PATH``), or ``SandboxUnavailable``.

    Runs the interpreter in the sandbox once (a few tens of milliseconds), so a sandbox that bwrap
    accepts but the interpreter cannot start in is caught here, not at the first tool call.
    """
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the Python sandbox needs Linux and bubblewrap; this is {sys.platform}")
    bwrap = shutil.which("bwrap", path=search_path)
    if bwrap is None:
        raise SandboxUnavailable(INSTALL_HINT)
    sandbox = Sandbox(bwrap=bwrap, python=interpreter())
    with tempfile.TemporaryDirectory(prefix="sidekick-sandbox-probe-") as workspace:
        command = sandbox.command([sandbox.python, "-I", "-S", "-c", "pass"], workspace=Path(workspace), env={})
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env={}, check=False
            )
        except subprocess.TimeoutExpired:
            raise SandboxUnavailable(f"the Python sandbox did not start within {timeout:g} s") from None
        except OSError as exc:
            raise SandboxUnavailable(f"bwrap ({bwrap}) could not be started: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        first = lines[0] if lines else f"exit code {done.returncode}, no message"
        raise SandboxUnavailable(f"bwrap could not create namespaces: {first}. {NAMESPACE_HINT}")
    return sandbox


@functools.cache
def _default() -> Sandbox | str:
    try:
        return probe()
    except SandboxUnavailable as exc:
        return str(exc)
    except Exception as exc:  # a probe must never take the caller down; it only turns the tool off
        return f"the Python sandbox could not be checked: {exc!r}"


def default() -> Sandbox:
    """The sandbox of this process, probed on first use; raises ``SandboxUnavailable`` with the reason."""
    found = _default()
    if isinstance(found, str):
        raise SandboxUnavailable(found)
    return found


def interpreter() -> str:
    """This Python's own interpreter binary; a virtual environment's folder is not in the sandbox."""
    base = Path(sys.base_prefix).resolve()
    real = Path(sys.executable).resolve()
    if real.is_relative_to(base):
        return str(real)
    return str(base / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")


@functools.cache  # the same for the life of the process; a run then only adds its workspace
def _system_mounts(python: str) -> tuple[str, ...]:
    args: list[str] = []
    for root in _SYSTEM_ROOTS:
        args += ["--ro-bind", root, root]
    for name in _SYSTEM_LINKS:
        path = Path(name)
        if path.is_symlink():  # merged /usr: keep the link, whose target is bound above
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in _SYSTEM_FILES:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.exists():
            args += ["--ro-bind", name, name]
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve(), Path(python).parent.parent}
    for prefix in sorted(prefixes):
        if not any(prefix.is_relative_to(root) for root in _SYSTEM_ROOTS):
            args += ["--ro-bind", str(prefix), str(prefix)]
    for packages in _site_packages():
        # The standard library only: hide what was installed on top, under an empty read-only folder.
        args += ["--tmpfs", str(packages), "--remount-ro", str(packages)]
    return tuple(args)


def _site_packages() -> list[Path]:
    base, platbase = sys.base_prefix, sys.base_exec_prefix
    paths = sysconfig.get_paths(vars={"base": base, "platbase": platbase})
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = {
        Path(paths["purelib"]),
        Path(paths["platlib"]),
        # Debian's own interpreter: apt's packages, then pip's.
        Path(base, "lib", "python3", "dist-packages"),
        Path(base, "local", "lib", f"python{version}", "dist-packages"),
    }
    return sorted(path.resolve() for path in candidates if path.is_dir())
