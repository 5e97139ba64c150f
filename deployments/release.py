"""`prefect deploy`'s build step: the repository and commit every worker fetches the flows' code from.

A work-pool deployment's pull step once pointed at the deployer's checkout (`set_working_directory: $PWD`),
so a worker could only run on the deployer's machine. Now each flow run's pull step clones
`AVATAR_CRM_GIT_URL` at a pinned commit (Prefect's `git_clone` step): every worker, on any host, runs the
code that was deployed, whatever its own checkout holds, and a later push changes nothing until the next
`prefect deploy`. The commit is `AVATAR_CRM_GIT_COMMIT`, else the deployer's HEAD; a checkout with
uncommitted changes to tracked files is refused, as the workers would not get them.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from models import get_settings


def run_git(directory: Path, *args: str) -> str:
    """git's output, stripped; CalledProcessError when git fails, OSError when there is no git."""
    git = shutil.which("git") or "git"
    return subprocess.run(  # noqa: S603 (fixed git arguments)
        [git, *args], cwd=directory, check=True, capture_output=True, text=True
    ).stdout.strip()


def pinned_source(directory: str = ".") -> dict[str, str]:
    """`{"repository": …, "commit": …}` for the pull step's template (`{{ source.repository }}`)."""
    settings = get_settings()
    if not settings.avatar_crm_git_url:
        raise ValueError(
            "set AVATAR_CRM_GIT_URL to the git repository the workers clone "
            "(e.g. git@git.example:clinic/avatar-crm.git)"
        )
    checkout = Path(directory).resolve()
    commit = settings.avatar_crm_git_commit
    if not commit:
        if run_git(checkout, "status", "--porcelain", "--untracked-files=no"):
            raise ValueError(
                f"{checkout} has uncommitted changes the workers would not get: commit and push them, "
                "or name the commit to deploy in AVATAR_CRM_GIT_COMMIT"
            )
        commit = run_git(checkout, "rev-parse", "HEAD")
    else:  # a branch, tag or short sha the deployer has: its full sha (a fetch by sha needs all of it)
        # Not here: the workers' fetch says whether the repository has it.
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            commit = run_git(checkout, "rev-parse", "--verify", f"{commit}^{{commit}}")
    return {"repository": settings.avatar_crm_git_url, "commit": commit}
