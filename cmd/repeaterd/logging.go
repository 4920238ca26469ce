package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Log settings of `run` (REPEATERD_LOG_FORMAT, REPEATERD_LOG_LEVEL).
const (
	defaultLogFormat = "text"
	defaultLogLevel  = "info"
)

// newLogger returns the process's logger: format "text" (key=value, for a
// terminal) or "json" (one object a line, for a log pipeline), at level
// debug, info, warn or error. Anything else is an error naming the choices.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
