"""`EvaluateConfig`: everything an evaluation run needs, and the `ecglang evaluate` flags derived from it.

Each field's `metadata` says how it appears on the command line (flag, group, help, nargs, choices); the
parser is built from the fields (`add_arguments`) and read back through the strict `DictConfig.from_dict`
(`from_args`), so the CLI cannot drift from the config.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecglang.core.config import DictConfig
from ecglang.errors import ConfigError

# Split parts of the published label splits (`ecglang.data.builders.SPLIT_PARTS`) and "all" of them; kept
# here so that building the CLI parser does not import the data layer (pandas).
PARTS = ("train", "val", "test", "all")
PREPROCESS = ("default", "merl_compat")
# Argument groups of `ecglang evaluate --help`, in order.
GROUPS = ("data", "zero-shot", "statistics", "linear probe", "retrieval", "run")
# Far beyond what a 95 % CI needs (1000 is the convention); each resample keeps a score per label and source, so
# 10^9 resamples grew past 2 GB before anything was refused.
MAX_BOOTSTRAP = 100_000


def bootstrap_count(text: str) -> int:
    """argparse `type=` of `--n-boot`: 0 (points without CIs) to `MAX_BOOTSTRAP` resamples; a usage error (exit 2)
    otherwise, as other counts of the CLI are."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= n <= MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_BOOTSTRAP:,} resamples, got {n}")
    return n


def _cli(group: str | None, help: str | None = None, flag: str | None = None, **argparse_kwargs: Any) -> dict:
    """A field's command-line description (`group` None: the top level)."""
    return {"cli": {"group": group, "help": help, "flag": flag, **argparse_kwargs}}


@dataclass
class EvaluateConfig(DictConfig):
    """Everything `run_evaluation` needs (the `ecglang evaluate` flags)."""

    model: str | Path = field(
        metadata=_cli(None, "checkpoint folder or Hugging Face Hub id", required=True, metavar="DIR|HUB_ID")
    )
    label_sets: list[str] = field(default_factory=list, metadata=_cli(
        "data", "published label sets: ptbxl_super ptbxl_sub ptbxl_form ptbxl_rhythm cpsc2018 (alias icbeb) chapman "
        "cinc2021 (labels from the records' '# Dx:' headers; no split needed)",
        nargs="+", metavar="NAME"))  # fmt: skip
    split_root: str | Path | None = field(
        default=None, metadata=_cli("data", "the MERL data_split folder (label split CSVs)", metavar="DIR")
    )
    data_roots: list[str] = field(default_factory=list, metadata=_cli(
        "data", "record roots: one DIR for every dataset and/or ptbxl=DIR cpsc2018=DIR chapman=DIR",
        flag="--data-root", nargs="+", metavar="DIR|DATASET=DIR"))  # fmt: skip
    part: str = field(default="test", metadata=_cli("data", "split part to evaluate (default test)", choices=PARTS))
    labels_csv: str | Path | None = field(default=None, metadata=_cli(
        "data", "any labels CSV: a record-id column + 0/1 label columns", metavar="FILE"))  # fmt: skip
    records: str | Path | None = field(
        default=None, metadata=_cli("data", "folder of the records named in --labels-csv", metavar="DIR")
    )
    id_column: str | None = field(default=None, metadata=_cli(
        "data", "record-id column of --labels-csv (default: guessed)", metavar="COL"))  # fmt: skip
    prompt_set: str | None = field(default=None, metadata=_cli(
        "data", "prompt set for --labels-csv (default: column names)", metavar="NAME|FILE"))  # fmt: skip
    # PTB-XL strat_folds to keep (e.g. the pairs held out from pretraining)
    folds: list[int] | None = field(default=None, metadata=_cli(
        "data", "PTB-XL strat_folds to keep, e.g. 8 for the pairs held out from pretraining",
        nargs="+", type=int, metavar="FOLD"))  # fmt: skip
    limit: int | None = field(default=None, metadata=_cli(
        "data", "at most N records per label set (seeded sample)", type=int, metavar="N"))  # fmt: skip
    sources: list[str] = field(default_factory=lambda: ["names", "prompts", "knowledge"], metadata=_cli(
        "zero-shot", "prompt sources compared side by side: names prompts knowledge external:PATH (default: the "
        "first three)", nargs="+", metavar="SOURCE"))  # fmt: skip
    preprocess: str = field(default="default", metadata=_cli(
        "zero-shot", "the model's preprocessing, or MERL's (min-max, no filter; CPSC: 2500 samples)",
        choices=PREPROCESS))  # fmt: skip
    leads: str | None = field(default=None, metadata=_cli(
        "zero-shot", "evaluate as if only these leads were recorded, e.g. II or I,II,III,aVR,aVL,aVF (the others "
        "are masked; default: all)", metavar="LEADS"))  # fmt: skip
    knowledge: str = field(default="default", metadata=_cli(
        "zero-shot", "knowledge base for 'knowledge'", metavar="DIR|default"))  # fmt: skip
    # = ecglang.scores.labels.DEFAULT_KNOWLEDGE_K (not imported, as below)
    k: int = field(default=1, metadata=_cli("zero-shot", "snippets retrieved per label (default 1)", flag="-k",
                                            type=int))  # fmt: skip
    # = ecglang.scores.labels.DEFAULT_KNOWLEDGE_WEIGHT (not imported: `--help` must not wait for torch)
    knowledge_weight: float = field(
        default=0.75, metadata=_cli("zero-shot", "weight of knowledge prompts (default 0.75)", type=float)
    )
    drop_ambiguous_prompts: bool = field(default=False, metadata=_cli(
        "zero-shot", "leave out prompts nearer another label's name than their own (default: all kept)",
        action="store_true"))  # fmt: skip
    n_boot: int = field(default=1000, metadata=_cli(
        "statistics", "bootstrap resamples for the 95 %% CIs (default 1000)", type=bootstrap_count))  # fmt: skip
    seed: int = field(default=0, metadata=_cli(
        "statistics", "seed of the bootstrap, --limit samples and the probe", type=int))  # fmt: skip
    random_seed: int | None = field(default=None, metadata=_cli(
        "statistics", "seed of the random-encoder baseline (default --seed)", type=int))  # fmt: skip
    probe: bool = field(default=False, metadata=_cli(
        "linear probe", "also run the linear probe (1 %%, 10 %%, 100 %% labels)", action="store_true"))  # fmt: skip
    probe_train: str = field(default="train", metadata=_cli("linear probe", choices=PARTS))
    probe_test: str = field(default="val", metadata=_cli("linear probe", choices=PARTS))
    probe_train_folds: list[int] | None = field(default=None, metadata=_cli(
        "linear probe", "restrict the train part", nargs="+", type=int, metavar="FOLD"))  # fmt: skip
    probe_test_folds: list[int] | None = field(default=None, metadata=_cli(
        "linear probe", "restrict the test part", nargs="+", type=int, metavar="FOLD"))  # fmt: skip
    probe_fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0], metadata=_cli(
        "linear probe", nargs="+", type=float, metavar="F"))  # fmt: skip
    probe_epochs: int = field(default=300, metadata=_cli("linear probe", type=int))
    probe_limit: int | None = field(default=None, metadata=_cli(
        "linear probe", "records per probe part (default --limit)", type=int, metavar="N"))  # fmt: skip
    retrieval: bool = field(default=False, metadata=_cli(
        "retrieval", "also run ECG<->report retrieval on PTB-XL", action="store_true"))  # fmt: skip
    retrieval_folds: list[int] = field(default_factory=lambda: [10], metadata=_cli(
        "retrieval", "PTB-XL strat_folds held out from pretraining (default 10)", nargs="+", type=int,
        metavar="FOLD"))  # fmt: skip
    retrieval_limit: int | None = field(default=None, metadata=_cli(
        "retrieval", "at most N pairs (seeded sample)", type=int, metavar="N"))  # fmt: skip
    save_scores: bool = field(default=False, metadata=_cli(
        "run", "also write every record's scores and labels: scores_<label set>.csv", action="store_true"))  # fmt: skip
    batch_size: int = field(default=64, metadata=_cli("run", type=int))
    device: str | None = field(default=None, metadata=_cli(
        "run", "auto (cuda when available), cpu, cuda, cuda:1 ...", cli_default="auto"))  # fmt: skip
    progress: bool = field(default=True, metadata=_cli("run", "no progress bars", flag="--no-progress",
                                                       action="store_false"))  # fmt: skip

    def validate(self) -> None:
        """Raise `ConfigError` for inconsistent settings, before anything is loaded."""
        if not self.label_sets and self.labels_csv is None:
            raise ConfigError("nothing to evaluate: give --label-sets and/or --labels-csv FILE --records DIR")
        if (self.labels_csv is None) != (self.records is None):
            raise ConfigError("--labels-csv and --records go together")
        if self.labels_csv is not None and not self.label_sets and self.folds is not None:
            # it would be ignored: every row of the table is evaluated, whatever fold column it has
            raise ConfigError("--folds applies only to --label-sets (their PTB-XL strat_folds); a --labels-csv "
                              "table is evaluated whole: give only the rows to evaluate (its fold column splits "
                              "it for --probe-train-folds / --probe-test-folds)")  # fmt: skip
        # Header-labelled sets (cinc2021) need no split file.
        needs_split = [n for n in self.label_sets if n.strip().lower() not in ("cinc2021", "cinc", "physionet2021")]
        if needs_split and self.split_root is None:
            raise ConfigError("--label-sets needs --split-root (the MERL data_split folder)")
        if self.part not in PARTS:
            raise ConfigError(f"--part must be one of {list(PARTS)}, got {self.part!r}")
        if self.preprocess not in PREPROCESS:
            raise ConfigError(f"--preprocess must be 'default' or 'merl_compat', got {self.preprocess!r}")
        wants_knowledge = any(str(s).strip().lower() == "knowledge" for s in self.sources)
        if wants_knowledge and str(self.knowledge).lower() in ("off", "none", "false"):
            raise ConfigError(
                "the 'knowledge' source needs a knowledge base: drop it from --sources or set --knowledge"
            )
        if not 0 <= self.n_boot <= MAX_BOOTSTRAP:
            raise ConfigError(f"--n-boot must be 0 to {MAX_BOOTSTRAP:,}, got {self.n_boot}")
        if self.probe:
            for name in ("probe_train", "probe_test"):
                if getattr(self, name) not in PARTS:
                    raise ConfigError(f"--{name.replace('_', '-')} must be one of {list(PARTS)}")
            if not self.probe_fractions or any(not 0 < f <= 1 for f in self.probe_fractions):
                raise ConfigError(f"--probe-fractions must lie in (0, 1], got {self.probe_fractions}")


def add_arguments(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """Add one flag per `EvaluateConfig` field to `parser` (dest = the field name); returns the groups, so
    that a command can add its own flags (e.g. `--out`) to them."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in dataclasses.fields(EvaluateConfig):
        spec = dict(f.metadata["cli"])
        group, flag = spec.pop("group"), spec.pop("flag")
        target = parser if group is None else groups[group]
        kwargs = {k: v for k, v in spec.items() if v is not None}
        default = kwargs.pop("cli_default", None)
        if default is None and f.default is not dataclasses.MISSING:
            default = f.default
        elif default is None and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if not kwargs.get("required") and kwargs.get("action") is None:
            kwargs["default"] = default
        if "choices" in kwargs:
            kwargs["choices"] = list(kwargs["choices"])
        target.add_argument(flag or "--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return groups


def from_args(args: argparse.Namespace) -> EvaluateConfig:
    """The `EvaluateConfig` of parsed `ecglang evaluate` arguments (through the strict `from_dict`)."""
    return EvaluateConfig.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(EvaluateConfig)})
