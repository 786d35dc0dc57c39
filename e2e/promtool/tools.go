//go:build tools

// Package tools pins promtool's main package, so that `go mod tidy` keeps it (and
// everything it imports) in go.mod and go.sum. The build tag keeps this file out of
// every real build: it is never compiled.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool" // promtool check rules
)
