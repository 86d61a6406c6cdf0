"""Run the published zero-shot evaluation protocol: a thin wrapper around `ecglang evaluate`.

Example (the development sample; see docs/EVALUATION.md for the full-dataset commands)::

    python scripts/evaluate_zeroshot.py --model checkpoints/ecglang-mini \
        --label-sets ptbxl_super ptbxl_sub ptbxl_form ptbxl_rhythm --part train --limit 200 \
        --split-root ../shared/data/merl/data_split --data-root ../shared/data/ptbxl-sample \
        --sources names prompts knowledge external:../shared/data/merl/CKEPE_prompt.json --out eval_results
"""

from __future__ import annotations

import sys

from ecglang.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
