//go:build tools

// Package tools records the Pulumi CLI main package as a dependency of this
// module, so that go.mod/go.sum pin everything `go build
// github.com/pulumi/pulumi/pkg/v3/cmd/pulumi` needs (engine/build.sh builds it).
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
