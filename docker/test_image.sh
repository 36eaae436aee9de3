#!/usr/bin/env bash
# Build both images; start the model server with the README's plain `docker run` line, then
# both services with docker compose; send a real JPEG to each Triton and to the gateway,
# check that the same labelled detections come back, and remove everything it made.
#
#   docker/test_image.sh            # minutes (torch is ~5.5 GB); needs a Docker engine
#
# Where no registry is reachable, the base image is built locally
# (docker/build_base_image.sh).  KEEP_IMAGES=1 keeps the built images for the next run.
# Prints the image sizes and the answers; exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
CLIENT_PYTHON="$D2T_CACHE/venv/bin/python"
cd "$ROOT"  # the client runs from this checkout
[ -x "$CLIENT_PYTHON" ] || { echo "run scripts/setup.sh first (the checks use its client)"; exit 1; }
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose);
elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose);
else echo "needs docker compose (or docker-compose)"; exit 1; fi

log() { printf '[docker-test] %s\n' "$*" >&2; }

export BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}"
made_base=0
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
        && ! timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    BASE_IMAGE=d2-triton/bookworm-python3.11
    log "no registry: using a locally built base image, $BASE_IMAGE"
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || made_base=1
    "$ROOT/docker/build_base_image.sh" "$BASE_IMAGE"
fi

free_port() { "$CLIENT_PYTHON" -c 'from d2_triton.testing.ports import free_ports; print(free_ports(1)[0])'; }
export TRITON_HTTP_PORT TRITON_GRPC_PORT TRITON_METRICS_PORT GATEWAY_PORT
TRITON_HTTP_PORT="$(free_port)"; TRITON_GRPC_PORT="$(free_port)"
TRITON_METRICS_PORT="$(free_port)"; GATEWAY_PORT="$(free_port)"
project="d2t-test-$$"
compose() { (cd "$ROOT/docker" && "${COMPOSE[@]}" -p "$project" -f docker-compose.yml "$@"); }
work="$(mktemp -d)"

cleanup() {
    local status=$?
    if [ $status -ne 0 ]; then
        log "failed; last logs:"
        compose logs --tail 60 2>&1 | tail -120 >&2 || true
    fi
    compose down --volumes --remove-orphans >/dev/null 2>&1 || true
    docker rm -f "$project-run" >/dev/null 2>&1 || true
    docker volume rm "$project-models" >/dev/null 2>&1 || true
    if [ "${KEEP_IMAGES:-0}" != 1 ]; then
        docker rmi d2-triton/model-server:latest d2-triton/gateway:latest >/dev/null 2>&1 || true
        [ $made_base = 1 ] && docker rmi "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT

log "building the images on $BASE_IMAGE"
started=$SECONDS
compose build
log "built in $((SECONDS - started)) s"
for image in d2-triton/model-server:latest d2-triton/gateway:latest; do
    size=$(docker image inspect -f '{{.Size}}' "$image")
    log "image $image: $((size / 1024 / 1024)) MiB"
done

photo="$work/astronaut.jpg"
"$D2T_CACHE/venv-dev/bin/python" -c "
import sys; sys.path.insert(0, '$ROOT')
from benchmarks.inputs import photo_jpegs
open('$photo', 'wb').write(photo_jpegs((640, 480), 1)[0])"

log "the README's docker run line (the model server alone; it exports at first start)"
run_name="$project-run"
run_volume="$project-models"
run_port="$(free_port)"
# As in README.md (Docker), with a free host port for HTTP and names of this run's own:
docker run -d --name "$run_name" --init --restart unless-stopped --shm-size 1g \
    -p "$run_port:8000" -v "$run_volume:/models" \
    -e D2T_CONFIG=COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml -e D2T_WEIGHTS=zoo \
    d2-triton/model-server >/dev/null
started=$SECONDS
deadline=$((SECONDS + 1200))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$run_name")" = healthy ]; do
    [ "$(docker inspect -f '{{.State.Running}}' "$run_name")" = true ] \
        || { log "the docker run container stopped"; docker logs --tail 60 "$run_name" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { log "docker run: not healthy after 20 minutes"; exit 1; }
    sleep 5
done
log "docker run: healthy after $((SECONDS - started)) s"
"$CLIENT_PYTHON" -m d2_triton.client infer "$photo" --url "127.0.0.1:$run_port" \
    --max-detections 5 --json > "$work/docker-run.json"
docker rm -f "$run_name" >/dev/null && docker volume rm "$run_volume" >/dev/null

log "starting both services (the model server exports the default model at first start)"
started=$SECONDS
compose up -d
deadline=$((SECONDS + 1200))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q triton-client-server)")" = healthy ]; do
    for service in triton-model-server triton-client-server; do
        if [ "$(docker inspect -f '{{.State.Running}}' "$(compose ps -q $service)")" != true ]; then
            log "$service stopped"; exit 1
        fi
    done
    [ $SECONDS -lt $deadline ] || { log "not healthy after 20 minutes"; exit 1; }
    sleep 5
done
log "both services healthy after $((SECONDS - started)) s"

log "a JPEG straight to Triton's ensemble (HTTP $TRITON_HTTP_PORT)"
"$CLIENT_PYTHON" -m d2_triton.client infer "$photo" --url "127.0.0.1:$TRITON_HTTP_PORT" \
    --max-detections 5 --json > "$work/triton.json"
log "the same JPEG through the gateway (port $GATEWAY_PORT)"
"$CLIENT_PYTHON" - "$work/triton.json" "http://127.0.0.1:$GATEWAY_PORT" "$photo" <<'EOF'
import json, sys, urllib.request
triton = json.load(open(sys.argv[1]))
request = urllib.request.Request(
    f"{sys.argv[2]}/v1/detect?max_detections=5", data=open(sys.argv[3], "rb").read(),
    headers={"Content-Type": "image/jpeg"})
gateway = json.load(urllib.request.urlopen(request, timeout=300))
for name, answer in (("triton", triton), ("gateway", gateway)):
    detections = answer["detections"]
    assert len(detections) == 5, (name, len(detections))
    for detection in detections:
        assert isinstance(detection["label"], str) and detection["label"], detection
        assert len(detection["box"]) == 4 and "counts" in detection["mask"], detection
    print(f"{name}: " + ", ".join(f"{d['label']} {d['score']:.2f}" for d in detections))
assert gateway["detections"] == triton["detections"], "gateway and Triton disagree"
print("gateway answer == Triton answer")
EOF
cmp -s "$work/triton.json" "$work/docker-run.json" \
    || { log "the docker run server and the compose one answer differently"; exit 1; }
log "docker run answer == compose answer"
compose logs triton-model-server 2>&1 | grep "the reload watchdog is on" >/dev/null \
    || { log "the model server runs without its reload watchdog"; exit 1; }
if compose logs triton-model-server 2>&1 | grep "RANDOM WEIGHTS" >/dev/null; then
    log "note: the model server exported RANDOM weights (no route to the model zoo)"
fi
log "passed"
