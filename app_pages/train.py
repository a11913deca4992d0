"""Train page: a New run tab (data, model, settings, preflight, start) and a Live run tab (the run just
started, or the one that is active, with its controls on top)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from state import jobs, paths, settings
from state.dataset import manifest
from state.model.catalog import DEMO_MODEL_ID, known_ids
from state.train import preflight, runs
from state.train.config import ConfigError, TrainConfig, make_plan
from ui import estimate, hf_jobs, live, model_fetch, waiting
from ui import train_form as tf

st.title("Train")

# ---- GUARD ---------------------------------------------------------------------------------
names = manifest.list_datasets()
if not names:
    st.info("No dataset yet. Create one on the Dataset page first.")
    st.page_link("app_pages/dataset.py", label="Go to Dataset", icon="🎵")
    st.stop()

# ---- TABS: the run just started (or the active one) opens in Live run ----------------------
run_ids = [d.name for d in runs.list_runs()]
active_ids = [r for r in run_ids if jobs.status(paths.run_dir(r)).active]
tf.apply_moves(run_ids, active_ids)
new_tab, live_tab = st.tabs([tf.TAB_NEW, tf.TAB_LIVE], key="train_tab", on_change="rerun")

with live_tab:
    if live_tab.open:
        if not run_ids:
            st.info("No run yet. Set one up under New run and press Start training.")
        else:
            picked = paths.run_dir(tf.run_picker(run_ids))
            hf_jobs.run_status(picked)
            live.panel(picked, key="train_live")

if not new_tab.open:
    st.stop()

# ---- DATA AND MODEL ------------------------------------------------------------------------
with new_tab:
    left, right = st.columns(2)
    with left:
        current = st.session_state.get("dataset_name")
        ds_name = st.selectbox("Dataset", names, index=names.index(current) if current in names else 0,
                               key="train_ds")
        st.session_state["dataset_name"] = ds_name
        ds = manifest.open_dataset(ds_name)
        all_rows = manifest.read_manifest(ds)
        rows = [r for r in all_rows if r.get("status") != "error"]
        st.caption(manifest.summary(all_rows)["verdict"])
    loaded_from = tf.prepare(ds_name, settings.model_id())
    with right:
        other = "Other (Hub id or local folder)…"
        choices = list(dict.fromkeys([settings.model_id(), *settings.local_models(), *known_ids()]))
        model = tf.model_select(choices + [other], lambda m: m if m == other else model_fetch.choice_label(m))
        if model == other:
            model = st.text_input("Hub id or folder", key="train_model_other", placeholder="org/name or /path/to/model")
        if model and model != settings.model_id() and st.button("Use as default model", key="train_set_default"):
            settings.save(model_id=model)
            st.rerun()
        if model and settings.is_demo(model):
            st.warning("Tiny demo model: random weights. It exercises the whole workflow but produces noise, not music.")
            if building := settings.ensure_demo_model_job():
                waiting.until_done(paths.job_dir(building), lambda: st.info(
                    "Building the demo model (a few seconds); Start unlocks by itself when it is ready."))
        elif model and settings.resolve_model_dir(model) is None:
            model_fetch.download_panel(model)
    if not model:
        st.stop()

    # ---- SETTINGS ------------------------------------------------------------------------------
    st.subheader("Settings")
    if loaded_from:
        st.success(f"Settings loaded from {loaded_from}. Change what you want to try, then start.")
    values, preset = tf.settings()
    tf.remember(ds_name, {**values, "model_id": model}, preset)
    form = {**TrainConfig(model_id=model).to_dict(), **{k: v for k, v in values.items() if k != "model_id"},
            "model_id": DEMO_MODEL_ID if settings.is_demo(model) else model, "manifest": ""}

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
                   f"samples/step, warmup {plan.warmup_steps}). {pf.mem_text} {pf.time_text}")
    estimate.line(pf)

    # ---- START ---------------------------------------------------------------------------------
    after = st.selectbox("Start", ["now"] + [f"after {r}" for r in active_ids], key="train_after",
                         help="Queue this run to start when another one ends (line runs up overnight).")
    blocked = pf.blocked or cfg is None
    remote, started = hf_jobs.start_choice(cfg.to_dict() if cfg else None, [manifest.public_row(r) for r in rows],
                                           blocked)
    if started:
        tf.goto_run(started.name)
        st.rerun()
    if not remote and st.button("Start training", type="primary", disabled=blocked, key="train_start"):
        run_dir = runs.start_run(dataclasses.replace(cfg, model_id=model).to_dict(),
                                 [manifest.public_row(r) for r in rows],
                                 after=None if after == "now" else after.removeprefix("after "))
        tf.goto_run(run_dir.name)
        st.rerun()
    if blocked:
        st.caption("Start is off until the ⛔ items above are fixed.")
