"""Random public ids: ``org_…``, ``key_…``, ``whc_…``.

Twenty lowercase hex characters (80 random bits) after the prefix: short
enough for the 32-character id columns, long enough never to collide, and
without ``_`` so that an API key ``whk_<id part>_<secret>`` splits cleanly.
"""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
