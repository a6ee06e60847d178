"""The server tests' live server, for the client's tests."""

from tests.server.conftest import live  # noqa: F401 - a fixture
