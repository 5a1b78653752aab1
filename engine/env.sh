# TEST TOOLING of mlflow-platform, to run this project's tests here: never use it to deploy anything real.
# Source this file (". engine/env.sh") to run Pulumi with the binaries that
# engine/build.sh puts in engine/bin: they come first on PATH, and the CLI
# neither downloads plugins nor checks for updates (plugins found on PATH are
# used whatever version the SDKs ask for). The binaries report versions ending in
# +mlflow-platform-test (engine/README.md).
_engine_dir="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
case ":${PATH}:" in
  *":${_engine_dir}/bin:"*) ;;
  *) export PATH="${_engine_dir}/bin:${PATH}" ;;
esac
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_SKIP_UPDATE_CHECK=true
unset _engine_dir
