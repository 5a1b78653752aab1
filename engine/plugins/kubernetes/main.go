// Command pulumi-resource-kubernetes serves the Pulumi Kubernetes provider
// from github.com/pulumi/pulumi-kubernetes/provider/v4. build.sh writes the
// schema files next to this file (from the module cache) before building.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var tfMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, tfMapping)
}
