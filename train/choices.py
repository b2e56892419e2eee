"""The names the command line offers (tasks, distillation modes, ...), without torch."""

DEFAULT_TASK = {"vcr": "vcr-qar", "snli_ve": "snli_ve", "vqa": "vqa"}
TASKS = ("vcr-qa", "vcr-qar", "snli_ve", "vqa")
MODES = ("none", "naive", "mad")
SELECTIONS = ("cls-attn", "similarity")
DISTANCES = ("cosine", "l1", "mse")
TARGETS = ("tokens", "global")
BRANCHES = ("vis", "txt")
