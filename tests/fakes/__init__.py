"""Test doubles shared across the suite: fake vendor servers speaking real protocols."""

from tests.fakes.llm_servers import (
    Delay,
    FakeLLMServer,
    Malformed,
    RecordedRequest,
    Reply,
    Status,
    running_fake_llm,
)

__all__ = [
    "Delay",
    "FakeLLMServer",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Status",
    "running_fake_llm",
]
