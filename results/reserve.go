package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrRunBusy is wrapped by the errors of Reserve and Writer.Commit when
// another live run, in this process or another, holds the run id.
var ErrRunBusy = errors.New("run id held by another run")

// LockPath returns the reservation file of a run: root/pipeline/.run-id.lock,
// hidden beside the run directory (ListRuns does not list it).
func LockPath(root, pipeline, runID string) string {
	return filepath.Join(root, pipeline, "."+runID+".lock")
}

// Owner is what a reservation file says about the run holding it, for
// messages.
type Owner struct {
	PID      int       `json:"pid"`
	Host     string    `json:"host,omitempty"`
	Reserved time.Time `json:"reserved"`
}

// String describes the owner: "pid 4242 on host-a since 10:15:00".
func (o Owner) String() string {
	if o.PID == 0 {
		return "another run"
	}
	s := fmt.Sprintf("pid %d", o.PID)
	if o.Host != "" {
		s += " on " + o.Host
	}
	if !o.Reserved.IsZero() {
		s += " since " + o.Reserved.Local().Format(time.DateTime)
	}
	return s
}

// BusyError is the error of a run id that another run holds. It wraps
// ErrRunBusy.
type BusyError struct {
	// Path is the reservation file, RunID the run id.
	Path, RunID string
	// Owner is what the file says about its holder (zero when unreadable).
	Owner Owner
}

// Error names the run, its holder and the reservation file.
func (e *BusyError) Error() string {
	return fmt.Sprintf("results: run %s is held by %s (lock %s)", e.RunID, e.Owner, e.Path)
}

// Unwrap returns ErrRunBusy.
func (e *BusyError) Unwrap() error { return ErrRunBusy }

// Reservation is a run id held by this process for the life of a run: the
// file LockPath, locked with flock(2). No other Reserve, in this process or
// another, gets the id while it is held, and a Writer commits the run's
// directory only in the process that holds it (or while nobody does). The
// kernel drops the lock when the process dies, so a crashed run never
// blocks its id: the file it leaves behind is taken over by the next
// Reserve.
type Reservation struct {
	path, runID string
	lock        fileLock
	once        sync.Once
	err         error
}

// held are the reservations of this process by lock path: Commit in the
// process that holds a run id writes the run's directory without locking
// again (a second flock on the same file would conflict with the first).
var held = struct {
	sync.Mutex
	m map[string]*Reservation
}{m: map[string]*Reservation{}}

// Reserve takes the run id runID of pipeline under root for this process.
// It fails with a *BusyError (wrapping ErrRunBusy) when another run holds
// it. It does not look at the run directory or journal: a caller picking a
// fresh id checks those after reserving, while no other run can create them.
func Reserve(root, pipeline, runID string) (*Reservation, error) {
	if err := checkSegment("pipeline name", pipeline); err != nil {
		return nil, err
	}
	if err := checkSegment("run id", runID); err != nil {
		return nil, err
	}
	if root == "" {
		root = "."
	}
	path := LockPath(root, pipeline, runID)
	key, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("results: reserve run %s: %w", runID, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("results: reserve run %s: create %s: %w", runID, filepath.Dir(path), err)
	}
	held.Lock()
	defer held.Unlock()
	if _, ok := held.m[key]; ok {
		return nil, &BusyError{Path: path, RunID: runID, Owner: readOwner(path)}
	}
	host, _ := os.Hostname()
	owner, _ := json.Marshal(Owner{PID: os.Getpid(), Host: host, Reserved: time.Now()})
	lock, err := lockFile(path, append(owner, '\n'))
	if errors.Is(err, ErrRunBusy) {
		return nil, &BusyError{Path: path, RunID: runID, Owner: readOwner(path)}
	}
	if err != nil {
		return nil, fmt.Errorf("results: reserve run %s: %s: %w", runID, path, err)
	}
	r := &Reservation{path: key, runID: runID, lock: lock}
	held.m[key] = r
	return r, nil
}

// Path returns the reservation file.
func (r *Reservation) Path() string { return r.path }

// Release gives the run id back: it removes the reservation file, then drops
// the lock. Releasing twice is a no-op.
func (r *Reservation) Release() error {
	r.once.Do(func() {
		held.Lock()
		defer held.Unlock()
		delete(held.m, r.path)
		// Removed while still locked: a Reserve that opened the file before
		// the removal sees, once it gets the lock, that the path no longer
		// names its file, and starts over on a new one.
		rmErr := os.Remove(r.path)
		if errors.Is(rmErr, os.ErrNotExist) {
			rmErr = nil
		}
		r.err = errors.Join(rmErr, r.lock.unlock())
		if r.err != nil {
			r.err = fmt.Errorf("results: release run %s: %w", r.runID, r.err)
		}
	})
	return r.err
}

// heldHere reports whether this process holds the reservation at path.
func heldHere(path string) bool {
	key, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	held.Lock()
	defer held.Unlock()
	_, ok := held.m[key]
	return ok
}

// readOwner reads a reservation file's owner; the zero Owner when it
// cannot.
func readOwner(path string) Owner {
	var o Owner
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &o)
	}
	return o
}
