"""What executors may use, built in one place and passed in: providers, tools, prices, limits,
and the way transforms run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orch.cost import PriceTable
from orch.errors import ProviderError
from orch.mcp import McpClients
from orch.providers.base import Provider
from orch.sandbox import TransformLimits, TransformPolicy, transform_limits, transform_policy
from orch.settings import Settings
from orch.tools import ToolRegistry


@dataclass
class Services:
    settings: Settings
    providers: Mapping[str, Provider]
    tools: ToolRegistry
    prices: PriceTable
    transforms: TransformPolicy
    transform_limits: TransformLimits = TransformLimits()
    mcp: McpClients = field(default_factory=McpClients)  # MCP servers' tools, declared by bootstrap

    def provider_for(self, provider: str | None, model: str | None) -> tuple[Provider, str]:
        """The provider and model a step uses: step/agent overrides, else the configured default."""
        name = provider or self.settings.default_provider
        chosen = model if model and model != "default" else None
        if name not in self.providers:
            raise ProviderError(f"provider '{name}' is not configured; configured: {', '.join(self.providers)}",
                                provider=name, model=chosen or "?")
        if chosen is None or (name == self.settings.default_provider == "offline"):
            chosen = chosen or self.settings.default_model
        return self.providers[name], chosen

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()
        self.tools.close()
        await self.mcp.aclose()


def build_services(settings: Settings, *, providers: Mapping[str, Provider] | None = None,
                   tools: ToolRegistry | None = None, local: bool = True, **extra: Any) -> Services:
    """`local`: whoever supplies the graphs runs their own code (the CLI, the engine as a
    library, `orch serve --local`); a server with API keys passes False (see orch.sandbox)."""
    from orch.providers import build_providers

    registry = tools or ToolRegistry.with_builtins()
    for module in settings.tool_modules:
        registry.load_module(module)
    prices = PriceTable.from_file(settings.price_file) if settings.price_file else PriceTable()
    Path(settings.sandbox_root).mkdir(parents=True, exist_ok=True)
    return Services(
        settings=settings,
        providers=providers if providers is not None else build_providers(settings),
        tools=registry,
        prices=prices,
        transforms=transform_policy(settings, local=local),
        transform_limits=transform_limits(settings),
        **extra,
    )
