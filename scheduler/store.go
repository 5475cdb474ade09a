package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// record is one job as the store keeps it (JSON in the "jobs" bucket, keyed
// by name). Every state change is written before it is visible to callers of
// Submit and Cancel, so a crash never loses an accepted job.
type record struct {
	Seq        uint64    `json:"seq"` // submit order
	Spec       Spec      `json:"spec"`
	State      State     `json:"state"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	SubmitTime time.Time `json:"submit_time"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
	Attempts   int       `json:"attempts"`
	GPUs       []int     `json:"gpus,omitempty"`
	Ref        RunRef    `json:"ref,omitempty"`
	PID        int       `json:"pid,omitempty"` // local runner: the latest attempt's process
	// Stop is Cancelled or Timeout once a stop was requested: the state the
	// job ends in, whatever its exit status.
	Stop       State  `json:"stop,omitempty"`
	StopReason string `json:"stop_reason,omitempty"`
	LogPath    string `json:"log_path"`
	// StartKey is the RunRequest.StartKey of the attempt being started:
	// set before its first Start, kept while Start fails with
	// ErrTemporary (and across a daemon restart), cleared once the
	// attempt has a Ref or its start failed for good.
	StartKey string `json:"start_key,omitempty"`

	// Not persisted.
	timeLimit time.Duration
	starting  bool // Start is in flight (GPUs reserved, lock released)
	// stopFailed: the runner refused the last stop (Stop set); the time
	// limit's enforcement asks again on its next round.
	stopFailed bool
	noRetry    bool      // the last start was refused for good (ErrInvalidSpec)
	notBefore  time.Time // a requeued start waits until then (startBackoff)
	tempFails  int       // consecutive starts refused with ErrTemporary
}

var (
	bucketJobs = []byte("jobs")
	bucketMeta = []byte("meta")
	keySeq     = []byte("seq")
)

// store is the bbolt job database.
type store struct {
	db *bolt.DB
}

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open job store %s: in use by another zenithfs daemon: %w", path, err)
		}
		return nil, fmt.Errorf("open job store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketJobs); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init job store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

// add writes a newly submitted job and records its Seq as the last one
// handed out.
func (s *store) add(r *record) error { return s.write(r, true) }

// put writes r's new state.
func (s *store) put(r *record) error { return s.write(r, false) }

func (s *store) write(r *record, first bool) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", r.Spec.Name, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketJobs).Put([]byte(r.Spec.Name), b); err != nil {
			return err
		}
		if !first {
			return nil
		}
		// Only a new job moves the sequence number, to its own (the
		// highest yet): a removed job's number is never handed out again.
		return tx.Bucket(bucketMeta).Put(keySeq, []byte(fmt.Sprint(r.Seq)))
	})
	if err != nil {
		return fmt.Errorf("store job %s: %w", r.Spec.Name, err)
	}
	return nil
}

// load reads every job and the last submit sequence number.
func (s *store) load() ([]*record, uint64, error) {
	var recs []*record
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySeq); v != nil {
			fmt.Sscan(string(v), &seq)
		}
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			r := &record{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("decode job %q: %w", k, err)
			}
			recs = append(recs, r)
			if r.Seq > seq {
				seq = r.Seq
			}
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load job store: %w", err)
	}
	return recs, seq, nil
}

// delete removes the job name; the submit sequence number stays.
func (s *store) delete(name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete job %s: %w", name, err)
	}
	return nil
}

func (s *store) close() error { return s.db.Close() }
