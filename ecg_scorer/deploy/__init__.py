"""The model's way to AWS behind deploy_model.py: package, check, deploy, invoke, operate.

Modules, from the ground up: ``identity`` (what names a model), ``aws`` (session, clients,
image), ``archive`` (package and check; ``smoke`` is the check's prediction, run by path),
``preflight``, ``rollout`` (plan, apply, wait), ``invoke``, ``operate`` (status, logs,
delete), ``render`` (aligned rows, progress line), ``commands`` (what each command prints)
and ``cli`` (the flags). `ToolError` is the one error the commands raise for the user.
"""


class ToolError(Exception):
    """An error the user can act on; the CLI prints it and exits 1."""
