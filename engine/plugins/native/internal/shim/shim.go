// Package shim is a small framework for the project's native Pulumi providers
// (random, tls): resources whose inputs all force replacement (except the ones
// listed as updatable), whose state is inputs + computed outputs, and which
// are computed locally (no remote API).
package shim

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Resource is one resource type.
type Resource struct {
	// Inputs lists the input property names (camelCase, as the SDKs send them).
	Inputs []string
	// Updatable lists inputs whose change is applied in place (state copy); all other inputs force replacement.
	Updatable []string
	// Check validates the inputs and fills in defaults. Values may be unknown during preview.
	Check func(in resource.PropertyMap) (resource.PropertyMap, []string)
	// Create computes the resource: its id and its outputs (the inputs are merged in by the framework).
	Create func(in resource.PropertyMap) (string, resource.PropertyMap, error)
	// NeedsReplace reports, from the current state, whether the resource must be recreated (e.g. a certificate due
	// for renewal), and the property to blame.
	NeedsReplace func(state resource.PropertyMap) (string, bool)
	// Refresh recomputes derived outputs of a state on `pulumi refresh` (optional).
	Refresh func(state resource.PropertyMap) resource.PropertyMap
}

// Provider serves a set of resource types.
type Provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	Name      string
	Version   string
	Resources map[string]*Resource // by type token
}

// Main serves the provider over gRPC the way the Pulumi engine expects (port printed on stdout).
func (p *Provider) Main() error {
	return provider.Main(p.Name, func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return p, nil
	})
}

var opts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	return plugin.UnmarshalProperties(s, opts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, opts)
}

func (p *Provider) res(urn string) (*Resource, error) {
	t := string(resource.URN(urn).Type())
	r, ok := p.Resources[t]
	if !ok {
		return nil, fmt.Errorf("%s: unknown resource type %q", p.Name, t)
	}
	return r, nil
}

// decode resolves a request's resource kind and unmarshals its property maps, in the order given.
func (p *Provider) decode(urn string, structs ...*structpb.Struct) (*Resource, []resource.PropertyMap, error) {
	r, err := p.res(urn)
	if err != nil {
		return nil, nil, err
	}
	maps := make([]resource.PropertyMap, len(structs))
	for i, s := range structs {
		if maps[i], err = unmarshal(s); err != nil {
			return nil, nil, err
		}
	}
	return r, maps, nil
}

func (p *Provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: p.Version}, nil
}

func (p *Provider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, p.Name, p.Version)}, nil
}

func (p *Provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *Provider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *Provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	// No secrets, resources or outputs: the engine sends plain values and marks outputs secret itself.
	return &pulumirpc.ConfigureResponse{}, nil
}

func (p *Provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	r, maps, err := p.decode(req.GetUrn(), req.GetNews())
	if err != nil {
		return nil, err
	}
	news := maps[0]
	in := resource.PropertyMap{}
	for _, k := range r.Inputs {
		if v, ok := news[resource.PropertyKey(k)]; ok && !v.IsNull() {
			in[resource.PropertyKey(k)] = v
		}
	}
	for k := range news {
		if !contains(r.Inputs, string(k)) && !strings.HasPrefix(string(k), "__") {
			return &pulumirpc.CheckResponse{Failures: []*pulumirpc.CheckFailure{{
				Property: string(k), Reason: fmt.Sprintf("unknown property %q", k)}}}, nil
		}
	}
	checked, problems := r.Check(in)
	resp := &pulumirpc.CheckResponse{}
	for _, pr := range problems {
		prop, reason, _ := strings.Cut(pr, ": ")
		resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Property: prop, Reason: reason})
	}
	if resp.Inputs, err = marshal(checked); err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *Provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	r, maps, err := p.decode(req.GetUrn(), req.GetOlds(), req.GetNews())
	if err != nil {
		return nil, err
	}
	olds, news := maps[0], maps[1]
	var replaces, diffs []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range r.Inputs {
		key := resource.PropertyKey(k)
		o, n := olds[key], news[key]
		if o.IsNull() && n.IsNull() {
			continue
		}
		if !n.ContainsUnknowns() && o.DeepEquals(n) {
			continue
		}
		diffs = append(diffs, k)
		kind := pulumirpc.PropertyDiff_UPDATE
		if !contains(r.Updatable, k) {
			replaces = append(replaces, k)
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	if r.NeedsReplace != nil {
		if prop, ok := r.NeedsReplace(olds); ok {
			diffs = append(diffs, prop)
			replaces = append(replaces, prop)
			detailed[prop] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_UPDATE_REPLACE}
		}
	}
	if len(diffs) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true}, nil
	}
	sort.Strings(diffs)
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func (p *Provider) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	r, maps, err := p.decode(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	in := maps[0]
	if req.GetPreview() || in.ContainsUnknowns() {
		return nil, fmt.Errorf("%s: preview of Create is not supported", p.Name)
	}
	id, outs, err := r.Create(in)
	if err != nil {
		return nil, err
	}
	state := in.Copy()
	for k, v := range outs {
		state[k] = v
	}
	props, err := marshal(state)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *Provider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	r, maps, err := p.decode(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	state := maps[0]
	if len(state) == 0 {
		return nil, fmt.Errorf("%s: importing %s is not supported", p.Name, req.GetUrn())
	}
	if r.Refresh != nil {
		state = r.Refresh(state)
	}
	inputs := req.GetInputs()
	if inputs == nil {
		in := resource.PropertyMap{}
		for _, k := range r.Inputs {
			if v, ok := state[resource.PropertyKey(k)]; ok {
				in[resource.PropertyKey(k)] = v
			}
		}
		if inputs, err = marshal(in); err != nil {
			return nil, err
		}
	}
	props, err := marshal(state)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: props, Inputs: inputs}, nil
}

func (p *Provider) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	r, maps, err := p.decode(req.GetUrn(), req.GetOlds(), req.GetNews())
	if err != nil {
		return nil, err
	}
	olds, news := maps[0], maps[1]
	state := olds.Copy()
	for _, k := range r.Updatable {
		key := resource.PropertyKey(k)
		if v, ok := news[key]; ok {
			state[key] = v
		} else {
			delete(state, key)
		}
	}
	if r.Refresh != nil {
		state = r.Refresh(state)
	}
	props, err := marshal(state)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *Provider) Delete(context.Context, *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil // nothing exists outside the state
}

func (p *Provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Helpers to read known input values.

func String(m resource.PropertyMap, k string) string {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

func Int(m resource.PropertyMap, k string) int {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsNumber() {
		return int(v.NumberValue())
	}
	return 0
}

func Bool(m resource.PropertyMap, k string) bool {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsBool() {
		return v.BoolValue()
	}
	return false
}

func Strings(m resource.PropertyMap, k string) []string {
	var out []string
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsArray() {
		for _, e := range v.ArrayValue() {
			if e.IsString() {
				out = append(out, e.StringValue())
			}
		}
	}
	return out
}

func Object(m resource.PropertyMap, k string) resource.PropertyMap {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsObject() {
		return v.ObjectValue()
	}
	return resource.PropertyMap{}
}

// Default sets m[k] = v when k is absent.
func Default(m resource.PropertyMap, k string, v any) {
	if _, ok := m[resource.PropertyKey(k)]; !ok {
		m[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
}

// Known reports whether m[k] is absent or fully known.
func Known(m resource.PropertyMap, k string) bool {
	v, ok := m[resource.PropertyKey(k)]
	return !ok || !v.ContainsUnknowns()
}
