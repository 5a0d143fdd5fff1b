"""``--executor local|ray`` and ``--address``: where a per-case command runs its cases.

Shared by ``data check``, ``data fingerprint``, ``preprocess``, ``predict``, ``evaluate`` and
``measure`` (``medseg.data.executor``; docs/scale.md). Both are checked at parse time: the
executor is a ``Literal``, the address goes through :func:`ray_address`.
"""

from __future__ import annotations

from typing import Literal

import typer

#: Where the cases run: ``local`` processes (default) or Ray tasks/actors.
Executor = Literal["local", "ray"]


def ray_address(value: str | None) -> str | None:
    """``callback=`` for ``--address``: ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``."""
    if value is None:
        return None
    from medseg.data.executor import check_executor
    from medseg.errors import ConfigError

    try:
        check_executor("ray", value.strip())
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None
    return value.strip()


EXECUTOR_OPTION = typer.Option(
    "local",
    "--executor",
    help="local (processes on this machine) or ray (Ray tasks; pip install 'medseg[cluster]').",
)
ADDRESS_OPTION = typer.Option(
    None,
    "--address",
    callback=ray_address,
    help="Ray cluster: auto (the one started with 'ray start') or ray://HOST:PORT. "
    "Default: start Ray on this machine. Needs --executor ray.",
)


def where(executor: str, address: str | None) -> dict[str, str | None]:
    """The ``executor``/``address`` keywords of the library calls; ``--address`` without
    ``--executor ray`` is a usage error."""
    if address is not None and executor != "ray":
        raise typer.BadParameter("--address needs --executor ray", param_hint="'--address'")
    return {"executor": executor, "address": address}
