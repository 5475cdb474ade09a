// Package scheduler is the GPU job scheduler behind the .zenith control tree:
// spec parsing and validation, a priority queue with backfill, exclusive GPU
// allocation, runners (local processes; Slurm), and a persistent job store.
// It knows nothing of FUSE or datasets.
package scheduler
