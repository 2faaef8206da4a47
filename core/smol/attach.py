"""Attach SMoL adapters and the shape router to an ``ElasticModel`` instance; their state as flat tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from core.elastic.model import ElasticModel
from core.errors import ConfigError
from core.smol.adapter import SmolDelta
from core.smol.config import SmolConfig
from core.smol.encoding import encoding_dim, shape_encoding
from core.smol.router import ShapeRouter
from core.spec import SubnetSpec

ROUTER_MODULE = "smol_router"


class GateSource:
    """The gate ``[E]`` of the model's active shape, computed once and shared by every ``SmolDelta``.

    The cache is dropped at the start of every forward of the elastic model (a forward pre-hook), so each
    training forward gets a fresh graph and fresh noise; within a forward all linears reuse one gate.
    Calls that bypass ``forward`` (``run_layers``, export) still get the gate of the current shape.
    """

    def __init__(self, elastic: ElasticModel, router: ShapeRouter | None, widths: tuple[float, ...], attn_widths: tuple[float, ...] | None = None) -> None:
        self._elastic = elastic
        self._router = router
        self.widths = widths
        self.attn_widths = widths if attn_widths is None else attn_widths
        self.noise_seed: int | None = None
        self.computations = 0
        self._key: tuple[object, ...] | None = None
        self._gate: torch.Tensor | None = None

    def invalidate(self) -> None:
        self._key, self._gate = None, None

    def gate_for(self, spec: SubnetSpec, kept_layers: tuple[int, ...]) -> torch.Tensor:
        """Gate ``[E]`` for any shape (noisy only when the router is in training mode)."""
        if self._router is None:
            return torch.ones(1)
        num_layers = self._elastic.info.num_layers
        enc = shape_encoding(spec, kept_layers, num_layers, self.widths, self.attn_widths).to(self._router.proj.weight.device)
        gen = torch.Generator().manual_seed(self.noise_seed) if self.noise_seed is not None else None
        return self._router(enc, gen)  # type: ignore[no-any-return]

    def _cache_key(self) -> tuple[object, ...]:
        """Everything the gate depends on: shape, router mode/noise seed/weights version, grad mode."""
        r = self._router
        router_state = (r.training, self.noise_seed, r.proj.weight._version, r.proj.bias._version) if r is not None else ()
        return (self._elastic.spec.key, self._elastic.active_layers, torch.is_grad_enabled(), *router_state)

    def __call__(self) -> torch.Tensor:
        key = self._cache_key()
        if self._gate is None or self._key != key:
            self._gate = self.gate_for(self._elastic.spec, self._elastic.active_layers)
            self._key = key
            self.computations += 1
        return self._gate


@dataclass
class SmolAdapters:
    """Handle on the adapters attached to one elastic model (they live inside its module tree)."""

    config: SmolConfig
    router: ShapeRouter | None
    deltas: dict[str, SmolDelta]
    source: GateSource
    hooks: list[RemovableHandle] = field(default_factory=list)

    def parameters(self) -> Iterator[nn.Parameter]:
        """Trainable tensors: every expert's A and B, then the router."""
        for d in self.deltas.values():
            yield d.A
            yield d.B
        if self.router is not None:
            yield from self.router.parameters()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors: ``layers.{i}.{linear}.A|B`` and ``router.weight|bias``."""
        out: dict[str, torch.Tensor] = {}
        for k, d in self.deltas.items():
            out[f"{k}.A"], out[f"{k}.B"] = d.A.detach(), d.B.detach()
        if self.router is not None:
            out["router.weight"], out["router.bias"] = self.router.proj.weight.detach(), self.router.proj.bias.detach()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` in; ``ConfigError`` naming missing / unexpected / mis-shaped tensors."""
        own = self.state_dict()
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or extra:
            raise ConfigError(f"adapter tensors do not match the adapter config: missing {missing[:3]}, unexpected {extra[:3]}")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ConfigError(f"adapter tensor {k}: shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(state[k])
        self.source.invalidate()

    def gate(self, spec: SubnetSpec | str, elastic: ElasticModel) -> torch.Tensor:
        """Deterministic gate ``[E]`` of ``spec`` (router in eval semantics), without changing the active shape."""
        s = SubnetSpec.parse(spec) if isinstance(spec, str) else spec
        layers = elastic.strategy.kept_layers(s.num_layers) if elastic.strategy is not None else tuple(range(elastic.info.num_layers))
        training = self.router.training if self.router is not None else False
        if self.router is not None:
            self.router.eval()
        try:
            with torch.no_grad():
                return self.source.gate_for(s, layers)
        finally:
            if self.router is not None:
                self.router.train(training)

    def detach(self, elastic: ElasticModel) -> None:
        """Remove the adapters, the router and the hook from ``elastic`` (it becomes the plain base again)."""
        for h in self.hooks:
            h.remove()
        for i in range(elastic.info.num_layers):
            for lin in elastic.elastic_linears(i).values():
                if isinstance(lin.delta, SmolDelta):
                    del lin.delta
                    lin.delta = None
        if hasattr(elastic, ROUTER_MODULE):
            delattr(elastic, ROUTER_MODULE)


def attach_smol(elastic: ElasticModel, config: SmolConfig, seed: int = 0) -> SmolAdapters:
    """Put a ``SmolDelta`` on every targeted linear of every layer and the router on ``elastic``.

    Adapters are fp32 on the base's device, initialised from ``seed`` (independent of the global RNG).
    Base weights are left as they are; the caller freezes them.
    """
    if hasattr(elastic, ROUTER_MODULE) or any(lin.delta is not None for lin in elastic.elastic_linears(0).values()):
        raise ConfigError("this elastic model already has adapters attached")
    widths = elastic.strategy.space.widths if elastic.strategy is not None else (1.0,)
    attn_widths = elastic.strategy.space.attn_ladder if elastic.strategy is not None else (1.0,)
    gen = torch.Generator().manual_seed(seed)
    router = None
    if config.mixture == "smol":
        router = ShapeRouter(encoding_dim(elastic.info.num_layers, widths, attn_widths), config.experts, config.top_k, config.router_noise_std, gen)
    source = GateSource(elastic, router, widths, attn_widths)
    dev = elastic.hf.lm_head.weight.device
    deltas: dict[str, SmolDelta] = {}
    for i in range(elastic.info.num_layers):
        for name, lin in elastic.elastic_linears(i).items():
            if name not in config.targets:
                continue
            d = SmolDelta(lin.in_features, lin.out_features, config.experts, config.rank, config.scale, source, gen).to(dev)
            lin.delta = d
            deltas[f"layers.{i}.{name}"] = d
    if router is not None:
        elastic.add_module(ROUTER_MODULE, router.to(dev))
    hook = elastic.register_forward_pre_hook(lambda _m, _a: source.invalidate())
    return SmolAdapters(config, router, deltas, source, [hook])
