#!/usr/bin/env bash
# One-container motoray: a local Ray head, the API on :5000 and JupyterLab on :8888.
# `docker stop` sends SIGTERM here: the API and Jupyter are stopped first, then Ray, so jobs
# and notebooks end cleanly. Give it time: `docker stop -t 30`.
set -euo pipefail

# Jupyter runs any code for whoever holds the token: refuse to start without one. Jupyter
# reads JUPYTER_TOKEN itself, which keeps the token out of `ps`.
: "${JUPYTER_TOKEN:?set JUPYTER_TOKEN to a long random secret}"
config="${MOTORAY_CONFIG:-$HOME/motoray/motoray.yaml}"

pids=()
stop() {
    trap - TERM INT
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    ray stop || true
}
trap 'stop; exit 0' TERM INT

# Returns once the head is up. The dashboard (and its job API) stays inside the container.
# `ondemand` and `spot` are the cluster's node-kind resources: code asking for them runs here.
# Started without the API and Jupyter tokens: every Ray worker and job driver inherits this
# environment.
# Workers at niceness 0 (Ray's default: 15) so that the API outranks pipeline tasks.
env -u MOTORAY_API_TOKEN -u JUPYTER_TOKEN RAY_worker_niceness=0 \
    ray start --head --disable-usage-stats --dashboard-host=127.0.0.1 \
    --resources='{"ondemand": 1, "spot": 1}'
export RAY_ADDRESS=auto  # the API, its jobs and notebooks join this head

# The API and Jupyter (the notebook calls the API) keep the token. The Ray drivers they run
# do not pass it on: Ray's workers get the raylet's environment, `ray start`'s above.
motoray serve --config "$config" --host 0.0.0.0 --port 5000 &
pids+=("$!")
jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir="$HOME" &
pids+=("$!")

# Either service exiting on its own ends the container, so its restart policy takes over.
status=0
wait -n "${pids[@]}" || status=$?
echo "entrypoint: a service exited with status $status; stopping the rest" >&2
stop
exit $((status == 0 ? 1 : status))
