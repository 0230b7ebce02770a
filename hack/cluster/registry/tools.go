//go:build tools

// Package tools pins the registry for hack/cluster/build-binaries.sh.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
