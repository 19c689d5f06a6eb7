#!/usr/bin/env bash
# Real Metabase in Docker, for every supported version: `provision demo`, a re-run that must change
# nothing, and `provision demo --fresh`; after each, the API is checked (dashboards present, every
# card's query completed) by scripts/e2e_check.py. Needs a Docker engine and Compose v2.
#
#   make e2e-docker                                   # every supported version
#   METABASE_VERSIONS="v0.65.x" make e2e-docker       # just one (a minor tag, or an exact v0.65.4.x)
#
# The registry's vX.Y.x tag is the latest patch of X.Y; the version that actually ran is read from
# /api/session/properties, printed for each tag and listed at the end (and in $WORK/versions.txt).
#
# Each version runs in its own compose project and state directory, removed afterwards
# (set E2E_KEEP=1 to keep the last one for inspection).
set -euo pipefail

cd "$(dirname "$0")/.."
# The supported range (provisioner/metabase/versions.py: 61–65), the latest patch of each minor.
VERSIONS=${METABASE_VERSIONS:-"v0.61.x v0.62.x v0.63.x v0.64.x v0.65.x"}
PROVISION=${PROVISION:-.venv/bin/provision}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${E2E_WORK:-$(mktemp -d -t provision-e2e.XXXXXX)}

docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || {
    echo "e2e-docker: no Docker engine answers \`docker info\`; start Docker first" >&2
    exit 6
}
docker compose version --short >/dev/null

project_of() {  # the compose project name for a tag: e2e-v0-65-4-x
    local name="e2e-${1//./-}"
    echo "${name//_/-}"
}

json_field() {  # json_field FILE KEY: one top-level field of a JSON document
    "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

run_version() {
    # Each step says `|| return 1`: errexit does not apply inside an `if !` condition.
    local tag=$1 project=$2 home=$3 out=$4
    export METABASE_VERSION=$tag PROVISION_HOME=$home

    echo "=== Metabase $tag (compose project $project) ==="
    "$PROVISION" demo --runtime docker --name "$project" --json >"$out/demo1.json" || return 1
    "$PYTHON" scripts/e2e_check.py --home "$home" --print-version >"$out/version.txt" || return 1
    echo "=== Metabase $tag is $(cat "$out/version.txt") ==="
    "$PYTHON" scripts/e2e_check.py --home "$home" --expect-version "$tag" || return 1

    # A re-run on a healthy demo must change nothing.
    "$PROVISION" demo --runtime docker --name "$project" --json >"$out/demo2.json" || return 1
    if [[ "$(json_field "$out/demo2.json" changed)" != "False" ]]; then
        echo "re-run changed something (see $out/demo2.json)" >&2
        return 1
    fi
    "$PYTHON" scripts/e2e_check.py --home "$home" --expect-version "$tag" || return 1

    # --fresh rebuilds from nothing: containers and volumes removed, everything recreated.
    "$PROVISION" demo --runtime docker --name "$project" --fresh --json >"$out/demo3.json" || return 1
    "$PYTHON" scripts/e2e_check.py --home "$home" --expect-version "$tag" --json >"$out/check.json" || return 1
    "$PROVISION" status --runtime docker --name "$project" || return 1
}

save_container_logs() {  # every container of the project, for the CI artifact
    local project=$1 out=$2 id
    for id in $(docker ps --all --quiet --filter "label=com.docker.compose.project=$project"); do
        docker logs "$id" >"$out/container-$id.log" 2>&1 || true
    done
}

remove_project() {
    local project=$1 home=$2
    [[ "${E2E_KEEP:-0}" == "1" ]] && return 0
    PROVISION_HOME="$home" "$PROVISION" down --volumes --runtime docker --name "$project" || true
}

failed=()
ran=()  # "tag → exact version (result)", for the summary
for tag in $VERSIONS; do
    project=$(project_of "$tag")
    home="$WORK/$project"
    out="$WORK/$project-out"
    mkdir -p "$out"
    # A project left by an earlier run (E2E_KEEP=1, a killed run) has volumes whose passwords this
    # fresh state directory lacks, and `provision` refuses to start over them: remove it first.
    PROVISION_HOME="$home" "$PROVISION" down --volumes --runtime docker --name "$project" >/dev/null 2>&1 || true
    # Removed on Ctrl-C or an error too: nothing is left running on the machine.
    trap 'remove_project "$project" "$home"' EXIT
    if (run_version "$tag" "$project" "$home" "$out"); then
        result=passed
    else
        echo "=== FAILED: Metabase $tag; output and logs in $out ===" >&2
        save_container_logs "$project" "$out"
        cp -r "$home/logs" "$out/provision-logs" 2>/dev/null || true
        failed+=("$tag")
        result=FAILED
    fi
    ran+=("$tag → $(cat "$out/version.txt" 2>/dev/null || echo "version unknown (no answer)") ($result)")
    remove_project "$project" "$home"
    trap - EXIT
done

echo "e2e-docker: the versions that ran:"
printf '  %s\n' "${ran[@]}" | tee "$WORK/versions.txt"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    printf -- '- Metabase %s\n' "${ran[@]}" >>"$GITHUB_STEP_SUMMARY"
fi

if ((${#failed[@]})); then
    echo "e2e-docker: failed for ${failed[*]} (details in $WORK)" >&2
    exit 1
fi
echo "e2e-docker: all versions passed: $VERSIONS"
