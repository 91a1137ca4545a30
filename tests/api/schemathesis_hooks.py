"""Schemathesis hooks for test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import schemathesis


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but one the contract asks for.

    DELETE /data_prep/{id} cancels a job, and the job stays readable with state
    STOPPED (docs/api.md): a 200 for it after the DELETE is not a use after free.
    """
    if getattr(failure, "code", None) != "ST301":
        return True
    try:
        return response.json().get("state") != "STOPPED"
    except ValueError:
        return True
