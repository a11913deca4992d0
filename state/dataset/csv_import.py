"""Import labels from a CSV: a `file` column matched to track basenames, plus label columns."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from state.dataset.labels import LABEL_FIELDS, normalise_labels
from state.dataset.manifest import Dataset, read_manifest, save_labels

FILE_COLUMNS = ("file", "filename", "audio", "track")


MAX_LISTED = 50  # problem lines kept word for word; the rest are counted by kind


@dataclass
class CsvReport:
    source: str = "labels.csv"
    matched: int = 0
    updated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the first MAX_LISTED, in file order
    problem_count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # what went wrong -> how many lines

    def add(self, kind: str, text: str) -> None:
        self.problem_count += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def summary(self) -> str:
        """One sentence for a page: a 100,000-row file gets a count per kind, not 100,000 warnings."""
        if not self.problem_count:
            return ""
        parts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.kinds.items(), key=lambda kv: -kv[1]))
        return f"{self.source}: {self.problem_count:,} problem(s): {parts}."

    @property
    def unlisted(self) -> int:
        return self.problem_count - len(self.problems)


def import_csv(ds: Dataset, data: bytes, source_name: str = "labels.csv") -> CsvReport:
    report = CsvReport(source=source_name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.add("not UTF-8", f"{source_name} is not UTF-8 text. Export it as 'CSV UTF-8' and try again.")
        return report
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    headers = {h.strip().lower(): h for h in (reader.fieldnames or []) if h}
    file_col = next((headers[c] for c in FILE_COLUMNS if c in headers), None)
    if file_col is None:
        report.add("no file column", f"{source_name} has no 'file' column (found: "
                   f"{', '.join(headers.values())[:300] or 'none'}). "
                   "Add a column named file with each track's file name.")
        return report
    label_cols = {f: headers[f] for f in LABEL_FIELDS if f in headers}
    if not label_cols:
        report.add("no label columns", f"{source_name} has no label columns; use any of: {', '.join(LABEL_FIELDS)}.")
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
            report.add("rows naming no track in the dataset",
                       f"{source_name} line {lineno}: no track named {key[:100]!r} in the dataset.")
            continue
        if len({m['id'] for m in matches}) > 1:
            report.add("rows matching several tracks", f"{source_name} line {lineno}: {key[:100]!r} matches several "
                       f"tracks ({', '.join(m['id'] for m in matches[:5])}); use the full file name.")
            continue
        cells = {f: rec.get(col) for f, col in label_cols.items() if (rec.get(col) or "").strip()}
        clean, bad = normalise_labels(cells)
        for b in bad:
            report.add("values skipped", f"{source_name} line {lineno} ({key[:100]}): {b}; that value was skipped.")
        if clean:
            edits[matches[0]["id"]] = clean
            report.matched += 1
    if edits:
        updated = save_labels(ds, edits, labeled_by="user")
        report.updated = [r["id"] for r in updated]
    return report
