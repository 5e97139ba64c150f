"""Reporting: the plan's KPIs computed from what the CRM recorded (`kpis.py`), the daily report built from
them (`report.py`) and its charts (`charts.py`, hand-written SVG). Reads only; changes nothing."""
