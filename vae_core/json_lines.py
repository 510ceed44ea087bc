"""Results as one line of strict JSON, as the CLI prints them: NaN and infinity (a diverged loss) become null."""

from __future__ import annotations

import json
import math


def json_line(result) -> str:
    """`result` as one line of strict JSON. The walk that replaces NaN and infinity runs only when
    there is one (it costs a fifth of listing 5,000 runs)."""
    try:
        return json.dumps(result, allow_nan=False)
    except ValueError:
        return json.dumps(json_safe(result))


def json_safe(value):
    """`value` with every non-finite float, at any depth of dicts, lists and tuples, as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
