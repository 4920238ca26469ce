package store

import (
	"errors"
	"fmt"
)

// Error codes, mapped to HTTP statuses by the API.
const (
	ENOTFOUND = "not_found" // no such row
	EINVALID  = "invalid"   // input that can never succeed
	ECONFLICT = "conflict"  // the row's state forbids the change
	EINTERNAL = "internal"  // anything else
)

// Error is an error with a code that callers can act on.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, EINTERNAL when it has none, "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}
