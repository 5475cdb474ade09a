// Package clients runs real framework clients against a real zenithfs
// mount, from the Go test suite: Debian's python3-torch DataLoader (with
// worker processes) training from an npz view, numpy reading every npz
// type, the npm packages apache-arrow and nodejs-polars reading batch
// files, and arrow-go. Each client checks the values it reads against the
// source rows, not only that a file opens.
//
// The clients live beside this file: python/ (scripts for /usr/bin/python3)
// and node/ (package.json with exact versions and its lock file).
// scripts/setup-clients.sh installs them; a test whose client is missing
// fails with a message that says to run it.
package clients
