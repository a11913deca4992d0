"""Job kind "label": Auto-label a dataset (`python trainer/run.py label --job-dir jobs/<id>`).

params.json is a state.label.options.LabelParams. For each chosen track, in manifest order:
  1. signal labels (librosa: duration, bpm, key) when the mode includes them;
  2. LM labels (audio -> 5 Hz codes -> ACE-Step LM -> caption, language, time signature, lyrics)
     when the mode includes them and the LM and audio tokenizer are on this machine;
  3. merge: measured values win where both exist (the file's duration is exact; bpm and key are
     measured), the LM fills the rest; then state.label.policy.plan_edits applies the write policy;
  4. write sidecar then manifest (state.dataset.manifest.save_labels) before the next track starts.
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
from state.label.options import LabelParams, availability
from state.label.policy import has_labels, plan_edits


@dataclass
class TrackResult:
    proposed: dict = field(default_factory=dict)   # clean values
    sources: dict = field(default_factory=dict)    # field -> dsp | lm
    notes: list[str] = field(default_factory=list)
    lm_empty: str | None = None                    # the LM ran but gave nothing usable: what it said, in words
    genres: str | None = None

    def offer(self, values: dict, source: str) -> None:
        """Add values a better source has not already given."""
        for k, v in values.items():
            if k not in self.proposed:
                self.proposed[k], self.sources[k] = v, source


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
        out.offer({"duration": round(audio.source_seconds, 3)}, "dsp")  # exact, whatever the LM says
        if audio.seconds < audio.source_seconds:
            out.notes.append(f"The LM heard only the first {audio.seconds:.0f} s of {audio.source_seconds:.0f} s "
                             f"(its context is {self.lm.context} tokens, 5 codes per second).")
        codes = audio_codes(self.codec, audio.samples)
        text = understand(self.lm, codes, self.p.max_new_tokens, self.p.temperature, self.p.top_p, seed,
                          stop_at_think_end=not self.p.lyrics)
        answer = parse_answer(text)
        labels = {k: v for k, v in answer.labels.items() if self.p.lyrics or k != "lyrics"}
        out.offer(labels, "lm")
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
        out.offer(sig.labels, "dsp")
        out.notes += sig.notes
    if lm is not None:
        lm.describe(Path(row["audio"]), seed, out)
    clean, problems = normalise_labels(out.proposed)  # e.g. a 6 s file's duration is outside 10-600 s
    out.notes += problems
    out.proposed = clean
    return out


def select_rows(rows: list[dict], p: LabelParams) -> list[dict]:
    if not p.only_unlabelled:
        return rows
    return [r for r in rows if not has_labels(read_sidecar(sidecar_path(Path(r["audio"]))).data)]


def write_track(ds, row: dict, res: TrackResult, p: LabelParams) -> tuple[dict, str | None]:
    """Apply the write policy and save; returns (fields written, labeled_by recorded or None)."""
    sc = read_sidecar(sidecar_path(Path(row["audio"])))
    edits, by = plan_edits(sc.data, res.proposed, res.sources, p.protect_user)
    if edits:
        save_labels(ds, {row["id"]: edits}, labeled_by=by)  # raises SidecarError for a broken sidecar
    return edits, by


def job_label(ctx, args) -> str:
    p = LabelParams.from_dict(ctx.params)
    ds = open_dataset(p.dataset)
    rows = read_manifest(ds) or scan(ds).rows
    todo = select_rows(rows, p)
    ctx.emit("start", kind="label", dataset=ds.name, tracks=len(todo), skipped=len(rows) - len(todo),
             options=p.to_dict())
    lm = None
    if p.uses_lm:
        try:
            lm = LMLabeler(p, ctx)
        except LMUnavailable as exc:
            if p.mode == "lm":
                raise
            ctx.emit("warning", message=f"LM labels skipped: {exc} Signal labels still run.")
    counts = {"labelled": 0, "unchanged": 0, "failed": 0, "lm_empty": 0}
    t0 = time.time()
    ctx.phase("label", 0, len(todo), None)
    status = "completed"
    for i, row in enumerate(todo):
        if ctx.stop_requested():
            status = "stopped"
            break
        name = Path(row["audio"]).name
        try:
            res = label_track(row, p, lm, p.seed + i)
            edits, by = write_track(ds, row, res, p)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            counts["failed"] += 1
            ctx.emit("warning", message=f"{name}: not labelled: {exc}", track=row["id"])
        else:
            counts["labelled" if edits else "unchanged"] += 1
            counts["lm_empty"] += res.lm_empty is not None
            ctx.emit("labeled", track=row["id"], fields=edits, labeled_by=by,
                     kept=sorted(set(res.proposed) - set(edits)), genres=res.genres, notes=res.notes)
            if res.lm_empty:
                ctx.emit("warning", message=f"{name}: {res.lm_empty}", track=row["id"])
        done = i + 1
        elapsed = time.time() - t0
        ctx.phase("label", done, len(todo), round(elapsed / done * (len(todo) - done), 1))
    ctx.emit("summary", **counts, total=len(todo), message=_summary_text(counts, len(todo), status))
    return status


def _summary_text(c: dict, total: int, status: str) -> str:
    parts = [f"{c['labelled']} of {total} track(s) got new labels", f"{c['unchanged']} unchanged"]
    if c["failed"]:
        parts.append(f"{c['failed']} failed (see the warnings)")
    text = ", ".join(parts) + "."
    if c["lm_empty"]:
        text += (f" The LM gave nothing usable for {c['lm_empty']} track(s); check that the LM folder holds a "
                 "released ACE-Step 5 Hz LM (a random or wrong model answers gibberish).")
    if status == "stopped":
        text += " Stopped before the end; the tracks done so far are saved."
    return text
