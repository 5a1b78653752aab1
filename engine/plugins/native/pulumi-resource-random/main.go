// Command pulumi-resource-random is the project's own native implementation of
// the part of the Pulumi "random" provider that the project uses
// (random.RandomPassword and random.RandomString), wire-compatible with the
// pulumi-random Python SDK (tokens random:index/...). The upstream provider is
// Terraform-bridged and its Go modules are not served by the Go module proxy
// reachable here.
package main

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/bcrypt"

	"mlflow-platform/engine/plugins/native/internal/shim"
)

// version is set by engine/build.sh (-ldflags -X main.version=...).
var version = "0.0.0-dev"

const defaultSpecial = "!@#$%&*()-_=+[]{}<>:?"

var stringInputs = []string{
	"keepers", "length", "lower", "minLower", "minNumeric", "minSpecial", "minUpper",
	"number", "numeric", "overrideSpecial", "special", "upper",
}

func check(in resource.PropertyMap) (resource.PropertyMap, []string) {
	var problems []string
	if _, ok := in["length"]; !ok {
		problems = append(problems, "length: missing required property \"length\"")
	}
	for _, k := range []string{"lower", "upper", "special", "number", "numeric"} {
		shim.Default(in, k, true)
	}
	for _, k := range []string{"minLower", "minNumeric", "minSpecial", "minUpper"} {
		shim.Default(in, k, 0.0)
	}
	if in.ContainsUnknowns() {
		return in, problems
	}
	// "number" is the deprecated spelling of "numeric": either one switched off wins.
	if !shim.Bool(in, "number") || !shim.Bool(in, "numeric") {
		in["number"], in["numeric"] = resource.NewBoolProperty(false), resource.NewBoolProperty(false)
	}
	length := shim.Int(in, "length")
	mins := shim.Int(in, "minLower") + shim.Int(in, "minUpper") + shim.Int(in, "minNumeric") + shim.Int(in, "minSpecial")
	if length < 1 {
		problems = append(problems, "length: must be at least 1")
	} else if mins > length {
		problems = append(problems, fmt.Sprintf("length: %d is less than the sum of the min_* values (%d)", length, mins))
	}
	return in, problems
}

func pick(set string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
	if err != nil {
		return 0, err
	}
	return set[n.Int64()], nil
}

func generate(in resource.PropertyMap) (string, error) {
	special := defaultSpecial
	if v, ok := in["overrideSpecial"]; ok && v.IsString() {
		special = v.StringValue()
	}
	classes := []struct {
		on  bool
		set string
		min int
	}{
		{shim.Bool(in, "upper"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ", shim.Int(in, "minUpper")},
		{shim.Bool(in, "lower"), "abcdefghijklmnopqrstuvwxyz", shim.Int(in, "minLower")},
		{shim.Bool(in, "numeric"), "0123456789", shim.Int(in, "minNumeric")},
		{shim.Bool(in, "special"), special, shim.Int(in, "minSpecial")},
	}
	var all strings.Builder
	var out []byte
	for _, c := range classes {
		if !c.on || c.set == "" {
			continue
		}
		all.WriteString(c.set)
		for i := 0; i < c.min; i++ {
			b, err := pick(c.set)
			if err != nil {
				return "", err
			}
			out = append(out, b)
		}
	}
	if all.Len() == 0 {
		return "", fmt.Errorf("at least one of upper, lower, numeric and special must be true")
	}
	for len(out) < shim.Int(in, "length") {
		b, err := pick(all.String())
		if err != nil {
			return "", err
		}
		out = append(out, b)
	}
	// Fisher-Yates shuffle so the minimum characters are not at fixed positions.
	for i := len(out) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

func main() {
	p := &shim.Provider{
		Name:    "random",
		Version: version,
		Resources: map[string]*shim.Resource{
			"random:index/randomPassword:RandomPassword": {
				Inputs: stringInputs,
				Check:  check,
				Create: func(in resource.PropertyMap) (string, resource.PropertyMap, error) {
					result, err := generate(in)
					if err != nil {
						return "", nil, err
					}
					hash, err := bcrypt.GenerateFromPassword([]byte(result), bcrypt.DefaultCost)
					if err != nil {
						return "", nil, err
					}
					return "none", resource.PropertyMap{
						"result":     resource.NewStringProperty(result),
						"bcryptHash": resource.NewStringProperty(string(hash)),
					}, nil
				},
			},
			"random:index/randomString:RandomString": {
				Inputs: stringInputs,
				Check:  check,
				Create: func(in resource.PropertyMap) (string, resource.PropertyMap, error) {
					result, err := generate(in)
					if err != nil {
						return "", nil, err
					}
					return result, resource.PropertyMap{"result": resource.NewStringProperty(result)}, nil
				},
			},
		},
	}
	if err := p.Main(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
