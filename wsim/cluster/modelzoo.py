"""Read a Cerebras Model Zoo config (``params.yaml``) into what wsim simulates.

The Cerebras Model Zoo (github.com/Cerebras/modelzoo) describes a run in one YAML file, in one of two
layouts (docs/modelzoo.md has the key table with the code lines it follows):

- the *params* layout of Releases 1.x to 2.3 (``model:``, ``train_input:``, ``runconfig:``,
  ``sparsity:``). The model class is chosen by the run script's directory (``gpt3/run.py`` passes
  "gpt3", ``llama/run.py`` "llama", ``gptj/run.py`` "gptj"), so wsim takes it from ``model.name``
  when present, else from the ``<name>/configs/`` directory the file sits in. Defaults: the
  Release_2.3.0 config dataclasses (``models/nlp/gpt2/config.py`` ``GPT2ModelConfig``,
  ``models/nlp/gptj/config.py`` ``GPTJModelConfig``, ``config_classes/base/run_config.py``);
- the *trainer* layout of Release 2.4 onwards (``trainer.init.{backend, model, precision, sparsity,
  loop, callbacks}``, ``trainer.fit.train_dataloader``), the model named by ``trainer.init.model.name``.
  Defaults: Release_2.10.0 (``gpt2/gpt2_model.py`` ``GPT2LMHeadModelConfig``, ``gptj/gptj_model.py``
  ``GPTJSubModelConfig``, ``trainer/callbacks/precision.py``). The key map between the two layouts is
  the modelzoo's own converter (``trainer/utils.py`` ``TRAINER_PARAMS_TO_LEGACY``, Release_2.10.0).

Each value read is recorded with where it came from (``provenance``: a key path, or "default
(...)" naming the modelzoo default); ``notes`` lists what the file says that wsim does not model.
Bad input raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.spec import ModelSpec
from wsim.errors import ConfigError

# modelzoo model names wsim reads, and the modelzoo model class each selects
# (Release_2.3.0 gpt2/model.py line 39 registers gpt2, gpt3, llama on Gpt2Model; gptj/model.py line 39
# gptj and gpt-neox on GPTJModel; Release_2.10.0 llama/model.py line 56 accepts "LlamaModel" too)
MODEL_CLASSES = {"gpt2": "gpt2", "gpt3": "gpt2", "llama": "gpt2", "LlamaModel": "gpt2",
                 "gptj": "gptj", "gpt-neox": "gptj"}
# nonlinearity -> (wsim activation, gated MLP); the modelzoo's ActivationType names
NONLINEARITIES = {"gelu": ("gelu", False), "gelu_new": ("gelu_new", False), "gelu_fast": ("gelu_fast", False),
                  "relu": ("relu", False), "silu": ("silu", False), "swish": ("silu", False),
                  "swiglu": ("silu", True), "geglu": ("gelu", True), "reglu": ("relu", True)}
FP16_TYPES = ("float16", "bfloat16", "cbfloat16")


@dataclass(frozen=True)
class ModelZooRun:
    """What a Model Zoo config says about a training run, in wsim's terms."""

    model: ModelSpec
    batch_seqs: int  # global batch (train_input.batch_size: "evenly divided across num_csx")
    seq: int
    systems: int | None  # num_csx; None when the file does not state it (the modelzoo's default is 1)
    bytes_per_element: int  # 2 in mixed precision (float16, bfloat16, cbfloat16), 4 otherwise
    precision: str  # "cbfloat16", "bfloat16", "float16" or "float32"
    micro_batch_size: int | str | None  # per system, as the file gives it ("auto", an int, None)
    block_density: float  # 1 - sparsity of the block weight matrices
    max_steps: int | None
    layout: str  # "params" or "trainer"
    modelzoo_name: str
    provenance: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def micro_batches(self, systems: int) -> int | str:
        """wsim's per-system micro-batch count on ``systems`` systems: the batch per system over the
        file's micro-batch size when it divides it, else the default policy ("best")."""
        mbs = self.micro_batch_size
        per_system = self.batch_seqs // systems
        if mbs == "disable":
            return 1
        if isinstance(mbs, int) and per_system % mbs == 0:
            return per_system // mbs
        return "best"


class _Reader:
    """Typed look-ups in nested mappings; every error names the key path."""

    def __init__(self, provenance: dict):
        self.provenance = provenance

    @staticmethod
    def section(root: dict, path: str, required: bool = False) -> dict:
        node = root
        walked = []
        for key in path.split("."):
            walked.append(key)
            if not isinstance(node, dict) or key not in node or node[key] is None:
                if required:
                    raise ConfigError(f"model zoo config: missing required key {'.'.join(walked)}")
                return {}
            node = node[key]
        if not isinstance(node, dict):
            raise ConfigError(f"model zoo config: {path} must be a mapping, got {node!r}")
        return node

    def get(self, sec: dict, prefix: str, key: str, kind: str, default=None, *, required=False,
            what: str = "", default_src: str = ""):
        path = f"{prefix}.{key}"
        if key not in sec or sec[key] is None:
            if required:
                raise ConfigError(f"model zoo config: missing required key {path}")
            if what:
                self.provenance[what] = f"default ({default_src})" if default_src else "default"
            return default
        value = sec[key]
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool),
              "bool": isinstance(value, bool),
              "str": isinstance(value, str),
              "dict": isinstance(value, dict)}[kind]
        if not ok:
            names = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
                     "dict": "a mapping"}
            raise ConfigError(f"model zoo config: {path} must be {names[kind]}, got {value!r}")
        if kind == "int" and value <= 0 and key not in ("position_embedding_offset",):
            raise ConfigError(f"model zoo config: {path} must be a positive integer, got {value!r}")
        if what:
            self.provenance[what] = path
        return value


def _model_name(data: dict, layout: str, model: dict, prefix: str, path: Path | None) -> tuple[str, str]:
    """The modelzoo model name and where it came from."""
    if "name" in model:
        name = model["name"]
        if not isinstance(name, str):
            raise ConfigError(f"model zoo config: {prefix}.name must be a string, got {name!r}")
        src = f"{prefix}.name"
    else:
        # the run script's directory: .../<name>/configs/[subfolders/]file.yaml (Release_2.3.0 runs a
        # trainer-layout file without a name, params_llama3_8b_v2.yaml, the same way)
        parts = path.resolve().parts if path is not None else ()
        at = [i for i, part in enumerate(parts[:-1]) if part == "configs"]
        name = parts[at[-1] - 1] if at and at[-1] > 0 else None
        if name is None or name not in MODEL_CLASSES:
            raise ConfigError(f"model zoo config: missing key {prefix}.name (the file is not under a "
                              f"<model>/configs/ directory that would name it); one of "
                              f"{', '.join(MODEL_CLASSES)}")
        src = f"directory {name}/configs/"
    if name not in MODEL_CLASSES:
        raise ConfigError(f"model zoo config: {src}: unknown model {name!r}; wsim reads "
                          f"{', '.join(MODEL_CLASSES)}")
    return name, src


def _model(r: _Reader, model: dict, p: str, name: str, layout: str, notes: list) -> ModelSpec:
    cls = MODEL_CLASSES[name]
    gptj = cls == "gptj"
    legacy = layout == "params"
    g = r.get
    # Release_2.3.0 GPT2ModelConfig: vocab_size required (line 50); Release_2.10.0: 50257 (line 63);
    # GPT-J: 50257 in both (2.3.0 line 50, 2.10.0 line 55)
    vocab = g(model, p, "vocab_size", "int", 50257, required=legacy and not gptj, what="model.vocab",
              default_src="50257")
    hidden = g(model, p, "hidden_size", "int", 768, what="model.hidden", default_src="768")
    layers = g(model, p, "num_hidden_layers", "int", 12, what="model.layers", default_src="12")
    heads = g(model, p, "num_heads", "int", 12, what="model.heads", default_src="12")
    ffn = g(model, p, "filter_size", "int", 3072, what="model.ffn", default_src="3072")
    positions = g(model, p, "max_position_embeddings", "int", 1024, what="model.positions",
                  default_src="1024")
    pos_default = "rotary" if gptj else "learned"
    positional = g(model, p, "position_embedding_type", "str", pos_default, what="model.positional",
                   default_src=pos_default)
    if model.get("use_position_embedding") is False:  # Release_2.0.3 key: no position embedding
        positional = None
    if positional not in ("learned", "rotary"):
        raise ConfigError(f"model zoo config: {p}.position_embedding_type {positional!r} is not modelled "
                          f"(wsim: learned or rotary)")
    head_dim = hidden // heads if heads and hidden % heads == 0 else None
    if head_dim is None:
        raise ConfigError(f"model zoo config: {p}.hidden_size ({hidden}) must be divisible by "
                          f"{p}.num_heads ({heads})")
    rotary_fraction = 1.0
    if positional == "rotary":
        # default int(hidden // heads * 0.25) (2.3.0 gpt2/config.py 302-304; 2.10.0 gpt2_model.py 559-560)
        rotary_dim = g(model, p, "rotary_dim", "int", int(head_dim * 0.25), what="model.rotary_dim",
                       default_src="head_dim / 4")
        if rotary_dim > head_dim:
            raise ConfigError(f"model zoo config: {p}.rotary_dim {rotary_dim} exceeds the head dimension "
                              f"{head_dim}")
        rotary_fraction = rotary_dim / head_dim
    nl = g(model, p, "nonlinearity", "str", "gelu", what="model.activation", default_src="gelu")
    if nl not in NONLINEARITIES:
        raise ConfigError(f"model zoo config: {p}.nonlinearity {nl!r} is not modelled; wsim reads "
                          f"{', '.join(NONLINEARITIES)}")
    activation, gated = NONLINEARITIES[nl]
    norm = g(model, p, "norm_type", "str", "layernorm", what="model.norm", default_src="layernorm")
    if norm not in ("layernorm", "rmsnorm"):
        raise ConfigError(f"model zoo config: {p}.norm_type {norm!r} is not modelled (layernorm, rmsnorm)")
    module = g(model, p, "attention_module", "str", "aiayn_attention", what="model.attention_module",
               default_src="aiayn_attention")
    if module not in ("aiayn_attention", "multiquery_attention"):
        raise ConfigError(f"model zoo config: {p}.attention_module {module!r} is not modelled "
                          f"(aiayn_attention, multiquery_attention)")
    kv_heads = heads
    if module == "multiquery_attention":
        extra = g(model, p, "extra_attention_params", "dict", {})
        # num_kv_groups: the key/value heads of grouped-query attention; 1 (multi-query) if absent
        kv_heads = r.get(extra, f"{p}.extra_attention_params", "num_kv_groups", "int", 1,
                         what="model.kv_heads", default_src="1: multi-query attention")
        if heads % kv_heads:
            raise ConfigError(f"model zoo config: {p}.extra_attention_params.num_kv_groups {kv_heads} must "
                              f"divide {p}.num_heads {heads}")
    else:
        r.provenance["model.kv_heads"] = f"{p}.num_heads (aiayn_attention)"
    tied = g(model, p, "share_embedding_weights", "bool", True, what="model.tied_embeddings",
             default_src="true")
    qkv_bias = g(model, p, "use_projection_bias_in_attention", "bool", True, what="model.attention_bias",
                 default_src="true")
    out_bias = g(model, p, "use_ffn_bias_in_attention", "bool", True, default_src="true")
    if qkv_bias != out_bias:
        notes.append(f"{p}.use_projection_bias_in_attention {qkv_bias} and use_ffn_bias_in_attention "
                     f"{out_bias} differ; wsim has one attention-bias flag and takes the first")
    mlp_bias = g(model, p, "use_ffn_bias", "bool", not gptj, what="model.mlp_bias",
                 default_src=str(not gptj).lower())
    head_bias = g(model, p, "use_bias_in_output", "bool", False, what="model.head_bias", default_src="false")
    # GPT-2/3/Llama: dropout_rate 0.1 (2.3.0 line 109; 2.10.0 line 132), attention_dropout_rate None ->
    # dropout_rate (2.3.0 line 151; 2.10.0 lines 556-557); GPT-J: residual_dropout_rate (alias
    # dropout_rate) 0.1 and attention_dropout_rate 0.1 (2.3.0 lines 120, 152; 2.10.0 lines 109, 170)
    resid_key = "residual_dropout_rate" if gptj and "residual_dropout_rate" in model else "dropout_rate"
    resid = g(model, p, resid_key, "number", 0.1)
    attn = g(model, p, "attention_dropout_rate", "number", 0.1 if gptj else resid)
    dropout = resid > 0 or attn > 0
    r.provenance["model.dropout"] = (f"{p}.{resid_key} / attention_dropout_rate" if resid_key in model
                                     else "default (dropout_rate 0.1)")
    untied_ln = g(model, p, "use_untied_layer_norm", "bool", False) if gptj else False
    moe = model.get("moe") or model.get("moe_params") or {}
    if isinstance(moe, dict) and isinstance(moe.get("num_experts"), int) and moe["num_experts"] > 1:
        raise ConfigError(f"model zoo config: {p}.moe.num_experts {moe['num_experts']}: mixture of "
                          f"experts is not modelled")
    for key in ("embedding_layer_norm", "fixed_sparse_attention", "attention_sliding_window_length"):
        if model.get(key):
            notes.append(f"{p}.{key} is not modelled")
    family = ("gpt_neox" if untied_ln else "gptj") if gptj else \
        ("gpt2" if positional == "learned" and norm == "layernorm" and not gated else "llama")
    r.provenance["model.family"] = f"{p}.name {name!r}" + (f", use_untied_layer_norm {untied_ln}" if gptj else
                                                           f", {positional} positions, {norm}, {nl}")
    try:
        return ModelSpec(
            name=f"modelzoo-{name}-{layers}x{hidden}", layers=layers, hidden=hidden, heads=heads,
            kv_heads=kv_heads, ffn=ffn, vocab=vocab, positions=positions, tied_embeddings=tied,
            activation=activation, gated_mlp=gated, dropout=dropout, positional=positional, norm=norm,
            rotary_fraction=rotary_fraction, block_norms=1 if gptj and not untied_ln else 2,
            parallel_residual=gptj, attention_bias=qkv_bias, mlp_bias=mlp_bias, head_bias=head_bias,
            family=family, source=f"Cerebras Model Zoo config ({layout} layout, model {name})")
    except ValueError as exc:
        raise ConfigError(f"model zoo config: {exc}") from None


def parse(data, path: str | Path | None = None) -> ModelZooRun:
    """A ``ModelZooRun`` from a loaded YAML mapping (``path`` names the model of a params-layout file
    by its directory)."""
    if not isinstance(data, dict):
        raise ConfigError(f"model zoo config must be a YAML mapping, got {type(data).__name__}")
    prov: dict = {}
    notes: list = []
    r = _Reader(prov)
    path = Path(path) if path is not None else None
    if "trainer" in data:  # trainer/utils.py is_legacy_params: "trainer" not in params
        layout = "trainer"
        trainer = data["trainer"]
        if isinstance(trainer, list) and len(trainer) == 1:
            trainer = trainer[0].get("trainer", trainer[0]) if isinstance(trainer[0], dict) else trainer
        if not isinstance(trainer, dict):
            raise ConfigError("model zoo config: trainer must be a mapping (one trainer)")
        data = {"trainer": trainer}
        mp, tp = "trainer.init.model", "trainer.fit.train_dataloader"
        model = r.section(data, mp, required=True)
        train = r.section(data, tp, required=True)
        cluster = r.section(data, "trainer.init.backend.cluster_config")
        cp = "trainer.init.backend.cluster_config"
    else:
        layout = "params"
        mp, tp, cp = "model", "train_input", "runconfig"
        model = r.section(data, mp, required=True)
        train = r.section(data, tp, required=True)
        cluster = r.section(data, cp)
    name, name_src = _model_name(data, layout, model, mp, path)
    prov["model.name"] = name_src
    spec = _model(r, model, mp, name, layout, notes)

    batch = r.get(train, tp, "batch_size", "int", required=True, what="batch")
    seq = r.get(train, tp, "max_sequence_length", "int", None, what="seq")
    if seq is None:
        seq = spec.positions
        prov["seq"] = f"{mp}.max_position_embeddings (the file's data are pre-tokenised at it)"
    systems = r.get(cluster, cp, "num_csx", "int", None, what="systems")

    if layout == "trainer":
        prec = r.section(data, "trainer.init.precision")
        pp = "trainer.init.precision"
        # precision.py (2.10.0) lines 71-84: enabled True, fp16_type "bfloat16"
        enabled = r.get(prec, pp, "enabled", "bool", True, default_src="true") if prec else False
        fp16 = r.get(prec, pp, "fp16_type", "str", "bfloat16", what="precision",
                     default_src="bfloat16") if prec else None
        if not prec:
            prov["precision"] = "no trainer.init.precision: float32"
        mbs_src, mbs = _trainer_micro_batch(data)
        loop = r.section(data, "trainer.init.loop")
        max_steps = r.get(loop, "trainer.init.loop", "max_steps", "int", None)
        sparsity = r.section(data, "trainer.init", False).get("sparsity")
        sp_path = "trainer.init.sparsity"
    else:
        # base model_config.py (2.3.0) line 117: mixed_precision False; Release_2.0.3: use_bfloat16
        enabled = r.get(model, mp, "mixed_precision", "bool", False, default_src="false")
        fp16 = r.get(model, mp, "fp16_type", "str", None, what="precision")
        if fp16 is None and "use_bfloat16" in model:  # Release_2.0.3's key (half_dtype.py, default False)
            fp16 = "bfloat16" if model["use_bfloat16"] is True else "float16"
            prov["precision"] = f"{mp}.use_bfloat16"
        elif fp16 is None:  # GPT2ModelConfig (2.3.0) line 297, GPTJModelConfig line 279: "bfloat16"
            fp16 = "bfloat16"  # (a Release_2.0.3 file without use_bfloat16 ran float16: 2 bytes too)
            prov["precision"] = "default (bfloat16)"
        mbs = train.get("micro_batch_size")
        mbs_src = f"{tp}.micro_batch_size" if mbs is not None else "default (auto: wsim's best plan)"
        max_steps = r.get(cluster, cp, "max_steps", "int", None)
        sparsity = data.get("sparsity")
        sp_path = "sparsity"
    if enabled:
        if fp16 not in FP16_TYPES:
            raise ConfigError(f"model zoo config: fp16_type {fp16!r} must be one of {', '.join(FP16_TYPES)}")
        precision, nbytes = fp16, 2
    else:
        precision, nbytes = "float32", 4
        prov["precision"] = f"{'trainer.init.precision.enabled' if layout == 'trainer' else mp + '.mixed_precision'}" \
                            f" false: float32"
    if mbs is not None and not (isinstance(mbs, int) and not isinstance(mbs, bool) and mbs > 0) and \
            mbs not in ("auto", "explore", "disable"):
        raise ConfigError(f"model zoo config: {mbs_src} must be a positive integer, auto, explore or "
                          f"disable, got {mbs!r}")
    prov["micro_batch_size"] = mbs_src
    density = _density(sparsity, sp_path, prov, notes)
    if max_steps is not None:
        prov["max_steps"] = f"{'trainer.init.loop' if layout == 'trainer' else cp}.max_steps"
    return ModelZooRun(model=spec, batch_seqs=batch, seq=seq, systems=systems, bytes_per_element=nbytes,
                       precision=precision, micro_batch_size=mbs, block_density=density,
                       max_steps=max_steps, layout=layout, modelzoo_name=name, provenance=prov,
                       notes=tuple(notes))


def _trainer_micro_batch(data: dict):
    """``ScopedTrainFlags: {csx.performance.micro_batch_size: N}`` among trainer.init.callbacks."""
    callbacks = data["trainer"].get("init", {}).get("callbacks") or []
    if not isinstance(callbacks, list):
        raise ConfigError("model zoo config: trainer.init.callbacks must be a list")
    for i, cb in enumerate(callbacks):
        if isinstance(cb, dict) and isinstance(cb.get("ScopedTrainFlags"), dict):
            flags = cb["ScopedTrainFlags"]
            if "csx.performance.micro_batch_size" in flags:
                return (f"trainer.init.callbacks[{i}].ScopedTrainFlags.csx.performance.micro_batch_size",
                        flags["csx.performance.micro_batch_size"])
    return "default (auto: wsim's best plan)", None


def _density(sparsity, path: str, prov: dict, notes: list) -> float:
    """Block weight density from the sparsity section: a bare float, or ``{sparsity: x, ...}``
    (sparsity_config.py, Release_2.3.0 lines 30-78); its param_filter in every shipped config
    selects the attention and MLP weights, which is wsim's "block" kind."""
    if sparsity is None:
        prov["density"] = "default (dense)"
        return 1.0
    value, where = sparsity, path
    if isinstance(sparsity, dict):
        value, where = sparsity.get("sparsity"), f"{path}.sparsity"
    elif isinstance(sparsity, list):
        raise ConfigError(f"model zoo config: {path}: several sparsity groups are not modelled; give one")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"model zoo config: {where} must be a number in [0, 1), got {value!r}")
    prov["density"] = f"1 - {where} (block weights)"
    if isinstance(sparsity, dict) and sparsity.get("algorithm", "static") != "static":
        notes.append(f"{path}.algorithm {sparsity['algorithm']!r}: dynamic sparsity simulated at its "
                     f"constant density")
    return 1.0 - float(value)


def load(path: str | Path) -> ModelZooRun:
    """Read a Model Zoo YAML file; ConfigError naming the file or the key on any problem."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - a declared dependency (pyproject.toml)
        raise ConfigError("reading a Model Zoo config needs PyYAML: pip install pyyaml") from None

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"model zoo config {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"model zoo config {str(p)!r} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"model zoo config {str(p)!r} is not valid YAML: {first}") from None
    return parse(data, p)
