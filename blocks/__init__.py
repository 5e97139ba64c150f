"""Prefect Blocks for avatar-crm.

Empty on purpose for now: every credential comes from the one settings object (`models/settings.py`,
environment or `.env`), so there is a single place to configure the system. Blocks belong here when a
credential has to be managed from the Prefect UI or rotated by a flow (e.g. Google OAuth tokens).
"""
