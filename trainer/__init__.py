"""Everything that needs torch. Imported only inside job subprocesses (trainer/run.py).

run.py maps each job kind to one function; job.py is the context every job gets; hints.py turns
failures into plain words; selftest.py walks the job lifecycle without torch. The domains, each
the twin of the package of the same name in state/: dataset, model, train, listen, label, cloud.
Nothing here may import Streamlit, app_pages or ui: the dashboard reaches a job only through files.
"""
