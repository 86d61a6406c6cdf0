"""`ecglang models`: the bundled model configs, or (`--pretrained`) the known published models."""

from __future__ import annotations

import argparse
import json

from ecglang.encoders.pretrained import list_pretrained


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model configs (configs/model), or the known published models")
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
        return 0
    # registry imports the config class (transformers, seconds): only when the configs are listed.
    from ecglang.encoders.registry import describe_models

    configs = describe_models()
    if args.json:
        print(json.dumps(configs, indent=2))
        return 0
    width = max((len(n) for n in configs), default=0)
    for name, description in configs.items():
        print(f"{name:<{width}}  {description}")
    return 0
