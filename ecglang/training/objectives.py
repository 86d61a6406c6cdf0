"""The loss of a pretraining run that uses ECG-only objectives: `PretrainObjectives` wraps the model and the
objective modules of `ecglang.encoders.objectives` in one module, so that accelerate (DDP, mixed precision,
the optimizer, `save_state`) sees a single model whose forward returns the total loss and each term.

- the contrastive losses (token/beat/rhythm, the model config's weights) on the items that have a report
  (`has_report`); with `objectives.contrastive=false` the text tower is never run;
- each ECG-only objective switched on in `objectives` (weight > 0) on every item, through the model's ECG tower.

`OBJECTIVES` is the one registry from a config section name to the module it builds. A run without ECG-only
objectives does not use this wrapper at all: its model, checkpoints and numbers are those of before.

The EMA target tower of `latent_beats` is updated after each optimizer step (`update_targets`). Its weights are
no parameters (they are frozen), so `drop_frozen_weights` leaves them out of a checkpoint's model.safetensors;
`EmaTargets` is registered with `accelerator.register_for_checkpointing`, so checkpoints save it beside the
model and `--resume` restores it. The released model folders (`best/`, `final/`) hold the EcgLangModel only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ecglang.encoders.objectives import TOWER_KEYS, LatentBeatPrediction, MaskedBeatReconstruction
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.training.config import LatentBeatsSection, MaskedBeatsSection, ObjectivesSection
from ecglang.training.pairs import PretrainCollator, PretrainPairs


def window_offsets(model: Any) -> Tensor:
    """Each beat-window sample's time from its R peak (the model's processor): a blanked beat is hidden in the
    windows of its neighbours that overlap it too (`blank_beats`)."""
    return torch.as_tensor(model.get_processor().beat_config.offsets_s(), dtype=torch.float32)


def build_masked_beats(model: Any, section: MaskedBeatsSection) -> nn.Module:
    tower = model.ecg_tower
    return MaskedBeatReconstruction(
        int(tower.d_model), int(tower.beat_len), float(section.mask_ratio), window_offsets(model)
    )


def build_latent_beats(model: Any, section: LatentBeatsSection) -> nn.Module:
    tower = model.ecg_tower
    return LatentBeatPrediction(
        tower, int(tower.d_model), float(section.mask_ratio), float(section.ema), window_offsets(model)
    )


# Config section of `objectives` → builder of its module (from the model and the section).
OBJECTIVES: dict[str, Callable[[Any, Any], nn.Module]] = {
    "masked_beats": build_masked_beats,
    "latent_beats": build_latent_beats,
}

# Batch keys that are not model inputs.
NOT_MODEL_INPUTS = ("index", "has_report")


@dataclass
class ObjectivesOutput:
    """What `PretrainObjectives.forward` returns (the fields the step loop reads from a model output).

    `loss` is the whole weighted loss, `contrastive_loss + objective_loss` (a part that is off or had no item is
    None). The two parts scale differently under several processes: with the gathered contrastive loss
    (`local_loss=False`) every process computes the global batch's contrastive loss, while the ECG-only
    objectives are means over this process's items only; `ddp_loss` is what to backpropagate then."""

    loss: Tensor
    losses: dict[str, Tensor]
    n_pairs: int  # items of this batch the contrastive losses saw
    contrastive_loss: Tensor | None = None  # weighted contrastive terms (gathered over processes unless local_loss)
    objective_loss: Tensor | None = None  # weighted ECG-only objectives (this process's items)

    def ddp_loss(self, world: int) -> Tensor:
        """The loss to backpropagate under `world` DDP processes with the gathered contrastive loss:
        `world × contrastive_loss + objective_loss`. DDP averages gradients over processes; each process's
        contrastive gradient reaches only its own shard of the gathered batch, so it is scaled by `world`, while
        the objectives' per-process means already average to the global batch's mean (exactly so when every
        process blanks as many beats and leads), so they are not. (`loss`, the logged value, is never scaled.)"""
        if self.contrastive_loss is None:  # the objectives alone (an ECG-only run)
            return self.loss
        if self.objective_loss is None:
            return self.loss * world
        return self.contrastive_loss * world + self.objective_loss


class PretrainObjectives(nn.Module):
    """The model plus its ECG-only objectives: `forward(**batch)` → `ObjectivesOutput`."""

    def __init__(self, model: Any, section: ObjectivesSection) -> None:
        super().__init__()
        if not model.config.is_beat_model:
            raise ConfigError(
                f"objectives {sorted(section.active())} need a beat tower (tokens and beats); the "
                f"{model.config.ecg_tower['type']} tower has none"
            )
        self.model = model
        self.contrastive = bool(section.contrastive)
        active = section.active()
        self.weights = {name: float(s.weight) for name, s in active.items()}
        self.objectives = nn.ModuleDict({name: OBJECTIVES[name](model, s) for name, s in active.items()})

    @property
    def loss_names(self) -> list[str]:
        """The logged loss terms: the contrastive ones (when on), then the ECG-only objectives."""
        contrastive = list(self.model.loss_fn.weights) if self.contrastive else []
        return [*contrastive, *self.objectives]

    def forward(self, has_report: Tensor | None = None, **batch: Any) -> ObjectivesOutput:
        inputs = {k: v for k, v in batch.items() if isinstance(v, Tensor) and k not in NOT_MODEL_INPUTS}
        losses: dict[str, Tensor] = {}
        contrastive: Tensor | None = None
        n_pairs = 0
        if self.contrastive:
            paired = torch.ones(len(inputs["lead_mask"]), dtype=torch.bool) if has_report is None else has_report
            paired = paired.bool().cpu()
            n_pairs = int(paired.sum())
            if n_pairs:
                sub = {k: v[paired.to(v.device)] for k, v in inputs.items()}
                out = self.model(**sub)
                losses.update(out.losses)
                contrastive = out.loss
        device = self.model.device
        tower_inputs = {k: inputs[k].to(device) for k in TOWER_KEYS}
        total = contrastive
        objective: Tensor | None = None  # the ECG-only part of total
        for name, module in self.objectives.items():
            losses[name] = module(self.model.ecg_tower, tower_inputs)
            term = self.weights[name] * losses[name]
            total = term if total is None else total + term
            objective = term if objective is None else objective + term
        if total is None:  # config validation keeps a run from having nothing to train
            raise ConfigError("no loss: neither a contrastive loss nor an ECG-only objective is on")
        return ObjectivesOutput(
            loss=total, losses=losses, n_pairs=n_pairs, contrastive_loss=contrastive, objective_loss=objective
        )

    @torch.no_grad()
    def update_targets(self) -> None:
        """After an optimizer step: move every EMA target towards the online ECG tower."""
        for objective in self.objectives.values():
            if isinstance(objective, LatentBeatPrediction):
                objective.update_target(self.model.ecg_tower)

    @torch.no_grad()
    def objective_loss(self, batch: Mapping[str, Any], seed: int) -> float:
        """The weighted ECG-only loss of a batch with masks drawn from `seed` (held-out validation: the same
        beats are blanked at every validation, so the numbers of two steps compare)."""
        device = self.model.device
        tower_inputs = {k: batch[k].to(device) for k in TOWER_KEYS}
        generator = torch.Generator(device=device).manual_seed(int(seed))
        total = 0.0
        for name, objective in self.objectives.items():
            total += self.weights[name] * float(objective(self.model.ecg_tower, tower_inputs, generator))
        return total


@torch.no_grad()
def heldout_objective_loss(
    objectives: PretrainObjectives, dataset: PretrainPairs, batch_size: int, seed: int
) -> tuple[float, int]:
    """`(weighted ECG-only loss, items)` of the held-out ECGs, in eval mode, with masks seeded per batch from
    `seed`: what an ECG-only run selects its checkpoint on (lower is better; no labels, no reports)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         collate_fn=PretrainCollator(None))  # fmt: skip
    was_training = objectives.training
    objectives.eval()
    total, n = 0.0, 0
    try:
        for k, batch in enumerate(loader):
            b = len(batch["ids"])
            if b:
                total += objectives.objective_loss(batch, seed + k) * b
                n += b
    finally:
        objectives.train(was_training)
    return (total / n if n else float("nan")), n


EMA_TARGETS_FILE = "ema_targets.safetensors"


class EmaTargets:
    """The EMA target towers of a `PretrainObjectives`. They are frozen, so `model.safetensors` leaves them
    out; `save`/`load` keep them beside it in `ema_targets.safetensors` (accelerate's
    `register_for_checkpointing` would pickle them and unpickle with `weights_only=False` on resume, which
    runs whatever a checkpoint folder holds)."""

    def __init__(self, module: PretrainObjectives) -> None:
        self.targets = {
            name: obj.target for name, obj in module.objectives.items() if isinstance(obj, LatentBeatPrediction)
        }

    def __bool__(self) -> bool:
        return bool(self.targets)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v.detach().cpu() for k, v in t.state_dict().items()} for name, t in self.targets.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Tensor]]) -> None:
        for name, target in self.targets.items():
            target.load_state_dict(state[name])

    def save(self, folder: str | Path) -> None:
        """Write every target tensor to `folder/ema_targets.safetensors` (keys `<objective>/<parameter>`)."""
        flat = {f"{name}/{k}": v.contiguous() for name, sd in self.state_dict().items() for k, v in sd.items()}
        save_file(flat, str(Path(folder) / EMA_TARGETS_FILE))

    def load(self, folder: str | Path) -> None:
        """Restore the targets from `folder/ema_targets.safetensors`; a missing or partial file is an error."""
        path = Path(folder) / EMA_TARGETS_FILE
        if not path.is_file():
            raise ModelLoadError(path, "the checkpoint has no EMA target weights (latent_beats is on)")
        flat = load_file(str(path))
        state: dict[str, dict[str, Tensor]] = {name: {} for name in self.targets}
        for key, value in flat.items():
            name, _, param = key.partition("/")
            if name in state:
                state[name][param] = value
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:  # torch's missing/unexpected-keys report
            raise ModelLoadError(path, f"EMA targets do not match the model: {exc}") from exc


__all__ = [
    "EMA_TARGETS_FILE",
    "NOT_MODEL_INPUTS",
    "OBJECTIVES",
    "EmaTargets",
    "ObjectivesOutput",
    "PretrainObjectives",
    "build_latent_beats",
    "build_masked_beats",
    "heldout_objective_loss",
]
