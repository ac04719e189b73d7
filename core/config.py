"""Typed config schema (Hydra structured configs) and composing a run's config.

The YAML tree in ``conf/`` (shipped as ``r1gym.conf``) fills these dataclasses; the schema is registered in
Hydra's ConfigStore as ``r1gym_schema`` and is the first entry of ``conf/config.yaml``'s defaults, so a
misspelled key (``algo.gropu_size=8``) fails at compose time with Hydra's own message. Free-form nodes
(an env's kwargs, a logger's params) are ``dict`` fields: they belong to the plugin that reads them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from r1gym.core.paths import PKG_PREFIX, resolve_path  # noqa: F401  (re-exported: config names the paths)

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

CONFIG_MODULE = "r1gym.conf"
SCHEMA_NAME = "r1gym_schema"


@dataclass
class LoraConfig:
    """LoRA adapters (peft, extra ``lora``) instead of full fine-tuning; ``r: 0`` trains every weight."""

    r: int = 0
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    #: a registered model name (``smollm2-135m``), a local Hugging Face folder, or a hub id where reachable.
    #: No default here: the ``model`` option sets it, and ``model=hf`` leaves it ``???`` so that a missing
    #: path is an error (OmegaConf's merge never lets a ``???`` in a YAML file replace a value already set).
    name_or_path: str = MISSING
    dtype: str = "float32"
    #: how chat messages become the prompt text: "chat" (the tokenizer's chat template, instruct models)
    #: or "r1_zero" (the plain-text R1-Zero template, base models)
    prompt_format: str = "chat"
    trust_remote_code: bool = False
    #: freeze these parameter groups: "embeddings", "lm_head" (tied embeddings: both at once)
    freeze: list[str] = field(default_factory=list)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class EnvConfig:
    #: gymnasium id of a registered env (``r1gym envs`` lists them)
    id: str = "r1gym/Countdown-v0"
    #: keyword arguments for ``gymnasium.make`` (source, rewards, system_prompt, unscorable, ...)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: kwargs merged over ``kwargs`` for the held-out evaluation env (e.g. ``{source: {split: test}}``)
    eval_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    #: "constant", "linear" or "cosine" (after ``warmup_steps`` of linear warm-up)
    schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    #: torch's fused AdamW kernel (one pass over each tensor): 57 ms instead of 261 ms per step for
    #: SmolLM2-135M on the 2-core CI machine; same update up to float rounding
    fused: bool = True


@dataclass
class AlgoConfig:
    name: str = "grpo"
    #: "grpo" (r - mean) / std, or "dr_grpo" (r - mean)
    advantage: str = "grpo"
    group_size: int = 4
    prompts_per_step: int = 8
    num_iterations: int = 1
    eps_low: float = 0.2
    eps_high: float = 0.2
    #: weight of the k3 KL to the frozen reference; 0 loads no reference model
    beta: float = 0.0
    #: "seq_mean_token_mean" (GRPO), "token_mean" (DAPO), "seq_mean_token_sum_norm" (Dr. GRPO)
    loss_aggregation: str = "seq_mean_token_mean"
    #: importance correction for sampler/trainer mismatch (r1gym.core.losses.importance_weights): auto (truncate
    #: when the rollout backend's log-probs are not the trainer's, e.g. bf16 sampler weights or vLLM), none,
    #: truncate, mask
    is_correction: str = "auto"
    #: token or sequence ratios
    is_level: str = "token"
    #: truncation cap (truncate) or the band [1/cap, cap] kept (mask)
    is_cap: float = 2.0
    #: drop completions that hit the token limit from the loss (DAPO's overlong filtering)
    mask_truncated: bool = False
    #: DAPO dynamic sampling: drop groups with equal rewards and sample more prompts to refill
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 3
    #: sequences per forward/backward; the step's batch is accumulated over micro-batches
    micro_batch_size: int = 8
    #: completion positions per LM-head chunk: the (positions x vocabulary) logits and their gradient are
    #: never held for more positions than this (0: one piece)
    logprob_chunk: int = 1024
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class RolloutConfig:
    #: a registered rollout backend (``hf`` on the CPU)
    backend: str = "hf"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    #: no EOS or stop string before this many new tokens (0: off)
    min_new_tokens: int = 0
    #: total token budget of a multi-turn episode's completions (null: max_new_tokens, one turn's worth)
    max_episode_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    #: threads scoring a step's completions at once (1: one after another). Raise it for rewards that wait
    #: on a sandbox, a judge or the math pool (env=code: 16); rewards must then be thread-safe
    reward_workers: int = 1
    #: generate step k+1 while step k trains (one step off-policy): only for backends that generate in a process of
    #: their own (hf_process, vllm_server); each sample's policy lag is recorded and corrected by the importance
    #: weights (algo.is_correction); false: the synchronous loop. See docs/scaling.md and r1gym.core.overlap
    overlap: bool = False
    #: backend-specific options
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    #: evaluate on held-out problems every N steps (0: only before and after training)
    every: int = 0
    at_start: bool = True
    at_end: bool = True
    #: the first N held-out problems (null: all of them)
    num_problems: int | None = 64
    #: greedy decoding gives a low-noise accuracy; set false to sample (k = ``samples`` per problem)
    greedy: bool = True
    #: completions per problem when sampling: pass@1 is averaged over them, cons@k votes over them (R1)
    samples: int = 1
    #: sampling temperature / top-p for evaluation (null: the rollout's); the R1 paper used 0.6 / 0.95
    temperature: float | None = None
    top_p: float | None = None
    #: ``r1gym eval``: data files to evaluate, each read by the env's task source with ``split: all``:
    #: ``path`` or ``name=path`` (quoted for Hydra: "eval.datasets=['test=data/test.jsonl']"); empty: the
    #: env's held-out split (``env.eval_kwargs``)
    datasets: list[str] = field(default_factory=list)
    #: ``r1gym eval``: a run folder (its latest checkpoint, with that run's model settings) or a checkpoint
    #: folder; null: ``model.name_or_path``
    checkpoint: str | None = None


@dataclass
class TrainerConfig:
    name: str = "cpu"
    seed: int = 0
    max_steps: int = 20
    #: torch intra-op threads (null: torch's default)
    threads: int | None = None
    #: mixed precision for every forward (sampling, log-probs, reference): null (fp32 throughout) or
    #: "bf16" (torch.autocast; weights, optimizer and loss stay fp32). Needs bf16 matmul support to pay off
    #: (AVX512-BF16/AMX on CPUs, any recent GPU). "auto": bf16 only where an MLP-shaped forward + backward
    #: under it is >= 1.2x faster than fp32 here, timed once the trainer is set up (r1gym.core.precision;
    #: logged, written to the run's precision.json, reused on resume; under torch.distributed rank 0's choice
    #: holds for all). The library default stays null; the demo uses auto (docs/benchmarks.md demo_precision).
    autocast: str | None = None
    #: how fp32 linears run on the CPU: auto (oneDNN if faster here, timed at start-up), onednn, torch.
    #: See r1gym.core.onednn: on AMD CPUs oneDNN is ~2x PyTorch's default BLAS, with the same fp32 results.
    matmul: str = "auto"
    save_every: int = 10
    keep_checkpoints: int = 2
    #: data-parallel over the processes torchrun starts (trainer=ddp; r1gym.core.distributed)
    distributed: bool = False
    #: the process-group backend: gloo (CPU), nccl (GPU), or null to choose by device
    backend: str | None = None
    #: where the model trains: auto (this process's GPU, cuda:LOCAL_RANK, when torch sees one; else cpu), cpu,
    #: cuda, cuda:N
    device: str = "auto"
    #: DeepSpeed ZeRO: ``{stage: 1 | 2 | 3, config: {raw DeepSpeed keys}}``; empty: off (r1gym.core.distributed)
    deepspeed: dict[str, Any] = field(default_factory=dict)
    #: completions per step given to the loggers (samples.jsonl, the W&B/TensorBoard tables): the step's first
    #: ones, group after group. Bounded so a long run's samples.jsonl stays readable
    #: (a 1000-step run at 64 completions a step would write 64,000 records); -1: all of them
    log_samples: int = 16
    #: a run whose rewards stop working stops itself: more than this share of a step's completions cannot be
    #: scored (a dead sandbox, a broken checker) for ``unscorable_patience`` steps in a row ends the run
    #: with the reasons (1.0: never)
    max_unscorable: float = 0.5
    unscorable_patience: int = 3


@dataclass
class LoggerConfig:
    #: registered loggers to run (``r1gym plugins`` lists them)
    names: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    #: per-logger parameters, ``{name: {param: value}}``
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SFTConfig:
    """Supervised fine-tuning (stages ``sft``, ``cold_start``, ``distill``; :mod:`r1gym.core.sft`)."""

    #: JSONL files of examples: ``{"messages": [{role, content}, ...]}`` or ``{"prompt": ..., "completion": ...}``
    data: list[str] = field(default_factory=list)
    #: passes over the data (the R1 paper: 2)
    epochs: float = 2.0
    #: stop after this many optimizer steps even if the epochs are not done (null: no cap)
    max_steps: int | None = None
    #: tokens per optimizer step (several packed sequences, gradient accumulation over micro-batches)
    batch_tokens: int = 4096
    #: tokens per forward/backward pass
    micro_batch_tokens: int = 2048
    #: longest example kept, in tokens (longer ones are dropped and counted)
    max_length: int = 1024
    #: pack several examples into one sequence (attention does not cross example boundaries)
    packing: bool = True
    #: which tokens carry the loss: "assistant" (the answers only) or "all"
    loss_on: str = "assistant"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, schedule="cosine", warmup_steps=0))


@dataclass
class FilterConfig:
    """Which sampled reasoning traces rejection sampling drops (each a switch)."""

    #: drop chains of thought whose language-consistency share is below this (null: off)
    min_language_consistency: float | None = 0.9
    #: the target language of that check
    language: str = "en"
    #: drop traces with a paragraph longer than this many characters (null: off)
    max_paragraph_chars: int | None = 2000
    #: drop traces with fenced code blocks in the reasoning
    code_blocks: bool = True


@dataclass
class SampleConfig:
    """Data generation from a model (stages ``cold_start``, ``rejection_sampling``, ``distill``;
    :mod:`r1gym.core.datagen`): sample, verify, filter, rewrite, write an SFT set with its statistics."""

    #: the model that samples: a built-in name, model folder, checkpoint or run folder (null: model.name_or_path)
    model: str | None = None
    #: prompts taken from the env (null: all of its tasks)
    num_prompts: int | None = None
    samples_per_prompt: int = 4
    #: correct samples kept per prompt
    keep_per_prompt: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    #: what makes a sample correct: a reward name of the env (null: its primary reward); kept when >= 1
    accuracy_reward: str | None = None
    #: an ``llm_judge`` reward config used where the env has no rule for a task (empty: off)
    judge: dict[str, Any] = field(default_factory=dict)
    #: "correct" (verified samples only) or "all" (distillation without a checker)
    keep: str = "correct"
    #: a JSONL file of few-shot long-chain-of-thought examples ({"prompt", "completion"}) put before each prompt
    few_shot: str | None = None
    #: rewrite kept samples into the readable format ``<think>...</think>`` + summary
    rewrite: bool = False
    filters: FilterConfig = field(default_factory=FilterConfig)
    #: non-reasoning SFT data mixed in as it is (JSONL, same formats as sft.data)
    non_reasoning: list[str] = field(default_factory=list)
    #: prompts (JSONL with "prompt") answered by the sampling model without long CoT and mixed in
    non_reasoning_prompts: str | None = None
    #: fine-tune model.name_or_path on the written set in the same stage (cold start, distillation)
    then_sft: bool = False


@dataclass
class StageConfig:
    name: str = "r1_zero"
    #: which job runs: "grpo", "sft", "sample" (data generation, optionally followed by SFT) or "eval"
    kind: str = "grpo"


@dataclass
class PipelineStageConfig:
    """One stage of a pipeline: an ordinary run (``stage=<stage>``) in ``<run>/<k>-<name>/``."""

    #: the stage's name in this pipeline (its folder, its key in pipeline.json, what ``inputs`` refer to)
    name: str = MISSING
    #: the conf/stage option it runs (r1_zero, cold_start, sft, ...; a plugin's own stage options too)
    stage: str = MISSING
    #: overrides for this stage alone, after the pipeline's ``common`` ones
    overrides: list[str] = field(default_factory=list)
    #: config keys wired to earlier stages' outputs: ``{sample.model: r1_zero.checkpoint}``; a list makes a list
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineEvalConfig:
    #: stages evaluated (``stage=eval`` on their checkpoint) once they finish
    after: list[str] = field(default_factory=list)
    #: overrides for those evaluations
    overrides: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """A pipeline (``conf/pipeline/<name>.yaml``, or a plugin's ``pipeline/`` folder): ``r1gym pipeline pipeline=r1``.

    Each stage composes its own run config (``stage=`` + ``common`` + its ``overrides`` + the command line's
    overrides + its ``inputs``); see :mod:`r1gym.core.pipeline`."""

    name: str = MISSING
    #: overrides given to every stage
    common: list[str] = field(default_factory=list)
    stages: list[PipelineStageConfig] = field(default_factory=list)
    eval: PipelineEvalConfig = field(default_factory=PipelineEvalConfig)
    #: the pipeline's folder (null: Hydra's output folder, hydra.run.dir); the same folder again resumes it
    run_dir: str | None = None
    #: run only these stages (by name; their inputs must have finished in run_dir). ``pipeline.stages=[a,b]``
    #: on the command line is read as this
    only: list[str] | None = None


@dataclass
class R1GymConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    #: the run folder; null: runs/<date>-<time>-<stage>
    run_dir: str | None = None
    #: a run folder to resume from its last checkpoint: the run's saved overrides are composed again, with
    #: the command line's on top (see :func:`resume_overrides`)
    resume: str | None = None
    #: set by ``r1gym pipeline`` (conf/pipeline_app.yaml); null in a single run's config
    pipeline: PipelineConfig | None = None


def register_configs() -> None:
    """Put the schema in Hydra's ConfigStore and r1gym's search-path plugin in Hydra's plugin registry
    (idempotent; called before composing, not at import)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from r1gym.core.hydra_app import PluginConfigDirs

    ConfigStore.instance().store(name=SCHEMA_NAME, node=R1GymConfig)
    Plugins.instance().register(PluginConfigDirs)


def compose(overrides: Sequence[str] = (), *, config_dirs: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/config.yaml`` (or ``config_name``) with Hydra overrides, the plugins' config folders
    (``config_dirs``) on the search path after r1gym's own and before any ``hydra.searchpath`` entries.

    The same search path and loader as ``r1gym train`` (:mod:`r1gym.core.hydra_app`), without Hydra's global
    state: a pipeline composes each stage's config with it while its own Hydra job is running."""
    from hydra import version
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    from r1gym.core.hydra_app import plugin_config_dirs

    version.setbase(None)  # as the app runs it (r1gym.core.hydra_app): Hydra 1.3's defaults
    register_configs()
    with plugin_config_dirs(config_dirs):
        loader = ConfigLoaderImpl(config_search_path=create_config_search_path(f"pkg://{CONFIG_MODULE}"))
    cfg = loader.load_configuration(config_name=config_name, overrides=list(overrides), run_mode=RunMode.RUN,
                                    from_shell=False)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def group_options(group: str, *, config_dirs: Sequence[str] = ()) -> list[str]:
    """The options of a config group (``stage``, ``pipeline``, ...) on r1gym's search path with these plugin
    config folders, as Hydra lists them."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    from r1gym.core.hydra_app import plugin_config_dirs

    register_configs()
    with plugin_config_dirs(config_dirs):
        loader = ConfigLoaderImpl(config_search_path=create_config_search_path(f"pkg://{CONFIG_MODULE}"))
    return loader.get_group_options(group)


def to_plain(node: Any) -> Any:
    """An OmegaConf node as plain Python containers (for kwargs that leave the config world)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides a run was composed from: its ``overrides.txt`` (every r1gym run writes one), else Hydra's
    ``.hydra/overrides.yaml``."""
    txt = run_dir / "overrides.txt"
    if txt.is_file():
        return [line for line in txt.read_text().splitlines() if line.strip()]
    saved = run_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    raise FileNotFoundError(f"resume={run_dir}: no overrides.txt or .hydra/overrides.yaml there; "
                            "resume= takes the folder of an r1gym run (the one with config.yaml and checkpoints/)")


def resume_overrides(overrides: Sequence[str]) -> tuple[list[str], str | None]:
    """``overrides`` with ``resume=RUN`` expanded into RUN's saved overrides; returns them and RUN (or None).

    Precedence: RUN's saved overrides first, then the given ones, each replacing a saved override of the same
    key or group (``algo=dapo`` replaces the run's ``algo=grpo``, ``trainer.max_steps=30`` its
    ``trainer.max_steps=20``), then ``run_dir=RUN`` and ``resume=RUN``. Hydra composes the result as it
    composes a new run's, so group choices and ``+key`` additions come back as they were. A given override of
    a key the run added with ``+`` is added again (``+`` prefixed). Without ``resume=`` the overrides come
    back unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parser = OverridesParser.create()
    given = list(overrides)
    parsed = parser.parse_overrides(given)
    at = [i for i, o in enumerate(parsed) if o.key_or_group == "resume" and o.package is None]
    if not at:
        return given, None
    run = str(parsed[at[-1]].value())
    if parsed[at[-1]].is_sweep_override() or not Path(run).is_dir():
        raise FileNotFoundError(f"resume={run}: not a folder; resume= takes one r1gym run folder (runs/<date>-<time>-<stage>)")
    rest = [(text, o) for i, (text, o) in enumerate(zip(given, parsed)) if i not in at]

    def key(o: Any) -> tuple[str, str | None]:
        return o.key_or_group, o.package

    saved_texts = saved_overrides(Path(run))
    saved = [(t, o) for t, o in zip(saved_texts, parser.parse_overrides(saved_texts))
             if key(o) not in {("resume", None), ("run_dir", None)}]
    replaced = {key(o) for _, o in rest}
    added = {key(o) for _, o in saved if o.type is OverrideType.ADD}
    merged = [t for t, o in saved if key(o) not in replaced]
    merged += [f"+{t}" if key(o) in added and o.type is OverrideType.CHANGE else t
               for t, o in rest if key(o) != ("run_dir", None)]
    return [*merged, f"run_dir={run}", f"resume={run}"], run


def load_run_config(overrides: Sequence[str], *, host: PluginHost | None = None,
                    config_dirs: Sequence[str] | None = None) -> tuple[Any, Path, bool]:
    """Compose a run's config (for ``resume=RUN``: RUN's saved overrides with these on top, see
    :func:`resume_overrides`); return it with the run folder and whether it resumes.

    Lives here, not in the CLI, because the pipeline composes every stage's config the same way. The plugins'
    config folders are ``config_dirs``, else ``host``'s (default: the process-wide host, built on first use).
    """
    from r1gym.core.plugins import default_host

    overrides, resume = resume_overrides(overrides)
    if config_dirs is None:
        config_dirs = (host or default_host()).config_dirs
    cfg = compose(overrides, config_dirs=config_dirs)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.stage.name}"
    return cfg, run_dir, resume is not None
