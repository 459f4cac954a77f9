"""RMU, Representation Misdirection for Unlearning (Li et al. 2024, the WMDP paper): push one decoder
layer's output on the labelled forget tokens towards a fixed random direction, keep it equal to the
reference model's on the labelled retain tokens.

The layer's output is read by a forward hook on that decoder layer (``hidden_states[layer + 1]``
would be the state after the final norm for the last layer), only labelled positions count (so
``unlearn.forget_scope`` holds), and the direction derives from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlu_dist.unlearn.methods import METHODS, Method, _forward


@dataclass
class RMUSettings:
    layer: int = -1
    """The decoder layer whose output is steered (0 .. num_layers-1; -1 = the middle layer)."""
    steering: float = 50.0
    """Length of the random target direction on forget data."""
    alpha: float = 10.0
    """Weight of keeping retain activations equal to the reference model's."""

    def check(self) -> list[str]:
        out = [] if self.layer >= -1 else [f"layer: must be >= -1 (-1 = the middle layer), got {self.layer}"]
        return out + ([] if self.steering > 0 else [f"steering: must be > 0, got {self.steering}"])


def decoder_layers(model):
    """The model's list of decoder layers (``model.layers`` of a Llama, also under LoRA)."""
    import torch

    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name.rsplit(".", 1)[-1] in ("layers", "h"):
            return module
    raise ValueError(f"no list of {n} decoder layers found in {type(model).__name__}")


def layer_output(engine, b, layer: int):
    """The output of decoder layer ``layer`` (a forward hook: for the last layer this is the state
    before the final norm, which ``hidden_states[-1]`` is not)."""
    seen = []
    hook = decoder_layers(engine.module)[layer].register_forward_hook(
        lambda module, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        _forward(engine, b)
    finally:
        hook.remove()
    return seen[0].float()


def rmu_direction(dim: int, steering: float, seed: int):
    """RMU's fixed random target: uniform in [0, 1)^dim, scaled to length ``steering``, drawn from a
    generator seeded by the run's seed (the same direction on every rank and on resume)."""
    import hashlib

    import torch

    derived = int.from_bytes(hashlib.sha256(f"rmu-direction:{seed}".encode()).digest()[:8], "little")
    u = torch.rand(dim, generator=torch.Generator().manual_seed(derived))
    return steering * u / u.norm()


def _labelled(b):
    """The positions whose tokens carry a label (what ``forget_scope`` selects)."""
    from mlu_dist.tokens import IGNORE

    return b["labels"] != IGNORE


@METHODS.register("rmu")
class RMU(Method):
    """Representation Misdirection: push a layer's activations on the labelled forget tokens towards a
    fixed random direction; keep them equal to the reference model's on the labelled retain tokens."""

    Settings = RMUSettings
    pools = ("forget", "retain")
    needs_reference = True
    needs_retain = True

    def check_model(self, model_config: dict) -> list[str]:
        n, layer = int(model_config["num_hidden_layers"]), self.settings.layer
        if layer >= n:
            return [f"method_args.layer: {layer} is out of range; the model has {n} layers: use 0..{n - 1} "
                    f"(the output of that decoder layer) or -1 (the middle layer, {n // 2})"]
        return []

    def _layer(self, engine) -> int:
        n = engine.module.config.num_hidden_layers
        problems = self.check_model({"num_hidden_layers": n})
        if problems:
            raise ValueError(problems[0])
        return self.settings.layer if self.settings.layer >= 0 else n // 2

    def forget(self, engine, micro, ctx):
        from mlu_dist.losses import masked_mse

        b = micro["forget"]
        h = layer_output(engine, b, self._layer(engine))
        if "rmu_direction" not in ctx.cache:
            ctx.cache["rmu_direction"] = rmu_direction(h.shape[-1], self.settings.steering, ctx.seed)
        term = masked_mse(h, ctx.cache["rmu_direction"].to(h.device), _labelled(b)).sum() / b["n_examples"]
        return term, {"train/rmu_forget_mse": term.item()}

    def retain(self, engine, b, ctx):
        import torch

        from mlu_dist.losses import masked_mse

        layer = self._layer(engine)
        h = layer_output(engine, b, layer)
        with torch.no_grad():
            ref = layer_output(ctx.ref, b, layer).to(h.device)
        term = self.settings.alpha * (masked_mse(h, ref, _labelled(b)).sum() / b["n_examples"])
        return term, {"train/rmu_retain_mse": term.item()}
