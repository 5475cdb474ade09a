// nodejs-polars client: reads zenithfs batch files with scanIPC (by path)
// and readIPC (from a buffer) and checks the columns against the source.
// usage: node check_polars.mjs EXPECTED_JSON
import { readFileSync, readdirSync } from "node:fs";
import { basename } from "node:path";
import pl from "nodejs-polars";

const exp = JSON.parse(readFileSync(process.argv[2], "utf8"));
const norm = (v) => (typeof v === "bigint" ? Number(v) : v);
const same = (a, b) => JSON.stringify(a, (k, v) => norm(v)) === JSON.stringify(b);
let files = 0, rows = 0, idSum = 0;

for (const [dir, want] of Object.entries(exp.dirs)) {
  const listed = readdirSync(dir).filter((n) => /^[0-9]+\.arrow$/.test(n)).sort();
  if (!same(listed, want.map((f) => basename(f.path)))) throw new Error(`${dir}: listing ${listed.slice(0, 3)}…`);
  for (const [n, f] of want.entries()) {
    // nodejs-polars reads a path only when it ends in .ipc; scanIPC takes any path.
    const df = n % 2 === 0 ? pl.scanIPC(f.path).collectSync() : pl.readIPC(readFileSync(f.path));
    if (df.height !== f.ids.length) throw new Error(`${f.path}: ${df.height} rows, want ${f.ids.length}`);
    const conv = df.select(
      pl.col("ts").cast(pl.Int64).alias("ts_us"),
      pl.col("price").cast(pl.Float64).alias("price_f"),
      pl.col("point").isNull().alias("point_null"), // toArray turns a null struct into {x: null, …}
    );
    const got = {
      id: df.getColumn("id").toArray(), i32: df.getColumn("i32").toArray(), f64: df.getColumn("f64").toArray(),
      flag: df.getColumn("flag").toArray(), name: df.getColumn("name").toArray(), tags: df.getColumn("tags").toArray(),
      point: df.getColumn("point").toArray(), ts: conv.getColumn("ts_us").toArray(), price: conv.getColumn("price_f").toArray(),
      pointNull: conv.getColumn("point_null").toArray(),
    };
    const tz = String(df.getColumn("ts").dtype);
    if (!tz.includes("Europe/Paris")) throw new Error(`ts dtype ${tz}`);
    let blobNulls = 0;
    for (let i = 0; i < df.height; i++) {
      const r = exp.rows[String(f.ids[i])];
      const at = `${f.path} row ${i} (id ${r.id})`;
      const check = (what, g, w) => {
        if (!same(g, w)) throw new Error(`${at}: ${what} ${JSON.stringify(g, (k, v) => norm(v))}, want ${JSON.stringify(w)}`);
      };
      check("id", got.id[i], r.id);
      check("i32", got.i32[i], r.i32);
      check("f64", got.f64[i], r.f64);
      check("flag", got.flag[i], r.flag);
      check("name", got.name[i], r.name);
      check("tags", got.tags[i], r.tags);
      check("ts", got.ts[i], r.ts);
      const p = got.price[i];
      if ((p === null) !== (r.price === null) || (p !== null && Math.abs(p - r.price) > 1e-9 * Math.max(1, Math.abs(r.price)))) {
        throw new Error(`${at}: price ${p}, want ${r.price}`);
      }
      const wantPt = r.point === null ? null : { x: r.point.x === null ? null : Math.fround(r.point.x), label: r.point.label };
      check("point is null", got.pointNull[i], r.point === null);
      if (r.point !== null) check("point", got.point[i], wantPt);
      if (r.blob === null) blobNulls++;
      idSum += r.id;
    }
    if (df.getColumn("blob").nullCount() !== blobNulls) throw new Error(`${f.path}: blob nulls ${df.getColumn("blob").nullCount()}, want ${blobNulls}`);
    files++;
    rows += df.height;
  }
}
console.log(JSON.stringify({ ok: true, files, rows, idSum }));
