// Wrapper module for the Gateway API CRDs (standard channel) the tests install and validate
// against, copied by ../build.sh from config/crd/standard/ of the module. Nothing is compiled:
// the module is pinned here (go.sum) only so that its files are verified like every other input.
module mlflow-platform/engine/gateway-api

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3
