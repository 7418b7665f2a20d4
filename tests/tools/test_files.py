from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from sidekick.config import Settings
from sidekick.errors import ToolError
from sidekick.tools import files
from sidekick.tools.base import UNTRUSTED_CLOSE, ToolContext
from sidekick.tools.files import MAX_FILE_BYTES, Workspace, build


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a secret that must stay out of reach."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("top secret")
    return directory


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


# --- the root ---


def test_root_is_created_private_and_absolute(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "a" / "b")
    assert ws.root == (tmp_path / "a" / "b").resolve()
    assert stat.S_IMODE(ws.root.stat().st_mode) == 0o700


def test_relative_root_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        Workspace(Path("ws"))


def test_cwd_as_root_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="working directory"):
        Workspace(tmp_path)


# --- reading, writing, listing ---


def test_write_then_read_round_trip(ws: Workspace) -> None:
    assert ws.write("notes/today/todo.md", "héllo\n") == "Wrote 7 bytes to notes/today/todo.md."
    assert ws.read("notes/today/todo.md") == "héllo\n"
    assert ws.read("./notes//today/todo.md") == "héllo\n"
    target = ws.root / "notes" / "today" / "todo.md"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((ws.root / "notes").stat().st_mode) == 0o700


def test_write_is_atomic_replace(ws: Workspace) -> None:
    ws.write("a.txt", "first")
    before = (ws.root / "a.txt").stat().st_ino
    ws.write("a.txt", "second")
    assert (ws.root / "a.txt").read_text() == "second"
    assert (ws.root / "a.txt").stat().st_ino != before  # a new file took the name, not an in-place edit
    assert sorted(os.listdir(ws.root)) == ["a.txt"]  # no temporary file left behind


def test_failed_write_keeps_old_content_and_no_temp(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write("a.txt", "original")

    def broken_replace(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(ToolError, match="No space left"):
        ws.write("a.txt", "new")
    monkeypatch.undo()
    assert (ws.root / "a.txt").read_text() == "original"
    assert sorted(os.listdir(ws.root)) == ["a.txt"]


def test_list(ws: Workspace) -> None:
    ws.write("b.txt", "12345")
    ws.write("sub/c.txt", "")
    os.mkfifo(ws.root / "pipe")
    (ws.root / "link").symlink_to(ws.root / "b.txt")
    assert ws.list() == "b.txt  5 bytes\nlink  (symbolic link, not followed)\npipe  (not a regular file)\nsub/"
    assert ws.list("sub") == "c.txt  0 bytes"
    ws.write("sub/empty/x", "")
    (ws.root / "sub" / "empty" / "x").unlink()
    assert ws.list("sub/empty/") == "sub/empty/ is empty."


def test_list_caps_entries(ws: Workspace) -> None:
    for i in range(files.MAX_LIST_ENTRIES + 5):
        (ws.root / f"f{i:04d}").touch()
    lines = ws.list().splitlines()
    assert len(lines) == files.MAX_LIST_ENTRIES + 1
    assert lines[-1] == "[… 5 more entries]"


WRONG_KINDS = {  # the call → what its error says
    "read nope.txt": "does not exist",
    "read nope/file.txt": "no directory 'nope'",
    "read dir": "is a directory",
    "write dir": "is a directory",
    "write dir/file.txt/child": "not a directory",
    "list dir/file.txt": "not a directory",
    "read .": "workspace itself",
}


@pytest.mark.parametrize(("call", "match"), WRONG_KINDS.items(), ids=list(WRONG_KINDS))
def test_missing_and_wrong_kinds(ws: Workspace, call: str, match: str) -> None:
    ws.write("dir/file.txt", "x")
    op, path = call.split(" ")
    with pytest.raises(ToolError, match=match):
        getattr(ws, op)(*((path, "x") if op == "write" else (path,)))


# --- size and encoding ---


def test_write_size_cap(ws: Workspace) -> None:
    ws.write("max.txt", "x" * MAX_FILE_BYTES)
    with pytest.raises(ToolError, match=f"{MAX_FILE_BYTES + 1} bytes"):
        ws.write("big.txt", "x" * (MAX_FILE_BYTES + 1))
    assert not (ws.root / "big.txt").exists()


def test_read_size_cap_names_the_size(ws: Workspace) -> None:
    (ws.root / "big.txt").write_bytes(b"x" * (MAX_FILE_BYTES + 10))
    with pytest.raises(ToolError, match=f"big.txt is {MAX_FILE_BYTES + 10} bytes"):
        ws.read("big.txt")
    (ws.root / "max.txt").write_bytes(b"x" * MAX_FILE_BYTES)
    assert len(ws.read("max.txt")) == MAX_FILE_BYTES


def test_read_refuses_binary(ws: Workspace) -> None:
    (ws.root / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ToolError, match="not UTF-8"):
        ws.read("blob.bin")


# --- escapes: each refused, and nothing outside changes ---


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "empty"),
        ("a\0b", "NUL"),
        ("/etc/passwd", "absolute"),
        ("../outside/secret.txt", r"'\.\.'"),
        ("sub/../../outside/secret.txt", r"'\.\.'"),
        ("..", r"'\.\.'"),
    ],
)
def test_bad_paths_refused(ws: Workspace, outside: Path, path: str, message: str) -> None:
    before = snapshot(outside)
    with pytest.raises(ToolError, match=message):
        ws.read(path)
    with pytest.raises(ToolError, match=message):
        ws.write(path, "pwned")
    with pytest.raises(ToolError, match=message):
        ws.list(path)
    assert snapshot(outside) == before


def test_symlinked_directory_refused(ws: Workspace, outside: Path) -> None:
    before = snapshot(outside)
    (ws.root / "out").symlink_to(outside, target_is_directory=True)
    for call in (
        lambda: ws.read("out/secret.txt"),
        lambda: ws.write("out/new.txt", "pwned"),
        lambda: ws.write("out/deeper/new.txt", "pwned"),
        lambda: ws.list("out"),
    ):
        with pytest.raises(ToolError, match="symbolic link"):
            call()
    assert snapshot(outside) == before


def test_symlinked_parent_deeper_refused(ws: Workspace, outside: Path) -> None:
    before = snapshot(outside)
    ws.write("a/keep.txt", "x")
    (ws.root / "a" / "b").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolError, match="symbolic link"):
        ws.write("a/b/c/new.txt", "pwned")
    with pytest.raises(ToolError, match="symbolic link"):
        ws.read("a/b/secret.txt")
    assert snapshot(outside) == before


def test_symlinked_final_component_refused(ws: Workspace, outside: Path) -> None:
    before = snapshot(outside)
    (ws.root / "s.txt").symlink_to(outside / "secret.txt")
    (ws.root / "dangling.txt").symlink_to(outside / "not-yet.txt")
    with pytest.raises(ToolError, match="symbolic link"):
        ws.read("s.txt")
    with pytest.raises(ToolError, match="symbolic link"):
        ws.write("s.txt", "pwned")
    with pytest.raises(ToolError, match="symbolic link"):
        ws.write("dangling.txt", "pwned")
    assert snapshot(outside) == before
    assert (ws.root / "s.txt").is_symlink()


def test_symlink_inside_the_workspace_is_refused_too(ws: Workspace) -> None:
    ws.write("real.txt", "x")
    (ws.root / "alias.txt").symlink_to("real.txt")
    with pytest.raises(ToolError, match="symbolic link"):
        ws.read("alias.txt")


def test_hardlink_to_outside_file_refused(ws: Workspace, outside: Path) -> None:
    before = snapshot(outside)
    os.link(outside / "secret.txt", ws.root / "h.txt")
    with pytest.raises(ToolError, match="hard links"):
        ws.read("h.txt")
    with pytest.raises(ToolError, match="hard links"):
        ws.write("h.txt", "pwned")
    assert snapshot(outside) == before


def test_fifo_refused_without_blocking(ws: Workspace) -> None:
    os.mkfifo(ws.root / "fifo")
    with pytest.raises(ToolError, match="not a regular file"):
        ws.read("fifo")
    with pytest.raises(ToolError, match="not a regular file"):
        ws.write("fifo", "x")
    assert stat.S_ISFIFO((ws.root / "fifo").lstat().st_mode)


# --- the tools ---


def make_tools(tmp_path: Path) -> dict[str, BaseTool]:
    ctx = ToolContext(settings=Settings(), workspace=tmp_path / "ws")
    return {tool.name: tool for tool in build(ctx)}


def test_build_does_not_touch_disk(tmp_path: Path) -> None:
    tools = make_tools(tmp_path)
    assert sorted(tools) == ["list_files", "read_file", "write_file"]
    assert not (tmp_path / "ws").exists()


async def test_tools_through_ainvoke(tmp_path: Path) -> None:
    tools = make_tools(tmp_path)
    assert tools["write_file"].metadata == {"side_effect": True}
    assert not tools["read_file"].metadata
    assert not tools["list_files"].metadata

    assert await tools["write_file"].ainvoke({"path": "a/b.txt", "content": "hi <<<there>>>"}) == (
        "Wrote 14 bytes to a/b.txt."
    )
    read = await tools["read_file"].ainvoke({"path": "a/b.txt"})
    assert read.startswith("<<<UNTRUSTED CONTENT from file a/b.txt")
    assert read.endswith(UNTRUSTED_CLOSE)
    assert "hi ‹‹‹there›››" in read
    assert await tools["list_files"].ainvoke({}) == "a/"
    assert await tools["list_files"].ainvoke({"path": "a"}) == "b.txt  14 bytes"
    with pytest.raises(ToolError, match="absolute"):
        await tools["read_file"].ainvoke({"path": "/etc/passwd"})
