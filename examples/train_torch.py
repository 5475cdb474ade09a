"""Train a PyTorch model over a zenithfs training view.

Each epoch reads MOUNT/<dataset>/views/seed=S,epoch=E,rank=R,world=W,format=npz/:
this rank's share of a deterministically shuffled epoch, one batch per
.npz file. The filesystem does the shuffling and the sharding, and its
prefetcher reads ahead in exactly this order, so the loader stays simple:
a Dataset over the files of a directory, and a DataLoader with workers.
Resuming mid-epoch is opening file k of the same path (--start-file).

  python3 examples/train_torch.py --dataset /mnt/z/mydata --rank 0 --world 2 --seed 42 --epochs 3

The model predicts the sample dataset's `flag` column from its numeric
columns (f64, i32, price, point.x); adapt `features` to your columns.
"""

import argparse
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def features(z):
    """Feature matrix and target of one npz batch (nulls become 0)."""
    cols = [
        np.nan_to_num(z["f64"]),
        z["i32"].astype(np.float64) / 2**31,
        np.nan_to_num(z["price"]) / 5e4,
        np.nan_to_num(z["point.x"].astype(np.float64)) / 1e3,
    ]
    x = np.stack(cols, axis=1).astype(np.float32)
    y = (z["flag"] & z["flag.valid"]).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


class ViewBatches(Dataset):
    """Item k is file k of a view directory: one whole batch."""

    def __init__(self, view, start=0):
        self.files = sorted(os.path.join(view, n) for n in os.listdir(view) if n.endswith(".npz"))[start:]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, k):
        with np.load(self.files[k], allow_pickle=False) as z:
            return features(z)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="MOUNT/<dataset>")
    ap.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    ap.add_argument("--world", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shuffle", default="batch", help="batch, or block:K for a row-level shuffle within K batches")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--start-epoch", type=int, default=0)
    ap.add_argument("--start-file", type=int, default=0, help="resume mid-epoch: first file of the first epoch")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(args.start_epoch, args.start_epoch + args.epochs):
        spec = f"seed={args.seed},epoch={epoch},shuffle={args.shuffle},rank={args.rank},world={args.world},format=npz"
        view = os.path.join(args.dataset, "views", spec)
        start = args.start_file if epoch == args.start_epoch else 0
        loader = DataLoader(ViewBatches(view, start), batch_size=None, shuffle=False, num_workers=args.workers)
        total, n, rows = 0.0, 0, 0
        for x, y in loader:
            loss = loss_fn(model(x).squeeze(1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n, rows = total + loss.item(), n + 1, rows + len(y)
        print(f"epoch {epoch}: {n} batches, {rows} rows, mean loss {total / max(n, 1):.4f}  ({spec})", flush=True)
    print("done")


if __name__ == "__main__":
    main()
