from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidekick.config import Settings
from sidekick.errors import ConfigError
from sidekick.mcp import load_config, parse_config


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_standard_file_with_our_keys(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {
        "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
        "remote": {"url": "https://example.test/mcp", "headers": {"Authorization": "Bearer x"},
                   "scope": "process", "approve": "never", "timeout": 5},
        "typed": {"type": "stdio", "command": "srv"},
    }})
    config = load_config(Settings(mcp_config=path, data_dir=tmp_path))
    time_, remote, typed = config.servers
    assert (time_.transport, time_.scope, time_.approve, time_.timeout) == ("stdio", "session", "annotations", None)
    assert time_.args == ("mcp-server-time",) and time_.env == {"TZ": "UTC"}
    assert (remote.transport, remote.scope, remote.approve, remote.timeout) == ("http", "process", "never", 5.0)
    assert remote.headers == {"Authorization": "Bearer x"}
    assert typed.command == "srv" and config.path == path


def test_no_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(Settings(data_dir=tmp_path)).servers == ()


def test_default_file_in_the_data_folder(tmp_path: Path) -> None:
    write(tmp_path, {"mcpServers": {"t": {"command": "x"}}})
    config = load_config(Settings(data_dir=tmp_path))
    assert [s.name for s in config.servers] == ["t"] and config.path == tmp_path / "mcp.json"


def test_named_file_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=r"nope\.json"):
        load_config(Settings(mcp_config=missing, data_dir=tmp_path))


def test_malformed_json_names_the_file_and_place(tmp_path: Path) -> None:
    path = write(tmp_path, '{"mcpServers": {"t": {"command": "x",}}}')
    with pytest.raises(ConfigError) as info:
        load_config(Settings(mcp_config=path, data_dir=tmp_path))
    assert str(path) in str(info.value) and "line 1" in str(info.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"mcpServers": {"t": {"command": "x", "aprove": "never"}}}, "mcpServers.t.aprove"),
        ({"servers": {}}, "servers"),
        ({"mcpServers": {"t": {"command": "x", "scope": "global"}}}, "mcpServers.t.scope"),
        ({"mcpServers": {"t": {"command": "x", "approve": "sometimes"}}}, "mcpServers.t.approve"),
        ({"mcpServers": {"t": {"command": "x", "timeout": 0}}}, "mcpServers.t.timeout"),
        ({"mcpServers": {"t": {"command": "x", "timeout": "5"}}}, "mcpServers.t.timeout"),
        ({"mcpServers": {"t": {"command": "x", "args": "a b"}}}, "mcpServers.t.args"),
        ({"mcpServers": {"t": {"command": "x", "env": {"A": 1}}}}, "mcpServers.t.env"),
        ({"mcpServers": {"t": {"command": "x", "url": "https://a"}}}, "mcpServers.t"),
        ({"mcpServers": {"t": {"args": ["a"]}}}, "mcpServers.t"),
        ({"mcpServers": {"t": {"url": "ftp://a"}}}, "mcpServers.t.url"),
        ({"mcpServers": {"t": {"type": "sse", "url": "https://a"}}}, "mcpServers.t.type"),
        ({"mcpServers": {"bad name": {"command": "x"}}}, "mcpServers.bad name"),
        ({"mcpServers": []}, "mcpServers"),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, data: object, key: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        parse_config(path.read_text(), path)
    assert f"{path}: {key}:" in str(info.value)
