#!/bin/sh
# Entry point of the topology image (Dockerfile, target `topology`).
#
# `gel topology apply` runs `rabbitmqctl import_definitions`, and rabbitmqctl authenticates to the RabbitMQ
# node with the cluster's Erlang cookie, read from $HOME/.erlang.cookie (mode 0600, owned by the user).
# The cookie arrives as a file: a compose secret (/run/secrets/erlang_cookie) or, on Kubernetes, the
# cluster operator's <cluster>-erlang-cookie Secret mounted at the same path (ERLANG_COOKIE_FILE overrides).
#
# As root (compose): install the cookie for user gel and run the command as gel, so the credentials file
# that `gel topology apply` writes (0600) belongs to the same uid as the platform's processes.
# As any other user (Kubernetes, runAsUser 10001): copy the cookie into $HOME and run the command.
set -eu

cookie_source="${ERLANG_COOKIE_FILE:-/run/secrets/erlang_cookie}"
if [ ! -r "$cookie_source" ]; then
    echo "error: no Erlang cookie at $cookie_source (a compose secret or a mounted Kubernetes Secret)" >&2
    exit 2
fi

if [ "$(id -u)" = "0" ]; then
    umask 077
    tr -d '[:space:]' < "$cookie_source" > /home/gel/.erlang.cookie
    chown gel:gel /home/gel/.erlang.cookie
    chmod 0600 /home/gel/.erlang.cookie
    export HOME=/home/gel
    exec gosu gel "$@"
fi

umask 077
tr -d '[:space:]' < "$cookie_source" > "$HOME/.erlang.cookie"
chmod 0600 "$HOME/.erlang.cookie"
exec "$@"
