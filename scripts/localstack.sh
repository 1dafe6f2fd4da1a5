#!/usr/bin/env bash
# Runs LocalStack (SQS, S3 and STS only) in the foreground on 127.0.0.1:PORT, with all of its state under
# STATE_DIR and every outbound look-up it would make switched off. scripts/install-localstack.sh
# installs it first. The script execs Python (localstack.runtime.main), so the caller's kill (TERM or
# KILL) reaches LocalStack itself; it starts no child processes. SIGTERM exits in about 3 s.
#
#   scripts/localstack.sh PORT STATE_DIR
#
# Ready when GET http://127.0.0.1:PORT/_localstack/health reports sqs and s3 "available" (or
# "running"). Queue URLs come back as http://127.0.0.1:PORT/queue/<region>/<account>/<name>; S3
# clients should use path-style addressing against http://127.0.0.1:PORT.
set -eo pipefail

log() { echo "localstack: $*" >&2; }

if [[ $# -ne 2 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 PORT STATE_DIR" >&2
  exit 2
fi
port=$1
state_dir=$2
: "${LOCALSTACK_VENV:=$HOME/.local/share/localstack-venv}"
python="$LOCALSTACK_VENV/bin/python"
if [[ ! -x $python ]] || ! "$python" -c 'import localstack.runtime.main' 2>/dev/null; then
  log "LocalStack is not installed in $LOCALSTACK_VENV: run scripts/install-localstack.sh first"
  exit 1
fi
mkdir -p "$state_dir/fs" "$state_dir/config"
state_dir=$(cd "$state_dir" && pwd)

# Settings a caller's environment could otherwise change behind our back (~/.localstack/*.env
# profiles are not read either: CONFIG_DIR points into STATE_DIR). LS_LOG=debug passes through.
unset LOCALSTACK_AUTH_TOKEN LOCALSTACK_API_KEY CONFIG_PROFILE DATA_DIR LOCALSTACK_CLI \
  PROVIDER_OVERRIDE_SQS PROVIDER_OVERRIDE_S3

# Loopback only: the gateway, and the host LocalStack writes into the URLs it returns.
export GATEWAY_LISTEN="127.0.0.1:$port"
export LOCALSTACK_HOST="127.0.0.1:$port"
export GATEWAY_SERVER=hypercorn # the default (twisted) ignores GATEWAY_LISTEN's host, binds 0.0.0.0
# Queue URLs http://127.0.0.1:PORT/queue/<region>/<account>/<name>; SQS_ENDPOINT_STRATEGY=off gives
# moto's http://127.0.0.1:PORT/<account>/<name> (the default, "standard", would put
# sqs.<region>.127.0.0.1 in the host, which resolves nowhere).
export SQS_ENDPOINT_STRATEGY="${SQS_ENDPOINT_STRATEGY:-path}"
# sqs and s3 for the pipeline; sts because the provisioning scripts (scripts/aws/*.sh) first ask
# who they are, as they do on AWS, before changing anything.
export SERVICES=sqs,s3,sts
export STRICT_SERVICE_LOADING=1 # load nothing but SERVICES
export EAGER_SERVICE_LOADING=1  # start sqs and s3 before reporting ready, not on the first request
# Off: the DNS server (it would bind port 53 and, in a container, edit /etc/resolv.conf), analytics
# events, the signed-certificate download, SQS's CloudWatch metrics (cloudwatch is not loaded); the
# remote service catalogue / license API, asked on "not implemented" errors, goes to a closed
# loopback port. What is left: one look-up of the name s3.127.0.0.1 in the system resolver when
# LocalStack makes its internal S3 client (answered NXDOMAIN; nothing goes to the internet).
export DNS_ADDRESS=0
export DISABLE_EVENTS=1
export SKIP_SSL_CERT_DOWNLOAD=1
export SQS_DISABLE_CLOUDWATCH_METRICS=1
export API_ENDPOINT=http://127.0.0.1:9/v1
export ANALYTICS_API=http://127.0.0.1:9/v1
# State: in memory; LocalStack's files (its directory tree, self-signed certificate, service-catalogue
# cache) under STATE_DIR/fs. This machine looks like a container to LocalStack, which would then use
# /var/lib/localstack and bind 0.0.0.0 by default: say it is not one. (TMPDIR is not set: LocalStack
# only logs a deprecation warning for it. Its S3 store still spools large objects and multipart parts
# under the hard-coded /tmp/localstack-s3-storage/<bucket>, as unlinked files; only empty
# per-bucket directories are left behind there.)
export OVERRIDE_IN_DOCKER=0
export PERSISTENCE=0
export FILESYSTEM_ROOT="$state_dir/fs"
export CONFIG_DIR="$state_dir/config"
export PYTHONUNBUFFERED=1

# This is `python -m localstack.runtime.main` plus one fix: LocalStack's hypercorn server stops its
# asyncio loop from another thread without waking it, so on SIGTERM the process sometimes sleeps in
# epoll_wait for ever (1 run in 5 here). Waking the loop after its own shutdown makes it exit.
exec "$python" -c '
import runpy
from localstack.runtime.server import hypercorn as server

def shutdown(self, _shutdown=server.HypercornRuntimeServer.shutdown):
    _shutdown(self)
    try:
        self.loop.call_soon_threadsafe(self.loop.stop)
    except RuntimeError:  # the loop is closed already
        pass

server.HypercornRuntimeServer.shutdown = shutdown
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
'
