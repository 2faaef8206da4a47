"""Build an ONNX (opset 23) decoder graph with an explicit KV cache from a stock HF Llama-family model.

Standard ops only: ``RMSNormalization``, ``RotaryEmbedding`` (position ids into cos/sin caches) and
``Attention`` (GQA via ``q_num_heads``/``kv_num_heads``, ``past_key``/``past_value`` in, ``present_*`` out).
Inputs: ``input_ids`` / ``position_ids`` ``[batch, seq]`` int64, ``past_key_{i}`` / ``past_value_{i}``
``[batch, kv_heads, past, head_dim]``. Outputs: ``logits`` ``[batch, 1, vocab]`` (last position only, like
``logits_to_keep=1``) and ``present_key_{i}`` / ``present_value_{i}``. Llama, Mistral, Qwen2 and Granite
(multipliers honoured) share this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OPSET = 23


@dataclass(frozen=True)
class GraphDims:
    """Shape facts the runner needs to feed the graph."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int


class _Builder:
    def __init__(self) -> None:
        from onnx import helper

        self.h = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(self, op: str, inputs: list[str], n_out: int = 1, outs: list[str] | None = None, **attrs: Any) -> list[str]:
        outs = outs or [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, **attrs))
        return outs

    def linear(self, x: str, sd: dict[str, np.ndarray], prefix: str) -> str:
        """``x @ W.T (+ b)`` for an ``nn.Linear`` named ``prefix``."""
        y = self.op("MatMul", [x, self.const(prefix + ".wT", sd[prefix + ".weight"].T)])[0]
        if prefix + ".bias" in sd:
            y = self.op("Add", [y, self.const(prefix + ".b", sd[prefix + ".bias"])])[0]
        return y

    def scale(self, x: str, value: float, tag: str) -> str:
        if value == 1.0:
            return x
        return self.op("Mul", [x, self.const(tag, np.array(value, dtype=np.float32))])[0]


def build_decoder(model: Any, max_positions: int) -> tuple[bytes, GraphDims]:
    """Serialised ONNX model for the fp32 torch ``model`` (an HF ``*ForCausalLM``) and its dimensions."""
    import onnx
    import torch
    from onnx import TensorProto

    cfg = model.config
    sd = {k: v.detach().to(torch.float32).cpu().numpy() for k, v in model.state_dict().items()}
    nl, nq, nkv = int(cfg.num_hidden_layers), int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // nq)
    eps = float(cfg.rms_norm_eps)
    rot = model.model.rotary_emb
    pos = torch.arange(max_positions, dtype=torch.float32)[:, None] * rot.inv_freq.float()[None, :]
    att_scale = float(getattr(rot, "attention_scaling", 1.0))
    b = _Builder()
    cos = b.const("cos_cache", (pos.cos() * att_scale).numpy())
    sin = b.const("sin_cache", (pos.sin() * att_scale).numpy())
    scaling = float(getattr(cfg, "attention_multiplier", None) or hd**-0.5)
    resid = float(getattr(cfg, "residual_multiplier", 1.0) or 1.0)

    x = b.op("Gather", [b.const("embed", sd["model.embed_tokens.weight"]), "input_ids"], axis=0)[0]
    x = b.scale(x, float(getattr(cfg, "embedding_multiplier", 1.0) or 1.0), "emb_mult")
    outputs = []
    for i in range(nl):
        p = f"model.layers.{i}"
        h = b.op("RMSNormalization", [x, b.const(f"{p}.ln1", sd[f"{p}.input_layernorm.weight"])], axis=-1, epsilon=eps)[0]
        q = b.linear(h, sd, f"{p}.self_attn.q_proj")
        k = b.linear(h, sd, f"{p}.self_attn.k_proj")
        v = b.linear(h, sd, f"{p}.self_attn.v_proj")
        q = b.op("RotaryEmbedding", [q, cos, sin, "position_ids"], num_heads=nq)[0]
        k = b.op("RotaryEmbedding", [k, cos, sin, "position_ids"], num_heads=nkv)[0]
        present = [f"present_key_{i}", f"present_value_{i}"]
        a = b.op("Attention", [q, k, v, "", f"past_key_{i}", f"past_value_{i}"], outs=[b.name("attn"), *present],
                 q_num_heads=nq, kv_num_heads=nkv, is_causal=1, scale=scaling)[0]
        outputs += present
        x = b.op("Add", [x, b.scale(b.linear(a, sd, f"{p}.self_attn.o_proj"), resid, f"{p}.rm1")])[0]
        h = b.op("RMSNormalization", [x, b.const(f"{p}.ln2", sd[f"{p}.post_attention_layernorm.weight"])], axis=-1, epsilon=eps)[0]
        g = b.linear(h, sd, f"{p}.mlp.gate_proj")
        act = b.op("Mul", [b.op("Mul", [g, b.op("Sigmoid", [g])[0]])[0], b.linear(h, sd, f"{p}.mlp.up_proj")])[0]
        x = b.op("Add", [x, b.scale(b.linear(act, sd, f"{p}.mlp.down_proj"), resid, f"{p}.rm2")])[0]
    last = b.op("Slice", [x, b.const("m1", np.array([-1], np.int64)), b.const("big", np.array([2**62], np.int64)),
                          b.const("ax1", np.array([1], np.int64))])[0]
    last = b.op("RMSNormalization", [last, b.const("norm", sd["model.norm.weight"])], axis=-1, epsilon=eps)[0]
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    logits = b.op("MatMul", [last, b.const("lm_head.wT", head.T)])[0]
    logits = b.scale(logits, 1.0 / float(getattr(cfg, "logits_scaling", 1.0) or 1.0), "logit_scale")
    b.nodes.append(b.h.make_node("Identity", [logits], ["logits"]))

    F, I64 = TensorProto.FLOAT, TensorProto.INT64
    kv_in = [b.h.make_tensor_value_info(f"past_{t}_{i}", F, ["batch", nkv, "past", hd]) for i in range(nl) for t in ("key", "value")]
    kv_out = [b.h.make_tensor_value_info(n, F, ["batch", nkv, "total", hd]) for n in outputs]
    graph = b.h.make_graph(b.nodes, "amoeba_decoder",
                           [b.h.make_tensor_value_info("input_ids", I64, ["batch", "seq"]),
                            b.h.make_tensor_value_info("position_ids", I64, ["batch", "seq"]), *kv_in],
                           [b.h.make_tensor_value_info("logits", F, ["batch", 1, int(cfg.vocab_size)]), *kv_out],
                           initializer=b.inits)
    onnx_model = b.h.make_model(graph, opset_imports=[b.h.make_opsetid("", OPSET)], producer_name="amoeba-profilers")
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString(), GraphDims(nl, nq, nkv, hd, int(cfg.vocab_size))
