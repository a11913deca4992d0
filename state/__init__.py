"""On-disk state shared by the dashboard and the jobs. Never imports torch or Streamlit.

The ground floor, which every domain stands on: paths (where things live), fsutil (atomic
writes, locks), events (job progress), jobs (detached processes), series (events folded for
charts), watch (file-change notifications), settings (workspace settings), device (hardware,
found without torch). The domains, each a package with a twin of the same name in trainer/:
dataset, model, train, listen, label, cloud.
"""
