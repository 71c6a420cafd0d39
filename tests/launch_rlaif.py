"""``python -m rlaif`` for ``accelerate launch`` in the tests, with two test-only switches.

``accelerate launch ... tests/launch_rlaif.py [--every-rank-writes] [--batch-log DIR] ARGS``
runs ``rlaif ARGS`` in each process. ``--every-rank-writes`` makes every process believe it is
the main one (the bug the distributed tests must catch); ``--batch-log DIR`` has each process
append, per DPO training batch, the targets of the pairs it trained on to ``DIR/rank-N.jsonl``
(each test pair has its own p_chosen, so the targets name the pairs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _log_batches(log_dir: Path) -> None:
    """Record each training batch's targets, per process, from the DPO collator."""
    from rlaif.train import dpo

    make = dpo._trainer_classes

    def logged_classes():
        trainer_class, collator_class = make()

        class LoggingTrainer(trainer_class):
            def training_step(self, model, inputs, *args, **kwargs):
                rank = os.environ.get("RANK", "0")
                with (log_dir / f"rank-{rank}.jsonl").open("a") as f:
                    f.write(json.dumps(inputs[dpo.TARGET].tolist()) + "\n")
                return super().training_step(model, inputs, *args, **kwargs)

        return LoggingTrainer, collator_class

    dpo._trainer_classes = logged_classes


def main(argv: list[str]) -> None:
    """Apply the switches at the front of ``argv``, then run the rlaif command line."""
    while argv and argv[0] in ("--every-rank-writes", "--batch-log"):
        flag = argv.pop(0)
        if flag == "--every-rank-writes":
            from rlaif.train import distributed

            distributed.is_main_process = lambda: True
        else:
            _log_batches(Path(argv.pop(0)))
    from rlaif.cli.app import main as rlaif_main

    rlaif_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
