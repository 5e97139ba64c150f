"""Prefect Blocks for avatar-crm: the secrets (Wix, MobileMessage, SendGrid, Google OAuth client, the LLM
endpoint, the CRM's own keys) as typed blocks, read before the environment by every process that installs
`settings_source` (see its docstring for why `models` cannot import this package itself).
"""
