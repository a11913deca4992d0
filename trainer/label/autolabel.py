"""Job kind "label": Auto-label a dataset (`python trainer/run.py label --job-dir jobs/<id>`).

params.json is a state.label.options.LabelParams. For each chosen track, in manifest order:
  1. signal labels (trainer/label/signal.py: duration, bpm, key, time signature, each with a
     confidence) when the mode includes them;
  2. LM labels (audio -> 5 Hz codes -> ACE-Step LM -> caption, language, time signature, lyrics)
     when the mode includes them and the LM and audio tokenizer are on this machine;
  3. merge (state.label.policy.merge): confident measured values are written, unconfident ones and
     the loser of a signal/LM disagreement become suggestions; then state.label.policy.plan_edits
     applies the user-edit policy (a user's own value is never overwritten);
  4. write sidecar then manifest (state.dataset.manifest.save_labels), then the track's suggestions
     (state.label.suggestions), before the next track starts.
A track that fails gives a `warning` naming its file and the batch goes on; a stop request is
honoured between tracks. Events: start, phase(name=label, done, total, eta_s), labeled, warning, summary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from state import settings
from state.dataset.labels import normalise_labels
from state.dataset.manifest import open_dataset, read_manifest, save_labels, scan
from state.dataset.sidecar import read_sidecar, sidecar_path
from state.label import suggestions
from state.label.options import LabelParams, availability
from state.label.policy import MEASURED_FIELDS, Measured, has_labels, merge, plan_edits
from state.label.suggestions import Suggestion


@dataclass
class TrackResult:
    measured: dict = field(default_factory=dict)   # field -> state.label.policy.Measured (raw values)
    heard: dict = field(default_factory=dict)      # field -> the LM's raw value
    proposed: dict = field(default_factory=dict)   # clean values to write (after merge)
    sources: dict = field(default_factory=dict)    # field -> dsp | lm
    suggestions: list[Suggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lm_empty: str | None = None                    # the LM ran but gave nothing usable: what it said, in words
    genres: str | None = None


class LMLabeler:
    """The LM path, loaded once per job: VAE + audio tokenizer + 5 Hz LM."""

    def __init__(self, p: LabelParams, ctx):
        from trainer.label.codes import load_codec
        from trainer.label.lm import load_lm
        from trainer.model.load import pick_device_dtype

        self.p = p
        model = p.model or settings.model_id()
        avail = availability(settings.resolve_model_dir(model), p.lm_size, p.lm_path, model)
        if not avail.ok:
            raise LMUnavailable(" ".join(avail.reasons))
        device, dtype = pick_device_dtype()
        ctx.phase("load", 0, 2)
        self.codec = load_codec(avail.codec, device, dtype)
        ctx.phase("load", 1, 2)
        self.lm = load_lm(avail.lm, device, dtype, self.codec.codebook_size)
        ctx.phase("load", 2, 2)
        ctx.emit("model", lm=str(avail.lm), audio_tokenizer=str(avail.codec.tokenizer), codec_kind=avail.codec.kind,
                 device=str(device), dtype=str(dtype).replace("torch.", ""))

    def describe(self, audio_path: Path, seed: int, out: TrackResult) -> None:
        from trainer.dataset.audio import load_audio
        from trainer.label.codes import audio_codes
        from trainer.label.lm import seconds_budget, understand
        from trainer.label.parse import parse_answer

        budget = seconds_budget(self.lm, self.p.max_new_tokens)
        audio = load_audio(audio_path, max_seconds=budget, target_sr=self.codec.sample_rate)
        out.measured.setdefault("duration", Measured(round(audio.source_seconds, 3)))  # exact, whatever the LM says
        if audio.seconds < audio.source_seconds:
            out.notes.append(f"The LM heard only the first {audio.seconds:.0f} s of {audio.source_seconds:.0f} s "
                             f"(its context is {self.lm.context} tokens, 5 codes per second).")
        codes = audio_codes(self.codec, audio.samples)
        text = understand(self.lm, codes, self.p.max_new_tokens, self.p.temperature, self.p.top_p, seed,
                          stop_at_think_end=not self.p.lyrics)
        answer = parse_answer(text)
        out.heard = {k: v for k, v in answer.labels.items() if self.p.lyrics or k != "lyrics"}
        out.genres = answer.genres
        out.notes += answer.notes
        if not answer.usable:
            snippet = " ".join(text.split())[:120]
            out.lm_empty = f"The LM's answer held nothing usable (it began: {snippet!r}); no LM labels were written."
            out.notes.append(out.lm_empty)


class LMUnavailable(RuntimeError):
    pass


def label_track(row: dict, p: LabelParams, lm: LMLabeler | None, seed: int) -> TrackResult:
    from trainer.label.signal import signal_labels

    out = TrackResult()
    if p.uses_signal:
        sig = signal_labels(row["audio"])
        out.measured.update(sig.measured)
        out.notes += sig.notes
    if lm is not None:
        lm.describe(Path(row["audio"]), seed, out)
    measured, problems = _clean_measured(out.measured)  # e.g. a 6 s file's duration is outside 10-600 s
    # the file's own length is exact: the LM's guess at it is never used, even where the file is too
    # short or long for ACE-Step and no duration is written at all
    heard, lm_problems = normalise_labels({k: v for k, v in out.heard.items() if k != "duration"})
    out.notes += problems + [f"LM: {x}" for x in lm_problems]
    merged = merge(measured, heard)
    out.proposed, out.sources, out.suggestions = merged.proposed, merged.sources, merged.suggestions
    return out


def _clean_measured(measured: dict) -> tuple[dict, list[str]]:
    """Normalise measured values and their alternatives (out-of-range octaves are dropped)."""
    clean, problems = normalise_labels({k: m.value for k, m in measured.items()})
    out = {}
    for k, v in clean.items():
        alts = [a for a in (normalise_labels({k: x})[0].get(k) for x in measured[k].alternatives) if a is not None]
        out[k] = Measured(v, measured[k].confidence, alts)
    return out, problems


def select_rows(rows: list[dict], p: LabelParams) -> list[dict]:
    if not p.only_unlabelled:
        return rows
    return [r for r in rows if not has_labels(read_sidecar(sidecar_path(Path(r["audio"]))).data)]


def write_track(ds, row: dict, res: TrackResult, p: LabelParams, job: str) -> tuple[dict, str | None]:
    """Apply the write policy and save, then the track's suggestions; returns (fields written,
    labeled_by recorded or None). A measured value the user-edit policy kept from being written is
    proposed instead (the user's value stays; the page shows what was measured)."""
    sc = read_sidecar(sidecar_path(Path(row["audio"])))
    edits, by = plan_edits(sc.data, res.proposed, res.sources, p.protect_user)
    if edits:
        save_labels(ds, {row["id"]: edits}, labeled_by=by)  # raises SidecarError for a broken sidecar
    have = sc.data or {}
    for k, v in res.proposed.items():
        if k in MEASURED_FIELDS and k not in edits and have.get(k) not in (None, "", v) and res.sources[k] == "dsp":
            m = res.measured.get(k)
            res.suggestions.append(Suggestion(k, v, "dsp", f"your value {have[k]} was kept",
                                              m.confidence if m else None, m.alternatives if m else []))
    res.suggestions = [s for s in res.suggestions if s.value != {**have, **edits}.get(s.field)]
    suggestions.replace_track(ds.dir, row["id"], res.suggestions, job=job)
    return edits, by


def job_label(ctx, args) -> str:
    p = LabelParams.from_dict(ctx.params)
    ds = open_dataset(p.dataset)
    rows = read_manifest(ds) or scan(ds).rows
    todo = select_rows(rows, p)
    ctx.emit("start", kind="label", dataset=ds.name, tracks=len(todo), skipped=len(rows) - len(todo),
             options=p.to_dict())
    if p.uses_lm:  # the LM path puts the VAE, the audio tokenizer and the LM on the GPU: hold its lease
        from trainer.model.load import pick_device_dtype

        with ctx.gpu_lease(pick_device_dtype()[0]):
            return _label_all(ctx, p, ds, todo)
    return _label_all(ctx, p, ds, todo)


def _label_all(ctx, p: LabelParams, ds, todo: list[dict]) -> str:
    lm = None
    if p.uses_lm:
        try:
            lm = LMLabeler(p, ctx)
        except LMUnavailable as exc:
            if p.mode == "lm":
                raise
            ctx.emit("warning", message=f"LM labels skipped: {exc} Signal labels still run.")
    counts = {"labelled": 0, "duration_only": 0, "unchanged": 0, "failed": 0, "lm_empty": 0, "suggested": 0}
    timed = []  # seconds per track that was labelled: a file that fails at once says nothing of the rest
    ctx.phase("label", 0, len(todo), None)
    status = "completed"
    for i, row in enumerate(todo):
        if ctx.stop_requested():
            status = "stopped"
            break
        name = Path(row["audio"]).name
        t0 = time.time()
        try:
            res = label_track(row, p, lm, p.seed + i)
            edits, by = write_track(ds, row, res, p, ctx.job_dir.name)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            counts["failed"] += 1
            ctx.emit("warning", message=f"{name}: not labelled: {exc}", track=row["id"])
        else:
            timed.append(time.time() - t0)
            counts["labelled" if set(edits) - {"duration"} else "duration_only" if edits else "unchanged"] += 1
            counts["lm_empty"] += res.lm_empty is not None
            counts["suggested"] += bool(res.suggestions)
            ctx.emit("labeled", track=row["id"], fields=edits, labeled_by=by,
                     kept=sorted(set(res.proposed) - set(edits)), genres=res.genres, notes=res.notes,
                     confidence={k: round(m.confidence, 2) for k, m in res.measured.items() if k in MEASURED_FIELDS},
                     suggested={s.field: s.value for s in res.suggestions})
            if res.lm_empty:
                ctx.emit("warning", message=f"{name}: {res.lm_empty}", track=row["id"])
        done = i + 1
        eta = round(sum(timed) / len(timed) * (len(todo) - done), 1) if timed else None
        ctx.phase("label", done, len(todo), eta)
    ctx.emit("summary", **counts, total=len(todo), message=_summary_text(counts, len(todo), status))
    return status


def _summary_text(c: dict, total: int, status: str) -> str:
    parts = [f"{c['labelled']} of {total} track(s) got new labels"]
    if c["duration_only"]:
        parts.append(f"{c['duration_only']} only their duration")
    parts.append(f"{c['unchanged']} unchanged")
    if c["failed"]:
        parts.append(f"{c['failed']} failed (see the warnings)")
    text = ", ".join(parts) + "."
    if c["suggested"]:
        text += (f" {c['suggested']} track(s) have suggestions to review (values measured with low confidence, "
                 "or where the signal and the LM disagree).")
    if c["lm_empty"]:
        text += (f" The LM gave nothing usable for {c['lm_empty']} track(s); check that the LM folder holds a "
                 "released ACE-Step 5 Hz LM (a random or wrong model answers gibberish).")
    if status == "stopped":
        text += " Stopped before the end; the tracks done so far are saved."
    return text
