"""Test errors of the refined dimer network by origin of the frames, beside the first network's.

Groups the test frames of model/split.json into the original data, the MD frames at 500-700 K and the
frames before the first network's blow-ups (DATASET.md); writes model/test_groups.json.

    .venv/bin/python systems/formic-acid-dimer/rates/evaluate.py
"""

import json
from pathlib import Path

from mlmm.data.dataset import concatenate, load_dataset
from mlmm.training.metrics import errors
from mlmm.training.models import rebuild

HERE = Path(__file__).resolve().parent
GROUPS = {"original data": lambda source: "hot-md" not in source and "blow-up" not in source,
          "hot MD 500-700 K": lambda source: "hot-md" in source,
          "before blow-ups": lambda source: "blow-up" in source}


def main() -> None:
    data = concatenate([load_dataset(HERE.parent / "data" / "dimer-gfn2.h5").labelled(),
                        load_dataset(HERE / "data" / "dimer-gfn2-hot.h5").labelled()])
    test = data.subset(json.loads((HERE / "model" / "split.json").read_text())["test"])
    refined, first = rebuild(HERE / "model" / "model.pt").double(), rebuild(HERE.parent / "model" / "model.pt").double()
    result = {}
    for name, belongs in GROUPS.items():
        frames = test.subset([i for i, source in enumerate(test.frame_source) if belongs(source)])
        result[name] = {"n": len(frames), "refined": errors(refined, frames), "original": errors(first, frames)}
        print(name, len(frames), {k: round(v, 3) for k, v in result[name]["refined"].items()})
    (HERE / "model" / "test_groups.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
