"""Import labels from a CSV: a `file` column matched to track basenames, plus label columns."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from state.dataset.labels import LABEL_FIELDS, normalise_labels
from state.dataset.manifest import Dataset, read_manifest, save_labels

FILE_COLUMNS = ("file", "filename", "audio", "track")


@dataclass
class CsvReport:
    matched: int = 0
    updated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def import_csv(ds: Dataset, data: bytes, source_name: str = "labels.csv") -> CsvReport:
    report = CsvReport()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.problems.append(f"{source_name} is not UTF-8 text. Export it as 'CSV UTF-8' and try again.")
        return report
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    headers = {h.strip().lower(): h for h in (reader.fieldnames or []) if h}
    file_col = next((headers[c] for c in FILE_COLUMNS if c in headers), None)
    if file_col is None:
        report.problems.append(f"{source_name} has no 'file' column (found: {', '.join(headers.values()) or 'none'}). "
                               "Add a column named file with each track's file name.")
        return report
    label_cols = {f: headers[f] for f in LABEL_FIELDS if f in headers}
    if not label_cols:
        report.problems.append(f"{source_name} has no label columns; use any of: {', '.join(LABEL_FIELDS)}.")
        return report
    rows = read_manifest(ds)
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        for key in {Path(r["id"]).name.lower(), Path(r["id"]).stem.lower(), r["id"].lower()}:
            by_name.setdefault(key, []).append(r)
    edits: dict[str, dict] = {}
    for lineno, rec in enumerate(reader, start=2):
        key = (rec.get(file_col) or "").strip()
        if not key:
            continue
        matches = by_name.get(key.lower()) or by_name.get(Path(key).name.lower()) or []
        if not matches:
            report.problems.append(f"{source_name} line {lineno}: no track named {key!r} in the dataset.")
            continue
        if len({m['id'] for m in matches}) > 1:
            report.problems.append(f"{source_name} line {lineno}: {key!r} matches several tracks "
                                   f"({', '.join(m['id'] for m in matches)}); use the full file name.")
            continue
        cells = {f: rec.get(col) for f, col in label_cols.items() if (rec.get(col) or "").strip()}
        clean, bad = normalise_labels(cells)
        report.problems += [f"{source_name} line {lineno} ({key}): {b}; that value was skipped." for b in bad]
        if clean:
            edits[matches[0]["id"]] = clean
            report.matched += 1
    if edits:
        updated = save_labels(ds, edits, labeled_by="user")
        report.updated = [r["id"] for r in updated]
    return report
