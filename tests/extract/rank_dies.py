"""Run under torchrun by test_ranks: ``extract.run`` whose rank ``DIE_RANK`` dies (as a killed
process would) right after finishing its first shard; torchrun then stops the whole job."""

from __future__ import annotations

import os
import sys

from extract.run import main
from extract.store import SplitWriter

DIE_RANK = int(os.environ["DIE_RANK"])


if __name__ == "__main__":
    end = SplitWriter.end

    def end_then_die(self, before_index=None):
        record = end(self, before_index)
        if int(os.environ["RANK"]) == DIE_RANK:
            os._exit(9)
        return record

    SplitWriter.end = end_then_die
    main(sys.argv[1:])
