"""Train page: pick data and model, set up a run, check it, start it, and watch it live."""
from __future__ import annotations

import dataclasses

import streamlit as st

from state import jobs, paths, settings
from state.dataset import manifest
from state.model.catalog import DEMO_MODEL_ID, info_for, known_ids
from state.train import preflight, runs
from state.train.config import ATTN_PROJS, MLP_PROJS, OPTIMIZERS, SCHEDULERS, ConfigError, TrainConfig, make_plan
from ui import estimate, live, model_fetch

st.title("Train")

# ---- GUARD ---------------------------------------------------------------------------------
names = manifest.list_datasets()
if not names:
    st.info("No dataset yet. Create one on the Dataset page first.")
    st.page_link("app_pages/dataset.py", label="Go to Dataset", icon="🎵")
    st.stop()

# ---- DATA AND MODEL ------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    current = st.session_state.get("dataset_name")
    ds_name = st.selectbox("Dataset", names, index=names.index(current) if current in names else 0, key="train_ds")
    ds = manifest.open_dataset(ds_name)
    all_rows = manifest.read_manifest(ds)
    rows = [r for r in all_rows if r.get("status") != "error"]
    st.caption(manifest.summary(all_rows)["verdict"])
with right:
    choices = list(dict.fromkeys([settings.model_id(), *settings.local_models(), *known_ids()]))
    model = st.selectbox("Model", choices + ["Other (Hub id or local folder)…"], key="train_model",
                         format_func=lambda m: f"{m} — {info_for(m).note}" if info_for(m).note else m)
    if model.startswith("Other"):
        model = st.text_input("Hub id or folder", key="train_model_other", placeholder="org/name or /path/to/model")
    if model and model != settings.model_id() and st.button("Use as default model", key="train_set_default"):
        settings.save(model_id=model)
        st.rerun()
    if model and settings.is_demo(model):
        st.warning("Tiny demo model: random weights. It exercises the whole workflow but produces noise, not music.")
        if settings.ensure_demo_model_job():
            st.info("Building the demo model (a few seconds)…")
    elif model and settings.resolve_model_dir(model) is None:
        model_fetch.download_panel(model)
if not model:
    st.stop()

# ---- SETTINGS ------------------------------------------------------------------------------
st.subheader("Settings")
preset = st.selectbox("Preset", ["Defaults"] + list(preflight.PRESETS), key="train_preset",
                      format_func=preflight.preset_label)
base = TrainConfig(model_id=DEMO_MODEL_ID if settings.is_demo(model) else model, manifest="").to_dict()
base.update(preflight.PRESETS.get(preset, {}))
c = st.columns(4)
max_steps = c[0].number_input("Max steps (0 = use epochs)", 0, 1_000_000, base["max_steps"], key=f"train_steps_{preset}")
epochs = c[1].number_input("Epochs", 1, 10_000, base["epochs"], key=f"train_epochs_{preset}")
lr = c[2].number_input("Learning rate", 1e-6, 1e-2, base["learning_rate"], format="%.1e", key=f"train_lr_{preset}")
clip = c[3].number_input("Clip length (s, 0 = whole track)", 0.0, 600.0, base["clip_seconds"], key=f"train_clip_{preset}")
c = st.columns(4)
rank = c[0].number_input("LoRA rank", 1, 512, base["rank"], key=f"train_rank_{preset}")
alpha = c[1].number_input("LoRA alpha", 1.0, 1024.0, float(base["alpha"]), key=f"train_alpha_{preset}")
batch = c[2].number_input("Batch size", 1, 64, base["batch_size"], key=f"train_batch_{preset}")
accum = c[3].number_input("Gradient accumulation", 1, 256, base["grad_accum"], key=f"train_accum_{preset}")
with st.expander("Advanced"):
    a = st.columns(4)
    optimizer = a[0].selectbox("Optimizer", OPTIMIZERS, OPTIMIZERS.index(base["optimizer"]), key=f"train_opt_{preset}")
    scheduler = a[1].selectbox("Schedule", SCHEDULERS, SCHEDULERS.index(base["scheduler"]), key="train_sched")
    warmup = a[2].number_input("Warmup ratio", 0.0, 0.5, base["warmup_ratio"], key="train_warmup")
    grad_norm = a[3].number_input("Max grad norm", 0.0, 100.0, base["max_grad_norm"], key="train_gn")
    a = st.columns(4)
    dropout = a[0].number_input("LoRA dropout", 0.0, 0.9, base["dropout"], key="train_dropout")
    cond_drop = a[1].number_input("Condition dropout", 0.0, 1.0, base["cond_dropout"], key="train_cdrop",
                                  help="Share of steps trained unconditioned; what makes guidance work on base/sft.")
    seed = a[2].number_input("Seed", 0, 2**31 - 1, base["seed"], key="train_seed")
    shift = a[3].number_input("Shift (inference)", 0.1, 20.0, base["shift"], key="train_shift",
                              help="Stored with the adapter for generation; not used by the training loss.")
    a = st.columns(4)
    every = a[0].number_input("Checkpoint every N steps", 0, 100_000, base["checkpoint_every"], key=f"train_every_{preset}")
    keep = a[1].number_input("Keep last K checkpoints", 1, 100, base["keep_last"], key=f"train_keep_{preset}")
    gc = a[2].checkbox("Gradient checkpointing", base["gradient_checkpointing"], key=f"train_gc_{preset}")
    mlp = a[3].checkbox("Also adapt the MLP", False, key="train_mlp")
    a = st.columns(4)
    sample_every = a[0].number_input("Preview sample every N steps (0 = off)", 0, 100_000, base["sample_every"],
                                     key="train_sample_every", help="Rendered by a separate job, plus a step-0 "
                                     "baseline and one at the end; listen on Runs → Samples.")
    sample_seed = a[1].number_input("Preview seed", 0, 2**31 - 1, base["sample_seed"], key="train_sample_seed")
    sample_seconds = a[2].number_input("Preview seconds", 1.0, 600.0, base["sample_seconds"], key="train_sample_s")
    sample_caption = a[3].text_input("Preview caption", "", key="train_sample_caption",
                                     placeholder="empty = first track's labels")
    sampling = st.selectbox("Timestep sampling", ["logit_normal", "turbo_discrete"],
                            index=1 if info_for(model).variant == "turbo" else 0, key="train_sampling")

form = {**base, "max_steps": int(max_steps), "epochs": int(epochs), "learning_rate": float(lr),
        "clip_seconds": float(clip), "rank": int(rank), "alpha": float(alpha), "batch_size": int(batch),
        "grad_accum": int(accum), "optimizer": optimizer, "scheduler": scheduler, "warmup_ratio": float(warmup),
        "max_grad_norm": float(grad_norm), "dropout": float(dropout), "cond_dropout": float(cond_drop),
        "seed": int(seed), "shift": float(shift), "checkpoint_every": int(every), "keep_last": int(keep),
        "gradient_checkpointing": bool(gc), "timestep_sampling": sampling,
        "target_modules": list(ATTN_PROJS) + (list(MLP_PROJS) if mlp else []),
        "sample_every": int(sample_every), "sample_seed": int(sample_seed), "sample_seconds": float(sample_seconds),
        "sample_prompt": {"caption": sample_caption} if sample_caption.strip() else {}}

# ---- PREFLIGHT -----------------------------------------------------------------------------
st.subheader("Preflight")
try:
    cfg = TrainConfig.from_dict(form)
    plan = make_plan(cfg, max(1, len(rows)))
    config_error = None
except ConfigError as exc:
    cfg, plan, config_error = None, None, str(exc)
pf = preflight.run_preflight(model, form, all_rows, plan.total_steps if plan else None)
if config_error:
    pf.add("error", config_error)
icons = {"ok": "✅", "info": "ℹ️", "warning": "⚠️", "error": "⛔"}
for chk in pf.checks:
    st.markdown(f"{icons[chk.level]} {chk.text}")
if plan:
    st.caption(f"{plan.total_steps} optimizer steps ({plan.steps_per_epoch}/epoch, {plan.samples_per_step} "
               f"samples/step, warmup {plan.warmup_steps}).")
estimate.line(pf)

# ---- START ---------------------------------------------------------------------------------
active = [j.job_id for j in jobs.active_jobs() if j.kind == "train"]
after = st.selectbox("Start", ["now"] + [f"after {r}" for r in active], key="train_after",
                     help="Queue this run to start when another one ends (line runs up overnight).")
if st.button("Start training", type="primary", disabled=pf.blocked or cfg is None, key="train_start"):
    run_dir = runs.start_run(dataclasses.replace(cfg, model_id=model).to_dict(),
                             [manifest.public_row(r) for r in rows],
                             after=None if after == "now" else after.removeprefix("after "))
    st.session_state["train_run"] = run_dir.name
    st.rerun()

# ---- LIVE VIEW -----------------------------------------------------------------------------
run_ids = [d.name for d in runs.list_runs()]
if not run_ids:
    st.stop()
st.divider()
current = st.session_state.get("train_run")
run_id = st.selectbox("Run", run_ids, index=run_ids.index(current) if current in run_ids else 0, key="train_view")
st.session_state["train_run"] = run_id
run_dir = paths.run_dir(run_id)


@st.fragment(run_every=2)
def _live() -> None:
    status = live.render(run_dir, key="train_live")
    b = st.columns(4)
    if status in ("running", "queued"):
        if b[0].button("Stop & save", key="train_stop"):
            st.toast(jobs.stop(run_dir))
        if b[1].button("Save now", key="train_save_now", disabled=status == "queued"):
            jobs.request(run_dir, "save_now")
            st.toast("A checkpoint will be saved after the current step.")
        if b[2].button("Sample now", key="train_sample_now", disabled=status == "queued"):
            jobs.request(run_dir, "sample_now")
            st.toast("A preview will be rendered from the current adapter (Runs → Samples).")
    elif status in ("stopped", "died", "failed") and runs.checkpoints(run_dir):
        ckpts = [p.name for p in runs.checkpoints(run_dir)]
        pick = b[0].selectbox("Checkpoint", ckpts[::-1], key="train_resume_pick", label_visibility="collapsed")
        if b[1].button("Resume", key="train_resume"):
            runs.start_run({}, [], run_id=run_id, resume=pick)
            st.rerun()


_live()
