"""Write a Llama-family HF model (a base or an exported subnet) as a GGUF file that llama.cpp loads (``llama`` arch).

What is written, following llama.cpp's own converter (``convert_hf_to_gguf.py``, ``LlamaModel``) and loader
(``src/models/llama.cpp`` of the llama.cpp vendored by llama-cpp-python 0.3.36):

- architecture ``llama`` for every function-equivalent export (``llama``, ``mistral`` without a sliding window,
  ``granite`` with neutral multipliers, ``qwen2`` without sliding attention); ``head_dim`` as ``key_length`` /
  ``value_length`` so ``heads × head_dim ≠ hidden`` works;
- Q/K rows permuted from HF's rotate-half layout to llama.cpp's interleaved rotary pairs (per head count: query
  heads for Q, KV heads for K; biases likewise);
- biases: the llama arch loads optional ``attn_q/k/v/output.bias`` and ``ffn_gate/up/down.bias``, so the
  compensation biases (``attn_output.bias``, ``ffn_down.bias``) are kept; all-zero biases are dropped (exactly the
  same function, and transformers' GGUF loader, which has no bias flags for llama, can still read the file);
- weights ``f32``, ``f16`` or ``q8_0`` (2-D weights; norms and biases stay F32, rows not a multiple of the block
  size stay F16), or ``q4_k`` (llama.cpp's own quantiser from an f16 file, needs ``llama-cpp-python``);
- tokenizer: byte-level BPE (``tokenizer.json`` with a ``ByteLevel`` pre-tokenizer) as ``gpt2`` (tokens, types,
  merges), Metaspace/byte-fallback BPE as ``llama`` (SentencePiece-style: tokens, scores by merge rank, types);
  no tokenizer → ``none`` with ``llama.vocab_size`` (llama.cpp adds dummy tokens: enough for latency profiling).

Per-layer head counts / MLP sizes: llama.cpp *reads* ``head_count``, ``head_count_kv`` and ``feed_forward_length``
as scalars or per-layer arrays for every architecture, but the ``llama`` arch creates every layer's tensors with
layer 0's sizes (``n_head()``, ``n_ff()``), so a file with varying sizes fails its tensor-shape check. llama.cpp's
``deci`` arch (Llama-3.1-Nemotron-NAS: the Llama function, same tensor names and optional biases) uses the
per-layer sizes (``n_head(il)``, ``n_head_kv(il)``, ``n_ff(il)``) in both loader and graph: subnets whose layers
differ (``global`` allocation, ``amoeba_layers.json``) are written as ``deci`` with per-layer arrays.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.atomic import atomic_path
from core.errors import ConfigError, DataMissingError, UnsupportedModelError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

GGUF_DTYPES = ("f32", "f16", "q8_0", "q4_k")
#: HF ``model_type`` values whose function the GGUF ``llama`` architecture expresses (checked per config)
SOURCE_MODEL_TYPES = ("llama", "mistral", "granite", "qwen2")
_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight", "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.gate_proj.bias": "ffn_gate.bias",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.up_proj.bias": "ffn_up.bias",
    "mlp.down_proj.weight": "ffn_down.weight", "mlp.down_proj.bias": "ffn_down.bias",
}


@dataclass(frozen=True)
class GGUFWriteResult:
    """What was written: path, weight dtype, tensor types (name → count), sizes and the time it took."""

    path: Path
    dtype: str
    tensor_types: dict[str, int]
    num_tensors: int
    num_bytes: int
    dropped_zero_biases: int
    tokenizer: str
    seconds: float
    architecture: str = "llama"


@dataclass(frozen=True)
class LlamaDims:
    """The dimensions the GGUF header needs, validated from an HF config."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    context_length: int
    tied: bool


def llama_dims(config: PretrainedConfig) -> LlamaDims:
    """Check that ``config`` is expressible as GGUF ``llama`` and return its dims; ``UnsupportedModelError`` names why not."""
    mt = str(getattr(config, "model_type", None))
    if mt not in SOURCE_MODEL_TYPES:
        raise UnsupportedModelError(f"cannot write GGUF for model type {mt!r}: supported {', '.join(SOURCE_MODEL_TYPES)} (as GGUF architecture 'llama')")
    if mt == "mistral" and getattr(config, "sliding_window", None) not in (None, 0) and int(config.sliding_window) < int(config.max_position_embeddings):
        raise UnsupportedModelError(f"cannot write GGUF 'llama' for a Mistral with sliding window {config.sliding_window}")
    if mt == "qwen2" and getattr(config, "use_sliding_window", False):
        raise UnsupportedModelError("cannot write GGUF 'llama' for a Qwen2 with sliding-window attention")
    if mt == "granite":
        hd = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        neutral = {"embedding_multiplier": 1.0, "residual_multiplier": 1.0, "logits_scaling": 1.0, "attention_multiplier": hd**-0.5}
        off = [k for k, v in neutral.items() if abs(float(getattr(config, k, v)) - v) > 1e-6 * max(1.0, abs(v))]
        if off:
            raise UnsupportedModelError(f"cannot write GGUF 'llama' for a Granite model with non-neutral {', '.join(off)}")
    for key in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        v = getattr(config, key, None)
        if isinstance(v, list | tuple):
            raise UnsupportedModelError(f"cannot write GGUF 'llama' with per-layer {key}: llama.cpp's llama arch needs one size for all layers")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"cannot write GGUF 'llama' with activation {config.hidden_act!r} (llama uses silu)")
    rp = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = rp.get("rope_type", "default")
    if rope_type != "default":
        raise UnsupportedModelError(f"cannot write GGUF with rope type {rope_type!r} (supported: default)")
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    hd = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    if hd % 2:
        raise UnsupportedModelError(f"cannot write GGUF with odd head_dim {hd} (rotary pairs)")
    theta = float(rp.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    return LlamaDims(num_layers=int(config.num_hidden_layers), hidden_size=int(config.hidden_size), num_heads=heads, num_kv_heads=kv,
                     head_dim=hd, intermediate_size=int(config.intermediate_size), vocab_size=int(config.vocab_size),
                     rms_norm_eps=float(config.rms_norm_eps), rope_theta=theta,
                     context_length=int(getattr(config, "max_position_embeddings", 2048)), tied=bool(getattr(config, "tie_word_embeddings", False)))


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate-half rows → llama.cpp interleaved pairs, per head (``convert_hf_to_gguf.LlamaModel.permute``)."""
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise UnsupportedModelError(f"cannot permute {rows} rows into {n_heads} heads of rotary pairs")
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def layer_sizes(state: dict[str, torch.Tensor], dims: LlamaDims) -> list[tuple[int, int, int]]:
    """(query heads, KV heads, MLP channels) of every layer, read from the tensor shapes."""
    out = []
    for i in range(dims.num_layers):
        pre = f"model.layers.{i}."
        try:
            q = int(state[pre + "self_attn.q_proj.weight"].shape[0]) // dims.head_dim
            kv = int(state[pre + "self_attn.k_proj.weight"].shape[0]) // dims.head_dim
            ff = int(state[pre + "mlp.gate_proj.weight"].shape[0])
        except KeyError as e:
            raise UnsupportedModelError(f"cannot write GGUF: layer {i} lacks tensor {e}") from None
        if q % kv:
            raise UnsupportedModelError(f"cannot write GGUF: layer {i} has {q} query heads over {kv} KV heads")
        out.append((q, kv, ff))
    return out


def gguf_tensors(state: dict[str, torch.Tensor], dims: LlamaDims, sizes: list[tuple[int, int, int]] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) of every tensor, Q/K permuted (per layer's head counts when ``sizes`` is given);
    ``UnsupportedModelError`` for unknown tensors."""
    for name, t in state.items():
        a = t.detach().to("cpu").float().numpy()
        if name == "model.embed_tokens.weight":
            yield "token_embd.weight", a
        elif name == "model.norm.weight":
            yield "output_norm.weight", a
        elif name == "lm_head.weight":
            if not dims.tied:
                yield "output.weight", a
        elif name.startswith("model.layers."):
            idx, _, rest = name.removeprefix("model.layers.").partition(".")
            g = _LAYER_MAP.get(rest)
            if g is None:
                raise UnsupportedModelError(f"cannot write GGUF: tensor {name} has no llama.cpp counterpart")
            q_heads, kv_heads = (sizes[int(idx)][0], sizes[int(idx)][1]) if sizes else (dims.num_heads, dims.num_kv_heads)
            if rest.startswith("self_attn.q_proj"):
                a = permute_rotary(a, q_heads)
            elif rest.startswith("self_attn.k_proj"):
                a = permute_rotary(a, kv_heads)
            yield f"blk.{int(idx)}.{g}", a
        elif name.endswith("rotary_emb.inv_freq"):
            continue
        else:
            raise UnsupportedModelError(f"cannot write GGUF: tensor {name} has no llama.cpp counterpart")


# ---- tokenizer ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerMeta:
    """GGUF tokenizer metadata: ``model`` ``gpt2`` / ``llama`` / ``none``."""

    model: str
    pre: str | None = None
    tokens: list[str] | None = None
    token_types: list[int] | None = None
    merges: list[str] | None = None
    scores: list[float] | None = None
    add_space_prefix: bool | None = None
    special: dict[str, int | None] | None = None


def _special_ids(tok_dir: Path | None, config: PretrainedConfig, vocab: dict[str, int]) -> dict[str, int | None]:
    cfg: dict[str, Any] = {}
    if tok_dir is not None and (tok_dir / "tokenizer_config.json").is_file():
        cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())

    def tid(key: str, cfg_id: Any) -> int | None:
        tok = cfg.get(key)
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str) and tok in vocab:
            return vocab[tok]
        return int(cfg_id) if isinstance(cfg_id, int) else None

    return {"bos": tid("bos_token", getattr(config, "bos_token_id", None)), "eos": tid("eos_token", getattr(config, "eos_token_id", None)),
            "unk": tid("unk_token", getattr(config, "unk_token_id", None)), "pad": tid("pad_token", getattr(config, "pad_token_id", None))}


def tokenizer_meta(tok_dir: Path | None, config: PretrainedConfig, vocab_size: int) -> TokenizerMeta:
    """Tokenizer metadata from ``tok_dir/tokenizer.json`` (``none`` without one); ``UnsupportedModelError`` for other kinds."""
    import gguf

    path = tok_dir / "tokenizer.json" if tok_dir is not None else None
    if path is None or not path.is_file():
        return TokenizerMeta(model="none")
    doc = json.loads(path.read_text())
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedModelError(f"{path}: tokenizer model {model.get('type')!r} cannot be written to GGUF (supported: BPE)")
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = {a["content"]: a for a in doc.get("added_tokens", [])}
    for a in added.values():
        vocab.setdefault(a["content"], int(a["id"]))
    if max(vocab.values(), default=-1) >= vocab_size:
        raise UnsupportedModelError(f"{path}: token ids reach {max(vocab.values())}, the model's vocab_size is {vocab_size}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = json.dumps(doc.get("pre_tokenizer"))
    byte_level = '"ByteLevel"' in pre
    by_id: dict[int, str] = {i: t for t, i in vocab.items()}
    tokens, types, scores = [], [], []
    T = gguf.TokenType
    for i in range(vocab_size):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(T.UNUSED))
        else:
            tokens.append(t)
            a = added.get(t)
            if a is not None:
                types.append(int(T.CONTROL if a.get("special") else T.USER_DEFINED))
            elif not byte_level and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                types.append(int(T.BYTE))
            else:
                types.append(int(T.NORMAL))
        scores.append(0.0 if t is None or t in added else -float(i))
    special = _special_ids(tok_dir, config, vocab)
    if byte_level:
        digits = '"Digits"' in pre
        return TokenizerMeta(model="gpt2", pre="smollm" if digits else "gpt-2", tokens=tokens, token_types=types, merges=merges, special=special)
    if '"Metaspace"' in pre and model.get("byte_fallback"):
        unk = special.get("unk")
        if unk is not None:
            types[unk] = int(T.UNKNOWN)
        prepend = (doc.get("pre_tokenizer") or {}).get("prepend_scheme", "always") != "never"
        return TokenizerMeta(model="llama", tokens=tokens, token_types=types, scores=scores, merges=merges, add_space_prefix=prepend, special=special)
    raise UnsupportedModelError(f"{path}: BPE tokenizer with pre-tokenizer {pre[:80]} cannot be written to GGUF "
                                "(supported: ByteLevel BPE as gpt2, Metaspace byte-fallback BPE as llama)")


# ---- writing -----------------------------------------------------------------------------------------------


def _quantized(name: str, a: np.ndarray, dtype: str) -> tuple[np.ndarray, Any]:
    """(data, raw GGML type or None) of one tensor at the file's ``dtype`` (1-D tensors stay F32)."""
    import gguf

    if a.ndim == 1 or dtype == "f32":
        return a.astype(np.float32), None
    if dtype == "q8_0" and a.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return a.astype(np.float16), None


def write_gguf_model(model: PreTrainedModel, out: Path, *, dtype: str = "f16", tokenizer_dir: Path | None = None,
                     name: str | None = None) -> GGUFWriteResult:
    """Write an in-memory HF causal LM as GGUF at ``out`` (see ``write_gguf_state``)."""
    return write_gguf_state(model.config, model.state_dict(), out, dtype=dtype, tokenizer_dir=tokenizer_dir, name=name)


def write_gguf_state(config: PretrainedConfig, state: dict[str, torch.Tensor], out: Path, *, dtype: str = "f16",
                     tokenizer_dir: Path | None = None, name: str | None = None) -> GGUFWriteResult:
    """Write HF-named tensors with their stock ``config`` as GGUF at ``out`` (atomically): ``llama``, or ``deci``
    when layer sizes differ. ``q4_k`` goes through llama.cpp's quantiser."""
    if dtype not in GGUF_DTYPES:
        raise ConfigError(f"unknown GGUF dtype {dtype!r}: use one of {', '.join(GGUF_DTYPES)}")
    t0 = time.perf_counter()
    out = Path(out)
    if dtype == "q4_k":
        with tempfile.TemporaryDirectory(prefix="amoeba-gguf-") as d:
            f16 = Path(d) / "f16.gguf"
            write_gguf_state(config, state, f16, dtype="f16", tokenizer_dir=tokenizer_dir, name=name)
            quantize_gguf(f16, out, "q4_k")
        return summarise_gguf(out, "q4_k", time.perf_counter() - t0)
    with atomic_path(out) as tmp:
        arch, dropped, tok_model = _write_file(config, state, tmp, dtype, tokenizer_dir, name)
    res = summarise_gguf(out, dtype, time.perf_counter() - t0)
    return GGUFWriteResult(res.path, dtype, res.tensor_types, res.num_tensors, res.num_bytes, dropped, tok_model, res.seconds, arch)


def _write_file(config: PretrainedConfig, state: dict[str, torch.Tensor], path: Path, dtype: str, tokenizer_dir: Path | None,
                name: str | None) -> tuple[str, int, str]:
    """Write the GGUF at ``path``; returns (architecture, zero biases dropped, tokenizer model)."""
    import gguf

    dims = llama_dims(config)
    tok = tokenizer_meta(tokenizer_dir, config, dims.vocab_size)
    sizes = layer_sizes(state, dims)
    uniform = len(set(sizes)) == 1
    arch = "llama" if uniform else "deci"
    w = gguf.GGUFWriter(str(path), arch)
    try:
        w.add_name(name or "amoeba-subnet")
        w.add_block_count(dims.num_layers)
        w.add_context_length(dims.context_length)
        w.add_embedding_length(dims.hidden_size)
        if uniform:
            w.add_feed_forward_length(sizes[0][2])
            w.add_head_count(sizes[0][0])
            w.add_head_count_kv(sizes[0][1])
        else:
            w.add_feed_forward_length([s[2] for s in sizes])
            w.add_head_count([s[0] for s in sizes])
            w.add_head_count_kv([s[1] for s in sizes])
        w.add_key_length(dims.head_dim)
        w.add_value_length(dims.head_dim)
        w.add_rope_dimension_count(dims.head_dim)
        w.add_rope_freq_base(dims.rope_theta)
        w.add_layer_norm_rms_eps(dims.rms_norm_eps)
        w.add_vocab_size(dims.vocab_size)
        w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
        _add_tokenizer(w, tok)
        dropped = 0
        for gname, a in gguf_tensors(state, dims, sizes):
            if gname.endswith(".bias") and not np.any(a):
                dropped += 1
                continue
            data, raw = _quantized(gname, a, dtype)
            w.add_tensor(gname, data, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    return arch, dropped, tok.model


def _add_tokenizer(w: Any, tok: TokenizerMeta) -> None:
    w.add_tokenizer_model(tok.model)
    if tok.model == "none":
        return
    if tok.pre:
        w.add_tokenizer_pre(tok.pre)
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.token_types)
    if tok.scores is not None:
        w.add_token_scores(tok.scores)
    if tok.merges:
        w.add_token_merges(tok.merges)
    if tok.add_space_prefix is not None:
        w.add_add_space_prefix(tok.add_space_prefix)
    w.add_add_bos_token(False)
    for key, fn in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("unk", w.add_unk_token_id), ("pad", w.add_pad_token_id)):
        v = (tok.special or {}).get(key)
        if v is not None:
            fn(v)


def write_gguf(model_dir: Path, out: Path, *, dtype: str = "f16", name: str | None = None) -> GGUFWriteResult:
    """Write the HF model directory ``model_dir`` (a base or an exported subnet, tokenizer from the same directory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.export.layers import LAYERS_FILE, load_exported

    d = Path(model_dir)
    if not (d / "config.json").is_file():
        raise DataMissingError(f"{d} has no config.json")
    llama_dims(AutoConfig.from_pretrained(str(d)))
    if (d / LAYERS_FILE).is_file():  # a per-layer subnet: rebuilt by our loader, written as GGUF 'deci'
        model = load_exported(d, verify=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    return write_gguf_model(model, out, dtype=dtype, tokenizer_dir=d, name=name or d.name)


def quantize_gguf(src: Path, out: Path, qtype: str) -> None:
    """Quantise a GGUF with llama.cpp's own quantiser (``llama_model_quantize``; ``q4_k`` = ``Q4_K_M``)."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(f"GGUF {qtype} needs llama.cpp's quantiser: pip install llama-cpp-python (or use f32, f16, q8_0)") from None
    ftype = {"q4_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}.get(qtype)
    if ftype is None:
        raise ConfigError(f"unknown quantisation {qtype!r}: q4_k or q8_0")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    with atomic_path(out) as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0 or not tmp.is_file():
            raise ConfigError(f"llama.cpp failed to quantise {src.name} to {qtype} (return code {rc})")


def summarise_gguf(path: Path, dtype: str, seconds: float) -> GGUFWriteResult:
    """Read back a GGUF's tensor types and size."""
    import gguf

    r = gguf.GGUFReader(str(path))
    types = Counter(t.tensor_type.name for t in r.tensors)
    model = r.fields.get("tokenizer.ggml.model")
    tok = bytes(model.parts[model.data[0]]).decode() if model is not None else "none"
    af = r.fields.get("general.architecture")
    arch = bytes(af.parts[af.data[0]]).decode() if af is not None else "?"
    return GGUFWriteResult(Path(path), dtype, dict(sorted(types.items())), len(r.tensors), Path(path).stat().st_size, 0, tok, round(seconds, 3), arch)


def llamacpp_logits(path: Path, ids: list[int], *, threads: int = 1) -> np.ndarray:
    """Logits ``[len(ids), vocab]`` of one prompt evaluated by llama.cpp (llama-cpp-python) from a GGUF file."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError("llama-cpp-python is not installed (pip install 'amoeba[llamacpp]')") from None
    llm = llama_cpp.Llama(str(path), n_ctx=max(16, len(ids)), n_batch=max(16, len(ids)), logits_all=True, verbose=False,
                          n_threads=threads, n_threads_batch=threads)
    try:
        llm.eval(list(ids))
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def hf_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    """Logits ``[len(ids), vocab]`` of the HF model directory (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.inference_mode():
        return np.asarray(model(torch.tensor([ids])).logits[0].float().numpy())


@dataclass(frozen=True)
class Parity:
    """Max |Δ logit| of the GGUF (through llama.cpp) against the HF model, relative to the logits' own scale."""

    max_abs_diff: float
    logit_scale: float
    argmax_agreement: float
    tokens: int

    @property
    def relative(self) -> float:
        return self.max_abs_diff / max(self.logit_scale, 1e-12)


def parity(hf_dir: Path, gguf_path: Path, ids: list[int]) -> Parity:
    """Compare next-token logits of the HF directory and its GGUF on ``ids`` (llama-cpp-python required)."""
    ref, got = hf_logits(hf_dir, ids), llamacpp_logits(gguf_path, ids)
    return Parity(float(np.abs(got - ref).max()), float(np.abs(ref).max()), float((got.argmax(-1) == ref.argmax(-1)).mean()), len(ids))
