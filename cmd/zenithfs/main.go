// Command zenithfs mounts training datasets as directories of batch-sharded
// Arrow IPC files, with a control tree for GPU jobs. This package is the CLI
// only: flags and config, wiring, daemonising, metrics export.
//
//	zenithfs mount [flags] MOUNTPOINT
//	zenithfs mount --foreground [flags] MOUNTPOINT
//	zenithfs umount MOUNTPOINT
//	zenithfs sample DIR [--rows N]
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `usage:
  zenithfs mount [flags] MOUNTPOINT     mount; returns once the mount is ready
  zenithfs mount --foreground [flags] MOUNTPOINT
  zenithfs umount MOUNTPOINT            unmount (also clears a stale mount)
  zenithfs sample DIR [--rows N]        write a sample dataset in every format
run 'zenithfs mount -h' for the mount flags`

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "mount":
		err = cmdMount(args[1:])
	case "umount", "unmount":
		err = cmdUmount(args[1:])
	case "sample":
		err = cmdSample(args[1:])
	case "-h", "--help", "help":
		fmt.Println(usage)
		return 0
	default:
		err = fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	var help *helpRequested
	if errors.As(err, &help) {
		fmt.Print(help.text)
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "zenithfs:", err)
		return 1
	}
	return 0
}
