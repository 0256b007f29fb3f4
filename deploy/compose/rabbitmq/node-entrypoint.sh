#!/bin/sh
# Entry point of each RabbitMQ node in compose.yaml: installs the cluster's shared Erlang cookie (the compose
# secret erlang_cookie) where the node and its CLI tools read it, then hands over to the image's own entry
# point, which drops to the rabbitmq user. All three nodes and the topology service share this cookie; the
# nodes refuse to cluster (and rabbitmqctl to connect) without it.
set -eu

cookie_source="${ERLANG_COOKIE_FILE:-/run/secrets/erlang_cookie}"
if [ ! -s "$cookie_source" ]; then
    echo "error: the Erlang cookie $cookie_source is missing or empty (see deploy/compose/README.md)" >&2
    exit 2
fi

umask 077
tr -d '[:space:]' < "$cookie_source" > /var/lib/rabbitmq/.erlang.cookie
chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
chmod 0600 /var/lib/rabbitmq/.erlang.cookie

exec docker-entrypoint.sh "$@"
