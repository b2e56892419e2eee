"""Run under torchrun by test_distributed: train.run's options, then every rank stops at once
after epoch ``STOP_AFTER`` (as a killed job would, after its last.pt was saved)."""

from __future__ import annotations

import os
import sys

from train import distributed
from train.run import main

STOP_AFTER = int(os.environ["STOP_AFTER"])


def stop(epoch: int) -> None:
    if epoch == STOP_AFTER:
        distributed.barrier(distributed.current())
        os._exit(3)


if __name__ == "__main__":
    import train.trainer

    original = train.trainer.Trainer.__init__

    def with_stop(self, config, on_epoch_end=None):
        original(self, config, on_epoch_end=stop)

    train.trainer.Trainer.__init__ = with_stop
    main(sys.argv[1:])
