"""Checks the rows of a zenithfs npz file of the mixed sample against the
source rows that the Go test wrote to expected.json (shared by the other
scripts here)."""

import math

import numpy as np


def check_rows(z, want_ids, rows, where):
    """Compares every column of npz file z with the expected rows."""
    ids = z["id"]
    assert ids.dtype == np.int64, f"{where}: id dtype {ids.dtype}"
    assert ids.tolist() == want_ids, f"{where}: ids {ids[:5].tolist()}…, want {want_ids[:5]}…"
    blob_off, tag_off = z["blob.offsets"], z["tags.offsets"]
    assert z["ts"].dtype == np.dtype("datetime64[us]"), f"{where}: ts dtype {z['ts'].dtype}"
    assert z["name"].dtype.kind == "U" and z["price"].dtype == np.float64
    for i, rid in enumerate(want_ids):
        r = rows[str(rid)]
        at = f"{where} row {i} (id {rid})"

        def nullable(col, value, same=lambda a, b: a == b):
            valid = bool(z[col + ".valid"][i])
            assert valid == (value is not None), f"{at}: {col}.valid {valid}, want {value is not None}"
            if value is not None:
                got = z[col][i]
                assert same(got, value), f"{at}: {col} {got!r}, want {value!r}"

        nullable("i32", r["i32"])
        nullable("f64", r["f64"])
        if r["f64"] is None:
            assert math.isnan(z["f64"][i]), f"{at}: null f64 is {z['f64'][i]}, want NaN"
        nullable("flag", r["flag"])
        nullable("name", r["name"])
        nullable("ts", r["ts"], lambda a, b: int(a.astype("int64")) == b)
        if r["ts"] is None:
            assert np.isnat(z["ts"][i]), f"{at}: null ts is not NaT"
        nullable("price", r["price"])
        blob = bytes(z["blob.values"][blob_off[i]:blob_off[i + 1]]).hex()
        assert bool(z["blob.valid"][i]) == (r["blob"] is not None), f"{at}: blob.valid"
        assert blob == (r["blob"] or ""), f"{at}: blob {blob}, want {r['blob']}"
        tags = r["tags"]
        assert bool(z["tags.valid"][i]) == (tags is not None), f"{at}: tags.valid"
        vals = z["tags.values"][tag_off[i]:tag_off[i + 1]]
        ok = z["tags.values.valid"][tag_off[i]:tag_off[i + 1]]
        got = [int(v) if o else None for v, o in zip(vals, ok)]
        assert got == (tags or []), f"{at}: tags {got}, want {tags}"
        p = r["point"]
        assert bool(z["point.valid"][i]) == (p is not None), f"{at}: point.valid"
        if p is not None:
            if p["x"] is not None:
                assert z["point.x"][i] == np.float32(p["x"]), f"{at}: point.x {z['point.x'][i]}, want {p['x']}"
            assert bool(z["point.label.valid"][i]) == (p["label"] is not None), f"{at}: point.label.valid"
            assert z["point.label"][i] == (p["label"] or ""), f"{at}: point.label {z['point.label'][i]!r}"
