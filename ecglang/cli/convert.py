"""`ecglang convert merl CKPT.pth --text-model HUB_ID_OR_DIR --out DIR`: published weights -> ecglang checkpoint."""

from __future__ import annotations

import argparse

from ecglang.core.outputs import output_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert published weights (MERL .pth) into an ecglang checkpoint")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    merl = kinds.add_parser("merl", help="a MERL (ICML 2024) checkpoint: full, ViT, or ECG-encoder-only .pth")
    merl.add_argument("checkpoint", metavar="CKPT.pth", help="MERL state dict (read with weights_only=True)")
    merl.add_argument("--text-model", required=True, metavar="HUB_ID|DIR",
                      help="MERL's text model (ncbi/MedCPT-Query-Encoder or a folder): tokenizer, config, and its "
                           "weights when no MERL file holds lm_model.*")  # fmt: skip
    merl.add_argument("--out", required=True, metavar="DIR", type=output_folder, help="checkpoint folder to write")
    merl.add_argument("--fill-from", metavar="CKPT.pth",
                      help="another MERL checkpoint supplying what CKPT.pth lacks (heads and proj_t of an "
                           "encoder-only file, lm_model.* of a file saved without them)")  # fmt: skip
    merl.add_argument("--architecture", choices=["merl_resnet18", "merl_vit_tiny"], help="default: from the keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch + transformers load only when a conversion runs, not for `ecglang --help`.
    from ecglang.encoders.convert_merl import convert_merl

    out = convert_merl(args.checkpoint, args.text_model, args.out, fill_from=args.fill_from,
                       architecture=args.architecture)  # fmt: skip
    print(f"wrote {out} (load it with EcgLangModel.from_pretrained({str(out)!r}) or `--model {out}`)")
    return 0
