"""Pure functions for the dashboard: tiling, colours, search, attention maths, URL state
and Plotly figure builders. No Dash imports here (tests call these directly)."""
