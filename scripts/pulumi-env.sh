# Source this file (`source scripts/pulumi-env.sh`) to run `pulumi` the project's way:
# the pinned toolchain on PATH, self-managed state, nothing fetched at run time, never Pulumi Cloud.
#
# State: PULUMI_BACKEND_URL if you set it (production: an S3-compatible bucket on the ministry's own
# cloud, e.g. 's3://visio-state?endpoint=s3.example.gouv.fr&s3ForcePathStyle=true&region=fr-par'),
# otherwise a local file backend in <repo>/.pulumi-state (ignored by git).
# Secrets: the passphrase provider. The lab's passphrase is generated once per machine into
# ~/.config/visio/lab.passphrase (mode 0600); for a ministry, export PULUMI_CONFIG_PASSPHRASE_FILE.

_visio_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
export VISIO_TOOLCHAIN_DIR=${VISIO_TOOLCHAIN_DIR:-$HOME/.cache/visio-toolchain}
case ":$PATH:" in *":$VISIO_TOOLCHAIN_DIR/bin:"*) ;; *) export PATH="$VISIO_TOOLCHAIN_DIR/bin:$PATH" ;; esac
# This checkout's virtualenv always comes first, even when another checkout's was put on PATH
# before (its `visio` would otherwise run, and write its reports into that other checkout).
_visio_path=":$PATH:"
_visio_path=${_visio_path//":$_visio_root/.venv/bin:"/:}
_visio_path=${_visio_path#:}
export PATH="$_visio_root/.venv/bin:${_visio_path%:}"
export VISIO_PYTHON="$_visio_root/.venv/bin/python"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
export PULUMI_HOME=${PULUMI_HOME:-$HOME/.pulumi}
# The default state is this checkout's own: a default another checkout set before (remembered in
# VISIO_DEFAULT_BACKEND_URL) is replaced, or this checkout would deploy and destroy with the other
# one's state. A PULUMI_BACKEND_URL the operator set is kept as it is.
if [ -n "${VISIO_DEFAULT_BACKEND_URL:-}" ] && [ "${PULUMI_BACKEND_URL:-}" = "$VISIO_DEFAULT_BACKEND_URL" ]; then
  unset PULUMI_BACKEND_URL
fi
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  export PULUMI_BACKEND_URL="file://$_visio_root/.pulumi-state"
  export VISIO_DEFAULT_BACKEND_URL="$PULUMI_BACKEND_URL"
fi
if [ "$PULUMI_BACKEND_URL" = "file://$_visio_root/.pulumi-state" ]; then
  mkdir -p "$_visio_root/.pulumi-state"
fi
case "$PULUMI_BACKEND_URL" in
  *pulumi.com*)
    echo "pulumi-env: PULUMI_BACKEND_URL points at Pulumi Cloud ($PULUMI_BACKEND_URL): Visio state must stay" \
         "on the ministry's own storage (file:// or s3:// on a sovereign cloud)." >&2
    return 1 2>/dev/null || exit 1 ;;
esac
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  _visio_pass="$HOME/.config/visio/lab.passphrase"
  if [ ! -s "$_visio_pass" ]; then
    mkdir -p "$(dirname "$_visio_pass")"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$_visio_pass")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$_visio_pass"
fi
unset _visio_root _visio_pass _visio_path
