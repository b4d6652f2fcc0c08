"""Train the toy model in its own process (for the kill-and-resume test).

usage: python toy_train.py RUN_DIR [--resume] [--kill-after N]
With --kill-after N the process SIGKILLs itself right after its N-th checkpoint is written
(no cleanup runs, as with a real kill). Prints the best dev metrics and the final train
losses as JSON."""
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toydata import ToyText, toy_model

from attnkit.config import from_dict
from attnkit.evaluate import evaluate_model
from attnkit.train import TrainConfig, Trainer


def main(argv):
    run_dir = Path(argv[0])
    resume = "--resume" in argv
    kill_after = int(argv[argv.index("--kill-after") + 1]) if "--kill-after" in argv else 0
    cfg = from_dict(TrainConfig, {"epochs": 3, "batch_size": 16, "checkpoint_every": 5, "seed": 7,
                                  "optimizer": {"name": "adamw", "lr": 0.01},
                                  "schedule": {"name": "linear", "warmup": 0.1}}, "train")
    count = {"n": 0}

    def on_checkpoint():
        count["n"] += 1
        if kill_after and count["n"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(toy_model(), ToyText(200, seed=1), ToyText(60, seed=2), cfg, run_dir,
                      lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=False, on_checkpoint=on_checkpoint)
    best = trainer.fit(resume=resume)
    print(json.dumps({"best": best, "train_loss": [h["train"]["loss"] for h in trainer.state["history"]],
                      "step": trainer.state["step"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
