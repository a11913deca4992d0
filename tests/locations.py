"""Where the repository and the app entry are, for tests at any depth under tests/."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
