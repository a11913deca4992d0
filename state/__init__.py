"""On-disk state shared by the dashboard and the jobs. Never imports torch or Streamlit.

Modules: paths (where things live), fsutil (atomic writes, locks), events (job progress),
jobs (detached processes), labels / sidecar / manifest / probe / uploads / label_import
(datasets), watch (file-change notifications), device (hardware, without torch),
ab (A/B comparisons, blind labels, votes, training previews).
"""
