"""An optimizer's state_dict as a checkpoint holds it: its tensors under flat names, the rest as JSON.

torch.optim state_dicts mix tensors with numbers and tuples; safetensors stores only tensors, and the
rest must be plain JSON, so reading a checkpoint never needs pickle. Reading it back checks that the
tensors and the layout fit each other; a hostile layout ends in a CheckpointError, never a KeyError.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .errors import CheckpointError

OPTIMIZER_TENSOR_PREFIX = "optim.state."


class _Inconsistent(Exception):
    """Internal: what is wrong with a layout, before the common message is put in front of it."""


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch.optim state_dict into tensors "optim.state.<param_idx>.<key>" and a JSON-able layout.

    The tensors are copies on the CPU, so the live optimizer and a restored one never share memory.
    Layout: {"param_groups": [group with tuples as lists, ...], "tuple_keys": [[keys that were
    tuples], ...], "state": {"<param_idx>": {"tensors": [key, ...], "values": {key: non-tensor}}}}.
    Raises TypeError if the state holds something JSON cannot store (a caller's bug).
    """
    tensors: dict[str, torch.Tensor] = {}
    state_layout: dict[str, Any] = {}
    for param_index, param_state in state_dict["state"].items():
        tensor_keys = [key for key, value in param_state.items() if isinstance(value, torch.Tensor)]
        for key in tensor_keys:
            tensors[_optimizer_tensor_name(param_index, key)] = param_state[key].detach().to("cpu", copy=True)
        values = {key: value for key, value in param_state.items() if key not in tensor_keys}
        state_layout[str(param_index)] = {"tensors": tensor_keys, "values": values}
    layout = {
        "param_groups": [_json_shaped(group) for group in state_dict["param_groups"]],
        # torch keeps e.g. betas as a tuple; JSON only has lists, so remember which were tuples
        "tuple_keys": [
            sorted(key for key, value in group.items() if isinstance(value, tuple))
            for group in state_dict["param_groups"]
        ],
        "state": state_layout,
    }
    try:
        json.dumps(layout, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"optimizer state holds a value a checkpoint cannot store: {error}") from None
    return tensors, layout


def _json_shaped(group: dict[str, Any]) -> dict[str, Any]:
    """The layout is exactly what JSON gives back, so unflatten works with or without a file between."""
    return {key: list(value) if isinstance(value, (tuple, list)) else value for key, value in group.items()}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict:
    """The torch.optim state_dict that flatten_optimizer_state split up.

    `tensors` may hold other tensors too (the model's); only "optim.state." ones are used, and
    each must be listed by the layout. Raises CheckpointError if tensors and layout do not fit.
    """
    try:
        return _rebuild_optimizer_state(tensors, layout)
    except _Inconsistent as problem:
        raise CheckpointError(f"the optimizer state in the checkpoint is invalid: {problem}") from None


def _optimizer_tensor_name(param_index: int | str, key: str) -> str:
    return f"{OPTIMIZER_TENSOR_PREFIX}{param_index}.{key}"


def _rebuild_optimizer_state(tensors: dict[str, torch.Tensor], layout: Any) -> dict:
    _require(
        isinstance(layout, dict) and {"param_groups", "tuple_keys", "state"} <= set(layout),
        "the layout needs param_groups, tuple_keys and state",
    )
    param_groups = _rebuild_param_groups(layout["param_groups"], layout["tuple_keys"])
    known_params = {index for group in param_groups for index in group["params"]}
    state, used_names = _rebuild_param_states(tensors, layout["state"], known_params)
    unexpected = sorted(name for name in tensors if name.startswith(OPTIMIZER_TENSOR_PREFIX) and name not in used_names)
    if unexpected:
        raise _Inconsistent(f"tensor {_quote(unexpected[0])} is not in the layout")
    return {"state": state, "param_groups": param_groups}


def _rebuild_param_groups(groups: Any, tuple_keys: Any) -> list[dict[str, Any]]:
    _require(
        isinstance(groups, list) and all(isinstance(group, dict) for group in groups),
        "param_groups must be a list of objects",
    )
    _require(
        isinstance(tuple_keys, list)
        and len(tuple_keys) == len(groups)
        and all(isinstance(keys, list) for keys in tuple_keys),
        "tuple_keys must list keys for each parameter group",
    )
    rebuilt = []
    for group, keys in zip(groups, tuple_keys):
        _require(_is_list_of_counts(group.get("params")), "every parameter group needs params, a list of indices")
        _require(
            all(key in group and isinstance(group[key], list) for key in keys),
            "tuple_keys names a value that is not a list in its parameter group",
        )
        rebuilt.append({key: tuple(value) if key in keys else value for key, value in group.items()})
    return rebuilt


def _rebuild_param_states(
    tensors: dict[str, torch.Tensor], state_layout: Any, known_params: set[int]
) -> tuple[dict[int, dict[str, Any]], set[str]]:
    _require(isinstance(state_layout, dict), "state must be an object")
    state: dict[int, dict[str, Any]] = {}
    used_names: set[str] = set()
    for index_text, entry in state_layout.items():
        _require(
            _is_whole_number_text(index_text) and int(index_text) in known_params,
            f"state names {_quote(index_text)}, which is no parameter of any group",
        )
        _require(
            isinstance(entry, dict)
            and isinstance(entry.get("tensors"), list)
            and isinstance(entry.get("values"), dict),
            f"the state of parameter {index_text} needs a tensors list and a values object",
        )
        param_state = dict(entry["values"])
        for key in entry["tensors"]:
            _require(
                isinstance(key, str) and key not in param_state,
                f"the state of parameter {index_text} lists {_quote(key)} twice or not as text",
            )
            name = _optimizer_tensor_name(index_text, key)
            _require(name in tensors, f"tensor {_quote(name)} is missing")
            _require(isinstance(tensors[name], torch.Tensor), f"{_quote(name)} is not a tensor")
            param_state[key] = tensors[name]
            used_names.add(name)
        state[int(index_text)] = param_state
    return state, used_names


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _Inconsistent(problem)


def _is_whole_number_text(value: Any) -> bool:
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _is_list_of_counts(value: Any) -> bool:
    # bool is an int in Python, but `true` is no index in JSON
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
