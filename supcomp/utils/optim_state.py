"""An optimizer's state as named tensors, for checkpoints a run can resume from.

The form is independent of the optimizer object (``PREFIX`` = ``"optim."``): ``{"optim.<key>.<param name>": tensor}`` (e.g.
``optim.exp_avg.W``, ``optim.exp_avg_sq.b``) plus the number of steps taken, so a checkpoint written by
one trainer (torch's AdamW, or a fused step that keeps the same moments itself) resumes in another.
"""

from __future__ import annotations

import torch

__all__ = ["PREFIX", "torch_optimizer_tensors", "restore_torch_optimizer", "split_optimizer_tensors"]

PREFIX = "optim."


def torch_optimizer_tensors(opt: torch.optim.Optimizer, named_params: dict) -> tuple[dict, int]:
    """``(tensors, steps)`` of a torch optimizer: every per-parameter state tensor except ``step``, keyed
    ``optim.<key>.<name>`` (``named_params``: name -> parameter, the parameters ``opt`` steps), and the step
    count (0 before the first step). The tensors are the optimizer's own (not copies)."""
    out, steps = {}, 0
    for name, p in named_params.items():
        state = opt.state.get(p, {})
        for key, v in state.items():
            if key == "step":
                steps = int(float(v))
            elif isinstance(v, torch.Tensor):
                out[f"{PREFIX}{key}.{name}"] = v.detach()
    return out, steps


def split_optimizer_tensors(tensors: dict) -> dict:
    """Remove the ``optim.*`` entries from ``tensors`` and return them (name -> tensor)."""
    names = [k for k in tensors if k.startswith(PREFIX)]
    return {k: tensors.pop(k) for k in names}


def restore_torch_optimizer(opt: torch.optim.Optimizer, named_params: dict, tensors: dict, steps: int):
    """Give ``opt`` (freshly made over ``named_params``) the state in ``tensors`` (as written by
    :func:`torch_optimizer_tensors`) after ``steps`` steps; its next step is then the one the saved run
    would have taken, bit for bit.

    Raises:
        ValueError: a tensor names an unknown parameter, or its shape differs from the parameter's.
    """
    per_param: dict = {name: {} for name in named_params}
    for full, t in tensors.items():
        key_name = full[len(PREFIX) :]
        key, _, name = key_name.partition(".")
        if name not in named_params:
            raise ValueError(f"optimizer state: {full!r} names no parameter of the model ({', '.join(named_params)})")
        p = named_params[name]
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"optimizer state: {full!r} has shape {list(t.shape)}, the parameter {list(p.shape)}")
        per_param[name][key] = t
    if steps <= 0:
        return
    for name, p in named_params.items():
        if not per_param[name]:
            continue
        state = {k: t.to(device=p.device, dtype=p.dtype).clone() for k, t in per_param[name].items()}
        # torch's own choice of the step counter's dtype (torch.optim.optimizer._get_scalar_dtype)
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        state["step"] = torch.tensor(float(steps), dtype=step_dtype)
        opt.state[p] = state
