"""`ecglang models`: the bundled trained checkpoints (what `--model` loads) and the model configs (untrained
architectures), or (`--pretrained`) the known published models."""

from __future__ import annotations

import argparse
import json

from ecglang.encoders.pretrained import list_pretrained, same_name_config

CHECKPOINTS_TITLE = "Trained checkpoints (zero-shot / evaluate --model NAME, ecglang.load_model(NAME)):"
CONFIGS_TITLE = (
    "Model configs, untrained (ecglang.create_model(NAME), pretraining, data build --model; not load_model):"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the bundled trained checkpoints (for --model) and the model configs, or the known published models",
    )
    p.add_argument(
        "--pretrained", action="store_true",
        help="list published models: architecture, weights, licence, whether ecglang converts them today",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        models = list_pretrained()
        if args.json:
            print(json.dumps([m.to_dict() for m in models], indent=2))
            return 0
        for m in models:
            print(f"{m.name}  [{'convert: ' + m.convert if m.convertible else 'not yet'}]")
            print(f"  architecture  {m.architecture}")
            print(f"  weights       {m.weights}")
            print(f"  license       {m.license}")
            print(f"  paper         {m.paper}")
            if m.note:
                print(f"  note          {m.note}")
            other = same_name_config(m.name)  # merl-resnet18 also names a config: a baseline, not this model
            if other:
                print(f"  same name     {other}")
        return 0
    # registry imports the config class (transformers, seconds): only when the models are listed.
    from ecglang.encoders.registry import describe_checkpoints, describe_models

    # Two groups: the configs alone looked like names --model takes, and the checkpoint it takes was missing.
    checkpoints, configs = describe_checkpoints(), describe_models()
    if args.json:
        print(json.dumps({"checkpoints": checkpoints, "configs": configs}, indent=2))
        return 0
    published = {m.name for m in list_pretrained()}
    # a config named like a published model (merl-resnet18) is not that model: said where it is listed
    shown = {n: f"{d} [not the published {n}: ecglang models --pretrained]" if n in published else d
             for n, d in configs.items()}  # fmt: skip
    width = max((len(n) for n in [*checkpoints, *configs]), default=0)
    for title, group in ((CHECKPOINTS_TITLE, checkpoints), (CONFIGS_TITLE, shown)):
        print(title)
        for name, description in group.items():
            print(f"  {name:<{width}}  {description}")
        if not group:
            print("  (none installed)")
    print("Published models that ecglang converts or not: ecglang models --pretrained")
    return 0
