"""The Train page's working parts: a settings form that outlives page switches, tab switches and
reloads, the run picker, and the moves between the "New run" and "Live run" tabs.

Streamlit forgets a widget's value once a run of the script does not draw it (leaving the page,
or the other tab being open). So the form's values live in the session under `FORM` (per dataset),
and on disk per dataset (state.train.form); each widget is seeded from them whenever it is drawn
afresh. Moves between tabs are queued in the session and applied at the top of the next run,
before the widgets they change exist.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from state import device
from state.train import form, preflight, runs, trackers
from state.train.config import (
    ADAPTER_TYPES,
    ATTENTION_BACKENDS,
    ATTN_PROJS,
    BASE_QUANTS,
    MLP_PROJS,
    OPTIMIZERS,
    SAMPLINGS,
    SCHEDULERS,
)

TAB_NEW, TAB_LIVE = "New run", "Live run"
FORM = "train_form"        # {dataset: {"values": {...}, "preset": name}}
SEEDED = "train_form_ds"   # the dataset whose values the widgets hold
GOTO = "train_goto"        # {"tab": ..., "run": ..., "values": ..., "note": ...} applied on the next run

# field -> (label, type, min, max, extra number_input arguments)
NUMBERS = {
    "max_steps": ("Max steps (0 = use epochs)", int, 0, 1_000_000, {}),
    "epochs": ("Epochs (0 = the recipe)", int, 0, 10_000,
               {"help": "0 lets the dataset's size choose the steps (the recipe the preflight names); "
                        "Max steps wins over both."}),
    "learning_rate": ("Learning rate", float, 1e-6, 1e-2, {"format": "%.1e", "step": 1e-5}),
    "clip_seconds": ("Clip length (s, 0 = whole track)", float, 0.0, 600.0, {}),
    "rank": ("LoRA rank", int, 1, 512, {}),
    "alpha": ("LoRA alpha", float, 1.0, 1024.0, {}),
    "batch_size": ("Batch size", int, 1, 64, {}),
    "grad_accum": ("Gradient accumulation", int, 1, 256, {}),
    "warmup_ratio": ("Warmup ratio", float, 0.0, 0.5, {}),
    "max_grad_norm": ("Max grad norm", float, 0.0, 100.0, {}),
    "dropout": ("LoRA dropout", float, 0.0, 0.9, {}),
    "cond_dropout": ("Condition dropout (empty = the model's)", float, 0.0, 1.0,
                     {"help": "Share of steps trained unconditioned; what makes guidance work on base/sft. "
                              "Empty: 0.15, or 0 on turbo."}),
    "seed": ("Seed", int, 0, 2**31 - 1, {}),
    "shift": ("Shift (inference)", float, 0.1, 20.0,
              {"help": "Stored with the adapter for generation; not used by the training loss."}),
    "checkpoint_every": ("Checkpoint every N steps", int, 0, 100_000, {}),
    "keep_last": ("Keep last K checkpoints", int, 1, 100, {}),
    "sample_every": ("Preview every N steps (0 = off)", int, 0, 100_000,
                     {"help": "Plus a step-0 baseline and one at the end. Previews appear in the live view "
                              "as they arrive, and all of them under Runs → Samples."}),
    "sample_seed": ("Preview seed", int, 0, 2**31 - 1, {}),
    "sample_seconds": ("Preview seconds", float, 1.0, 600.0, {}),
    "val_every": ("Validate every N steps (0 = off)", int, 0, 100_000,
                  {"help": "Loss on held-out tracks at fixed timesteps and noise: comparable across steps."}),
    "val_share": ("Held-out share", float, 0.0, 0.5,
                  {"help": "Share of tracks kept out of training for validation (with 8 or more tracks)."}),
    "early_stop_patience": ("Early stop after N validations without a new best (0 = never)", int, 0, 1000, {}),
    "merged_scale": ("Merged model scale (0 = off)", float, 0.0, 4.0,
                     {"help": "Also save a whole diffusers pipeline with the adapter fused in at this scale "
                              "(the run's merged/ folder), for tools that take only complete models."}),
    "ema_decay": ("EMA decay (0 = off)", float, 0.0, 0.99999,
                  {"format": "%.4f", "help": "Also export an exponential moving average of the adapter "
                                             "(final/ema/); 0.999 is a common choice."}),
}
CHOICES = {"optimizer": ("Optimizer", OPTIMIZERS), "scheduler": ("Schedule", SCHEDULERS),
           "timestep_sampling": ("Timestep sampling", SAMPLINGS),
           "attention_backend": ("Attention backend", ATTENTION_BACKENDS),
           "adapter_type": ("Adapter type", ADAPTER_TYPES), "base_quant": ("Base weights", BASE_QUANTS)}


def key(field: str) -> str:
    return f"train_{field}"


# ---- moves between tabs -------------------------------------------------------------------------

def goto_run(run_id: str) -> None:
    """Show this run in the Live run tab on the next run of the page (after Start, Resume, queue)."""
    st.session_state[GOTO] = {"tab": TAB_LIVE, "run": run_id}


def start_from_run(run_dir: Path) -> None:
    """Load a past run's settings into the New run tab and open it."""
    cfg = runs.read_config(Path(run_dir))[0]
    st.session_state[GOTO] = {"tab": TAB_NEW, "values": form.from_run_config(cfg), "note": Path(run_dir).name}


def apply_moves(run_ids: list[str], active_ids: list[str]) -> None:
    """At the top of the page: queued moves first, then the defaults for a fresh visit.

    A fresh visit (the tab widget was forgotten) opens on the live run when one is active."""
    move = st.session_state.pop(GOTO, None) or {}
    if move.get("tab"):
        st.session_state["train_tab"] = move["tab"]
    elif "train_tab" not in st.session_state:
        st.session_state["train_tab"] = TAB_LIVE if active_ids else TAB_NEW
    if move.get("run") in run_ids:
        st.session_state["train_view"] = move["run"]
    elif st.session_state.get("train_view") not in run_ids and run_ids:
        st.session_state["train_view"] = (active_ids or run_ids)[0]
    if "values" in move:
        st.session_state["train_clone"] = move


def run_picker(run_ids: list[str]) -> str:
    # Run ids only: the browser kept a label that carried the status ("running") after the run had
    # stopped, because the selection is matched by its label. The view below shows the status.
    return st.selectbox("Run", run_ids, key="train_view")


# ---- the settings form --------------------------------------------------------------------------

def stored(dataset: str, model: str) -> dict:
    """This session's form for the dataset: as last edited here, else as saved on disk, else defaults."""
    all_forms = st.session_state.setdefault(FORM, {})
    if dataset not in all_forms:
        saved = form.load_saved(dataset, model)
        values, preset = saved if saved else (form.defaults(model), form.DEFAULT_PRESET)
        all_forms[dataset] = {"values": values, "preset": preset}
    return all_forms[dataset]


def prepare(dataset: str, model: str) -> str | None:
    """Seed the widgets before they are drawn, when they hold nothing or another dataset's values.

    Returns the run id whose settings were just loaded ("new run from these settings"), if any."""
    clone = st.session_state.pop("train_clone", None)
    entry = stored(dataset, model)
    if clone:
        entry.update(values=clone["values"], preset=form.DEFAULT_PRESET)
    if clone or st.session_state.get(SEEDED) != dataset or key("rank") not in st.session_state:
        _seed(entry["values"], entry["preset"])
        st.session_state[SEEDED] = dataset
    return clone.get("note") if clone else None


def _seed(values: dict, preset: str) -> None:
    for f, (_, cast, lo, hi, _) in NUMBERS.items():
        v = values.get(f)  # None only where the config means "the model's default" (cond_dropout)
        st.session_state[key(f)] = None if v is None else min(hi, max(lo, cast(v)))
    for f, (_, options) in CHOICES.items():
        st.session_state[key(f)] = values[f] if values[f] in options else options[0]
    st.session_state[key("gradient_checkpointing")] = bool(values["gradient_checkpointing"])
    st.session_state[key("compile")] = bool(values.get("compile"))
    st.session_state[key("report_to")] = [t for t in values.get("report_to") or [] if t in trackers.TRACKERS]
    st.session_state[key("mlp")] = any(m in MLP_PROJS for m in values["target_modules"])
    st.session_state[key("sample_caption")] = str((values.get("sample_prompt") or {}).get("caption", ""))
    st.session_state[key("preset")] = preset
    st.session_state[key("model")] = values.get("model_id")
    st.session_state["train_form_extra"] = {"sample_prompt": values.get("sample_prompt") or {}}


def model_select(choices: list[str], fmt) -> str:
    current = st.session_state.get(key("model"))
    if current and current not in choices:
        choices = [current, *choices]  # a past run's or typed model stays pickable
    if current not in choices:
        st.session_state[key("model")] = choices[0]
    return st.selectbox("Model", choices, key=key("model"), format_func=fmt, on_change=_model_changed)


def _model_changed() -> None:
    # the objective's timestep sampling follows the model's variant unless the user changes it after
    model = st.session_state.get(key("model")) or ""
    st.session_state[key("timestep_sampling")] = form.sampling_for(model)


def _apply_preset() -> None:
    model = st.session_state.get(key("model")) or ""
    keep = {f: st.session_state.get(key(f)) for f in ("timestep_sampling",)}
    _seed(form.defaults(model, st.session_state[key("preset")]) | keep | {"model_id": model},
          st.session_state[key("preset")])


def _number(col, f: str) -> None:
    label, _, lo, hi, extra = NUMBERS[f]
    col.number_input(label, lo, hi, key=key(f), **extra)


def settings() -> tuple[dict, str]:
    """Draw the settings; returns the form's values and the preset they started from."""
    st.selectbox("Start from preset", form.preset_names(), key=key("preset"), on_change=_apply_preset,
                 format_func=preflight.preset_label,
                 help="Fills in every setting below; change any of them afterwards.")
    for row in (("max_steps", "epochs", "learning_rate", "clip_seconds"),
                ("rank", "alpha", "batch_size", "grad_accum")):
        for col, f in zip(st.columns(4), row):
            _number(col, f)
    gpus = gpu_count()
    with st.expander("Advanced"):
        a = st.columns(4)
        a[0].selectbox(CHOICES["optimizer"][0], OPTIMIZERS, key=key("optimizer"))
        a[1].selectbox(CHOICES["scheduler"][0], SCHEDULERS, key=key("scheduler"))
        _number(a[2], "warmup_ratio")
        _number(a[3], "max_grad_norm")
        for col, f in zip(st.columns(4), ("dropout", "cond_dropout", "seed", "shift")):
            _number(col, f)
        a = st.columns(4)
        _number(a[0], "checkpoint_every")
        _number(a[1], "keep_last")
        a[2].checkbox("Gradient checkpointing", key=key("gradient_checkpointing"))
        a[3].checkbox("Also adapt the MLP", key=key("mlp"))
        a = st.columns(4)
        for col, f in zip(a, ("sample_every", "sample_seed", "sample_seconds")):
            _number(col, f)
        a[3].text_input("Preview caption", key=key("sample_caption"), placeholder="empty = first track's labels")
        for col, f in zip(st.columns(4), ("val_every", "val_share", "early_stop_patience", "ema_decay")):
            _number(col, f)
        a = st.columns(4)
        a[0].selectbox(CHOICES["timestep_sampling"][0], SAMPLINGS, key=key("timestep_sampling"),
                       help="logit_normal_max2 is the release's own (the later of two draws); turbo models "
                            "train on their 8 discrete steps.")
        a[1].selectbox(CHOICES["attention_backend"][0], ATTENTION_BACKENDS, key=key("attention_backend"),
                       help="diffusers' attention dispatch; flash needs the flash-attn package on the GPU machine.")
        a[2].checkbox("torch.compile the blocks", key=key("compile"),
                      help="CUDA only: slower first steps, faster after.")
        a[3].multiselect("Also log to", list(trackers.TRACKERS), key=key("report_to"),
                         help="The same step and validation numbers, for TensorBoard or trackio; the Runs page "
                              "(Config tab) says where the logs are and how to open them.")
        for name in st.session_state[key("report_to")]:
            if not trackers.installed(name):
                st.warning(trackers.missing_message(name))
        a = st.columns(4)
        a[0].selectbox(CHOICES["adapter_type"][0], ADAPTER_TYPES, key=key("adapter_type"),
                       format_func={"lora": "LoRA", "dora": "DoRA", "lokr": "LoKr"}.get,
                       help="peft's LoRA, DoRA (LoRA with a learned magnitude) or LoKr (Kronecker factors). "
                            "What can load each one is listed in the checks below.")
        _number(a[1], "merged_scale")
        a[2].selectbox(CHOICES["base_quant"][0], BASE_QUANTS, key=key("base_quant"),
                       format_func={"none": "Full precision", "int8": "int8 (torchao)"}.get,
                       help="int8 stores the frozen model's block weights in int8 (torchao weight-only), half of "
                            "bf16's memory, so the XL model's LoRA fits a 16 GB GPU with gradient checkpointing "
                            "on; the adapter stays fp32 and exports the same files. Works on CPU and on any "
                            "NVIDIA CUDA GPU (T4, V100, A10G, L4, A100, H100); not on Apple MPS. Needs "
                            "gradient checkpointing to save memory.")
    values = {f: st.session_state[key(f)] for f in (*NUMBERS, *CHOICES, "gradient_checkpointing", "compile")}
    values["report_to"] = list(st.session_state[key("report_to")])
    values["model_id"] = st.session_state.get(key("model"))
    values["gpus"] = gpus
    values["target_modules"] = list(ATTN_PROJS) + (list(MLP_PROJS) if st.session_state[key("mlp")] else [])
    prompt = dict(st.session_state.get("train_form_extra", {}).get("sample_prompt") or {})
    caption = st.session_state[key("sample_caption")].strip()
    prompt = {**prompt, "caption": caption} if caption else {k: v for k, v in prompt.items() if k != "caption"}
    values["sample_prompt"] = prompt
    return values, st.session_state[key("preset")]


def gpu_count() -> int:
    """How many of this machine's GPUs the run uses: a choice only where there is more than one."""
    n = len(device.describe().get("gpus") or [])
    if n < 2:
        return 1
    return st.selectbox("GPUs", list(range(1, n + 1)), key=key("gpus"),
                        help="Data-parallel (torchrun): each GPU runs gradient accumulation / GPUs of every "
                             "step's micro-batches, so accumulation must be a multiple of it. The same adapter "
                             "as on one GPU, in less time.")


def remember(dataset: str, values: dict, preset: str) -> None:
    """Keep the form for this session and on disk for the dataset (only when something changed)."""
    entry = st.session_state.setdefault(FORM, {}).setdefault(dataset, {})
    if entry.get("values") != values or entry.get("preset") != preset:
        entry.update(values=values, preset=preset)
        try:
            form.save(dataset, values, preset)
        except OSError as exc:  # a full disk: the session keeps the settings; Start's own checks say the rest
            st.caption(f"⚠️ These settings are kept for this session only: {exc}")
