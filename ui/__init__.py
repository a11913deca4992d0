"""Dashboard widgets shared by pages (charts, the live run view). Streamlit + plotly; never torch."""
