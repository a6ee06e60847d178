"""The server tests' live server, for the client's tests."""

from tests.server.conftest import api, live  # noqa: F401 - fixtures
