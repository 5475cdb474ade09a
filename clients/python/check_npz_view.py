"""numpy client: reads every npz file of a zenithfs view with numpy.load
(no pickles) and checks every column of every row against the source.

usage: check_npz_view.py VIEW_DIR EXPECTED_JSON"""

import json
import os
import sys

import numpy as np

from npz_rows import check_rows


def main():
    view, expected = sys.argv[1], sys.argv[2]
    with open(expected) as f:
        exp = json.load(f)
    files = exp["dirs"][view]
    names = sorted(os.listdir(view))
    assert names == [os.path.basename(f["path"]) for f in files], f"listing {names[:3]}…"
    rows = 0
    for f in files:
        with np.load(f["path"], allow_pickle=False) as z:
            check_rows(z, f["ids"], exp["rows"], f["path"])
            rows += len(f["ids"])
    print(json.dumps({"ok": True, "files": len(files), "rows": rows}))


if __name__ == "__main__":
    main()
