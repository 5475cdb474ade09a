package scheduler

import "errors"

// Sentinel errors; callers test them with errors.Is. The fs layer maps them to
// errno values (EINVAL, EEXIST, EACCES, ENOENT, EBUSY) in one place.
var (
	// ErrInvalidSpec wraps every reason a spec is rejected.
	ErrInvalidSpec = errors.New("invalid job spec")
	// ErrExists is returned when a job of that name already exists.
	ErrExists = errors.New("job name already exists")
	// ErrPermission is returned when the caller may not submit or cancel.
	ErrPermission = errors.New("permission denied")
	// ErrNotFound is returned for an unknown job.
	ErrNotFound = errors.New("no such job")
	// ErrActive is returned by Remove for a job that has not ended.
	ErrActive = errors.New("job has not ended")
	// ErrTemporary is wrapped by a Runner whose Start failed for a reason
	// that may pass (a Slurm controller briefly unreachable, a submit
	// limit): the job stays PENDING, instead of FAILED, and is tried again
	// after a pause (1 s, doubling, at most a minute) with the same
	// RunRequest.StartKey and Resubmit set.
	ErrTemporary = errors.New("cannot start now; will retry")
)
