# Shared by the bench scripts (sourced, not run). Expects the arrays `labels` and `sock` (label →
# socket path) filled from the command line.

# Only local unix sockets: the scripts create and force-remove containers (and volumes).
check_sockets() {
    local l
    for l in "${labels[@]}"; do
        if [ ! -S "${sock[$l]}" ]; then
            echo "$l: ${sock[$l]} is not a unix socket (only local unix sockets are benchmarked)" >&2
            exit 2
        fi
    done
}

# The docker CLI as the client of every engine, with a private config and no inherited context.
setup_docker_client() {
    docker=$(command -v docker || echo /usr/local/bin/docker)
    export DOCKER_CONFIG=${DOCKER_CONFIG:-$(mktemp -d)}
    unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
    runid=bench-$$-$RANDOM
}

# The docker CLI against the engine being measured ($cur_label).
dk() { DOCKER_HOST="unix://${sock[$cur_label]}" "$docker" "$@"; }
