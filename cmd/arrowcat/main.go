// Command arrowcat prints the schema and the first rows of Arrow IPC files,
// as an independent reader of zenithfs batch files (demo and debugging).
//
//	arrowcat [-n ROWS] FILE...
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func main() {
	n := flag.Int64("n", 5, "rows to print per file")
	flag.Parse()
	code := 0
	for _, p := range flag.Args() {
		if err := cat(p, *n); err != nil {
			fmt.Fprintf(os.Stderr, "arrowcat: %s: %v\n", p, err)
			code = 1
		}
	}
	os.Exit(code)
}

func cat(p string, n int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return err
	}
	defer r.Close()
	var rows int64
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.RecordBatch(i)
		if err != nil {
			return err
		}
		rows += rec.NumRows()
	}
	fmt.Printf("%s: %d rows, %d columns\n", p, rows, r.Schema().NumFields())
	if r.NumRecords() == 0 {
		return nil
	}
	rec, _ := r.RecordBatch(0)
	for row := int64(0); row < min(n, rec.NumRows()); row++ {
		fmt.Printf("  row %d:", row)
		for c := 0; c < int(rec.NumCols()); c++ {
			fmt.Printf(" %s=%s", rec.ColumnName(c), rec.Column(c).ValueStr(int(row)))
		}
		fmt.Println()
	}
	return nil
}
