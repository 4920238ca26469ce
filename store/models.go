package store

import "time"

// State is a repeat record's state. The integer codes are stored as they are
// and match the system this design comes from.
type State int16

// Record states.
const (
	StatePending         State = 1  // registered, never attempted
	StateFail            State = 2  // attempted and failed; will be retried
	StateSuccess         State = 4  // delivered
	StateCancelled       State = 8  // gave up (max attempts) or cancelled by hand
	StateEmpty           State = 16 // nothing to send; counts as done
	StatePayloadRejected State = 32 // the remote refused it; not retried
)

// AllStates lists every state in code order.
var AllStates = []State{StatePending, StateFail, StateSuccess, StateCancelled, StateEmpty, StatePayloadRejected}

// Ready reports whether a record in this state is still to be sent.
func (s State) Ready() bool { return s == StatePending || s == StateFail }

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateFail:
		return "fail"
	case StateSuccess:
		return "success"
	case StateCancelled:
		return "cancelled"
	case StateEmpty:
		return "empty"
	case StatePayloadRejected:
		return "payload_rejected"
	}
	return "unknown"
}

// Request names a requested state as the operator's action: "requeue" or
// "cancel".
func (s State) Request() string {
	if s == StateCancelled {
		return "cancel"
	}
	return "requeue"
}

// ParseState parses a state's name (as String returns it).
func ParseState(name string) (State, error) {
	for _, s := range AllStates {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, Errorf(EINVALID, "unknown state %q", name)
}

// FlagProcessRepeaters is the per-domain flag that routes a domain's records
// through the dispatcher (on) or the legacy per-record path (off).
const FlagProcessRepeaters = "process_repeaters"

// KnownFlags lists the flags a domain may set.
var KnownFlags = []string{FlagProcessRepeaters}

// DefaultMaxWorkers is a repeater's concurrency when max_workers is 0.
const DefaultMaxWorkers = 7

// Repeater is a remote endpoint owned by a domain. PacePerS, PaceClean and
// Flowing are learned by update_repeater (repeaters/pacing.go), never set by
// hand: the request rate the endpoint was found to sustain (0 = not paced),
// the clean batches in a row while paced, and whether the last batch that
// reached the endpoint had a success (an all-refused batch next is then "too
// fast", not "dead").
type Repeater struct {
	ID               int64             `gorm:"primaryKey" json:"id"`
	Domain           string            `json:"domain"`
	Name             string            `json:"name"`
	URL              string            `gorm:"column:url" json:"url"`
	RequestMethod    string            `json:"request_method"`
	Headers          map[string]string `gorm:"serializer:json" json:"headers"`
	SigningSecret    string            `json:"-"` // write-only: never rendered
	MaxWorkers       int               `json:"max_workers"`
	RateLimitPerS    float64           `gorm:"column:rate_limit_per_s" json:"rate_limit_per_s"`
	RateBurst        int               `json:"rate_burst"`
	BackoffCodes     Int32Array        `gorm:"type:integer[]" json:"backoff_codes"`
	MaxAttempts      int               `json:"max_attempts"`
	TimeoutMS        int               `gorm:"column:timeout_ms" json:"timeout_ms"`
	IsPaused         bool              `json:"is_paused"`
	IsDeleted        bool              `json:"is_deleted"`
	NextAttemptAt    *time.Time        `json:"next_attempt_at"`
	LastAttemptAt    *time.Time        `json:"last_attempt_at"`
	BackoffCount     int               `json:"backoff_count"`
	EffectiveWorkers int               `json:"effective_workers"`
	PacePerS         float64           `gorm:"column:pace_per_s" json:"pace_per_s"`
	PaceClean        int               `json:"pace_clean"`
	Flowing          bool              `json:"flowing"`
	PendingBatch     *string           `json:"-"`
	PendingSummary   *BatchSummary     `gorm:"serializer:json" json:"-"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`

	// PreviousSigningSecret is the secret before a rotation, still signed
	// with (beside the current one) until PreviousSecretUntil.
	PreviousSigningSecret string     `json:"-"`
	PreviousSecretUntil   *time.Time `json:"previous_secret_until"`
	// ConnectionID names the connection (auth, TLS) requests use; Connection
	// is it, loaded by GetRepeater for the sender.
	ConnectionID *int64      `json:"connection_id"`
	Connection   *Connection `gorm:"-" json:"-"`
	// EventTypes are the event types the repeater receives (empty = all);
	// EventFilter a filter on their payloads (filter.go, "" = none).
	EventTypes  TextArray `gorm:"type:text[]" json:"event_types"`
	EventFilter string    `json:"event_filter"`
}

// HasSecret reports whether requests to the repeater are signed.
func (r *Repeater) HasSecret() bool { return r.SigningSecret != "" }

// Workers returns the repeater's configured concurrency: max_workers, or the
// default when 0, capped by limit when limit > 0.
func (r *Repeater) Workers(limit int) int {
	n := r.MaxWorkers
	if n <= 0 {
		n = DefaultMaxWorkers
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n
}

// Timeout returns the per-request timeout.
func (r *Repeater) Timeout() time.Duration { return time.Duration(r.TimeoutMS) * time.Millisecond }

// Payload is a body to deliver; one payload may feed many records.
type Payload struct {
	ID          int64     `gorm:"primaryKey" json:"id"`
	Domain      string    `json:"domain"`
	ContentType string    `json:"content_type"`
	Body        []byte    `json:"-"`
	CreatedAt   time.Time `json:"created_at"`
}

// RepeatRecord is one payload to deliver to one repeater.
type RepeatRecord struct {
	ID               int64     `gorm:"primaryKey" json:"id"`
	Domain           string    `json:"domain"`
	RepeaterID       int64     `json:"repeater_id"`
	PayloadID        int64     `json:"payload_id"`
	State            State     `json:"state"`
	RegisteredAt     time.Time `json:"registered_at"`
	NextCheck        time.Time `json:"next_check"`
	AttemptCount     int       `json:"attempt_count"`
	MaxPossibleTries int       `json:"max_possible_tries"`
	IdempotencyKey   *string   `json:"idempotency_key,omitempty"`
	// ClaimOwner is who is sending the record now (nil when nobody is); the
	// claim lasts until NextCheck.
	ClaimOwner *string `json:"claim_owner,omitempty"`
	// RequestedState is an operator's requeue (Pending) or cancel
	// (Cancelled) waiting for the claim to end.
	RequestedState *State `json:"requested_state,omitempty"`
}

// Claimed reports whether someone holds a live claim on the record at now.
func (r *RepeatRecord) Claimed(now time.Time) bool {
	return r.ClaimOwner != nil && r.NextCheck.After(now)
}

// Attempt is one try at sending a record.
type Attempt struct {
	ID         int64     `gorm:"primaryKey" json:"id"`
	RecordID   int64     `json:"record_id"`
	State      State     `json:"state"`
	StatusCode int       `json:"status_code"`
	Message    string    `json:"message"`
	DurationMS int       `gorm:"column:duration_ms" json:"duration_ms"`
	CreatedAt  time.Time `json:"created_at"`
}

// TableName maps Attempt to its table.
func (Attempt) TableName() string { return "repeat_record_attempts" }

// DomainFlag is a per-domain feature toggle.
type DomainFlag struct {
	Domain    string    `gorm:"primaryKey" json:"domain"`
	Flag      string    `gorm:"primaryKey" json:"flag"`
	Enabled   bool      `json:"enabled"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ReadyRecord is a ready record with what sending it needs.
type ReadyRecord struct {
	RepeatRecord
	ContentType string
	Body        []byte
}

// Outcome is the result of one attempt at sending a record.
type Outcome struct {
	RecordID    int64
	State       State // Success, Fail, PayloadRejected or Empty
	StatusCode  int   // 0 when there was no HTTP response
	Message     string
	Duration    time.Duration
	RetryAfter  time.Duration // the endpoint's Retry-After, 0 if none
	AttemptedAt time.Time
	NextCheck   time.Time // when a Fail is due again; zero = now
	// PriorAttempts is how many times the record had been tried before:
	// a refusal of a fresh record says more about the endpoint's rate than
	// one of a record refused before (a poison record).
	PriorAttempts int
	// Owner is the claim the attempt was made under. The outcome changes
	// the record only while that claim still holds; otherwise it is logged
	// as an attempt and nothing else. "" matches an unclaimed record.
	Owner string
}

// Throttled reports whether the endpoint answered 429 or 503: it may be
// saying "too fast" rather than "broken".
func (o Outcome) Throttled() bool { return o.StatusCode == 429 || o.StatusCode == 503 }

// BatchSummary counts a batch's outcomes; update_repeater decides the
// repeater's backoff from it.
type BatchSummary struct {
	Attempted  int           `json:"attempted"`
	Succeeded  int           `json:"succeeded"`
	Rejected   int           `json:"rejected"`
	Failed     int           `json:"failed"`
	Throttled  int           `json:"throttled"`   // 429 or 503: lowers concurrency
	RetryAfter time.Duration `json:"retry_after"` // the largest Retry-After seen
	// ThrottledFirst counts the throttled records that were on their first
	// attempt: a refusal of fresh records says "too fast", one of retried
	// records may be a poison record.
	ThrottledFirst int `json:"throttled_first,omitempty"`
}

// Summarize counts outcomes into a BatchSummary. Empty records never
// reached the endpoint, so they say nothing about it and are left out.
func Summarize(outcomes []Outcome) BatchSummary {
	var s BatchSummary
	for _, o := range outcomes {
		if o.State == StateEmpty {
			continue
		}
		s.Attempted++
		switch o.State {
		case StateSuccess:
			s.Succeeded++
		case StatePayloadRejected:
			s.Rejected++
		default:
			s.Failed++
		}
		if o.Throttled() {
			s.Throttled++
			if o.PriorAttempts == 0 {
				s.ThrottledFirst++
			}
		}
		s.RetryAfter = max(s.RetryAfter, o.RetryAfter)
	}
	return s
}
