"""The trainer's weights as vLLM expects them: the base checkpoint's names, LoRA adapters folded in.

Both vLLM backends (colocated and server) push the output of :func:`trainer_weights`, so a LoRA run and a full
fine-tune look the same to vLLM: it never sees peft's names or adapter tensors.

The merge is done out of place (``W + get_delta_weight(adapter)`` for each LoRA layer) rather than with peft's
``merge_adapter()`` / ``unmerge_adapter()``: those add the delta into the frozen base weights and subtract it
again, which does not round-trip exactly (in bf16 the base weights would drift by up to an ulp per step).
"""

from __future__ import annotations

from typing import Any

#: peft wraps the base model twice: PeftModel.base_model (LoraModel) .model (the transformers model)
PEFT_PREFIX = "base_model.model."


def base_name(peft_name: str) -> str | None:
    """The base checkpoint's name of a peft state-dict entry, or None for adapter-only tensors.

    >>> base_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight")
    'model.layers.0.self_attn.q_proj.weight'
    >>> base_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") is None
    True
    """
    name = peft_name[len(PEFT_PREFIX):] if peft_name.startswith(PEFT_PREFIX) else peft_name
    parts = name.split(".")
    if any(p.startswith("lora_") for p in parts) or "original_module" in parts:
        return None  # adapter tensors; original_module is the untrained copy beside a modules_to_save one
    if "modules_to_save" in parts:  # ``lm_head.modules_to_save.<adapter>.weight`` -> ``lm_head.weight``
        i = parts.index("modules_to_save")
        parts = parts[:i] + parts[i + 2:]
    return ".".join(p for p in parts if p != "base_layer")


def _merged_lora_weights(model: Any) -> dict[str, Any]:
    """``{peft state-dict name of a LoRA layer's base weight: base weight + active adapters' deltas}``."""
    from peft.tuners.lora import LoraLayer

    merged = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        weight = module.get_base_layer().weight.detach()
        if not module.merged and not module.disable_adapters:
            for adapter in module.active_adapters:
                if module.use_dora.get(adapter, False):
                    raise NotImplementedError(f"{module_name}: DoRA adapters cannot be pushed to vLLM yet (use_dora=false)")
                if adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {}):
                    weight = weight + module.get_delta_weight(adapter).detach().to(weight.dtype)
        merged[f"{module_name}.base_layer.weight"] = weight
    return merged


def trainer_weights(model: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` for every tensor of ``model``'s state dict under the base checkpoint's names.

    A peft model (``peft_config`` attribute) gets its active LoRA adapters merged into a copy of each adapted
    weight; adapter tensors are dropped. The model itself is not modified. Tensors are detached, on the model's
    device and in its dtype.
    """
    state = model.state_dict()
    if not hasattr(model, "peft_config"):
        return [(name, t.detach()) for name, t in state.items()]
    merged = _merged_lora_weights(model)
    out = []
    for name, tensor in state.items():
        target = base_name(name)
        if target is not None:
            out.append((target, merged.get(name, tensor).detach()))
    return out
