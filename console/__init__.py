"""The clinic console: a small server-rendered web app (Jinja2 + HTMX) for the people who run the clinic,
mounted by the gateway under /console. Sign-in with Google Workspace, roles checked in one place
(`console.roles`), every view of patient details audited by the domain code it calls."""
