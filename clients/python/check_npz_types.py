"""numpy client: loads the npz of clients_test.go's everyTypeRecord and
checks each array's dtype, shape and values as numpy sees them.

usage: check_npz_types.py FILE.npz"""

import json
import math
import sys

import numpy as np


def main():
    z = np.load(sys.argv[1], allow_pickle=False)
    want = {
        "i8": ("int8", [-1, 2]),
        "u16": ("uint16", [65535, 0]),
        "i32": ("int32", [7, 0]), "i32.valid": ("bool", [True, False]),
        "u64": ("uint64", [18446744073709551615, 0]),
        "f16": ("float16", [0.5, -1.0]),
        "f32": ("float32", [1.5, 0.0]),
        "f64.valid": ("bool", [True, False]),
        "b": ("bool", [True, False]), "b.valid": ("bool", [True, False]),
        "s": ("<U5", ["Ωmega", ""]), "s.valid": ("bool", [True, False]),
        "bin.values": ("uint8", [1, 2]), "bin.offsets": ("int64", [0, 2, 2]), "bin.valid": ("bool", [True, False]),
        "fsb": ("uint8", [[0, 1], [255, 255]]),
        "d32": ("datetime64[D]", [np.datetime64(19700, "D"), np.datetime64(0, "D")]),
        "ts.valid": ("bool", [True, False]),
        "dur": ("timedelta64[ns]", [np.timedelta64(5, "ns"), np.timedelta64(-5, "ns")]),
        "t64": ("timedelta64[us]", [np.timedelta64(3600000000, "us"), np.timedelta64(0, "us")]),
        "dec.valid": ("bool", [True, False]),
        "fsl": ("int16", [[1, 2, 3], [4, 5, 6]]), "fsl.values.valid": ("bool", [[True] * 3, [True] * 3]),
        "lst.values": ("int64", [10, 20]), "lst.offsets": ("int64", [0, 2, 2]), "lst.values.valid": ("bool", [True, True]), "lst.valid": ("bool", [True, False]),
        "m.values.key": ("<U1", ["k"]), "m.values.value": ("float64", [0.5]), "m.offsets": ("int64", [0, 1, 1]), "m.values.value.valid": ("bool", [True]),
        "st.valid": ("bool", [True, False]), "st.a": ("int32", [1, 0]),
        "st.b": ("<U1", ["x", ""]), "st.b.valid": ("bool", [True, False]),
    }
    for name, (dtype, values) in want.items():
        a = z[name]
        assert a.dtype == np.dtype(dtype), f"{name}: dtype {a.dtype}, want {dtype}"
        assert a.tolist() == np.array(values, dtype=dtype).tolist(), f"{name}: {a.tolist()}, want {values}"
    f64 = z["f64"]
    assert f64.dtype == np.float64 and f64[0] == 2.25 and math.isnan(f64[1]), f"f64 {f64}"
    ts = z["ts"]
    assert ts.dtype == np.dtype("datetime64[us]") and ts[0] == np.datetime64(1700000000000001, "us") and np.isnat(ts[1]), f"ts {ts}"
    dec = z["dec"]
    assert dec.dtype == np.float64 and dec[0] == 12.34 and math.isnan(dec[1]), f"dec {dec}"
    extra = set(z.files) - set(want) - {"f64", "ts", "dec"}
    assert not extra, f"unexpected arrays {sorted(extra)}"
    print(json.dumps({"ok": True, "arrays": len(z.files)}))


if __name__ == "__main__":
    main()
