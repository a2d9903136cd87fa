// Package examples embeds the sandbox's example workloads, so that
// `go run ./cmd/lockstep-sandbox` has them from any directory. The YAML
// files beside this one are the source; edit them, not a copy.
package examples

import "embed"

// FS holds every *.yaml file of this directory.
//
//go:embed *.yaml
var FS embed.FS
