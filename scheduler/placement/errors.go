package placement

import "errors"

// Sentinel errors. Check them with errors.Is.
var (
	// ErrInvalidJob wraps every problem ValidateJob finds. The server turns
	// it into HTTP 400 with the message, which names the field.
	ErrInvalidJob = errors.New("placement: invalid job")
	// ErrNoEvaluation means Schedule was called without an evaluation.
	ErrNoEvaluation = errors.New("placement: evaluation is required")
	// ErrJobMismatch means the job passed to Schedule is not the one the
	// evaluation names; the caller read the wrong job from the state.
	ErrJobMismatch = errors.New("placement: job does not match the evaluation")
	// ErrUnknownJobType means a stored job has a type Schedule does not
	// know; validate jobs at the edge with ValidateJob.
	ErrUnknownJobType = errors.New("placement: unknown job type")
	// ErrInternal wraps a panic recovered inside Schedule: the evaluation
	// should be marked failed and the panic reported as a bug.
	ErrInternal = errors.New("placement: internal error")
)
