"""Test doubles that speak real protocols: see `openai_server` for the fake OpenAI endpoint."""

from tests.support.fakes.openai_server import FakeOpenAI, Reply

__all__ = ["FakeOpenAI", "Reply"]
