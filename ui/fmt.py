"""Small text formats shared by the dashboard's views."""
from __future__ import annotations

STATUS_BADGE = {"running": "🟢 running", "queued": "⏳ queued", "completed": "✅ completed",
                "stopped": "⏸️ stopped", "failed": "❌ failed", "died": "💀 died", "damaged": "🩹 damaged",
                "unknown": "❔ unknown"}


def duration(seconds: float | None) -> str:
    """'4m 05s' / '2h 03m'; '–' when unknown."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds))  # a clock step or a stale event must never show "-1m 37s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def with_hint(message: str, hint: str | None) -> str:
    """An error message followed by what to do about it, the same way on every page."""
    return f"{message}\n\n**What to do:** {hint}" if hint else message
