#!/usr/bin/env bash
# End-to-end test of the webhook on a throwaway kind cluster.
#
# NOT run in CI here (CI has no Docker daemon, kind, or network to pull
# images). Run it by hand on a machine with Docker, kind, kubectl and cargo:
#
#   tests/e2e/kind.sh
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default: secret-injector-e2e)
#   IMAGE              image tag built and loaded into kind (default: secret-injector:e2e)
#   KEEP_CLUSTER=1     keep the cluster (and print how to delete it) instead of deleting it
#   SKIP_BUILD=1       reuse an existing target/release/secret-injector and image
#
# What it checks (admission only: no Vault or AWS is needed, the injected init
# containers are never expected to succeed):
#   - in namespace e2e-in (labelled secret-injector.io/inject=enabled) a pod
#     with a secret annotation is injected (status annotation + init container);
#   - in e2e-in, pods without our annotations or with inject=false are untouched;
#   - in namespace e2e-out (unlabelled) the same pod is untouched;
#   - an invalid reference (unknown provider) is refused at admission with a
#     message naming the annotation.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CLUSTER="${KIND_CLUSTER_NAME:-secret-injector-e2e}"
IMAGE="${IMAGE:-secret-injector:e2e}"
BUSYBOX="${BUSYBOX_IMAGE:-busybox:1.36}"
NS=secret-injector-system

passed=0
failed=0
WORKDIR="$(mktemp -d)"

log() { printf '\n==> %s\n' "$*"; }
k() { kubectl --context "kind-${CLUSTER}" "$@"; }

cleanup() {
  local rc=$?
  if ((failed > 0 || rc != 0)) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "--- webhook logs ---"
    k -n "$NS" logs deploy/secret-injector --all-containers --tail=100 2>/dev/null || true
  fi
  rm -rf "$WORKDIR"
  if [[ "${KEEP_CLUSTER:-0}" == "1" ]]; then
    echo "keeping cluster ${CLUSTER}; delete it with: kind delete cluster --name ${CLUSTER}"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

check() {
  # check DESCRIPTION EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    echo "PASS: $1"
    passed=$((passed + 1))
  else
    echo "FAIL: $1 (expected '$2', got '$3')"
    failed=$((failed + 1))
  fi
}

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 2; }
done

# --- cluster ----------------------------------------------------------------
log "creating kind cluster ${CLUSTER}"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 180s
fi

# --- build ------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
  log "building binary and image ${IMAGE}"
  cargo build --release --locked
  docker build -t "$IMAGE" .
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"
# Pre-load the test pods' image so the test does not depend on pulls inside kind.
if docker pull "$BUSYBOX" >/dev/null 2>&1; then
  kind load docker-image "$BUSYBOX" --name "$CLUSTER" || true
fi

# --- certificates -----------------------------------------------------------
log "issuing webhook certificates"
./target/release/secret-injector certs --service secret-injector --namespace "$NS" --out-dir "$WORKDIR/certs"
for f in ca.crt tls.crt tls.key ca-bundle.b64; do
  [[ -s "$WORKDIR/certs/$f" ]] || { echo "error: certs did not write $f" >&2; exit 1; }
done

k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k -n "$NS" create secret tls secret-injector-tls \
  --cert="$WORKDIR/certs/tls.crt" --key="$WORKDIR/certs/tls.key" \
  --dry-run=client -o yaml | k apply -f -

# --- install ----------------------------------------------------------------
log "installing manifests with image ${IMAGE}"
# One images: entry sets the webhook's image; the webhook injects its own image (read
# from its pod), so the rendered manifests hold it once and no other copy.
cp -r manifests "$WORKDIR/manifests"
(cd "$WORKDIR/manifests" && kubectl kustomize . >/dev/null &&
  sed -i "s#^    newTag: \"0.1.0\"#    newName: ${IMAGE%:*}\n    newTag: \"${IMAGE##*:}\"#" kustomization.yaml)
kubectl kustomize "$WORKDIR/manifests" >"$WORKDIR/install.yaml"
[[ "$(grep -c "image: ${IMAGE}\$" "$WORKDIR/install.yaml")" == 1 ]] && ! grep -q 'SECRET_INJECTOR_IMAGE\|ghcr.io/secret-injector' "$WORKDIR/install.yaml" \
  || { echo "the image is not set in exactly one place" >&2; exit 1; }
k apply -f "$WORKDIR/install.yaml"
ca_bundle="$(tr -d '\n' <"$WORKDIR/certs/ca-bundle.b64")"
k patch mutatingwebhookconfiguration secret-injector --type=json \
  -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"${ca_bundle}\"}]"
k -n "$NS" rollout status deploy/secret-injector --timeout=180s

# --- test namespaces and pods -------------------------------------------------
k create namespace e2e-in --dry-run=client -o yaml | k apply -f -
k label namespace e2e-in secret-injector.io/inject=enabled --overwrite
k create namespace e2e-out --dry-run=client -o yaml | k apply -f -

# pod_yaml NAMESPACE NAME [ANNOTATION_KEY ANNOTATION_VALUE]...
pod_yaml() {
  local ns="$1" name="$2"
  shift 2
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  annotations:
    e2e.secret-injector.io/test: "true"
YAML
  while (($# >= 2)); do
    printf '    %s: "%s"\n' "$1" "$2"
    shift 2
  done
  cat <<YAML
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${BUSYBOX}
      imagePullPolicy: IfNotPresent
      command: ["sleep", "3600"]
YAML
}

# apply_pod FILE: kubectl apply, retrying while the webhook endpoint comes up.
apply_pod() {
  local out
  for _ in $(seq 1 30); do
    if out="$(k apply -f "$1" 2>&1)"; then
      echo "$out"
      return 0
    fi
    if [[ "$out" == *"failed calling webhook"* ]]; then
      sleep 2
      continue
    fi
    echo "$out"
    return 1
  done
  echo "$out"
  return 1
}

annotation() { k -n "$1" get pod "$2" -o jsonpath='{.metadata.annotations.secret-injector\.io/status}'; }
has_injected_init() {
  local names n
  names="$(k -n "$1" get pod "$2" -o jsonpath='{.spec.initContainers[*].name}')"
  for n in $names; do
    [[ "$n" == secret-injector* ]] && { echo yes; return; }
  done
  echo no
}

log "pod in opted-in namespace is injected"
pod_yaml e2e-in injected secret-injector.io/secret-db "vault:secret/data/e2e/db#password" >"$WORKDIR/in.yaml"
apply_pod "$WORKDIR/in.yaml"
check "e2e-in: status annotation" "injected" "$(annotation e2e-in injected)"
check "e2e-in: secret-injector init container" "yes" "$(has_injected_init e2e-in injected)"

log "pods without our annotations, or opted out, are untouched"
pod_yaml e2e-in plain >"$WORKDIR/plain.yaml"
apply_pod "$WORKDIR/plain.yaml"
check "e2e-in (no annotation): no status annotation" "" "$(annotation e2e-in plain)"
check "e2e-in (no annotation): no init container" "no" "$(has_injected_init e2e-in plain)"
pod_yaml e2e-in opted-out secret-injector.io/inject "false" \
  secret-injector.io/secret-db "vault:secret/data/e2e/db#password" >"$WORKDIR/optout.yaml"
apply_pod "$WORKDIR/optout.yaml"
check "e2e-in (inject=false): no status annotation" "" "$(annotation e2e-in opted-out)"
check "e2e-in (inject=false): no init container" "no" "$(has_injected_init e2e-in opted-out)"

log "pod in a namespace that did not opt in is untouched"
pod_yaml e2e-out injected secret-injector.io/secret-db "vault:secret/data/e2e/db#password" >"$WORKDIR/out.yaml"
apply_pod "$WORKDIR/out.yaml"
check "e2e-out: no status annotation" "" "$(annotation e2e-out injected)"
check "e2e-out: no init container" "no" "$(has_injected_init e2e-out injected)"

log "invalid reference is refused at admission"
pod_yaml e2e-in bad secret-injector.io/secret-x "nosuch:foo" >"$WORKDIR/bad.yaml"
if out="$(k apply -f "$WORKDIR/bad.yaml" 2>&1)"; then
  check "e2e-in: invalid reference refused" "refused" "admitted"
else
  echo "$out"
  check "e2e-in: invalid reference refused" "refused" "refused"
  if [[ "$out" == *"secret-injector.io/secret-x"* ]]; then
    check "e2e-in: refusal names the annotation" "yes" "yes"
  else
    check "e2e-in: refusal names the annotation" "yes" "no"
  fi
fi

echo
echo "e2e: ${passed} passed, ${failed} failed"
((failed == 0))
