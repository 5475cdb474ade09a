package main

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

func cmdSample(args []string) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	rows := fs.Int64("rows", 10000, "rows per dataset")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: zenithfs sample DIR [--rows N]")
	}
	dirs, err := sampledata.WriteAll(fs.Arg(0), *rows)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(dirs))
	for n := range dirs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%s=%s\n", n, dirs[n])
	}
	return nil
}

// reorder moves flags before positional arguments, so that
// `sample DIR --rows 5` works like `sample --rows 5 DIR`.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !isBoolFlag(a) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func isBoolFlag(a string) bool {
	switch strings.TrimLeft(a, "-") {
	case "foreground", "allow-other", "debug", "passthrough", "h", "help":
		return true
	}
	return false
}
