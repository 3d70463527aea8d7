"""The families compressor knows, one class each, registered by model type (see families.py).

Adding a family: one class here (or in a module of its own that imports ``register``) with its config
keys, ``blocks`` and ``set_heads``; the pruning, student, export and validate code read only the class.
"""

from __future__ import annotations

from compressor.arch.base import Block, Family, cfg_get, register


@register
class BertFamily(Family):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "electra", "camembert")
    ort_optimizer = "bert"

    def blocks(self, model):
        return [
            Block(
                attn=b.attention.self,
                out=b.attention.output.dense,
                q=b.attention.self.query,
                k=b.attention.self.key,
                v=b.attention.self.value,
                ffn_in=[b.intermediate.dense],
                ffn_out=b.output.dense,
            )
            for b in model.base_model.encoder.layer
        ]

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_attention_heads = n
        block.attn.all_head_size = n * head_dim


@register
class DistilBertFamily(Family):
    name = "distilbert"
    model_types = ("distilbert",)
    heads_key, hidden_key, ffn_key, layers_key = "n_heads", "dim", "hidden_dim", "n_layers"
    ort_optimizer = "bert"

    def blocks(self, model):
        return [
            Block(
                attn=b.attention,
                out=b.attention.out_lin,
                q=b.attention.q_lin,
                k=b.attention.k_lin,
                v=b.attention.v_lin,
                ffn_in=[b.ffn.lin1],
                ffn_out=b.ffn.lin2,
            )
            for b in model.base_model.transformer.layer
        ]

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.n_heads = n


@register
class AlbertFamily(BertFamily):
    """ALBERT: every layer runs the same shared block; pruning it once prunes all layers."""

    name = "albert"
    model_types = ("albert",)
    shared_block = True

    def blocks(self, model):
        return [
            Block(
                attn=b.attention,
                out=b.attention.dense,
                q=b.attention.query,
                k=b.attention.key,
                v=b.attention.value,
                ffn_in=[b.ffn],
                ffn_out=b.ffn_output,
            )
            for g in model.base_model.encoder.albert_layer_groups
            for b in g.albert_layers
        ]

    def student_refusal(self, config):
        if cfg_get(config, "num_hidden_groups", 1) != 1:
            return (
                f"this ALBERT has {cfg_get(config, 'num_hidden_groups')} groups of shared layers: a student "
                "of fewer repeats is made only from one shared group"
            )
        return None


@register
class DebertaV2Family(Family):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    no_fusion = "ONNX Runtime's transformer optimizer has no fusion for DeBERTa's disentangled attention"

    def blocks(self, model):
        out = []
        for b in model.base_model.encoder.layer:
            s = b.attention.self
            out.append(
                Block(
                    attn=s,
                    out=b.attention.output.dense,
                    q=s.query_proj,
                    k=s.key_proj,
                    v=s.value_proj,
                    q_extra=[m for m in (getattr(s, "pos_query_proj", None),) if m is not None],
                    k_extra=[m for m in (getattr(s, "pos_key_proj", None),) if m is not None],
                    ffn_in=[b.intermediate.dense],
                    ffn_out=b.output.dense,
                )
            )
        return out

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_attention_heads = n
        block.attn.all_head_size = n * head_dim


@register
class MPNetFamily(Family):
    """MPNet: one relative-position bias table (a column per head) serves every layer, so every layer keeps
    the same heads and the table loses the same columns."""

    name = "mpnet"
    model_types = ("mpnet",)
    shared_heads = True
    no_fusion = "ONNX Runtime's transformer optimizer has no MPNet fusion (its relative position bias is not matched)"

    def blocks(self, model):
        return [
            Block(
                attn=b.attention.attn,
                out=b.attention.attn.o,
                q=b.attention.attn.q,
                k=b.attention.attn.k,
                v=b.attention.attn.v,
                ffn_in=[b.intermediate.dense],
                ffn_out=b.output.dense,
            )
            for b in model.base_model.encoder.layer
        ]

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_attention_heads = n
        block.attn.all_head_size = n * head_dim

    def prune_shared(self, model, keep: list[int]) -> None:
        import torch

        enc = model.base_model.encoder
        table = enc.relative_attention_bias  # Embedding(buckets, heads)
        with torch.no_grad():
            table.weight = torch.nn.Parameter(table.weight[:, torch.tensor(keep, dtype=torch.long)].clone())
        table.embedding_dim = enc.n_heads = len(keep)


@register
class ModernBertFamily(Family):
    name = "modernbert"
    model_types = ("modernbert",)
    no_fusion = "ONNX Runtime's transformer optimizer has no ModernBERT fusion (rotary, gated MLP)"

    def blocks(self, model):
        return [
            Block(attn=b.attn, out=b.attn.Wo, qkv=b.attn.Wqkv, ffn_gate_up=b.mlp.Wi, ffn_out=b.mlp.Wo)
            for b in model.base_model.layers
        ]


@register
class GPT2Family(Family):
    name = "gpt2"
    model_types = ("gpt2",)
    heads_key, hidden_key, ffn_key, layers_key = "n_head", "n_embd", "n_inner", "n_layer"
    ort_optimizer = "gpt2"
    causal = True

    def blocks(self, model):
        return [
            Block(attn=b.attn, out=b.attn.c_proj, qkv=b.attn.c_attn, ffn_in=[b.mlp.c_fc], ffn_out=b.mlp.c_proj)
            for b in model.base_model.h
        ]

    def ffn_size(self, config):
        return int(cfg_get(config, "n_inner", 0) or 4 * self.hidden(config))

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_heads = n
        block.attn.split_size = n * head_dim


@register
class OPTFamily(Family):
    name = "opt"
    model_types = ("opt",)
    ffn_key = "ffn_dim"
    causal = True

    def blocks(self, model):
        return [
            Block(
                attn=b.self_attn,
                out=b.self_attn.out_proj,
                q=b.self_attn.q_proj,
                k=b.self_attn.k_proj,
                v=b.self_attn.v_proj,
                ffn_in=[b.fc1],
                ffn_out=b.fc2,
            )
            for b in model.base_model.decoder.layers
        ]

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_heads = n


@register
class LlamaFamily(Family):
    """Llama-style decoders: config.head_dim fixes the head size, so pruned head counts live in the config and a
    pruned model reloads with plain ``from_pretrained``."""

    name = "llama"
    model_types = ("llama", "mistral", "qwen2", "gemma")
    kv_key, head_dim_key = "num_key_value_heads", "head_dim"
    causal = True

    def blocks(self, model):
        return [
            Block(
                attn=b.self_attn,
                out=b.self_attn.o_proj,
                q=b.self_attn.q_proj,
                k=b.self_attn.k_proj,
                v=b.self_attn.v_proj,
                ffn_in=[b.mlp.gate_proj, b.mlp.up_proj],
                ffn_out=b.mlp.down_proj,
            )
            for b in model.base_model.layers
        ]

    def set_heads(self, block, n, n_kv, head_dim):
        block.attn.num_key_value_groups = n // n_kv
        if hasattr(block.attn, "num_key_value_heads"):
            block.attn.num_key_value_heads = n_kv


@register
class PhiFamily(LlamaFamily):
    name = "phi"
    model_types = ("phi",)

    def blocks(self, model):
        return [
            Block(
                attn=b.self_attn,
                out=b.self_attn.dense,
                q=b.self_attn.q_proj,
                k=b.self_attn.k_proj,
                v=b.self_attn.v_proj,
                ffn_in=[b.mlp.fc1],
                ffn_out=b.mlp.fc2,
            )
            for b in model.base_model.layers
        ]


@register
class Phi3Family(LlamaFamily):
    name = "phi3"
    model_types = ("phi3",)

    def blocks(self, model):
        return [
            Block(
                attn=b.self_attn,
                out=b.self_attn.o_proj,
                qkv=b.self_attn.qkv_proj,
                ffn_gate_up=b.mlp.gate_up_proj,
                ffn_out=b.mlp.down_proj,
            )
            for b in model.base_model.layers
        ]
