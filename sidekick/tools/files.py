"""A per-session workspace: the only directory the file tools can read or write.

Every path is relative to the workspace root and is walked one component at a time from an open
directory descriptor with ``O_NOFOLLOW``, so a symbolic link anywhere on the path (inside or
outside the workspace), a ``..`` component or an absolute path is refused rather than followed;
there is no window between checking a path and using it. Only regular, single-link files are read
or written, so a hard link to a file outside cannot be used to reach it, and a FIFO cannot block a
tool call. Writes are atomic: a temporary file in the same directory, then ``os.replace``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from langchain_core.tools import BaseTool, StructuredTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools.base import Availability, ToolContext, untrusted

MAX_FILE_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 200

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer; fstat then refuses it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class Workspace:
    """A directory that relative paths cannot leave. Every method raises ``ToolError`` on refusal."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"The workspace root must be an absolute path (got {str(root)!r}).")
        if root.resolve() == Path.cwd().resolve():
            raise ValueError("The workspace root must not be the current working directory.")
        root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        self.root = root.resolve()

    def read(self, path: str) -> str:
        """The text of a UTF-8 file of at most ``MAX_FILE_BYTES``."""
        *parents, name = _parts(path, allow_root=False)
        with self._dir(parents, path) as dfd:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
            except OSError as exc:
                raise _refusal(exc, path, dfd, name) from None
            try:
                _check_file(os.fstat(fd), path)
                data = _read_at_most(fd, MAX_FILE_BYTES + 1)
            finally:
                os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(path, len(data))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path} is not UTF-8 text (it may be a binary file); it cannot be read.") from None

    def write(self, path: str, text: str) -> str:
        """Replace (or create) a file with ``text``, creating its parent directories."""
        *parents, name = _parts(path, allow_root=False)
        data = text.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise ToolError(f"The content is {len(data)} bytes; files are limited to {MAX_FILE_BYTES} bytes (1 MiB).")
        with self._dir(parents, path, create=True) as dfd:
            try:
                _check_file(os.stat(name, dir_fd=dfd, follow_symlinks=False), path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _refusal(exc, path, dfd, name) from None
            temp = f".sidekick-{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temp, _TEMP_FLAGS, _FILE_MODE, dir_fd=dfd)
                try:
                    os.fchmod(fd, _FILE_MODE)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                # os.replace never follows a link at the destination, even one created since the check.
                os.replace(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dfd)
                raise ToolError(f"Could not write {path}: {exc.strerror or exc}.") from None
        return f"Wrote {len(data)} bytes to {path}."

    def list(self, path: str = ".") -> str:
        """One line per entry: ``name/`` for a directory, ``name  N bytes`` for a file."""
        parts = _parts(path, allow_root=True)
        with self._dir(parts, path) as dfd, os.scandir(dfd) as entries:
            found = sorted(entries, key=lambda entry: entry.name)
            # Entries of a descriptor-based scan stat through that descriptor: describe them before it closes.
            lines = [_describe(entry) for entry in found[:MAX_LIST_ENTRIES]]
        if not found:
            return f"{path} is empty."
        if len(found) > MAX_LIST_ENTRIES:
            lines.append(f"[… {len(found) - MAX_LIST_ENTRIES} more entries]")
        return "\n".join(lines)

    @contextmanager
    def _dir(self, parts: Sequence[str], path: str, *, create: bool = False) -> Iterator[int]:
        """An open descriptor of the directory ``parts`` below the root, each one a real directory."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ToolError(f"The workspace is unavailable: {exc.strerror or exc}.") from None
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ToolError(f"{path}: there is no directory {part!r} in the workspace.") from None
                    with suppress(FileExistsError):
                        os.mkdir(part, _DIR_MODE, dir_fd=fd)
                    try:
                        child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        raise _refusal(exc, path, fd, part) from None
                except OSError as exc:
                    raise _refusal(exc, path, fd, part) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)


def available(settings: Settings) -> list[Availability]:
    return [("files", True, "")]


def build(ctx: ToolContext) -> list[BaseTool]:
    """``read_file``, ``write_file`` and ``list_files`` over the session's workspace."""
    root = ctx.workspace
    workspace: Workspace | None = None

    async def open_workspace() -> Workspace:
        # Created on first use: ``build`` must not touch the disk.
        nonlocal workspace
        if workspace is None:
            workspace = await asyncio.to_thread(Workspace, root)
        return workspace

    async def read_file(path: str) -> str:
        text = await asyncio.to_thread((await open_workspace()).read, path)
        return untrusted(text, source=f"file {path}")

    async def write_file(path: str, content: str) -> str:
        return await asyncio.to_thread((await open_workspace()).write, path, content)

    async def list_files(path: str = ".") -> str:
        return await asyncio.to_thread((await open_workspace()).list, path)

    rules = (
        "Paths are relative to your private workspace directory (e.g. 'notes/todo.md'); absolute "
        "paths, '..' and symbolic links are refused."
    )
    return [
        StructuredTool.from_function(
            coroutine=read_file,
            name="read_file",
            description=(
                "Read a UTF-8 text file from your workspace. Files over 1 MiB are refused and long "
                f"text is shown truncated. {rules}"
            ),
        ),
        StructuredTool.from_function(
            coroutine=write_file,
            name="write_file",
            description=(
                "Create or overwrite a text file in your workspace with `content` (UTF-8, at most "
                f"1 MiB), creating missing folders. It replaces the whole file. {rules}"
            ),
            metadata={"side_effect": True},
        ),
        StructuredTool.from_function(
            coroutine=list_files,
            name="list_files",
            description=(
                "List a folder of your workspace (default: its top level): folders end with '/', "
                f"files show their size in bytes. {rules}"
            ),
        ),
    ]


def _parts(path: str, *, allow_root: bool) -> list[str]:
    """The components of a relative path, with ``.`` and empty components dropped."""
    if not path:
        raise ToolError("The path is empty; give a path relative to the workspace, e.g. 'notes.txt'.")
    if "\0" in path:
        raise ToolError("The path contains a NUL character.")
    if path.startswith("/"):
        raise ToolError(f"{path} is absolute; give a path relative to the workspace, e.g. 'notes.txt'.")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ToolError(f"{path} contains '..'; paths cannot leave the workspace.")
    if not parts and not allow_root:
        raise ToolError(f"{path} is the workspace itself, not a file.")
    return parts


def _check_file(info: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise ToolError(f"{path} is a symbolic link; the workspace does not follow links.")
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f"{path} is a directory; use list_files to see what it holds.")
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{path} is not a regular file (it may be a pipe or a device).")
    if info.st_nlink > 1:
        raise ToolError(f"{path} has other hard links; such files may live outside the workspace.")
    if info.st_size > MAX_FILE_BYTES:
        raise _too_big(path, info.st_size)


def _too_big(path: str, size: int) -> ToolError:
    return ToolError(f"{path} is {size} bytes; files are limited to {MAX_FILE_BYTES} bytes (1 MiB).")


def _refusal(exc: OSError, path: str, dir_fd: int, name: str) -> ToolError:
    """A plain message for a failed ``open`` of ``name``, naming a link when it was one."""
    with suppress(OSError):
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return ToolError(f"{path}: {name!r} is a symbolic link; the workspace does not follow links.")
    if exc.errno == errno.ENOENT:
        return ToolError(f"{path} does not exist in the workspace; list_files shows what does.")
    if exc.errno == errno.ENOTDIR:
        return ToolError(f"{path}: {name!r} is not a directory.")
    return ToolError(f"{path}: {exc.strerror or exc}.")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _describe(entry: os.DirEntry[str]) -> str:
    name = entry.name if entry.name.isprintable() else repr(entry.name)
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return f"{name}  (unreadable)"
    if stat.S_ISDIR(info.st_mode):
        return f"{name}/"
    if stat.S_ISREG(info.st_mode):
        return f"{name}  {info.st_size} bytes"
    if stat.S_ISLNK(info.st_mode):
        return f"{name}  (symbolic link, not followed)"
    return f"{name}  (not a regular file)"
