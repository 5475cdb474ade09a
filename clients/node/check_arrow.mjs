// apache-arrow client: reads zenithfs batch files with tableFromIPC and
// checks every column of every row against the source rows.
// usage: node check_arrow.mjs EXPECTED_JSON
import { readFileSync, readdirSync } from "node:fs";
import { basename } from "node:path";
import { tableFromIPC } from "apache-arrow";

const exp = JSON.parse(readFileSync(process.argv[2], "utf8"));
const hex = (u8) => Buffer.from(u8).toString("hex");
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let files = 0, rows = 0, idSum = 0;

for (const [dir, want] of Object.entries(exp.dirs)) {
  const listed = readdirSync(dir).filter((n) => /^[0-9]+\.arrow$/.test(n)).sort();
  if (!same(listed, want.map((f) => basename(f.path)))) throw new Error(`${dir}: listing ${listed.slice(0, 3)}…`);
  for (const f of want) {
    const t = tableFromIPC(readFileSync(f.path));
    if (t.numRows !== f.ids.length) throw new Error(`${f.path}: ${t.numRows} rows, want ${f.ids.length}`);
    const col = (name) => t.getChild(name);
    const [id, i32, f64, flag, name, blob, ts, price, tags, point] =
      ["id", "i32", "f64", "flag", "name", "blob", "ts", "price", "tags", "point"].map(col);
    if (String(ts.type) !== "Timestamp<MICROSECOND, Europe/Paris>") throw new Error(`ts type ${ts.type}`);
    for (let i = 0; i < t.numRows; i++) {
      const r = exp.rows[String(f.ids[i])];
      const at = `${f.path} row ${i} (id ${r.id})`;
      const check = (what, got, wantV) => {
        if (!same(got, wantV)) throw new Error(`${at}: ${what} ${JSON.stringify(got)}, want ${JSON.stringify(wantV)}`);
      };
      check("id", Number(id.get(i)), r.id);
      check("i32", i32.get(i), r.i32);
      check("f64", f64.get(i), r.f64);
      check("flag", flag.get(i), r.flag);
      check("name", name.get(i), r.name);
      const b = blob.get(i);
      check("blob", b === null ? null : hex(b), r.blob);
      const tsv = ts.get(i); // milliseconds, with the microseconds as a fraction
      check("ts", tsv === null ? null : Math.round(tsv * 1000), r.ts);
      const p = price.get(i);
      check("price", p === null ? null : String(p), r.price_unscaled);
      const tg = tags.get(i);
      check("tags", tg === null ? null : Array.from(tg), r.tags);
      const pt = point.get(i);
      const wantPt = r.point === null ? null : { x: r.point.x === null ? null : Math.fround(r.point.x), label: r.point.label };
      check("point", pt === null ? null : pt.toJSON(), wantPt);
      idSum += r.id;
    }
    files++;
    rows += t.numRows;
  }
}
console.log(JSON.stringify({ ok: true, files, rows, idSum }));
