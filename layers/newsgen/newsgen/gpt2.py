"""GPT-2's forward for serving on torch alone: transformers' modeling module is never imported.

`from transformers import GPT2LMHeadModel` costs seconds of imports on a cold start (torch._dynamo, hub kernels,
masking utils); this module costs what torch and safetensors already cost. It reads a published artifact as
it is (config.json with model.safetensors, or newsgen's model.int8.safetensors from newsgen.optimize), the
tensors memory-mapped, and computes what GPT2LMHeadModel computes: tests/test_gpt2.py checks the logits
against transformers', fp32 and int8. Per call the attention mask is built once; per layer there are about ten
torch calls: the fused QKV projection (GPT-2's c_attn), K and V written into one preallocated cache (no
torch.cat per token), scaled_dot_product_attention (is_causal and no mask when nothing is padded), the fused
tanh GELU. The int8 matmuls are the ones torch.ao's dynamic Linear calls, on the same packed weights.

The calling convention is the part of transformers' that newsgen.generation uses: model(input_ids=,
attention_mask=, position_ids=, cache=, logits_to_keep=) returns .logits [batch, kept, vocab] and .cache, with
.config (vocab_size, n_positions) and .generation_config beside. Beam search, training and the fallback stay
on transformers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

WEIGHTS = {"fp32": "model.safetensors", "int8": "model.int8.safetensors"}  # as newsgen.artifacts names them
INT8_SUFFIXES = ("weight_int8", "weight_scale", "weight_zero_point")  # as newsgen.optimize.int8_tensors writes
LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
CACHE_HEADROOM = 128  # positions a cache gets beyond the prompt when the caller does not say how many it needs


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True

    @classmethod
    def from_json(cls, data: dict) -> Config:
        """GPT-2's config.json; a variant this forward does not compute is refused, not approximated."""
        if data.get("model_type") != "gpt2" or data.get("add_cross_attention"):
            raise ValueError(f"not a decoder-only GPT-2 config: model_type {data.get('model_type')!r}")
        if data.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"activation {data['activation_function']!r}: this forward computes tanh GELU only")
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})


@dataclasses.dataclass
class Output:
    logits: torch.Tensor  # [batch, kept positions, vocab], float32
    cache: KVCache | None


class KVCache:
    """Keys and values of every layer in one tensor [layer, k|v, batch, head, position, head_dim], written in
    place. With left padding every row's next token goes to the same position, so one length serves the batch."""

    def __init__(self, config: Config, batch: int, capacity: int):
        self.config, self.length = config, 0
        heads = config.n_head
        self.kv = torch.empty(config.n_layer, 2, batch, heads, capacity, config.n_embd // heads)

    def reserve(self, total: int) -> None:
        capacity = self.kv.shape[4]
        if total <= capacity:
            return
        if total > self.config.n_positions:
            raise ValueError(f"{total} positions exceed the model's context of {self.config.n_positions}")
        shape = list(self.kv.shape)
        shape[4] = min(self.config.n_positions, max(total, 2 * capacity))
        grown = self.kv.new_empty(shape)
        grown[:, :, :, :, : self.length] = self.kv[:, :, :, :, : self.length]
        self.kv = grown


def _addmm(x, weight):  # fp32: transformers' Conv1D computes exactly this, on its [in, out] weight
    return torch.addmm(weight[1], x, weight[0])


def _int8(x, packed):  # int8: what torch.ao.nn.quantized.dynamic.Linear (version 4) calls
    return torch.ops.quantized.linear_dynamic(x, packed, True)


class GPT2:
    def __init__(self, config: Config, tensors: dict, int8: bool, generation_config=None):
        """`tensors`: names without the "transformer." prefix; fp32 Linears as Conv1D [in, out] weights, int8 ones
        as newsgen.optimize.int8_tensors writes them (quantize_int8 turns fp32 ones into those)."""
        self.config, self.int8 = config, int8
        self.generation_config = generation_config or types.SimpleNamespace()
        take = tensors.pop
        self.wte, self.wpe = take("wte.weight"), take("wpe.weight")
        self.ln_f = (take("ln_f.weight"), take("ln_f.bias"))
        self.linear = _int8 if int8 else _addmm
        # tanh GELU in one kernel; transformers writes it as 7 tensor ops (0.1 ms per token at batch 1), which
        # differ from it by float rounding (~1e-6 on logits). Tests set transformers' own to compare bit for bit.
        self.gelu = functools.partial(F.gelu, approximate="tanh")

        def linear(name):
            return _packed(tensors, name) if int8 else (take(f"{name}.weight"), take(f"{name}.bias"))

        with ThreadPoolExecutor(1, thread_name_prefix="newsgen-pack") as pool:
            if int8:  # the biggest matrix: packed on a second core while this one packs the layers (cold start)
                head = {f"lm_head.{suffix}": take(f"lm_head.{suffix}") for suffix in INT8_SUFFIXES}
                packing = pool.submit(_packed, head, "lm_head")
            self.layers = [
                (
                    *(take(f"h.{i}.{norm}.{p}") for norm in ("ln_1", "ln_2") for p in ("weight", "bias")),
                    *(linear(f"h.{i}.{name}") for name in LINEARS),
                )
                for i in range(config.n_layer)
            ]
            if int8:
                self.lm_head = packing.result()
            elif config.tie_word_embeddings:  # as transformers ties them, whatever lm_head.weight a file holds
                self.lm_head = self.wte
                tensors.pop("lm_head.weight", None)
            else:
                self.lm_head = take("lm_head.weight")
        if tensors:
            raise ValueError(f"weights this GPT-2 config does not use: {sorted(tensors)[:5]}")
        head_dim = config.n_embd // config.n_head
        scale = head_dim**-0.5 if config.scale_attn_weights else 1.0
        inverse = config.scale_attn_by_inverse_layer_idx
        self.scales = [scale / (i + 1) if inverse else scale for i in range(config.n_layer)]

    @property
    def device(self) -> torch.device:  # newsgen.generation puts the prompts there; this forward runs on the CPU
        return self.wte.device

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache(self.config, batch, min(capacity, self.config.n_positions))

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        cache: KVCache | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
    ) -> Output:
        """input_ids [batch, steps] after `cache.length` cached positions; attention_mask [batch, all positions]
        (1 real, 0 padding), position_ids [batch, steps]: as transformers' GPT2LMHeadModel takes them."""
        c = self.config
        batch, steps = input_ids.shape
        width, heads = c.n_embd, c.n_head
        cache = cache or self.new_cache(batch, steps + CACHE_HEADROOM)
        past = cache.length
        total = past + steps
        cache.reserve(total)
        if position_ids is None:
            position_ids = torch.arange(past, total).expand(batch, steps)
        x = (F.embedding(input_ids, self.wte) + F.embedding(position_ids, self.wpe)).view(-1, width)

        mask, causal = None, False
        if attention_mask is not None and attention_mask.shape[1] != total:
            raise ValueError(f"attention_mask covers {attention_mask.shape[1]} positions, the call {total}")
        if attention_mask is not None and not bool(attention_mask.all()):
            keys = attention_mask.bool()
            if steps == 1:
                mask = keys[:, None, None, :]
            else:
                slots = torch.arange(total)
                queries = slots[past:, None]
                # transformers' mask exactly: a padding query attends to nothing, and SDPA gives it zeros (torch
                # >= 2.5; NaN before, which would poison the cache). Padding rows must come out as transformers'
                # do: int8's activation scale is one per tensor, shared by every row of the batch.
                mask = ((slots <= queries) & keys[:, None, :])[:, None]
        elif steps > 1:
            slots = torch.arange(total)
            causal = past == 0
            mask = None if causal else slots <= slots[past:, None]

        kv = cache.kv
        linear, gelu, eps = self.linear, self.gelu, c.layer_norm_epsilon
        for i, (ln1w, ln1b, ln2w, ln2b, attn, proj, fc, out) in enumerate(self.layers):
            qkv = linear(F.layer_norm(x, (width,), ln1w, ln1b, eps), attn).view(batch, steps, 3, heads, -1)
            kv[i, :, :, :, past:total] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(
                qkv[:, :, 0].transpose(1, 2),
                kv[i, 0, :, :, :total],
                kv[i, 1, :, :, :total],
                attn_mask=mask,
                is_causal=causal,
                scale=self.scales[i],
            )
            x = linear(attended.transpose(1, 2).reshape(-1, width), proj) + x
            h = gelu(linear(F.layer_norm(x, (width,), ln2w, ln2b, eps), fc))
            x = x + linear(h, out)
        cache.length = total

        if logits_to_keep:
            x = x.view(batch, steps, width)[:, -logits_to_keep:].reshape(-1, width)
        x = F.layer_norm(x, (width,), *self.ln_f, eps)
        logits = linear(x, self.lm_head) if self.int8 else F.linear(x, self.lm_head)
        return Output(logits=logits.view(batch, -1, logits.shape[-1]), cache=cache if use_cache else None)


def _packed(tensors: dict, name: str):
    """An int8 Linear's stored integers, per-channel scales and zero points (and bias), packed for the kernel
    as torch.ao.nn.quantized.dynamic.Linear.set_weight_bias packs them."""
    integers, scales, zero_points = (tensors.pop(f"{name}.{suffix}") for suffix in INT8_SUFFIXES)
    weight = torch._make_per_channel_quantized_tensor(integers, scales, zero_points, 0)
    return torch.ops.quantized.linear_prepack(weight, tensors.pop(f"{name}.bias", None))


def quantize_int8(tensors: dict, config: Config) -> dict:
    """fp32 weights to the int8 tensors newsgen.optimize.int8_tensors stores for quantize_int8's model: every
    Linear (Conv1D transposed) and the lm_head (the tied embedding) with symmetric per-channel int8 weights,
    the scales as torch.ao's per-channel min/max observer computes them."""
    lm_head = tensors.pop("lm_head.weight", None)
    lm_head = tensors["wte.weight"] if config.tie_word_embeddings or lm_head is None else lm_head
    weights = {
        f"h.{i}.{name}": tensors.pop(f"h.{i}.{name}.weight").t() for i in range(config.n_layer) for name in LINEARS
    }
    for name, weight in {**weights, "lm_head": lm_head}.items():
        weight = weight.float().contiguous()
        largest = torch.maximum(-weight.amin(1).clamp(max=0), weight.amax(1).clamp(min=0))
        scales = torch.clamp(largest / 127.5, min=torch.finfo(torch.float32).eps).double()
        zero_points = torch.zeros(len(scales), dtype=torch.int64)
        q = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        tensors.update(
            {
                f"{name}.weight_int8": q.int_repr(),
                f"{name}.weight_scale": scales,
                f"{name}.weight_zero_point": zero_points,
            }
        )
    return tensors


def read_tensors(path: Path, export: str = "fp32") -> dict:
    """The artifact's tensors, memory-mapped (safetensors' safe_open maps the file; nothing is copied until a
    page is touched); names without the "transformer." prefix, the causal-mask buffers of old checkpoints left
    out. An fp32 export may be sharded (model.safetensors.index.json)."""
    from safetensors import safe_open

    path = Path(path)
    files = [path / WEIGHTS[export]]
    index = path / "model.safetensors.index.json"
    if export == "fp32" and not files[0].is_file() and index.is_file():
        files = [path / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                name = key.removeprefix("transformer.")
                if name.endswith(("attn.bias", "attn.masked_bias")) and name.count(".") == 3:
                    continue  # h.<i>.attn.bias: the causal mask old transformers versions saved
                tensors[name] = handle.get_tensor(key)
    return tensors


def generation_defaults(path: Path) -> types.SimpleNamespace:
    """generation_config.json as attributes: transformers' GenerationConfig leaves every field the file does
    not set at None, and newsgen.generation reads them with getattr(…, None)."""
    file = Path(path) / "generation_config.json"
    return types.SimpleNamespace(**(json.loads(file.read_text()) if file.is_file() else {}))


def load(path: Path, export: str = "fp32", quantize: str = "none") -> GPT2:
    """A published artifact's directory (already verified against its manifest) as a GPT2: `export` as the
    manifest says; quantize="int8" turns an fp32 export into the int8 model the int8 export would give."""
    path = Path(path)
    config = Config.from_json(json.loads((path / "config.json").read_text()))
    tensors = read_tensors(path, export)
    int8 = export == "int8" or quantize == "int8"
    try:
        if export == "fp32" and int8:
            tensors = quantize_int8(tensors, config)
        return GPT2(config, tensors, int8, generation_defaults(path))
    except KeyError as exc:
        raise ValueError(f"{path}: weights do not fit the config: {exc.args[0]} is missing") from None
