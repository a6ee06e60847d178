"""Model providers behind one small interface (`base.Provider`), and the table the engine uses."""

from __future__ import annotations

from orch.providers.anthropic import AnthropicProvider
from orch.providers.base import Completion, CompletionRequest, Message, Provider, ToolCall, ToolSpec, Usage
from orch.providers.offline import OfflineProvider
from orch.providers.openai_compat import OpenAICompatProvider
from orch.settings import Settings

__all__ = [
    "AnthropicProvider",
    "Completion",
    "CompletionRequest",
    "Message",
    "OfflineProvider",
    "OpenAICompatProvider",
    "Provider",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "build_providers",
]

_DEFAULT_OPENAI_BASE_URL = Settings().openai_base_url


def build_providers(settings: Settings) -> dict[str, Provider]:
    """The configured providers by name. "offline" is always there; "openai" once it has a key
    or points at another server (a local vLLM or Ollama needs no key); "anthropic" once it has
    a key."""
    providers: dict[str, Provider] = {"offline": OfflineProvider()}
    custom_url = settings.openai_base_url.rstrip("/") != _DEFAULT_OPENAI_BASE_URL.rstrip("/")
    if settings.openai_api_key or custom_url:
        providers["openai"] = OpenAICompatProvider(settings.openai_base_url, settings.openai_api_key)
    if settings.anthropic_api_key:
        providers["anthropic"] = AnthropicProvider(
            settings.anthropic_api_key, base_url=settings.anthropic_base_url
        )
    return providers
