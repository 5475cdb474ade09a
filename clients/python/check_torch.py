"""PyTorch client: a DataLoader with two worker processes reads the npz
files of a zenithfs view (one file, one batch), each worker checks every
row against the source, and a tiny model trains for a few steps.

usage: check_torch.py VIEW_DIR EXPECTED_JSON"""

import json
import os
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from npz_rows import check_rows


class ViewFiles(Dataset):
    """Item k is file k of the view: its ids and a feature column."""

    def __init__(self, view, expected):
        self.files = expected["dirs"][view]
        self.rows = expected["rows"]
        names = sorted(os.listdir(view))
        assert names == [os.path.basename(f["path"]) for f in self.files], "listing differs"

    def __len__(self):
        return len(self.files)

    def __getitem__(self, k):
        f = self.files[k]
        with np.load(f["path"], allow_pickle=False) as z:
            check_rows(z, f["ids"], self.rows, f["path"])
            x = np.nan_to_num(z["f64"]).astype(np.float32)
            ids = z["id"]
        info = get_worker_info()
        return {"k": k, "id": torch.from_numpy(ids), "x": torch.from_numpy(x),
                "worker": -1 if info is None else info.id, "pid": os.getpid()}


def main():
    view, expected = sys.argv[1], sys.argv[2]
    with open(expected) as f:
        exp = json.load(f)
    data = ViewFiles(view, exp)
    # persistent workers: two processes for all epochs, forked before the
    # main process starts any compute threads
    loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=2, persistent_workers=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    losses, workers, pids, rows = [], set(), set(), 0
    for epoch in range(4):
        seen = []
        for item in loader:
            k = int(item["k"])
            seen.append(k)
            assert item["id"].tolist() == data.files[k]["ids"], f"file {k}: ids differ in the main process"
            workers.add(int(item["worker"]))
            pids.add(int(item["pid"]))
            x = item["x"].unsqueeze(1)
            y = 3 * x + 1  # a target the model can learn from the column
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            rows += len(item["id"])
        assert seen == list(range(len(data))), f"epoch {epoch}: files in order {seen}"
    assert workers == {0, 1}, f"items came from workers {workers}, want both"
    assert len(pids) == 2 and os.getpid() not in pids, f"worker pids {pids}"
    assert all(np.isfinite(losses)), f"losses {losses}"
    assert losses[-1] < losses[0] / 10, f"loss did not fall: {losses[0]} → {losses[-1]}"
    print(json.dumps({"ok": True, "steps": len(losses), "rows": rows, "first_loss": losses[0],
                      "last_loss": losses[-1], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
